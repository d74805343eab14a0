//! The token actor and the key material it holds.
//!
//! Signing and verifying an HS256 JWT costs microseconds, far less than a
//! message round trip through an actor, so the actor does not sit on the hot
//! path: it builds the key set at start (and again after a restart) and
//! publishes it as a shared read-only handle that request handlers use
//! directly. Key changes (rotation) go through the actor, which swaps the
//! handle atomically.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use deadpool_postgres::Pool;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use ractor::{Actor, ActorProcessingErr, ActorRef};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::db::signing_keys;
use crate::domain::Secret;

/// Tokens longer than this are refused before any parsing.
const MAX_TOKEN_LEN: usize = 8 * 1024;
/// Clock skew tolerated on `exp`, `nbf` and `iat`.
const LEEWAY_SECONDS: u64 = 30;

/// The claims of an access token, as API.md lists them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessClaims {
    /// The user id.
    pub sub: Uuid,
    /// The user's e-mail at issue time.
    pub email: String,
    /// Issued at (Unix seconds).
    pub iat: i64,
    /// Not before (Unix seconds).
    pub nbf: i64,
    /// Expiry (Unix seconds).
    pub exp: i64,
    /// Unique token id.
    pub jti: Uuid,
    /// The login session this token belongs to.
    pub sid: Uuid,
    /// Issuer.
    pub iss: String,
    /// Audience, when configured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aud: Option<String>,
}

/// Why a token was refused. Never shown to the client in detail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenError {
    /// Not a JWT, bad signature, wrong algorithm, unknown key, bad claims.
    Invalid,
    /// Expired, or not valid yet.
    Expired,
}

/// Which algorithm signs access tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SigningAlgorithm {
    /// HMAC-SHA256 with `JWT_SECRET_KEY`.
    Hs256,
    /// Ed25519 keys kept (encrypted) in PostgreSQL and published as JWKS.
    EdDsa,
}

/// What the token actor is built from.
#[derive(Clone)]
pub struct TokenConfig {
    /// The algorithm.
    pub algorithm: SigningAlgorithm,
    /// HS256 key.
    pub secret: Secret,
    /// Encrypts EdDSA private keys at rest.
    pub secret_key: Secret,
    /// Access token lifetime.
    pub lifetime: Duration,
    /// `iss`.
    pub issuer: String,
    /// `aud`, when set.
    pub audience: Option<String>,
}

/// The signing and verification keys, shared read-only by every handler.
pub struct TokenKeys {
    algorithm: Algorithm,
    kid: String,
    encoding: EncodingKey,
    decoding: HashMap<String, DecodingKey>,
    jwks: serde_json::Value,
    validation: Validation,
    lifetime: Duration,
    issuer: String,
    audience: Option<String>,
}

impl TokenKeys {
    /// Builds the HS256 key set.
    pub fn new(config: &TokenConfig) -> TokenKeys {
        let secret = config.secret.expose().as_bytes();
        // A key id that names the key without revealing it: a short digest.
        let digest = Sha256::digest([b"kid:".as_slice(), secret].concat());
        let kid: String = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
        let decoding = HashMap::from([(kid.clone(), DecodingKey::from_secret(secret))]);
        TokenKeys::assemble(
            config,
            Algorithm::HS256,
            kid,
            EncodingKey::from_secret(secret),
            decoding,
            serde_json::json!({ "keys": [] }),
        )
    }

    /// Builds the EdDSA key set from stored keys (newest signs).
    pub fn from_stored(
        config: &TokenConfig,
        keys: &[signing_keys::StoredKey],
    ) -> Result<TokenKeys, String> {
        let newest = keys
            .iter()
            .max_by_key(|k| k.created_at)
            .ok_or("no EdDSA signing key is stored")?;
        let mut decoding = HashMap::new();
        let mut published = Vec::new();
        for key in keys {
            decoding.insert(key.kid.clone(), DecodingKey::from_ed_der(&key.public));
            published.push(serde_json::json!({
                "kty": "OKP",
                "crv": "Ed25519",
                "x": URL_SAFE_NO_PAD.encode(&key.public),
                "kid": key.kid,
                "alg": "EdDSA",
                "use": "sig",
            }));
        }
        Ok(TokenKeys::assemble(
            config,
            Algorithm::EdDSA,
            newest.kid.clone(),
            EncodingKey::from_ed_der(&newest.private_der),
            decoding,
            serde_json::json!({ "keys": published }),
        ))
    }

    /// Loads the key set for `config`: HS256 from the configuration, EdDSA
    /// from the database (creating the first key when there is none).
    pub async fn load(config: &TokenConfig, db: &Pool) -> Result<TokenKeys, String> {
        match config.algorithm {
            SigningAlgorithm::Hs256 => Ok(TokenKeys::new(config)),
            SigningAlgorithm::EdDsa => {
                let mut client = db.get().await.map_err(|e| format!("database: {e}"))?;
                signing_keys::create(&mut client, &config.secret_key, true)
                    .await
                    .map_err(|e| e.0)?;
                // Retired keys verify for one token lifetime (plus leeway).
                let keep = config.lifetime + Duration::from_secs(LEEWAY_SECONDS);
                let stored = signing_keys::load(&client, &config.secret_key, keep)
                    .await
                    .map_err(|e| e.0)?;
                TokenKeys::from_stored(config, &stored)
            }
        }
    }

