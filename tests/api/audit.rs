//! The audit log: what is recorded, who may read which feed, paging, and
//! that the database itself keeps the table append-only.

use std::time::{Duration, Instant};

use reqwest::{Method, Response};
use serde_json::{json, Value};

use crate::helpers::{assert_error, spawn_app, spawn_app_with, unique_email, TestApp, PASSWORD};

const SERVICE_KEY: &str = "audit-tests-service-key-0123456789";

/// A logged-in user.
struct User {
    id: String,
    email: String,
    token: String,
    refresh: String,
}

async fn user(app: &TestApp) -> User {
    let (email, token, login) = app.new_user().await;
    let me: Value = app.me(&token).await.json().await.expect("json");
    User {
        id: me["id"].as_str().expect("id").to_owned(),
        email,
        token,
        refresh: login["refresh_token"].as_str().expect("refresh").to_owned(),
    }
}

async fn send(app: &TestApp, method: Method, path: &str, token: &str, body: Value) -> Response {
    app.client
        .request(method, app.url(path))
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
        .expect("request")
}

/// A feed page that must answer 200.
async fn feed(app: &TestApp, path: &str, token: &str) -> Vec<Value> {
    let response = app.get_auth(path, token).await;
    assert_eq!(response.status(), 200, "{path}");
    response.json().await.expect("json")
}

fn actions(events: &[Value]) -> Vec<&str> {
    events
        .iter()
        .map(|e| e["action"].as_str().expect("action"))
        .collect()
}

async fn new_workspace(app: &TestApp, owner: &User) -> String {
    let response = app
        .create_workspace(&owner.token, &json!({ "name": "Audited" }))
        .await;
    assert_eq!(response.status(), 201);
    let body: Value = response.json().await.expect("json");
    body["id"].as_str().expect("id").to_owned()
}

async fn add_member(app: &TestApp, workspace: &str, by: &User, who: &User, role: &str) {
    let response = send(
        app,
        Method::POST,
        &format!("/api/workspaces/{workspace}/members"),
        &by.token,
        json!({ "email": who.email, "role": role }),
    )
    .await;
    assert_eq!(response.status(), 201, "adding {role}");
}

