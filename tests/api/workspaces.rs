//! The seed workspace endpoints: create, and the caller's paged list.

use serde_json::{json, Value};
use uuid::Uuid;

use crate::helpers::{assert_error, error_fields, spawn_app, TestApp};

/// Creates a workspace named `name`; returns its JSON.
async fn created(app: &TestApp, token: &str, name: &str) -> Value {
    let response = app.create_workspace(token, &json!({ "name": name })).await;
    assert_eq!(response.status(), 201, "create {name}");
    response.json().await.expect("json")
}

/// `GET /api/workspaces{query}`: the JSON and the `X-Next-Cursor`.
async fn list(app: &TestApp, token: &str, query: &str) -> (Value, Option<String>) {
    let response = app
        .get_auth(&format!("/api/workspaces{query}"), token)
        .await;
    assert_eq!(response.status(), 200, "list{query}");
    let cursor = response
        .headers()
        .get("x-next-cursor")
        .map(|v| v.to_str().expect("ascii cursor").to_owned());
    (response.json().await.expect("json"), cursor)
}

fn names(page: &Value) -> Vec<&str> {
    page.as_array()
        .expect("array")
        .iter()
        .map(|w| w["name"].as_str().expect("name"))
        .collect()
}

#[tokio::test]
async fn create_returns_the_workspace() {
    let app = spawn_app().await;
    let (_, token, _) = app.new_user().await;
    let me: Value = app.me(&token).await.json().await.expect("json");
    let response = app
        .create_workspace(
            &token,
            &json!({ "name": "Acme", "plan_tier": "enterprise" }),
        )
        .await;
    assert_eq!(response.status(), 201);
    assert_eq!(
        response.headers()["content-type"],
        "application/json; charset=utf-8"
    );
    let workspace: Value = response.json().await.expect("json");
    assert_eq!(
        workspace.as_object().expect("object").len(),
        5,
        "id, name, owner_id, plan_tier, created_at: {workspace}"
    );
    Uuid::parse_str(workspace["id"].as_str().expect("id")).expect("UUID");
    assert_eq!(workspace["name"], "Acme");
    assert_eq!(workspace["owner_id"], me["id"]);
    assert_eq!(workspace["plan_tier"], "enterprise");
    let created_at = workspace["created_at"].as_str().expect("created_at");
    assert!(created_at.ends_with('Z'), "{created_at}");
    chrono::DateTime::parse_from_rfc3339(created_at).expect("RFC 3339");
}

#[tokio::test]
async fn plan_tier_defaults_to_free() {
    let app = spawn_app().await;
    let (_, token, _) = app.new_user().await;
    assert_eq!(created(&app, &token, "Default").await["plan_tier"], "free");
    let response = app
        .create_workspace(&token, &json!({ "name": "Null tier", "plan_tier": null }))
        .await;
    assert_eq!(response.status(), 201);
    let workspace: Value = response.json().await.expect("json");
    assert_eq!(workspace["plan_tier"], "free");
}

#[tokio::test]
async fn create_refuses_an_unknown_plan_tier() {
    let app = spawn_app().await;
    let (_, token, _) = app.new_user().await;
    for tier in ["platinum", "FREE", ""] {
        let response = app
            .create_workspace(&token, &json!({ "name": "W", "plan_tier": tier }))
            .await;
        let body = assert_error(response, 422, "validation_error").await;
        assert_eq!(error_fields(&body), ["plan_tier"], "{tier:?}");
    }
    // A wrong JSON type is a malformed request, not an invalid value.
    let response = app
        .create_workspace(&token, &json!({ "name": "W", "plan_tier": 1 }))
        .await;
    assert_error(response, 400, "bad_request").await;
}

