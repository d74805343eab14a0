//! The seed auth endpoints against the contract: register, login and me.

use std::time::{SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use reqwest::header::CONTENT_TYPE;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::helpers::{
    assert_error, error_fields, jwt_parts, spawn_app, unique_email, TestApp, JWT_KEY, PASSWORD,
};

const FORM: &str = "application/x-www-form-urlencoded";

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs() as i64
}

/// `POST /api/auth/register` with a raw body and content type.
async fn register_body(
    app: &TestApp,
    content_type: Option<&str>,
    body: Vec<u8>,
) -> reqwest::Response {
    let mut request = app.client.post(app.url("/api/auth/register")).body(body);
    if let Some(content_type) = content_type {
        request = request.header(CONTENT_TYPE, content_type);
    }
    request.send().await.expect("request")
}

/// `POST /api/auth/login` with a raw body and content type.
async fn login_body(app: &TestApp, content_type: &str, body: &str) -> reqwest::Response {
    app.client
        .post(app.url("/api/auth/login"))
        .header(CONTENT_TYPE, content_type)
        .body(body.to_owned())
        .send()
        .await
        .expect("request")
}

/// Registers `password` for a new address; returns the status.
async fn register_status(app: &TestApp, password: &str) -> u16 {
    app.register(&unique_email(), password)
        .await
        .status()
        .as_u16()
}

// ---------------------------------------------------------------- register

#[tokio::test]
async fn register_returns_the_user_with_a_normalised_email() {
    let app = spawn_app().await;
    let email = unique_email();
    let response = app
        .register(&format!(" \t{}  ", email.to_uppercase()), PASSWORD)
        .await;
    assert_eq!(response.status(), 201);
    let user: Value = response.json().await.expect("json");
    let keys: Vec<&str> = user
        .as_object()
        .expect("object")
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        keys.len(),
        5,
        "exactly id, email, is_active, is_verified, created_at: {user}"
    );
    Uuid::parse_str(user["id"].as_str().expect("id")).expect("id is a UUID");
    assert_eq!(user["email"], email);
    assert_eq!(user["is_active"], true);
    assert_eq!(user["is_verified"], false);
    let created_at = user["created_at"].as_str().expect("created_at");
    assert!(created_at.ends_with('Z'), "{created_at}");
    let parsed = chrono::DateTime::parse_from_rfc3339(created_at).expect("RFC 3339");
    let age = chrono::Utc::now().signed_duration_since(parsed);
    assert!(
        age.num_seconds().abs() < 60,
        "created_at is now: {created_at}"
    );

    // Stored in the normalised form too, and never as the plain password.
    let row = app
        .db()
        .await
        .query_one("SELECT email, password_hash FROM users", &[])
        .await
        .expect("one user row");
    assert_eq!(row.get::<_, String>(0), email);
    assert!(!row.get::<_, String>(1).contains(PASSWORD));
}

#[tokio::test]
async fn register_refuses_a_duplicate_email_even_in_another_case_or_with_spaces() {
    let app = spawn_app().await;
    let email = unique_email();
    assert_eq!(app.register(&email, PASSWORD).await.status(), 201);
    assert_error(app.register(&email, PASSWORD).await, 409, "conflict").await;
    assert_error(
        app.register(&email.to_uppercase(), "another-password-1")
            .await,
        409,
        "conflict",
    )
    .await;
    assert_error(
        app.register(&format!("  {email} "), PASSWORD).await,
        409,
        "conflict",
    )
    .await;
}

