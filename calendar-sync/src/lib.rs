//! Calendar sync.
//!
//! Built so far: normalisation of Google Calendar and Microsoft Graph payloads into one event
//! model ([`normalize`]), meeting-link extraction ([`links`]) and per-user auto-join rules
//! ([`rules`]). OAuth, incremental sync, push channels and polling are not built yet.

pub mod links;
pub mod normalize;
pub mod rules;

pub use normalize::{NormalizedEvent, ParseError, parse_payload};
