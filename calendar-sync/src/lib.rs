//! Calendar sync.
//!
//! Built so far: normalisation of Google Calendar and Microsoft Graph payloads into one event
//! model ([`normalize`]), meeting-link extraction ([`links`]), per-user auto-join rules
//! ([`rules`]) and applying events to the tenant store for the scheduler ([`apply`]).
//! Microsoft Graph `calendarView/delta` sync rounds ([`graph`], [`sync`]), change-notification
//! subscriptions with their webhook ([`webhook`]) and the worker that renews them, reacts to
//! notifications and polls as a fallback ([`worker`]). Google Calendar rounds with syncToken and watch channels ([`google`]). OAuth 2.0 with
//! PKCE for both providers, token refresh and revocation ([`oauth`]).

pub mod apply;
pub mod google;
pub mod graph;
pub mod ics;
pub mod links;
pub mod normalize;
pub mod oauth;
pub mod rules;
pub mod sync;
pub mod tz;
pub mod webhook;
pub mod worker;

pub use normalize::{NormalizedEvent, ParseError, parse_payload};
