//! What every request handler shares: the pool, the actor handles, caches.

use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Duration;

use deadpool_postgres::Pool;
use moka::future::Cache;
use uuid::Uuid;

use crate::actors::hasher::HasherStats;
use crate::actors::mailer::Mailer;
use crate::actors::membership::Memberships;
use crate::actors::tokens::{AccessClaims, KeyHandle, TokenError, TokenMsg};
use crate::actors::{ActorSlot, Hasher};
use crate::audit::Audit;
use crate::config::Config;
use crate::db;
use crate::db::users::UserRow;
use crate::error::ApiError;
use crate::ratelimit::RateLimiter;
use crate::revocation::Revocations;

/// Users kept in memory for token checks (`/me` and every protected call).
const USER_CACHE_CAPACITY: u64 = 100_000;
/// A safety net only: writes through this instance invalidate at once.
const USER_CACHE_TTL: Duration = Duration::from_secs(30);

/// Shared state of one running instance.
pub struct AppState {
    /// Validated settings.
    pub config: Config,
    /// PostgreSQL pool.
    pub db: Pool,
    /// The Argon2 pool.
    pub hasher: Hasher,
    /// The current signing/verification keys.
    pub keys: KeyHandle,
    /// The token actor, told to reload keys after a rotation.
    pub token_actor: ActorSlot<TokenMsg>,
    /// User rows by id: `/me` without a database round trip.
    pub users: Cache<Uuid, Arc<UserRow>>,
    /// Hashing pool counters.
    pub hasher_stats: Arc<HasherStats>,
    /// Actor restarts by the supervisor.
    pub actor_restarts: Arc<AtomicU64>,
    /// Workspace roles.
    pub memberships: Memberships,
    /// Revoked sessions and the change feed's health.
    pub revocations: Revocations,
    /// Per-address request limits.
    pub limiter: RateLimiter,
    /// The mail outbox.
    pub mailer: Mailer,
    /// The audit log.
    pub audit: Audit,
}

/// An authenticated caller.
pub struct Principal {
    /// The user, active.
    pub user: Arc<UserRow>,
    /// The claims of the token presented.
    pub claims: AccessClaims,
}

/// A fresh user cache.
pub fn user_cache() -> Cache<Uuid, Arc<UserRow>> {
    Cache::builder()
        .max_capacity(USER_CACHE_CAPACITY)
        .time_to_live(USER_CACHE_TTL)
        .build()
}

impl AppState {
    /// The user with `id`, from the cache or the database (concurrent misses
    /// for one id share one query).
    pub async fn user(&self, id: Uuid) -> Result<Option<Arc<UserRow>>, ApiError> {
        if !self.revocations.trusted() {
            // Without the change feed the cache may be stale: ask the database.
            let client = self.db.get().await?;
            return Ok(db::users::by_id(&client, id).await?.map(Arc::new));
        }
        if let Some(user) = self.users.get(&id).await {
            crate::metrics::cache_hit("users");
            return Ok(Some(user));
        }
        crate::metrics::cache_miss("users");
        let loaded = self
            .users
            .try_get_with(id, async {
                let client = self.db.get().await?;
                match db::users::by_id(&client, id).await? {
                    Some(user) => Ok(Arc::new(user)),
                    None => Err(ApiError::NotFound),
                }
            })
            .await;
        match loaded {
            Ok(user) => Ok(Some(user)),
            Err(e) => match &*e {
                ApiError::NotFound => Ok(None),
                ApiError::Unavailable(cause) => Err(ApiError::Unavailable(cause.clone())),
                other => Err(ApiError::Internal(format!("loading a user: {other:?}"))),
            },
        }
    }

    /// Checks the bearer access token, its session, and that its user is
    /// still active.
    pub async fn authenticate(&self, token: &str) -> Result<Principal, ApiError> {
        let claims = self.keys.current().verify(token).map_err(|e| match e {
            TokenError::Expired => ApiError::Unauthorized("Token has expired"),
            TokenError::Invalid => ApiError::Unauthorized("Could not validate credentials"),
        })?;
        if !self.session_live(claims.sid).await? {
            return Err(ApiError::Unauthorized("Session has ended"));
        }
        match self.user(claims.sub).await? {
            Some(user) if user.is_active => Ok(Principal { user, claims }),
            _ => Err(ApiError::Unauthorized("Could not validate credentials")),
        }
    }

    /// Whether session `sid` is still live: from memory while the change
    /// feed is healthy, else from the database (503 when it cannot answer).
    pub async fn session_live(&self, sid: Uuid) -> Result<bool, ApiError> {
        if self.revocations.is_revoked(sid) {
            return Ok(false);
        }
        if self.revocations.trusted() {
            return Ok(true);
        }
        let client = self.db.get().await?;
        db::sessions::is_live(&client, sid).await
    }
}
