//! Queries on `workspace_members`, and the workspace reads and writes that
//! need a membership to be allowed. Reads are scoped by the caller's
//! membership in the SQL itself; writes run inside a transaction that first
//! locks the workspace row ([`lock_for_member`]), so every membership change
//! to one workspace is serialised and the "at least one owner" check cannot
//! race another change.

use chrono::{DateTime, Utc};
use deadpool_postgres::GenericClient;
use tokio_postgres::Row;
use uuid::Uuid;

use crate::db::workspaces::WorkspaceRow;
use crate::domain::{PlanTier, Role};
use crate::error::ApiError;

/// A member as listed: the membership and the user's e-mail.
#[derive(Debug, Clone)]
pub struct MemberRow {
    /// The user.
    pub user_id: Uuid,
    /// The user's e-mail.
    pub email: String,
    /// The role in this workspace.
    pub role: Role,
    /// When the user joined.
    pub joined_at: DateTime<Utc>,
}

/// Columns for [`MemberRow`] from `m` (members) joined with `u` (users).
const MEMBER_COLUMNS: &str = "m.user_id, u.email, m.role::text AS role, m.joined_at";
/// Columns for [`WorkspaceRow`] from `w`.
const WORKSPACE_COLUMNS: &str =
    "w.id, w.name, w.owner_id, w.plan_tier::text AS plan_tier, w.created_at";

impl TryFrom<Row> for MemberRow {
    type Error = ApiError;

    fn try_from(row: Row) -> Result<Self, Self::Error> {
        let role: String = row.try_get("role")?;
        Ok(MemberRow {
            user_id: row.try_get("user_id")?,
            email: row.try_get("email")?,
            role: stored_role(&role)?,
            joined_at: row.try_get("joined_at")?,
        })
    }
}

/// The database enum only holds valid roles; anything else is a bug.
fn stored_role(raw: &str) -> Result<Role, ApiError> {
    Role::parse(raw).map_err(|e| ApiError::Internal(format!("stored role {raw:?}: {e}")))
}

/// The role of `user` in `workspace`; `None` when not a member (or no such
/// workspace).
pub async fn role_of(
    db: &impl GenericClient,
    workspace: Uuid,
    user: Uuid,
) -> Result<Option<Role>, ApiError> {
    let stmt = db
        .prepare_cached(
            "SELECT role::text FROM workspace_members WHERE workspace_id = $1 AND user_id = $2",
        )
        .await?;
    match db.query_opt(&stmt, &[&workspace, &user]).await? {
        None => Ok(None),
        Some(row) => Ok(Some(stored_role(&row.try_get::<_, String>(0)?)?)),
    }
}

/// Inside a transaction: locks `workspace` against every other membership
/// write until commit, and returns the role `user` holds there now (`None`:
/// not a member, or no such workspace, and nothing is locked).
pub async fn lock_for_member(
    db: &impl GenericClient,
    workspace: Uuid,
    user: Uuid,
) -> Result<Option<Role>, ApiError> {
    let stmt = db
        .prepare_cached(
            "SELECT m.role::text FROM workspaces w
             JOIN workspace_members m ON m.workspace_id = w.id AND m.user_id = $2
             WHERE w.id = $1
             FOR UPDATE OF w",
        )
        .await?;
    match db.query_opt(&stmt, &[&workspace, &user]).await? {
        None => Ok(None),
        Some(row) => Ok(Some(stored_role(&row.try_get::<_, String>(0)?)?)),
    }
}

/// How many owners `workspace` has.
pub async fn owner_count(db: &impl GenericClient, workspace: Uuid) -> Result<i64, ApiError> {
    let stmt = db
        .prepare_cached(
            "SELECT count(*) FROM workspace_members WHERE workspace_id = $1 AND role = 'owner'",
        )
        .await?;
    Ok(db.query_one(&stmt, &[&workspace]).await?.try_get(0)?)
}

/// Every member of `workspace`, oldest first; empty unless `viewer` is one.
pub async fn list(
    db: &impl GenericClient,
    workspace: Uuid,
    viewer: Uuid,
) -> Result<Vec<MemberRow>, ApiError> {
    let sql = format!(
        "SELECT {MEMBER_COLUMNS} FROM workspace_members m JOIN users u ON u.id = m.user_id
         WHERE m.workspace_id = $1
           AND EXISTS (SELECT 1 FROM workspace_members v WHERE v.workspace_id = $1 AND v.user_id = $2)
         ORDER BY m.joined_at, m.user_id"
    );
    let stmt = db.prepare_cached(&sql).await?;
    db.query(&stmt, &[&workspace, &viewer])
        .await?
        .into_iter()
        .map(MemberRow::try_from)
        .collect()
}

