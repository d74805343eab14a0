//! Queries on `one_time_tokens`: e-mail verification and password reset
//! links. Tokens are looked up by their SHA-256 only.

use std::time::Duration;

use deadpool_postgres::GenericClient;
use uuid::Uuid;

use crate::error::ApiError;

/// What a token may be used for; a token of one purpose never serves another.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// Proves the account's e-mail address.
    VerifyEmail,
    /// Sets a new password without the old one.
    PasswordReset,
}

impl Purpose {
    /// The stored name (the table's CHECK constraint lists them).
    pub fn as_str(self) -> &'static str {
        match self {
            Purpose::VerifyEmail => "verify_email",
            Purpose::PasswordReset => "password_reset",
        }
    }

    /// How long a token of this purpose stays usable: a reset link grants
    /// the account, so it lives far shorter than a verification link.
    pub fn lifetime(self) -> Duration {
        match self {
            Purpose::VerifyEmail => Duration::from_secs(24 * 60 * 60),
            Purpose::PasswordReset => Duration::from_secs(60 * 60),
        }
    }
}

/// Stores a new token for `user`.
pub async fn insert(
    db: &impl GenericClient,
    token_hash: &[u8],
    user: Uuid,
    purpose: Purpose,
) -> Result<(), ApiError> {
    let stmt = db
        .prepare_cached(
            "INSERT INTO one_time_tokens (token_hash, user_id, purpose, expires_at)
             VALUES ($1, $2, $3, now() + make_interval(secs => $4::float8))",
        )
        .await?;
    let lifetime = purpose.lifetime().as_secs_f64();
    db.execute(&stmt, &[&token_hash, &user, &purpose.as_str(), &lifetime])
        .await?;
    Ok(())
}

/// Whether `user` was sent a still-usable token of `purpose` less than
/// `within` ago (then a new request sends nothing: no mailbox flooding).
pub async fn recently_issued(
    db: &impl GenericClient,
    user: Uuid,
    purpose: Purpose,
    within: Duration,
) -> Result<bool, ApiError> {
    let stmt = db
        .prepare_cached(
            "SELECT EXISTS (SELECT 1 FROM one_time_tokens
                 WHERE user_id = $1 AND purpose = $2 AND used_at IS NULL
                   AND expires_at > now()
                   AND created_at > now() - make_interval(secs => $3::float8))",
        )
        .await?;
    let within = within.as_secs_f64();
    let row = db
        .query_one(&stmt, &[&user, &purpose.as_str(), &within])
        .await?;
    Ok(row.try_get(0)?)
}

/// Spends every unused token of `purpose` that `user` holds (a newer one
/// replaces them, or the password they would reset has just changed).
pub async fn revoke_unused(
    db: &impl GenericClient,
    user: Uuid,
    purpose: Purpose,
) -> Result<u64, ApiError> {
    let stmt = db
        .prepare_cached(
            "UPDATE one_time_tokens SET used_at = now()
             WHERE user_id = $1 AND purpose = $2 AND used_at IS NULL",
        )
        .await?;
    Ok(db.execute(&stmt, &[&user, &purpose.as_str()]).await?)
}

/// The user of a usable (unused, unexpired) token of `purpose`, without
/// spending it.
pub async fn peek(
    db: &impl GenericClient,
    token_hash: &[u8],
    purpose: Purpose,
) -> Result<Option<Uuid>, ApiError> {
    let stmt = db
        .prepare_cached(
            "SELECT user_id FROM one_time_tokens
             WHERE token_hash = $1 AND purpose = $2 AND used_at IS NULL AND expires_at > now()",
        )
        .await?;
    let row = db
        .query_opt(&stmt, &[&token_hash, &purpose.as_str()])
        .await?;
    Ok(row.map(|r| r.try_get(0)).transpose()?)
}

/// Spends a usable token of `purpose` and returns its user; `None` when it
/// is unknown, used, expired or meant for another purpose. One statement,
/// so of two concurrent uses exactly one wins.
pub async fn consume(
    db: &impl GenericClient,
    token_hash: &[u8],
    purpose: Purpose,
) -> Result<Option<Uuid>, ApiError> {
    let stmt = db
        .prepare_cached(
            "UPDATE one_time_tokens SET used_at = now()
             WHERE token_hash = $1 AND purpose = $2 AND used_at IS NULL AND expires_at > now()
             RETURNING user_id",
        )
        .await?;
    let row = db
        .query_opt(&stmt, &[&token_hash, &purpose.as_str()])
        .await?;
    Ok(row.map(|r| r.try_get(0)).transpose()?)
}
