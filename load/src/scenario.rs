//! Scenarios: what each worker sends next, how it reads the answer, and the
//! data each one prepares before the clock starts (users, tokens,
//! workspaces).

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use hyper::header::HeaderValue;
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::client::{bearer, form_escape, Call, Conn, Failure, Reply, Target};

/// The scenarios.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    /// `GET --path` (default `/`): any server, no setup. Used against the
    /// `baseline` server for the HTTP ceiling.
    Get,
    /// `POST /api/auth/register`, a new user each time (one Argon2 hash).
    Register,
    /// `POST /api/auth/login` (form) as prepared users (one Argon2 hash).
    Login,
    /// `GET /api/auth/me` with prepared access tokens.
    Me,
    /// `POST /api/auth/introspect` of prepared tokens; needs `--service-key`.
    Introspect,
    /// `GET /api/workspaces` for users with `--workspaces-per-user` each.
    WorkspacesList,
    /// `POST /api/workspaces`.
    WorkspaceCreate,
    /// `POST /api/auth/refresh`, one chain of single-use tokens per connection.
    Refresh,
    /// `GET /api/workspaces/{id}` as a member (the RBAC check).
    Authorize,
    /// register → login → me × N → create workspace → list, per connection.
    Mixed,
}

impl Kind {
    /// The CLI name.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Get => "get",
            Kind::Register => "register",
            Kind::Login => "login",
            Kind::Me => "me",
            Kind::Introspect => "introspect",
            Kind::WorkspacesList => "workspaces-list",
            Kind::WorkspaceCreate => "workspace-create",
            Kind::Refresh => "refresh",
            Kind::Authorize => "authorize",
            Kind::Mixed => "mixed",
        }
    }
}

/// Knobs of the scenarios.
#[derive(Debug, Clone)]
pub struct Options {
    /// Prepared users.
    pub users: usize,
    /// Workspaces each prepared user creates (workspaces-list).
    pub workspaces_per_user: usize,
    /// `me` calls per mixed iteration.
    pub me_per_iteration: u32,
    /// Introspection service key.
    pub service_key: Option<String>,
    /// Path for `get`.
    pub path: String,
    /// Parallel connections used while preparing.
    pub setup_concurrency: usize,
    /// Timeout of one setup request.
    pub timeout: Duration,
    /// Measurement connections (refresh prepares one session per connection).
    pub connections: usize,
}

/// A prepared user.
#[derive(Debug, Clone, Default)]
pub struct User {
    /// `id` from register.
    pub id: String,
    /// E-mail.
    pub email: String,
    /// Access token, when logged in.
    pub access: Option<String>,
    /// Workspaces created.
    pub workspaces: Vec<String>,
}

/// Read-only data all workers share.
pub struct Shared {
    /// Scenario.
    pub kind: Kind,
    /// Random per run: keeps e-mails unique across runs.
    pub run_id: String,
    /// Password of every user of this run (not on the common list).
    pub password: String,
    /// Prepared users.
    pub users: Vec<User>,
    /// `Bearer <access>` of each user.
    pub auth: Vec<HeaderValue>,
    /// `token=<access>` form bodies for introspection.
    pub introspect_forms: Vec<Bytes>,
    /// `Bearer <service key>`.
    pub service_key: Option<HeaderValue>,
    /// Login form body of each user.
    pub login_forms: Vec<String>,
    /// Per connection: a refresh token to start its chain with.
    pub sessions: Vec<Option<String>>,
    /// authorize: (reader's bearer, workspace path) pairs.
    pub reads: Vec<(HeaderValue, String)>,
    /// Path for `get`.
    pub path: String,
    /// `me` calls per mixed iteration.
    pub me_per_iteration: u32,
    /// Human notes about the preparation (shown in the reports).
    pub notes: Vec<String>,
}

/// The result of preparing.
pub enum Prepared {
    /// Ready to run.
    Ready(Box<Shared>),
    /// The scenario cannot run against this server; why.
    Skipped(String),
}

