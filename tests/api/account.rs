//! Account lifecycle: e-mail verification, password reset and change, with
//! the mail going through the outbox to a real (fake) SMTP server.

use std::time::{Duration, Instant};

use reqwest::Response;
use serde_json::{json, Value};

use crate::helpers::{assert_error, error_fields, spawn_app_with, unique_email, TestApp, PASSWORD};
use crate::smtp::SmtpServer;

const NEW_PASSWORD: &str = "a-brand-new-passphrase";

/// An app whose mail goes to a fresh fake SMTP server.
async fn app_with_mail() -> (TestApp, SmtpServer) {
    let smtp = SmtpServer::start().await;
    let url = smtp.url();
    let app = spawn_app_with(|s| {
        s.insert("SMTP_URL".into(), url);
        s.insert("PUBLIC_BASE_URL".into(), "https://app.example.com".into());
    })
    .await;
    (app, smtp)
}

async fn post(app: &TestApp, path: &str, token: Option<&str>, body: &Value) -> Response {
    let mut request = app.client.post(app.url(path)).json(body);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    request.send().await.expect("request")
}

async fn request_reset(app: &TestApp, email: &str) -> Response {
    post(
        app,
        "/api/auth/password-reset/request",
        None,
        &json!({ "email": email }),
    )
    .await
}

async fn confirm_reset(app: &TestApp, token: &str, password: &str) -> Response {
    post(
        app,
        "/api/auth/password-reset/confirm",
        None,
        &json!({ "token": token, "new_password": password }),
    )
    .await
}

async fn refresh(app: &TestApp, refresh_token: &str) -> Response {
    post(
        app,
        "/api/auth/refresh",
        None,
        &json!({ "refresh_token": refresh_token }),
    )
    .await
}

fn str_of<'a>(body: &'a Value, field: &str) -> &'a str {
    body[field]
        .as_str()
        .unwrap_or_else(|| panic!("{field} in {body}"))
}

/// A second login of `email`: (access token, refresh token).
async fn second_session(app: &TestApp, email: &str, password: &str) -> (String, String) {
    let response = app.login(email, password).await;
    assert_eq!(response.status(), 200, "login");
    let body: Value = response.json().await.expect("json");
    (
        str_of(&body, "access_token").to_owned(),
        str_of(&body, "refresh_token").to_owned(),
    )
}

#[tokio::test]
async fn verification_round_trip_through_smtp() {
    let (app, mut smtp) = app_with_mail().await;
    let (email, token, _) = app.new_user().await;
    let response = post(
        &app,
        "/api/auth/verify-email/request",
        Some(&token),
        &json!({}),
    )
    .await;
    assert_eq!(response.status(), 202);
    let body: Value = response.json().await.expect("json");
    assert!(body["detail"].is_string(), "{body}");

    let mail = smtp.expect("verification").await;
    assert_eq!(mail.to, [email.as_str()]);
    assert_eq!(mail.from, "auth-service@localhost");
    assert!(mail.subject().contains("Verify"), "{}", mail.subject());
    assert!(
        mail.body()
            .contains("https://app.example.com/verify-email?token="),
        "{}",
        mail.body()
    );
    let link_token = mail.token().expect("a token in the link");
    assert!(link_token.len() >= 43, "256 bits in base64url");

    let confirm = |t: String| {
        let app = &app;
        async move {
            post(
                app,
                "/api/auth/verify-email/confirm",
                None,
                &json!({ "token": t }),
            )
            .await
        }
    };
    let response = confirm(link_token.clone()).await;
    assert_eq!(response.status(), 200);
    let user: Value = response.json().await.expect("json");
    assert_eq!(user["is_verified"], true);
    assert_eq!(user["email"], email.as_str());
    for field in ["id", "is_active", "created_at"] {
        assert!(!user[field].is_null(), "{field} in {user}");
    }
    let me: Value = app.me(&token).await.json().await.expect("json");
    assert_eq!(me["is_verified"], true);

    // Single use.
    assert_error(confirm(link_token).await, 400, "bad_request").await;
    assert_error(confirm("made-up".into()).await, 400, "bad_request").await;

    // Only the hash is stored.
    let db = app.db().await;
    let stored: i64 = db
        .query_one("SELECT count(*) FROM one_time_tokens", &[])
        .await
        .expect("count")
        .get(0);
    assert_eq!(stored, 1);

    // Already verified: 202, and no second mail.
    let response = post(
        &app,
        "/api/auth/verify-email/request",
        Some(&token),
        &json!({}),
    )
    .await;
    assert_eq!(response.status(), 202);
    assert!(smtp.next(Duration::from_secs(2)).await.is_none());
}

