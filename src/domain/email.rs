//! A user's e-mail address, normalised once so that equal addresses are equal strings.

use std::fmt;

use email_address::EmailAddress;

/// The contract's limit (RFC 5321's forward-path limit), in characters.
const MAX_CHARS: usize = 254;
/// RFC 5321's limit on the part before the `@`.
const MAX_LOCAL_CHARS: usize = 64;

const INVALID: &str = "must be a valid e-mail address";

/// An e-mail address: trimmed, lower-cased and checked to look like an address.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Email(String);

impl Email {
    /// Trims and lower-cases `raw`, then accepts it only if it looks like an address.
    pub fn parse(raw: &str) -> Result<Email, &'static str> {
        let trimmed = raw.trim();
        if trimmed.is_empty() {
            return Err("must not be empty");
        }
        // Counted before lower-casing so an oversized input is refused without
        // allocating. Lower-casing lengthens a string only through 'İ', whose
        // combining dot the character checks below refuse.
        if trimmed.chars().nth(MAX_CHARS).is_some() {
            return Err("must be at most 254 characters");
        }
        let email = trimmed.to_lowercase();
        if email.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(INVALID);
        }
        let (local, domain) = email.split_once('@').ok_or(INVALID)?;
        if local.is_empty() || domain.contains('@') {
            return Err(INVALID);
        }
        if local.chars().nth(MAX_LOCAL_CHARS).is_some() {
            return Err("the part before @ must be at most 64 characters");
        }
        // RFC 6532 admits any non-ASCII character, invisible and bidi ones
        // included, and a quoted local part admits spaces; keep to letters
        // and digits beyond ASCII, and to unquoted local parts.
        let plausible_local =
            !local.contains('"') && local.chars().all(|c| c.is_ascii() || c.is_alphanumeric());
        if !plausible_local || !is_plausible_domain(domain) {
            return Err(INVALID);
        }
        if !EmailAddress::is_valid(&email) {
            return Err(INVALID);
        }
        Ok(Email(email))
    }

    /// The normalised address.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The normalised address, by value.
    pub fn into_inner(self) -> String {
        self.0
    }
}

/// A host name with at least two labels of letters, digits and inner hyphens,
/// and a top-level label that is not a number (refuses IP addresses).
fn is_plausible_domain(domain: &str) -> bool {
    let valid_labels = domain.split('.').all(|label| {
        !label.is_empty()
            && !label.starts_with('-')
            && !label.ends_with('-')
            && label.chars().all(|c| c.is_alphanumeric() || c == '-')
    });
    let top_is_word = domain
        .rsplit('.')
        .next()
        .is_some_and(|top| !top.chars().all(|c| c.is_ascii_digit()));
    domain.contains('.') && valid_labels && top_is_word
}

impl AsRef<str> for Email {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Email {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(raw: &str) -> String {
        match Email::parse(raw) {
            Ok(email) => email.into_inner(),
            Err(e) => panic!("{raw:?} was refused: {e}"),
        }
    }

    fn refused(raw: &str) {
        assert!(Email::parse(raw).is_err(), "{raw:?} was accepted");
    }

    /// `local@domain` with exactly `total` characters and a 64-character local part.
    fn address_of_len(total: usize) -> String {
        let local = "a".repeat(64);
        let domain_len = total - 65;
        // Labels of at most 63 characters, as DNS requires.
        let mut domain = String::new();
        while domain_len - domain.len() > 63 {
            domain.push_str(&"b".repeat(62));
            domain.push('.');
        }
        domain.push_str(&"c".repeat(domain_len - domain.len()));
        format!("{local}@{domain}")
    }

    #[test]
    fn accepts_ordinary_addresses() {
        assert_eq!(ok("user@example.com"), "user@example.com");
        assert_eq!(
            ok("first.last+tag@mail.example.co.uk"),
            "first.last+tag@mail.example.co.uk"
        );
        assert_eq!(ok("o'brien@my-host.example"), "o'brien@my-host.example");
        assert_eq!(ok("x@a1.io"), "x@a1.io");
    }