/// One setup request, retried on 503/429 (after `Retry-After`) and on
/// transient socket errors.
async fn setup_call(conn: &mut Conn, call: &Call, timeout: Duration) -> Result<Reply, String> {
    let mut attempts = 0;
    loop {
        attempts += 1;
        match conn.send(call, timeout).await {
            Ok(r) if r.status == 503 || r.status == 429 => {
                if attempts > 200 {
                    return Err(format!("{} {}: still {} after {attempts} attempts", call.method, call.path, r.status));
                }
                let wait = r
                    .retry_after
                    .as_deref()
                    .and_then(|v| v.trim().parse::<f64>().ok())
                    .map_or(0.2, |s| s.clamp(0.05, 2.0));
                tokio::time::sleep(Duration::from_secs_f64(wait)).await;
            }
            Ok(r) => return Ok(r),
            Err(Failure::Socket(e)) if attempts < 4 => {
                eprintln!("setup: {} {}: {e}; retrying", call.method, call.path);
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => return Err(format!("{} {}: {e}", call.method, call.path)),
        }
    }
}

fn expect(reply: &Reply, status: u16, what: &str) -> Result<(), String> {
    if reply.status == status {
        Ok(())
    } else {
        Err(format!(
            "{what}: expected HTTP {status}, got {}: {}",
            reply.status,
            snippet(&reply.body)
        ))
    }
}

/// The start of a body, printable.
pub fn snippet(body: &[u8]) -> String {
    let s = String::from_utf8_lossy(&body[..body.len().min(160)]);
    s.replace(['\n', '\r'], " ")
}

/// Runs `f(i, conn)` for `i` in `0..n` on `concurrency` connections.
async fn parallel<T, F, Fut>(
    target: &Arc<Target>,
    n: usize,
    concurrency: usize,
    f: F,
) -> Result<Vec<T>, String>
where
    T: Send + 'static,
    F: Fn(usize, Conn) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = (Conn, Result<T, String>)> + Send,
{
    let f = Arc::new(f);
    let next = Arc::new(AtomicUsize::new(0));
    let results: Arc<Mutex<Vec<Option<T>>>> = Arc::new(Mutex::new((0..n).map(|_| None).collect()));
    let mut tasks: Vec<tokio::task::JoinHandle<Result<(), String>>> = Vec::new();
    for _ in 0..concurrency.clamp(1, n.max(1)) {
        let (f, next, results, target) = (f.clone(), next.clone(), results.clone(), target.clone());
        tasks.push(tokio::spawn(async move {
            let mut conn = Conn::new(target);
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= n {
                    return Ok(());
                }
                let (back, result) = f(i, conn).await;
                conn = back;
                let value = result?;
                results.lock().unwrap_or_else(|e| e.into_inner())[i] = Some(value);
            }
        }));
    }
    for task in tasks {
        task.await.map_err(|e| format!("setup task: {e}"))??;
    }
    let mut results = results.lock().unwrap_or_else(|e| e.into_inner());
    Ok(results.iter_mut().map(|r| r.take().expect("every item done")).collect())
}

fn login_form(email: &str, password: &str) -> String {
    format!(
        "username={}&password={}&grant_type=password",
        form_escape(email),
        form_escape(password)
    )
}