#[tokio::test]
async fn verification_request_needs_a_bearer_token() {
    let (app, _smtp) = app_with_mail().await;
    let response = post(&app, "/api/auth/verify-email/request", None, &json!({})).await;
    assert_error(response, 401, "unauthorized").await;
}

#[tokio::test]
async fn reset_round_trip_ends_every_session() {
    let (app, mut smtp) = app_with_mail().await;
    let (email, access, login) = app.new_user().await;
    let refresh_token = str_of(&login, "refresh_token").to_owned();

    let response = request_reset(&app, &email).await;
    assert_eq!(response.status(), 202);
    let mail = smtp.expect("reset link").await;
    assert_eq!(mail.to, [email.as_str()]);
    assert!(
        mail.body()
            .contains("https://app.example.com/reset-password?token="),
        "{}",
        mail.body()
    );
    let token = mail.token().expect("token");

    // A weak password is refused without spending the token.
    let body = assert_error(
        confirm_reset(&app, &token, "short").await,
        422,
        "validation_error",
    )
    .await;
    assert_eq!(error_fields(&body), ["new_password"]);

    assert_eq!(
        confirm_reset(&app, &token, NEW_PASSWORD).await.status(),
        204
    );
    let notice = smtp.expect("reset notice").await;
    assert_eq!(notice.to, [email.as_str()]);
    assert!(notice.token().is_none(), "a notice carries no token");

    assert_error(app.login(&email, PASSWORD).await, 401, "unauthorized").await;
    assert_eq!(app.login(&email, NEW_PASSWORD).await.status(), 200);
    assert_error(app.me(&access).await, 401, "unauthorized").await;
    assert_error(refresh(&app, &refresh_token).await, 401, "unauthorized").await;

    // Spent.
    assert_error(
        confirm_reset(&app, &token, "yet-another-passphrase").await,
        400,
        "bad_request",
    )
    .await;
}

#[tokio::test]
async fn reset_for_an_unknown_email_looks_the_same_and_sends_nothing() {
    let (app, mut smtp) = app_with_mail().await;
    let (email, _, _) = app.new_user().await;
    let known = request_reset(&app, &email).await;
    let unknown = request_reset(&app, &unique_email()).await;
    assert_eq!(known.status(), 202);
    assert_eq!(unknown.status(), 202);
    let known: Value = known.json().await.expect("json");
    let unknown: Value = unknown.json().await.expect("json");
    assert_eq!(known, unknown);
    let mail = smtp.expect("the known address's link").await;
    assert_eq!(mail.to, [email]);
    assert!(
        smtp.next(Duration::from_secs(2)).await.is_none(),
        "no mail for the unknown address"
    );
}

