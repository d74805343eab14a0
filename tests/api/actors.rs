//! Supervision: a killed actor is restarted, and requests meanwhile fail
//! fast with 503 instead of hanging.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crate::helpers::{spawn_app, unique_email, PASSWORD};

#[tokio::test]
async fn a_killed_hashing_pool_is_restarted_and_requests_never_hang() {
    let app = spawn_app().await;
    let (_, token, _) = app.new_user().await;
    let before = app.state.hasher.actor().expect("pool running").get_id();
    app.state.hasher.actor().expect("pool running").kill();

    // Right after the kill: served (already restarted) or refused fast, nothing else.
    let started = Instant::now();
    let response = app.register(&unique_email(), PASSWORD).await;
    assert!(
        [201, 503].contains(&response.status().as_u16()),
        "{}",
        response.status()
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "a dead pool must not hang requests"
    );

    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        if app.register(&unique_email(), PASSWORD).await.status() == 201 {
            break;
        }
        assert!(Instant::now() < deadline, "the pool never came back");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let after = app
        .state
        .hasher
        .actor()
        .expect("pool running again")
        .get_id();
    assert_ne!(before, after, "a new actor, not the killed one");
    assert!(app.state.actor_restarts.load(Ordering::Relaxed) >= 1);
    // Token checks never depended on the pool.
    assert_eq!(app.me(&token).await.status(), 200);
}