#[tokio::test]
async fn concurrent_registrations_of_one_address_have_exactly_one_winner() {
    let app = spawn_app().await;
    let email = unique_email();
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..20 {
        let client = app.client.clone();
        let url = app.url("/api/auth/register");
        // Same address, spelled differently by some clients.
        let spelled = if i % 2 == 0 {
            email.clone()
        } else {
            email.to_uppercase()
        };
        tasks.spawn(async move {
            let response = client
                .post(url)
                .json(&json!({ "email": spelled, "password": PASSWORD }))
                .send()
                .await
                .expect("request");
            let status = response.status().as_u16();
            let retry_after = response.headers().contains_key("retry-after");
            let body: Value = response.json().await.expect("json");
            (status, retry_after, body)
        });
    }
    let mut created = 0;
    while let Some(result) = tasks.join_next().await {
        let (status, retry_after, body) = result.expect("task");
        match status {
            201 => created += 1,
            409 => assert_eq!(body["code"], "conflict"),
            // The hashing queue may shed load; that must be a clean 503.
            503 => {
                assert_eq!(body["code"], "unavailable");
                assert!(retry_after, "503 without Retry-After");
            }
            other => panic!("unexpected status {other}: {body}"),
        }
    }
    assert_eq!(created, 1, "exactly one registration wins");
    let rows: i64 = app
        .db()
        .await
        .query_one(
            "SELECT count(*) FROM users WHERE lower(email) = $1",
            &[&email],
        )
        .await
        .expect("count")
        .get(0);
    assert_eq!(rows, 1);
}

#[tokio::test]
async fn register_refuses_a_bad_email_naming_the_field() {
    let app = spawn_app().await;
    for bad in [
        "not-an-email",
        "user@",
        "@example.com",
        "a b@example.com",
        "",
    ] {
        let body = assert_error(app.register(bad, PASSWORD).await, 422, "validation_error").await;
        assert_eq!(error_fields(&body), ["email"], "{bad:?}: {body}");
    }
    let too_long = format!("{}@example.com", "a".repeat(250));
    let body = assert_error(
        app.register(&too_long, PASSWORD).await,
        422,
        "validation_error",
    )
    .await;
    assert_eq!(error_fields(&body), ["email"]);
}

#[tokio::test]
async fn register_enforces_the_password_length_in_characters() {
    let app = spawn_app().await;
    assert_eq!(register_status(&app, "k7#Qz!p").await, 422, "7 characters");
    assert_eq!(register_status(&app, "k7#Qz!pX").await, 201, "8 characters");
    assert_eq!(register_status(&app, &"x".repeat(1024)).await, 201, "1024");
    assert_eq!(register_status(&app, &"x".repeat(1025)).await, 422, "1025");
    // Unicode scalar values, not bytes: 8 emoji are 32 bytes but 8 characters.
    assert_eq!(register_status(&app, &"🦀".repeat(8)).await, 201, "8 emoji");
    assert_eq!(register_status(&app, &"🦀".repeat(7)).await, 422, "7 emoji");
    let body = assert_error(
        app.register(&unique_email(), "short").await,
        422,
        "validation_error",
    )
    .await;
    assert_eq!(error_fields(&body), ["password"]);
}

#[tokio::test]
async fn register_refuses_common_passwords() {
    let app = spawn_app().await;
    for common in ["password123", "12345678", "PASSWORD123"] {
        let body = assert_error(
            app.register(&unique_email(), common).await,
            422,
            "validation_error",
        )
        .await;
        assert_eq!(error_fields(&body), ["password"], "{common}");
    }
}

#[tokio::test]
async fn register_lists_every_invalid_or_missing_field() {
    let app = spawn_app().await;
    let body = assert_error(app.register("nope", "short").await, 422, "validation_error").await;
    let mut fields = error_fields(&body);
    fields.sort();
    assert_eq!(fields, ["email", "password"], "{body}");

    let body = assert_error(app.register_raw(&json!({})).await, 422, "validation_error").await;
    let mut fields = error_fields(&body);
    fields.sort();
    assert_eq!(fields, ["email", "password"], "{body}");

    let body = assert_error(
        app.register_raw(&json!({ "email": unique_email() })).await,
        422,
        "validation_error",
    )
    .await;
    assert_eq!(error_fields(&body), ["password"]);

    let body = assert_error(
        app.register_raw(&json!({ "password": PASSWORD })).await,
        422,
        "validation_error",
    )
    .await;
    assert_eq!(error_fields(&body), ["email"]);
}

