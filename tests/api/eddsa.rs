//! `JWT_ALGORITHM=EdDSA`: keys in PostgreSQL, published as JWKS, verified
//! by an independent implementation, rotated without downtime.

use std::time::{Duration, Instant};

use auth_service::db::signing_keys;
use auth_service::domain::Secret;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{
    decode, decode_header, Algorithm, DecodingKey, EncodingKey, Header, Validation,
};
use serde_json::Value;

use crate::helpers::{base_settings, spawn_app_on, spawn_app_with, TestApp, JWT_KEY};

const SECRET_KEY: &str = "test-secret-key-0123456789abcdef";

async fn eddsa_app() -> TestApp {
    spawn_app_with(|s| {
        s.insert("JWT_ALGORITHM".into(), "EdDSA".into());
    })
    .await
}

async fn jwks(app: &TestApp) -> JwkSet {
    app.client
        .get(app.url("/.well-known/jwks.json"))
        .send()
        .await
        .expect("request")
        .json()
        .await
        .expect("jwks")
}

fn verify_with_jwks(token: &str, set: &JwkSet) -> Result<Value, String> {
    let header = decode_header(token).map_err(|e| e.to_string())?;
    let kid = header.kid.ok_or("no kid")?;
    let jwk = set.find(&kid).ok_or("kid not published")?;
    let key = DecodingKey::from_jwk(jwk).map_err(|e| e.to_string())?;
    let mut validation = Validation::new(Algorithm::EdDSA);
    validation.set_issuer(&["auth-service"]);
    decode::<Value>(token, &key, &validation)
        .map(|d| d.claims)
        .map_err(|e| e.to_string())
}

#[tokio::test]
async fn tokens_verify_against_the_published_jwks_with_an_independent_library() {
    let app = eddsa_app().await;
    let (email, token, _) = app.new_user().await;
    assert_eq!(decode_header(&token).expect("header").alg, Algorithm::EdDSA);
    let set = jwks(&app).await;
    assert_eq!(set.keys.len(), 1);
    let claims = verify_with_jwks(&token, &set).expect("verifies");
    assert_eq!(claims["email"], email);
    assert_eq!(app.me(&token).await.status(), 200);
    // The private key is stored encrypted, never in clear.
    let db = app.db().await;
    let row = db
        .query_one("SELECT private_key, public_key FROM signing_keys", &[])
        .await
        .expect("row");
    let private: Vec<u8> = row.get(0);
    let public: Vec<u8> = row.get(1);
    assert!(!private
        .windows(public.len())
        .any(|w| w == public.as_slice()));
}

#[tokio::test]
async fn hs256_tokens_are_refused_under_eddsa_even_keyed_with_the_public_key() {
    let app = eddsa_app().await;
    let (_, token, _) = app.new_user().await;
    let kid = decode_header(&token).expect("header").kid.expect("kid");
    let claims: Value = {
        use base64::Engine;
        let payload = token.split('.').nth(1).expect("payload");
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload)
            .expect("b64");
        serde_json::from_slice(&bytes).expect("claims")
    };
    let set = jwks(&app).await;
    let x = match &set.keys[0].algorithm {
        jsonwebtoken::jwk::AlgorithmParameters::OctetKeyPair(p) => p.x.clone(),
        other => panic!("unexpected key {other:?}"),
    };
    // The classic confusion: HMAC keyed with the public key, and with the old HS256 secret.
    for secret in [x.as_bytes(), JWT_KEY.as_bytes()] {
        let mut header = Header::new(Algorithm::HS256);
        header.kid = Some(kid.clone());
        let forged = jsonwebtoken::encode(&header, &claims, &EncodingKey::from_secret(secret))
            .expect("sign");
        assert_eq!(app.me(&forged).await.status(), 401);
    }
}

#[tokio::test]
async fn a_rotated_key_signs_new_tokens_while_old_ones_stay_valid_on_every_instance() {
    let a = eddsa_app().await;
    let mut settings = base_settings(&a.db_url);
    settings.insert("JWT_ALGORITHM".into(), "EdDSA".into());
    settings.insert("MIGRATE_ON_START".into(), "false".into());
    let b = spawn_app_on(settings).await;
    let (email, old_token, _) = a.new_user().await;
    let old_kid = decode_header(&old_token).expect("header").kid;

    // Rotate as `auth-service keys rotate` does.
    let (mut client, conn) = tokio_postgres::connect(&a.db_url, tokio_postgres::NoTls)
        .await
        .expect("connect");
    tokio::spawn(conn);
    assert!(
        signing_keys::create(&mut client, &Secret::new(SECRET_KEY), false)
            .await
            .expect("rotate")
    );

    // Both instances pick the new key up through the change feed.
    let deadline = Instant::now() + Duration::from_secs(2);
    for app in [&a, &b] {
        loop {
            let login: Value = app
                .login(&email, crate::helpers::PASSWORD)
                .await
                .json()
                .await
                .expect("json");
            let token = login["access_token"].as_str().expect("token").to_owned();
            if decode_header(&token).expect("header").kid != old_kid {
                assert_eq!(app.me(&token).await.status(), 200);
                break;
            }
            assert!(
                Instant::now() < deadline,
                "instance never switched to the new key"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    // The old token still verifies everywhere, and both keys are published.
    assert_eq!(a.me(&old_token).await.status(), 200);
    assert_eq!(b.me(&old_token).await.status(), 200);
    let set = jwks(&b).await;
    assert_eq!(set.keys.len(), 2);
    assert!(verify_with_jwks(&old_token, &set).is_ok());
}
