//! Domain types that parse, don't validate: a value that exists is valid, so
//! code past the HTTP edge never re-checks an e-mail, a password or a role.

mod email;
mod password;
mod plan_tier;
mod role;
mod secret;
mod workspace_name;

pub use email::Email;
pub use password::Password;
pub use plan_tier::PlanTier;
pub use role::Role;
pub use secret::Secret;
pub use workspace_name::WorkspaceName;