#[tokio::test]
async fn register_refuses_bodies_that_are_not_a_json_object_of_strings() {
    let app = spawn_app().await;
    let json = Some("application/json");
    for body in [
        &b"{\"email\": "[..],
        b"not json at all",
        b"",
        br#"{"email": 123, "password": "correct-horse-battery"}"#,
        br#"{"email": "a@example.com", "password": ["x"]}"#,
        br#"[{"email": "a@example.com", "password": "correct-horse-battery"}]"#,
        b"\"a string\"",
    ] {
        let response = register_body(&app, json, body.to_vec()).await;
        let text = String::from_utf8_lossy(body).into_owned();
        assert_eq!(response.status(), 400, "{text}");
        assert_error(response, 400, "bad_request").await;
    }
    let rows: i64 = app
        .db()
        .await
        .query_one("SELECT count(*) FROM users", &[])
        .await
        .expect("count")
        .get(0);
    assert_eq!(rows, 0);
}

#[tokio::test]
async fn register_needs_the_json_content_type() {
    let app = spawn_app().await;
    let body = serde_json::to_vec(&json!({ "email": unique_email(), "password": PASSWORD }))
        .expect("json");
    for content_type in [Some("text/plain"), Some(FORM), None] {
        let response = register_body(&app, content_type, body.clone()).await;
        assert_error(response, 415, "unsupported_media_type").await;
    }
    // With parameters and in another case it is still JSON.
    let body = serde_json::to_vec(&json!({ "email": unique_email(), "password": PASSWORD }))
        .expect("json");
    let response = register_body(&app, Some("Application/JSON; charset=utf-8"), body).await;
    assert_eq!(response.status(), 201);
}

#[tokio::test]
async fn register_refuses_a_body_over_64_kib_with_content_length() {
    let app = spawn_app().await;
    let body = json!({ "email": unique_email(), "password": "x".repeat(70 * 1024) });
    assert_error(app.register_raw(&body).await, 413, "payload_too_large").await;
    // Just under the limit is read (and refused for the password length only).
    let body = json!({ "email": unique_email(), "password": "x".repeat(60 * 1024) });
    let body = assert_error(app.register_raw(&body).await, 422, "validation_error").await;
    assert_eq!(error_fields(&body), ["password"]);
}

#[tokio::test]
async fn register_refuses_a_chunked_body_over_64_kib_while_reading() {
    let app = spawn_app().await;
    // No Content-Length: the limit must hold while the body streams in. The
    // body is never finished (no last chunk), so the answer can only come
    // from the limit, not from the end of the body.
    let chunk = vec![b' '; 8 * 1024];
    let mut frame = format!("{:x}\r\n", chunk.len()).into_bytes();
    frame.extend_from_slice(&chunk);
    frame.extend_from_slice(b"\r\n");
    let head = b"POST /api/auth/register HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n";
    let mut chunks: Vec<&[u8]> = vec![head];
    chunks.extend(std::iter::repeat_n(frame.as_slice(), 9)); // 72 KiB
    let response = app.raw(&chunks).await;
    assert_eq!(response.status, 413, "{}", response.text);
    assert!(
        response.text.contains("\"payload_too_large\""),
        "{}",
        response.text
    );
}

#[tokio::test]
async fn register_ignores_fields_the_client_may_not_set() {
    let app = spawn_app().await;
    let id = Uuid::new_v4();
    let email = unique_email();
    let response = app
        .register_raw(&json!({
            "email": email,
            "password": PASSWORD,
            "id": id,
            "is_verified": true,
            "is_active": false,
            "created_at": "2000-01-01T00:00:00Z",
        }))
        .await;
    assert_eq!(response.status(), 201);
    let user: Value = response.json().await.expect("json");
    assert_ne!(user["id"], json!(id));
    assert_eq!(user["is_verified"], false);
    assert_eq!(user["is_active"], true);
    assert!(!user["created_at"]
        .as_str()
        .expect("created_at")
        .starts_with("2000"));
    let row = app
        .db()
        .await
        .query_one("SELECT id, is_verified, is_active FROM users", &[])
        .await
        .expect("row");
    assert_ne!(row.get::<_, Uuid>(0), id);
    assert!(!row.get::<_, bool>(1), "stored is_verified");
    assert!(row.get::<_, bool>(2), "stored is_active");
    // And the account works: it was not created inactive.
    assert_eq!(app.login(&email, PASSWORD).await.status(), 200);
}

// ------------------------------------------------------------------- login

