//! A new password that meets the policy; its text never reaches a log.

use std::collections::HashSet;
use std::fmt;
use std::sync::LazyLock;

const MIN_CHARS: usize = 8;
const MAX_CHARS: usize = 1024;

/// The most common breached passwords of 8 or more characters, lower-cased,
/// from the top of the public "10 million passwords" list (SecLists).
/// Shorter ones need no entry: the length rule refuses them already.
static COMMON_PASSWORDS: LazyLock<HashSet<&'static str>> = LazyLock::new(|| {
    include_str!("common_passwords.txt")
        .lines()
        .filter(|line| !line.is_empty())
        .collect()
});

/// A password that meets the policy, kept exactly as the user typed it.
///
/// No `Display` or `Serialize`, and `Debug` prints a placeholder, so it
/// cannot end up in a log line or a response by accident.
#[derive(Clone)]
pub struct Password(String);

impl Password {
    /// Accepts 8 to 1024 characters (Unicode scalar values), taken as sent:
    /// no trimming, no case folding, no truncation, no character-class rules;
    /// refuses the shipped common passwords in any letter case.
    pub fn parse(raw: String) -> Result<Password, &'static str> {
        let chars = raw.chars().count();
        if chars < MIN_CHARS {
            return Err("must be at least 8 characters");
        }
        if chars > MAX_CHARS {
            return Err("must be at most 1024 characters");
        }
        if is_common(&raw) {
            return Err("is too common; choose one that is harder to guess");
        }
        Ok(Password(raw))
    }

    /// The password itself, for hashing only.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

fn is_common(raw: &str) -> bool {
    COMMON_PASSWORDS.contains(raw) || COMMON_PASSWORDS.contains(raw.to_lowercase().as_str())
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Password").field(&"[redacted]").finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(raw: &str) -> Result<Password, &'static str> {
        Password::parse(raw.to_owned())
    }

    #[test]
    fn accepts_the_contract_example() {
        let password = parse("securepassword123").expect("the API example must register");
        assert_eq!(password.expose(), "securepassword123");
    }

    #[test]
    fn refuses_empty_and_short() {
        assert_eq!(parse("").err(), Some("must be at least 8 characters"));
        assert_eq!(
            parse("k7#Qz!p").err(),
            Some("must be at least 8 characters")
        );
        assert!(parse("k7#Qz!pX").is_ok());
    }

    #[test]
    fn whitespace_only_is_a_password_like_any_other() {
        assert!(parse("       ").is_err());
        assert_eq!(parse("        ").map(|p| p.expose().len()), Ok(8));
    }

    #[test]
    fn counts_unicode_scalar_values_not_bytes() {
        assert!(parse(&"🦀".repeat(8)).is_ok());
        assert_eq!(
            parse(&"🦀".repeat(7)).err(),
            Some("must be at least 8 characters")
        );
        assert!(parse(&"é".repeat(1024)).is_ok());
        assert_eq!(
            parse(&"é".repeat(1025)).err(),
            Some("must be at most 1024 characters")
        );
    }

    #[test]
    fn limits_length_to_1024() {
        assert!(parse(&"x".repeat(1024)).is_ok());
        assert_eq!(
            parse(&"x".repeat(1025)).err(),
            Some("must be at most 1024 characters")
        );
        assert!(parse(&"x".repeat(1_000_000)).is_err());
    }

    #[test]
    fn keeps_the_password_exactly_as_sent() {
        let raw = "  Tr1cky Pass \t";
        assert_eq!(
            parse(raw).map(|p| p.expose().to_owned()),
            Ok(raw.to_owned())
        );
        assert_eq!(
            parse("MiXeD cAsE words").map(|p| p.expose().to_owned()),
            Ok("MiXeD cAsE words".to_owned())
        );
    }

    #[test]
    fn has_no_character_class_rules() {
        assert!(parse("correct horse battery staple").is_ok());
        assert!(parse("alllowercaseletters").is_ok());
        assert!(parse("73829104657").is_ok());
    }

    #[test]
    fn refuses_common_passwords_in_any_case() {
        for raw in [
            "password",
            "PASSWORD",
            "Password1",
            "12345678",
            "123456789",
            "1234567890",
            "qwertyuiop",
            "QwErTyUiOp",
            "iloveyou",
            "sunshine1",
            "football1",
            "baseball",
            "welcome1",
            "Trustno1",
        ] {
            assert_eq!(
                parse(raw).err(),
                Some("is too common; choose one that is harder to guess"),
                "{raw:?} was accepted"
            );
        }
    }

    #[test]
    fn a_common_password_with_padding_is_a_different_password() {
        assert!(parse(" password").is_ok());
        assert!(parse("password ").is_ok());
    }

    #[test]
    fn shipped_list_is_lower_case_long_enough_and_unique() {
        let lines: Vec<&str> = include_str!("common_passwords.txt").lines().collect();
        assert!(lines.len() >= 400, "only {} entries", lines.len());
        assert_eq!(COMMON_PASSWORDS.len(), lines.len(), "duplicate entries");
        for line in lines {
            assert_eq!(line, line.to_lowercase(), "{line:?} is not lower-case");
            assert_eq!(line, line.trim(), "{line:?} has surrounding whitespace");
            assert!(line.chars().count() >= MIN_CHARS, "{line:?} is too short");
        }
        assert!(!COMMON_PASSWORDS.contains("securepassword123"));
    }

    #[test]
    fn debug_never_shows_the_password() {
        let password = parse("hunter2hunter2").expect("valid");
        let shown = format!("{password:?} {password:#?}");
        assert!(!shown.contains("hunter2"));
        assert_eq!(format!("{password:?}"), "Password(\"[redacted]\")");
    }
}
