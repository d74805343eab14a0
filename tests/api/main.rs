//! Black-box HTTP tests: the real server, a real PostgreSQL, a real client.

mod actors;
mod auth;
mod cors;
mod eddsa;
mod helpers;
mod limits;
mod logs;
mod ops;
mod rbac;
mod robustness;
mod seed;
mod tls;
mod tokens;
mod workspaces;
