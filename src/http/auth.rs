//! `/api/auth/*`: register, login, me.

use std::sync::Arc;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use http::StatusCode;
use rand::RngCore;
use serde::Serialize;
use sha2::{Digest, Sha256};
use uuid::Uuid;

use super::request::{missing, Request};
use super::response::{timestamp, Reply};
use crate::audit::{action, AuditEvent, FAILURE};
use crate::db;
use crate::db::users::UserRow;
use crate::domain::{Email, Password, Secret};
use crate::error::{ApiError, FieldError};
use crate::ratelimit::Limit;
use crate::state::AppState;

/// The public view of a user, as API.md's register response.
#[derive(Serialize)]
pub struct UserOut<'a> {
    id: Uuid,
    email: &'a str,
    is_active: bool,
    is_verified: bool,
    created_at: String,
}

impl<'a> From<&'a UserRow> for UserOut<'a> {
    fn from(user: &'a UserRow) -> Self {
        UserOut {
            id: user.id,
            email: &user.email,
            is_active: user.is_active,
            is_verified: user.is_verified,
            created_at: timestamp(&user.created_at),
        }
    }
}

/// A token pair as login and refresh return it.
#[derive(Serialize)]
pub struct TokenOut {
    access_token: String,
    token_type: &'static str,
    expires_in: u64,
    refresh_token: String,
}

const BAD_CREDENTIALS: &str = "Incorrect email or password";

/// `POST /api/auth/register`.
pub async fn register(app: &AppState, req: &Request) -> Result<Reply, ApiError> {
    app.limiter.check(Limit::Register, req.peer).await?;
    let body = req.json()?;
    let (email, password) = (body.string("email")?, body.string("password")?);
    let mut errors = Vec::new();
    let email = match email.map(Email::parse) {
        None => {
            errors.push(missing("email"));
            None
        }
        Some(Err(msg)) => {
            errors.push(FieldError::new("email", msg));
            None
        }
        Some(Ok(email)) => Some(email),
    };
    let password = match password.map(|p| Password::parse(p.to_owned())) {
        None => {
            errors.push(missing("password"));
            None
        }
        Some(Err(msg)) => {
            errors.push(FieldError::new("password", msg));
            None
        }
        Some(Ok(password)) => Some(password),
    };
    let (Some(email), Some(password)) = (email, password) else {
        return Err(ApiError::Validation(errors));
    };
    let hash = app
        .hasher
        .hash(Secret::new(password.expose().to_owned()))
        .await?;
    let client = app.db.get().await?;
    let user = db::users::insert(&client, Uuid::now_v7(), email.as_str(), &hash).await?;
    tracing::info!(user_id = %user.id, "user registered");
    app.audit.record(AuditEvent::account(
        action::USER_REGISTERED,
        user.id,
        Some(req.peer),
    ));
    let reply = Reply::json(StatusCode::CREATED, &UserOut::from(&user));
    app.users.insert(user.id, Arc::new(user)).await;
    Ok(reply)
}

/// `POST /api/auth/login`: the OAuth2 password grant, form-encoded.
pub async fn login(app: &AppState, req: &Request) -> Result<Reply, ApiError> {
    app.limiter.check(Limit::Login, req.peer).await?;
    let form = req.form().await?;
    let mut errors = Vec::new();
    let username = form.get("username");
    let password = form.get("password");
    if username.is_none() {
        errors.push(missing("username"));
    }
    if password.is_none() {
        errors.push(missing("password"));
    }
    if let Some(grant) = form.get("grant_type") {
        if grant != "password" {
            errors.push(FieldError::new("grant_type", "must be \"password\""));
        }
    }
    let (Some(username), Some(password), true) = (username, password, errors.is_empty()) else {
        return Err(ApiError::Validation(errors));
    };
    let email = username.trim().to_lowercase();
    let client = app.db.get().await?;
    let throttle = db::login_throttle::status(&client, &email).await?;
    if let Some(wait) = throttle.filter(|wait| !wait.is_zero()) {
        tracing::info!("login refused: e-mail is locked");
        // Only an existing account's feed shows it; no other e-mail is kept.
        let account = db::users::by_email(&client, &email).await?.map(|u| u.id);
        app.audit
            .record(failed_login(action::LOGIN_LOCKED, account, req));
        return Err(ApiError::RateLimited(wait));
    }
    let user = db::users::by_email(&client, &email).await?;
    // Release the connection while hashing: the pool is for queries.
    drop(client);
    let password = Secret::new(password.to_owned());
    let stored = user.as_ref().map(|u| u.password_hash.clone());
    let verified = app.hasher.verify(password.clone(), stored).await?;
    let client = app.db.get().await?;
    let user = match user {
        Some(user) if verified.ok && user.is_active => user,
        _ => {
            let config = &app.config;
            let locked = db::login_throttle::record_failure(
                &client,
                &email,
                config.login_failures_before_lock,
                config.login_lock,
            )
            .await?;
            match locked {
                true => tracing::warn!("login failed; e-mail locked after repeated failures"),
                false => tracing::info!("login failed"),
            }
            let account = user.as_ref().map(|u| u.id);
            app.audit
                .record(failed_login(action::LOGIN_FAILED, account, req));
            return Err(ApiError::Unauthorized(BAD_CREDENTIALS));
        }
    };
    if throttle.is_some() {
        db::login_throttle::clear(&client, &email).await?;
    }
    drop(client);
    if verified.needs_rehash {
        upgrade_hash(app, &user, password);
    }
    let tokens = start_session(app, req, &user).await?;
    tracing::info!(user_id = %user.id, "login");
    app.audit.record(AuditEvent::account(
        action::LOGIN_SUCCEEDED,
        user.id,
        Some(req.peer),
    ));
    Ok(Reply::json(StatusCode::OK, &tokens))
}

