//! An authentication and authorization service: users register and log in,
//! get JWT access tokens and rotating refresh tokens, and belong to
//! workspaces with roles; other services validate tokens through it.
//!
//! # Layout
//!
//! - [`config`]: every setting, from the environment, validated once.
//! - [`startup`]: [`startup::Application::build`] wires database, actors
//!   and listener; `port()` for tests.
//! - [`http`]: the hyper front end: accept loop, router, body limits, one
//!   file per resource. The only module that knows about hyper.
//! - [`actors`]: the ractor supervisor and its children: the Argon2 hashing
//!   pool and the token key holder.
//! - [`domain`]: newtypes that parse: `Email`, `Password`, `Role`, `PlanTier`.
//! - [`db`]: the pool, the migration runner, queries per table, and the
//!   local PostgreSQL used when no `DATABASE_URL` is given.
//! - [`accounts`]: account-wide changes: ending sessions, deactivation.
//! - [`audit`]: the append-only log of security events.
//! - [`state`]: what every handler shares.
//! - [`changefeed`]: LISTEN/NOTIFY between instances, keeping caches honest.
//! - [`ratelimit`]: per-address token buckets and the client address.
//! - [`revocation`]: the revoked-session set each validation consults.
//! - [`error`]: the one error type and its rendering.
//!
//! A request flows one way: `http` parses → `actors`/`domain` decide →
//! `db` stores → `http` renders.

pub mod accounts;
pub mod actors;
pub mod audit;
pub mod changefeed;
pub mod config;
pub mod db;
pub mod domain;
pub mod error;
pub mod http;
pub mod metrics;
pub mod ratelimit;
pub mod revocation;
pub mod startup;
pub mod state;
pub mod telemetry;
