//! Queries on `workspaces` and `workspace_members`. Every read is scoped by
//! the caller's membership: isolation lives in the SQL, not in the handler.

use chrono::{DateTime, Utc};
use deadpool_postgres::GenericClient;
use tokio_postgres::Row;
use uuid::Uuid;

use crate::domain::PlanTier;
use crate::error::ApiError;

/// A workspace as stored.
#[derive(Debug, Clone)]
pub struct WorkspaceRow {
    /// Id.
    pub id: Uuid,
    /// Display name.
    pub name: String,
    /// The creator.
    pub owner_id: Uuid,
    /// `free`, `pro` or `enterprise`.
    pub plan_tier: String,
    /// Creation time; also the paging key.
    pub created_at: DateTime<Utc>,
}

const COLUMNS: &str = "w.id, w.name, w.owner_id, w.plan_tier::text AS plan_tier, w.created_at";

impl TryFrom<Row> for WorkspaceRow {
    type Error = tokio_postgres::Error;

    fn try_from(row: Row) -> Result<Self, Self::Error> {
        Ok(WorkspaceRow {
            id: row.try_get("id")?,
            name: row.try_get("name")?,
            owner_id: row.try_get("owner_id")?,
            plan_tier: row.try_get("plan_tier")?,
            created_at: row.try_get("created_at")?,
        })
    }
}

/// Creates a workspace and its owner's membership in one statement (one
/// transaction, one round trip).
pub async fn create(
    db: &impl GenericClient,
    id: Uuid,
    name: &str,
    owner: Uuid,
    plan: PlanTier,
) -> Result<WorkspaceRow, ApiError> {
    let sql = format!(
        "WITH w AS (
            INSERT INTO workspaces (id, name, owner_id, plan_tier)
            VALUES ($1, $2, $3, CAST($4::text AS plan_tier))
            RETURNING *
        ), m AS (
            INSERT INTO workspace_members (workspace_id, user_id, role, joined_at)
            SELECT id, owner_id, 'owner', created_at FROM w
        )
        SELECT {COLUMNS} FROM w"
    );
    let stmt = db.prepare_cached(&sql).await?;
    let row = db
        .query_one(&stmt, &[&id, &name, &owner, &plan.as_str()])
        .await?;
    Ok(WorkspaceRow::try_from(row)?)
}

/// A page of the workspaces `user` is a member of, newest first, starting
/// after `after` (the last row of the previous page).
pub async fn list_for_member(
    db: &impl GenericClient,
    user: Uuid,
    limit: i64,
    after: Option<(DateTime<Utc>, Uuid)>,
) -> Result<Vec<WorkspaceRow>, ApiError> {
    let rows = match after {
        None => {
            let sql = format!(
                "SELECT {COLUMNS} FROM workspace_members m JOIN workspaces w ON w.id = m.workspace_id
                 WHERE m.user_id = $1
                 ORDER BY w.created_at DESC, w.id DESC LIMIT $2"
            );
            let stmt = db.prepare_cached(&sql).await?;
            db.query(&stmt, &[&user, &limit]).await?
        }
        Some((at, id)) => {
            let sql = format!(
                "SELECT {COLUMNS} FROM workspace_members m JOIN workspaces w ON w.id = m.workspace_id
                 WHERE m.user_id = $1 AND (w.created_at, w.id) < ($3, $4)
                 ORDER BY w.created_at DESC, w.id DESC LIMIT $2"
            );
            let stmt = db.prepare_cached(&sql).await?;
            db.query(&stmt, &[&user, &limit, &at, &id]).await?
        }
    };
    Ok(rows
        .into_iter()
        .map(WorkspaceRow::try_from)
        .collect::<Result<_, _>>()?)
}
