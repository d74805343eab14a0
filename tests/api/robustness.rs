//! Cross-cutting behaviour: routing errors, common headers, hostile input, a
//! dead database, and graceful shutdown.

use std::time::{Duration, Instant};

use reqwest::header::CONTENT_TYPE;
use reqwest::Response;
use serde_json::{json, Value};

use crate::helpers::{assert_error, base_settings, spawn_app, spawn_app_on, TestApp, PASSWORD};

/// Asserts the headers API.md puts on every response.
fn assert_common_headers(response: &Response, what: &str) {
    let headers = response.headers();
    assert_eq!(
        headers.get("x-content-type-options").map(|v| v.as_bytes()),
        Some(&b"nosniff"[..]),
        "{what}: nosniff"
    );
    if response.url().path().starts_with("/api/") {
        assert_eq!(
            headers.get("cache-control").map(|v| v.as_bytes()),
            Some(&b"no-store"[..]),
            "{what}: no-store"
        );
    }
    if response.content_length() != Some(0) {
        let content_type = headers
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_else(|| panic!("{what}: a body without Content-Type"));
        assert!(
            content_type.to_ascii_lowercase().contains("charset="),
            "{what}: {content_type}"
        );
    }
}

async fn health(app: &TestApp) -> u16 {
    app.client
        .get(app.url("/health"))
        .send()
        .await
        .expect("health request")
        .status()
        .as_u16()
}

#[tokio::test]
async fn health_is_200() {
    let app = spawn_app().await;
    let response = app
        .client
        .get(app.url("/health"))
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), 200);
    assert_common_headers(&response, "health");
}

#[tokio::test]
async fn unknown_routes_are_a_json_404() {
    let app = spawn_app().await;
    for path in [
        "/nothing",
        "/api/nothing",
        "/api/auth/me/extra",
        "/api",
        "//",
    ] {
        let response = app.client.get(app.url(path)).send().await.expect("request");
        assert_common_headers(&response, path);
        assert_error(response, 404, "not_found").await;
    }
}

#[tokio::test]
async fn a_known_path_with_another_method_is_405_with_allow() {
    let app = spawn_app().await;
    for (method, path, allow) in [
        (reqwest::Method::GET, "/api/auth/register", "POST"),
        (reqwest::Method::DELETE, "/api/auth/me", "GET"),
        (reqwest::Method::PUT, "/api/auth/login", "POST"),
        (reqwest::Method::DELETE, "/api/workspaces", "GET, POST"),
        (reqwest::Method::POST, "/health", "GET"),
    ] {
        let response = app
            .client
            .request(method.clone(), app.url(path))
            .send()
            .await
            .expect("request");
        assert_common_headers(&response, path);
        let got = response
            .headers()
            .get("allow")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        assert_eq!(got.as_deref(), Some(allow), "{method} {path}");
        assert_error(response, 405, "method_not_allowed").await;
    }
}

#[tokio::test]
async fn every_response_carries_the_common_headers() {
    let app = spawn_app().await;
    let (email, token, _) = app.new_user().await;
    let client = &app.client;
    let big = "x".repeat(70 * 1024);
    let requests = [
        ("health", client.get(app.url("/health"))),
        (
            "register 201",
            client
                .post(app.url("/api/auth/register"))
                .json(&json!({ "email": crate::helpers::unique_email(), "password": PASSWORD })),
        ),
        (
            "register 409",
            client
                .post(app.url("/api/auth/register"))
                .json(&json!({ "email": email, "password": PASSWORD })),
        ),
        (
            "register 422",
            client.post(app.url("/api/auth/register")).json(&json!({})),
        ),
        (
            "register 400",
            client
                .post(app.url("/api/auth/register"))
                .header(CONTENT_TYPE, "application/json")
                .body("{"),
        ),
        (
            "register 415",
            client.post(app.url("/api/auth/register")).body("{}"),
        ),
        (
            "register 413",
            client
                .post(app.url("/api/auth/register"))
                .header(CONTENT_TYPE, "application/json")
                .body(big),
        ),
        (
            "login 200",
            client
                .post(app.url("/api/auth/login"))
                .form(&[("username", email.as_str()), ("password", PASSWORD)]),
        ),
        (
            "login 401",
            client
                .post(app.url("/api/auth/login"))
                .form(&[("username", email.as_str()), ("password", "wrong-password")]),
        ),
        (
            "me 200",
            client.get(app.url("/api/auth/me")).bearer_auth(&token),
        ),
        ("me 401", client.get(app.url("/api/auth/me"))),
        (
            "workspaces 201",
            client
                .post(app.url("/api/workspaces"))
                .bearer_auth(&token)
                .json(&json!({ "name": "W" })),
        ),
        (
            "workspaces 200",
            client.get(app.url("/api/workspaces")).bearer_auth(&token),
        ),
        ("404", client.get(app.url("/api/none"))),
        ("405", client.patch(app.url("/api/auth/me"))),
    ];
    for (what, request) in requests {
        let response = request.send().await.expect(what);
        assert!(response.status() != 500, "{what}: {}", response.status());
        assert_common_headers(&response, what);
    }
}

