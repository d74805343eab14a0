//! Queries on `login_throttle`: failed logins per submitted e-mail and the
//! temporary locks they lead to.

use std::time::Duration;

use deadpool_postgres::GenericClient;

use crate::error::ApiError;

/// The throttle state of an e-mail: `None` when it has no failures on
/// record; otherwise how long it stays locked (zero when not locked).
pub async fn status(db: &impl GenericClient, email: &str) -> Result<Option<Duration>, ApiError> {
    let stmt = db
        .prepare_cached(
            "SELECT greatest(extract(epoch FROM locked_until - now()), 0)::float8
             FROM login_throttle WHERE email = $1",
        )
        .await?;
    let row = db.query_opt(&stmt, &[&email]).await?;
    Ok(match row {
        None => None,
        Some(row) => {
            let seconds: Option<f64> = row.try_get(0)?;
            Some(Duration::from_secs_f64(seconds.unwrap_or(0.0).max(0.0)))
        }
    })
}

/// Counts a failure; failures older than `window` start a new count. At
/// `threshold` failures the e-mail is locked for `window`. Returns whether
/// it is locked now.
pub async fn record_failure(
    db: &impl GenericClient,
    email: &str,
    threshold: u32,
    window: Duration,
) -> Result<bool, ApiError> {
    let stmt = db
        .prepare_cached(
            "INSERT INTO login_throttle AS t (email, failures) VALUES ($1, 1)
             ON CONFLICT (email) DO UPDATE SET
                failures = CASE WHEN t.first_failure_at < now() - make_interval(secs => $2::float8)
                                THEN 1 ELSE t.failures + 1 END,
                first_failure_at = CASE WHEN t.first_failure_at < now() - make_interval(secs => $2::float8)
                                THEN now() ELSE t.first_failure_at END
             RETURNING failures",
        )
        .await?;
    let window_secs = window.as_secs_f64();
    let failures: i32 = db
        .query_one(&stmt, &[&email, &window_secs])
        .await?
        .try_get(0)?;
    if failures < threshold as i32 {
        return Ok(false);
    }
    let lock = db
        .prepare_cached(
            "UPDATE login_throttle SET locked_until = now() + make_interval(secs => $2::float8),
                    failures = 0, first_failure_at = now()
             WHERE email = $1",
        )
        .await?;
    db.execute(&lock, &[&email, &window_secs]).await?;
    Ok(true)
}

/// Forgets the failures of an e-mail (after a successful login).
pub async fn clear(db: &impl GenericClient, email: &str) -> Result<(), ApiError> {
    let stmt = db
        .prepare_cached("DELETE FROM login_throttle WHERE email = $1")
        .await?;
    db.execute(&stmt, &[&email]).await?;
    Ok(())
}