    fn assemble(
        config: &TokenConfig,
        algorithm: Algorithm,
        kid: String,
        encoding: EncodingKey,
        decoding: HashMap<String, DecodingKey>,
        jwks: serde_json::Value,
    ) -> TokenKeys {
        let mut validation = Validation::new(algorithm);
        validation.leeway = LEEWAY_SECONDS;
        validation.validate_nbf = true;
        validation.set_issuer(&[&config.issuer]);
        validation.set_required_spec_claims(&["exp", "nbf", "iat", "iss", "sub"]);
        match &config.audience {
            Some(aud) => {
                validation.set_audience(&[aud]);
                validation.required_spec_claims.insert("aud".into());
            }
            None => validation.validate_aud = false,
        }
        TokenKeys {
            algorithm,
            kid,
            encoding,
            decoding,
            jwks,
            validation,
            lifetime: config.lifetime,
            issuer: config.issuer.clone(),
            audience: config.audience.clone(),
        }
    }

    /// The published public keys (`{"keys": []}` under HS256).
    pub fn jwks(&self) -> &serde_json::Value {
        &self.jwks
    }

    /// The JOSE name of the signing algorithm.
    pub fn algorithm_name(&self) -> &'static str {
        match self.algorithm {
            Algorithm::EdDSA => "EdDSA",
            _ => "HS256",
        }
    }

    /// Access token lifetime in seconds (`expires_in`).
    pub fn lifetime_seconds(&self) -> u64 {
        self.lifetime.as_secs()
    }

    /// Signs a new access token for `user` in session `sid`, issued `now`.
    pub fn issue(&self, user: Uuid, email: &str, sid: Uuid, now: i64) -> Result<String, String> {
        let claims = AccessClaims {
            sub: user,
            email: email.to_owned(),
            iat: now,
            nbf: now,
            exp: now + self.lifetime.as_secs() as i64,
            jti: Uuid::now_v7(),
            sid,
            iss: self.issuer.clone(),
            aud: self.audience.clone(),
        };
        let mut header = Header::new(self.algorithm);
        header.kid = Some(self.kid.clone());
        jsonwebtoken::encode(&header, &claims, &self.encoding)
            .map_err(|e| format!("signing failed: {e}"))
    }

    /// Verifies signature, algorithm, key id, issuer, audience and times.
    pub fn verify(&self, token: &str) -> Result<AccessClaims, TokenError> {
        if token.len() > MAX_TOKEN_LEN {
            return Err(TokenError::Invalid);
        }
        let header = jsonwebtoken::decode_header(token).map_err(|_| TokenError::Invalid)?;
        // Only our algorithm, only our keys, and never a key the token names.
        let names_a_key = header.jku.is_some()
            || header.jwk.is_some()
            || header.x5u.is_some()
            || header.x5c.is_some()
            || header.crit.is_some();
        if header.alg != self.algorithm || names_a_key {
            return Err(TokenError::Invalid);
        }
        let key = header
            .kid
            .as_deref()
            .and_then(|kid| self.decoding.get(kid))
            .ok_or(TokenError::Invalid)?;
        match jsonwebtoken::decode::<AccessClaims>(token, key, &self.validation) {
            Ok(data) => Ok(data.claims),
            Err(e) => match e.kind() {
                jsonwebtoken::errors::ErrorKind::ExpiredSignature
                | jsonwebtoken::errors::ErrorKind::ImmatureSignature => Err(TokenError::Expired),
                _ => Err(TokenError::Invalid),
            },
        }
    }
}

/// A shared, swappable handle to the current keys.
#[derive(Clone)]
pub struct KeyHandle(Arc<RwLock<Arc<TokenKeys>>>);

impl KeyHandle {
    /// A handle holding `keys`.
    pub fn new(keys: TokenKeys) -> KeyHandle {
        KeyHandle(Arc::new(RwLock::new(Arc::new(keys))))
    }

