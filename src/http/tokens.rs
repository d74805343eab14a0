//! Tokens for other services: refresh rotation, logout, sessions, RFC 7662
//! introspection, and the discovery documents.

use http::StatusCode;
use serde::Serialize;
use serde_json::json;
use sha2::{Digest, Sha256};
use uuid::Uuid;

use super::auth::{issue_tokens, new_refresh_token};
use super::request::{missing, Request};
use super::response::{timestamp, Reply};
use crate::accounts;
use crate::audit::{action, AuditEvent, FAILURE};
use crate::changefeed::{self, Change};
use crate::db;
use crate::error::ApiError;
use crate::ratelimit::Limit;
use crate::state::AppState;

const BAD_REFRESH: &str = "Invalid or expired refresh token";

/// `POST /api/auth/refresh`: spends the refresh token and returns a new
/// pair for the same session. A token used twice is theft: its whole
/// session is revoked.
pub async fn refresh(app: &AppState, req: &Request) -> Result<Reply, ApiError> {
    app.limiter.check(Limit::Refresh, req.peer).await?;
    let presented = match req.header("content-type").map(str::to_ascii_lowercase) {
        Some(t)
            if t.starts_with("application/x-www-form-urlencoded")
                || t.starts_with("multipart/form-data") =>
        {
            req.form().await?.get("refresh_token").map(str::to_owned)
        }
        _ => req.json()?.string("refresh_token")?.map(str::to_owned),
    };
    let presented =
        presented.ok_or_else(|| ApiError::Validation(vec![missing("refresh_token")]))?;
    if presented.is_empty() || presented.len() > 512 {
        return Err(ApiError::Unauthorized(BAD_REFRESH));
    }
    let old_hash = Sha256::digest(presented.as_bytes());
    let (new_token, new_hash) = new_refresh_token();
    let mut client = app.db.get().await?;
    let tx = client.transaction().await?;
    let Some(target) = db::sessions::lock_refresh(&tx, &old_hash, app.config.session_idle).await?
    else {
        return Err(ApiError::Unauthorized(BAD_REFRESH));
    };
    if target.used {
        // Reuse: whoever holds the family now may be a thief. End it.
        db::sessions::revoke(
            &tx,
            target.session_id,
            target.user_id,
            "refresh_token_reuse",
        )
        .await?;
        changefeed::publish(
            &tx,
            &Change::Session {
                sid: target.session_id,
            },
        )
        .await?;
        tx.commit().await?;
        app.revocations.revoke(target.session_id);
        tracing::warn!(sid = %target.session_id, user_id = %target.user_id, "refresh token reuse detected; session revoked");
        app.audit.record(AuditEvent {
            action: action::REFRESH_REUSED,
            actor_id: None,
            workspace_id: None,
            user_id: Some(target.user_id),
            target: Some(target.session_id.to_string()),
            ip: Some(req.peer),
            outcome: FAILURE,
        });
        return Err(ApiError::Unauthorized(BAD_REFRESH));
    }
    if !target.session_live {
        return Err(ApiError::Unauthorized(BAD_REFRESH));
    }
    let user = match app.user(target.user_id).await? {
        Some(user) if user.is_active => user,
        _ => return Err(ApiError::Unauthorized(BAD_REFRESH)),
    };
    db::sessions::rotate(&tx, target.session_id, &old_hash, &new_hash).await?;
    tx.commit().await?;
    let tokens = issue_tokens(app, &user, target.session_id, new_token)?;
    Ok(Reply::json(StatusCode::OK, &tokens))
}

/// `POST /api/auth/logout`: ends the caller's session at once, here and
/// (through the change feed) everywhere.
pub async fn logout(app: &AppState, req: &Request) -> Result<Reply, ApiError> {
    let principal = app.authenticate(req.bearer()?).await?;
    accounts::end_session(app, principal.claims.sid, principal.user.id, "logout").await?;
    app.audit.record(
        AuditEvent::account(action::LOGOUT, principal.user.id, Some(req.peer))
            .target(principal.claims.sid.to_string()),
    );
    Ok(Reply::empty(StatusCode::NO_CONTENT))
}

#[derive(Serialize)]
struct SessionOut {
    sid: Uuid,
    created_at: String,
    last_used_at: String,
    ip: Option<String>,
    user_agent: Option<String>,
    current: bool,
}

/// `GET /api/auth/sessions`: the caller's live sessions, newest first.
pub async fn list_sessions(app: &AppState, req: &Request) -> Result<Reply, ApiError> {
    let principal = app.authenticate(req.bearer()?).await?;
    let client = app.db.get().await?;
    let rows = db::sessions::list_live(&client, principal.user.id, app.config.session_idle).await?;
    let out: Vec<SessionOut> = rows
        .into_iter()
        .map(|s| SessionOut {
            sid: s.id,
            created_at: timestamp(&s.created_at),
            last_used_at: timestamp(&s.last_used_at),
            ip: s.ip,
            user_agent: s.user_agent,
            current: s.id == principal.claims.sid,
        })
        .collect();
    Ok(Reply::json(StatusCode::OK, &out))
}