#[tokio::test]
async fn a_request_id_is_echoed_or_generated() {
    let app = spawn_app().await;
    let response = app
        .client
        .get(app.url("/health"))
        .header("x-request-id", "trace-abc-123")
        .send()
        .await
        .expect("request");
    assert_eq!(response.headers()["x-request-id"], "trace-abc-123");
    // On errors too.
    let response = app
        .client
        .get(app.url("/api/nothing"))
        .header("x-request-id", "trace-404")
        .send()
        .await
        .expect("request");
    assert_eq!(response.headers()["x-request-id"], "trace-404");

    let mut generated = Vec::new();
    for _ in 0..2 {
        let response = app
            .client
            .get(app.url("/health"))
            .send()
            .await
            .expect("request");
        let id = response
            .headers()
            .get("x-request-id")
            .expect("a generated X-Request-Id")
            .to_str()
            .expect("ascii")
            .to_owned();
        assert!(!id.is_empty());
        generated.push(id);
    }
    assert_ne!(generated[0], generated[1], "each request gets its own id");

    // An id that could forge a log line is replaced, not echoed.
    let response = app
        .client
        .get(app.url("/health"))
        .header("x-request-id", "x".repeat(1000))
        .send()
        .await
        .expect("request");
    assert_ne!(
        response.headers()["x-request-id"],
        "x".repeat(1000).as_str()
    );
}

#[tokio::test]
async fn invalid_utf8_bodies_are_400_not_500() {
    let app = spawn_app().await;
    let bad: &[u8] = b"{\"email\": \"\xff\xfe@example.com\", \"password\": \"\xc3\x28aaaaaaaa\"}";
    let response = app
        .client
        .post(app.url("/api/auth/register"))
        .header(CONTENT_TYPE, "application/json")
        .body(bad.to_vec())
        .send()
        .await
        .expect("request");
    assert_error(response, 400, "bad_request").await;
    let response = app
        .client
        .post(app.url("/api/auth/login"))
        .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(&b"username=\xff\xfe&password=\xc3\x28"[..])
        .send()
        .await
        .expect("request");
    assert_error(response, 400, "bad_request").await;
    // A multipart body that is not multipart at all.
    let response = app
        .client
        .post(app.url("/api/auth/login"))
        .header(CONTENT_TYPE, "multipart/form-data; boundary=XyZ")
        .body("garbage")
        .send()
        .await
        .expect("request");
    assert_error(response, 400, "bad_request").await;
    assert_eq!(health(&app).await, 200);
}

/// `GET /health` with one `X-Big` header of `size` bytes, on a raw socket.
async fn health_with_header_of(app: &TestApp, size: usize) -> u16 {
    let head = format!(
        "GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\nX-Big: {}\r\n\r\n",
        "a".repeat(size)
    );
    app.raw(&[head.as_bytes()]).await.status
}

