//! Account-wide changes that must take effect everywhere at once: ending a
//! user's sessions (password change ends the others, a reset all of them)
//! and deactivating a user.

use uuid::Uuid;

use crate::audit::{action, AuditEvent};
use crate::changefeed::{self, Change};
use crate::db;
use crate::error::ApiError;
use crate::state::AppState;

/// Ends every live session of `user` except `keep`, in the database, on
/// this instance at once, and on every other through the change feed.
/// Returns the ended session ids.
pub async fn end_sessions(
    app: &AppState,
    user: Uuid,
    keep: Option<Uuid>,
    reason: &str,
) -> Result<Vec<Uuid>, ApiError> {
    let mut client = app.db.get().await?;
    let tx = client.transaction().await?;
    let ended = db::sessions::revoke_all(&tx, user, keep, reason).await?;
    for sid in &ended {
        changefeed::publish(&tx, &Change::Session { sid: *sid }).await?;
    }
    tx.commit().await?;
    for sid in &ended {
        app.revocations.revoke(*sid);
    }
    tracing::info!(user_id = %user, sessions = ended.len(), reason, "sessions ended");
    if !ended.is_empty() {
        app.audit.record(AuditEvent {
            actor_id: None,
            ..AuditEvent::account(action::SESSIONS_ENDED, user, None).target(reason)
        });
    }
    Ok(ended)
}

/// Deactivates `user`: no login, no refresh, and every token they hold
/// stops working. Returns false when there is no such user.
pub async fn deactivate(app: &AppState, user: Uuid) -> Result<bool, ApiError> {
    let mut client = app.db.get().await?;
    let tx = client.transaction().await?;
    if !db::users::set_active(&tx, user, false).await? {
        return Ok(false);
    }
    let ended = db::sessions::revoke_all(&tx, user, None, "user_deactivated").await?;
    changefeed::publish(&tx, &Change::User { id: user }).await?;
    for sid in &ended {
        changefeed::publish(&tx, &Change::Session { sid: *sid }).await?;
    }
    tx.commit().await?;
    app.users.invalidate(&user).await;
    for sid in &ended {
        app.revocations.revoke(*sid);
    }
    tracing::info!(user_id = %user, sessions = ended.len(), "user deactivated");
    app.audit.record(AuditEvent {
        actor_id: None,
        ..AuditEvent::account(action::USER_DEACTIVATED, user, None)
    });
    Ok(true)
}
