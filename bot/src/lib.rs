//! Bots: the [`launcher::BotLauncher`] seam with its Kubernetes and local-process implementations,
//! and the launch consumer that turns claimed bot jobs into running bots ([`consumer`]).

pub mod audio_frame;
pub mod audio_stream;
pub mod browser;
pub mod connector;
pub mod consumer;
pub mod control;
pub mod janus;
pub mod kubernetes;
pub mod launcher;
pub mod local;
pub mod room;
pub mod session;
pub mod ticket;

pub use launcher::{BotLauncher, BotRun, LaunchError, LaunchSpec};
