//! `/api/workspaces/{id}/members`: list, add, read your own membership,
//! change a role, remove (or leave).
//!
//! Every endpoint first asks the membership cache (404 for a non-member,
//! 403 for too low a role). Writes then decide again inside their
//! transaction, on the locked workspace row, so two concurrent changes can
//! never both pass a check that only one of them may pass ("at least one
//! owner" above all).

use http::StatusCode;
use serde::Serialize;
use uuid::Uuid;

use super::audit::{authorize_or_record, denied};
use super::request::{missing, Request};
use super::response::{timestamp, Reply};
use super::workspaces::{authorize, workspace_id};
use crate::actors::membership::MembershipChange;
use crate::audit::{action, AuditEvent};
use crate::changefeed::{self, Change};
use crate::db;
use crate::db::members::{MemberRow, NewMember};
use crate::domain::{Email, Role};
use crate::error::{ApiError, FieldError};
use crate::state::AppState;

/// The public view of a membership.
#[derive(Serialize)]
struct MemberOut<'a> {
    user_id: Uuid,
    email: &'a str,
    role: &'static str,
    joined_at: String,
}

impl<'a> From<&'a MemberRow> for MemberOut<'a> {
    fn from(m: &'a MemberRow) -> Self {
        MemberOut {
            user_id: m.user_id,
            email: &m.email,
            role: m.role.as_str(),
            joined_at: timestamp(&m.joined_at),
        }
    }
}

const LAST_OWNER: &str = "A workspace must keep at least one owner";

/// `GET /api/workspaces/{id}/members`: every member, oldest first.
pub async fn list(app: &AppState, req: &Request, params: &[&str]) -> Result<Reply, ApiError> {
    let principal = app.authenticate(req.bearer()?).await?;
    let workspace = workspace_id(params)?;
    authorize(app, workspace, principal.user.id, Role::Viewer).await?;
    let client = app.db.get().await?;
    let members = db::members::list(&client, workspace, principal.user.id).await?;
    // Scoped by membership in the SQL: empty means the caller just left.
    if members.is_empty() {
        return Err(ApiError::NotFound);
    }
    let out: Vec<MemberOut<'_>> = members.iter().map(MemberOut::from).collect();
    Ok(Reply::json(StatusCode::OK, &out))
}

/// `GET /api/workspaces/{id}/members/me`.
pub async fn me(app: &AppState, req: &Request, params: &[&str]) -> Result<Reply, ApiError> {
    let principal = app.authenticate(req.bearer()?).await?;
    let workspace = workspace_id(params)?;
    authorize(app, workspace, principal.user.id, Role::Viewer).await?;
    let client = app.db.get().await?;
    let member = db::members::get(&client, workspace, principal.user.id)
        .await?
        .ok_or(ApiError::NotFound)?;
    Ok(Reply::json(StatusCode::OK, &MemberOut::from(&member)))
}

/// A parsed `POST …/members` body.
struct AddMember<'a> {
    who: NewMember<'a>,
    role: Role,
}

impl<'a> AddMember<'a> {
    /// `{"email"` or `"user_id", "role"}`; every bad or missing field listed.
    fn parse(
        email: Option<&str>,
        user_id: Option<&str>,
        role: Option<&str>,
        email_buf: &'a mut Option<Email>,
    ) -> Result<AddMember<'a>, ApiError> {
        let mut errors = Vec::new();
        let mut id = None;
        match (email, user_id) {
            (Some(_), Some(_)) => errors.push(FieldError::new(
                "user_id",
                "give either email or user_id, not both",
            )),
            (None, None) => errors.push(missing("email")),
            (Some(raw), None) => match Email::parse(raw) {
                Ok(email) => *email_buf = Some(email),
                Err(msg) => errors.push(FieldError::new("email", msg)),
            },
            (None, Some(raw)) => match Uuid::parse_str(raw.trim()) {
                Ok(parsed) => id = Some(parsed),
                Err(_) => errors.push(FieldError::new("user_id", "must be a UUID")),
            },
        }
        let role = match role.map(Role::parse) {
            None => {
                errors.push(missing("role"));
                None
            }
            Some(Err(msg)) => {
                errors.push(FieldError::new("role", msg));
                None
            }
            Some(Ok(role)) => Some(role),
        };
        let who = match (id, email_buf.as_ref()) {
            (Some(id), _) => Some(NewMember::Id(id)),
            (None, Some(email)) => Some(NewMember::Email(email.as_str())),
            (None, None) => None,
        };
        match (who, role) {
            (Some(who), Some(role)) if errors.is_empty() => Ok(AddMember { who, role }),
            _ => Err(ApiError::Validation(errors)),
        }
    }
}

