//! Business rules, once, for every adapter.
//!
//! GraphQL resolvers, REST handlers and job handlers extract their input, call
//! a function here and map the answer. Nothing in this module knows about
//! HTTP or GraphQL; functions take a database connection and plain values and
//! return [`crate::error::AppResult`].

pub mod auth;
pub mod messages;
pub mod pagination;
pub mod rooms;
pub mod tasks;
pub mod users;

use chrono::{DateTime, SubsecRound, Utc};

/// The current time at the precision every timestamp is stored and shown
/// with (microseconds), so a value read back equals the value written.
pub fn now() -> DateTime<Utc> {
    Utc::now().trunc_subsecs(6)
}
