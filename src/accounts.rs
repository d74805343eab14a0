//! Account-wide changes that must take effect everywhere at once: ending a
//! user's sessions (password change ends the others, a reset all of them)
//! and deactivating a user.

use uuid::Uuid;

use crate::audit::{action, AuditEvent};
use crate::changefeed::{self, Change};
use crate::db;
use crate::error::ApiError;
use crate::state::AppState;

/// Ends one live session of `user` (logout, or the user ending one of their
/// sessions); false when there is no such live session.
pub async fn end_session(
    app: &AppState,
    sid: Uuid,
    user: Uuid,
    reason: &str,
) -> Result<bool, ApiError> {
    let mut client = app.db.get().await?;
    let tx = client.transaction().await?;
    let ended = db::sessions::revoke(&tx, sid, user, reason).await?;
    if ended {
        publish_ended(&tx, &[sid]).await?;
    }
    tx.commit().await?;
    if ended {
        revoke_here(app, &[sid]);
        tracing::info!(%sid, user_id = %user, reason, "session ended");
    }
    Ok(ended)
}

/// Tells the other instances, on commit of `tx`, that these sessions ended.
async fn publish_ended(
    tx: &impl deadpool_postgres::GenericClient,
    sids: &[Uuid],
) -> Result<(), ApiError> {
    for sid in sids {
        changefeed::publish(tx, &Change::Session { sid: *sid }).await?;
    }
    Ok(())
}

/// Refuses these sessions' tokens on this instance at once, without
/// waiting for our own notification to come back.
fn revoke_here(app: &AppState, sids: &[Uuid]) {
    for sid in sids {
        app.revocations.revoke(*sid);
    }
}

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
    publish_ended(&tx, &ended).await?;
    tx.commit().await?;
    revoke_here(app, &ended);
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
    publish_ended(&tx, &ended).await?;
    tx.commit().await?;
    app.users.invalidate(&user).await;
    revoke_here(app, &ended);
    tracing::info!(user_id = %user, sessions = ended.len(), "user deactivated");
    app.audit.record(AuditEvent {
        actor_id: None,
        ..AuditEvent::account(action::USER_DEACTIVATED, user, None)
    });
    Ok(true)
}
