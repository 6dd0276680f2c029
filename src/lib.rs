//! doproxy: create and delete DigitalOcean backend droplets and keep them behind HAProxy.
//!
//! The library holds everything; `main.rs` only calls [`cli::main`]. Integration tests drive
//! the real binary, unit tests sit beside each module.

pub mod cli;
pub mod commands;
pub mod config;
pub mod diff;
pub mod digitalocean;
pub mod duration;
pub mod fsutil;
pub mod haproxy;
pub mod inventory;
pub mod metadata;
pub mod output;
pub mod store;

/// An error that means "the invocation or the configuration is wrong" (exit code 2).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

/// Shorthand for returning a [`UsageError`] wrapped in `anyhow`.
pub fn usage_error(msg: impl Into<String>) -> anyhow::Error {
    anyhow::Error::new(UsageError(msg.into()))
}