#[tokio::test]
async fn create_validates_the_name() {
    let app = spawn_app().await;
    let (_, token, _) = app.new_user().await;
    for bad in [
        json!({ "name": "" }),
        json!({ "name": " \t\n " }),
        json!({ "name": "Team\nA" }),
        json!({ "name": "Evil\u{202e}txt.exe" }),
    ] {
        let body = assert_error(
            app.create_workspace(&token, &bad).await,
            422,
            "validation_error",
        )
        .await;
        assert_eq!(error_fields(&body), ["name"], "{bad}");
    }
    let body = assert_error(
        app.create_workspace(&token, &json!({ "name": "x".repeat(101) }))
            .await,
        422,
        "validation_error",
    )
    .await;
    assert_eq!(error_fields(&body), ["name"]);
    let body = assert_error(
        app.create_workspace(&token, &json!({ "plan_tier": "pro" }))
            .await,
        422,
        "validation_error",
    )
    .await;
    assert_eq!(error_fields(&body), ["name"]);
    // Both wrong: both listed.
    let body = assert_error(
        app.create_workspace(&token, &json!({ "name": "", "plan_tier": "gold" }))
            .await,
        422,
        "validation_error",
    )
    .await;
    let mut fields = error_fields(&body);
    fields.sort();
    assert_eq!(fields, ["name", "plan_tier"]);

    // 100 characters is fine, counted after trimming and in characters.
    let hundred = "é".repeat(100);
    let workspace = created(&app, &token, &format!("  {hundred}  ")).await;
    assert_eq!(workspace["name"], hundred);
    let (listed, _) = list(&app, &token, "").await;
    assert_eq!(
        listed.as_array().map(Vec::len),
        Some(1),
        "nothing else stored"
    );
}

#[tokio::test]
async fn create_ignores_fields_the_client_may_not_set() {
    let app = spawn_app().await;
    let (_, token, _) = app.new_user().await;
    let (_, other, _) = app.new_user().await;
    let other_id: Value = app.me(&other).await.json().await.expect("json");
    let me: Value = app.me(&token).await.json().await.expect("json");
    let forced_id = Uuid::new_v4();
    let response = app
        .create_workspace(
            &token,
            &json!({ "name": "Mine", "owner_id": other_id["id"], "id": forced_id, "role": "viewer" }),
        )
        .await;
    assert_eq!(response.status(), 201);
    let workspace: Value = response.json().await.expect("json");
    assert_eq!(workspace["owner_id"], me["id"]);
    assert_ne!(workspace["id"], json!(forced_id));
    let (listed, _) = list(&app, &other, "").await;
    assert_eq!(listed, json!([]));
}

#[tokio::test]
async fn workspaces_need_a_bearer_token() {
    let app = spawn_app().await;
    let response = app
        .client
        .post(app.url("/api/workspaces"))
        .json(&json!({ "name": "W" }))
        .send()
        .await
        .expect("request");
    assert_error(response, 401, "unauthorized").await;
    let response = app
        .client
        .get(app.url("/api/workspaces"))
        .send()
        .await
        .expect("request");
    assert_error(response, 401, "unauthorized").await;
    assert_error(
        app.create_workspace("not-a-token", &json!({ "name": "W" }))
            .await,
        401,
        "unauthorized",
    )
    .await;
    let rows: i64 = app
        .db()
        .await
        .query_one("SELECT count(*) FROM workspaces", &[])
        .await
        .expect("count")
        .get(0);
    assert_eq!(rows, 0);
}

#[tokio::test]
async fn the_creator_is_an_owner_member_in_the_database() {
    let app = spawn_app().await;
    let (_, token, _) = app.new_user().await;
    let workspace = created(&app, &token, "Owned").await;
    let id = Uuid::parse_str(workspace["id"].as_str().expect("id")).expect("uuid");
    let rows = app
        .db()
        .await
        .query(
            "SELECT user_id, role::text FROM workspace_members WHERE workspace_id = $1",
            &[&id],
        )
        .await
        .expect("members");
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].get::<_, Uuid>(0).to_string(), workspace["owner_id"]);
    assert_eq!(rows[0].get::<_, String>(1), "owner");
}

