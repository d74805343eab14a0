//! Audit log reads: a workspace's events and a user's own account events,
//! newest first, keyset-paged like `GET /api/workspaces`; and how handlers
//! record a member refused for too low a role.

use http::header::HeaderName;
use http::StatusCode;
use serde::Serialize;
use uuid::Uuid;

use super::request::Request;
use super::response::{timestamp, Reply};
use super::workspaces::{authorize, decode_cursor, encode_cursor, workspace_id};
use crate::audit::{action, AuditEvent, DENIED};
use crate::db;
use crate::db::audit::{AuditRow, Feed};
use crate::domain::Role;
use crate::error::{ApiError, FieldError};
use crate::state::AppState;

const DEFAULT_LIMIT: i64 = 50;
const MAX_LIMIT: i64 = 200;

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

/// A parsed `?limit=&cursor=`.
struct Page {
    limit: i64,
    after: Option<(chrono::DateTime<chrono::Utc>, Uuid)>,
}

impl Page {
    /// Both parameters, every bad one listed.
    fn parse(req: &Request) -> Result<Page, ApiError> {
        let query = req.query_params()?;
        let mut errors = Vec::new();
        let limit = match query.get("limit").map(|raw| raw.trim().parse::<i64>()) {
            None => DEFAULT_LIMIT,
            Some(Ok(n)) if (1..=MAX_LIMIT).contains(&n) => n,
            Some(_) => {
                errors.push(FieldError::new(
                    "limit",
                    format!("must be a whole number from 1 to {MAX_LIMIT}"),
                ));
                DEFAULT_LIMIT
            }
        };
        let after = match query.get("cursor").map(decode_cursor) {
            None => None,
            Some(Some(after)) => Some(after),
            Some(None) => {
                errors.push(FieldError::new(
                    "cursor",
                    "is not a cursor this service issued",
                ));
                None
            }
        };
        if errors.is_empty() {
            Ok(Page { limit, after })
        } else {
            Err(ApiError::Validation(errors))
        }
    }
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
    // One extra row tells whether another page exists.
    let mut rows = db::audit::page(&client, feed, page.limit + 1, page.after).await?;
    let next = if rows.len() as i64 > page.limit {
        rows.truncate(page.limit as usize);
        rows.last().map(|last| encode_cursor(&last.at, last.id))
    } else {
        None
    };
    let out: Vec<EventOut<'_>> = rows.iter().map(EventOut::from).collect();
    let mut reply = Reply::json(StatusCode::OK, &out);
    if let Some(next) = next {
        reply = reply.with_header(HeaderName::from_static("x-next-cursor"), &next);
    }
    Ok(reply)
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
