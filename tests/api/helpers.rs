//! The test harness: one PostgreSQL per test process (a throwaway local
//! cluster unless `DATABASE_URL` names one), a fresh database per test, and
//! the real server on 127.0.0.1:0 driven by a real HTTP client.
//!
//! Shared by every test module; each uses a different subset.
#![allow(dead_code)]

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

use auth_service::config::Config;
use auth_service::db::local_pg::{LocalPgOptions, LocalPostgres};
use auth_service::startup::Application;
use auth_service::state::AppState;
use reqwest::{Client, Response};
use serde_json::{json, Value};
use tokio::sync::oneshot;
use uuid::Uuid;

/// A JWT key the tests share (only ever used against throwaway databases).
pub const JWT_KEY: &str = "test-jwt-secret-key-0123456789abcdef";
/// A password that satisfies the policy.
pub const PASSWORD: &str = "correct-horse-battery";

/// The server every test's database lives on: an admin URL whose database
/// part each test replaces.
enum Server {
    Local(LocalPostgres),
    External(tokio_postgres::Config),
}

static SERVER: OnceLock<Result<Server, String>> = OnceLock::new();

fn server() -> &'static Server {
    let server = SERVER.get_or_init(|| match std::env::var("DATABASE_URL") {
        Ok(url) if !url.trim().is_empty() => url
            .parse::<tokio_postgres::Config>()
            .map(Server::External)
            .map_err(|e| format!("DATABASE_URL: {e}")),
        _ => LocalPostgres::start(LocalPgOptions::default())
            .map(Server::Local)
            .map_err(|e| e.to_string()),
    });
    match server {
        Ok(server) => server,
        Err(e) => panic!("no PostgreSQL for the tests: {e}"),
    }
}

/// A connection string for database `name` on the test server.
fn database_url(name: &str) -> String {
    match server() {
        Server::Local(pg) => pg.url(name),
        Server::External(base) => {
            let mut parts = vec![format!("dbname={name}")];
            for host in base.get_hosts() {
                match host {
                    tokio_postgres::config::Host::Tcp(h) => parts.push(format!("host={h}")),
                    tokio_postgres::config::Host::Unix(p) => {
                        parts.push(format!("host={}", p.display()))
                    }
                }
            }
            if let Some(port) = base.get_ports().first() {
                parts.push(format!("port={port}"));
            }
            if let Some(user) = base.get_user() {
                parts.push(format!("user={user}"));
            }
            if let Some(password) = base.get_password() {
                parts.push(format!(
                    "password='{}'",
                    String::from_utf8_lossy(password).replace('\'', "\\'")
                ));
            }
            parts.join(" ")
        }
    }
}

/// Creates a fresh, empty database and returns its URL.
pub async fn fresh_database() -> String {
    let name = format!("test_{}", Uuid::new_v4().simple());
    let admin = database_url("postgres");
    let (client, conn) = tokio_postgres::connect(&admin, tokio_postgres::NoTls)
        .await
        .expect("connect to the test PostgreSQL");
    tokio::spawn(conn);
    client
        .batch_execute(&format!("CREATE DATABASE {name}"))
        .await
        .expect("create the test database");
    database_url(&name)
}

/// A running instance and a client for it.
pub struct TestApp {
    /// `http://127.0.0.1:PORT`.
    pub address: String,
    /// The bound port.
    pub port: u16,
    /// The database it uses.
    pub db_url: String,
    /// Its shared state (caches, counters).
    pub state: Arc<AppState>,
    /// An HTTP client without redirects or cookies.
    pub client: Client,
    shutdown: Option<oneshot::Sender<()>>,
    server: Option<tokio::task::JoinHandle<()>>,
}