#[tokio::test]
async fn login_with_a_form_returns_a_bearer_token_pair() {
    let app = spawn_app().await;
    let email = unique_email();
    assert_eq!(app.register(&email, PASSWORD).await.status(), 201);
    let response = app.login(&email, PASSWORD).await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["cache-control"], "no-store");
    let body: Value = response.json().await.expect("json");
    assert_eq!(body["token_type"], "bearer");
    assert_eq!(body["expires_in"], 1800);
    let access = body["access_token"].as_str().expect("access_token");
    assert_eq!(access.split('.').count(), 3, "a JWT");
    let refresh = body["refresh_token"].as_str().expect("refresh_token");
    assert!(refresh.len() >= 43, "≥ 256 bits: {refresh}");
    assert_ne!(refresh, access);
    assert_eq!(app.me(access).await.status(), 200);
}

#[tokio::test]
async fn login_accepts_multipart_form_data() {
    let app = spawn_app().await;
    let email = unique_email();
    assert_eq!(app.register(&email, PASSWORD).await.status(), 201);
    let form = reqwest::multipart::Form::new()
        .text("username", email.clone())
        .text("password", PASSWORD);
    let response = app
        .client
        .post(app.url("/api/auth/login"))
        .multipart(form)
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.expect("json");
    assert_eq!(body["token_type"], "bearer");
    let token = body["access_token"].as_str().expect("token");
    let me: Value = app.me(token).await.json().await.expect("json");
    assert_eq!(me["email"], email);

    // The same rules as the url-encoded form: a wrong password is refused.
    let form = reqwest::multipart::Form::new()
        .text("username", email)
        .text("password", "wrong-password-1");
    let response = app
        .client
        .post(app.url("/api/auth/login"))
        .multipart(form)
        .send()
        .await
        .expect("request");
    assert_error(response, 401, "unauthorized").await;
}

#[tokio::test]
async fn login_accepts_only_the_password_grant_type() {
    let app = spawn_app().await;
    let email = unique_email();
    assert_eq!(app.register(&email, PASSWORD).await.status(), 201);
    let response = app
        .client
        .post(app.url("/api/auth/login"))
        .form(&[
            ("grant_type", "password"),
            ("username", email.as_str()),
            ("password", PASSWORD),
            ("scope", ""),
        ])
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), 200);
    let response = app
        .client
        .post(app.url("/api/auth/login"))
        .form(&[
            ("grant_type", "client_credentials"),
            ("username", email.as_str()),
            ("password", PASSWORD),
        ])
        .send()
        .await
        .expect("request");
    let body = assert_error(response, 422, "validation_error").await;
    assert_eq!(error_fields(&body), ["grant_type"]);
}

#[tokio::test]
async fn wrong_password_and_unknown_email_get_the_same_401() {
    let app = spawn_app().await;
    let email = unique_email();
    assert_eq!(app.register(&email, PASSWORD).await.status(), 201);
    let wrong_password = assert_error(
        app.login(&email, "not-the-password").await,
        401,
        "unauthorized",
    )
    .await;
    let unknown_email = assert_error(
        app.login(&unique_email(), PASSWORD).await,
        401,
        "unauthorized",
    )
    .await;
    assert_eq!(wrong_password, unknown_email);
    // The password is taken exactly as sent: no case folding, no trimming.
    assert_error(
        app.login(&email, &PASSWORD.to_uppercase()).await,
        401,
        "unauthorized",
    )
    .await;
    assert_error(
        app.login(&email, &format!(" {PASSWORD}")).await,
        401,
        "unauthorized",
    )
    .await;
}