/// `POST /api/workspaces/{id}/members` with `{"email"` or `"user_id", "role"}`.
pub async fn add(app: &AppState, req: &Request, params: &[&str]) -> Result<Reply, ApiError> {
    let principal = app.authenticate(req.bearer()?).await?;
    let workspace = workspace_id(params)?;
    let me = principal.user.id;
    // Nobody below admin may add anyone: refuse before reading the body.
    let act = action::MEMBER_ADDED;
    let cached = authorize_or_record(app, req, (workspace, me, Role::Admin), act, None).await?;
    let body = req.json()?;
    let mut email = None;
    let wanted = AddMember::parse(
        body.string("email")?,
        body.string("user_id")?,
        body.string("role")?,
        &mut email,
    )?;
    if !cached.can_manage(wanted.role) {
        return Err(denied(app, req, workspace, me, act, None));
    }
    let mut client = app.db.get().await?;
    let tx = client.transaction().await?;
    let actor = db::members::lock_for_member(&tx, workspace, me)
        .await?
        .ok_or(ApiError::NotFound)?;
    if !actor.can_manage(wanted.role) {
        return Err(denied(app, req, workspace, me, act, None));
    }
    let member = db::members::add(&tx, workspace, wanted.who, wanted.role)
        .await?
        .ok_or(ApiError::NotFound)?;
    let user = member.user_id;
    changefeed::publish(&tx, &Change::Member { workspace, user }).await?;
    tx.commit().await?;
    app.memberships
        .on_change(MembershipChange::Member { workspace, user })
        .await;
    tracing::info!(workspace_id = %workspace, user_id = %me, member_id = %user, role = %member.role, "member added");
    app.audit.record(
        AuditEvent::workspace(act, workspace, me, req.peer)
            .target(format!("{user} role: none->{}", member.role)),
    );
    Ok(Reply::json(StatusCode::CREATED, &MemberOut::from(&member)))
}

/// `PATCH /api/workspaces/{id}/members/{user_id}` with `{"role"}`.
pub async fn update(app: &AppState, req: &Request, params: &[&str]) -> Result<Reply, ApiError> {
    let principal = app.authenticate(req.bearer()?).await?;
    let workspace = workspace_id(params)?;
    let me = principal.user.id;
    let target = member_id(params, me)?;
    let act = action::MEMBER_ROLE_CHANGED;
    authorize_or_record(app, req, (workspace, me, Role::Admin), act, Some(target)).await?;
    let body = req.json()?;
    let new = match body.string("role")?.map(Role::parse) {
        None => return Err(ApiError::Validation(vec![missing("role")])),
        Some(Err(msg)) => return Err(ApiError::invalid("role", msg)),
        Some(Ok(role)) => role,
    };
    let mut client = app.db.get().await?;
    let tx = client.transaction().await?;
    let actor = db::members::lock_for_member(&tx, workspace, me)
        .await?
        .ok_or(ApiError::NotFound)?;
    if !actor.at_least(Role::Admin) {
        return Err(denied(app, req, workspace, me, act, Some(target)));
    }
    let current = db::members::role_of(&tx, workspace, target)
        .await?
        .ok_or(ApiError::NotFound)?;
    may_change(actor, current, new)
        .map_err(|_| denied(app, req, workspace, me, act, Some(target)))?;
    if current == Role::Owner
        && new != Role::Owner
        && db::members::owner_count(&tx, workspace).await? <= 1
    {
        return Err(ApiError::Conflict(LAST_OWNER));
    }
    let member = db::members::set_role(&tx, workspace, target, new)
        .await?
        .ok_or(ApiError::NotFound)?;
    changefeed::publish(
        &tx,
        &Change::Member {
            workspace,
            user: target,
        },
    )
    .await?;
    tx.commit().await?;
    app.memberships
        .on_change(MembershipChange::Member {
            workspace,
            user: target,
        })
        .await;
    tracing::info!(workspace_id = %workspace, user_id = %me, member_id = %target, from = %current, to = %new, "member role changed");
    app.audit.record(
        AuditEvent::workspace(act, workspace, me, req.peer)
            .target(format!("{target} role: {current}->{new}")),
    );
    Ok(Reply::json(StatusCode::OK, &MemberOut::from(&member)))
}

