//! The token actor and the key material it holds.
//!
//! Signing and verifying an HS256 JWT costs microseconds, far less than a
//! message round trip through an actor, so the actor does not sit on the hot
//! path: it builds the key set at start (and again after a restart) and
//! publishes it as a shared read-only handle that request handlers use
//! directly. Key changes (rotation) go through the actor, which swaps the
//! handle atomically.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use ractor::{Actor, ActorProcessingErr, ActorRef};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use uuid::Uuid;

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

/// What the token actor is built from.
#[derive(Clone)]
pub struct TokenConfig {
    /// HS256 key.
    pub secret: Secret,
    /// Access token lifetime.
    pub lifetime: Duration,
    /// `iss`.
    pub issuer: String,
    /// `aud`, when set.
    pub audience: Option<String>,
}

/// The signing and verification keys, shared read-only by every handler.
pub struct TokenKeys {
    kid: String,
    encoding: EncodingKey,
    decoding: DecodingKey,
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
        let kid = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
        let mut validation = Validation::new(Algorithm::HS256);
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
            kid,
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            validation,
            lifetime: config.lifetime,
            issuer: config.issuer.clone(),
            audience: config.audience.clone(),
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
        let mut header = Header::new(Algorithm::HS256);
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
        // Only our algorithm, only our key, and never a key the token names.
        let names_a_key = header.jku.is_some()
            || header.jwk.is_some()
            || header.x5u.is_some()
            || header.x5c.is_some()
            || header.crit.is_some();
        if header.alg != Algorithm::HS256
            || names_a_key
            || header.kid.as_deref() != Some(self.kid.as_str())
        {
            return Err(TokenError::Invalid);
        }
        match jsonwebtoken::decode::<AccessClaims>(token, &self.decoding, &self.validation) {
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
}

/// Messages of the token actor.
pub enum TokenMsg {
    /// Rebuild the keys from configuration and publish them.
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
        args.handle.replace(TokenKeys::new(&args.config));
        Ok(args)
    }

    async fn handle(
        &self,
        _myself: ActorRef<TokenMsg>,
        msg: TokenMsg,
        state: &mut TokenArgs,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            TokenMsg::Reload => state.handle.replace(TokenKeys::new(&state.config)),
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
