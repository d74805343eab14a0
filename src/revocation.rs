//! The revoked-session set every token validation consults.
//!
//! Each instance keeps the ids of revoked sessions in memory, loaded at
//! start and kept current by the change feed, so validating a token costs no
//! database round trip. A session id is forgotten once every access token
//! that could carry it has expired. While the change feed is down, the set
//! is trusted for `REVOCATION_STALENESS_SECONDS` only; after that each
//! validation asks the database, and fails closed (503) when it cannot.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, RwLock};
use std::time::{Duration, Instant};

use uuid::Uuid;

use crate::error::ApiError;

/// Revoked sessions and the health of the feed that keeps them current.
pub struct Revocations {
    /// Revoked session id → Unix time after which it can be forgotten.
    revoked: RwLock<HashMap<Uuid, i64>>,
    /// The change feed is connected and listening.
    feed_up: AtomicBool,
    /// When the feed was last known to be up.
    feed_seen: Mutex<Instant>,
    /// How long the set is trusted without the feed.
    staleness: Duration,
    /// Access-token lifetime plus leeway: how long a revoked id matters.
    remember: Duration,
}

impl Revocations {
    /// An empty set; the feed counts as down until it connects.
    pub fn new(staleness: Duration, token_lifetime: Duration) -> Revocations {
        Revocations {
            revoked: RwLock::new(HashMap::new()),
            feed_up: AtomicBool::new(false),
            feed_seen: Mutex::new(Instant::now()),
            staleness,
            remember: token_lifetime + Duration::from_secs(60),
        }
    }

    /// Whether the in-memory state may be trusted without the database.
    pub fn trusted(&self) -> bool {
        if self.feed_up.load(Ordering::Acquire) {
            return true;
        }
        let seen = *self.feed_seen.lock().unwrap_or_else(|p| p.into_inner());
        seen.elapsed() < self.staleness
    }

    /// Records the feed's state.
    pub fn set_feed_up(&self, up: bool) {
        let mut seen = self.feed_seen.lock().unwrap_or_else(|p| p.into_inner());
        if up || self.feed_up.load(Ordering::Acquire) {
            // Going down: the last moment it was known up is now.
            *seen = Instant::now();
        }
        self.feed_up.store(up, Ordering::Release);
    }

    /// Marks `sid` revoked on this instance now.
    pub fn revoke(&self, sid: Uuid) {
        let forget_at = chrono::Utc::now().timestamp() + self.remember.as_secs() as i64;
        self.revoked
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(sid, forget_at);
    }

    /// Whether `sid` is known revoked here.
    pub fn is_revoked(&self, sid: Uuid) -> bool {
        self.revoked
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .contains_key(&sid)
    }

    /// Drops ids that no live token can carry any more.
    pub fn prune(&self) {
        let now = chrono::Utc::now().timestamp();
        self.revoked
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|_, forget_at| *forget_at > now);
    }

    /// Replaces the set with what the database says (at start, and after
    /// the feed reconnects: notifications may have been missed).
    pub async fn reload(&self, db: &tokio_postgres::Client) -> Result<usize, ApiError> {
        let window = self.remember.as_secs_f64();
        let rows = db
            .query(
                "SELECT id, (extract(epoch FROM revoked_at) + $1::float8)::int8
                 FROM sessions
                 WHERE revoked_at IS NOT NULL AND revoked_at > now() - make_interval(secs => $1::float8)",
                &[&window],
            )
            .await?;
        let fresh: HashMap<Uuid, i64> = rows
            .iter()
            .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
            .collect::<Result<_, tokio_postgres::Error>>()?;
        let count = fresh.len();
        *self.revoked.write().unwrap_or_else(|p| p.into_inner()) = fresh;
        Ok(count)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn revoked_ids_are_remembered_then_pruned() {
        let r = Revocations::new(Duration::from_secs(10), Duration::from_secs(0));
        let sid = Uuid::now_v7();
        r.revoke(sid);
        assert!(r.is_revoked(sid));
        assert!(!r.is_revoked(Uuid::now_v7()));
        // Remembered for the token lifetime plus a minute: still there.
        r.prune();
        assert!(r.is_revoked(sid));
    }

    #[test]
    fn trust_lasts_only_the_staleness_window_without_the_feed() {
        let r = Revocations::new(Duration::from_millis(50), Duration::from_secs(1800));
        r.set_feed_up(true);
        assert!(r.trusted());
        r.set_feed_up(false);
        assert!(r.trusted(), "just lost: still within the window");
        std::thread::sleep(Duration::from_millis(80));
        assert!(!r.trusted(), "window over: the database must be asked");
        r.set_feed_up(true);
        assert!(r.trusted());
    }
}