/// The membership of `user` in `workspace`.
pub async fn get(
    db: &impl GenericClient,
    workspace: Uuid,
    user: Uuid,
) -> Result<Option<MemberRow>, ApiError> {
    let sql = format!(
        "SELECT {MEMBER_COLUMNS} FROM workspace_members m JOIN users u ON u.id = m.user_id
         WHERE m.workspace_id = $1 AND m.user_id = $2"
    );
    let stmt = db.prepare_cached(&sql).await?;
    db.query_opt(&stmt, &[&workspace, &user])
        .await?
        .map(MemberRow::try_from)
        .transpose()
}

/// Who to add: a user id or an e-mail (trimmed, lower-cased).
#[derive(Debug, Clone, Copy)]
pub enum NewMember<'a> {
    /// By user id.
    Id(Uuid),
    /// By e-mail.
    Email(&'a str),
}

/// Adds a member; `None` when no such user exists. Already a member → 409
/// (the primary key).
pub async fn add(
    db: &impl GenericClient,
    workspace: Uuid,
    who: NewMember<'_>,
    role: Role,
) -> Result<Option<MemberRow>, ApiError> {
    let (filter, key): (&str, &(dyn tokio_postgres::types::ToSql + Sync)) = match &who {
        NewMember::Id(id) => ("u.id = $2", id),
        NewMember::Email(email) => ("lower(u.email) = $2", email),
    };
    let sql = format!(
        "WITH m AS (
            INSERT INTO workspace_members (workspace_id, user_id, role)
            SELECT $1, u.id, CAST($3::text AS workspace_role) FROM users u WHERE {filter}
            RETURNING *
        )
        SELECT {MEMBER_COLUMNS} FROM m JOIN users u ON u.id = m.user_id"
    );
    let stmt = db.prepare_cached(&sql).await?;
    db.query_opt(&stmt, &[&workspace, key, &role.as_str()])
        .await?
        .map(MemberRow::try_from)
        .transpose()
}

/// Sets the role of a member; `None` when not a member.
pub async fn set_role(
    db: &impl GenericClient,
    workspace: Uuid,
    user: Uuid,
    role: Role,
) -> Result<Option<MemberRow>, ApiError> {
    let sql = format!(
        "WITH m AS (
            UPDATE workspace_members SET role = CAST($3::text AS workspace_role)
            WHERE workspace_id = $1 AND user_id = $2
            RETURNING *
        )
        SELECT {MEMBER_COLUMNS} FROM m JOIN users u ON u.id = m.user_id"
    );
    let stmt = db.prepare_cached(&sql).await?;
    db.query_opt(&stmt, &[&workspace, &user, &role.as_str()])
        .await?
        .map(MemberRow::try_from)
        .transpose()
}

/// Removes a member; whether there was one.
pub async fn remove(
    db: &impl GenericClient,
    workspace: Uuid,
    user: Uuid,
) -> Result<bool, ApiError> {
    let stmt = db
        .prepare_cached("DELETE FROM workspace_members WHERE workspace_id = $1 AND user_id = $2")
        .await?;
    Ok(db.execute(&stmt, &[&workspace, &user]).await? == 1)
}

/// The workspace and the role `user` holds in it; `None` unless a member.
pub async fn workspace_for_member(
    db: &impl GenericClient,
    workspace: Uuid,
    user: Uuid,
) -> Result<Option<(WorkspaceRow, Role)>, ApiError> {
    let sql = format!(
        "SELECT {WORKSPACE_COLUMNS}, m.role::text AS role FROM workspaces w
         JOIN workspace_members m ON m.workspace_id = w.id AND m.user_id = $2
         WHERE w.id = $1"
    );
    let stmt = db.prepare_cached(&sql).await?;
    let Some(row) = db.query_opt(&stmt, &[&workspace, &user]).await? else {
        return Ok(None);
    };
    let role = stored_role(&row.try_get::<_, String>("role")?)?;
    Ok(Some((WorkspaceRow::try_from(row)?, role)))
}

/// Renames and/or re-tiers a workspace (an absent value is kept).
pub async fn update_workspace(
    db: &impl GenericClient,
    workspace: Uuid,
    name: Option<&str>,
    plan: Option<PlanTier>,
) -> Result<Option<WorkspaceRow>, ApiError> {
    let sql = format!(
        "UPDATE workspaces AS w SET
            name = COALESCE($2, w.name),
            plan_tier = COALESCE(CAST($3::text AS plan_tier), w.plan_tier),
            updated_at = now()
         WHERE w.id = $1
         RETURNING {WORKSPACE_COLUMNS}"
    );
    let stmt = db.prepare_cached(&sql).await?;
    let plan = plan.map(PlanTier::as_str);
    Ok(db
        .query_opt(&stmt, &[&workspace, &name, &plan])
        .await?
        .map(WorkspaceRow::try_from)
        .transpose()?)
}

/// Deletes a workspace; its memberships go with it (`ON DELETE CASCADE`).
pub async fn delete_workspace(db: &impl GenericClient, workspace: Uuid) -> Result<bool, ApiError> {
    let stmt = db
        .prepare_cached("DELETE FROM workspaces WHERE id = $1")
        .await?;
    Ok(db.execute(&stmt, &[&workspace]).await? == 1)
}
