//! Account lifecycle: e-mail verification, password reset, password change.
//!
//! One-time tokens are 256 random bits, stored only as their SHA-256, bound
//! to one purpose, spent atomically, and mailed through the outbox in the
//! same transaction that stores them.

use std::sync::Arc;
use std::time::Duration;

use http::StatusCode;
use serde_json::json;
use sha2::{Digest, Sha256};
use uuid::Uuid;

use super::auth::{new_refresh_token, UserOut};
use super::request::{missing, Request};
use super::response::Reply;
use crate::accounts::end_sessions;
use crate::actors::mailer::Template;
use crate::audit::AuditEvent;
use crate::changefeed::{self, Change};
use crate::db;
use crate::db::one_time_tokens::Purpose;
use crate::domain::{Email, Password, Secret};
use crate::error::{ApiError, FieldError};
use crate::ratelimit::Limit;
use crate::state::AppState;

/// A second request within this long sends nothing: a link already on its
/// way is enough, and nobody can flood a mailbox through these endpoints.
const RESEND_AFTER: Duration = Duration::from_secs(60);

const BAD_TOKEN: &str = "Invalid or expired token";
const WRONG_PASSWORD: &str = "Incorrect password";

/// `POST /api/auth/verify-email/request`: mails a verification link to the
/// caller. 202 either way; an address already verified gets no mail.
pub async fn verify_email_request(app: &AppState, req: &Request) -> Result<Reply, ApiError> {
    app.limiter
        .check(Limit::VerifyEmailRequest, req.peer)
        .await?;
    let principal = app.authenticate(req.bearer()?).await?;
    let user = &principal.user;
    if user.is_verified {
        return Ok(accepted("E-mail address is already verified"));
    }
    let mut client = app.db.get().await?;
    let tx = client.transaction().await?;
    let purpose = Purpose::VerifyEmail;
    if !db::one_time_tokens::recently_issued(&tx, user.id, purpose, RESEND_AFTER).await? {
        let (token, hash) = new_refresh_token();
        db::one_time_tokens::insert(&tx, &hash, user.id, purpose).await?;
        app.mailer
            .queue(&tx, &user.email, Template::VerifyEmail { token: &token })
            .await?;
        tx.commit().await?;
        app.mailer.wake();
        tracing::info!(user_id = %user.id, "verification e-mail queued");
    }
    Ok(accepted("Verification e-mail sent"))
}

/// `POST /api/auth/verify-email/confirm`: spends a verification token.
pub async fn verify_email_confirm(app: &AppState, req: &Request) -> Result<Reply, ApiError> {
    let body = req.json()?;
    let token = body
        .string("token")?
        .ok_or_else(|| ApiError::Validation(vec![missing("token")]))?;
    let mut client = app.db.get().await?;
    let tx = client.transaction().await?;
    let user = match db::one_time_tokens::consume(&tx, &digest(token), Purpose::VerifyEmail).await?
    {
        Some(id) => db::users::set_verified(&tx, id).await?,
        None => None,
    };
    // Unknown, used, expired, another purpose, or a deactivated account:
    // one answer for all, and nothing spent.
    let Some(user) = user else {
        return Err(ApiError::BadRequest(BAD_TOKEN.into()));
    };
    changefeed::publish(&tx, &Change::User { id: user.id }).await?;
    tx.commit().await?;
    app.users.invalidate(&user.id).await;
    tracing::info!(user_id = %user.id, "e-mail verified");
    audit(app, "email.verified", user.id, req, "success");
    let reply = Reply::json(StatusCode::OK, &UserOut::from(&user));
    app.users.insert(user.id, Arc::new(user)).await;
    Ok(reply)
}