/// A refused login: in the account's feed when the e-mail names one, with
/// no actor (nobody proved who they are) and never the e-mail itself.
fn failed_login(action: &'static str, account: Option<Uuid>, req: &Request) -> AuditEvent {
    AuditEvent {
        action,
        actor_id: None,
        workspace_id: None,
        user_id: account,
        target: None,
        ip: Some(req.peer),
        outcome: FAILURE,
    }
}

/// Rehashes with today's parameters after a successful login, off the
/// request path: the login answer does not wait for it.
fn upgrade_hash(app: &AppState, user: &UserRow, password: Secret) {
    let (hasher, pool, id, old) = (
        app.hasher.clone(),
        app.db.clone(),
        user.id,
        user.password_hash.clone(),
    );
    tokio::spawn(async move {
        let Ok(new) = hasher.hash(password).await else {
            return;
        };
        if let Ok(client) = pool.get().await {
            if let Err(e) = db::users::upgrade_hash(&client, id, &old, &new).await {
                tracing::warn!(user_id = %id, error = %e, "password hash upgrade failed");
            }
        }
    });
}

/// A new opaque refresh token (256 random bits) and the SHA-256 stored for it.
pub fn new_refresh_token() -> (String, Vec<u8>) {
    let mut raw = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut raw);
    let token = URL_SAFE_NO_PAD.encode(raw);
    let hash = Sha256::digest(token.as_bytes()).to_vec();
    (token, hash)
}

/// Signs an access token for `user` in session `sid` and pairs it with
/// `refresh_token`.
pub fn issue_tokens(
    app: &AppState,
    user: &UserRow,
    sid: Uuid,
    refresh_token: String,
) -> Result<TokenOut, ApiError> {
    let keys = app.keys.current();
    let now = chrono::Utc::now().timestamp();
    let access_token = keys
        .issue(user.id, &user.email, sid, now)
        .map_err(ApiError::Internal)?;
    Ok(TokenOut {
        access_token,
        token_type: "bearer",
        expires_in: keys.lifetime_seconds(),
        refresh_token,
    })
}

/// Creates a login session and its first token pair.
async fn start_session(
    app: &AppState,
    req: &Request,
    user: &UserRow,
) -> Result<TokenOut, ApiError> {
    let (refresh_token, refresh_hash) = new_refresh_token();
    let sid = Uuid::now_v7();
    let absolute = chrono::Duration::from_std(app.config.session_absolute)
        .map_err(|e| ApiError::Internal(format!("session lifetime: {e}")))?;
    let ip = req.peer.to_string();
    let user_agent = req.user_agent();
    let client = app.db.get().await?;
    db::sessions::create(
        &client,
        &db::sessions::NewSession {
            id: sid,
            user_id: user.id,
            expires_at: chrono::Utc::now() + absolute,
            ip: Some(&ip),
            user_agent: user_agent.as_deref(),
            refresh_hash: &refresh_hash,
        },
    )
    .await?;
    issue_tokens(app, user, sid, refresh_token)
}

/// `GET /api/auth/me`.
pub async fn me(app: &AppState, req: &Request) -> Result<Reply, ApiError> {
    let principal = app.authenticate(req.bearer()?).await?;
    Ok(Reply::json(
        StatusCode::OK,
        &UserOut::from(&*principal.user),
    ))
}
