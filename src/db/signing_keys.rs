//! Queries on `signing_keys`: the EdDSA key set every instance shares.
//! Private keys are stored encrypted (ChaCha20-Poly1305 under a key derived
//! from `SECRET_KEY`); a database dump alone cannot sign tokens.

use chacha20poly1305::aead::{Aead, KeyInit};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
use chrono::{DateTime, Utc};
use ed25519_dalek::pkcs8::EncodePrivateKey;
use ed25519_dalek::SigningKey;
use hkdf::Hkdf;
use rand::RngCore;
use sha2::Sha256;

use crate::domain::Secret;

/// One key as the token actor needs it.
pub struct StoredKey {
    /// Key id (`kid`).
    pub kid: String,
    /// PKCS#8 DER of the private key (decrypted).
    pub private_der: Vec<u8>,
    /// Raw 32-byte public key.
    pub public: Vec<u8>,
    /// When it was created; the newest unretired key signs.
    pub created_at: DateTime<Utc>,
}

/// Why the key set could not be read or written.
#[derive(Debug)]
pub struct KeyError(pub String);

impl std::fmt::Display for KeyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<tokio_postgres::Error> for KeyError {
    fn from(e: tokio_postgres::Error) -> Self {
        KeyError(format!("database: {e}"))
    }
}

fn cipher(secret: &Secret) -> ChaCha20Poly1305 {
    // HKDF with a fixed label: this key encrypts signing keys and nothing else.
    let hk = Hkdf::<Sha256>::new(
        Some(b"auth-service/signing-keys/v1"),
        secret.expose().as_bytes(),
    );
    let mut key = [0u8; 32];
    // 32 bytes is far below HKDF-SHA256's output limit.
    let _ = hk.expand(b"chacha20poly1305", &mut key);
    ChaCha20Poly1305::new(&Key::from(key))
}

fn seal(secret: &Secret, kid: &str, plain: &[u8]) -> Result<Vec<u8>, KeyError> {
    let mut nonce = [0u8; 12];
    rand::thread_rng().fill_bytes(&mut nonce);
    let sealed = cipher(secret)
        .encrypt(
            &Nonce::from(nonce),
            chacha20poly1305::aead::Payload {
                msg: plain,
                aad: kid.as_bytes(),
            },
        )
        .map_err(|_| KeyError("encrypting a signing key failed".into()))?;
    Ok([nonce.as_slice(), &sealed].concat())
}

fn open(secret: &Secret, kid: &str, sealed: &[u8]) -> Result<Vec<u8>, KeyError> {
    if sealed.len() < 12 {
        return Err(KeyError(format!("signing key {kid} is truncated")));
    }
    let (nonce, body) = sealed.split_at(12);
    let nonce: [u8; 12] = nonce
        .try_into()
        .map_err(|_| KeyError(format!("signing key {kid} is truncated")))?;
    cipher(secret)
        .decrypt(
            &Nonce::from(nonce),
            chacha20poly1305::aead::Payload {
                msg: body,
                aad: kid.as_bytes(),
            },
        )
        .map_err(|_| {
            KeyError(format!(
                "signing key {kid} does not decrypt: is SECRET_KEY the one it was made with?"
            ))
        })
}

/// Keys that verify: unretired, or retired less than `keep` ago.
pub async fn load(
    db: &tokio_postgres::Client,
    secret: &Secret,
    keep: std::time::Duration,
) -> Result<Vec<StoredKey>, KeyError> {
    let rows = db
        .query(
            "SELECT kid, private_key, public_key, created_at FROM signing_keys
             WHERE retired_at IS NULL OR retired_at > now() - make_interval(secs => $1::float8)
             ORDER BY created_at DESC",
            &[&keep.as_secs_f64()],
        )
        .await?;
    rows.iter()
        .map(|r| {
            let kid: String = r.try_get(0)?;
            let sealed: Vec<u8> = r.try_get(1)?;
            Ok(StoredKey {
                private_der: open(secret, &kid, &sealed)?,
                kid,
                public: r.try_get(2)?,
                created_at: r.try_get(3)?,
            })
        })
        .collect()
}

/// Makes a new key and makes it the signing key; the previous signing key
/// is retired (it keeps verifying until its tokens have expired).
/// `only_if_none`: create one only when no unretired key exists (first
/// start; two instances starting together create one key, not two).
pub async fn create(
    db: &mut tokio_postgres::Client,
    secret: &Secret,
    only_if_none: bool,
) -> Result<bool, KeyError> {
    let tx = db.transaction().await?;
    tx.batch_execute("LOCK TABLE signing_keys IN SHARE ROW EXCLUSIVE MODE")
        .await?;
    if only_if_none {
        let live = tx
            .query_one(
                "SELECT count(*) FROM signing_keys WHERE retired_at IS NULL",
                &[],
            )
            .await?;
        if live.get::<_, i64>(0) > 0 {
            return Ok(false);
        }
    }
    let mut seed = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut seed);
    let key = SigningKey::from_bytes(&seed);
    let der = key
        .to_pkcs8_der()
        .map_err(|e| KeyError(format!("encoding a new key: {e}")))?;
    let public = key.verifying_key().to_bytes().to_vec();
    let kid = uuid::Uuid::now_v7().simple().to_string();
    let sealed = seal(secret, &kid, der.as_bytes())?;
    tx.execute(
        "UPDATE signing_keys SET retired_at = now() WHERE retired_at IS NULL",
        &[],
    )
    .await?;
    tx.execute(
        "INSERT INTO signing_keys (kid, algorithm, private_key, public_key) VALUES ($1, 'EdDSA', $2, $3)",
        &[&kid, &sealed, &public],
    )
    .await?;
    let payload = serde_json::json!({ "t": "keys" }).to_string();
    tx.execute(
        "SELECT pg_notify($1, $2)",
        &[&crate::changefeed::CHANNEL, &payload],
    )
    .await?;
    tx.commit().await?;
    tracing::info!(kid, "new signing key");
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_keys_open_only_with_the_same_secret_and_kid() {
        let secret = Secret::new("s".repeat(32));
        let sealed = seal(&secret, "k1", b"private").expect("seal");
        assert_eq!(open(&secret, "k1", &sealed).expect("open"), b"private");
        assert!(open(&Secret::new("t".repeat(32)), "k1", &sealed).is_err());
        assert!(open(&secret, "k2", &sealed).is_err(), "bound to its kid");
        assert!(open(&secret, "k1", &sealed[..8]).is_err());
    }
}