/// `POST /api/auth/password-reset/request`: 202 at once, whatever the
/// e-mail; the lookup and the mail happen after the answer, so neither the
/// body nor the timing tells whether an account exists.
pub async fn password_reset_request(app: &AppState, req: &Request) -> Result<Reply, ApiError> {
    app.limiter
        .check(Limit::PasswordResetRequest, req.peer)
        .await?;
    let body = req.json()?;
    let email = match body.string("email")?.map(Email::parse) {
        None => return Err(ApiError::Validation(vec![missing("email")])),
        Some(Err(msg)) => return Err(ApiError::invalid("email", msg)),
        Some(Ok(email)) => email,
    };
    let (pool, mailer, audit_log, ip) = (
        app.db.clone(),
        app.mailer.clone(),
        app.audit.clone(),
        req.peer,
    );
    tokio::spawn(async move {
        let mut client = match pool.get().await {
            Ok(client) => client,
            Err(e) => {
                tracing::warn!(error = %e, "password reset request dropped: database unavailable");
                return;
            }
        };
        let queued = async {
            let tx = client.transaction().await?;
            let Some(user) = db::users::by_email(&tx, email.as_str()).await? else {
                return Ok(None);
            };
            let purpose = Purpose::PasswordReset;
            if !user.is_active
                || db::one_time_tokens::recently_issued(&tx, user.id, purpose, RESEND_AFTER).await?
            {
                return Ok(None);
            }
            // Only the newest link works.
            db::one_time_tokens::revoke_unused(&tx, user.id, purpose).await?;
            let (token, hash) = new_refresh_token();
            db::one_time_tokens::insert(&tx, &hash, user.id, purpose).await?;
            mailer
                .queue(&tx, &user.email, Template::PasswordReset { token: &token })
                .await?;
            tx.commit().await?;
            Ok::<_, ApiError>(Some(user.id))
        }
        .await;
        match queued {
            Ok(Some(user)) => {
                mailer.wake();
                tracing::info!(user_id = %user, "password reset e-mail queued");
                audit_log.record(AuditEvent {
                    action: "password.reset_requested",
                    actor_id: None,
                    workspace_id: None,
                    user_id: Some(user),
                    target: None,
                    ip: Some(ip),
                    outcome: "success",
                });
            }
            Ok(None) => {}
            Err(e) => tracing::warn!(error = %e, "password reset request failed"),
        }
    });
    Ok(accepted(
        "If an account with that e-mail exists, a password reset e-mail has been sent",
    ))
}

/// `POST /api/auth/password-reset/confirm`: sets a new password with a
/// reset token; every session of the user ends and a lock from failed
/// logins is lifted.
pub async fn password_reset_confirm(app: &AppState, req: &Request) -> Result<Reply, ApiError> {
    let body = req.json()?;
    let (token, new) = (body.string("token")?, body.string("new_password")?);
    let mut errors = Vec::new();
    if token.is_none() {
        errors.push(missing("token"));
    }
    let password = new_password(new, &mut errors);
    let (Some(token), Some(password)) = (token, password) else {
        return Err(ApiError::Validation(errors));
    };
    let hash = digest(token);
    let purpose = Purpose::PasswordReset;
    // A cheap look first: a made-up token must not cost an Argon2 hash.
    {
        let client = app.db.get().await?;
        if db::one_time_tokens::peek(&client, &hash, purpose)
            .await?
            .is_none()
        {
            return Err(ApiError::BadRequest(BAD_TOKEN.into()));
        }
    }
    let password_hash = app
        .hasher
        .hash(Secret::new(password.expose().to_owned()))
        .await?;
    let mut client = app.db.get().await?;
    let tx = client.transaction().await?;
    let user = match db::one_time_tokens::consume(&tx, &hash, purpose).await? {
        Some(id) => db::users::by_id(&tx, id).await?,
        None => None,
    };
    let Some(user) = user.filter(|u| u.is_active) else {
        return Err(ApiError::BadRequest(BAD_TOKEN.into()));
    };
    db::users::set_password(&tx, user.id, &password_hash).await?;
    // Following the link proves the mailbox as well as a verification would.
    db::users::set_verified(&tx, user.id).await?;
    db::one_time_tokens::revoke_unused(&tx, user.id, purpose).await?;
    db::login_throttle::clear(&tx, &user.email).await?;
    app.mailer
        .queue(&tx, &user.email, Template::PasswordWasReset)
        .await?;
    changefeed::publish(&tx, &Change::User { id: user.id }).await?;
    tx.commit().await?;
    drop(client);
    app.users.invalidate(&user.id).await;
    app.mailer.wake();
    end_sessions(app, user.id, None, "password_reset").await?;
    tracing::info!(user_id = %user.id, "password reset");
    audit(app, "password.reset", user.id, req, "success");
    Ok(Reply::empty(StatusCode::NO_CONTENT))
}

