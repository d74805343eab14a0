//! Cross-instance cache invalidation through PostgreSQL LISTEN/NOTIFY.
//!
//! Writers publish a [`Change`] with `pg_notify` inside the transaction that
//! makes the change, so it is delivered exactly when the change commits.
//! Every instance listens on one dedicated connection and applies what it
//! hears. A heartbeat on that connection detects a silent loss; on every
//! (re)connect the instance drops its caches and reloads the revoked set,
//! since notifications sent while it was away are gone.

use std::sync::Arc;
use std::time::Duration;

use deadpool_postgres::GenericClient;
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use tokio_postgres::AsyncMessage;

use crate::db::DbConfig;
use uuid::Uuid;

use crate::actors::membership::MembershipChange;
use crate::error::ApiError;
use crate::state::AppState;

/// The NOTIFY channel.
pub const CHANNEL: &str = "auth_changes";
const HEARTBEAT: Duration = Duration::from_millis(1000);
const HEARTBEAT_TIMEOUT: Duration = Duration::from_secs(2);
const RECONNECT_DELAY: Duration = Duration::from_millis(500);
const PRUNE_EVERY: u32 = 60;

/// One change other instances must apply.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "t", rename_all = "snake_case")]
pub enum Change {
    /// A session was revoked.
    Session {
        /// The session id.
        sid: Uuid,
    },
    /// A user row changed (deactivated, verified, password changed).
    User {
        /// The user id.
        id: Uuid,
    },
    /// A member's role changed or the member was removed.
    Member {
        /// The workspace.
        workspace: Uuid,
        /// The user.
        user: Uuid,
    },
    /// A workspace was deleted or changed.
    Workspace {
        /// The workspace.
        workspace: Uuid,
    },
    /// The signing key set changed (EdDSA rotation).
    Keys,
}

/// Queues `change` for delivery when the current transaction commits.
pub async fn publish(db: &impl GenericClient, change: &Change) -> Result<(), ApiError> {
    let payload = serde_json::to_string(change)
        .map_err(|e| ApiError::Internal(format!("change payload: {e}")))?;
    let stmt = db.prepare_cached("SELECT pg_notify($1, $2)").await?;
    db.execute(&stmt, &[&CHANNEL, &payload]).await?;
    Ok(())
}

/// Applies a change to this instance's caches.
pub async fn apply(app: &AppState, change: &Change) {
    match *change {
        Change::Session { sid } => app.revocations.revoke(sid),
        Change::User { id } => app.users.invalidate(&id).await,
        Change::Member { workspace, user } => {
            app.memberships
                .on_change(MembershipChange::Member { workspace, user })
                .await
        }
        Change::Workspace { workspace } => {
            app.memberships
                .on_change(MembershipChange::Workspace { workspace })
                .await
        }
        Change::Keys => reload_keys(app),
    }
}

fn reload_keys(app: &AppState) {
    if let Some(actor) = app.token_actor.get() {
        // A failed cast means the actor is restarting; its start loads keys.
        let _ = actor.cast(crate::actors::tokens::TokenMsg::Reload);
    }
}

/// Runs the listener until the task is aborted: connect, LISTEN, reload,
/// apply notifications, heartbeat; on any failure mark the feed down and
/// reconnect.
pub async fn run(app: Arc<AppState>, pg: DbConfig) {
    loop {
        if let Err(e) = listen_once(&app, &pg).await {
            tracing::warn!(error = %e, "change feed lost; reconnecting");
        }
        app.revocations.set_feed_up(false);
        app.memberships.set_feed_up(false);
        tokio::time::sleep(RECONNECT_DELAY).await;
    }
}

async fn listen_once(app: &AppState, pg: &DbConfig) -> Result<(), String> {
    let (client, mut connection) = pg
        .pg
        .connect(pg.tls.clone())
        .await
        .map_err(|e| e.to_string())?;
    let (tx, mut notifications) = tokio::sync::mpsc::unbounded_channel();
    let driver = tokio::spawn(async move {
        let mut messages = futures_util::stream::poll_fn(move |cx| connection.poll_message(cx));
        while let Some(message) = messages.next().await {
            match message {
                Ok(AsyncMessage::Notification(n)) => {
                    if tx.send(n.payload().to_owned()).is_err() {
                        break;
                    }
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "change feed connection failed");
                    break;
                }
            }
        }
    });
    let result = async {
        client
            .batch_execute(&format!("LISTEN {CHANNEL}"))
            .await
            .map_err(|e| e.to_string())?;
        // Anything cached may have missed changes while the feed was away.
        let count = app.revocations.reload(&client).await.map_err(|e| e.to_string())?;
        app.users.invalidate_all();
        app.memberships.clear_all().await;
        reload_keys(app);
        app.revocations.set_feed_up(true);
        app.memberships.set_feed_up(true);
        tracing::info!(revoked_sessions = count, "change feed listening");
        let mut beat = tokio::time::interval(HEARTBEAT);
        let mut beats = 0u32;
        loop {
            tokio::select! {
                payload = notifications.recv() => {
                    let Some(payload) = payload else { return Err("connection closed".to_owned()) };
                    match serde_json::from_str::<Change>(&payload) {
                        Ok(change) => apply(app, &change).await,
                        Err(_) => tracing::warn!("ignoring an unreadable change notification"),
                    }
                }
                _ = beat.tick() => {
                    match tokio::time::timeout(HEARTBEAT_TIMEOUT, client.simple_query("SELECT 1")).await {
                        Ok(Ok(_)) => app.revocations.set_feed_up(true),
                        Ok(Err(e)) => return Err(e.to_string()),
                        Err(_) => return Err("heartbeat timed out".to_owned()),
                    }
                    beats += 1;
                    if beats % PRUNE_EVERY == 0 {
                        app.revocations.prune();
                    }
                }
            }
        }
    }
    .await;
    driver.abort();
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changes_roundtrip_as_tagged_json() {
        let sid = Uuid::now_v7();
        let text = serde_json::to_string(&Change::Session { sid }).expect("json");
        assert_eq!(text, format!(r#"{{"t":"session","sid":"{sid}"}}"#));
        let back: Change = serde_json::from_str(&text).expect("parse");
        assert_eq!(back, Change::Session { sid });
        assert!(serde_json::from_str::<Change>(r#"{"t":"nope"}"#).is_err());
    }
}