#[tokio::test]
async fn huge_request_heads_are_refused_without_a_5xx() {
    let app = spawn_app().await;
    for size in [32 * 1024, 1024 * 1024] {
        let status = health_with_header_of(&app, size).await;
        assert!(
            [431, 400].contains(&status),
            "a {size}-byte header got {status}"
        );
    }
    // Many small headers adding up to more than 16 KiB, too.
    let mut head = String::from("GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n");
    for i in 0..400 {
        head.push_str(&format!("X-H{i}: {}\r\n", "b".repeat(60)));
    }
    head.push_str("\r\n");
    let status = app.raw(&[head.as_bytes()]).await.status;
    assert!([431, 400].contains(&status), "400 headers got {status}");
    assert_eq!(health(&app).await, 200);
}

#[tokio::test]
async fn the_request_head_limit_is_16_kib() {
    // API.md: "request headers over 16 KiB may get 431"; the server documents
    // 16 KiB as its limit (MAX_HEADER_BYTES), so just over it is refused and
    // comfortably under it is served.
    let app = spawn_app().await;
    assert_eq!(health_with_header_of(&app, 12 * 1024).await, 200);
    let status = health_with_header_of(&app, 17 * 1024).await;
    assert!([431, 400].contains(&status), "a 17 KiB header got {status}");
}

#[tokio::test]
async fn the_service_survives_a_burst_of_hostile_requests() {
    let app = spawn_app().await;
    let (_, token, _) = app.new_user().await;
    let hostile: Vec<Vec<u8>> = vec![
        b"GARBAGE\r\n\r\n".to_vec(),
        b"GET / HTTP/9.9\r\n\r\n".to_vec(),
        b"GET /health HTTP/1.1\r\nHost: x\r\nBad Header Line\r\n\r\n".to_vec(),
        b"\x00\x01\x02\x03\xff\xfe\r\n\r\n".to_vec(),
        // Invalid UTF-8 in a path and in header values.
        b"GET /api/\xff\xfe HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".to_vec(),
        b"GET /api/auth/me HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer \xff\xfe\r\nConnection: close\r\n\r\n".to_vec(),
        b"GET /api/workspaces HTTP/1.1\r\nHost: x\r\nX-Request-Id: \xff\r\nConnection: close\r\n\r\n".to_vec(),
        b"POST /api/auth/register HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\xff\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}".to_vec(),
        // Conflicting and nonsense lengths.
        b"POST /api/auth/register HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 7\r\n\r\n{}".to_vec(),
        b"POST /api/auth/register HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n".to_vec(),
        b"POST /api/auth/register HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999999999999999\r\n\r\n".to_vec(),
        b"POST /api/auth/register HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n".to_vec(),
        // A body that promises more than it sends, then the client gives up.
        b"POST /api/auth/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 100\r\n\r\nusername=a".to_vec(),
        // A query string that is not percent-encoding.
        b"GET /api/workspaces?limit=%ff%fe&cursor=%zz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".to_vec(),
    ];
    for request in &hostile {
        let response = app.raw(&[request.as_slice()]).await;
        assert!(
            response.status < 500,
            "{:?} got {}",
            String::from_utf8_lossy(request),
            response.text
        );
    }
    // The burst, all at once.
    let mut tasks = tokio::task::JoinSet::new();
    let app = std::sync::Arc::new(app);
    for round in 0..5 {
        for request in hostile.clone() {
            let app = app.clone();
            tasks.spawn(async move { (round, app.raw(&[request.as_slice()]).await.status) });
        }
    }
    while let Some(result) = tasks.join_next().await {
        let (_, status) = result.expect("task");
        assert!(status < 500, "status {status} in the burst");
    }
    assert_eq!(health(&app).await, 200);
    assert_eq!(app.me(&token).await.status(), 200, "still serving requests");
}

#[tokio::test]
async fn a_query_string_with_bad_utf8_is_not_a_5xx() {
    let app = spawn_app().await;
    let (_, token, _) = app.new_user().await;
    let response = app.get_auth("/api/workspaces?limit=%ff%fe", &token).await;
    assert_error(response, 422, "validation_error").await;
}

