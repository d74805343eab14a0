//! The migration runner: numbered plain SQL files from `sql/`, embedded in
//! the binary, each applied in its own transaction and tracked in
//! `schema_migrations`. A session-level advisory lock serialises runners, so
//! instances starting together never race.
//!
//! Why not refinery: it has no down migrations, and `migrate down N` is part
//! of the contract. What is needed here is forty lines.

use sha2::{Digest, Sha256};
use tokio_postgres::Client;

/// One migration: its number, name and both directions.
pub struct Migration {
    /// The number in the file name.
    pub version: i32,
    /// The file name without its direction suffix (`0001_users`).
    pub name: &'static str,
    /// `NNNN_name.up.sql`.
    pub up: &'static str,
    /// `NNNN_name.down.sql`.
    pub down: &'static str,
}

macro_rules! migration {
    ($version:literal, $file:literal) => {
        Migration {
            version: $version,
            name: $file,
            up: include_str!(concat!("../../sql/", $file, ".up.sql")),
            down: include_str!(concat!("../../sql/", $file, ".down.sql")),
        }
    };
}

/// Every migration, in order. A test checks this matches `sql/`.
pub static MIGRATIONS: &[Migration] = &[
    migration!(1, "0001_users"),
    migration!(2, "0002_workspaces"),
    migration!(3, "0003_sessions"),
    migration!(4, "0004_signing_keys"),
    migration!(5, "0005_login_throttle"),
    migration!(6, "0006_account_lifecycle"),
    migration!(7, "0007_audit"),
];

/// Advisory lock key: any constant that no other tool on the database uses.
const LOCK_KEY: i64 = 0x6175_7468_6d69_6772; // "authmigr"

/// A migration's state in a database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    /// The version.
    pub version: i32,
    /// The name.
    pub name: &'static str,
    /// Applied, and when.
    pub applied_at: Option<chrono::DateTime<chrono::Utc>>,
}

/// Why migrating failed.
#[derive(Debug)]
pub struct MigrationError(pub String);

impl std::fmt::Display for MigrationError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for MigrationError {}

impl From<tokio_postgres::Error> for MigrationError {
    fn from(e: tokio_postgres::Error) -> Self {
        match e.as_db_error() {
            Some(db) => MigrationError(format!("{}: {}", db.code().code(), db.message())),
            None => MigrationError(e.to_string()),
        }
    }
}

fn checksum(sql: &str) -> String {
    Sha256::digest(sql.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

async fn lock(client: &Client) -> Result<(), MigrationError> {
    client
        .execute("SELECT pg_advisory_lock($1)", &[&LOCK_KEY])
        .await?;
    client
        .batch_execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations (
                version     integer     PRIMARY KEY,
                name        text        NOT NULL,
                checksum    text        NOT NULL,
                applied_at  timestamptz NOT NULL DEFAULT now()
            )",
        )
        .await?;
    Ok(())
}

async fn unlock(client: &Client) {
    // The lock is also released when the session ends.
    let _ = client
        .execute("SELECT pg_advisory_unlock($1)", &[&LOCK_KEY])
        .await;
}

async fn applied(
    client: &Client,
) -> Result<Vec<(i32, String, chrono::DateTime<chrono::Utc>)>, MigrationError> {
    let rows = client
        .query(
            "SELECT version, checksum, applied_at FROM schema_migrations ORDER BY version",
            &[],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect())
}

/// Applies every pending migration; returns how many ran. Refuses to run
/// when an applied migration's file changed since.
pub async fn up(client: &mut Client) -> Result<usize, MigrationError> {
    lock(client).await?;
    let result = apply_up(client).await;
    unlock(client).await;
    result
}

async fn apply_up(client: &mut Client) -> Result<usize, MigrationError> {
    let done = applied(client).await?;
    for (version, sum, _) in &done {
        if let Some(m) = MIGRATIONS.iter().find(|m| m.version == *version) {
            if checksum(m.up) != *sum {
                return Err(MigrationError(format!(
                    "migration {} was changed after it was applied",
                    m.name
                )));
            }
        }
    }
    let mut count = 0;
    for m in MIGRATIONS
        .iter()
        .filter(|m| !done.iter().any(|(v, _, _)| *v == m.version))
    {
        let tx = client.transaction().await?;
        tx.batch_execute(m.up).await.map_err(|e| {
            MigrationError(format!(
                "{:04}_{}: {}",
                m.version,
                m.name,
                MigrationError::from(e)
            ))
        })?;
        tx.execute(
            "INSERT INTO schema_migrations (version, name, checksum) VALUES ($1, $2, $3)",
            &[&m.version, &m.name, &checksum(m.up)],
        )
        .await?;
        tx.commit().await?;
        tracing::info!(version = m.version, name = m.name, "migration applied");
        count += 1;
    }
    Ok(count)
}

/// Reverts the newest `steps` applied migrations; returns how many ran.
pub async fn down(client: &mut Client, steps: usize) -> Result<usize, MigrationError> {
    lock(client).await?;
    let result = apply_down(client, steps).await;
    unlock(client).await;
    result
}

async fn apply_down(client: &mut Client, steps: usize) -> Result<usize, MigrationError> {
    let done = applied(client).await?;
    let mut count = 0;
    for (version, _, _) in done.iter().rev().take(steps) {
        let m = MIGRATIONS
            .iter()
            .find(|m| m.version == *version)
            .ok_or_else(|| {
                MigrationError(format!(
                    "applied migration {version} is unknown to this binary"
                ))
            })?;
        let tx = client.transaction().await?;
        tx.batch_execute(m.down).await?;
        tx.execute(
            "DELETE FROM schema_migrations WHERE version = $1",
            &[&m.version],
        )
        .await?;
        tx.commit().await?;
        tracing::info!(version = m.version, name = m.name, "migration reverted");
        count += 1;
    }
    Ok(count)
}

/// Every known migration and whether it is applied.
pub async fn status(client: &mut Client) -> Result<Vec<Status>, MigrationError> {
    lock(client).await?;
    let done = applied(client).await;
    unlock(client).await;
    let done = done?;
    Ok(MIGRATIONS
        .iter()
        .map(|m| Status {
            version: m.version,
            name: m.name,
            applied_at: done
                .iter()
                .find(|(v, _, _)| *v == m.version)
                .map(|(_, _, at)| *at),
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_file_in_sql_is_listed_in_order_with_both_directions() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/sql");
        let mut ups: Vec<String> = std::fs::read_dir(dir)
            .expect("sql/ exists")
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .filter(|n| n.ends_with(".up.sql"))
            .collect();
        ups.sort();
        let listed: Vec<String> = MIGRATIONS
            .iter()
            .map(|m| format!("{}.up.sql", m.name))
            .collect();
        assert_eq!(ups, listed);
        for m in MIGRATIONS {
            assert!(!m.down.trim().is_empty(), "{} has an empty down", m.name);
        }
        assert!(MIGRATIONS.windows(2).all(|w| w[0].version < w[1].version));
        for m in MIGRATIONS {
            assert!(
                m.name.starts_with(&format!("{:04}_", m.version)),
                "{}",
                m.name
            );
        }
    }
}
