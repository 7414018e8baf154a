//! Services with state of their own, below the adapters: each one folder
//! (or file) with its rules, its storage and the service every adapter and
//! every live stream calls.
//!
//! - [`permissions`]: who may read what, asked before every delivery.
//! - [`sessions`]: the live sessions (websockets) and what ends them.

pub mod permissions;
pub mod sessions;
