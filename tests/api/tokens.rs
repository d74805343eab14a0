//! Tokens for other services: refresh rotation and reuse detection, logout,
//! sessions, introspection, discovery, and revocation across instances.

use std::time::{Duration, Instant};

use auth_service::db::local_pg::{LocalPgOptions, LocalPostgres};
use reqwest::Response;
use serde_json::{json, Value};

use crate::helpers::{
    assert_error, base_settings, spawn_app, spawn_app_on, spawn_app_with, TestApp,
};

const SERVICE_KEY: &str = "svc-key-0123456789abcdef";

async fn refresh(app: &TestApp, refresh_token: &str) -> Response {
    app.client
        .post(app.url("/api/auth/refresh"))
        .json(&json!({ "refresh_token": refresh_token }))
        .send()
        .await
        .expect("request")
}

async fn logout(app: &TestApp, token: &str) -> Response {
    app.client
        .post(app.url("/api/auth/logout"))
        .bearer_auth(token)
        .send()
        .await
        .expect("request")
}

async fn introspect(app: &TestApp, key: &str, form: &[(&str, &str)]) -> Response {
    app.client
        .post(app.url("/api/auth/introspect"))
        .bearer_auth(key)
        .form(form)
        .send()
        .await
        .expect("request")
}

async fn with_introspection() -> TestApp {
    spawn_app_with(|s| {
        s.insert(
            "INTROSPECTION_KEYS".into(),
            format!("billing:{SERVICE_KEY}"),
        );
    })
    .await
}

fn str_of<'a>(v: &'a Value, field: &str) -> &'a str {
    v[field]
        .as_str()
        .unwrap_or_else(|| panic!("{field} in {v}"))
}

#[tokio::test]
async fn refresh_rotates_and_keeps_the_session() {
    let app = spawn_app().await;
    let (_, access, login) = app.new_user().await;
    let first = str_of(&login, "refresh_token");
    let response = refresh(&app, first).await;
    assert_eq!(response.status(), 200);
    let pair: Value = response.json().await.expect("json");
    assert_ne!(str_of(&pair, "refresh_token"), first, "a new refresh token");
    assert_eq!(pair["token_type"], "bearer");
    let new_access = str_of(&pair, "access_token");
    assert_eq!(app.me(new_access).await.status(), 200);
    // Same session: both access tokens carry the same sid.
    let sid = |token: &str| -> Value {
        use base64::Engine;
        let payload = token.split('.').nth(1).expect("payload");
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload)
            .expect("b64");
        serde_json::from_slice::<Value>(&bytes).expect("claims")["sid"].clone()
    };
    assert_eq!(sid(&access), sid(new_access));
    // The next rotation works from the new token.
    assert_eq!(
        refresh(&app, str_of(&pair, "refresh_token")).await.status(),
        200
    );
}

#[tokio::test]
async fn reusing_a_spent_refresh_token_revokes_the_whole_session() {
    let app = spawn_app().await;
    let (_, _, login) = app.new_user().await;
    let first = str_of(&login, "refresh_token").to_owned();
    let pair: Value = refresh(&app, &first).await.json().await.expect("json");
    let thief_result = refresh(&app, &first).await;
    assert_error(thief_result, 401, "unauthorized").await;
    // The legitimate holder's tokens die with the session.
    assert_error(
        app.me(str_of(&pair, "access_token")).await,
        401,
        "unauthorized",
    )
    .await;
    assert_error(
        refresh(&app, str_of(&pair, "refresh_token")).await,
        401,
        "unauthorized",
    )
    .await;
    let db = app.db().await;
    let reason: Option<String> = db
        .query_one("SELECT revoked_reason FROM sessions", &[])
        .await
        .expect("row")
        .get(0);
    assert_eq!(reason.as_deref(), Some("refresh_token_reuse"));
}

#[tokio::test]
async fn bad_refresh_requests_are_refused() {
    let app = spawn_app().await;
    assert_error(refresh(&app, "not-a-token").await, 401, "unauthorized").await;
    let missing = app
        .client
        .post(app.url("/api/auth/refresh"))
        .json(&json!({}))
        .send()
        .await
        .expect("request");
    assert_error(missing, 422, "validation_error").await;
    let in_query = app
        .client
        .post(app.url("/api/auth/refresh?refresh_token=abc"))
        .json(&json!({ "refresh_token": "abc" }))
        .send()
        .await
        .expect("request");
    assert_error(in_query, 400, "bad_request").await;
}