/// Prepares the data of `kind`.
pub async fn prepare(kind: Kind, opts: &Options, target: &Arc<Target>) -> Result<Prepared, String> {
    let run_id = crate::random_hex(4);
    let password = format!("load-test-password-{}", crate::random_hex(6));
    let mut notes = Vec::new();
    let needs_users = !matches!(kind, Kind::Get | Kind::Register | Kind::Mixed);
    let needs_tokens = needs_users && kind != Kind::Login && kind != Kind::Refresh;
    let n_users = if needs_users { opts.users.max(1) } else { 0 };
    if kind == Kind::Introspect && opts.service_key.is_none() {
        return Err(
            "the introspect scenario needs --service-key (or LOAD_SERVICE_KEY): a key from the \
             server's INTROSPECTION_KEYS"
                .into(),
        );
    }
    let timeout = opts.timeout.max(Duration::from_secs(30));
    // 1. Users.
    let mut users: Vec<User> = if n_users > 0 {
        let (run, pw) = (run_id.clone(), password.clone());
        parallel(target, n_users, opts.setup_concurrency, move |i, mut conn| {
            let email = format!("load-{run}-u{i}@example.com");
            let call = Call::post_json(
                "register",
                "/api/auth/register",
                None,
                &json!({"email": email, "password": pw}),
            );
            async move {
                let result = async {
                    let r = setup_call(&mut conn, &call, timeout).await?;
                    expect(&r, 201, "register")?;
                    Ok(User {
                        id: r.field("id").unwrap_or_default(),
                        email,
                        ..User::default()
                    })
                }
                .await;
                (conn, result)
            }
        })
        .await?
    } else {
        Vec::new()
    };
    // 2. Tokens.
    if needs_tokens {
        let pw = password.clone();
        let emails: Vec<String> = users.iter().map(|u| u.email.clone()).collect();
        let tokens = parallel(target, n_users, opts.setup_concurrency, move |i, mut conn| {
            let call = Call::post_form("login", "/api/auth/login", None, login_form(&emails[i], &pw));
            async move {
                let result = async {
                    let r = setup_call(&mut conn, &call, timeout).await?;
                    expect(&r, 200, "login")?;
                    r.field("access_token")
                        .ok_or_else(|| "login: no access_token in the response".to_owned())
                }
                .await;
                (conn, result)
            }
        })
        .await?;
        for (u, t) in users.iter_mut().zip(tokens) {
            u.access = Some(t);
        }
    }
    // 3. Workspaces.
    let per_user = match kind {
        Kind::WorkspacesList => opts.workspaces_per_user,
        Kind::Authorize => 1,
        _ => 0,
    };
    if per_user > 0 {
        let tokens: Vec<String> = users.iter().map(|u| u.access.clone().unwrap_or_default()).collect();
        let made = parallel(target, n_users * per_user, opts.setup_concurrency, move |i, mut conn| {
            let call = Call::post_json(
                "workspace-create",
                "/api/workspaces",
                Some(bearer(&tokens[i / per_user])),
                &json!({"name": format!("load workspace {i}"), "plan_tier": "free"}),
            );
            async move {
                let result = async {
                    let r = setup_call(&mut conn, &call, timeout).await?;
                    expect(&r, 201, "create workspace")?;
                    r.field("id").ok_or_else(|| "create workspace: no id".to_owned())
                }
                .await;
                (conn, result)
            }
        })
        .await?;
        for (i, id) in made.into_iter().enumerate() {
            users[i / per_user].workspaces.push(id);
        }
    }
    let auth: Vec<HeaderValue> = users
        .iter()
        .map(|u| bearer(u.access.as_deref().unwrap_or("-")))
        .collect();
    let introspect_forms = users
        .iter()
        .map(|u| Bytes::from(format!("token={}", form_escape(u.access.as_deref().unwrap_or("")))))
        .collect();
    let login_forms = users.iter().map(|u| login_form(&u.email, &password)).collect();
    let service_key = opts.service_key.as_deref().map(bearer);
    let mut setup_conn = Conn::new(target.clone());
    // 4. Introspection: check the key once, so a wrong key is one clear error.
    if kind == Kind::Introspect {
        let call = Call {
            op: "introspect",
            method: hyper::Method::POST,
            path: "/api/auth/introspect".into(),
            content_type: Some("application/x-www-form-urlencoded"),
            auth: service_key.clone(),
            body: Bytes::from(format!("token={}", form_escape(users[0].access.as_deref().unwrap_or("")))),
        };
        let r = setup_call(&mut setup_conn, &call, timeout).await?;
        if r.status == 401 {
            return Err(format!(
                "introspect: the server refused --service-key (HTTP 401: {}); start the server \
                 with INTROSPECTION_KEYS containing it",
                snippet(&r.body)
            ));
        }
        expect(&r, 200, "introspect")?;
        if r.json().and_then(|v| v.get("active").and_then(|a| a.as_bool())) != Some(true) {
            return Err(format!("introspect: a fresh token is not active: {}", snippet(&r.body)));
        }
    }
    // 5. Authorization: a member reads a workspace.
    let mut reads = Vec::new();
    if kind == Kind::Authorize {
        // Prefer a viewer (a member who is not the owner); fall back to the owner.
        let mut viewer_ok = n_users >= 2;
        if viewer_ok {
            let call = Call::post_json(
                "add-member",
                format!("/api/workspaces/{}/members", users[0].workspaces[0]),
                Some(auth[0].clone()),
                &json!({"user_id": users[1].id, "role": "viewer"}),
            );
            let r = setup_call(&mut setup_conn, &call, timeout).await?;
            viewer_ok = r.status == 201;
            if !viewer_ok {
                notes.push(format!(
                    "POST /api/workspaces/{{id}}/members answered {}: reading as the owner (also a member) instead of a viewer",
                    r.status
                ));
            }
        }
        if viewer_ok {
            // Ring: user i+1 is a viewer of user i's workspace.
            let ids: Vec<String> = users.iter().map(|u| u.id.clone()).collect();
            let pairs: Vec<(HeaderValue, String)> =
                users.iter().map(|u| (bearer(u.access.as_deref().unwrap_or("-")), u.workspaces[0].clone())).collect();
            let pairs2 = pairs.clone();
            parallel(target, n_users - 1, opts.setup_concurrency, move |i, mut conn| {
                let i = i + 1; // pair 0 is done
                let call = Call::post_json(
                    "add-member",
                    format!("/api/workspaces/{}/members", pairs2[i].1),
                    Some(pairs2[i].0.clone()),
                    &json!({"user_id": ids[(i + 1) % ids.len()], "role": "viewer"}),
                );
                async move {
                    let result = async {
                        let r = setup_call(&mut conn, &call, timeout).await?;
                        expect(&r, 201, "add member")
                    }
                    .await;
                    (conn, result)
                }
            })
            .await?;
            for i in 0..n_users {
                let reader = (i + 1) % n_users;
                reads.push((pairs[reader].0.clone(), format!("/api/workspaces/{}", pairs[i].1)));
            }
            notes.push("authorize: each request reads a workspace as a viewer member".into());
        } else {
            for (i, u) in users.iter().enumerate() {
                reads.push((auth[i].clone(), format!("/api/workspaces/{}", u.workspaces[0])));
            }
            notes.push("authorize: each request reads a workspace as its owner".into());
        }
        let probe = Call::get("authorize", reads[0].1.clone(), Some(reads[0].0.clone()));
        let r = setup_call(&mut setup_conn, &probe, timeout).await?;
        if r.status == 404 {
            return Ok(Prepared::Skipped(
                "GET /api/workspaces/{id} answers 404 to a member of the workspace: the RBAC \
                 read endpoint is not implemented yet"
                    .into(),
            ));
        }
        expect(&r, 200, "GET /api/workspaces/{id} as a member")?;
    }
    // 6. Refresh: one login (one session) per connection.
    let mut sessions = Vec::new();
    if kind == Kind::Refresh {
        let forms: Vec<String> = login_forms_of(&users, &password);
        let n = opts.connections.max(1);
        sessions = parallel(target, n, opts.setup_concurrency, move |i, mut conn| {
            let call = Call::post_form("login", "/api/auth/login", None, forms[i % forms.len()].clone());
            async move {
                let result = async {
                    let r = setup_call(&mut conn, &call, timeout).await?;
                    expect(&r, 200, "login")?;
                    Ok(r.field("refresh_token"))
                }
                .await;
                (conn, result)
            }
        })
        .await?;
    }
    Ok(Prepared::Ready(Box::new(Shared {
        kind,
        run_id,
        password,
        users,
        auth,
        introspect_forms,
        service_key,
        login_forms,
        sessions,
        reads,
        path: opts.path.clone(),
        me_per_iteration: opts.me_per_iteration.max(1),
        notes,
    })))
}

