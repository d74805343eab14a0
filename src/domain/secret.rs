//! A secret that is not a user's password: a token, a signing or service key.

use std::fmt;

use subtle::ConstantTimeEq;

/// A secret value that never prints: `Debug` shows a placeholder and there is
/// no `Display` or `Serialize`.
#[derive(Clone)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The secret itself, for signing, hashing or sending where it belongs.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Compares with `other` in time that does not depend on where they differ.
    ///
    /// The length is not hidden: compare digests of equal length when the
    /// length of the secret matters.
    pub fn ct_eq(&self, other: &[u8]) -> bool {
        self.0.as_bytes().ct_eq(other).into()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Secret").field(&"[redacted]").finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposes_what_it_was_given() {
        assert_eq!(Secret::new("s3cr3t").expose(), "s3cr3t");
        assert_eq!(Secret::new(String::from("key")).expose(), "key");
        assert_eq!(Secret::new("").expose(), "");
    }

    #[test]
    fn debug_never_shows_the_secret() {
        let secret = Secret::new("topsecretvalue");
        assert_eq!(format!("{secret:?}"), "Secret(\"[redacted]\")");
        assert!(!format!("{secret:#?}").contains("topsecret"));
        assert!(!format!("{:?}", Some(secret)).contains("topsecret"));
    }

    #[test]
    fn ct_eq_matches_only_the_same_bytes() {
        let secret = Secret::new("service-key-1");
        assert!(secret.ct_eq(b"service-key-1"));
        assert!(!secret.ct_eq(b"service-key-2"));
        assert!(!secret.ct_eq(b"Service-key-1"));
        assert!(!secret.ct_eq(b"service-key-"));
        assert!(!secret.ct_eq(b"service-key-11"));
        assert!(!secret.ct_eq(b""));
        assert!(Secret::new("").ct_eq(b""));
        assert!(Secret::new("ключ").ct_eq("ключ".as_bytes()));
    }
}
