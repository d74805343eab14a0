//! A workspace's display name.

use std::fmt;

const MAX_CHARS: usize = 100;

/// A workspace name: trimmed, 1 to 100 characters, nothing invisible that
/// could break a log line or reorder the text around it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct WorkspaceName(String);

impl WorkspaceName {
    /// Trims `raw`, then accepts 1 to 100 characters (Unicode scalar values)
    /// with no control characters.
    pub fn parse(raw: &str) -> Result<WorkspaceName, &'static str> {
        let name = raw.trim();
        if name.is_empty() {
            return Err("must not be empty");
        }
        if name.chars().nth(MAX_CHARS).is_some() {
            return Err("must be at most 100 characters");
        }
        if name.chars().any(|c| c.is_control() || is_bidi_override(c)) {
            return Err("must not contain control characters");
        }
        Ok(WorkspaceName(name.to_owned()))
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The name, by value.
    pub fn into_inner(self) -> String {
        self.0
    }
}

/// Bidirectional embeddings, overrides and isolates: they reorder the text
/// that follows them wherever the name is shown (the "Trojan Source" trick).
fn is_bidi_override(c: char) -> bool {
    matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

impl AsRef<str> for WorkspaceName {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for WorkspaceName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_and_trims() {
        let name = WorkspaceName::parse("  My Workspace \n").expect("valid");
        assert_eq!(name.as_str(), "My Workspace");
        assert_eq!(name.to_string(), "My Workspace");
        assert_eq!(name.into_inner(), "My Workspace");
        assert!(WorkspaceName::parse("x").is_ok());
        assert!(WorkspaceName::parse("Équipe « Nord » — 東京 🚀").is_ok());
    }

    #[test]
    fn keeps_inner_spacing_and_case() {
        let name = WorkspaceName::parse("Team  A\u{a0}B").expect("valid");
        assert_eq!(name.as_str(), "Team  A\u{a0}B");
    }

    #[test]
    fn refuses_empty_and_whitespace_only() {
        assert_eq!(WorkspaceName::parse(""), Err("must not be empty"));
        assert_eq!(
            WorkspaceName::parse(" \t\r\n\u{3000}"),
            Err("must not be empty")
        );
    }

    #[test]
    fn counts_multi_byte_characters_as_one_after_trimming() {
        let hundred = "é".repeat(100);
        assert_eq!(
            WorkspaceName::parse(&format!("  {hundred}  ")).map(WorkspaceName::into_inner),
            Ok(hundred.clone())
        );
        assert!(WorkspaceName::parse(&"🚀".repeat(100)).is_ok());
        assert_eq!(
            WorkspaceName::parse(&"é".repeat(101)),
            Err("must be at most 100 characters")
        );
        assert_eq!(
            WorkspaceName::parse(&"🚀".repeat(101)),
            Err("must be at most 100 characters")
        );
        assert!(WorkspaceName::parse(&"x".repeat(100)).is_ok());
        assert!(WorkspaceName::parse(&"x".repeat(101)).is_err());
    }

    #[test]
    fn refuses_control_characters() {
        for raw in [
            "Team\nA",
            "Team\tA",
            "Team\rA",
            "Team\u{0}A",
            "Team\u{1b}[31mA",
            "Team\u{7f}A",
            "Team\u{85}A",
            "Team\u{202e}A",
            "Team\u{2066}A",
        ] {
            assert_eq!(
                WorkspaceName::parse(raw),
                Err("must not contain control characters"),
                "{raw:?}"
            );
        }
    }
}