fn login_forms_of(users: &[User], password: &str) -> Vec<String> {
    users.iter().map(|u| login_form(&u.email, password)).collect()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    Register,
    Login,
    Me,
    Create,
    List,
}

/// The per-connection state of a scenario.
pub struct Worker {
    id: usize,
    n: u64,
    refresh: Option<String>,
    step: Step,
    email: String,
    token: Option<HeaderValue>,
    me_left: u32,
}

impl Worker {
    /// Worker `id` of `shared`.
    pub fn new(id: usize, shared: &Shared) -> Worker {
        Worker {
            id,
            n: 0,
            refresh: shared.sessions.get(id).cloned().flatten(),
            step: Step::Register,
            email: String::new(),
            token: None,
            me_left: 0,
        }
    }

    fn pick(&self, len: usize) -> usize {
        (self.id + self.n as usize) % len.max(1)
    }

    /// The next request.
    pub fn next(&mut self, sh: &Shared) -> Call {
        self.n += 1;
        match sh.kind {
            Kind::Get => Call::get("get", sh.path.clone(), None),
            Kind::Register => {
                let email = format!("load-{}-w{}-{}@example.com", sh.run_id, self.id, self.n);
                Call::post_json(
                    "register",
                    "/api/auth/register",
                    None,
                    &json!({"email": email, "password": sh.password}),
                )
            }
            Kind::Login => {
                let i = self.pick(sh.login_forms.len());
                Call::post_form("login", "/api/auth/login", None, sh.login_forms[i].clone())
            }
            Kind::Me => Call::get("me", "/api/auth/me", Some(sh.auth[self.pick(sh.auth.len())].clone())),
            Kind::Introspect => {
                let i = self.pick(sh.introspect_forms.len());
                Call {
                    op: "introspect",
                    method: hyper::Method::POST,
                    path: "/api/auth/introspect".into(),
                    content_type: Some("application/x-www-form-urlencoded"),
                    auth: sh.service_key.clone(),
                    body: sh.introspect_forms[i].clone(),
                }
            }
            Kind::WorkspacesList => Call::get(
                "workspaces-list",
                "/api/workspaces",
                Some(sh.auth[self.pick(sh.auth.len())].clone()),
            ),
            Kind::WorkspaceCreate => Call::post_json(
                "workspace-create",
                "/api/workspaces",
                Some(sh.auth[self.pick(sh.auth.len())].clone()),
                &json!({"name": format!("load {}-{}", self.id, self.n), "plan_tier": "free"}),
            ),
            Kind::Refresh => match &self.refresh {
                Some(token) => Call::post_json(
                    "refresh",
                    "/api/auth/refresh",
                    None,
                    &json!({"refresh_token": token}),
                ),
                // The chain broke (an error or a timeout may have spent the
                // token): start a new session.
                None => Call::post_form(
                    "login",
                    "/api/auth/login",
                    None,
                    sh.login_forms[self.id % sh.login_forms.len()].clone(),
                ),
            },
            Kind::Authorize => {
                let (auth, path) = &sh.reads[self.pick(sh.reads.len())];
                Call::get("authorize", path.clone(), Some(auth.clone()))
            }
            Kind::Mixed => match self.step {
                Step::Register => {
                    self.email = format!("load-{}-m{}-{}@example.com", sh.run_id, self.id, self.n);
                    Call::post_json(
                        "register",
                        "/api/auth/register",
                        None,
                        &json!({"email": self.email, "password": sh.password}),
                    )
                }
                Step::Login => Call::post_form(
                    "login",
                    "/api/auth/login",
                    None,
                    login_form(&self.email, &sh.password),
                ),
                Step::Me => Call::get("me", "/api/auth/me", self.token.clone()),
                Step::Create => Call::post_json(
                    "workspace-create",
                    "/api/workspaces",
                    self.token.clone(),
                    &json!({"name": format!("mixed {}-{}", self.id, self.n), "plan_tier": "pro"}),
                ),
                Step::List => Call::get("workspaces-list", "/api/workspaces", self.token.clone()),
            },
        }
    }

