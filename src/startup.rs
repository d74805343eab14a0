//! Building a running instance: database, migrations, actors, listener.
//! [`Application::build`] binds the port (0 in tests) and returns before
//! serving, so tests can read [`Application::port`].

use std::net::SocketAddr;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use ractor::{Actor, ActorRef};
use tokio::net::TcpListener;

use crate::actors::hasher::{HasherArgs, HasherStats};
use crate::actors::mailer::Mailer;
use crate::actors::membership::Memberships;
use crate::actors::supervisor::{Supervisor, SupervisorArgs};
use crate::actors::tokens::{KeyHandle, TokenArgs, TokenConfig, TokenKeys};
use crate::actors::{ActorSlot, Hasher};
use crate::audit::Audit;
use crate::config::{Config, DatabaseSource};
use crate::db;
use crate::db::local_pg::{default_dev_data_dir, LocalPgOptions, LocalPostgres};
use crate::domain::Secret;
use crate::ratelimit::RateLimiter;
use crate::revocation::Revocations;
use crate::state::{user_cache, AppState};

/// Wrong introspection keys tolerated per address per minute before 429.
const BAD_SERVICE_KEYS_PER_MINUTE: u32 = 30;

/// Name of the database the service creates in its own local cluster.
const LOCAL_DATABASE: &str = "auth_service";

/// A built, bound, not yet serving instance.
pub struct Application {
    listener: TcpListener,
    addr: SocketAddr,
    state: Arc<AppState>,
    supervisor: ActorRef<()>,
    feed: db::DbConfig,
    // Kept alive for as long as the instance runs; stops the local server on drop.
    _local_pg: Option<LocalPostgres>,
}

/// Why an instance could not start.
#[derive(Debug)]
pub struct StartupError(pub String);

impl std::fmt::Display for StartupError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for StartupError {}

fn fail(what: &str) -> impl Fn(String) -> StartupError + '_ {
    move |e| StartupError(format!("{what}: {e}"))
}

/// The database URL to use: the configured one, or a local cluster the
/// service starts (and creates its database in) by itself.
pub async fn resolve_database(
    config: &mut Config,
) -> Result<(String, Option<LocalPostgres>), StartupError> {
    match &config.database {
        DatabaseSource::Url(url) => Ok((url.clone(), None)),
        DatabaseSource::Local => {
            let data_dir = default_dev_data_dir();
            tracing::info!(data_dir = %data_dir.display(), "DATABASE_URL not set: starting a local PostgreSQL");
            let dir = data_dir.clone();
            let pg = tokio::task::spawn_blocking(move || {
                LocalPostgres::start(LocalPgOptions {
                    data_dir: Some(dir),
                })
            })
            .await
            .map_err(|e| StartupError(format!("local PostgreSQL: {e}")))?
            .map_err(|e| StartupError(format!("local PostgreSQL: {e}")))?;
            let admin =
                db::connection_config(&pg.url("postgres")).map_err(fail("local PostgreSQL"))?;
            let client = db::connect(&admin)
                .await
                .map_err(|e| fail("local PostgreSQL")(e.to_string()))?;
            let exists = client
                .query_opt(
                    "SELECT 1 FROM pg_database WHERE datname = $1",
                    &[&LOCAL_DATABASE],
                )
                .await
                .map_err(|e| fail("local PostgreSQL")(e.to_string()))?
                .is_some();
            if !exists {
                client
                    .batch_execute(&format!("CREATE DATABASE {LOCAL_DATABASE}"))
                    .await
                    .map_err(|e| fail("local PostgreSQL")(e.to_string()))?;
            }
            local_dev_secrets(config, &data_dir)?;
            Ok((pg.url(LOCAL_DATABASE), Some(pg)))
        }
    }
}

/// With the local development database only: secrets not given are made
/// once, kept beside the cluster (mode 0600), and reused, so tokens survive
/// a restart. Nothing usable ships with the code.
fn local_dev_secrets(config: &mut Config, data_dir: &std::path::Path) -> Result<(), StartupError> {
    use rand::RngCore;
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let base = data_dir.parent().unwrap_or(data_dir);
    let load = |name: &str| -> Result<Secret, StartupError> {
        let path = base.join(format!("dev-{name}"));
        if let Ok(existing) = std::fs::read_to_string(&path) {
            if existing.trim().len() >= 32 {
                return Ok(Secret::new(existing.trim().to_owned()));
            }
        }
        let mut raw = [0u8; 32];
        rand::thread_rng().fill_bytes(&mut raw);
        let key: String = raw.iter().map(|b| format!("{b:02x}")).collect();
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&path)
            .map_err(|e| StartupError(format!("cannot write {}: {e}", path.display())))?;
        file.write_all(key.as_bytes())
            .map_err(|e| StartupError(format!("cannot write {}: {e}", path.display())))?;
        tracing::warn!(path = %path.display(), "{name} not set: using a development key kept beside the local database");
        Ok(Secret::new(key))
    };
    if config.jwt_secret_key.is_none() {
        config.jwt_secret_key = Some(load("jwt-secret-key")?);
    }
    if config.secret_key.is_none() {
        config.secret_key = Some(load("secret-key")?);
    }
    Ok(())
}

