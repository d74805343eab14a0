//! Black-box HTTP tests: the real server, a real PostgreSQL, a real client.

mod helpers;
mod seed;