/// The settings every test app starts from: cheap Argon2 so the suite is
/// fast on two cores (the production cost is checked in unit tests).
pub fn base_settings(db_url: &str) -> HashMap<String, String> {
    [
        ("DATABASE_URL", db_url),
        ("JWT_SECRET_KEY", JWT_KEY),
        ("SECRET_KEY", "test-secret-key-0123456789abcdef"),
        ("BIND_ADDR", "127.0.0.1:0"),
        ("ARGON2_MEMORY_KIB", "256"),
        ("ARGON2_ITERATIONS", "1"),
        ("HASH_WORKERS", "2"),
        ("DB_POOL_SIZE", "8"),
        ("SHUTDOWN_GRACE_SECONDS", "2"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect()
}

/// An app on a fresh database with the default test settings.
pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

/// An app on a fresh database, with settings adjusted by `customize`.
pub async fn spawn_app_with(customize: impl FnOnce(&mut HashMap<String, String>)) -> TestApp {
    let db_url = fresh_database().await;
    let mut settings = base_settings(&db_url);
    customize(&mut settings);
    spawn_app_on(settings).await
}

/// An app with exactly these settings (a second instance on the same
/// database, a broken database URL, ...).
pub async fn spawn_app_on(settings: HashMap<String, String>) -> TestApp {
    let config =
        Config::from_lookup(|name| settings.get(name).cloned()).expect("valid test config");
    let db_url = settings.get("DATABASE_URL").cloned().unwrap_or_default();
    let app = Application::build(config).await.expect("app builds");
    let port = app.port();
    let state = app.state();
    let (tx, rx) = oneshot::channel::<()>();
    let server = tokio::spawn(app.run_until_stopped(async {
        let _ = rx.await;
    }));
    TestApp {
        address: format!("http://127.0.0.1:{port}"),
        port,
        db_url,
        state,
        client: Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("client"),
        shutdown: Some(tx),
        server: Some(server),
    }
}

/// A new address nobody registered yet.
pub fn unique_email() -> String {
    format!("user-{}@example.com", Uuid::new_v4().simple())
}

impl TestApp {
    /// `address` + `path`.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.address)
    }

    /// A direct connection to this app's database, for checks behind the API.
    pub async fn db(&self) -> tokio_postgres::Client {
        let (client, conn) = tokio_postgres::connect(&self.db_url, tokio_postgres::NoTls)
            .await
            .expect("connect to the app database");
        tokio::spawn(conn);
        client
    }

    /// Stops the server gracefully and waits for it.
    pub async fn stop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(server) = self.server.take() {
            let _ = server.await;
        }
    }

    /// `POST /api/auth/register` with a JSON body.
    pub async fn register_raw(&self, body: &Value) -> Response {
        self.client
            .post(self.url("/api/auth/register"))
            .json(body)
            .send()
            .await
            .expect("request")
    }

    /// Registers `email` with `password`.
    pub async fn register(&self, email: &str, password: &str) -> Response {
        self.register_raw(&json!({ "email": email, "password": password }))
            .await
    }

    /// `POST /api/auth/login` with a url-encoded form.
    pub async fn login(&self, email: &str, password: &str) -> Response {
        self.client
            .post(self.url("/api/auth/login"))
            .form(&[("username", email), ("password", password)])
            .send()
            .await
            .expect("request")
    }

    /// Registers and logs in a new user; returns (email, access token, login body).
    pub async fn new_user(&self) -> (String, String, Value) {
        let email = unique_email();
        let response = self.register(&email, PASSWORD).await;
        assert_eq!(response.status(), 201, "register");
        let response = self.login(&email, PASSWORD).await;
        assert_eq!(response.status(), 200, "login");
        let body: Value = response.json().await.expect("json");
        let token = body["access_token"]
            .as_str()
            .expect("access_token")
            .to_owned();
        (email, token, body)
    }

    /// `GET path` with a bearer token.
    pub async fn get_auth(&self, path: &str, token: &str) -> Response {
        self.client
            .get(self.url(path))
            .bearer_auth(token)
            .send()
            .await
            .expect("request")
    }

    /// `GET /api/auth/me`.
    pub async fn me(&self, token: &str) -> Response {
        self.get_auth("/api/auth/me", token).await
    }

    /// `POST /api/workspaces`.
    pub async fn create_workspace(&self, token: &str, body: &Value) -> Response {
        self.client
            .post(self.url("/api/workspaces"))
            .bearer_auth(token)
            .json(body)
            .send()
            .await
            .expect("request")
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

/// Asserts an error response: status, `code`, a `detail`, JSON content type.
pub async fn assert_error(response: Response, status: u16, code: &str) -> Value {
    assert_eq!(response.status().as_u16(), status, "status");
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    assert_eq!(content_type, "application/json; charset=utf-8");
    if status == 401 {
        assert_eq!(
            response
                .headers()
                .get("www-authenticate")
                .and_then(|v| v.to_str().ok()),
            Some("Bearer")
        );
    }
    let body: Value = response.json().await.expect("error body is JSON");
    assert_eq!(body["code"], code, "{body}");
    assert!(
        body["detail"].as_str().is_some_and(|d| !d.is_empty()),
        "{body}"
    );
    body
}

/// The `field` of every entry in a 422 body's `errors`, in order.
pub fn error_fields(body: &Value) -> Vec<String> {
    body["errors"]
        .as_array()
        .map(|errors| {
            errors
                .iter()
                .filter_map(|e| e["field"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// A JWT's header and claims, decoded without any verification.
pub fn jwt_parts(token: &str) -> (Value, Value) {
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine;
    let mut parts = token.split('.');
    let mut decode = |what: &str| -> Value {
        let part = parts.next().unwrap_or_else(|| panic!("JWT has no {what}"));
        let bytes = URL_SAFE_NO_PAD
            .decode(part)
            .unwrap_or_else(|e| panic!("JWT {what} is not base64url: {e}"));
        serde_json::from_slice(&bytes).unwrap_or_else(|e| panic!("JWT {what} is not JSON: {e}"))
    };
    let header = decode("header");
    let claims = decode("claims");
    (header, claims)
}

/// A response read off a raw socket: status and the whole text.
pub struct RawResponse {
    /// The status code, 0 when the server answered nothing parseable.
    pub status: u16,
    /// Head and body as text (lossy).
    pub text: String,
}

impl RawResponse {
    /// A header's value (case-insensitive name), from the head.
    pub fn header(&self, name: &str) -> Option<&str> {
        let head = self.text.split("\r\n\r\n").next().unwrap_or_default();
        head.lines().skip(1).find_map(|line| {
            let (key, value) = line.split_once(':')?;
            key.trim()
                .eq_ignore_ascii_case(name)
                .then_some(value.trim())
        })
    }
}

impl TestApp {
    /// Writes `chunks` on a fresh TCP connection (stopping at the first write
    /// error: the server may answer and close early), then reads one
    /// response: until its Content-Length is in, the server closes, or 5 s
    /// pass. For what a well-behaved client cannot send.
    pub async fn raw(&self, chunks: &[&[u8]]) -> RawResponse {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", self.port))
            .await
            .expect("connect");
        for chunk in chunks {
            if stream.write_all(chunk).await.is_err() {
                break;
            }
        }
        let mut buf = Vec::new();
        let read = async {
            let mut chunk = [0u8; 8192];
            loop {
                match stream.read(&mut chunk).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => buf.extend_from_slice(&chunk[..n]),
                }
                if raw_response_complete(&buf) {
                    break;
                }
            }
        };
        let _ = tokio::time::timeout(std::time::Duration::from_secs(5), read).await;
        let text = String::from_utf8_lossy(&buf).into_owned();
        let status = text
            .strip_prefix("HTTP/1.1 ")
            .and_then(|rest| rest.get(..3))
            .and_then(|code| code.parse().ok())
            .unwrap_or(0);
        RawResponse { status, text }
    }
}

/// Whether `buf` holds a whole response with a `Content-Length` body.
fn raw_response_complete(buf: &[u8]) -> bool {
    let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
        return false;
    };
    let head = String::from_utf8_lossy(&buf[..end]);
    let length = head.lines().skip(1).find_map(|line| {
        let (key, value) = line.split_once(':')?;
        key.trim()
            .eq_ignore_ascii_case("content-length")
            .then(|| value.trim().parse::<usize>().ok())
            .flatten()
    });
    length.is_some_and(|length| buf.len() >= end + 4 + length)
}