#[tokio::test]
async fn register_and_logins_appear_in_my_feed_newest_first_without_secrets() {
    let app = spawn_app().await;
    let me = user(&app).await;
    let wrong = "wrong-password-never-stored";
    assert_eq!(app.login(&me.email, wrong).await.status(), 401);
    // An e-mail with no account: recorded for nobody, the e-mail nowhere.
    let stranger = unique_email();
    assert_eq!(app.login(&stranger, wrong).await.status(), 401);

    let events = feed(&app, "/api/auth/audit", &me.token).await;
    assert_eq!(
        actions(&events),
        ["login.failed", "login.succeeded", "user.registered"]
    );
    let outcomes: Vec<&str> = events
        .iter()
        .map(|e| e["outcome"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(outcomes, ["failure", "success", "success"]);
    assert_eq!(
        events[0]["actor_id"],
        Value::Null,
        "nobody proved who failed"
    );
    assert_eq!(events[1]["actor_id"], me.id.as_str());
    assert_eq!(events[2]["actor_id"], me.id.as_str());
    let mut last_at = String::from("9");
    for event in &events {
        let mut keys: Vec<&String> = event.as_object().expect("object").keys().collect();
        keys.sort();
        assert_eq!(
            keys,
            ["action", "actor_id", "at", "id", "ip", "outcome", "target"],
            "{event}"
        );
        assert_eq!(event["ip"], "127.0.0.1");
        let at = event["at"].as_str().expect("at");
        assert!(at.ends_with('Z'), "{at}");
        assert!(
            chrono::DateTime::parse_from_rfc3339(at).is_ok(),
            "{at} is RFC 3339"
        );
        assert!(at < last_at.as_str(), "newest first");
        last_at = at.to_owned();
    }

    // Nothing secret (nor the stranger's e-mail) anywhere in the table.
    let db = app.db().await;
    let all: String = db
        .query_one(
            "SELECT coalesce(string_agg(row_to_json(a)::text, ' '), '') FROM audit_events a",
            &[],
        )
        .await
        .expect("select")
        .get(0);
    for secret in [
        PASSWORD,
        wrong,
        me.token.as_str(),
        me.refresh.as_str(),
        stranger.as_str(),
        "$argon2",
    ] {
        assert!(!all.contains(secret), "{secret} is in the audit log");
    }
    let unattributed: i64 = db
        .query_one(
            "SELECT count(*) FROM audit_events
             WHERE action = 'login.failed' AND user_id IS NULL AND target IS NULL",
            &[],
        )
        .await
        .expect("count")
        .get(0);
    assert_eq!(unattributed, 1, "the unknown e-mail's failure");
}

#[tokio::test]
async fn session_and_token_events_are_recorded() {
    let app = spawn_app_with(|s| {
        s.insert("INTROSPECTION_KEYS".into(), SERVICE_KEY.into());
        s.insert("LOGIN_FAILURES_BEFORE_LOCK".into(), "2".into());
    })
    .await;
    let me = user(&app).await;
    // A second session, ended by the user.
    let second: Value = app
        .login(&me.email, PASSWORD)
        .await
        .json()
        .await
        .expect("json");
    let (_, claims) = crate::helpers::jwt_parts(second["access_token"].as_str().expect("token"));
    let sid = claims["sid"].as_str().expect("sid").to_owned();
    let ended = app
        .client
        .delete(app.url(&format!("/api/auth/sessions/{sid}")))
        .bearer_auth(&me.token)
        .send()
        .await
        .expect("request");
    assert_eq!(ended.status(), 204);
    // A refresh token spent twice.
    for expected in [200, 401] {
        let response = app
            .client
            .post(app.url("/api/auth/refresh"))
            .json(&json!({ "refresh_token": me.refresh }))
            .send()
            .await
            .expect("request");
        assert_eq!(response.status(), expected);
    }
    // A locked e-mail: two failures, then a refusal.
    let other = user(&app).await;
    for _ in 0..2 {
        assert_eq!(
            app.login(&other.email, "wrong-password!").await.status(),
            401
        );
    }
    assert_eq!(app.login(&other.email, PASSWORD).await.status(), 429);
    // A wrong service key: recorded, the key nowhere.
    let bad_key = "not-the-service-key-at-all-0123456";
    let response = app
        .client
        .post(app.url("/api/auth/introspect"))
        .bearer_auth(bad_key)
        .form(&[("token", "x")])
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), 401);
    // Logging out with the other user's token (the reuse ended mine).
    let response = app
        .client
        .post(app.url("/api/auth/logout"))
        .bearer_auth(&other.token)
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), 204);

    // My first session was revoked by the reuse: read with a fresh login.
    let fresh: Value = app
        .login(&me.email, PASSWORD)
        .await
        .json()
        .await
        .expect("json");
    let token = fresh["access_token"].as_str().expect("token");
    let mine = feed(&app, "/api/auth/audit", token).await;
    assert_eq!(
        actions(&mine),
        [
            "login.succeeded",
            "token.reuse_detected",
            "session.ended",
            "login.succeeded",
            "login.succeeded",
            "user.registered"
        ]
    );
    assert_eq!(mine[1]["outcome"], "failure");
    assert_eq!(mine[2]["target"], sid.as_str());

    // The other user is locked out and logged out: read theirs directly.
    let db = app.db().await;
    let rows = db
        .query(
            "SELECT action, outcome, target FROM audit_events WHERE user_id = $1::text::uuid
             ORDER BY at DESC, id DESC",
            &[&other.id],
        )
        .await
        .expect("select");
    let got: Vec<(String, String)> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
    let want = [
        ("session.logged_out", "success"),
        ("login.locked", "failure"),
        ("login.failed", "failure"),
        ("login.failed", "failure"),
        ("login.succeeded", "success"),
        ("user.registered", "success"),
    ];
    assert_eq!(
        got,
        want.map(|(a, o)| (a.to_owned(), o.to_owned())),
        "the other user's events"
    );
    let key_events = db
        .query(
            "SELECT coalesce(target, ''), coalesce(ip, ''), user_id IS NULL FROM audit_events
             WHERE action = 'service_key.rejected'",
            &[],
        )
        .await
        .expect("select");
    assert_eq!(key_events.len(), 1);
    let (target, ip, anonymous): (String, String, bool) = (
        key_events[0].get(0),
        key_events[0].get(1),
        key_events[0].get(2),
    );
    assert!(!target.contains(bad_key));
    assert_eq!(
        (target.as_str(), ip.as_str(), anonymous),
        ("", "127.0.0.1", true)
    );
}

