//! Autoscaling: the policy that sizes the backend fleet from HAProxy's signals
//! ([`Controller`]), its settings ([`Settings`], the `autoscale:` section), and its proving
//! ground: a trace-driven simulator that replays a day of traffic in a second against
//! doproxy's policy and re-implementations of the policies people use today
//! (`doproxy autoscale simulate`), the traces it ships (`traces`) and a recorder that turns a
//! live load balancer's stats socket into a trace (`record`).
//!
//! The live daemon (`doproxy autoscale` with no subcommand, in `commands::autoscaler`)
//! calls [`Controller::tick`] once per [`Settings::tick`] with a [`Snapshot`] built by
//! [`live`] from the stats socket, the store's journal and the API's state, and carries out
//! the [`Decision`]'s [`Action`].

pub mod live;
pub mod policy;
pub mod record;
pub mod settings;
pub mod simulate;

pub use policy::{Action, ApiState, Controller, Decision, Fleet, Limit, Reason, Signals, Snapshot};
pub use settings::{Settings, Targets};