#[tokio::test]
async fn expired_and_wrong_purpose_tokens_are_refused() {
    let (app, mut smtp) = app_with_mail().await;
    let (email, access, _) = app.new_user().await;

    // A verification token cannot reset a password...
    let response = post(
        &app,
        "/api/auth/verify-email/request",
        Some(&access),
        &json!({}),
    )
    .await;
    assert_eq!(response.status(), 202);
    let verification = smtp.expect("verification").await.token().expect("token");
    assert_error(
        confirm_reset(&app, &verification, NEW_PASSWORD).await,
        400,
        "bad_request",
    )
    .await;
    // ...and trying does not spend it for its own purpose.
    let response = post(
        &app,
        "/api/auth/verify-email/confirm",
        None,
        &json!({ "token": verification }),
    )
    .await;
    assert_eq!(response.status(), 200);

    // An expired reset token.
    assert_eq!(request_reset(&app, &email).await.status(), 202);
    let reset = smtp.expect("reset").await.token().expect("token");
    app.db()
        .await
        .execute(
            "UPDATE one_time_tokens SET expires_at = now() - interval '1 second' WHERE purpose = 'password_reset'",
            &[],
        )
        .await
        .expect("expire");
    assert_error(
        confirm_reset(&app, &reset, NEW_PASSWORD).await,
        400,
        "bad_request",
    )
    .await;
    assert_eq!(app.login(&email, PASSWORD).await.status(), 200);
}

#[tokio::test]
async fn reset_works_while_the_account_is_locked() {
    let smtp_server = SmtpServer::start().await;
    let url = smtp_server.url();
    let mut smtp = smtp_server;
    let app = spawn_app_with(|s| {
        s.insert("SMTP_URL".into(), url);
        s.insert("LOGIN_FAILURES_BEFORE_LOCK".into(), "3".into());
    })
    .await;
    let (email, _, _) = app.new_user().await;
    for _ in 0..3 {
        assert_eq!(app.login(&email, "wrong-password-123").await.status(), 401);
    }
    assert_error(app.login(&email, PASSWORD).await, 429, "rate_limited").await;

    assert_eq!(request_reset(&app, &email).await.status(), 202);
    let token = smtp.expect("reset").await.token().expect("token");
    assert_eq!(
        confirm_reset(&app, &token, NEW_PASSWORD).await.status(),
        204
    );
    assert_eq!(
        app.login(&email, NEW_PASSWORD).await.status(),
        200,
        "the lock is lifted"
    );
}

#[tokio::test]
async fn password_change_keeps_only_the_current_session() {
    let (app, mut smtp) = app_with_mail().await;
    let (email, access, _) = app.new_user().await;
    let (other_access, other_refresh) = second_session(&app, &email, PASSWORD).await;
    let change = |current: &str, new: &str| {
        let body = json!({ "current_password": current, "new_password": new });
        let (app, access) = (&app, access.clone());
        async move { post(app, "/api/auth/password/change", Some(&access), &body).await }
    };

    assert_error(
        change("not-my-password", NEW_PASSWORD).await,
        401,
        "unauthorized",
    )
    .await;
    let body = assert_error(change(PASSWORD, "password").await, 422, "validation_error").await;
    assert_eq!(error_fields(&body), ["new_password"]);
    assert_eq!(
        app.me(&other_access).await.status(),
        200,
        "nothing changed yet"
    );

    assert_eq!(change(PASSWORD, NEW_PASSWORD).await.status(), 204);
    assert_eq!(
        app.me(&access).await.status(),
        200,
        "the caller's session stays"
    );
    assert_error(app.me(&other_access).await, 401, "unauthorized").await;
    assert_error(refresh(&app, &other_refresh).await, 401, "unauthorized").await;
    assert_error(app.login(&email, PASSWORD).await, 401, "unauthorized").await;
    assert_eq!(app.login(&email, NEW_PASSWORD).await.status(), 200);

    let notice = smtp.expect("change notice").await;
    assert_eq!(notice.to, [email]);
    assert!(notice.subject().contains("changed"), "{}", notice.subject());
}