#[tokio::test]
async fn member_changes_appear_in_the_workspace_audit_with_actor_and_target() {
    let app = spawn_app().await;
    let owner = user(&app).await;
    let member = user(&app).await;
    let workspace = new_workspace(&app, &owner).await;
    add_member(&app, &workspace, &owner, &member, "viewer").await;
    let path = format!("/api/workspaces/{workspace}/members/{}", member.id);
    let response = send(
        &app,
        Method::PATCH,
        &path,
        &owner.token,
        json!({ "role": "operator" }),
    )
    .await;
    assert_eq!(response.status(), 200);
    let response = send(&app, Method::DELETE, &path, &owner.token, json!({})).await;
    assert_eq!(response.status(), 204);
    let response = send(
        &app,
        Method::PATCH,
        &format!("/api/workspaces/{workspace}"),
        &owner.token,
        json!({ "plan_tier": "pro" }),
    )
    .await;
    assert_eq!(response.status(), 200);

    let events = feed(
        &app,
        &format!("/api/workspaces/{workspace}/audit"),
        &owner.token,
    )
    .await;
    assert_eq!(
        actions(&events),
        [
            "workspace.updated",
            "member.removed",
            "member.role_changed",
            "member.added",
            "workspace.created"
        ]
    );
    for event in &events {
        assert_eq!(event["actor_id"], owner.id.as_str(), "{event}");
        assert_eq!(event["outcome"], "success", "{event}");
    }
    assert_eq!(events[0]["target"], "plan_tier");
    assert_eq!(
        events[1]["target"],
        format!("{} role: operator->none", member.id)
    );
    assert_eq!(
        events[2]["target"],
        format!("{} role: viewer->operator", member.id)
    );
    assert_eq!(
        events[3]["target"],
        format!("{} role: none->viewer", member.id)
    );
    // Workspace events are not account events.
    let mine = feed(&app, "/api/auth/audit", &owner.token).await;
    assert_eq!(actions(&mine), ["login.succeeded", "user.registered"]);
}

#[tokio::test]
async fn a_member_refused_for_too_low_a_role_is_recorded_as_denied() {
    let app = spawn_app().await;
    let owner = user(&app).await;
    let viewer = user(&app).await;
    let admin = user(&app).await;
    let workspace = new_workspace(&app, &owner).await;
    add_member(&app, &workspace, &owner, &viewer, "viewer").await;
    add_member(&app, &workspace, &owner, &admin, "admin").await;
    let response = send(
        &app,
        Method::PATCH,
        &format!("/api/workspaces/{workspace}"),
        &viewer.token,
        json!({ "name": "Mine now" }),
    )
    .await;
    assert_error(response, 403, "forbidden").await;
    // An admin may not make an owner.
    let response = send(
        &app,
        Method::PATCH,
        &format!("/api/workspaces/{workspace}/members/{}", viewer.id),
        &admin.token,
        json!({ "role": "owner" }),
    )
    .await;
    assert_error(response, 403, "forbidden").await;

    let events = feed(
        &app,
        &format!("/api/workspaces/{workspace}/audit"),
        &owner.token,
    )
    .await;
    let newest: Vec<(&str, &str, &str)> = events
        .iter()
        .take(2)
        .map(|e| {
            (
                e["action"].as_str().unwrap_or(""),
                e["outcome"].as_str().unwrap_or(""),
                e["actor_id"].as_str().unwrap_or(""),
            )
        })
        .collect();
    assert_eq!(
        newest,
        [
            ("member.role_changed", "denied", admin.id.as_str()),
            ("workspace.updated", "denied", viewer.id.as_str()),
        ]
    );
    assert_eq!(events[0]["target"], viewer.id.as_str());
    assert_eq!(events[1]["target"], Value::Null);
}

#[tokio::test]
async fn only_admins_and_owners_read_a_workspace_audit() {
    let app = spawn_app().await;
    let owner = user(&app).await;
    let workspace = new_workspace(&app, &owner).await;
    let path = format!("/api/workspaces/{workspace}/audit");
    for (role, status) in [("viewer", 403), ("operator", 403), ("admin", 200)] {
        let member = user(&app).await;
        add_member(&app, &workspace, &owner, &member, role).await;
        let response = app.get_auth(&path, &member.token).await;
        assert_eq!(response.status(), status, "{role}");
        if status == 403 {
            assert_error(response, 403, "forbidden").await;
        }
    }
    let outsider = user(&app).await;
    assert_error(app.get_auth(&path, &outsider.token).await, 404, "not_found").await;
    assert_error(
        app.get_auth("/api/workspaces/not-a-uuid/audit", &owner.token)
            .await,
        404,
        "not_found",
    )
    .await;
    let response = app
        .client
        .get(app.url(&path))
        .send()
        .await
        .expect("request");
    assert_error(response, 401, "unauthorized").await;
    let response = app
        .client
        .get(app.url("/api/auth/audit"))
        .send()
        .await
        .expect("request");
    assert_error(response, 401, "unauthorized").await;
    // The two refused readers are in the log; the outsider is not.
    let events = feed(&app, &path, &owner.token).await;
    let denied = events.iter().filter(|e| e["outcome"] == "denied").count();
    assert_eq!(denied, 2);
    assert!(events.iter().all(|e| e["actor_id"] != outsider.id.as_str()));
}