#[tokio::test]
async fn an_unknown_email_costs_a_hash_like_a_wrong_password() {
    // The equal-time rule, checked without timing: both paths hash once.
    let app = spawn_app().await;
    let email = unique_email();
    assert_eq!(app.register(&email, PASSWORD).await.status(), 201);
    for (username, password) in [
        (email.as_str(), "not-the-password"),
        ("nobody-here@example.com", PASSWORD),
    ] {
        let before = hashes_done(&app);
        assert_error(app.login(username, password).await, 401, "unauthorized").await;
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
        // The counter moves just after the answer is handed back.
        while hashes_done(&app) == before && std::time::Instant::now() < deadline {
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        assert_eq!(hashes_done(&app), before + 1, "{username}");
    }
}

fn hashes_done(app: &TestApp) -> u64 {
    app.state
        .hasher_stats
        .completed
        .load(std::sync::atomic::Ordering::SeqCst)
}

#[tokio::test]
async fn passwords_are_taken_exactly_as_sent() {
    let app = spawn_app().await;
    let email = unique_email();
    let password = "  Spaced Out Pass  ";
    assert_eq!(app.register(&email, password).await.status(), 201);
    assert_eq!(app.login(&email, password).await.status(), 200);
    for variant in [
        password.trim(),
        "  spaced out pass  ",
        "  SPACED OUT PASS  ",
    ] {
        assert_error(app.login(&email, variant).await, 401, "unauthorized").await;
    }
}

/// Registers a password containing U+FFFD, the character a lossy decoder
/// puts in place of bytes that are not UTF-8.
async fn user_with_replacement_char(app: &TestApp) -> String {
    let email = unique_email();
    let response = app.register(&email, "replace-\u{fffd}-me-please").await;
    assert_eq!(response.status(), 201);
    email
}

#[tokio::test]
async fn multipart_values_that_are_not_utf8_are_refused_not_replaced() {
    // Passwords are "taken exactly as sent": bytes 0xFF are not U+FFFD, so
    // this must not log in (and a form value that is not text is a 400, as
    // it already is for a url-encoded body).
    let app = spawn_app().await;
    let email = user_with_replacement_char(&app).await;
    let mut body = format!(
        "--XyZ\r\nContent-Disposition: form-data; name=\"username\"\r\n\r\n{email}\r\n--XyZ\r\nContent-Disposition: form-data; name=\"password\"\r\n\r\n"
    )
    .into_bytes();
    body.extend_from_slice(b"replace-\xff-me-please\r\n--XyZ--\r\n");
    let response = app
        .client
        .post(app.url("/api/auth/login"))
        .header(CONTENT_TYPE, "multipart/form-data; boundary=XyZ")
        .body(body)
        .send()
        .await
        .expect("request");
    assert_error(response, 400, "bad_request").await;
}

#[tokio::test]
async fn percent_encoded_bytes_that_are_not_utf8_are_refused_not_replaced() {
    // The same rule for a url-encoded form: %FF is not U+FFFD.
    let app = spawn_app().await;
    let email = user_with_replacement_char(&app).await;
    let body = format!("username={email}&password=replace-%FF-me-please");
    assert_error(login_body(&app, FORM, &body).await, 400, "bad_request").await;
    // Raw (not percent-encoded) bytes are refused already.
    let mut raw = format!("username={email}&password=replace-").into_bytes();
    raw.extend_from_slice(b"\xff-me-please");
    let response = app
        .client
        .post(app.url("/api/auth/login"))
        .header(CONTENT_TYPE, FORM)
        .body(raw)
        .send()
        .await
        .expect("request");
    assert_error(response, 400, "bad_request").await;
}

#[tokio::test]
async fn login_normalises_the_username_like_register() {
    let app = spawn_app().await;
    let email = unique_email();
    assert_eq!(app.register(&email, PASSWORD).await.status(), 201);
    let response = app
        .login(&format!("  {}\t", email.to_uppercase()), PASSWORD)
        .await;
    assert_eq!(response.status(), 200);
}

#[tokio::test]
async fn login_refuses_json_and_other_media_types() {
    let app = spawn_app().await;
    let email = unique_email();
    assert_eq!(app.register(&email, PASSWORD).await.status(), 201);
    let response = app
        .client
        .post(app.url("/api/auth/login"))
        .json(&json!({ "username": email, "password": PASSWORD }))
        .send()
        .await
        .expect("request");
    assert_error(response, 415, "unsupported_media_type").await;
    let body = format!("username={email}&password={PASSWORD}");
    assert_error(
        login_body(&app, "text/plain", &body).await,
        415,
        "unsupported_media_type",
    )
    .await;
}

#[tokio::test]
async fn login_lists_missing_fields() {
    let app = spawn_app().await;
    let body = assert_error(login_body(&app, FORM, "").await, 422, "validation_error").await;
    let mut fields = error_fields(&body);
    fields.sort();
    assert_eq!(fields, ["password", "username"], "{body}");
    let body = assert_error(
        login_body(&app, FORM, "username=a%40example.com").await,
        422,
        "validation_error",
    )
    .await;
    assert_eq!(error_fields(&body), ["password"]);
    let body = assert_error(
        login_body(&app, FORM, "password=correct-horse-battery").await,
        422,
        "validation_error",
    )
    .await;
    assert_eq!(error_fields(&body), ["username"]);
}

#[tokio::test]
async fn login_refuses_a_field_sent_twice() {
    let app = spawn_app().await;
    let email = unique_email();
    assert_eq!(app.register(&email, PASSWORD).await.status(), 201);
    // Either value alone would be a valid login: the duplicate is the problem.
    let body = format!("username={email}&username={email}&password={PASSWORD}");
    let error = assert_error(login_body(&app, FORM, &body).await, 422, "validation_error").await;
    assert_eq!(error_fields(&error), ["username"]);
    let body = format!("username={email}&password={PASSWORD}&password=x");
    let error = assert_error(login_body(&app, FORM, &body).await, 422, "validation_error").await;
    assert_eq!(error_fields(&error), ["password"]);
}

#[tokio::test]
async fn login_refuses_a_password_in_the_query_string() {
    let app = spawn_app().await;
    let email = unique_email();
    assert_eq!(app.register(&email, PASSWORD).await.status(), 201);
    // Even with a complete, valid form body: the URL must not carry secrets.
    let response = app
        .client
        .post(app.url(&format!("/api/auth/login?password={PASSWORD}")))
        .form(&[("username", email.as_str()), ("password", PASSWORD)])
        .send()
        .await
        .expect("request");
    assert_error(response, 400, "bad_request").await;
}

#[tokio::test]
async fn access_token_carries_the_contract_claims() {
    let app = spawn_app().await;
    let (email, token, _) = app.new_user().await;
    let me: Value = app.me(&token).await.json().await.expect("json");
    let (header, claims) = jwt_parts(&token);
    assert_eq!(header["alg"], "HS256");
    assert!(
        header["kid"].as_str().is_some_and(|kid| !kid.is_empty()),
        "{header}"
    );
    assert_eq!(claims["sub"], me["id"]);
    assert_eq!(claims["email"], email);
    assert_eq!(claims["iss"], "auth-service");
    let iat = claims["iat"].as_i64().expect("iat");
    assert!((iat - now()).abs() < 60, "iat is now");
    assert!(claims["nbf"].as_i64().expect("nbf") <= iat);
    assert_eq!(claims["exp"].as_i64().expect("exp"), iat + 1800);
    Uuid::parse_str(claims["jti"].as_str().expect("jti")).expect("jti is a UUID");
    Uuid::parse_str(claims["sid"].as_str().expect("sid")).expect("sid is a UUID");
    assert!(claims.get("aud").is_none(), "no JWT_AUDIENCE, no aud");

    // Each login is a new session with new token ids.
    let second: Value = app
        .login(&email, PASSWORD)
        .await
        .json()
        .await
        .expect("json");
    let (_, second) = jwt_parts(second["access_token"].as_str().expect("token"));
    assert_ne!(second["jti"], claims["jti"]);
    assert_ne!(second["sid"], claims["sid"]);
}

#[tokio::test]
async fn login_stores_a_session_and_only_a_hash_of_the_refresh_token() {
    let app = spawn_app().await;
    let (_, token, body) = app.new_user().await;
    let (_, claims) = jwt_parts(&token);
    let refresh = body["refresh_token"].as_str().expect("refresh_token");
    let db = app.db().await;
    let sessions = db
        .query("SELECT id, user_id, revoked_at IS NULL FROM sessions", &[])
        .await
        .expect("sessions");
    assert_eq!(sessions.len(), 1);
    assert_eq!(sessions[0].get::<_, Uuid>(0).to_string(), claims["sid"]);
    assert_eq!(sessions[0].get::<_, Uuid>(1).to_string(), claims["sub"]);
    assert!(sessions[0].get::<_, bool>(2), "not revoked");
    let tokens = db
        .query("SELECT token_hash, session_id FROM refresh_tokens", &[])
        .await
        .expect("refresh_tokens");
    assert_eq!(tokens.len(), 1);
    let stored: Vec<u8> = tokens[0].get(0);
    assert_ne!(stored, refresh.as_bytes(), "the raw token is never stored");
    assert_eq!(stored, Sha256::digest(refresh.as_bytes()).to_vec());
    assert_eq!(tokens[0].get::<_, Uuid>(1).to_string(), claims["sid"]);
}

// ---------------------------------------------------------------------- me

/// A token the service should accept, built from a real one's claims; the
/// negative tests below change one thing each.
struct Minter {
    kid: String,
    claims: Value,
}

impl Minter {
    async fn new(app: &TestApp) -> Minter {
        let (_, token, _) = app.new_user().await;
        let (header, claims) = jwt_parts(&token);
        Minter {
            kid: header["kid"].as_str().expect("kid").to_owned(),
            claims,
        }
    }

    /// The real claims with `changes` applied, HS256-signed with `key`.
    fn sign(&self, key: &[u8], changes: Value) -> String {
        let mut claims = self.claims.clone();
        for (name, value) in changes.as_object().expect("object") {
            claims[name] = value.clone();
        }
        claims["jti"] = json!(Uuid::new_v4());
        let mut header = Header::new(Algorithm::HS256);
        header.kid = Some(self.kid.clone());
        jsonwebtoken::encode(&header, &claims, &EncodingKey::from_secret(key)).expect("sign")
    }

    fn sign_ok(&self, changes: Value) -> String {
        self.sign(JWT_KEY.as_bytes(), changes)
    }
}

#[tokio::test]
async fn me_returns_the_caller() {
    let app = spawn_app().await;
    let email = unique_email();
    let registered: Value = app
        .register(&email, PASSWORD)
        .await
        .json()
        .await
        .expect("json");
    let body: Value = app
        .login(&email, PASSWORD)
        .await
        .json()
        .await
        .expect("json");
    let response = app.me(body["access_token"].as_str().expect("token")).await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.json::<Value>().await.expect("json"), registered);
}

