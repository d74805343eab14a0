//! Queries on `mail_outbox`: mail queued in the transaction that caused it,
//! claimed by one instance at a time, retried with backoff.

use std::time::Duration;

use deadpool_postgres::GenericClient;
use tokio_postgres::Row;
use uuid::Uuid;

use crate::error::ApiError;

/// A queued mail, claimed for sending.
#[derive(Debug, Clone)]
pub struct OutboxRow {
    /// Id.
    pub id: Uuid,
    /// The address it goes to.
    pub recipient: String,
    /// Subject line.
    pub subject: String,
    /// Plain-text body (may hold a live link: never log it).
    pub body: String,
    /// Attempts so far, this one included.
    pub attempts: i32,
}

impl TryFrom<Row> for OutboxRow {
    type Error = tokio_postgres::Error;

    fn try_from(row: Row) -> Result<Self, Self::Error> {
        Ok(OutboxRow {
            id: row.try_get("id")?,
            recipient: row.try_get("recipient")?,
            subject: row.try_get("subject")?,
            body: row
                .try_get::<_, Option<String>>("body")?
                .unwrap_or_default(),
            attempts: row.try_get("attempts")?,
        })
    }
}

/// Queues a mail; call it inside the transaction that makes its reason.
pub async fn insert(
    db: &impl GenericClient,
    recipient: &str,
    subject: &str,
    body: &str,
) -> Result<Uuid, ApiError> {
    let id = Uuid::now_v7();
    let stmt = db
        .prepare_cached(
            "INSERT INTO mail_outbox (id, recipient, subject, body) VALUES ($1, $2, $3, $4)",
        )
        .await?;
    db.execute(&stmt, &[&id, &recipient, &subject, &body])
        .await?;
    Ok(id)
}

/// Claims up to `limit` due mails for `lease`: counts the attempt and moves
/// `next_attempt_at` past the lease, so no other instance takes them while
/// this one sends, and an instance that dies mid-send only delays them.
/// Rows another instance is claiming right now are skipped, not waited for.
pub async fn claim(
    db: &impl GenericClient,
    limit: i64,
    lease: Duration,
    max_attempts: i32,
) -> Result<Vec<OutboxRow>, ApiError> {
    let stmt = db
        .prepare_cached(
            "UPDATE mail_outbox SET attempts = attempts + 1,
                    next_attempt_at = now() + make_interval(secs => $2::float8)
             WHERE id IN (SELECT id FROM mail_outbox
                          WHERE sent_at IS NULL AND failed_at IS NULL
                            AND next_attempt_at <= now() AND attempts < $3
                          ORDER BY next_attempt_at
                          LIMIT $1
                          FOR UPDATE SKIP LOCKED)
             RETURNING id, recipient, subject, body, attempts",
        )
        .await?;
    let lease = lease.as_secs_f64();
    let rows = db.query(&stmt, &[&limit, &lease, &max_attempts]).await?;
    rows.into_iter()
        .map(OutboxRow::try_from)
        .collect::<Result<_, _>>()
        .map_err(ApiError::from)
}

/// Marks a mail delivered and erases its body (the link in it is a secret).
pub async fn mark_sent(db: &impl GenericClient, id: Uuid) -> Result<(), ApiError> {
    let stmt = db
        .prepare_cached(
            "UPDATE mail_outbox SET sent_at = now(), body = NULL, last_error = NULL WHERE id = $1",
        )
        .await?;
    db.execute(&stmt, &[&id]).await?;
    Ok(())
}

/// Records a failed attempt: retry after `retry_in`, or, when `give_up`,
/// mark the mail failed and erase its body.
pub async fn mark_attempt_failed(
    db: &impl GenericClient,
    id: Uuid,
    error: &str,
    retry_in: Duration,
    give_up: bool,
) -> Result<(), ApiError> {
    let stmt = db
        .prepare_cached(
            "UPDATE mail_outbox SET last_error = $2,
                    next_attempt_at = now() + make_interval(secs => $3::float8),
                    failed_at = CASE WHEN $4 THEN now() END,
                    body = CASE WHEN $4 THEN NULL ELSE body END
             WHERE id = $1",
        )
        .await?;
    let retry_in = retry_in.as_secs_f64();
    db.execute(&stmt, &[&id, &error, &retry_in, &give_up])
        .await?;
    Ok(())
}

/// Gives up on mails whose last claim ran out without an outcome (the
/// instance died mid-send) and that have no attempts left; returns how many.
pub async fn fail_exhausted(db: &impl GenericClient, max_attempts: i32) -> Result<u64, ApiError> {
    let stmt = db
        .prepare_cached(
            "UPDATE mail_outbox SET failed_at = now(), body = NULL,
                    last_error = coalesce(last_error, 'no outcome after the last attempt')
             WHERE sent_at IS NULL AND failed_at IS NULL
               AND attempts >= $1 AND next_attempt_at <= now()",
        )
        .await?;
    Ok(db.execute(&stmt, &[&max_attempts]).await?)
}