#[tokio::test]
async fn list_shows_only_the_callers_workspaces_newest_first() {
    let app = spawn_app().await;
    let (_, alice, _) = app.new_user().await;
    let (_, bob, _) = app.new_user().await;
    let (_, carol, _) = app.new_user().await;
    created(&app, &alice, "A1").await;
    created(&app, &bob, "B1").await;
    created(&app, &alice, "A2").await;
    created(&app, &bob, "B2").await;
    created(&app, &alice, "A3").await;
    let (listed, cursor) = list(&app, &alice, "").await;
    assert_eq!(names(&listed), ["A3", "A2", "A1"]);
    assert_eq!(cursor, None);
    let (listed, _) = list(&app, &bob, "").await;
    assert_eq!(names(&listed), ["B2", "B1"]);
    let (listed, _) = list(&app, &carol, "").await;
    assert_eq!(listed, json!([]));
}

#[tokio::test]
async fn list_pages_with_a_cursor_without_overlap() {
    let app = spawn_app().await;
    let (_, token, _) = app.new_user().await;
    let (_, other, _) = app.new_user().await;
    for i in 1..=5 {
        created(&app, &token, &format!("W{i}")).await;
        // Another user's workspaces interleaved: never on the caller's pages.
        created(&app, &other, &format!("X{i}")).await;
    }
    let (first, cursor) = list(&app, &token, "?limit=2").await;
    assert_eq!(names(&first), ["W5", "W4"]);
    let cursor = cursor.expect("a next cursor after a full page");
    let (second, cursor) = list(&app, &token, &format!("?limit=2&cursor={cursor}")).await;
    assert_eq!(names(&second), ["W3", "W2"]);
    let cursor = cursor.expect("a next cursor after the second page");
    let (last, cursor) = list(&app, &token, &format!("?limit=2&cursor={cursor}")).await;
    assert_eq!(names(&last), ["W1"]);
    assert_eq!(cursor, None, "no cursor after the last page");

    // Exactly `limit` items left: still no cursor pointing at an empty page.
    let (all, cursor) = list(&app, &token, "?limit=5").await;
    assert_eq!(all.as_array().map(Vec::len), Some(5));
    assert_eq!(cursor, None);
}

#[tokio::test]
async fn list_refuses_a_bad_limit_or_cursor() {
    let app = spawn_app().await;
    let (_, token, _) = app.new_user().await;
    created(&app, &token, "W").await;
    for query in [
        "?limit=0",
        "?limit=201",
        "?limit=abc",
        "?limit=-1",
        "?limit=",
    ] {
        let response = app
            .get_auth(&format!("/api/workspaces{query}"), &token)
            .await;
        let body = assert_error(response, 422, "validation_error").await;
        assert_eq!(error_fields(&body), ["limit"], "{query}");
    }
    for query in ["?cursor=garbage", "?cursor=%00%01", "?cursor=eyJ9"] {
        let response = app
            .get_auth(&format!("/api/workspaces{query}"), &token)
            .await;
        let body = assert_error(response, 422, "validation_error").await;
        assert_eq!(error_fields(&body), ["cursor"], "{query}");
    }
    let response = app
        .get_auth("/api/workspaces?limit=0&cursor=garbage", &token)
        .await;
    let body = assert_error(response, 422, "validation_error").await;
    let mut fields = error_fields(&body);
    fields.sort();
    assert_eq!(fields, ["cursor", "limit"]);
    // The bounds themselves are fine.
    assert_eq!(
        list(&app, &token, "?limit=1")
            .await
            .0
            .as_array()
            .map(Vec::len),
        Some(1)
    );
    assert_eq!(
        list(&app, &token, "?limit=200")
            .await
            .0
            .as_array()
            .map(Vec::len),
        Some(1)
    );
}
