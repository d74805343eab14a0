//! Every setting, read from the environment and validated once at start.
//! A bad or missing value is a one-line error naming the variable.

use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

use crate::actors::tokens::SigningAlgorithm;
use crate::domain::Secret;

/// Where the database comes from.
#[derive(Debug, Clone)]
pub enum DatabaseSource {
    /// `DATABASE_URL` as given.
    Url(String),
    /// No `DATABASE_URL`: the service sets up and runs a local PostgreSQL
    /// itself (development only).
    Local,
}

/// Argon2id cost parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Argon2Params {
    /// Memory in KiB (`ARGON2_MEMORY_KIB`).
    pub memory_kib: u32,
    /// Passes over memory (`ARGON2_ITERATIONS`).
    pub iterations: u32,
    /// Lanes (`ARGON2_PARALLELISM`).
    pub parallelism: u32,
}

impl Default for Argon2Params {
    /// OWASP's recommendation for Argon2id.
    fn default() -> Self {
        Argon2Params {
            memory_kib: 19_456,
            iterations: 2,
            parallelism: 1,
        }
    }
}

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// One human-readable line per event.
    Human,
    /// One JSON object per line.
    Json,
}

/// The whole configuration of one instance.
#[derive(Clone)]
pub struct Config {
    /// PostgreSQL to use.
    pub database: DatabaseSource,
    /// Database pool size (`DB_POOL_SIZE`).
    pub db_pool_size: usize,
    /// HS256 signing key (`JWT_SECRET_KEY`); `None` only with a local database,
    /// where the service makes and keeps one of its own.
    pub jwt_secret_key: Option<Secret>,
    /// Application secret (`SECRET_KEY`); same rule as the JWT key.
    pub secret_key: Option<Secret>,
    /// Signing algorithm (`JWT_ALGORITHM`).
    pub jwt_algorithm: SigningAlgorithm,
    /// Access token lifetime.
    pub jwt_expiration: Duration,
    /// `iss` claim.
    pub jwt_issuer: String,
    /// `aud` claim, when set.
    pub jwt_audience: Option<String>,
    /// Listen address.
    pub bind_addr: SocketAddr,
    /// Apply pending migrations at start.
    pub migrate_on_start: bool,
    /// Argon2 hashing threads (`HASH_WORKERS`, default: cores).
    pub hash_workers: usize,
    /// Queued hashes beyond the running ones (`HASH_QUEUE_BOUND`); `None`
    /// sizes it from a measured hash so a queued request waits about 200 ms.
    pub hash_queue_bound: Option<usize>,
    /// Argon2id cost.
    pub argon2: Argon2Params,
    /// Concurrent client connections (`MAX_CONNECTIONS`).
    pub max_connections: usize,
    /// Time a client has to send its request headers (`HEADER_READ_TIMEOUT_SECONDS`).
    pub header_read_timeout: Duration,
    /// How long in-flight requests get to finish at shutdown (`SHUTDOWN_GRACE_SECONDS`).
    pub shutdown_grace: Duration,
    /// A session ends after this long without a refresh.
    pub session_idle: Duration,
    /// A session ends this long after its login, whatever happens.
    pub session_absolute: Duration,
    /// Log format.
    pub log_format: LogFormat,
    /// Service keys allowed to call introspection (`INTROSPECTION_KEYS`).
    pub introspection_keys: Vec<ServiceKey>,
    /// Base of the links in mails and of the discovery document.
    pub public_base_url: String,
    /// How long caches are trusted without the change feed.
    pub revocation_staleness: Duration,
    /// A workspace's membership actor stops after this long without a
    /// lookup (`MEMBERSHIP_IDLE_SECONDS`).
    pub membership_idle: Duration,
    /// Login attempts per client address per minute.
    pub login_rate_per_ip: u32,
    /// Registrations per client address per minute.
    pub register_rate_per_ip: u32,
    /// Refresh exchanges per client address per minute.
    pub refresh_rate_per_ip: u32,
    /// Failed logins for one e-mail before it is locked.
    pub login_failures_before_lock: u32,
    /// How long a lock lasts (and the window failures are counted in).
    pub login_lock: Duration,
    /// Proxies whose `X-Forwarded-For` is believed.
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// Browser origins that get CORS headers (`CORS_ALLOWED_ORIGINS`), exact match.
    pub cors_allowed_origins: Vec<String>,
    /// Serve `/docs`, `/redoc` and `/openapi.json` (`DOCS_ENABLED`).
    pub docs_enabled: bool,
    /// Serve `/metrics` (`METRICS_ENABLED`).
    pub metrics_enabled: bool,
    /// SMTP server for the outbox (`SMTP_URL`: `smtp://host:port`,
    /// `smtps://...` or `smtp://...?tls=required`, optionally `user:pass@`);
    /// a secret, since it may carry a password. `None`: mails go to the log
    /// (recipient and subject only).
    pub smtp_url: Option<Secret>,
    /// Sender of every mail (`MAIL_FROM`).
    pub mail_from: String,
    /// Verification and reset requests per client address per minute
    /// (`MAIL_REQUEST_RATE_PER_IP_PER_MINUTE`).
    pub mail_request_rate_per_ip: u32,
    /// Delivery attempts before a mail is marked failed (`MAIL_MAX_ATTEMPTS`).
    pub mail_max_attempts: u32,
}

