//! `/api/workspaces` and `/api/workspaces/{id}`: create, list, read,
//! rename or re-tier, delete; and the membership check every workspace
//! endpoint starts with.

use http::StatusCode;
use serde::Serialize;
use uuid::Uuid;

use super::audit::{authorize_or_record, denied};
use super::paging::{with_next, Page};
use super::request::{missing, Request};
use super::response::{timestamp, Reply};
use crate::actors::membership::MembershipChange;
use crate::audit::{action, AuditEvent};
use crate::changefeed::{self, Change};
use crate::db;
use crate::db::workspaces::WorkspaceRow;
use crate::domain::{PlanTier, Role, WorkspaceName};
use crate::error::{ApiError, FieldError};
use crate::state::AppState;

/// The public view of a workspace.
#[derive(Serialize)]
pub struct WorkspaceOut<'a> {
    id: Uuid,
    name: &'a str,
    owner_id: Uuid,
    plan_tier: &'a str,
    created_at: String,
}

impl<'a> From<&'a WorkspaceRow> for WorkspaceOut<'a> {
    fn from(w: &'a WorkspaceRow) -> Self {
        WorkspaceOut {
            id: w.id,
            name: &w.name,
            owner_id: w.owner_id,
            plan_tier: &w.plan_tier,
            created_at: timestamp(&w.created_at),
        }
    }
}

/// `POST /api/workspaces`.
pub async fn create(app: &AppState, req: &Request) -> Result<Reply, ApiError> {
    let principal = app.authenticate(req.bearer()?).await?;
    let body = req.json()?;
    let (name, plan) = (body.string("name")?, body.string("plan_tier")?);
    let mut errors = Vec::new();
    let name = match name {
        None => {
            errors.push(missing("name"));
            None
        }
        Some(raw) => parse_name(raw, &mut errors),
    };
    let plan = match plan {
        None => Some(PlanTier::default()),
        Some(raw) => parse_plan(raw, &mut errors),
    };
    let (Some(name), Some(plan)) = (name, plan) else {
        return Err(ApiError::Validation(errors));
    };
    let client = app.db.get().await?;
    let workspace = db::workspaces::create(
        &client,
        Uuid::now_v7(),
        name.as_str(),
        principal.user.id,
        plan,
    )
    .await?;
    tracing::info!(workspace_id = %workspace.id, user_id = %principal.user.id, "workspace created");
    app.audit.record(AuditEvent::workspace(
        action::WORKSPACE_CREATED,
        workspace.id,
        principal.user.id,
        req.peer,
    ));
    Ok(Reply::json(
        StatusCode::CREATED,
        &WorkspaceOut::from(&workspace),
    ))
}

/// `GET /api/workspaces?limit=&cursor=`: the caller's workspaces, newest
/// first; `X-Next-Cursor` when there are more.
pub async fn list(app: &AppState, req: &Request) -> Result<Reply, ApiError> {
    let principal = app.authenticate(req.bearer()?).await?;
    let page = Page::parse(req)?;
    let client = app.db.get().await?;
    let mut rows =
        db::workspaces::list_for_member(&client, principal.user.id, page.fetch(), page.after)
            .await?;
    let next = page.finish(&mut rows, |w| (w.created_at, w.id));
    let out: Vec<WorkspaceOut<'_>> = rows.iter().map(WorkspaceOut::from).collect();
    Ok(with_next(Reply::json(StatusCode::OK, &out), next))
}

/// The caller's role in `workspace` with the fields a workspace has.
#[derive(Serialize)]
struct WorkspaceWithRole<'a> {
    #[serde(flatten)]
    workspace: WorkspaceOut<'a>,
    role: &'static str,
}

/// `GET /api/workspaces/{id}`: the workspace and the caller's role in it.
pub async fn get(app: &AppState, req: &Request, params: &[&str]) -> Result<Reply, ApiError> {
    let principal = app.authenticate(req.bearer()?).await?;
    let workspace = workspace_id(params)?;
    authorize(app, workspace, principal.user.id, Role::Viewer).await?;
    let client = app.db.get().await?;
    let (row, role) = db::members::workspace_for_member(&client, workspace, principal.user.id)
        .await?
        .ok_or(ApiError::NotFound)?;
    Ok(Reply::json(
        StatusCode::OK,
        &WorkspaceWithRole {
            workspace: WorkspaceOut::from(&row),
            role: role.as_str(),
        },
    ))
}

