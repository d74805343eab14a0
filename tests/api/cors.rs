//! CORS only for listed origins; an unlisted origin is never echoed.

use crate::helpers::{spawn_app, spawn_app_with, TestApp};

const ALLOWED: &str = "https://app.example.com";

async fn cors_app() -> TestApp {
    spawn_app_with(|s| {
        s.insert(
            "CORS_ALLOWED_ORIGINS".into(),
            format!("{ALLOWED}, https://admin.example.com/"),
        );
    })
    .await
}

#[tokio::test]
async fn listed_origins_get_preflight_and_response_headers() {
    let app = cors_app().await;
    let preflight = app
        .client
        .request(reqwest::Method::OPTIONS, app.url("/api/auth/me"))
        .header("origin", ALLOWED)
        .header("access-control-request-method", "GET")
        .header("access-control-request-headers", "authorization")
        .send()
        .await
        .expect("request");
    assert_eq!(preflight.status(), 204);
    assert_eq!(preflight.headers()["access-control-allow-origin"], ALLOWED);
    assert_eq!(preflight.headers()["access-control-allow-methods"], "GET");
    assert!(preflight.headers()["access-control-allow-headers"]
        .to_str()
        .expect("text")
        .contains("Authorization"));
    assert!(preflight
        .headers()
        .get("access-control-allow-credentials")
        .is_none());

    let actual = app
        .client
        .get(app.url("/api/auth/me"))
        .header("origin", "https://admin.example.com")
        .send()
        .await
        .expect("request");
    assert_eq!(actual.status(), 401);
    assert_eq!(
        actual.headers()["access-control-allow-origin"],
        "https://admin.example.com"
    );
    assert!(actual.headers()["access-control-expose-headers"]
        .to_str()
        .expect("text")
        .contains("X-Next-Cursor"));
}

#[tokio::test]
async fn unlisted_origins_are_never_echoed() {
    for app in [cors_app().await, spawn_app().await] {
        for method in [reqwest::Method::OPTIONS, reqwest::Method::GET] {
            let response = app
                .client
                .request(method.clone(), app.url("/api/auth/me"))
                .header("origin", "https://evil.example.net")
                .header("access-control-request-method", "GET")
                .send()
                .await
                .expect("request");
            for (name, value) in response.headers() {
                assert!(
                    !name.as_str().starts_with("access-control-"),
                    "{method} sent {name}"
                );
                assert!(
                    !value.to_str().unwrap_or_default().contains("evil"),
                    "{name} echoes the origin"
                );
            }
        }
    }
}