/// `DELETE /api/auth/sessions/{sid}`: ends one of the caller's sessions;
/// another user's, an unknown or a malformed id → 404.
pub async fn end_session(
    app: &AppState,
    req: &Request,
    params: &[&str],
) -> Result<Reply, ApiError> {
    let principal = app.authenticate(req.bearer()?).await?;
    let sid = params
        .first()
        .and_then(|raw| Uuid::parse_str(raw).ok())
        .ok_or(ApiError::NotFound)?;
    if !accounts::end_session(app, sid, principal.user.id, "ended_by_user").await? {
        return Err(ApiError::NotFound);
    }
    app.audit.record(
        AuditEvent::account(action::SESSION_ENDED, principal.user.id, Some(req.peer))
            .target(sid.to_string()),
    );
    Ok(Reply::empty(StatusCode::NO_CONTENT))
}

/// `POST /api/auth/introspect` (RFC 7662). The caller is a service with a
/// key from `INTROSPECTION_KEYS`; any invalid token is `{"active": false}`.
pub async fn introspect(app: &AppState, req: &Request) -> Result<Reply, ApiError> {
    let presented = req.bearer()?;
    // Every key is compared, in constant time, whatever matches first.
    let mut caller = None;
    for key in &app.config.introspection_keys {
        if key.key.ct_eq(presented.as_bytes()) && caller.is_none() {
            caller = Some(key.name.as_str());
        }
    }
    let Some(caller) = caller else {
        tracing::warn!(client = %req.peer, "introspection with an unknown service key");
        // Guessing keys gets slow: past a few failures a minute, 429.
        app.limiter.check(Limit::BadServiceKey, req.peer).await?;
        // Recorded under the limit only, so a flood cannot flood the log.
        app.audit.record(AuditEvent {
            action: action::BAD_SERVICE_KEY,
            actor_id: None,
            workspace_id: None,
            user_id: None,
            target: None,
            ip: Some(req.peer),
            outcome: FAILURE,
        });
        return Err(ApiError::Unauthorized("Invalid service key"));
    };
    let (token, workspace) = match req.header("content-type").map(str::to_ascii_lowercase) {
        Some(t) if t.starts_with("application/json") => {
            let body = req.json()?;
            (
                body.string("token")?.map(str::to_owned),
                body.string("workspace_id")?.map(str::to_owned),
            )
        }
        _ => {
            let form = req.form().await?;
            (
                form.get("token").map(str::to_owned),
                form.get("workspace_id").map(str::to_owned),
            )
        }
    };
    let token = token.ok_or_else(|| ApiError::Validation(vec![missing("token")]))?;
    let inactive = || Reply::json(StatusCode::OK, &json!({ "active": false }));
    let principal = match app.authenticate(&token).await {
        Ok(principal) => principal,
        // Only "cannot tell" is an error; "not valid" is an answer.
        Err(ApiError::Unauthorized(_)) => return Ok(inactive()),
        Err(other) => return Err(other),
    };
    let claims = &principal.claims;
    let mut out = json!({
        "active": true,
        "sub": claims.sub,
        "email": principal.user.email,
        "exp": claims.exp,
        "iat": claims.iat,
        "jti": claims.jti,
        "sid": claims.sid,
        "iss": claims.iss,
        "token_type": "Bearer",
    });
    if let Some(aud) = &claims.aud {
        out["aud"] = json!(aud);
    }
    if let Some(workspace) = workspace
        .as_deref()
        .and_then(|w| Uuid::parse_str(w.trim()).ok())
    {
        if let Some(role) = app.memberships.role(workspace, claims.sub).await? {
            out["workspace_id"] = json!(workspace);
            out["role"] = json!(role.as_str());
        }
    }
    tracing::debug!(caller, "introspection");
    Ok(Reply::json(StatusCode::OK, &out))
}

/// `GET /.well-known/jwks.json`: public signing keys; none under HS256.
pub fn jwks(app: &AppState) -> Result<Reply, ApiError> {
    Ok(Reply::json(StatusCode::OK, app.keys.current().jwks()))
}

/// `GET /.well-known/openid-configuration`: where things are.
pub fn openid_configuration(app: &AppState) -> Result<Reply, ApiError> {
    let base = &app.config.public_base_url;
    Ok(Reply::json(
        StatusCode::OK,
        &json!({
            "issuer": app.config.jwt_issuer,
            "jwks_uri": format!("{base}/.well-known/jwks.json"),
            "token_endpoint": format!("{base}/api/auth/login"),
            "introspection_endpoint": format!("{base}/api/auth/introspect"),
            "userinfo_endpoint": format!("{base}/api/auth/me"),
            "grant_types_supported": ["password", "refresh_token"],
            "response_types_supported": ["token"],
            "token_endpoint_auth_methods_supported": ["none"],
            "introspection_endpoint_auth_methods_supported": ["bearer"],
            "id_token_signing_alg_values_supported": [app.keys.current().algorithm_name()],
            "subject_types_supported": ["public"],
        }),
    ))
}
