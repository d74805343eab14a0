//! The seed endpoints' happy paths, end to end.

use serde_json::{json, Value};

use crate::helpers::{spawn_app, unique_email, PASSWORD};

#[tokio::test]
async fn register_login_me_create_and_list() {
    let app = spawn_app().await;
    let email = unique_email();
    let response = app
        .register(&format!("  {}  ", email.to_uppercase()), PASSWORD)
        .await;
    assert_eq!(response.status(), 201);
    assert_eq!(
        response.headers()["content-type"],
        "application/json; charset=utf-8"
    );
    assert_eq!(response.headers()["x-content-type-options"], "nosniff");
    assert_eq!(response.headers()["cache-control"], "no-store");
    let user: Value = response.json().await.expect("json");
    assert_eq!(user["email"], email, "trimmed and lower-cased");
    assert_eq!(user["is_active"], true);
    assert_eq!(user["is_verified"], false);
    assert!(user["created_at"]
        .as_str()
        .expect("created_at")
        .ends_with('Z'));

    let response = app.login(&email, PASSWORD).await;
    assert_eq!(response.status(), 200);
    let tokens: Value = response.json().await.expect("json");
    assert_eq!(tokens["token_type"], "bearer");
    assert_eq!(tokens["expires_in"], 1800);
    assert!(tokens["refresh_token"]
        .as_str()
        .is_some_and(|t| t.len() >= 43));
    let token = tokens["access_token"].as_str().expect("token");

    let me: Value = app.me(token).await.json().await.expect("json");
    assert_eq!(me, user);

    let response = app
        .create_workspace(token, &json!({ "name": "  Team  ", "plan_tier": "pro" }))
        .await;
    assert_eq!(response.status(), 201);
    let workspace: Value = response.json().await.expect("json");
    assert_eq!(workspace["name"], "Team");
    assert_eq!(workspace["plan_tier"], "pro");
    assert_eq!(workspace["owner_id"], user["id"]);

    let listed: Value = app
        .get_auth("/api/workspaces", token)
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(listed, json!([workspace]));
}