#[tokio::test]
async fn bodies_are_checked_before_anything_happens() {
    let (app, _smtp) = app_with_mail().await;
    let (_, access, _) = app.new_user().await;

    let body = assert_error(
        post(&app, "/api/auth/password/change", Some(&access), &json!({})).await,
        422,
        "validation_error",
    )
    .await;
    assert_eq!(error_fields(&body), ["current_password", "new_password"]);
    let body = assert_error(
        post(&app, "/api/auth/password-reset/confirm", None, &json!({})).await,
        422,
        "validation_error",
    )
    .await;
    assert_eq!(error_fields(&body), ["token", "new_password"]);
    let body = assert_error(
        post(&app, "/api/auth/verify-email/confirm", None, &json!({})).await,
        422,
        "validation_error",
    )
    .await;
    assert_eq!(error_fields(&body), ["token"]);
    let body = assert_error(
        post(&app, "/api/auth/password-reset/request", None, &json!({})).await,
        422,
        "validation_error",
    )
    .await;
    assert_eq!(error_fields(&body), ["email"]);

    // Wrong types and broken JSON are 400s.
    for (path, body) in [
        ("/api/auth/password-reset/request", json!({ "email": 5 })),
        (
            "/api/auth/password-reset/confirm",
            json!({ "token": "x", "new_password": 12345678 }),
        ),
        ("/api/auth/verify-email/confirm", json!({ "token": ["x"] })),
    ] {
        assert_error(post(&app, path, None, &body).await, 400, "bad_request").await;
    }
    let broken = app
        .client
        .post(app.url("/api/auth/password/change"))
        .bearer_auth(&access)
        .header("content-type", "application/json")
        .body("{\"current_password\":")
        .send()
        .await
        .expect("request");
    assert_error(broken, 400, "bad_request").await;
}