#[tokio::test]
async fn me_without_a_bearer_token_is_401() {
    let app = spawn_app().await;
    let (_, token, _) = app.new_user().await;
    let response = app
        .client
        .get(app.url("/api/auth/me"))
        .send()
        .await
        .expect("request");
    assert_error(response, 401, "unauthorized").await;
    for authorization in [
        "Basic dXNlcjpwYXNz".to_owned(),
        format!("Token {token}"),
        "Bearer".to_owned(),
        "Bearer ".to_owned(),
        token.clone(),
    ] {
        let response = app
            .client
            .get(app.url("/api/auth/me"))
            .header("authorization", &authorization)
            .send()
            .await
            .expect("request");
        assert_error(response, 401, "unauthorized").await;
    }
}

#[tokio::test]
async fn me_refuses_garbage_tokens() {
    let app = spawn_app().await;
    let (_, token, body) = app.new_user().await;
    let mut tampered = token.clone();
    // Flip the last signature character.
    let last = tampered.pop().expect("char");
    tampered.push(if last == 'A' { 'B' } else { 'A' });
    for bad in [
        "garbage".to_owned(),
        "a.b.c".to_owned(),
        tampered,
        "x".repeat(10_000),
        // A refresh token is not an access token.
        body["refresh_token"].as_str().expect("refresh").to_owned(),
    ] {
        assert_error(app.me(&bad).await, 401, "unauthorized").await;
    }
    assert_eq!(app.me(&token).await.status(), 200);
    // The scheme is case-insensitive (RFC 7235).
    let response = app
        .client
        .get(app.url("/api/auth/me"))
        .header("authorization", format!("bearer {token}"))
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), 200);
}

