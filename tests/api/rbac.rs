//! Workspaces and roles: the permission table, isolation from non-members,
//! the last-owner rule under concurrency, and how fast role changes reach
//! this and other instances. Introspection (which answers from the role
//! cache alone) is the probe for what the cache holds.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use reqwest::{Method, Response};
use serde_json::{json, Value};
use uuid::Uuid;

use crate::helpers::{
    assert_error, base_settings, spawn_app_on, spawn_app_with, unique_email, TestApp, PASSWORD,
};

const SERVICE_KEY: &str = "rbac-tests-service-key-0123456789";

/// A logged-in user.
#[derive(Clone)]
struct User {
    id: String,
    email: String,
    token: String,
}

fn with_introspection(settings: &mut HashMap<String, String>) {
    settings.insert("INTROSPECTION_KEYS".into(), SERVICE_KEY.into());
}

async fn spawn() -> TestApp {
    spawn_app_with(with_introspection).await
}

async fn user(app: &TestApp) -> User {
    let (email, token, _) = app.new_user().await;
    let me: Value = app.me(&token).await.json().await.expect("json");
    User {
        id: me["id"].as_str().expect("id").to_owned(),
        email,
        token,
    }
}

async fn send(
    app: &TestApp,
    method: Method,
    path: &str,
    token: &str,
    body: Option<Value>,
) -> Response {
    let mut request = app.client.request(method, app.url(path)).bearer_auth(token);
    if let Some(body) = body {
        request = request.json(&body);
    }
    request.send().await.expect("request")
}

async fn new_workspace(app: &TestApp, owner: &User) -> String {
    let response = app
        .create_workspace(&owner.token, &json!({ "name": "Team" }))
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
        Some(json!({ "email": who.email, "role": role })),
    )
    .await;
    assert_eq!(response.status(), 201, "adding {role}");
}

async fn set_role(app: &TestApp, workspace: &str, by: &User, who: &str, role: &str) -> Response {
    send(
        app,
        Method::PATCH,
        &format!("/api/workspaces/{workspace}/members/{who}"),
        &by.token,
        Some(json!({ "role": role })),
    )
    .await
}

/// The role introspection reports for `who` in `workspace` (`None`: no
/// role), which comes from the membership cache only.
async fn cached_role(app: &TestApp, workspace: &str, who: &User) -> Option<String> {
    let response = app
        .client
        .post(app.url("/api/auth/introspect"))
        .bearer_auth(SERVICE_KEY)
        .form(&[("token", who.token.as_str()), ("workspace_id", workspace)])
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), 200, "introspection");
    let body: Value = response.json().await.expect("json");
    assert_eq!(body["active"], true, "{body}");
    body["role"].as_str().map(str::to_owned)
}

async fn db_role(app: &TestApp, workspace: &str, user: &str) -> Option<String> {
    let db = app.db().await;
    let (workspace, user) = (uuid(workspace), uuid(user));
    db.query_opt(
        "SELECT role::text FROM workspace_members WHERE workspace_id = $1 AND user_id = $2",
        &[&workspace, &user],
    )
    .await
    .expect("query")
    .map(|row| row.get(0))
}

fn uuid(raw: &str) -> Uuid {
    Uuid::parse_str(raw).expect("uuid")
}

/// The change feed clears every cache when it connects, shortly after the
/// instance starts; a test that relies on a stale cache entry starts after.
async fn feed_settled() {
    tokio::time::sleep(Duration::from_millis(500)).await;
}

/// Every action of the permission table.
#[derive(Debug, Clone, Copy)]
enum Action {
    GetWorkspace,
    PatchWorkspace,
    DeleteWorkspace,
    ListMembers,
    AddOperator,
    AddViewer,
    AddAdmin,
    AddOwner,
    ChangeOperatorToViewer,
    ChangeOperatorToAdmin,
    ChangeAdminToOperator,
    RemoveOperator,
    RemoveAdmin,
    ReadOwnMembership,
    Leave,
}

