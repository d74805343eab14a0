//! The real binary's logs: one line per request, JSON on demand, and never
//! a password, token, key or hash.

use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tokio::io::AsyncReadExt;

use crate::helpers::{fresh_database, unique_email, JWT_KEY};

const PASSWORD: &str = "log-canary-Pa55word-7d1f";
const SERVICE_KEY: &str = "log-canary-service-key-93ab";

#[tokio::test]
async fn logs_carry_requests_but_never_secrets() {
    let db_url = fresh_database().await;
    let port = {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        probe.local_addr().expect("addr").port()
    };
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_auth-service"))
        .arg("serve")
        .env("DATABASE_URL", &db_url)
        .env("JWT_SECRET_KEY", JWT_KEY)
        .env("SECRET_KEY", "test-secret-key-0123456789abcdef")
        .env("BIND_ADDR", format!("127.0.0.1:{port}"))
        .env("INTROSPECTION_KEYS", format!("canary:{SERVICE_KEY}"))
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

    let email = unique_email();
    let r = client
        .post(format!("{base}/api/auth/register"))
        .json(&json!({ "email": email, "password": PASSWORD }))
        .send()
        .await
        .expect("register");
    assert_eq!(r.status(), 201);
    let wrong = client
        .post(format!("{base}/api/auth/login"))
        .form(&[
            ("username", email.as_str()),
            ("password", "wrong-canary-password"),
        ])
        .send()
        .await
        .expect("login");
    assert_eq!(wrong.status(), 401);
    let tokens: Value = client
        .post(format!("{base}/api/auth/login"))
        .header("x-request-id", "canary-request-1")
        .form(&[("username", email.as_str()), ("password", PASSWORD)])
        .send()
        .await
        .expect("login")
        .json()
        .await
        .expect("json");
    let access = tokens["access_token"].as_str().expect("access").to_owned();
    let refresh = tokens["refresh_token"]
        .as_str()
        .expect("refresh")
        .to_owned();
    let body: Value = client
        .post(format!("{base}/api/auth/introspect"))
        .bearer_auth(SERVICE_KEY)
        .form(&[("token", access.as_str())])
        .send()
        .await
        .expect("introspect")
        .json()
        .await
        .expect("json");
    assert_eq!(body["active"], true);
    let bad_key = client
        .post(format!("{base}/api/auth/introspect"))
        .bearer_auth("wrong-canary-service-key")
        .form(&[("token", access.as_str())])
        .send()
        .await
        .expect("introspect");
    assert_eq!(bad_key.status(), 401);
    let rotated = client
        .post(format!("{base}/api/auth/refresh"))
        .json(&json!({ "refresh_token": refresh }))
        .send()
        .await
        .expect("refresh");
    assert_eq!(rotated.status(), 200);
    let hash: String = {
        let (db, conn) = tokio_postgres::connect(&db_url, tokio_postgres::NoTls)
            .await
            .expect("db");
        tokio::spawn(conn);
        db.query_one("SELECT password_hash FROM users", &[])
            .await
            .expect("row")
            .get(0)
    };

    // SIGTERM: the service drains and exits by itself.
    let pid = child.id().expect("pid") as i32;
    // SAFETY: signalling the child process this test started.
    unsafe { libc::kill(pid, libc::SIGTERM) };
    let status = tokio::time::timeout(Duration::from_secs(15), child.wait())
        .await
        .expect("exits after SIGTERM")
        .expect("status");
    assert!(status.success(), "clean exit after SIGTERM: {status}");
    let mut logs = String::new();
    child
        .stdout
        .take()
        .expect("stdout")
        .read_to_string(&mut logs)
        .await
        .expect("read");
    child
        .stderr
        .take()
        .expect("stderr")
        .read_to_string(&mut logs)
        .await
        .expect("read");

    let request_lines: Vec<Value> = logs
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter(|v| v["message"] == "request")
        .collect();
    assert!(
        request_lines.len() >= 6,
        "one JSON line per request:\n{logs}"
    );
    let login_line = request_lines
        .iter()
        .find(|v| v["request_id"] == "canary-request-1")
        .expect("the login's line carries its request id");
    assert_eq!(login_line["route"], "/api/auth/login");
    assert_eq!(login_line["status"], 200);
    assert!(login_line["latency_us"].is_u64());

    for secret in [
        PASSWORD,
        "wrong-canary-password",
        SERVICE_KEY,
        "wrong-canary-service-key",
        &access,
        &refresh,
        &hash,
        JWT_KEY,
    ] {
        assert!(
            !logs.contains(secret),
            "a secret reached the logs: {secret}"
        );
    }
    // The signature part alone must not leak either.
    let signature = access.rsplit('.').next().expect("signature");
    assert!(!logs.contains(signature));
}