    /// Reads the answer to `call` (`None`: no answer) and moves the state
    /// on; a 2xx whose body is wrong gives the reason.
    pub fn observe(&mut self, sh: &Shared, call: &Call, reply: Option<&Reply>) -> Option<String> {
        let ok = reply.is_some_and(|r| (200..300).contains(&r.status));
        let mut bad = None;
        match (sh.kind, call.op) {
            (Kind::Login, _) if ok && reply.and_then(|r| r.field("access_token")).is_none() => {
                bad = Some("login: no access_token".to_owned());
            }
            (Kind::Refresh, _) => {
                self.refresh = if ok { reply.and_then(|r| r.field("refresh_token")) } else { None };
                if ok && self.refresh.is_none() {
                    bad = Some(format!("{}: no refresh_token", call.op));
                }
            }
            (Kind::Introspect, _) if ok => {
                let active = reply
                    .and_then(Reply::json)
                    .and_then(|v| v.get("active").and_then(serde_json::Value::as_bool));
                if active != Some(true) {
                    bad = Some(format!(
                        "introspect: token not active: {}",
                        reply.map(|r| snippet(&r.body)).unwrap_or_default()
                    ));
                }
            }
            (Kind::Mixed, _) => {
                self.step = match self.step {
                    Step::Register if ok => Step::Login,
                    Step::Register => Step::Register,
                    Step::Login if ok => match reply.and_then(|r| r.field("access_token")) {
                        Some(t) => {
                            self.token = Some(bearer(&t));
                            self.me_left = sh.me_per_iteration;
                            Step::Me
                        }
                        None => {
                            bad = Some("login: no access_token".to_owned());
                            Step::Register
                        }
                    },
                    // 401: the user is not there; start over. Else retry.
                    Step::Login if reply.is_some_and(|r| r.status == 401) => Step::Register,
                    Step::Login => Step::Login,
                    Step::Me => {
                        self.me_left = self.me_left.saturating_sub(1);
                        if self.me_left == 0 {
                            Step::Create
                        } else {
                            Step::Me
                        }
                    }
                    Step::Create => Step::List,
                    Step::List => Step::Register,
                };
            }
            _ => {}
        }
        bad
    }
}
