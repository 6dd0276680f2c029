//! doproxy: create and delete DigitalOcean backend droplets and keep them behind HAProxy.
//!
//! The library holds everything; `main.rs` only calls [`cli::main`]. Data flows one way:
//! `cli` → `commands` → `fleet` / `store` / `digitalocean` / `haproxy` → `output`. Integration
//! tests drive the real binary, unit tests sit beside each module.

pub mod autoscale;
pub mod cli;
pub mod commands;
pub mod config;
pub mod digitalocean;
pub mod duration;
pub mod error;
pub mod fleet;
pub mod fsutil;
pub mod haproxy;
pub mod inventory;
pub mod lock;
pub mod metadata;
pub mod output;
pub mod secret;
pub mod store;
pub mod trust;

pub use error::{usage_error, UsageError};
