//! doproxy's integration tests: one test binary (one link step) driving the real `doproxy`
//! executable against do-sim and, where a test needs it, a real HAProxy on 127.0.0.1.

// Test code: a failed unwrap is a failed test, with its message.
#![allow(clippy::unwrap_used)]
// Test output (FIGURES lines, diagnostics) is not doproxy's output: the stdout rule is for src/.
#![allow(clippy::disallowed_macros)]

mod support;

mod autoscale;
mod autoscaler;
mod autoscaler_cluster;
mod bite;
mod blast;
mod client;
mod cluster;
mod commands;
mod errors;
mod etcd;
mod faults;
mod fleet;
mod golden;
mod hostile;
mod hygiene;
mod matrix;
mod operator;
mod ordering;
mod polling;
mod readme;
mod secrets;
mod status;
mod waiting;
mod walkthrough;