    /// The current keys (a cheap clone of an `Arc`).
    pub fn current(&self) -> Arc<TokenKeys> {
        match self.0.read() {
            Ok(keys) => keys.clone(),
            // A writer panicked mid-swap; the Arc inside is still whole.
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    fn replace(&self, keys: TokenKeys) {
        let mut slot = match self.0.write() {
            Ok(slot) => slot,
            Err(poisoned) => poisoned.into_inner(),
        };
        *slot = Arc::new(keys);
    }
}

/// Startup arguments of the token actor.
#[derive(Clone)]
pub struct TokenArgs {
    /// Key configuration.
    pub config: TokenConfig,
    /// The handle it publishes into.
    pub handle: KeyHandle,
    /// Where EdDSA keys live.
    pub db: Pool,
}

/// Messages of the token actor.
pub enum TokenMsg {
    /// Reload the keys (configuration or database) and publish them: after
    /// a rotation on any instance, and when the change feed reconnects.
    Reload,
}

/// The actor marker.
pub struct TokenActor;

impl Actor for TokenActor {
    type Msg = TokenMsg;
    type State = TokenArgs;
    type Arguments = TokenArgs;

    async fn pre_start(
        &self,
        _myself: ActorRef<TokenMsg>,
        args: TokenArgs,
    ) -> Result<TokenArgs, ActorProcessingErr> {
        args.handle
            .replace(TokenKeys::load(&args.config, &args.db).await?);
        Ok(args)
    }

    async fn handle(
        &self,
        _myself: ActorRef<TokenMsg>,
        msg: TokenMsg,
        state: &mut TokenArgs,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            TokenMsg::Reload => match TokenKeys::load(&state.config, &state.db).await {
                Ok(keys) => state.handle.replace(keys),
                // Keep verifying with what we have; the next reload may work.
                Err(e) => tracing::warn!(error = %e, "could not reload signing keys"),
            },
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine;

    fn keys(audience: Option<&str>) -> TokenKeys {
        TokenKeys::new(&TokenConfig {
            algorithm: SigningAlgorithm::Hs256,
            secret_key: Secret::new("s".repeat(32)),
            secret: Secret::new("k".repeat(32)),
            lifetime: Duration::from_secs(1800),
            issuer: "auth-service".into(),
            audience: audience.map(str::to_owned),
        })
    }

    fn now() -> i64 {
        chrono::Utc::now().timestamp()
    }

    #[test]
    fn issued_tokens_verify_with_every_claim() {
        let keys = keys(Some("api"));
        let (user, sid) = (Uuid::now_v7(), Uuid::now_v7());
        let token = keys.issue(user, "a@example.com", sid, now()).expect("sign");
        let claims = keys.verify(&token).expect("valid");
        assert_eq!((claims.sub, claims.sid), (user, sid));
        assert_eq!(claims.exp - claims.iat, 1800);
        assert_eq!(claims.aud.as_deref(), Some("api"));
        let header = jsonwebtoken::decode_header(&token).expect("header");
        assert_eq!(header.kid.as_deref(), Some(keys.kid.as_str()));
    }

    #[test]
    fn expired_and_future_tokens_are_refused_beyond_the_leeway() {
        let keys = keys(None);
        let old = keys
            .issue(
                Uuid::now_v7(),
                "a@example.com",
                Uuid::now_v7(),
                now() - 1800 - 31,
            )
            .expect("sign");
        assert_eq!(keys.verify(&old), Err(TokenError::Expired));
        let within = keys
            .issue(
                Uuid::now_v7(),
                "a@example.com",
                Uuid::now_v7(),
                now() - 1800 - 5,
            )
            .expect("sign");
        assert!(keys.verify(&within).is_ok());
        let future = keys
            .issue(Uuid::now_v7(), "a@example.com", Uuid::now_v7(), now() + 120)
            .expect("sign");
        assert_eq!(keys.verify(&future), Err(TokenError::Expired));
    }

    #[test]
    fn another_key_issuer_or_audience_is_refused() {
        let token = keys(None)
            .issue(Uuid::now_v7(), "a@example.com", Uuid::now_v7(), now())
            .expect("sign");
        let other = TokenKeys::new(&TokenConfig {
            algorithm: SigningAlgorithm::Hs256,
            secret_key: Secret::new("s".repeat(32)),
            secret: Secret::new("z".repeat(32)),
            lifetime: Duration::from_secs(1800),
            issuer: "auth-service".into(),
            audience: None,
        });
        assert_eq!(other.verify(&token), Err(TokenError::Invalid));
        assert_eq!(keys(Some("api")).verify(&token), Err(TokenError::Invalid));
    }

    #[test]
    fn alg_none_and_tampering_are_refused() {
        let keys = keys(None);
        let token = keys
            .issue(Uuid::now_v7(), "a@example.com", Uuid::now_v7(), now())
            .expect("sign");
        let mut parts = token.split('.');
        let (_, payload) = (parts.next(), parts.next().unwrap_or_default());
        let none_header = URL_SAFE_NO_PAD.encode(format!(
            r#"{{"alg":"none","typ":"JWT","kid":"{}"}}"#,
            keys.kid
        ));
        assert_eq!(
            keys.verify(&format!("{none_header}.{payload}.")),
            Err(TokenError::Invalid)
        );
        let jku_header = URL_SAFE_NO_PAD.encode(format!(
            r#"{{"alg":"HS256","kid":"{}","jku":"http://x/"}}"#,
            keys.kid
        ));
        assert_eq!(
            keys.verify(&format!("{jku_header}.{payload}.sig")),
            Err(TokenError::Invalid)
        );
        let sig = token.rfind('.').map_or(0, |i| i + 1);
        let swap = if token[sig..].starts_with('A') {
            "B"
        } else {
            "A"
        };
        let flipped = format!("{}{swap}{}", &token[..sig], &token[sig + 1..]);
        assert_eq!(keys.verify(&flipped), Err(TokenError::Invalid));
        assert_eq!(
            keys.verify(&"a".repeat(MAX_TOKEN_LEN + 1)),
            Err(TokenError::Invalid)
        );
    }
}