/// `POST /api/auth/password/change`: needs the current password; ends every
/// other session of the user, the caller's stays.
pub async fn password_change(app: &AppState, req: &Request) -> Result<Reply, ApiError> {
    let principal = app.authenticate(req.bearer()?).await?;
    let user = &principal.user;
    let body = req.json()?;
    let (current, new) = (
        body.string("current_password")?,
        body.string("new_password")?,
    );
    let mut errors = Vec::new();
    if current.is_none() {
        errors.push(missing("current_password"));
    }
    let password = new_password(new, &mut errors);
    let (Some(current), Some(password)) = (current, password) else {
        return Err(ApiError::Validation(errors));
    };
    // Guessing the current password with a stolen access token counts as
    // guessing it at the login form: same limit, same lock.
    app.limiter.check(Limit::Login, req.peer).await?;
    let client = app.db.get().await?;
    if let Some(wait) = db::login_throttle::status(&client, &user.email)
        .await?
        .filter(|wait| !wait.is_zero())
    {
        return Err(ApiError::RateLimited(wait));
    }
    drop(client);
    let verified = app
        .hasher
        .verify(
            Secret::new(current.to_owned()),
            Some(user.password_hash.clone()),
        )
        .await?;
    if !verified.ok {
        let client = app.db.get().await?;
        let config = &app.config;
        db::login_throttle::record_failure(
            &client,
            &user.email,
            config.login_failures_before_lock,
            config.login_lock,
        )
        .await?;
        tracing::info!(user_id = %user.id, "password change refused: wrong current password");
        audit(app, "password.changed", user.id, req, "failure");
        return Err(ApiError::Unauthorized(WRONG_PASSWORD));
    }
    let password_hash = app
        .hasher
        .hash(Secret::new(password.expose().to_owned()))
        .await?;
    let mut client = app.db.get().await?;
    let tx = client.transaction().await?;
    if !db::users::set_password(&tx, user.id, &password_hash).await? {
        return Err(ApiError::Unauthorized("Could not validate credentials"));
    }
    // A reset link mailed before the change must not undo it.
    db::one_time_tokens::revoke_unused(&tx, user.id, Purpose::PasswordReset).await?;
    app.mailer
        .queue(&tx, &user.email, Template::PasswordChanged)
        .await?;
    changefeed::publish(&tx, &Change::User { id: user.id }).await?;
    tx.commit().await?;
    drop(client);
    app.users.invalidate(&user.id).await;
    app.mailer.wake();
    end_sessions(app, user.id, Some(principal.claims.sid), "password_changed").await?;
    tracing::info!(user_id = %user.id, "password changed");
    audit(app, "password.changed", user.id, req, "success");
    Ok(Reply::empty(StatusCode::NO_CONTENT))
}

/// `new_password` under the password policy; what is wrong goes to `errors`.
fn new_password(raw: Option<&str>, errors: &mut Vec<FieldError>) -> Option<Password> {
    match raw.map(|raw| Password::parse(raw.to_owned())) {
        None => {
            errors.push(missing("new_password"));
            None
        }
        Some(Err(msg)) => {
            errors.push(FieldError::new("new_password", msg));
            None
        }
        Some(Ok(password)) => Some(password),
    }
}

/// The SHA-256 a one-time token is stored as.
fn digest(token: &str) -> Vec<u8> {
    Sha256::digest(token.as_bytes()).to_vec()
}

fn accepted(detail: &str) -> Reply {
    Reply::json(StatusCode::ACCEPTED, &json!({ "detail": detail }))
}

fn audit(app: &AppState, action: &'static str, user: Uuid, req: &Request, outcome: &'static str) {
    app.audit.record(AuditEvent {
        action,
        actor_id: Some(user),
        workspace_id: None,
        user_id: Some(user),
        target: None,
        ip: Some(req.peer),
        outcome,
    });
}
