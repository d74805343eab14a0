//! Queries on `sessions` and `refresh_tokens`.

use std::time::Duration;

use chrono::{DateTime, Utc};
use deadpool_postgres::GenericClient;
use uuid::Uuid;

use crate::error::ApiError;

/// What a new login session records.
pub struct NewSession<'a> {
    /// The `sid`.
    pub id: Uuid,
    /// Whose.
    pub user_id: Uuid,
    /// Absolute end of the session.
    pub expires_at: DateTime<Utc>,
    /// Client address of the login.
    pub ip: Option<&'a str>,
    /// `User-Agent` of the login.
    pub user_agent: Option<&'a str>,
    /// SHA-256 of the first refresh token.
    pub refresh_hash: &'a [u8],
}

/// Starts a session with its first refresh token, in one statement.
pub async fn create(db: &impl GenericClient, s: &NewSession<'_>) -> Result<(), ApiError> {
    let stmt = db
        .prepare_cached(
            "WITH s AS (
                INSERT INTO sessions (id, user_id, expires_at, ip, user_agent)
                VALUES ($1, $2, $3, $4, $5)
                RETURNING id
            )
            INSERT INTO refresh_tokens (token_hash, session_id) SELECT $6, id FROM s",
        )
        .await?;
    db.execute(
        &stmt,
        &[
            &s.id,
            &s.user_id,
            &s.expires_at,
            &s.ip,
            &s.user_agent,
            &s.refresh_hash,
        ],
    )
    .await?;
    Ok(())
}

/// Whether the session exists, is not revoked and has not passed its
/// absolute end.
pub async fn is_live(db: &impl GenericClient, sid: Uuid) -> Result<bool, ApiError> {
    let stmt = db
        .prepare_cached(
            "SELECT 1 FROM sessions WHERE id = $1 AND revoked_at IS NULL AND expires_at > now()",
        )
        .await?;
    Ok(db.query_opt(&stmt, &[&sid]).await?.is_some())
}

/// A live session as listed to its user.
pub struct SessionRow {
    /// The `sid`.
    pub id: Uuid,
    /// Login time.
    pub created_at: DateTime<Utc>,
    /// Last refresh (or the login).
    pub last_used_at: DateTime<Utc>,
    /// Client address of the login.
    pub ip: Option<String>,
    /// `User-Agent` of the login.
    pub user_agent: Option<String>,
}

/// The user's live sessions, newest first.
pub async fn list_live(
    db: &impl GenericClient,
    user: Uuid,
    idle: Duration,
) -> Result<Vec<SessionRow>, ApiError> {
    let stmt = db
        .prepare_cached(
            "SELECT id, created_at, last_used_at, ip, user_agent FROM sessions
             WHERE user_id = $1 AND revoked_at IS NULL AND expires_at > now()
               AND last_used_at > now() - make_interval(secs => $2::float8)
             ORDER BY created_at DESC, id DESC",
        )
        .await?;
    let rows = db.query(&stmt, &[&user, &idle.as_secs_f64()]).await?;
    rows.iter()
        .map(|r| {
            Ok(SessionRow {
                id: r.try_get(0)?,
                created_at: r.try_get(1)?,
                last_used_at: r.try_get(2)?,
                ip: r.try_get(3)?,
                user_agent: r.try_get(4)?,
            })
        })
        .collect::<Result<_, tokio_postgres::Error>>()
        .map_err(ApiError::from)
}

/// Revokes one session of `user`; false when there is no such live session.
pub async fn revoke(
    db: &impl GenericClient,
    sid: Uuid,
    user: Uuid,
    reason: &str,
) -> Result<bool, ApiError> {
    let stmt = db
        .prepare_cached(
            "UPDATE sessions SET revoked_at = now(), revoked_reason = $3
             WHERE id = $1 AND user_id = $2 AND revoked_at IS NULL",
        )
        .await?;
    Ok(db.execute(&stmt, &[&sid, &user, &reason]).await? == 1)
}

/// Revokes every live session of `user` except `keep`; returns their ids.
/// Used by password change (keep the current one), reset and deactivation.
pub async fn revoke_all(
    db: &impl GenericClient,
    user: Uuid,
    keep: Option<Uuid>,
    reason: &str,
) -> Result<Vec<Uuid>, ApiError> {
    let stmt = db
        .prepare_cached(
            "UPDATE sessions SET revoked_at = now(), revoked_reason = $3
             WHERE user_id = $1 AND revoked_at IS NULL AND id IS DISTINCT FROM $2
             RETURNING id",
        )
        .await?;
    let rows = db.query(&stmt, &[&user, &keep, &reason]).await?;
    rows.iter()
        .map(|r| r.try_get(0))
        .collect::<Result<_, _>>()
        .map_err(ApiError::from)
}

/// What a refresh token leads to, locked for the rotation.
pub struct RefreshTarget {
    /// The session.
    pub session_id: Uuid,
    /// Whose.
    pub user_id: Uuid,
    /// Already used once: a second use is theft.
    pub used: bool,
    /// The session still accepts refreshes (not revoked, not past either lifetime).
    pub session_live: bool,
}

/// Finds and locks the refresh token with this hash.
pub async fn lock_refresh(
    db: &impl GenericClient,
    token_hash: &[u8],
    idle: Duration,
) -> Result<Option<RefreshTarget>, ApiError> {
    let stmt = db
        .prepare_cached(
            "SELECT rt.session_id, s.user_id, rt.used_at IS NOT NULL,
                    s.revoked_at IS NULL AND s.expires_at > now()
                    AND s.last_used_at > now() - make_interval(secs => $2::float8)
             FROM refresh_tokens rt JOIN sessions s ON s.id = rt.session_id
             WHERE rt.token_hash = $1
             FOR UPDATE OF rt, s",
        )
        .await?;
    let row = db
        .query_opt(&stmt, &[&token_hash, &idle.as_secs_f64()])
        .await?;
    row.map(|r| {
        Ok(RefreshTarget {
            session_id: r.try_get(0)?,
            user_id: r.try_get(1)?,
            used: r.try_get(2)?,
            session_live: r.try_get(3)?,
        })
    })
    .transpose()
    .map_err(|e: tokio_postgres::Error| ApiError::from(e))
}

/// Spends `old` and stores `new` for the same session, touching its
/// last use.
pub async fn rotate(
    db: &impl GenericClient,
    session: Uuid,
    old: &[u8],
    new: &[u8],
) -> Result<(), ApiError> {
    let stmt = db
        .prepare_cached(
            "WITH spent AS (UPDATE refresh_tokens SET used_at = now() WHERE token_hash = $2),
                  touched AS (UPDATE sessions SET last_used_at = now() WHERE id = $1)
             INSERT INTO refresh_tokens (token_hash, session_id) VALUES ($3, $1)",
        )
        .await?;
    db.execute(&stmt, &[&session, &old, &new]).await?;
    Ok(())
}