#[tokio::test]
async fn sessions_end_after_idle_or_absolute_lifetime() {
    let app = spawn_app().await;
    let db = app.db().await;
    let (_, _, login) = app.new_user().await;
    // Move the session's clock instead of sleeping: idle for 15 days.
    db.execute(
        "UPDATE sessions SET last_used_at = now() - interval '15 days'",
        &[],
    )
    .await
    .expect("update");
    assert_error(
        refresh(&app, str_of(&login, "refresh_token")).await,
        401,
        "unauthorized",
    )
    .await;

    let (_, _, login) = app.new_user().await;
    db.execute(
        "UPDATE sessions SET expires_at = now() - interval '1 second' WHERE revoked_at IS NULL",
        &[],
    )
    .await
    .expect("update");
    assert_error(
        refresh(&app, str_of(&login, "refresh_token")).await,
        401,
        "unauthorized",
    )
    .await;
}

#[tokio::test]
async fn logout_revokes_access_and_refresh_tokens_at_once() {
    let app = spawn_app().await;
    let (_, access, login) = app.new_user().await;
    assert_eq!(logout(&app, &access).await.status(), 204);
    assert_error(app.me(&access).await, 401, "unauthorized").await;
    assert_error(
        refresh(&app, str_of(&login, "refresh_token")).await,
        401,
        "unauthorized",
    )
    .await;
    assert_error(logout(&app, "garbage").await, 401, "unauthorized").await;
}

#[tokio::test]
async fn a_refresh_token_or_service_key_is_not_an_access_token() {
    let app = with_introspection().await;
    let (_, _, login) = app.new_user().await;
    assert_error(
        app.me(str_of(&login, "refresh_token")).await,
        401,
        "unauthorized",
    )
    .await;
    assert_error(app.me(SERVICE_KEY).await, 401, "unauthorized").await;
}

#[tokio::test]
async fn sessions_are_listed_and_ended_by_their_owner_only() {
    let app = spawn_app().await;
    let (email, first, _) = app.new_user().await;
    let second: Value = app
        .login(&email, crate::helpers::PASSWORD)
        .await
        .json()
        .await
        .expect("json");
    let second = str_of(&second, "access_token");
    let listed: Value = app
        .get_auth("/api/auth/sessions", second)
        .await
        .json()
        .await
        .expect("json");
    let sessions = listed.as_array().expect("array");
    assert_eq!(sessions.len(), 2);
    assert_eq!(
        sessions[0]["current"], true,
        "newest first, and it is this one"
    );
    assert_eq!(sessions[1]["current"], false);
    assert_eq!(sessions[0]["ip"], "127.0.0.1");
    let other_sid = str_of(&sessions[1], "sid").to_owned();

    let (_, stranger, _) = app.new_user().await;
    let not_yours = app
        .client
        .delete(app.url(&format!("/api/auth/sessions/{other_sid}")))
        .bearer_auth(&stranger)
        .send()
        .await
        .expect("request");
    assert_error(not_yours, 404, "not_found").await;
    assert_eq!(
        app.me(&first).await.status(),
        200,
        "a stranger cannot end it"
    );

    let malformed = app
        .client
        .delete(app.url("/api/auth/sessions/not-a-uuid"))
        .bearer_auth(second)
        .send()
        .await
        .expect("request");
    assert_error(malformed, 404, "not_found").await;

    let ended = app
        .client
        .delete(app.url(&format!("/api/auth/sessions/{other_sid}")))
        .bearer_auth(second)
        .send()
        .await
        .expect("request");
    assert_eq!(ended.status(), 204);
    assert_error(app.me(&first).await, 401, "unauthorized").await;
    assert_eq!(app.me(second).await.status(), 200);
    let listed: Value = app
        .get_auth("/api/auth/sessions", second)
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(listed.as_array().map(Vec::len), Some(1));
}

