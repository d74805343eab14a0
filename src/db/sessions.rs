//! Queries on `sessions` and `refresh_tokens`.

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
