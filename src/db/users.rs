//! Queries on `users`.

use chrono::{DateTime, Utc};
use deadpool_postgres::GenericClient;
use tokio_postgres::Row;
use uuid::Uuid;

use crate::error::ApiError;

/// A user as stored, hash included (never rendered).
#[derive(Debug, Clone)]
pub struct UserRow {
    /// Id.
    pub id: Uuid,
    /// Trimmed, lower-cased e-mail.
    pub email: String,
    /// PHC string.
    pub password_hash: String,
    /// Deactivated users cannot log in or use their tokens.
    pub is_active: bool,
    /// E-mail verified.
    pub is_verified: bool,
    /// Registration time.
    pub created_at: DateTime<Utc>,
}

const COLUMNS: &str = "id, email, password_hash, is_active, is_verified, created_at";

impl TryFrom<Row> for UserRow {
    type Error = tokio_postgres::Error;

    fn try_from(row: Row) -> Result<Self, Self::Error> {
        Ok(UserRow {
            id: row.try_get("id")?,
            email: row.try_get("email")?,
            password_hash: row.try_get("password_hash")?,
            is_active: row.try_get("is_active")?,
            is_verified: row.try_get("is_verified")?,
            created_at: row.try_get("created_at")?,
        })
    }
}

/// Inserts a new user; a taken e-mail is the unique index's 409.
pub async fn insert(
    db: &impl GenericClient,
    id: Uuid,
    email: &str,
    password_hash: &str,
) -> Result<UserRow, ApiError> {
    let sql = format!(
        "INSERT INTO users (id, email, password_hash) VALUES ($1, $2, $3) RETURNING {COLUMNS}"
    );
    let stmt = db.prepare_cached(&sql).await?;
    let row = db.query_one(&stmt, &[&id, &email, &password_hash]).await?;
    Ok(UserRow::try_from(row)?)
}

/// The user with this (already normalised) e-mail.
pub async fn by_email(db: &impl GenericClient, email: &str) -> Result<Option<UserRow>, ApiError> {
    let sql = format!("SELECT {COLUMNS} FROM users WHERE lower(email) = $1");
    let stmt = db.prepare_cached(&sql).await?;
    let row = db.query_opt(&stmt, &[&email]).await?;
    Ok(row.map(UserRow::try_from).transpose()?)
}

/// The user with this id.
pub async fn by_id(db: &impl GenericClient, id: Uuid) -> Result<Option<UserRow>, ApiError> {
    let sql = format!("SELECT {COLUMNS} FROM users WHERE id = $1");
    let stmt = db.prepare_cached(&sql).await?;
    let row = db.query_opt(&stmt, &[&id]).await?;
    Ok(row.map(UserRow::try_from).transpose()?)
}

/// Replaces a password hash (rehash on login after a parameter upgrade),
/// only if it is still the one that was verified.
pub async fn upgrade_hash(
    db: &impl GenericClient,
    id: Uuid,
    old: &str,
    new: &str,
) -> Result<bool, ApiError> {
    let stmt = db
        .prepare_cached("UPDATE users SET password_hash = $3, updated_at = now() WHERE id = $1 AND password_hash = $2")
        .await?;
    Ok(db.execute(&stmt, &[&id, &old, &new]).await? == 1)
}

/// Activates or deactivates a user; false when there is no such user.
pub async fn set_active(db: &impl GenericClient, id: Uuid, active: bool) -> Result<bool, ApiError> {
    let stmt = db
        .prepare_cached("UPDATE users SET is_active = $2, updated_at = now() WHERE id = $1")
        .await?;
    Ok(db.execute(&stmt, &[&id, &active]).await? == 1)
}

/// Replaces the password hash (change or reset); false when there is no
/// such user.
pub async fn set_password(
    db: &impl GenericClient,
    id: Uuid,
    password_hash: &str,
) -> Result<bool, ApiError> {
    let stmt = db
        .prepare_cached("UPDATE users SET password_hash = $2, updated_at = now() WHERE id = $1")
        .await?;
    Ok(db.execute(&stmt, &[&id, &password_hash]).await? == 1)
}

/// Marks the e-mail of an active user verified and returns the user;
/// `None` when there is no such active user.
pub async fn set_verified(db: &impl GenericClient, id: Uuid) -> Result<Option<UserRow>, ApiError> {
    let sql = format!(
        "UPDATE users SET is_verified = true, updated_at = now()
         WHERE id = $1 AND is_active RETURNING {COLUMNS}"
    );
    let stmt = db.prepare_cached(&sql).await?;
    let row = db.query_opt(&stmt, &[&id]).await?;
    Ok(row.map(UserRow::try_from).transpose()?)
}