#[tokio::test]
async fn introspection_answers_for_valid_and_invalid_tokens() {
    let app = with_introspection().await;
    let (email, access, _) = app.new_user().await;

    let response = introspect(&app, SERVICE_KEY, &[("token", &access)]).await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["cache-control"], "no-store");
    let body: Value = response.json().await.expect("json");
    assert_eq!(body["active"], true);
    assert_eq!(body["email"], email);
    for field in ["sub", "exp", "iat", "jti", "sid", "iss"] {
        assert!(!body[field].is_null(), "{field} in {body}");
    }
    assert!(body.get("role").is_none(), "no role unless asked");

    for bad in ["garbage", "a.b.c", ""] {
        let body: Value = introspect(&app, SERVICE_KEY, &[("token", bad)])
            .await
            .json()
            .await
            .expect("json");
        assert_eq!(body, json!({ "active": false }), "{bad:?}");
    }
    // JSON bodies work too.
    let body: Value = app
        .client
        .post(app.url("/api/auth/introspect"))
        .bearer_auth(SERVICE_KEY)
        .json(&json!({ "token": access }))
        .send()
        .await
        .expect("request")
        .json()
        .await
        .expect("json");
    assert_eq!(body["active"], true);

    assert_eq!(logout(&app, &access).await.status(), 204);
    let body: Value = introspect(&app, SERVICE_KEY, &[("token", &access)])
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(body, json!({ "active": false }), "revoked at once");
}

#[tokio::test]
async fn introspection_needs_a_valid_service_key() {
    let app = with_introspection().await;
    let (_, access, _) = app.new_user().await;
    assert_error(
        introspect(&app, "wrong-key-0123456789", &[("token", &access)]).await,
        401,
        "unauthorized",
    )
    .await;
    // A user's own access token is not a service key.
    assert_error(
        introspect(&app, &access, &[("token", &access)]).await,
        401,
        "unauthorized",
    )
    .await;
    let no_key = app
        .client
        .post(app.url("/api/auth/introspect"))
        .form(&[("token", access.as_str())])
        .send()
        .await
        .expect("request");
    assert_error(no_key, 401, "unauthorized").await;
    // Without INTROSPECTION_KEYS, introspection is off.
    let plain = spawn_app().await;
    assert_error(
        introspect(&plain, SERVICE_KEY, &[("token", &access)]).await,
        401,
        "unauthorized",
    )
    .await;
}

#[tokio::test]
async fn introspection_reports_the_role_in_a_workspace() {
    let app = with_introspection().await;
    let (_, access, _) = app.new_user().await;
    let workspace: Value = app
        .create_workspace(&access, &json!({ "name": "Ops" }))
        .await
        .json()
        .await
        .expect("json");
    let id = str_of(&workspace, "id");
    let body: Value = introspect(
        &app,
        SERVICE_KEY,
        &[("token", &access), ("workspace_id", id)],
    )
    .await
    .json()
    .await
    .expect("json");
    assert_eq!(body["role"], "owner");
    assert_eq!(body["workspace_id"], id);
    let (_, stranger, _) = app.new_user().await;
    let body: Value = introspect(
        &app,
        SERVICE_KEY,
        &[("token", &stranger), ("workspace_id", id)],
    )
    .await
    .json()
    .await
    .expect("json");
    assert_eq!(body["active"], true);
    assert!(body.get("role").is_none(), "not a member: no role, {body}");
}

#[tokio::test]
async fn discovery_documents_are_served() {
    let app = spawn_app().await;
    let jwks: Value = app
        .client
        .get(app.url("/.well-known/jwks.json"))
        .send()
        .await
        .expect("request")
        .json()
        .await
        .expect("json");
    assert_eq!(jwks, json!({ "keys": [] }), "HS256 publishes no keys");
    let oidc: Value = app
        .client
        .get(app.url("/.well-known/openid-configuration"))
        .send()
        .await
        .expect("request")
        .json()
        .await
        .expect("json");
    assert_eq!(oidc["issuer"], "auth-service");
    assert!(str_of(&oidc, "jwks_uri").ends_with("/.well-known/jwks.json"));
    assert!(str_of(&oidc, "introspection_endpoint").ends_with("/api/auth/introspect"));
}