    #[test]
    fn trims_and_lower_cases() {
        assert_eq!(ok("  User@Example.COM \n"), "user@example.com");
        assert_eq!(ok("\tMiXeD.Case@EXAMPLE.org"), "mixed.case@example.org");
        assert_eq!(
            Email::parse("A@B.CO").map(|e| e.to_string()),
            Ok("a@b.co".to_owned())
        );
    }

    #[test]
    fn lower_cases_unicode_and_allows_international_addresses() {
        assert_eq!(ok("ÜSER@BÜCHER.DE"), "üser@bücher.de");
        assert_eq!(ok("δοκιμή@παράδειγμα.δοκιμή"), "δοκιμή@παράδειγμα.δοκιμή");
        assert_eq!(ok("用户@例子.广告"), "用户@例子.广告");
        assert_eq!(ok("अजय@डाटा.भारत"), "अजय@डाटा.भारत");
    }

    #[test]
    fn refuses_empty_and_whitespace_only() {
        assert_eq!(Email::parse(""), Err("must not be empty"));
        assert_eq!(Email::parse("   \t\n "), Err("must not be empty"));
    }

    #[test]
    fn counts_the_limit_after_trimming() {
        assert_eq!(ok(&address_of_len(254)).chars().count(), 254);
        assert!(Email::parse(&format!("  {}  ", address_of_len(254))).is_ok());
        assert_eq!(
            Email::parse(&address_of_len(255)),
            Err("must be at most 254 characters")
        );
    }

    #[test]
    fn refuses_a_huge_input() {
        let huge = format!("{}@example.com", "a".repeat(100_000));
        assert_eq!(Email::parse(&huge), Err("must be at most 254 characters"));
    }

    #[test]
    fn limits_the_local_part_to_64_characters() {
        assert!(Email::parse(&format!("{}@example.com", "a".repeat(64))).is_ok());
        assert_eq!(
            Email::parse(&format!("{}@example.com", "a".repeat(65))),
            Err("the part before @ must be at most 64 characters")
        );
    }

    #[test]
    fn needs_exactly_one_at_sign() {
        refused("userexample.com");
        refused("user@@example.com");
        refused("us@er@example.com");
        refused("@example.com");
        refused("user@");
        refused("@");
    }

    #[test]
    fn needs_a_domain_with_a_dot_and_no_empty_labels() {
        refused("user@localhost");
        refused("user@example..com");
        refused("user@.example.com");
        refused("user@example.com.");
        refused("user@.");
    }

    #[test]
    fn refuses_bad_domain_labels() {
        refused("user@exa_mple.com");
        refused("user@-example.com");
        refused("user@example-.com");
        refused("user@exa!mple.com");
        refused("user@example.c*m");
        refused("user@1.2.3.4");
        refused("user@[127.0.0.1]");
    }

    #[test]
    fn refuses_whitespace_and_control_characters_inside() {
        refused("us er@example.com");
        refused("user@exa mple.com");
        refused("user@example.com\u{0}");
        refused("user\u{0}@example.com");
        refused("user@example\n.com");
        refused("user\t@example.com");
        refused("user\u{7f}@example.com");
        refused("user\u{a0}x@example.com");
    }

    #[test]
    fn refuses_what_only_the_rfc_allows() {
        refused("\"quoted\"@example.com");
        refused("\"a b\"@example.com");
        refused("Name <user@example.com>");
        refused("<user@example.com>");
        refused(".user@example.com");
        refused("user.@example.com");
        refused("us..er@example.com");
        refused("user(comment)@example.com");
        refused("user\u{200b}@example.com");
        refused("user\u{202e}@example.com");
        refused("🦀@example.com");
        refused("user@🦀.com");
    }

    #[test]
    fn refuses_the_dotted_capital_i_that_grows_when_lower_cased() {
        refused("İ@example.com");
    }

    #[test]
    fn equal_after_normalisation() {
        assert_eq!(
            Email::parse(" USER@example.com"),
            Email::parse("user@EXAMPLE.COM ")
        );
    }
}
