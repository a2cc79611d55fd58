//! Calendar sync.
//!
//! Built so far: normalisation of Google Calendar and Microsoft Graph payloads into one event
//! model ([`normalize`]), meeting-link extraction ([`links`]), per-user auto-join rules
//! ([`rules`]) and applying events to the tenant store for the scheduler ([`apply`]).
//! Microsoft Graph `calendarView/delta` sync rounds ([`graph`], [`sync`]).
//! OAuth, the Google client, push channels and polling are not built yet.

pub mod apply;
pub mod graph;
pub mod links;
pub mod normalize;
pub mod rules;
pub mod sync;

pub use normalize::{NormalizedEvent, ParseError, parse_payload};
