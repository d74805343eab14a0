//! A member's role in a workspace, and who may manage whom.

use std::cmp::Ordering;
use std::fmt;

use serde::{Deserialize, Serialize};

/// A workspace role; ordered by rank, so `Role::Owner > Role::Viewer`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Everything, including managing admins and owners and deleting the workspace.
    Owner,
    /// Renames, changes the plan, manages operators and viewers.
    Admin,
    /// Works in the workspace; manages no one.
    Operator,
    /// Reads the workspace and its members.
    Viewer,
}

impl Role {
    /// Every role, highest first.
    pub const ALL: [Role; 4] = [Role::Owner, Role::Admin, Role::Operator, Role::Viewer];

    /// Accepts the exact lower-case name of a role.
    pub fn parse(raw: &str) -> Result<Role, &'static str> {
        match raw {
            "owner" => Ok(Role::Owner),
            "admin" => Ok(Role::Admin),
            "operator" => Ok(Role::Operator),
            "viewer" => Ok(Role::Viewer),
            _ => Err("must be one of owner, admin, operator, viewer"),
        }
    }

    /// The name used in JSON, in the database and in tokens.
    pub const fn as_str(self) -> &'static str {
        match self {
            Role::Owner => "owner",
            Role::Admin => "admin",
            Role::Operator => "operator",
            Role::Viewer => "viewer",
        }
    }

    /// Higher is more powerful: viewer 0, operator 1, admin 2, owner 3.
    pub const fn rank(self) -> u8 {
        match self {
            Role::Owner => 3,
            Role::Admin => 2,
            Role::Operator => 1,
            Role::Viewer => 0,
        }
    }

    /// Whether this role meets the minimum `min`.
    pub fn at_least(self, min: Role) -> bool {
        self >= min
    }

    /// Whether a member with this role may add, remove or change the role of a
    /// member holding `target`: admins manage operators and viewers, only
    /// owners manage admins and owners.
    ///
    /// A role change must pass for both the old and the new role; keeping at
    /// least one owner is checked elsewhere.
    pub fn can_manage(self, target: Role) -> bool {
        match target {
            Role::Owner | Role::Admin => self == Role::Owner,
            Role::Operator | Role::Viewer => self.at_least(Role::Admin),
        }
    }
}

impl Ord for Role {
    fn cmp(&self, other: &Self) -> Ordering {
        self.rank().cmp(&other.rank())
    }
}

impl PartialOrd for Role {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Role::{Admin, Operator, Owner, Viewer};

    #[test]
    fn parses_exact_lower_case_names_only() {
        for role in Role::ALL {
            assert_eq!(Role::parse(role.as_str()), Ok(role));
            assert_eq!(role.to_string(), role.as_str());
        }
        for raw in [
            "", "Owner", "ADMIN", " viewer", "viewer ", "root", "member", "owners",
        ] {
            assert_eq!(
                Role::parse(raw),
                Err("must be one of owner, admin, operator, viewer"),
                "{raw:?}"
            );
        }
    }

    #[test]
    fn orders_by_rank_not_declaration() {
        assert!(Owner > Admin);
        assert!(Admin > Operator);
        assert!(Operator > Viewer);
        assert!(Owner > Viewer);
        assert_eq!(Role::ALL.iter().max(), Some(&Owner));
        assert_eq!(Role::ALL.iter().min(), Some(&Viewer));
        let mut sorted = [Viewer, Owner, Operator, Admin];
        sorted.sort();
        assert_eq!(sorted, [Viewer, Operator, Admin, Owner]);
        assert!(Role::ALL.windows(2).all(|w| w[0].rank() > w[1].rank()));
    }

    #[test]
    fn at_least_compares_with_the_minimum() {
        for role in Role::ALL {
            assert!(role.at_least(Viewer));
            assert!(role.at_least(role));
        }
        assert!(Owner.at_least(Admin));
        assert!(Admin.at_least(Admin));
        assert!(!Operator.at_least(Admin));
        assert!(!Viewer.at_least(Operator));
        assert!(!Admin.at_least(Owner));
    }

    #[test]
    fn can_manage_follows_the_contract_table() {
        // Rows: actor; columns: target in Role::ALL order (owner, admin, operator, viewer).
        let expected = [
            (Owner, [true, true, true, true]),
            (Admin, [false, false, true, true]),
            (Operator, [false, false, false, false]),
            (Viewer, [false, false, false, false]),
        ];
        for (actor, row) in expected {
            for (target, allowed) in Role::ALL.into_iter().zip(row) {
                assert_eq!(
                    actor.can_manage(target),
                    allowed,
                    "{actor} managing {target}"
                );
            }
        }
    }

    #[test]
    fn serialises_as_lower_case_strings() {
        assert_eq!(
            serde_json::to_string(&Operator).ok(),
            Some("\"operator\"".to_owned())
        );
        for role in Role::ALL {
            let json = format!("\"{}\"", role.as_str());
            assert_eq!(serde_json::from_str::<Role>(&json).ok(), Some(role));
        }
        assert!(serde_json::from_str::<Role>("\"Owner\"").is_err());
        assert!(serde_json::from_str::<Role>("\"superuser\"").is_err());
        assert!(serde_json::from_str::<Role>("3").is_err());
    }
}
