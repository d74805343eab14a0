//! PostgreSQL: the pool, the migration runner, and one module of queries
//! per table. Every query is parameterised and goes through
//! `prepare_cached`, so each connection parses each statement once.

pub mod audit;
pub mod local_pg;
pub mod login_throttle;
pub mod members;
pub mod migrations;
pub mod one_time_tokens;
pub mod outbox;
pub mod sessions;
pub mod signing_keys;
pub mod tls;
pub mod users;
pub mod workspaces;

use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
pub use tls::DbConfig;

/// How long a request waits for a pooled connection, or for a new one to
/// connect, before it is answered 503: the database being down must show
/// within a second or two, never as a hang.
const POOL_TIMEOUT: Duration = Duration::from_secs(2);
/// A statement that runs longer than this is cancelled by the server.
const STATEMENT_TIMEOUT_MS: u32 = 10_000;

/// Parses `url` (with libpq's `sslmode`) into a connection config with the
/// service's timeouts and its TLS connector.
pub fn connection_config(url: &str) -> Result<DbConfig, String> {
    let mut config = tls::parse(url)?;
    let pg = &mut config.pg;
    if pg.get_connect_timeout().is_none() {
        pg.connect_timeout(POOL_TIMEOUT);
    }
    pg.keepalives(true).keepalives_idle(Duration::from_secs(30));
    if pg.get_options().is_none() {
        pg.options(format!("-c statement_timeout={STATEMENT_TIMEOUT_MS}"));
    }
    if pg.get_application_name().is_none() {
        pg.application_name("auth-service");
    }
    Ok(config)
}

/// Builds the pool. Connections are made lazily, so this succeeds with the
/// database down; requests then get 503 until it is back.
pub fn pool(url: &str, size: usize) -> Result<Pool, String> {
    let config = connection_config(url)?;
    let manager = Manager::from_config(
        config.pg,
        config.tls,
        ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        },
    );
    Pool::builder(manager)
        .max_size(size)
        .wait_timeout(Some(POOL_TIMEOUT))
        .create_timeout(Some(POOL_TIMEOUT))
        .recycle_timeout(Some(POOL_TIMEOUT))
        .runtime(Runtime::Tokio1)
        .build()
        .map_err(|e| format!("cannot build the database pool: {e}"))
}

/// One dedicated connection (migrations, LISTEN), driven on its own task.
pub async fn connect(config: &DbConfig) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
    let (client, connection) = config.pg.connect(config.tls.clone()).await?;
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::warn!(error = %e, "database connection closed");
        }
    });
    Ok(client)
}
