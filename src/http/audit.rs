//! Audit log reads: a workspace's events and a user's own account events,
//! newest first, keyset-paged like `GET /api/workspaces`; and how handlers
//! record a member refused for too low a role.

use http::StatusCode;
use serde::Serialize;
use uuid::Uuid;

use super::paging::{with_next, Page};
use super::request::Request;
use super::response::{timestamp, Reply};
use super::workspaces::{authorize, workspace_id};
use crate::audit::{action, AuditEvent, DENIED};
use crate::db;
use crate::db::audit::{AuditRow, Feed};
use crate::domain::Role;
use crate::error::ApiError;
use crate::state::AppState;

/// The public view of an event.
#[derive(Serialize)]
struct EventOut<'a> {
    id: Uuid,
    at: String,
    actor_id: Option<Uuid>,
    action: &'a str,
    target: Option<&'a str>,
    ip: Option<&'a str>,
    outcome: &'a str,
}

impl<'a> From<&'a AuditRow> for EventOut<'a> {
    fn from(e: &'a AuditRow) -> Self {
        EventOut {
            id: e.id,
            at: timestamp(&e.at),
            actor_id: e.actor_id,
            action: &e.action,
            target: e.target.as_deref(),
            ip: e.ip.as_deref(),
            outcome: &e.outcome,
        }
    }
}

/// `GET /api/auth/audit?limit=&cursor=`: the caller's own account events.
pub async fn mine(app: &AppState, req: &Request) -> Result<Reply, ApiError> {
    let principal = app.authenticate(req.bearer()?).await?;
    let page = Page::parse(req)?;
    read(app, Feed::User(principal.user.id), page).await
}

/// `GET /api/workspaces/{id}/audit?limit=&cursor=`: admins and owners.
pub async fn workspace(app: &AppState, req: &Request, params: &[&str]) -> Result<Reply, ApiError> {
    let principal = app.authenticate(req.bearer()?).await?;
    let workspace = workspace_id(params)?;
    let who = (workspace, principal.user.id, Role::Admin);
    authorize_or_record(app, req, who, action::AUDIT_READ, None).await?;
    let page = Page::parse(req)?;
    read(app, Feed::Workspace(workspace), page).await
}

/// One page of `feed`, after writing what is queued, so the caller's last
/// action is in it.
async fn read(app: &AppState, feed: Feed, page: Page) -> Result<Reply, ApiError> {
    if let Err(e) = app.audit.flush().await {
        // The page may miss the newest events; the read itself may still work.
        tracing::warn!(
            error = e.cause().unwrap_or_default(),
            "audit flush before a read failed"
        );
    }
    let client = app.db.get().await?;
    let mut rows = db::audit::page(&client, feed, page.fetch(), page.after).await?;
    let next = page.finish(&mut rows, |e| (e.at, e.id));
    let out: Vec<EventOut<'_>> = rows.iter().map(EventOut::from).collect();
    Ok(with_next(Reply::json(StatusCode::OK, &out), next))
}

/// Records that `actor`, a member of `workspace`, was refused `action`
/// (on `target`, when known), and returns the 403 to answer with.
pub(super) fn denied(
    app: &AppState,
    req: &Request,
    workspace: Uuid,
    actor: Uuid,
    action: &'static str,
    target: Option<Uuid>,
) -> ApiError {
    let mut event = AuditEvent::workspace(action, workspace, actor, req.peer).outcome(DENIED);
    event.target = target.map(|t| t.to_string());
    app.audit.record(event);
    ApiError::Forbidden
}

/// [`authorize`], recording a 403 as a refusal of `action` (on `target`).
/// Non-members are not recorded: the workspace is none of their business.
pub(super) async fn authorize_or_record(
    app: &AppState,
    req: &Request,
    (workspace, user, min): (Uuid, Uuid, Role),
    action: &'static str,
    target: Option<Uuid>,
) -> Result<Role, ApiError> {
    authorize(app, workspace, user, min)
        .await
        .map_err(|e| match e {
            ApiError::Forbidden => denied(app, req, workspace, user, action, target),
            other => other,
        })
}
