//! The autoscaler's settings (the `autoscale:` section of doproxy.yml once resolved): bounds,
//! targets, the tolerance band, hot spares, step limits, stabilization windows, the money cap,
//! the staleness limit and the action budget — their defaults and the rules that make a set
//! of them valid. `config.rs` parses the YAML; this module says what the values mean.

use serde::Serialize;
use std::time::Duration;

/// What the autoscaler sizes the serving fleet by. Each target set gives one desired count;
/// the fleet gets the largest of them.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Targets {
    /// In-flight requests per serving server (`sessions_per_server`): desired =
    /// ceil((max(Σ scur, request rate × response time) + qcur × response time / 30 s) /
    /// target): the demand in flight (by Little's law alone while requests queue), plus
    /// (while nothing boots) what drains HAProxy's queue within 30 s. Set it
    /// to about 70 % of what one backend serves at once (its `maxconn` in HAProxy, its
    /// worker count).
    pub sessions_per_server: Option<f64>,
    /// Requests per second per serving server (`requests_per_second_per_server`): desired =
    /// ceil(request rate / target).
    pub requests_per_second_per_server: Option<f64>,
    /// Average queue time in HAProxy's backend, in ms (`queue_time_ms`): above it, desired =
    /// ceil(current × queue time / target), at most twice the current count per tick. Below
    /// it this target asks for nothing, so it can only add servers.
    pub queue_time_ms: Option<f64>,
}

/// The default target when the config names none: 14 in-flight requests per server (70 % of
/// the simulator's default 20 slots per server).
pub const DEFAULT_SESSIONS_PER_SERVER: f64 = 14.0;

impl Default for Targets {
    fn default() -> Self {
        Targets {
            sessions_per_server: Some(DEFAULT_SESSIONS_PER_SERVER),
            requests_per_second_per_server: None,
            queue_time_ms: None,
        }
    }
}

/// The autoscaler's settings. [`Settings::default`] gives every documented default;
/// [`Settings::validate`] says which key of a hand-made set is wrong.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Settings {
    /// The fewest serving droplets, whatever the load (`min`, default 1, at least 1).
    pub min: u32,
    /// The most serving droplets (`max`, default 10). Hot spares come on top.
    pub max: u32,
    /// What to size by (`targets`).
    pub targets: Targets,
    /// No change while every target's usage ratio is within this share of 1 (`tolerance`,
    /// default 0.1 = 10 %).
    pub tolerance: f64,
    /// Hot spares: booted droplets parked in HAProxy, admitted before anything is created
    /// (`standby`, default 0).
    pub standby: u32,
    /// At most this many more serving droplets than the fewest desired within the last
    /// `step_interval` (`step_up`, default 50).
    pub step_up: u32,
    /// At most this many fewer serving droplets than the most desired within the last
    /// `step_interval` (`step_down`, default 50).
    pub step_down: u32,
    /// The interval the step limits count over (`step_interval`, default 60 s).
    pub step_interval: Duration,
    /// Scale-up follows the smallest recommendation over this window (`stabilization_up`,
    /// default 0 s: at once).
    pub stabilization_up: Duration,
    /// Scale-down follows the largest recommendation over this window
    /// (`stabilization_down`, default 300 s).
    pub stabilization_down: Duration,
    /// How often the caller evaluates (`tick`, default 1 s). The controller itself works on
    /// the clock in each snapshot.
    pub tick: Duration,
    /// A sample older than this is stale: no action until a fresh one (`stale_after`,
    /// default 5 s).
    pub stale_after: Duration,
    /// At most this many decisions that create or delete droplets within `action_window`,
    /// however the load moves (`max_actions`, default 60). Admitting a standby and parking a
    /// server (HAProxy only) are not counted.
    pub max_actions: u32,
    /// The window `max_actions` counts over (`action_window`, default 1 h).
    pub action_window: Duration,
    /// Never more droplets (serving, booting, standby and draining together) than this many
    /// dollars an hour buys (`max_hourly_cost`, default none).
    pub max_hourly_cost: Option<f64>,
    /// The droplet size's price in dollars an hour (`hourly_price`). Needed for
    /// `max_hourly_cost` unless the caller supplies the price in each snapshot.
    pub hourly_price: Option<f64>,
    /// No scale-in while 5xx answers are more than this share of requests
    /// (`scale_in_error_ratio`, default 0.01 = 1 %).
    pub scale_in_error_ratio: f64,
    /// How often the live daemon lists the deployment's droplets, its only steady-state API
    /// call (`reconcile_interval`, default 60 s; every 10 s at most while the API fails).
    pub reconcile_interval: Duration,
    /// Where the live daemon serves Prometheus metrics (`metrics_listen`, e.g.
    /// `127.0.0.1:9150`; default none: no listener).
    pub metrics_listen: Option<std::net::SocketAddr>,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            min: 1,
            max: 10,
            targets: Targets::default(),
            tolerance: 0.1,
            standby: 0,
            step_up: 50,
            step_down: 50,
            step_interval: Duration::from_secs(60),
            stabilization_up: Duration::ZERO,
            stabilization_down: Duration::from_secs(300),
            tick: Duration::from_secs(1),
            stale_after: Duration::from_secs(5),
            max_actions: 60,
            action_window: Duration::from_secs(3600),
            max_hourly_cost: None,
            hourly_price: None,
            scale_in_error_ratio: 0.01,
            reconcile_interval: Duration::from_secs(60),
            metrics_listen: None,
        }
    }
}