/// `PATCH /api/workspaces/{id}` with `{"name"?, "plan_tier"?}`: admins and
/// owners rename or re-tier; an absent field is kept.
pub async fn update(app: &AppState, req: &Request, params: &[&str]) -> Result<Reply, ApiError> {
    let principal = app.authenticate(req.bearer()?).await?;
    let workspace = workspace_id(params)?;
    let me = principal.user.id;
    let act = action::WORKSPACE_UPDATED;
    authorize_or_record(app, req, (workspace, me, Role::Admin), act, None).await?;
    let body = req.json()?;
    let (name, plan) = (body.string("name")?, body.string("plan_tier")?);
    let mut errors = Vec::new();
    let name = name.and_then(|raw| parse_name(raw, &mut errors));
    let plan = plan.and_then(|raw| parse_plan(raw, &mut errors));
    if !errors.is_empty() {
        return Err(ApiError::Validation(errors));
    }
    let mut client = app.db.get().await?;
    let tx = client.transaction().await?;
    // The cache said yes; the locked row has the final word.
    let role = db::members::lock_for_member(&tx, workspace, me)
        .await?
        .ok_or(ApiError::NotFound)?;
    if !role.at_least(Role::Admin) {
        return Err(denied(app, req, workspace, me, act, None));
    }
    let row = db::members::update_workspace(
        &tx,
        workspace,
        name.as_ref().map(WorkspaceName::as_str),
        plan,
    )
    .await?
    .ok_or(ApiError::NotFound)?;
    changefeed::publish(&tx, &Change::Workspace { workspace }).await?;
    tx.commit().await?;
    app.memberships
        .on_change(MembershipChange::Workspace { workspace })
        .await;
    tracing::info!(workspace_id = %workspace, user_id = %me, "workspace updated");
    let changed: Vec<&str> = [("name", name.is_some()), ("plan_tier", plan.is_some())]
        .into_iter()
        .filter_map(|(field, given)| given.then_some(field))
        .collect();
    app.audit
        .record(AuditEvent::workspace(act, workspace, me, req.peer).target(changed.join(",")));
    Ok(Reply::json(StatusCode::OK, &WorkspaceOut::from(&row)))
}

/// `DELETE /api/workspaces/{id}`: owners only; the memberships go with it.
pub async fn delete(app: &AppState, req: &Request, params: &[&str]) -> Result<Reply, ApiError> {
    let principal = app.authenticate(req.bearer()?).await?;
    let workspace = workspace_id(params)?;
    let me = principal.user.id;
    let act = action::WORKSPACE_DELETED;
    authorize_or_record(app, req, (workspace, me, Role::Owner), act, None).await?;
    let mut client = app.db.get().await?;
    let tx = client.transaction().await?;
    let role = db::members::lock_for_member(&tx, workspace, me)
        .await?
        .ok_or(ApiError::NotFound)?;
    if role != Role::Owner {
        return Err(denied(app, req, workspace, me, act, None));
    }
    if !db::members::delete_workspace(&tx, workspace).await? {
        return Err(ApiError::NotFound);
    }
    changefeed::publish(&tx, &Change::Workspace { workspace }).await?;
    tx.commit().await?;
    app.memberships
        .on_change(MembershipChange::Workspace { workspace })
        .await;
    tracing::info!(workspace_id = %workspace, user_id = %me, "workspace deleted");
    app.audit
        .record(AuditEvent::workspace(act, workspace, me, req.peer));
    Ok(Reply::empty(StatusCode::NO_CONTENT))
}

/// The `{id}` segment. Anything but a UUID names a workspace nobody can
/// see: 404, like any other.
pub(super) fn workspace_id(params: &[&str]) -> Result<Uuid, ApiError> {
    params
        .first()
        .and_then(|raw| Uuid::parse_str(raw).ok())
        .ok_or(ApiError::NotFound)
}

/// The caller's role in `workspace` from the membership cache: not a
/// member (or no such workspace) → 404, never revealing that it exists;
/// a member below `min` → 403.
pub(super) async fn authorize(
    app: &AppState,
    workspace: Uuid,
    user: Uuid,
    min: Role,
) -> Result<Role, ApiError> {
    match app.memberships.role(workspace, user).await? {
        None => Err(ApiError::NotFound),
        Some(role) if role.at_least(min) => Ok(role),
        Some(_) => Err(ApiError::Forbidden),
    }
}

fn parse_name(raw: &str, errors: &mut Vec<FieldError>) -> Option<WorkspaceName> {
    WorkspaceName::parse(raw)
        .map_err(|msg| errors.push(FieldError::new("name", msg)))
        .ok()
}

fn parse_plan(raw: &str, errors: &mut Vec<FieldError>) -> Option<PlanTier> {
    PlanTier::parse(raw)
        .map_err(|msg| errors.push(FieldError::new("plan_tier", msg)))
        .ok()
}