/// Applies pending migrations on a dedicated connection.
pub async fn migrate(url: &str) -> Result<usize, StartupError> {
    let pg = db::connection_config(url).map_err(fail("database"))?;
    let mut client = db::connect(&pg)
        .await
        .map_err(|e| fail("database")(e.to_string()))?;
    db::migrations::up(&mut client)
        .await
        .map_err(|e| fail("migrations")(e.0))
}

impl Application {
    /// Resolves the database, migrates (unless disabled), starts the actors
    /// and binds the listener.
    pub async fn build(mut config: Config) -> Result<Application, StartupError> {
        let (url, local_pg) = resolve_database(&mut config).await?;
        if config.migrate_on_start {
            migrate(&url).await?;
        }
        let db = db::pool(&url, config.db_pool_size).map_err(fail("database"))?;
        let feed = db::connection_config(&url).map_err(fail("database"))?;
        let memberships = Memberships::start(db.clone(), config.membership_idle)
            .await
            .map_err(fail("memberships"))?;
        let revocations = Revocations::new(config.revocation_staleness, config.jwt_expiration);
        // Start with the revoked set as the database has it; the change feed
        // keeps it current from here (and reloads it when it connects).
        if let Ok(client) = db.get().await {
            if let Err(e) = revocations.reload(&client).await {
                tracing::warn!(error = %e, "could not load revoked sessions at start");
            }
        }
        let secret = config
            .jwt_secret_key
            .clone()
            .ok_or_else(|| StartupError("JWT_SECRET_KEY is required".into()))?;
        let secret_key = config
            .secret_key
            .clone()
            .ok_or_else(|| StartupError("SECRET_KEY is required".into()))?;
        let token_config = TokenConfig {
            algorithm: config.jwt_algorithm,
            secret,
            secret_key,
            lifetime: config.jwt_expiration,
            issuer: config.jwt_issuer.clone(),
            audience: config.jwt_audience.clone(),
        };
        let keys = KeyHandle::new(
            TokenKeys::load(&token_config, &db)
                .await
                .map_err(fail("signing keys"))?,
        );
        let tokens_slot = ActorSlot::default();
        let hasher_stats = Arc::new(HasherStats::default());
        let actor_restarts = Arc::new(AtomicU64::new(0));
        let hasher_slot = ActorSlot::default();
        let (supervisor, _) = Actor::spawn(
            None,
            Supervisor,
            SupervisorArgs {
                hasher: HasherArgs {
                    params: config.argon2,
                    workers: config.hash_workers,
                    queue_bound: config.hash_queue_bound,
                    stats: hasher_stats.clone(),
                },
                hasher_slot: hasher_slot.clone(),
                tokens: TokenArgs {
                    config: token_config,
                    handle: keys.clone(),
                    db: db.clone(),
                },
                tokens_slot: tokens_slot.clone(),
                restarts: actor_restarts.clone(),
            },
        )
        .await
        .map_err(|e| StartupError(format!("actors: {e}")))?;
        let listener = TcpListener::bind(config.bind_addr)
            .await
            .map_err(|e| StartupError(format!("cannot listen on {}: {e}", config.bind_addr)))?;
        let addr = listener
            .local_addr()
            .map_err(|e| StartupError(e.to_string()))?;
        let mailer = Mailer::start(db.clone(), &config)
            .await
            .map_err(fail("mailer"))?;
        let audit = Audit::start(db.clone()).await.map_err(fail("audit"))?;
        let limiter = RateLimiter::new(
            config.login_rate_per_ip,
            config.register_rate_per_ip,
            config.refresh_rate_per_ip,
            BAD_SERVICE_KEYS_PER_MINUTE,
            config.mail_request_rate_per_ip,
        );
        let state = Arc::new(AppState {
            config,
            db,
            hasher: Hasher::new(hasher_slot),
            keys,
            token_actor: tokens_slot,
            users: user_cache(),
            hasher_stats,
            actor_restarts,
            memberships,
            revocations,
            limiter,
            mailer,
            audit,
        });
        Ok(Application {
            listener,
            addr,
            state,
            supervisor,
            feed,
            _local_pg: local_pg,
        })
    }

    /// The bound port.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// The shared state (tests inspect caches and counters through it).
    pub fn state(&self) -> Arc<AppState> {
        self.state.clone()
    }

    /// Serves until `shutdown` resolves, drains, then stops the actors.
    pub async fn run_until_stopped(self, shutdown: impl std::future::Future<Output = ()>) {
        tracing::info!(addr = %self.addr, "listening");
        let feed = tokio::spawn(crate::changefeed::run(self.state.clone(), self.feed));
        crate::http::serve(self.listener, self.state.clone(), shutdown).await;
        feed.abort();
        // Events recorded by the last requests are written before the pool goes.
        let _ = self.state.audit.flush().await;
        self.supervisor.stop(None);
        self.state.db.close();
    }
}

/// Resolves on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {},
        () = terminate => {},
    }
}
