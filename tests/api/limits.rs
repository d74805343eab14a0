//! Rate limits and account lockout: 429 with `Retry-After`, never a
//! permanent lock, and a lock that says nothing about whether an account
//! exists.

use reqwest::Response;
use serde_json::json;

use crate::helpers::{assert_error, spawn_app, spawn_app_with, unique_email, TestApp, PASSWORD};

async fn assert_429(response: Response) {
    let retry: u64 = response
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .expect("Retry-After in whole seconds");
    assert!(retry >= 1);
    assert_error(response, 429, "rate_limited").await;
}

async fn fail_logins(app: &TestApp, email: &str, times: usize) {
    for _ in 0..times {
        assert_error(
            app.login(email, "wrong-password-1").await,
            401,
            "unauthorized",
        )
        .await;
    }
}

#[tokio::test]
async fn repeated_failures_lock_an_account_even_against_the_right_password() {
    let app = spawn_app().await;
    let (email, _, _) = app.new_user().await;
    fail_logins(&app, &email, 10).await;
    assert_429(app.login(&email, PASSWORD).await).await;
    // Any spelling of the address is the same lock.
    assert_429(
        app.login(&format!(" {} ", email.to_uppercase()), PASSWORD)
            .await,
    )
    .await;
}

#[tokio::test]
async fn unknown_addresses_lock_the_same_way() {
    let app = spawn_app().await;
    let ghost = unique_email();
    fail_logins(&app, &ghost, 10).await;
    assert_429(app.login(&ghost, PASSWORD).await).await;
}

#[tokio::test]
async fn a_success_resets_the_count_and_locks_expire() {
    let app = spawn_app().await;
    let (email, _, _) = app.new_user().await;
    fail_logins(&app, &email, 9).await;
    assert_eq!(app.login(&email, PASSWORD).await.status(), 200);
    fail_logins(&app, &email, 9).await;
    assert_eq!(
        app.login(&email, PASSWORD).await.status(),
        200,
        "the count started over"
    );

    fail_logins(&app, &email, 10).await;
    assert_429(app.login(&email, PASSWORD).await).await;
    // Move the lock's clock instead of waiting for it.
    app.db()
        .await
        .execute(
            "UPDATE login_throttle SET locked_until = now() - interval '1 second'",
            &[],
        )
        .await
        .expect("update");
    assert_eq!(
        app.login(&email, PASSWORD).await.status(),
        200,
        "a lock is never permanent"
    );
}

#[tokio::test]
async fn login_attempts_are_limited_per_client_address() {
    let app = spawn_app_with(|s| {
        s.insert("LOGIN_RATE_PER_IP_PER_MINUTE".into(), "3".into());
    })
    .await;
    let email = unique_email();
    for _ in 0..3 {
        assert_eq!(app.login(&email, PASSWORD).await.status(), 401);
    }
    assert_429(app.login(&email, PASSWORD).await).await;
}

#[tokio::test]
async fn forwarded_addresses_count_only_behind_trusted_proxies() {
    let login_from = |app: &TestApp, ip: &'static str| {
        app.client
            .post(app.url("/api/auth/login"))
            .header("x-forwarded-for", ip)
            .form(&[("username", "x@example.com"), ("password", "whatever-123")])
            .send()
    };
    let trusting = spawn_app_with(|s| {
        s.insert("LOGIN_RATE_PER_IP_PER_MINUTE".into(), "2".into());
        s.insert("TRUSTED_PROXIES".into(), "127.0.0.1/32".into());
    })
    .await;
    for _ in 0..2 {
        assert_eq!(
            login_from(&trusting, "203.0.113.7")
                .await
                .expect("request")
                .status(),
            401
        );
    }
    assert_429(login_from(&trusting, "203.0.113.7").await.expect("request")).await;
    assert_eq!(
        login_from(&trusting, "203.0.113.8")
            .await
            .expect("request")
            .status(),
        401,
        "another client"
    );

    let not_trusting = spawn_app_with(|s| {
        s.insert("LOGIN_RATE_PER_IP_PER_MINUTE".into(), "2".into());
    })
    .await;
    for ip in ["203.0.113.1", "203.0.113.2"] {
        assert_eq!(
            login_from(&not_trusting, ip)
                .await
                .expect("request")
                .status(),
            401
        );
    }
    // A spoofed header does not buy a fresh bucket.
    assert_429(
        login_from(&not_trusting, "203.0.113.3")
            .await
            .expect("request"),
    )
    .await;
}

#[tokio::test]
async fn registrations_are_limited_per_client_address() {
    let app = spawn_app_with(|s| {
        s.insert("REGISTER_RATE_PER_IP_PER_MINUTE".into(), "2".into());
    })
    .await;
    for _ in 0..2 {
        assert_eq!(app.register(&unique_email(), PASSWORD).await.status(), 201);
    }
    assert_429(app.register(&unique_email(), PASSWORD).await).await;
}

#[tokio::test]
async fn guessing_service_keys_is_slowed_down() {
    let app = spawn_app_with(|s| {
        s.insert(
            "INTROSPECTION_KEYS".into(),
            "svc:right-key-0123456789".into(),
        );
    })
    .await;
    let mut statuses = Vec::new();
    for n in 0..40 {
        let response = app
            .client
            .post(app.url("/api/auth/introspect"))
            .bearer_auth(format!("guess-{n:020}"))
            .json(&json!({ "token": "x" }))
            .send()
            .await
            .expect("request");
        statuses.push(response.status().as_u16());
    }
    assert!(statuses[..30].iter().all(|s| *s == 401), "{statuses:?}");
    assert!(statuses[30..].iter().all(|s| *s == 429), "{statuses:?}");
    // The right key still works from elsewhere... and here once the guesses stop counting.
    let ok = app
        .client
        .post(app.url("/api/auth/introspect"))
        .bearer_auth("right-key-0123456789")
        .json(&json!({ "token": "x" }))
        .send()
        .await
        .expect("request");
    assert_eq!(
        ok.status(),
        200,
        "a valid key is never refused by the guess limit"
    );
}
