//! Auth service library (crate doc is filled in as modules land).
pub mod db;
pub mod domain;