#[tokio::test]
async fn me_accepts_a_minted_token_signed_with_the_service_key() {
    // The control for the tests below: minting itself is not what fails.
    let app = spawn_app().await;
    let minter = Minter::new(&app).await;
    let token = minter.sign_ok(json!({ "iat": now(), "nbf": now(), "exp": now() + 600 }));
    assert_eq!(app.me(&token).await.status(), 200);
}

#[tokio::test]
async fn me_refuses_a_token_signed_with_another_key() {
    let app = spawn_app().await;
    let minter = Minter::new(&app).await;
    let token = minter.sign(b"another-key-that-is-long-enough-0123456789", json!({}));
    assert_error(app.me(&token).await, 401, "unauthorized").await;
}

#[tokio::test]
async fn me_refuses_an_expired_token() {
    let app = spawn_app().await;
    let minter = Minter::new(&app).await;
    let t = now();
    // Expired 60 s ago: beyond the 30 s leeway.
    let token = minter.sign_ok(json!({ "iat": t - 1860, "nbf": t - 1860, "exp": t - 60 }));
    assert_error(app.me(&token).await, 401, "unauthorized").await;
}

#[tokio::test]
async fn me_refuses_a_token_not_valid_yet() {
    let app = spawn_app().await;
    let minter = Minter::new(&app).await;
    let t = now();
    let token = minter.sign_ok(json!({ "iat": t, "nbf": t + 3600, "exp": t + 7200 }));
    assert_error(app.me(&token).await, 401, "unauthorized").await;
}

