//! Shared vocabulary of meetbot: identifiers, the stored data model, configuration,
//! telemetry set-up and the ops server (`/healthz`, `/readyz`, `/metrics`) every service runs.
//!
//! Nothing in this crate touches a database, a queue or a key: it is the language the other
//! crates speak.

pub mod config;
pub mod ids;
pub mod model;
pub mod ops;
pub mod telemetry;

pub use ids::{IdError, TenantId};