/// Expected status for (owner, admin, operator, viewer).
const TABLE: &[(Action, [u16; 4])] = &[
    (Action::GetWorkspace, [200, 200, 200, 200]),
    (Action::PatchWorkspace, [200, 200, 403, 403]),
    (Action::DeleteWorkspace, [204, 403, 403, 403]),
    (Action::ListMembers, [200, 200, 200, 200]),
    (Action::AddOperator, [201, 201, 403, 403]),
    (Action::AddViewer, [201, 201, 403, 403]),
    (Action::AddAdmin, [201, 403, 403, 403]),
    (Action::AddOwner, [201, 403, 403, 403]),
    (Action::ChangeOperatorToViewer, [200, 200, 403, 403]),
    (Action::ChangeOperatorToAdmin, [200, 403, 403, 403]),
    (Action::ChangeAdminToOperator, [200, 403, 403, 403]),
    (Action::RemoveOperator, [204, 204, 403, 403]),
    (Action::RemoveAdmin, [204, 403, 403, 403]),
    (Action::ReadOwnMembership, [200, 200, 200, 200]),
    (Action::Leave, [204, 204, 204, 204]),
];

const ROLES: [&str; 4] = ["owner", "admin", "operator", "viewer"];

#[tokio::test]
async fn every_role_can_do_exactly_what_the_permission_table_says() {
    let app = spawn().await;
    let creator = user(&app).await;
    let newcomer = user(&app).await;
    let operator = user(&app).await;
    let admin = user(&app).await;
    let mut actors = Vec::new();
    for _ in ROLES {
        actors.push(user(&app).await);
    }
    let mut failures = Vec::new();
    for (action, expected) in TABLE {
        for (i, role) in ROLES.iter().enumerate() {
            // A fresh workspace per cell: actions change what they act on.
            let ws = new_workspace(&app, &creator).await;
            let actor = &actors[i];
            add_member(&app, &ws, &creator, actor, role).await;
            add_member(&app, &ws, &creator, &operator, "operator").await;
            add_member(&app, &ws, &creator, &admin, "admin").await;
            let base = format!("/api/workspaces/{ws}");
            let members = format!("{base}/members");
            let add = |role: &str| Some(json!({ "email": newcomer.email, "role": role }));
            let (method, path, body) = match action {
                Action::GetWorkspace => (Method::GET, base.clone(), None),
                Action::PatchWorkspace => (
                    Method::PATCH,
                    base.clone(),
                    Some(json!({ "name": "Renamed" })),
                ),
                Action::DeleteWorkspace => (Method::DELETE, base.clone(), None),
                Action::ListMembers => (Method::GET, members.clone(), None),
                Action::AddOperator => (Method::POST, members.clone(), add("operator")),
                Action::AddViewer => (Method::POST, members.clone(), add("viewer")),
                Action::AddAdmin => (Method::POST, members.clone(), add("admin")),
                Action::AddOwner => (Method::POST, members.clone(), add("owner")),
                Action::ChangeOperatorToViewer => (
                    Method::PATCH,
                    format!("{members}/{}", operator.id),
                    Some(json!({ "role": "viewer" })),
                ),
                Action::ChangeOperatorToAdmin => (
                    Method::PATCH,
                    format!("{members}/{}", operator.id),
                    Some(json!({ "role": "admin" })),
                ),
                Action::ChangeAdminToOperator => (
                    Method::PATCH,
                    format!("{members}/{}", admin.id),
                    Some(json!({ "role": "operator" })),
                ),
                Action::RemoveOperator => {
                    (Method::DELETE, format!("{members}/{}", operator.id), None)
                }
                Action::RemoveAdmin => (Method::DELETE, format!("{members}/{}", admin.id), None),
                Action::ReadOwnMembership => (Method::GET, format!("{members}/me"), None),
                Action::Leave => (Method::DELETE, format!("{members}/me"), None),
            };
            let response = send(&app, method, &path, &actor.token, body).await;
            let status = response.status().as_u16();
            if status != expected[i] {
                failures.push(format!(
                    "{role} {action:?}: expected {}, got {status}",
                    expected[i]
                ));
                continue;
            }
            if status == 403 {
                assert_error(response, 403, "forbidden").await;
            } else if status != 204 {
                let body: Value = response.json().await.expect("json");
                match action {
                    Action::GetWorkspace => assert_eq!(body["role"], *role, "{body}"),
                    Action::ReadOwnMembership => {
                        assert_eq!(body["role"], *role);
                        assert_eq!(body["user_id"], actor.id.as_str());
                        assert_eq!(body["email"], actor.email.as_str());
                    }
                    Action::ListMembers => {
                        assert_eq!(body.as_array().map(Vec::len), Some(4), "{body}")
                    }
                    Action::PatchWorkspace => assert_eq!(body["name"], "Renamed"),
                    _ => {}
                }
            }
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

#[tokio::test]
async fn responses_have_the_documented_shapes_and_validation() {
    let app = spawn().await;
    let owner = user(&app).await;
    let other = user(&app).await;
    let ws = new_workspace(&app, &owner).await;
    let base = format!("/api/workspaces/{ws}");

    let got: Value = send(&app, Method::GET, &base, &owner.token, None)
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(got["id"], ws.as_str());
    assert_eq!(got["name"], "Team");
    assert_eq!(got["owner_id"], owner.id.as_str());
    assert_eq!(got["plan_tier"], "free");
    assert_eq!(got["role"], "owner");
    assert!(got["created_at"].as_str().is_some_and(|t| t.ends_with('Z')));

    let patch = |body: Value| send(&app, Method::PATCH, &base, &owner.token, Some(body));
    let response =
        patch(json!({ "name": "  New  ", "plan_tier": "pro", "owner_id": other.id })).await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.expect("json");
    assert_eq!(
        (&body["name"], &body["plan_tier"], &body["owner_id"]),
        (&json!("New"), &json!("pro"), &json!(owner.id))
    );
    let body: Value = patch(json!({})).await.json().await.expect("json");
    assert_eq!(
        (&body["name"], &body["plan_tier"]),
        (&json!("New"), &json!("pro"))
    );
    let errors = assert_error(
        patch(json!({ "name": "   ", "plan_tier": "gold" })).await,
        422,
        "validation_error",
    )
    .await;
    assert_eq!(
        errors["errors"].as_array().map(Vec::len),
        Some(2),
        "{errors}"
    );
    assert_error(
        patch(json!({ "name": "x".repeat(101) })).await,
        422,
        "validation_error",
    )
    .await;
    assert_error(patch(json!({ "name": 5 })).await, 400, "bad_request").await;

    let members = format!("{base}/members");
    let post = |body: Value| send(&app, Method::POST, &members, &owner.token, Some(body));
    let response = post(json!({ "user_id": other.id, "role": "viewer" })).await;
    assert_eq!(response.status(), 201);
    let member: Value = response.json().await.expect("json");
    assert_eq!(member["user_id"], other.id.as_str());
    assert_eq!(member["email"], other.email.as_str());
    assert_eq!(member["role"], "viewer");
    assert!(member["joined_at"]
        .as_str()
        .is_some_and(|t| t.ends_with('Z')));
    assert_error(
        post(json!({ "email": other.email.to_uppercase(), "role": "admin" })).await,
        409,
        "conflict",
    )
    .await;
    assert_error(
        post(json!({ "email": unique_email(), "role": "viewer" })).await,
        404,
        "not_found",
    )
    .await;
    assert_error(
        post(json!({ "user_id": Uuid::now_v7(), "role": "viewer" })).await,
        404,
        "not_found",
    )
    .await;
    let body = assert_error(
        post(json!({ "email": "nobody" })).await,
        422,
        "validation_error",
    )
    .await;
    assert_eq!(body["errors"].as_array().map(Vec::len), Some(2), "{body}");
    assert_error(
        post(json!({ "email": unique_email(), "role": "root" })).await,
        422,
        "validation_error",
    )
    .await;
    assert_error(
        post(json!({ "email": unique_email(), "role": 1 })).await,
        400,
        "bad_request",
    )
    .await;

    let listed: Value = send(&app, Method::GET, &members, &owner.token, None)
        .await
        .json()
        .await
        .expect("json");
    let listed: Vec<(&str, &str)> = listed
        .as_array()
        .expect("array")
        .iter()
        .map(|m| {
            (
                m["user_id"].as_str().unwrap_or(""),
                m["role"].as_str().unwrap_or(""),
            )
        })
        .collect();
    assert_eq!(
        listed,
        [(owner.id.as_str(), "owner"), (other.id.as_str(), "viewer")]
    );

    let response = set_role(&app, &ws, &owner, &other.id, "operator").await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.expect("json");
    assert_eq!(body["role"], "operator");
    assert_eq!(body["joined_at"], member["joined_at"]);
    assert_eq!(
        db_role(&app, &ws, &other.id).await.as_deref(),
        Some("operator")
    );
    assert_error(
        set_role(&app, &ws, &owner, &other.id, "boss").await,
        422,
        "validation_error",
    )
    .await;
    let missing_role = send(
        &app,
        Method::PATCH,
        &format!("{members}/{}", other.id),
        &owner.token,
        Some(json!({})),
    )
    .await;
    assert_error(missing_role, 422, "validation_error").await;
    assert_error(
        set_role(&app, &ws, &owner, &Uuid::now_v7().to_string(), "viewer").await,
        404,
        "not_found",
    )
    .await;
    let response = send(
        &app,
        Method::DELETE,
        &format!("{members}/{}", other.id),
        &owner.token,
        None,
    )
    .await;
    assert_eq!(response.status(), 204);
    assert_eq!(db_role(&app, &ws, &other.id).await, None);
}

#[tokio::test]
async fn non_members_and_malformed_ids_get_404_everywhere() {
    let app = spawn().await;
    let owner = user(&app).await;
    let stranger = user(&app).await;
    let ws = new_workspace(&app, &owner).await;
    let endpoints = |ws: &str| {
        vec![
            (Method::GET, format!("/api/workspaces/{ws}"), None),
            (
                Method::PATCH,
                format!("/api/workspaces/{ws}"),
                Some(json!({ "name": "Mine" })),
            ),
            (Method::DELETE, format!("/api/workspaces/{ws}"), None),
            (Method::GET, format!("/api/workspaces/{ws}/members"), None),
            (
                Method::POST,
                format!("/api/workspaces/{ws}/members"),
                Some(json!({ "email": unique_email(), "role": "viewer" })),
            ),
            (
                Method::GET,
                format!("/api/workspaces/{ws}/members/me"),
                None,
            ),
            (
                Method::PATCH,
                format!("/api/workspaces/{ws}/members/{}", owner.id),
                Some(json!({ "role": "viewer" })),
            ),
            (
                Method::DELETE,
                format!("/api/workspaces/{ws}/members/{}", owner.id),
                None,
            ),
            (
                Method::DELETE,
                format!("/api/workspaces/{ws}/members/me"),
                None,
            ),
        ]
    };
    for (method, path, body) in endpoints(&ws) {
        let response = send(&app, method.clone(), &path, &stranger.token, body).await;
        assert_eq!(response.status(), 404, "stranger {method} {path}");
        assert_error(response, 404, "not_found").await;
    }
    for bad in ["not-a-uuid", "42", &Uuid::now_v7().to_string(), "%00"] {
        for (method, path, body) in endpoints(bad) {
            let response = send(&app, method.clone(), &path, &owner.token, body).await;
            assert_eq!(response.status(), 404, "owner {method} {path}");
        }
    }
    let listed: Value = app
        .get_auth("/api/workspaces", &stranger.token)
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(listed, json!([]));
    assert_eq!(cached_role(&app, &ws, &stranger).await, None);
    // Nothing the stranger sent changed anything.
    let got: Value = send(
        &app,
        Method::GET,
        &format!("/api/workspaces/{ws}"),
        &owner.token,
        None,
    )
    .await
    .json()
    .await
    .expect("json");
    assert_eq!(got["name"], "Team");
    assert_eq!(
        db_role(&app, &ws, &owner.id).await.as_deref(),
        Some("owner")
    );
    // A malformed member id is no member either.
    let response = set_role(&app, &ws, &owner, "not-a-uuid", "viewer").await;
    assert_error(response, 404, "not_found").await;
}

#[tokio::test]
async fn the_last_owner_cannot_be_demoted_removed_or_leave() {
    let app = spawn().await;
    let owner = user(&app).await;
    let admin = user(&app).await;
    let ws = new_workspace(&app, &owner).await;
    add_member(&app, &ws, &owner, &admin, "admin").await;
    let members = format!("/api/workspaces/{ws}/members");
    for who in [owner.id.as_str(), "me"] {
        assert_error(
            set_role(&app, &ws, &owner, who, "admin").await,
            409,
            "conflict",
        )
        .await;
        let response = send(
            &app,
            Method::DELETE,
            &format!("{members}/{who}"),
            &owner.token,
            None,
        )
        .await;
        assert_error(response, 409, "conflict").await;
    }
    // An admin may not touch an owner at all.
    assert_error(
        set_role(&app, &ws, &admin, &owner.id, "viewer").await,
        403,
        "forbidden",
    )
    .await;
    let response = send(
        &app,
        Method::DELETE,
        &format!("{members}/{}", owner.id),
        &admin.token,
        None,
    )
    .await;
    assert_error(response, 403, "forbidden").await;
    assert_eq!(
        db_role(&app, &ws, &owner.id).await.as_deref(),
        Some("owner")
    );

    // With a second owner, the first may step down.
    assert_eq!(
        set_role(&app, &ws, &owner, &admin.id, "owner")
            .await
            .status(),
        200
    );
    assert_eq!(
        set_role(&app, &ws, &owner, "me", "admin").await.status(),
        200
    );
    assert_eq!(
        db_role(&app, &ws, &owner.id).await.as_deref(),
        Some("admin")
    );
    // Now the other one is the last.
    let response = send(
        &app,
        Method::DELETE,
        &format!("{members}/me"),
        &admin.token,
        None,
    )
    .await;
    assert_error(response, 409, "conflict").await;
}

#[tokio::test]
async fn two_owners_demoting_each_other_in_parallel_leave_an_owner() {
    let app = spawn().await;
    let first = user(&app).await;
    let second = user(&app).await;
    let ws = new_workspace(&app, &first).await;
    add_member(&app, &ws, &first, &second, "owner").await;
    let db = app.db().await;
    // Several rounds: a race that only sometimes loses still shows.
    for round in 0..10 {
        let mut tasks = Vec::new();
        for i in 0..20 {
            let (by, target) = if i % 2 == 0 {
                (first.clone(), second.id.clone())
            } else {
                (second.clone(), first.id.clone())
            };
            let (client, url) = (
                app.client.clone(),
                app.url(&format!("/api/workspaces/{ws}/members/{target}")),
            );
            tasks.push(tokio::spawn(async move {
                client
                    .patch(url)
                    .bearer_auth(&by.token)
                    .json(&json!({ "role": "admin" }))
                    .send()
                    .await
                    .expect("request")
                    .status()
                    .as_u16()
            }));
        }
        let mut statuses = Vec::new();
        for task in tasks {
            statuses.push(task.await.expect("task"));
        }
        assert!(
            statuses.iter().all(|s| [200, 403, 409].contains(s)),
            "round {round}: {statuses:?}"
        );
        let owners: Vec<String> = db
            .query(
                "SELECT user_id::text FROM workspace_members WHERE workspace_id = $1 AND role = 'owner'",
                &[&uuid(&ws)],
            )
            .await
            .expect("query")
            .iter()
            .map(|row| row.get(0))
            .collect();
        assert_eq!(owners.len(), 1, "round {round}: {statuses:?}");
        // The survivor makes the other an owner again for the next round.
        let (survivor, demoted) = if owners[0] == first.id {
            (&first, &second)
        } else {
            (&second, &first)
        };
        let response = set_role(&app, &ws, survivor, &demoted.id, "owner").await;
        assert_eq!(response.status(), 200);
    }
}

#[tokio::test]
async fn a_demotion_or_removal_applies_to_the_very_next_request() {
    let app = spawn().await;
    let owner = user(&app).await;
    let member = user(&app).await;
    let leaver = user(&app).await;
    let ws = new_workspace(&app, &owner).await;
    add_member(&app, &ws, &owner, &member, "admin").await;
    add_member(&app, &ws, &owner, &leaver, "viewer").await;
    let base = format!("/api/workspaces/{ws}");
    let rename = || {
        send(
            &app,
            Method::PATCH,
            &base,
            &member.token,
            Some(json!({ "name": "Ours" })),
        )
    };

    assert_eq!(rename().await.status(), 200);
    assert_eq!(
        cached_role(&app, &ws, &member).await.as_deref(),
        Some("admin")
    );
    assert_eq!(
        set_role(&app, &ws, &owner, &member.id, "viewer")
            .await
            .status(),
        200
    );
    assert_eq!(
        cached_role(&app, &ws, &member).await.as_deref(),
        Some("viewer")
    );
    assert_error(rename().await, 403, "forbidden").await;

    let response = send(
        &app,
        Method::DELETE,
        &format!("{base}/members/{}", member.id),
        &owner.token,
        None,
    )
    .await;
    assert_eq!(response.status(), 204);
    assert_eq!(cached_role(&app, &ws, &member).await, None);
    let response = send(&app, Method::GET, &base, &member.token, None).await;
    assert_error(response, 404, "not_found").await;
    let response = send(
        &app,
        Method::GET,
        &format!("{base}/members"),
        &member.token,
        None,
    )
    .await;
    assert_error(response, 404, "not_found").await;

    assert_eq!(
        cached_role(&app, &ws, &leaver).await.as_deref(),
        Some("viewer")
    );
    let response = send(
        &app,
        Method::DELETE,
        &format!("{base}/members/me"),
        &leaver.token,
        None,
    )
    .await;
    assert_eq!(response.status(), 204);
    assert_eq!(cached_role(&app, &ws, &leaver).await, None);
    let response = send(
        &app,
        Method::GET,
        &format!("{base}/members/me"),
        &leaver.token,
        None,
    )
    .await;
    assert_error(response, 404, "not_found").await;

    // Added back: visible at once too (a cached "not a member" is dropped).
    add_member(&app, &ws, &owner, &leaver, "operator").await;
    assert_eq!(
        cached_role(&app, &ws, &leaver).await.as_deref(),
        Some("operator")
    );
}

/// Polls `probe` every 50 ms for up to `limit`; returns how long it took.
async fn within<F, Fut>(limit: Duration, mut probe: F) -> Option<Duration>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let started = Instant::now();
    loop {
        if probe().await {
            return Some(started.elapsed());
        }
        if started.elapsed() >= limit {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn role_changes_reach_another_instance_within_a_second() {
    let a = spawn().await;
    let mut settings = base_settings(&a.db_url);
    settings.insert("MIGRATE_ON_START".into(), "false".into());
    with_introspection(&mut settings);
    let b = spawn_app_on(settings).await;
    let owner = user(&a).await;
    let member = user(&a).await;
    let ws = new_workspace(&a, &owner).await;
    add_member(&a, &ws, &owner, &member, "admin").await;

    // Warm B's cache, and let B's change feed settle.
    assert_eq!(
        cached_role(&b, &ws, &member).await.as_deref(),
        Some("admin")
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        cached_role(&b, &ws, &member).await.as_deref(),
        Some("admin")
    );

    assert_eq!(
        set_role(&a, &ws, &owner, &member.id, "viewer")
            .await
            .status(),
        200
    );
    let took = within(Duration::from_secs(1), || async {
        cached_role(&b, &ws, &member).await.as_deref() == Some("viewer")
    })
    .await;
    assert!(took.is_some(), "B still serves the old role after 1 s");
    let response = send(
        &b,
        Method::PATCH,
        &format!("/api/workspaces/{ws}"),
        &member.token,
        Some(json!({})),
    )
    .await;
    assert_error(response, 403, "forbidden").await;

    let response = send(
        &a,
        Method::DELETE,
        &format!("/api/workspaces/{ws}/members/{}", member.id),
        &owner.token,
        None,
    )
    .await;
    assert_eq!(response.status(), 204);
    let took = within(Duration::from_secs(1), || async {
        cached_role(&b, &ws, &member).await.is_none()
    })
    .await;
    assert!(took.is_some(), "B still sees the removed member after 1 s");
    let response = send(
        &b,
        Method::GET,
        &format!("/api/workspaces/{ws}"),
        &member.token,
        None,
    )
    .await;
    assert_error(response, 404, "not_found").await;
}

#[tokio::test]
async fn a_crashed_workspace_actor_is_restarted_with_an_empty_cache() {
    let app = spawn().await;
    let owner = user(&app).await;
    let member = user(&app).await;
    let ws = new_workspace(&app, &owner).await;
    add_member(&app, &ws, &owner, &member, "viewer").await;
    feed_settled().await;
    assert_eq!(
        cached_role(&app, &ws, &member).await.as_deref(),
        Some("viewer")
    );

    // Behind the service's back: no change notification, so the cache is stale.
    let db = app.db().await;
    db.execute(
        "UPDATE workspace_members SET role = 'admin' WHERE workspace_id = $1 AND user_id = $2",
        &[&uuid(&ws), &uuid(&member.id)],
    )
    .await
    .expect("update");
    assert_eq!(
        cached_role(&app, &ws, &member).await.as_deref(),
        Some("viewer")
    );

    let restarts = app.state.memberships.restarts();
    app.state.memberships.crash_for_test(uuid(&ws)).await;
    // The very next request works (no 503), with the fresh role.
    assert_eq!(
        cached_role(&app, &ws, &member).await.as_deref(),
        Some("admin")
    );
    let response = send(
        &app,
        Method::PATCH,
        &format!("/api/workspaces/{ws}"),
        &member.token,
        Some(json!({ "plan_tier": "pro" })),
    )
    .await;
    assert_eq!(response.status(), 200);
    let restarted = within(Duration::from_secs(2), || async {
        app.state.memberships.restarts() > restarts
    })
    .await;
    assert!(
        restarted.is_some(),
        "the supervisor did not restart the actor"
    );
    // And the restarted actor keeps answering.
    assert_eq!(
        cached_role(&app, &ws, &owner).await.as_deref(),
        Some("owner")
    );
}

#[tokio::test]
async fn a_deleted_workspace_is_gone_for_every_member() {
    let app = spawn().await;
    let owner = user(&app).await;
    let admin = user(&app).await;
    let viewer = user(&app).await;
    let ws = new_workspace(&app, &owner).await;
    add_member(&app, &ws, &owner, &admin, "admin").await;
    add_member(&app, &ws, &owner, &viewer, "viewer").await;
    let base = format!("/api/workspaces/{ws}");
    for who in [&owner, &admin, &viewer] {
        assert_eq!(
            send(&app, Method::GET, &base, &who.token, None)
                .await
                .status(),
            200
        );
    }
    let response = send(&app, Method::DELETE, &base, &admin.token, None).await;
    assert_error(response, 403, "forbidden").await;
    let response = send(&app, Method::DELETE, &base, &owner.token, None).await;
    assert_eq!(response.status(), 204);
    for who in [&owner, &admin, &viewer] {
        for path in [
            base.clone(),
            format!("{base}/members"),
            format!("{base}/members/me"),
        ] {
            let response = send(&app, Method::GET, &path, &who.token, None).await;
            assert_error(response, 404, "not_found").await;
        }
        assert_eq!(cached_role(&app, &ws, who).await, None);
        let listed: Value = app
            .get_auth("/api/workspaces", &who.token)
            .await
            .json()
            .await
            .expect("json");
        assert_eq!(listed, json!([]));
    }
    let response = send(&app, Method::DELETE, &base, &owner.token, None).await;
    assert_error(response, 404, "not_found").await;
    let db = app.db().await;
    let left: i64 = db
        .query_one(
            "SELECT (SELECT count(*) FROM workspaces WHERE id = $1)
                  + (SELECT count(*) FROM workspace_members WHERE workspace_id = $1)",
            &[&uuid(&ws)],
        )
        .await
        .expect("query")
        .get(0);
    assert_eq!(left, 0);
    // The accounts themselves are untouched.
    assert_eq!(app.login(&viewer.email, PASSWORD).await.status(), 200);
}

#[tokio::test]
async fn without_the_change_feed_roles_come_from_the_database() {
    let app = spawn().await;
    let owner = user(&app).await;
    let member = user(&app).await;
    let ws = new_workspace(&app, &owner).await;
    add_member(&app, &ws, &owner, &member, "viewer").await;
    feed_settled().await;
    assert_eq!(
        cached_role(&app, &ws, &member).await.as_deref(),
        Some("viewer")
    );
    let db = app.db().await;
    let promote = |role: &'static str| {
        let db = &db;
        let (ws, member) = (uuid(&ws), uuid(&member.id));
        async move {
            db.execute(
                "UPDATE workspace_members SET role = CAST($3::text AS workspace_role)
                 WHERE workspace_id = $1 AND user_id = $2",
                &[&ws, &member, &role],
            )
            .await
            .expect("update");
        }
    };
    // A change this instance cannot hear about (as from a peer while the
    // feed is down): the cache serves the old role...
    promote("admin").await;
    assert_eq!(
        cached_role(&app, &ws, &member).await.as_deref(),
        Some("viewer")
    );
    // ...until the feed is known down, when lookups go to the database.
    app.state.memberships.set_feed_up(false);
    assert_eq!(
        cached_role(&app, &ws, &member).await.as_deref(),
        Some("admin")
    );
    promote("operator").await;
    assert_eq!(
        cached_role(&app, &ws, &member).await.as_deref(),
        Some("operator")
    );
    app.state.memberships.clear_all().await;
    app.state.memberships.set_feed_up(true);
    assert_eq!(
        cached_role(&app, &ws, &member).await.as_deref(),
        Some("operator")
    );
}

#[tokio::test]
async fn an_idle_workspace_actor_stops_and_comes_back_on_demand() {
    let app = spawn_app_with(|s| {
        s.insert("MEMBERSHIP_IDLE_SECONDS".into(), "1".into());
    })
    .await;
    let owner = user(&app).await;
    let workspace = new_workspace(&app, &owner).await;
    let path = format!("/api/workspaces/{workspace}");
    assert_eq!(
        send(&app, Method::GET, &path, &owner.token, None)
            .await
            .status(),
        200
    );
    assert_eq!(app.state.memberships.live_actors(), 1);
    // Idle for longer than the setting: the actor stops and is forgotten.
    let deadline = Instant::now() + Duration::from_secs(5);
    while app.state.memberships.live_actors() != 0 {
        assert!(Instant::now() < deadline, "the idle actor never stopped");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The next check starts a fresh one and answers as before.
    assert_eq!(
        send(&app, Method::GET, &path, &owner.token, None)
            .await
            .status(),
        200
    );
    assert_eq!(app.state.memberships.live_actors(), 1);
}
