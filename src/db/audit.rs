//! Queries on `audit_events`: batched appends and the two newest-first
//! feeds (a workspace's, a user's own). The table refuses UPDATE and
//! DELETE, so there is nothing else to write.

use chrono::{DateTime, Utc};
use deadpool_postgres::GenericClient;
use tokio_postgres::Row;
use uuid::Uuid;

use crate::error::ApiError;

/// An event as stored.
#[derive(Debug, Clone)]
pub struct AuditRow {
    /// Id (v7).
    pub id: Uuid,
    /// When it happened; with `id`, the paging key.
    pub at: DateTime<Utc>,
    /// Who did it, when known.
    pub actor_id: Option<Uuid>,
    /// The workspace whose feed shows it.
    pub workspace_id: Option<Uuid>,
    /// The user whose own feed shows it.
    pub user_id: Option<Uuid>,
    /// What happened.
    pub action: String,
    /// What it was done to.
    pub target: Option<String>,
    /// Client address.
    pub ip: Option<String>,
    /// `success`, `failure` or `denied`.
    pub outcome: String,
}

const COLUMNS: &str = "id, at, actor_id, workspace_id, user_id, action, target, ip, outcome";

impl TryFrom<Row> for AuditRow {
    type Error = tokio_postgres::Error;

    fn try_from(row: Row) -> Result<Self, Self::Error> {
        Ok(AuditRow {
            id: row.try_get("id")?,
            at: row.try_get("at")?,
            actor_id: row.try_get("actor_id")?,
            workspace_id: row.try_get("workspace_id")?,
            user_id: row.try_get("user_id")?,
            action: row.try_get("action")?,
            target: row.try_get("target")?,
            ip: row.try_get("ip")?,
            outcome: row.try_get("outcome")?,
        })
    }
}

/// Appends `rows` in one statement: one array per column, unnested, so a
/// batch of any size is one round trip and one cached statement.
pub async fn insert(
    db: &impl GenericClient,
    rows: &[AuditRow],
) -> Result<u64, tokio_postgres::Error> {
    let ids: Vec<Uuid> = rows.iter().map(|r| r.id).collect();
    let ats: Vec<DateTime<Utc>> = rows.iter().map(|r| r.at).collect();
    let actors: Vec<Option<Uuid>> = rows.iter().map(|r| r.actor_id).collect();
    let workspaces: Vec<Option<Uuid>> = rows.iter().map(|r| r.workspace_id).collect();
    let users: Vec<Option<Uuid>> = rows.iter().map(|r| r.user_id).collect();
    let actions: Vec<&str> = rows.iter().map(|r| r.action.as_str()).collect();
    let targets: Vec<Option<&str>> = rows.iter().map(|r| r.target.as_deref()).collect();
    let ips: Vec<Option<&str>> = rows.iter().map(|r| r.ip.as_deref()).collect();
    let outcomes: Vec<&str> = rows.iter().map(|r| r.outcome.as_str()).collect();
    let stmt = db
        .prepare_cached(&format!(
            "INSERT INTO audit_events ({COLUMNS})
             SELECT * FROM unnest($1::uuid[], $2::timestamptz[], $3::uuid[], $4::uuid[],
                                  $5::uuid[], $6::text[], $7::text[], $8::text[], $9::text[])"
        ))
        .await?;
    db.execute(
        &stmt,
        &[
            &ids,
            &ats,
            &actors,
            &workspaces,
            &users,
            &actions,
            &targets,
            &ips,
            &outcomes,
        ],
    )
    .await
}

/// Which feed to read.
#[derive(Debug, Clone, Copy)]
pub enum Feed {
    /// A workspace's events.
    Workspace(Uuid),
    /// A user's own account events.
    User(Uuid),
}

/// A page of a feed, newest first, starting after `after` (the last row of
/// the previous page).
pub async fn page(
    db: &impl GenericClient,
    feed: Feed,
    limit: i64,
    after: Option<(DateTime<Utc>, Uuid)>,
) -> Result<Vec<AuditRow>, ApiError> {
    let (column, key) = match feed {
        Feed::Workspace(id) => ("workspace_id", id),
        Feed::User(id) => ("user_id", id),
    };
    let rows = match after {
        None => {
            let sql = format!(
                "SELECT {COLUMNS} FROM audit_events WHERE {column} = $1
                 ORDER BY at DESC, id DESC LIMIT $2"
            );
            let stmt = db.prepare_cached(&sql).await?;
            db.query(&stmt, &[&key, &limit]).await?
        }
        Some((at, id)) => {
            let sql = format!(
                "SELECT {COLUMNS} FROM audit_events WHERE {column} = $1 AND (at, id) < ($3, $4)
                 ORDER BY at DESC, id DESC LIMIT $2"
            );
            let stmt = db.prepare_cached(&sql).await?;
            db.query(&stmt, &[&key, &limit, &at, &id]).await?
        }
    };
    Ok(rows
        .into_iter()
        .map(AuditRow::try_from)
        .collect::<Result<_, _>>()?)
}