#[tokio::test]
async fn mail_queued_while_smtp_is_down_goes_out_once_it_is_up() {
    // A port nobody listens on, yet.
    let port = {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        probe.local_addr().expect("addr").port()
    };
    let app = spawn_app_with(|s| {
        s.insert("SMTP_URL".into(), format!("smtp://127.0.0.1:{port}"));
    })
    .await;
    let (email, _, _) = app.new_user().await;
    assert_eq!(request_reset(&app, &email).await.status(), 202);

    // Wait until a delivery has been tried and failed.
    let db = app.db().await;
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let row = db
            .query_opt(
                "SELECT attempts, last_error, sent_at IS NULL FROM mail_outbox",
                &[],
            )
            .await
            .expect("outbox");
        if let Some(row) = row {
            let (attempts, error, unsent): (i32, Option<String>, bool) =
                (row.get(0), row.get(1), row.get(2));
            if attempts >= 1 && error.is_some() {
                assert!(unsent);
                break;
            }
        }
        assert!(Instant::now() < deadline, "no failed attempt recorded");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let mut smtp = SmtpServer::start_on(port).await;
    let mail = smtp
        .next(Duration::from_secs(20))
        .await
        .expect("the retry delivers the mail");
    assert_eq!(mail.to, [email.as_str()]);
    let token = mail.token().expect("token");
    assert_eq!(
        confirm_reset(&app, &token, NEW_PASSWORD).await.status(),
        204
    );

    // Once out, the body (and its link) is gone from the table.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let row = db
            .query_one(
                "SELECT count(*) FILTER (WHERE sent_at IS NOT NULL AND body IS NULL),
                        count(*) FILTER (WHERE body LIKE '%token=%')
                 FROM mail_outbox",
                &[],
            )
            .await
            .expect("outbox");
        let (erased, with_link): (i64, i64) = (row.get(0), row.get(1));
        if erased >= 1 && with_link == 0 {
            break;
        }
        assert!(Instant::now() < deadline, "sent mail keeps its link");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn a_mail_left_in_the_outbox_is_sent_by_the_next_instance() {
    // As if an instance died right after committing a mail: the row is
    // there, nobody sent it.
    let mut smtp = SmtpServer::start().await;
    let mut first = spawn_app_with(|_| {}).await;
    first.stop().await;
    first
        .db()
        .await
        .execute(
            "INSERT INTO mail_outbox (id, recipient, subject, body)
             VALUES (gen_random_uuid(), 'left@example.com', 'Left behind', 'hello')",
            &[],
        )
        .await
        .expect("insert");
    let mut settings = crate::helpers::base_settings(&first.db_url);
    settings.insert("SMTP_URL".into(), smtp.url());
    let _second = crate::helpers::spawn_app_on(settings).await;
    let mail = smtp.expect("the row left behind").await;
    assert_eq!(mail.to, ["left@example.com"]);
    assert_eq!(mail.subject(), "Left behind");
}

#[tokio::test]
async fn one_time_tokens_never_reach_the_logs() {
    use std::process::Stdio;
    use tokio::io::AsyncReadExt;

    let mut smtp = SmtpServer::start().await;
    let db_url = crate::helpers::fresh_database().await;
    let port = {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        probe.local_addr().expect("addr").port()
    };
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_auth-service"))
        .arg("serve")
        .env("DATABASE_URL", &db_url)
        .env("JWT_SECRET_KEY", crate::helpers::JWT_KEY)
        .env("SECRET_KEY", "test-secret-key-0123456789abcdef")
        .env("BIND_ADDR", format!("127.0.0.1:{port}"))
        .env("SMTP_URL", smtp.url())
        .env("LOG_FORMAT", "json")
        .env("RUST_LOG", "debug")
        .env("ARGON2_MEMORY_KIB", "256")
        .env("ARGON2_ITERATIONS", "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start the binary");
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while client.get(format!("{base}/health")).send().await.is_err() {
        assert!(Instant::now() < deadline, "the binary never came up");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let post = |path: &str, token: Option<&str>, body: Value| {
        let mut request = client.post(format!("{base}{path}")).json(&body);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        async move { request.send().await.expect("request") }
    };

    let email = unique_email();
    let registered = post(
        "/api/auth/register",
        None,
        json!({ "email": email, "password": PASSWORD }),
    )
    .await;
    assert_eq!(registered.status(), 201);
    let login: Value = client
        .post(format!("{base}/api/auth/login"))
        .form(&[("username", email.as_str()), ("password", PASSWORD)])
        .send()
        .await
        .expect("login")
        .json()
        .await
        .expect("json");
    let access = str_of(&login, "access_token").to_owned();
    let requested = post("/api/auth/verify-email/request", Some(&access), json!({})).await;
    assert_eq!(requested.status(), 202);
    let verification = smtp.expect("verification").await.token().expect("token");
    let requested = post(
        "/api/auth/password-reset/request",
        None,
        json!({ "email": email }),
    )
    .await;
    assert_eq!(requested.status(), 202);
    let reset = smtp.expect("reset").await.token().expect("token");
    let confirmed = post(
        "/api/auth/password-reset/confirm",
        None,
        json!({ "token": reset, "new_password": NEW_PASSWORD }),
    )
    .await;
    assert_eq!(confirmed.status(), 204);
    smtp.expect("reset notice").await;

    let pid = child.id().expect("pid") as i32;
    // SAFETY: signalling the child process this test started.
    unsafe { libc::kill(pid, libc::SIGTERM) };
    tokio::time::timeout(Duration::from_secs(15), child.wait())
        .await
        .expect("exits after SIGTERM")
        .expect("status");
    let mut logs = String::new();
    for pipe in [
        Box::new(child.stdout.take().expect("stdout")) as Box<dyn tokio::io::AsyncRead + Unpin>,
        Box::new(child.stderr.take().expect("stderr")),
    ] {
        let mut pipe = pipe;
        pipe.read_to_string(&mut logs).await.expect("read");
    }
    assert!(logs.contains("mail sent"), "deliveries are logged:\n{logs}");
    for secret in [
        verification.as_str(),
        reset.as_str(),
        NEW_PASSWORD,
        "token=",
    ] {
        assert!(
            !logs.contains(secret),
            "a secret reached the logs: {secret}"
        );
    }
}