/// A named service key for introspection.
#[derive(Clone)]
pub struct ServiceKey {
    /// Shown in logs and metrics (`name:key`; `key<N>` when unnamed).
    pub name: String,
    /// The key itself.
    pub key: Secret,
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Secrets are wrapped and redact themselves; the URL may carry a password.
        f.debug_struct("Config")
            .field("bind_addr", &self.bind_addr)
            .field("jwt_issuer", &self.jwt_issuer)
            .field("hash_workers", &self.hash_workers)
            .finish_non_exhaustive()
    }
}

/// A configuration error: one line naming the variable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError(pub String);

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ConfigError {}

const DAY: u64 = 24 * 60 * 60;

impl Config {
    /// Reads the process environment.
    pub fn from_env() -> Result<Config, ConfigError> {
        Config::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads settings through `get` (the environment, or a map in tests).
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
        let var = |name: &str| get(name).filter(|v| !v.trim().is_empty());
        let database = match var("DATABASE_URL") {
            Some(url) => {
                crate::db::tls::parse(&url).map_err(ConfigError)?;
                DatabaseSource::Url(url)
            }
            None => DatabaseSource::Local,
        };
        let local = matches!(database, DatabaseSource::Local);
        let jwt_secret_key = match var("JWT_SECRET_KEY") {
            Some(key) if key.len() >= 32 => Some(Secret::new(key)),
            Some(_) => {
                return Err(ConfigError(
                    "JWT_SECRET_KEY must be at least 32 bytes".into(),
                ))
            }
            None if local => None,
            None => {
                return Err(ConfigError(
                    "JWT_SECRET_KEY is required (at least 32 bytes)".into(),
                ))
            }
        };
        let secret_key = match var("SECRET_KEY") {
            Some(key) if key.len() >= 16 => Some(Secret::new(key)),
            Some(_) => return Err(ConfigError("SECRET_KEY must be at least 16 bytes".into())),
            None if local => None,
            None => return Err(ConfigError("SECRET_KEY is required".into())),
        };
        let jwt_algorithm = match var("JWT_ALGORITHM").as_deref() {
            None | Some("HS256") => SigningAlgorithm::Hs256,
            Some("EdDSA") => SigningAlgorithm::EdDsa,
            Some(other) => {
                return Err(ConfigError(format!(
                    "JWT_ALGORITHM must be HS256 or EdDSA (got {other:?})"
                )))
            }
        };
        let minutes: u64 = number(&var, "JWT_EXPIRATION_MINUTES", 30, 1, 24 * 60)?;
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        let argon2 = Argon2Params {
            memory_kib: number(&var, "ARGON2_MEMORY_KIB", 19_456, 8, 4 * 1024 * 1024)?,
            iterations: number(&var, "ARGON2_ITERATIONS", 2, 1, 100)?,
            parallelism: number(&var, "ARGON2_PARALLELISM", 1, 1, 64)?,
        };
        if argon2.memory_kib < 8 * argon2.parallelism {
            return Err(ConfigError(
                "ARGON2_MEMORY_KIB must be at least 8 x ARGON2_PARALLELISM".into(),
            ));
        }
        let idle_days: u64 = number(&var, "SESSION_IDLE_DAYS", 14, 1, 3650)?;
        let absolute_days: u64 = number(&var, "SESSION_ABSOLUTE_DAYS", 30, 1, 3650)?;
        let hash_queue_bound = match var("HASH_QUEUE_BOUND") {
            None => None,
            Some(_) => Some(number(&var, "HASH_QUEUE_BOUND", 0, 0, 1_000_000)?),
        };
        Ok(Config {
            database,
            db_pool_size: number(&var, "DB_POOL_SIZE", 16, 1, 1000)?,
            jwt_secret_key,
            secret_key,
            jwt_algorithm,
            jwt_expiration: Duration::from_secs(minutes * 60),
            jwt_issuer: var("JWT_ISSUER").unwrap_or_else(|| "auth-service".into()),
            jwt_audience: var("JWT_AUDIENCE"),
            bind_addr: match var("BIND_ADDR") {
                None => SocketAddr::from(([0, 0, 0, 0], 8001)),
                Some(addr) => addr.parse().map_err(|_| {
                    ConfigError(format!(
                        "BIND_ADDR must be host:port, like 0.0.0.0:8001 (got {addr:?})"
                    ))
                })?,
            },
            migrate_on_start: boolean(&var, "MIGRATE_ON_START", true)?,
            hash_workers: number(&var, "HASH_WORKERS", cores, 1, 256)?,
            hash_queue_bound,
            argon2,
            max_connections: number(&var, "MAX_CONNECTIONS", 10_000, 1, 1_000_000)?,
            header_read_timeout: Duration::from_secs(number(
                &var,
                "HEADER_READ_TIMEOUT_SECONDS",
                10,
                1,
                300,
            )?),
            shutdown_grace: Duration::from_secs(number(
                &var,
                "SHUTDOWN_GRACE_SECONDS",
                10,
                0,
                600,
            )?),
            session_idle: Duration::from_secs(idle_days * DAY),
            session_absolute: Duration::from_secs(absolute_days * DAY),
            membership_idle: Duration::from_secs(number(
                &var,
                "MEMBERSHIP_IDLE_SECONDS",
                300,
                1,
                86_400,
            )?),
            cors_allowed_origins: var("CORS_ALLOWED_ORIGINS")
                .map(|raw| {
                    raw.split(',')
                        .map(|o| o.trim().trim_end_matches('/').to_owned())
                        .filter(|o| !o.is_empty())
                        .collect()
                })
                .unwrap_or_default(),
            login_rate_per_ip: number(&var, "LOGIN_RATE_PER_IP_PER_MINUTE", 600, 1, 10_000_000)?,
            register_rate_per_ip: number(
                &var,
                "REGISTER_RATE_PER_IP_PER_MINUTE",
                600,
                1,
                10_000_000,
            )?,
            refresh_rate_per_ip: number(
                &var,
                "REFRESH_RATE_PER_IP_PER_MINUTE",
                1200,
                1,
                10_000_000,
            )?,
            login_failures_before_lock: number(
                &var,
                "LOGIN_FAILURES_BEFORE_LOCK",
                10,
                1,
                1_000_000,
            )?,
            login_lock: Duration::from_secs(
                60 * number(&var, "LOGIN_LOCK_MINUTES", 15u64, 1, 24 * 60)?,
            ),
            trusted_proxies: match var("TRUSTED_PROXIES") {
                None => Vec::new(),
                Some(raw) => raw
                    .split(',')
                    .map(str::trim)
                    .filter(|p| !p.is_empty())
                    .map(|p| {
                        p.parse::<ipnet::IpNet>()
                            .or_else(|_| p.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
                            .map_err(|_| {
                                ConfigError(format!(
                                    "TRUSTED_PROXIES: {p:?} is not a CIDR or address"
                                ))
                            })
                    })
                    .collect::<Result<_, _>>()?,
            },
            introspection_keys: service_keys(var("INTROSPECTION_KEYS").as_deref())?,
            public_base_url: var("PUBLIC_BASE_URL")
                .unwrap_or_else(|| "http://localhost:8001".into())
                .trim_end_matches('/')
                .to_owned(),
            revocation_staleness: Duration::from_secs(number(
                &var,
                "REVOCATION_STALENESS_SECONDS",
                10,
                1,
                3600,
            )?),
            smtp_url: match var("SMTP_URL") {
                None => None,
                Some(url) => Some(smtp_url(url)?),
            },
            mail_from: mail_from(var("MAIL_FROM"))?,
            mail_request_rate_per_ip: number(
                &var,
                "MAIL_REQUEST_RATE_PER_IP_PER_MINUTE",
                60,
                1,
                10_000_000,
            )?,
            mail_max_attempts: number(&var, "MAIL_MAX_ATTEMPTS", 10, 1, 100)?,
            docs_enabled: boolean(&var, "DOCS_ENABLED", true)?,
            metrics_enabled: boolean(&var, "METRICS_ENABLED", true)?,
            log_format: match var("LOG_FORMAT").as_deref() {
                None | Some("human") => LogFormat::Human,
                Some("json") => LogFormat::Json,
                Some(other) => {
                    return Err(ConfigError(format!(
                        "LOG_FORMAT must be human or json (got {other:?})"
                    )))
                }
            },
        })
    }
}

/// An SMTP URL lettre can use. The error never repeats the URL: it may
/// carry a password.
fn smtp_url(url: String) -> Result<Secret, ConfigError> {
    let scheme_ok = url.starts_with("smtp://") || url.starts_with("smtps://");
    if !scheme_ok || lettre::AsyncSmtpTransport::<lettre::Tokio1Executor>::from_url(&url).is_err() {
        return Err(ConfigError(
            "SMTP_URL must be smtp://host:port, smtps://host:port or smtp://host:port?tls=required"
                .into(),
        ));
    }
    Ok(Secret::new(url))
}

/// `MAIL_FROM`: an address, optionally with a name (`Auth <auth@example.com>`).
fn mail_from(raw: Option<String>) -> Result<String, ConfigError> {
    let from = raw.unwrap_or_else(|| "auth-service@localhost".into());
    match from.trim().parse::<lettre::message::Mailbox>() {
        Ok(_) => Ok(from.trim().to_owned()),
        Err(_) => Err(ConfigError(format!(
            "MAIL_FROM must be an e-mail address, optionally with a name (got {from:?})"
        ))),
    }
}

/// `key` or `name:key`, comma-separated; keys of at least 16 bytes.
fn service_keys(raw: Option<&str>) -> Result<Vec<ServiceKey>, ConfigError> {
    let Some(raw) = raw else {
        return Ok(Vec::new());
    };
    let mut keys = Vec::new();
    for (n, entry) in raw
        .split(',')
        .map(str::trim)
        .filter(|e| !e.is_empty())
        .enumerate()
    {
        let (name, key) = match entry.split_once(':') {
            Some((name, key)) if !name.is_empty() => (name.to_owned(), key),
            _ => (format!("key{}", n + 1), entry),
        };
        if key.len() < 16 {
            return Err(ConfigError(format!(
                "INTROSPECTION_KEYS: key {name:?} must be at least 16 bytes"
            )));
        }
        keys.push(ServiceKey {
            name,
            key: Secret::new(key),
        });
    }
    Ok(keys)
}

fn number<T>(
    var: &impl Fn(&str) -> Option<String>,
    name: &str,
    default: T,
    min: T,
    max: T,
) -> Result<T, ConfigError>
where
    T: std::str::FromStr + PartialOrd + fmt::Display + Copy,
{
    let Some(raw) = var(name) else {
        return Ok(default);
    };
    match raw.trim().parse::<T>() {
        Ok(n) if n >= min && n <= max => Ok(n),
        _ => Err(ConfigError(format!(
            "{name} must be a whole number from {min} to {max} (got {raw:?})"
        ))),
    }
}

fn boolean(
    var: &impl Fn(&str) -> Option<String>,
    name: &str,
    default: bool,
) -> Result<bool, ConfigError> {
    match var(name).map(|v| v.trim().to_ascii_lowercase()).as_deref() {
        None => Ok(default),
        Some("true" | "1" | "yes" | "on") => Ok(true),
        Some("false" | "0" | "no" | "off") => Ok(false),
        Some(other) => Err(ConfigError(format!(
            "{name} must be true or false (got {other:?})"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn config(pairs: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        Config::from_lookup(|name| map.get(name).cloned())
    }

    const KEY: &str = "0123456789abcdef0123456789abcdef";

    #[test]
    fn defaults_follow_the_contract() {
        let c = config(&[
            ("DATABASE_URL", "postgres://u@localhost/db"),
            ("JWT_SECRET_KEY", KEY),
            ("SECRET_KEY", KEY),
        ])
        .expect("valid");
        assert_eq!(c.jwt_expiration, Duration::from_secs(1800));
        assert_eq!(c.jwt_issuer, "auth-service");
        assert_eq!(c.bind_addr.port(), 8001);
        assert!(c.migrate_on_start);
        assert_eq!(
            c.argon2,
            Argon2Params {
                memory_kib: 19_456,
                iterations: 2,
                parallelism: 1
            }
        );
        assert_eq!(c.session_idle, Duration::from_secs(14 * DAY));
    }

    #[test]
    fn secrets_are_required_with_a_real_database() {
        let err = config(&[
            ("DATABASE_URL", "postgres://u@localhost/db"),
            ("SECRET_KEY", KEY),
        ])
        .unwrap_err();
        assert!(err.0.contains("JWT_SECRET_KEY"), "{err}");
        let err = config(&[
            ("DATABASE_URL", "postgres://u@localhost/db"),
            ("JWT_SECRET_KEY", "short"),
            ("SECRET_KEY", KEY),
        ])
        .unwrap_err();
        assert!(err.0.contains("32 bytes"), "{err}");
        // Without DATABASE_URL the local development setup makes its own.
        assert!(config(&[]).expect("local").jwt_secret_key.is_none());
    }

    #[test]
    fn introspection_keys_may_be_named() {
        let c = config(&[(
            "INTROSPECTION_KEYS",
            "billing:aaaaaaaaaaaaaaaa, bbbbbbbbbbbbbbbb",
        )])
        .expect("valid");
        let names: Vec<&str> = c
            .introspection_keys
            .iter()
            .map(|k| k.name.as_str())
            .collect();
        assert_eq!(names, ["billing", "key2"]);
        assert_eq!(c.introspection_keys[1].key.expose(), "bbbbbbbbbbbbbbbb");
        let err = config(&[("INTROSPECTION_KEYS", "svc:short")]).unwrap_err();
        assert!(err.0.contains("INTROSPECTION_KEYS"), "{err}");
        assert!(
            !err.0.contains("short"),
            "the key itself never shows: {err}"
        );
    }

    #[test]
    fn bad_values_name_their_variable() {
        for (name, value) in [
            ("JWT_EXPIRATION_MINUTES", "0"),
            ("JWT_EXPIRATION_MINUTES", "ten"),
            ("BIND_ADDR", "nowhere"),
            ("MIGRATE_ON_START", "maybe"),
            ("HASH_WORKERS", "-1"),
            ("JWT_ALGORITHM", "none"),
            ("DATABASE_URL", "not a url at all ="),
            ("SMTP_URL", "http://mail.example.com"),
            ("MAIL_FROM", "not an address"),
        ] {
            let err = config(&[(name, value)]).expect_err(name);
            assert!(err.0.contains(name), "{name}: {err}");
            assert!(!err.0.contains('\n'));
        }
    }

    #[test]
    fn smtp_settings_parse_and_keep_the_password_out_of_errors() {
        let c = config(&[("SMTP_URL", "smtps://user:pw@mail.example.com:465")]).expect("valid");
        assert!(c.smtp_url.is_some());
        assert_eq!(c.mail_from, "auth-service@localhost");
        assert!(config(&[("SMTP_URL", "smtp://127.0.0.1:2525?tls=required")]).is_ok());
        let err = config(&[("SMTP_URL", "ftp://user:hunter2@mail.example.com")]).unwrap_err();
        assert!(!err.0.contains("hunter2"), "{err}");
    }
}
