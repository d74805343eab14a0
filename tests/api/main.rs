//! Black-box HTTP tests: the real server, a real PostgreSQL, a real client.

mod account;
mod actors;
mod audit;
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
mod smtp;
mod tls;
mod tokens;
mod workspaces;