#[tokio::test]
async fn logout_on_one_instance_is_enforced_by_another_within_a_second() {
    let a = with_introspection().await;
    let mut settings = base_settings(&a.db_url);
    settings.insert("MIGRATE_ON_START".into(), "false".into());
    settings.insert("INTROSPECTION_KEYS".into(), SERVICE_KEY.into());
    let b = spawn_app_on(settings).await;
    let (_, access, _) = a.new_user().await;
    // Wait until B's feed is up and its cache is warm.
    let deadline = Instant::now() + Duration::from_secs(5);
    while !b.state.revocations.trusted() || b.me(&access).await.status() != 200 {
        assert!(Instant::now() < deadline, "instance B never became ready");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(logout(&a, &access).await.status(), 204);
    let logged_out = Instant::now();
    loop {
        if b.me(&access).await.status() == 401 {
            break;
        }
        assert!(
            logged_out.elapsed() < Duration::from_secs(1),
            "B still accepts a revoked token after 1 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let body: Value = introspect(&b, SERVICE_KEY, &[("token", &access)])
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(body, json!({ "active": false }));
}

#[tokio::test]
async fn without_feed_or_database_validation_fails_closed() {
    // A cluster of its own, so this test can take it down.
    let mut pg = tokio::task::spawn_blocking(|| LocalPostgres::start(LocalPgOptions::default()))
        .await
        .expect("join")
        .expect("cluster");
    let admin = pg.url("postgres");
    let (client, conn) = tokio_postgres::connect(&admin, tokio_postgres::NoTls)
        .await
        .expect("connect");
    tokio::spawn(conn);
    client
        .batch_execute("CREATE DATABASE closed")
        .await
        .expect("create");
    let mut settings = base_settings(&pg.url("closed"));
    settings.insert("INTROSPECTION_KEYS".into(), SERVICE_KEY.into());
    settings.insert("REVOCATION_STALENESS_SECONDS".into(), "1".into());
    let app = spawn_app_on(settings).await;
    let (_, access, _) = app.new_user().await;
    assert_eq!(app.me(&access).await.status(), 200);
    drop(client);
    tokio::task::spawn_blocking(move || pg.stop())
        .await
        .expect("stop");
    // Past the staleness window the instance must ask the database, which is gone.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let response = introspect(&app, SERVICE_KEY, &[("token", &access)]).await;
    let status = response.status().as_u16();
    let body: Value = response.json().await.expect("json");
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["code"], "unavailable");
    assert_ne!(body["active"], true);
    assert_error(app.me(&access).await, 503, "unavailable").await;
}

#[tokio::test]
async fn deactivating_a_user_ends_every_session_on_every_instance() {
    let a = spawn_app().await;
    let mut settings = base_settings(&a.db_url);
    settings.insert("MIGRATE_ON_START".into(), "false".into());
    let b = spawn_app_on(settings).await;
    let (email, first, login) = a.new_user().await;
    let second: Value = a
        .login(&email, crate::helpers::PASSWORD)
        .await
        .json()
        .await
        .expect("json");
    let second = str_of(&second, "access_token").to_owned();
    let user: Value = a.me(&first).await.json().await.expect("json");
    let id = str_of(&user, "id").parse().expect("uuid");
    let deadline = Instant::now() + Duration::from_secs(5);
    while !b.state.revocations.trusted() || b.me(&second).await.status() != 200 {
        assert!(Instant::now() < deadline, "instance B never became ready");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    assert!(auth_service::accounts::deactivate(&a.state, id)
        .await
        .expect("deactivate"));
    assert_error(a.me(&first).await, 401, "unauthorized").await;
    assert_error(a.me(&second).await, 401, "unauthorized").await;
    assert_error(
        refresh(&a, str_of(&login, "refresh_token")).await,
        401,
        "unauthorized",
    )
    .await;
    assert_error(
        a.login(&email, crate::helpers::PASSWORD).await,
        401,
        "unauthorized",
    )
    .await;
    let done = Instant::now();
    while b.me(&second).await.status() != 401 {
        assert!(
            done.elapsed() < Duration::from_secs(1),
            "B still accepts a deactivated user"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn ending_other_sessions_keeps_the_current_one() {
    let app = spawn_app().await;
    let (email, first, _) = app.new_user().await;
    let second: Value = app
        .login(&email, crate::helpers::PASSWORD)
        .await
        .json()
        .await
        .expect("json");
    let second = str_of(&second, "access_token").to_owned();
    let sessions: Value = app
        .get_auth("/api/auth/sessions", &second)
        .await
        .json()
        .await
        .expect("json");
    let current = sessions
        .as_array()
        .and_then(|s| s.iter().find(|s| s["current"] == true))
        .map(|s| str_of(s, "sid").parse().expect("uuid"));
    let user: Value = app.me(&first).await.json().await.expect("json");
    let ended = auth_service::accounts::end_sessions(
        &app.state,
        str_of(&user, "id").parse().expect("uuid"),
        current,
        "password_changed",
    )
    .await
    .expect("end");
    assert_eq!(ended.len(), 1);
    assert_error(app.me(&first).await, 401, "unauthorized").await;
    assert_eq!(app.me(&second).await.status(), 200);
}