#[tokio::test]
async fn me_refuses_alg_none() {
    let app = spawn_app().await;
    let minter = Minter::new(&app).await;
    let header = URL_SAFE_NO_PAD.encode(
        serde_json::to_vec(&json!({ "alg": "none", "typ": "JWT", "kid": minter.kid }))
            .expect("json"),
    );
    let payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&minter.claims).expect("json"));
    assert_error(
        app.me(&format!("{header}.{payload}.")).await,
        401,
        "unauthorized",
    )
    .await;
    // With a real signature kept after the swapped header, too.
    let real = minter.sign_ok(json!({}));
    let signature = real.rsplit('.').next().expect("signature");
    assert_error(
        app.me(&format!("{header}.{payload}.{signature}")).await,
        401,
        "unauthorized",
    )
    .await;
}

#[tokio::test]
async fn me_refuses_a_wrong_issuer() {
    let app = spawn_app().await;
    let minter = Minter::new(&app).await;
    let token = minter.sign_ok(json!({ "iss": "someone-else" }));
    assert_error(app.me(&token).await, 401, "unauthorized").await;
}

#[tokio::test]
async fn me_refuses_an_unknown_or_missing_kid() {
    let app = spawn_app().await;
    let mut minter = Minter::new(&app).await;
    minter.kid = "not-our-key".to_owned();
    let token = minter.sign_ok(json!({}));
    assert_error(app.me(&token).await, 401, "unauthorized").await;
    let no_kid = jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &minter.claims,
        &EncodingKey::from_secret(JWT_KEY.as_bytes()),
    )
    .expect("sign");
    assert_error(app.me(&no_kid).await, 401, "unauthorized").await;
}

#[tokio::test]
async fn me_refuses_a_validly_signed_token_for_an_unknown_user() {
    let app = spawn_app().await;
    let minter = Minter::new(&app).await;
    let token = minter.sign_ok(json!({ "sub": Uuid::new_v4() }));
    assert_error(app.me(&token).await, 401, "unauthorized").await;
}

#[tokio::test]
async fn an_inactive_user_can_neither_log_in_nor_use_a_token() {
    // Deactivated behind the API. The first instance may cache the user (a
    // 30 s TTL), so a second, fresh instance on the same database checks.
    let app = spawn_app().await;
    let (email, token, _) = app.new_user().await;
    app.db()
        .await
        .execute(
            "UPDATE users SET is_active = false WHERE email = $1",
            &[&email],
        )
        .await
        .expect("update");
    let mut settings = crate::helpers::base_settings(&app.db_url);
    settings.insert("MIGRATE_ON_START".into(), "false".into());
    let other = crate::helpers::spawn_app_on(settings).await;
    assert_error(other.me(&token).await, 401, "unauthorized").await;
    assert_error(other.login(&email, PASSWORD).await, 401, "unauthorized").await;
}