#[tokio::test]
async fn my_feed_never_shows_another_users_events() {
    let app = spawn_app().await;
    let me = user(&app).await;
    let other = user(&app).await;
    assert_eq!(
        app.login(&other.email, "wrong-password!").await.status(),
        401
    );
    let response = app
        .client
        .post(app.url("/api/auth/logout"))
        .bearer_auth(&other.token)
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), 204);
    let mine = feed(&app, "/api/auth/audit", &me.token).await;
    assert_eq!(actions(&mine), ["login.succeeded", "user.registered"]);
    assert!(mine.iter().all(|e| e["actor_id"] == me.id.as_str()));
    // The other user's events exist, in their feed only.
    let db = app.db().await;
    let theirs: i64 = db
        .query_one(
            "SELECT count(*) FROM audit_events WHERE user_id = $1::text::uuid",
            &[&other.id],
        )
        .await
        .expect("count")
        .get(0);
    assert_eq!(theirs, 4);
}

#[tokio::test]
async fn the_database_refuses_update_and_delete_on_audit_events() {
    let app = spawn_app().await;
    let me = user(&app).await;
    feed(&app, "/api/auth/audit", &me.token).await;
    let db = app.db().await;
    let before = count(&db, "SELECT count(*) FROM audit_events").await;
    assert_eq!(before, 2);
    for sql in [
        "UPDATE audit_events SET outcome = 'success', target = 'rewritten'",
        "DELETE FROM audit_events",
        "TRUNCATE audit_events",
    ] {
        let err = db.execute(sql, &[]).await.expect_err(sql);
        let code = err.as_db_error().map(|e| e.code().code().to_owned());
        assert_eq!(code.as_deref(), Some("42501"), "{sql}: {err}");
    }
    assert_eq!(
        count(&db, "SELECT count(*) FROM audit_events").await,
        before
    );
    let rewritten = count(
        &db,
        "SELECT count(*) FROM audit_events WHERE target = 'rewritten'",
    )
    .await;
    assert_eq!(rewritten, 0);
    // Inserting still works: append-only, not read-only.
    db.execute(
        "INSERT INTO audit_events (id, action, outcome) VALUES (gen_random_uuid(), 'test', 'success')",
        &[],
    )
    .await
    .expect("insert");
}

#[tokio::test]
async fn feeds_page_with_limit_and_cursor() {
    let app = spawn_app().await;
    let owner = user(&app).await;
    let workspace = new_workspace(&app, &owner).await;
    for n in 0..4 {
        let response = send(
            &app,
            Method::PATCH,
            &format!("/api/workspaces/{workspace}"),
            &owner.token,
            json!({ "name": format!("Name {n}") }),
        )
        .await;
        assert_eq!(response.status(), 200);
    }
    let base = format!("/api/workspaces/{workspace}/audit");
    let everything = feed(&app, &base, &owner.token).await;
    assert_eq!(everything.len(), 5);
    let mut seen = Vec::new();
    let mut path = format!("{base}?limit=2");
    let mut pages = 0;
    loop {
        let response = app.get_auth(&path, &owner.token).await;
        assert_eq!(response.status(), 200);
        let next = response
            .headers()
            .get("x-next-cursor")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let page: Vec<Value> = response.json().await.expect("json");
        assert!(page.len() <= 2);
        seen.extend(page);
        pages += 1;
        match next {
            Some(cursor) => path = format!("{base}?limit=2&cursor={cursor}"),
            None => break,
        }
    }
    assert_eq!(pages, 3);
    assert_eq!(
        seen, everything,
        "pages join up to the whole feed, in order"
    );

    // My own feed pages the same way.
    let response = app.get_auth("/api/auth/audit?limit=1", &owner.token).await;
    assert!(response.headers().contains_key("x-next-cursor"));
    let page: Vec<Value> = response.json().await.expect("json");
    assert_eq!(actions(&page), ["login.succeeded"]);

    for bad in ["limit=0", "limit=201", "limit=abc", "cursor=garbage"] {
        let response = app.get_auth(&format!("{base}?{bad}"), &owner.token).await;
        assert_error(response, 422, "validation_error").await;
        let response = app
            .get_auth(&format!("/api/auth/audit?{bad}"), &owner.token)
            .await;
        assert_error(response, 422, "validation_error").await;
    }
}

#[tokio::test]
async fn events_are_written_shortly_without_anyone_reading() {
    let app = spawn_app().await;
    user(&app).await;
    let db = app.db().await;
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        if count(&db, "SELECT count(*) FROM audit_events").await == 2 {
            break;
        }
        assert!(Instant::now() < deadline, "events not written after 3 s");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(app.state.audit.pending(), 0);
    assert_eq!(app.state.audit.dropped(), 0);
}

/// A `SELECT count(*) ...` straight from the database.
async fn count(db: &tokio_postgres::Client, sql: &str) -> i64 {
    db.query_one(sql, &[]).await.expect(sql).get(0)
}