#[tokio::test]
async fn an_unreachable_database_is_a_quick_503() {
    // Port 1: nothing listens, so every connection attempt is refused.
    let mut settings = base_settings("postgres://postgres@127.0.0.1:1/x");
    settings.insert("MIGRATE_ON_START".into(), "false".into());
    let app = spawn_app_on(settings).await;
    assert_eq!(
        health(&app).await,
        200,
        "liveness does not need the database"
    );

    let started = Instant::now();
    let response = app.login("someone@example.com", PASSWORD).await;
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    let retry_after = response
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    assert!(retry_after.is_some_and(|s| s >= 1), "Retry-After seconds");
    assert_error(response, 503, "unavailable").await;

    let started = Instant::now();
    let response = app.register("someone@example.com", PASSWORD).await;
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(response.headers().contains_key("retry-after"));
    let body = assert_error(response, 503, "unavailable").await;
    // No connection details leak out.
    let text = body.to_string();
    assert!(
        !text.contains("127.0.0.1") && !text.contains("postgres"),
        "{text}"
    );

    let started = Instant::now();
    let response = app
        .client
        .get(app.url("/ready"))
        .send()
        .await
        .expect("request");
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_error(response, 503, "unavailable").await;
}

#[tokio::test]
async fn ready_is_200_with_a_database() {
    let app = spawn_app().await;
    let response = app
        .client
        .get(app.url("/ready"))
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.expect("json");
    assert!(body.is_object());
}

#[tokio::test]
async fn stop_completes_and_then_connections_are_refused() {
    let mut app = spawn_app().await;
    // A kept-alive connection in the client's pool must not hold shutdown up.
    assert_eq!(health(&app).await, 200);
    let idle = tokio::net::TcpStream::connect(("127.0.0.1", app.port))
        .await
        .expect("connect");
    let started = Instant::now();
    tokio::time::timeout(Duration::from_secs(10), app.stop())
        .await
        .expect("stop finishes");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    drop(idle);
    let refused = tokio::net::TcpStream::connect(("127.0.0.1", app.port)).await;
    assert!(refused.is_err(), "the listener is closed after stop");
    let fresh = reqwest::Client::new();
    assert!(fresh.get(app.url("/health")).send().await.is_err());
}

#[tokio::test]
async fn a_request_in_flight_at_shutdown_still_gets_its_answer() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut app = spawn_app().await;
    // Half a request is on the wire when shutdown starts; the rest follows.
    let body = "username=nobody%40example.com&password=wrong-password-1";
    let head = format!(
        "POST /api/auth/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", app.port))
        .await
        .expect("connect");
    stream
        .write_all(format!("{head}{}", &body[..10]).as_bytes())
        .await
        .expect("write");
    tokio::time::sleep(Duration::from_millis(200)).await;
    let client = async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        stream
            .write_all(&body.as_bytes()[10..])
            .await
            .expect("write rest");
        let mut buf = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut buf)).await;
        String::from_utf8_lossy(&buf).into_owned()
    };
    let (_, answer) = tokio::join!(app.stop(), client);
    assert!(answer.starts_with("HTTP/1.1 401"), "{answer:?}");
    assert!(answer.contains("\"unauthorized\""));
}

#[tokio::test]
async fn a_body_that_stops_arriving_is_answered_not_waited_for_forever() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let app = spawn_app().await;
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", app.port))
        .await
        .expect("connect");
    // Promise 100 bytes, send 10, then go quiet without closing.
    stream
        .write_all(b"POST /api/auth/register HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"email\":")
        .await
        .expect("write");
    let mut buf = vec![0u8; 4096];
    let read = tokio::time::timeout(std::time::Duration::from_secs(30), stream.read(&mut buf))
        .await
        .expect("the server answers a stalled body instead of waiting forever")
        .expect("read");
    let text = String::from_utf8_lossy(&buf[..read]);
    assert!(text.starts_with("HTTP/1.1 400"), "{text}");
    assert!(text.contains("\"code\":\"bad_request\""), "{text}");
}
