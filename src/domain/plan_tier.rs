//! A workspace's billing plan.

use std::fmt;

use serde::{Deserialize, Serialize};

/// A workspace's plan; `free` unless the client asks for another.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PlanTier {
    /// The default plan.
    #[default]
    Free,
    /// The paid plan.
    Pro,
    /// The plan negotiated per customer.
    Enterprise,
}

impl PlanTier {
    /// Accepts the exact lower-case name of a plan.
    pub fn parse(raw: &str) -> Result<PlanTier, &'static str> {
        match raw {
            "free" => Ok(PlanTier::Free),
            "pro" => Ok(PlanTier::Pro),
            "enterprise" => Ok(PlanTier::Enterprise),
            _ => Err("must be one of free, pro, enterprise"),
        }
    }

    /// The name used in JSON and in the database.
    pub const fn as_str(self) -> &'static str {
        match self {
            PlanTier::Free => "free",
            PlanTier::Pro => "pro",
            PlanTier::Enterprise => "enterprise",
        }
    }
}

impl fmt::Display for PlanTier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: [PlanTier; 3] = [PlanTier::Free, PlanTier::Pro, PlanTier::Enterprise];

    #[test]
    fn parses_exact_lower_case_names_only() {
        for tier in ALL {
            assert_eq!(PlanTier::parse(tier.as_str()), Ok(tier));
            assert_eq!(tier.to_string(), tier.as_str());
        }
        for raw in ["", "Free", "PRO", " pro", "pro ", "premium", "enterprises"] {
            assert_eq!(
                PlanTier::parse(raw),
                Err("must be one of free, pro, enterprise"),
                "{raw:?}"
            );
        }
    }

    #[test]
    fn defaults_to_free() {
        assert_eq!(PlanTier::default(), PlanTier::Free);
    }

    #[test]
    fn serialises_as_lower_case_strings() {
        assert_eq!(
            serde_json::to_string(&PlanTier::Enterprise).ok(),
            Some("\"enterprise\"".to_owned())
        );
        for tier in ALL {
            let json = format!("\"{}\"", tier.as_str());
            assert_eq!(serde_json::from_str::<PlanTier>(&json).ok(), Some(tier));
        }
        assert!(serde_json::from_str::<PlanTier>("\"Pro\"").is_err());
        assert!(serde_json::from_str::<PlanTier>("\"gold\"").is_err());
    }
}