/// `DELETE /api/workspaces/{id}/members/{user_id}`; `me` (or one's own id)
/// is leaving, which any member may do but the last owner.
pub async fn remove(app: &AppState, req: &Request, params: &[&str]) -> Result<Reply, ApiError> {
    let principal = app.authenticate(req.bearer()?).await?;
    let workspace = workspace_id(params)?;
    let me = principal.user.id;
    let target = member_id(params, me)?;
    let leaving = target == me;
    let (act, min) = match leaving {
        true => (action::MEMBER_LEFT, Role::Viewer),
        false => (action::MEMBER_REMOVED, Role::Admin),
    };
    authorize_or_record(app, req, (workspace, me, min), act, Some(target)).await?;
    let mut client = app.db.get().await?;
    let tx = client.transaction().await?;
    let actor = db::members::lock_for_member(&tx, workspace, me)
        .await?
        .ok_or(ApiError::NotFound)?;
    let current = if leaving {
        actor
    } else {
        if !actor.at_least(Role::Admin) {
            return Err(denied(app, req, workspace, me, act, Some(target)));
        }
        db::members::role_of(&tx, workspace, target)
            .await?
            .ok_or(ApiError::NotFound)?
    };
    if !leaving && !actor.can_manage(current) {
        return Err(denied(app, req, workspace, me, act, Some(target)));
    }
    if current == Role::Owner && db::members::owner_count(&tx, workspace).await? <= 1 {
        return Err(ApiError::Conflict(LAST_OWNER));
    }
    if !db::members::remove(&tx, workspace, target).await? {
        return Err(ApiError::NotFound);
    }
    changefeed::publish(
        &tx,
        &Change::Member {
            workspace,
            user: target,
        },
    )
    .await?;
    tx.commit().await?;
    app.memberships
        .on_change(MembershipChange::Member {
            workspace,
            user: target,
        })
        .await;
    tracing::info!(workspace_id = %workspace, user_id = %me, member_id = %target, leaving, "member removed");
    app.audit.record(
        AuditEvent::workspace(act, workspace, me, req.peer)
            .target(format!("{target} role: {current}->none")),
    );
    Ok(Reply::empty(StatusCode::NO_CONTENT))
}

/// The `{user_id}` segment: a UUID, or `me` for the caller. Anything else
/// names no member: 404.
fn member_id(params: &[&str], me: Uuid) -> Result<Uuid, ApiError> {
    match params.get(1) {
        Some(&"me") => Ok(me),
        Some(raw) => Uuid::parse_str(raw).map_err(|_| ApiError::NotFound),
        None => Err(ApiError::NotFound),
    }
}

/// Whether `actor` may move a member from `current` to `new`: both roles
/// must be ones the actor manages. Keeping an owner is checked separately.
fn may_change(actor: Role, current: Role, new: Role) -> Result<(), ApiError> {
    if actor.can_manage(current) && actor.can_manage(new) {
        Ok(())
    } else {
        Err(ApiError::Forbidden)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Role::{Admin, Operator, Owner, Viewer};

    #[test]
    fn role_changes_need_both_roles_manageable() {
        assert!(may_change(Owner, Admin, Owner).is_ok());
        assert!(may_change(Owner, Owner, Viewer).is_ok());
        assert!(may_change(Admin, Operator, Viewer).is_ok());
        assert!(may_change(Admin, Viewer, Operator).is_ok());
        for (actor, current, new) in [
            (Admin, Operator, Admin),
            (Admin, Admin, Viewer),
            (Admin, Owner, Admin),
            (Operator, Viewer, Operator),
            (Viewer, Viewer, Viewer),
        ] {
            assert!(
                matches!(may_change(actor, current, new), Err(ApiError::Forbidden)),
                "{actor} moving {current} to {new}"
            );
        }
    }

    #[test]
    fn member_ids_are_uuids_or_me() {
        let me = Uuid::now_v7();
        let other = Uuid::now_v7();
        assert_eq!(member_id(&["w", "me"], me).ok(), Some(me));
        assert_eq!(member_id(&["w", &other.to_string()], me).ok(), Some(other));
        for bad in ["Me", "42", "", "me "] {
            assert!(matches!(
                member_id(&["w", bad], me),
                Err(ApiError::NotFound)
            ));
        }
    }

    #[test]
    fn add_bodies_list_every_problem() {
        let mut buf = None;
        match AddMember::parse(None, None, None, &mut buf) {
            Err(ApiError::Validation(errors)) => {
                let fields: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
                assert_eq!(fields, ["email", "role"]);
            }
            _ => panic!("expected 422"),
        }
        let mut buf = None;
        assert!(matches!(
            AddMember::parse(Some("a@example.com"), Some("x"), Some("viewer"), &mut buf),
            Err(ApiError::Validation(_))
        ));
        let mut buf = None;
        assert!(matches!(
            AddMember::parse(None, Some("not-a-uuid"), Some("viewer"), &mut buf),
            Err(ApiError::Validation(_))
        ));
        let mut buf = None;
        assert!(matches!(
            AddMember::parse(Some("a@example.com"), None, Some("root"), &mut buf),
            Err(ApiError::Validation(_))
        ));
        let mut buf = None;
        let ok = AddMember::parse(Some(" A@Example.com "), None, Some("admin"), &mut buf)
            .ok()
            .map(|a| (format!("{:?}", a.who), a.role));
        assert_eq!(
            ok,
            Some((r#"Email("a@example.com")"#.to_owned(), Role::Admin))
        );
    }
}