/// The longest window any setting may name: the controller keeps its history this long.
pub const MAX_WINDOW: Duration = Duration::from_secs(24 * 3600);

impl Settings {
    /// Checks the settings; an error names the key (`min`, `targets.queue_time_ms`, ...) and
    /// what is wrong with it.
    pub fn validate(&self) -> Result<(), (&'static str, String)> {
        fn positive(key: &'static str, v: Option<f64>) -> Result<(), (&'static str, String)> {
            match v {
                Some(x) if !(x.is_finite() && x > 0.0) => {
                    Err((key, format!("must be a number above 0, not {x}")))
                }
                _ => Ok(()),
            }
        }
        if self.min < 1 {
            return Err((
                "min",
                "must be at least 1 (with no server HAProxy answers 503 while one boots)".into(),
            ));
        }
        if self.min > self.max {
            return Err((
                "min",
                format!("must be ≤ max ({} > {})", self.min, self.max),
            ));
        }
        let t = &self.targets;
        if t.sessions_per_server.is_none()
            && t.requests_per_second_per_server.is_none()
            && t.queue_time_ms.is_none()
        {
            return Err(("targets", "name at least one target".into()));
        }
        positive("targets.sessions_per_server", t.sessions_per_server)?;
        positive(
            "targets.requests_per_second_per_server",
            t.requests_per_second_per_server,
        )?;
        positive("targets.queue_time_ms", t.queue_time_ms)?;
        if !(self.tolerance.is_finite() && (0.0..1.0).contains(&self.tolerance)) {
            return Err((
                "tolerance",
                format!("must be at least 0 and below 1, not {}", self.tolerance),
            ));
        }
        if self.step_up < 1 {
            return Err(("step_up", "must be at least 1".into()));
        }
        if self.step_down < 1 {
            return Err(("step_down", "must be at least 1".into()));
        }
        for (key, d) in [
            ("step_interval", self.step_interval),
            ("stabilization_up", self.stabilization_up),
            ("stabilization_down", self.stabilization_down),
            ("action_window", self.action_window),
        ] {
            if d > MAX_WINDOW {
                return Err((key, "must be at most 24h".into()));
            }
        }
        if self.tick.is_zero() || self.tick > Duration::from_secs(60) {
            return Err(("tick", "must be above 0 and at most 60s".into()));
        }
        if self.stale_after < self.tick {
            return Err((
                "stale_after",
                format!(
                    "must be at least tick ({:?} < {:?})",
                    self.stale_after, self.tick
                ),
            ));
        }
        if self.max_actions < 1 {
            return Err(("max_actions", "must be at least 1".into()));
        }
        if self.action_window.is_zero() {
            return Err(("action_window", "must be above 0".into()));
        }
        positive("max_hourly_cost", self.max_hourly_cost)?;
        if self.reconcile_interval < Duration::from_secs(1)
            || self.reconcile_interval > Duration::from_secs(3600)
        {
            return Err((
                "reconcile_interval",
                "must be at least 1s and at most 1h".into(),
            ));
        }
        positive("hourly_price", self.hourly_price)?;
        if let (Some(cap), Some(price)) = (self.max_hourly_cost, self.hourly_price) {
            if cap < price * f64::from(self.min) {
                return Err((
                    "max_hourly_cost",
                    format!(
                        "{cap} $/h cannot pay for min = {} droplets at {price} $/h",
                        self.min
                    ),
                ));
            }
        }
        if !(self.scale_in_error_ratio.is_finite()
            && self.scale_in_error_ratio > 0.0
            && self.scale_in_error_ratio <= 1.0)
        {
            return Err((
                "scale_in_error_ratio",
                format!(
                    "must be above 0 and at most 1, not {}",
                    self.scale_in_error_ratio
                ),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        assert_eq!(Settings::default().validate(), Ok(()));
    }

    #[test]
    fn each_bad_value_names_its_key() {
        type Change = Box<dyn Fn(&mut Settings)>;
        let cases: Vec<(&str, Change)> = vec![
            ("min", Box::new(|s| s.min = 0)),
            ("min", Box::new(|s| s.min = 11)),
            (
                "targets",
                Box::new(|s| s.targets.sessions_per_server = None),
            ),
            (
                "targets.queue_time_ms",
                Box::new(|s| s.targets.queue_time_ms = Some(-1.0)),
            ),
            ("tolerance", Box::new(|s| s.tolerance = 1.0)),
            ("step_up", Box::new(|s| s.step_up = 0)),
            (
                "stale_after",
                Box::new(|s| s.stale_after = Duration::from_millis(10)),
            ),
            ("tick", Box::new(|s| s.tick = Duration::ZERO)),
            (
                "max_hourly_cost",
                Box::new(|s| {
                    s.max_hourly_cost = Some(0.01);
                    s.hourly_price = Some(0.02);
                }),
            ),
            (
                "scale_in_error_ratio",
                Box::new(|s| s.scale_in_error_ratio = 0.0),
            ),
        ];
        for (key, change) in cases {
            let mut s = Settings::default();
            change(&mut s);
            assert_eq!(s.validate().map_err(|e| e.0), Err(key), "{s:?}");
        }
    }
}
