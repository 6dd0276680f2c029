//! The Knative Pod Autoscaler (KPA), as knative/serving documents and implements it: every
//! 2 s, desired = ceil(observed concurrency / target), the target being 70 % of the
//! container concurrency (here: the server's `maxconn` slots); the concurrency is averaged
//! over a 60 s stable window and a 6 s panic window; when the panic window asks for 200 % of
//! the ready pods or more, it panics: follows the panic window and never scales down until
//! 60 s have passed without that; scale-up at most 1000× and scale-down at most 2× per tick.
//! It sees the requests in the system (in service and queued), as its queue-proxy does.

use super::{ceil, toward, window_mean, Params};
use crate::autoscale::simulate::engine::{Policy, View};
use crate::autoscale::Action;
use anyhow::Result;

/// KPA's parameters and state.
#[derive(Debug, Clone)]
pub struct Knative {
    min: u32,
    max: u32,
    /// Target share of the container concurrency, 0–1 (`target`, default 0.7).
    pub target: f64,
    /// Tick, s (`tick`, default 2).
    pub tick: f64,
    /// Stable window, s (`stable`, default 60).
    pub stable: f64,
    /// Panic window, s (`panic`, default 6).
    pub panic: f64,
    /// Panic when the panic window asks for this many times the ready pods
    /// (`panic_threshold`, default 2.0).
    pub panic_threshold: f64,
    /// Most scale-up per tick, × ready pods (`max_up`, default 1000).
    pub max_up: f64,
    /// Most scale-down per tick, ÷ ready pods (`max_down`, default 2).
    pub max_down: f64,
    panic_since: Option<f64>,
    max_panic_pods: u32,
}

impl Knative {
    /// From `key=value` parameters, between `min` and `max` pods.
    pub fn new(params: &str, min: u32, max: u32) -> Result<Knative> {
        let mut p = Params::parse(params)?;
        let k = Knative {
            min,
            max,
            target: p.get("target", 0.7, |v| v > 0.0 && v <= 1.0)?,
            tick: p.get("tick", 2.0, |v| (1.0..=60.0).contains(&v))?,
            stable: p.get("stable", 60.0, |v| (6.0..=3600.0).contains(&v))?,
            panic: p.get("panic", 6.0, |v| (1.0..=3600.0).contains(&v))?,
            panic_threshold: p.get("panic_threshold", 2.0, |v| v > 1.0)?,
            max_up: p.get("max_up", 1000.0, |v| v > 1.0)?,
            max_down: p.get("max_down", 2.0, |v| v > 1.0)?,
            panic_since: None,
            max_panic_pods: 0,
        };
        p.finish()?;
        Ok(k)
    }
}

impl Policy for Knative {
    fn name(&self) -> String {
        format!("knative:target={},stable={}", self.target, self.stable)
    }

    fn interval(&self) -> f64 {
        self.tick
    }

    fn decide(&mut self, v: &View<'_>) -> Action {
        let c = &v.metrics.concurrency;
        let (Some(stable), Some(panic)) = (
            window_mean(c, self.stable as usize),
            window_mean(c, self.panic as usize),
        ) else {
            return Action::default();
        };
        let per_pod = self.target * f64::from(v.maxconn);
        let ready = v.fleet.serving.max(1);
        let max_up = (self.max_up * f64::from(ready)).ceil() as u32;
        let max_down = (f64::from(ready) / self.max_down).floor() as u32;
        let dspc = ceil(stable / per_pod).clamp(max_down, max_up);
        let dppc = ceil(panic / per_pod).clamp(max_down, max_up);
        let over = f64::from(dppc) / f64::from(ready) >= self.panic_threshold;
        let now = v.now;
        if over {
            self.panic_since = Some(now);
        } else if self.panic_since.is_some_and(|t| now - t >= self.stable) {
            self.panic_since = None;
            self.max_panic_pods = 0;
        }
        let desired = if self.panic_since.is_some() {
            // In panic: follow the panic window, never down.
            self.max_panic_pods = self.max_panic_pods.max(dppc);
            self.max_panic_pods
        } else {
            dspc
        };
        toward(v.fleet, desired.clamp(self.min, self.max))
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::{extend, metrics, view};
    use super::*;

    fn kpa() -> Knative {
        Knative::new("", 1, 100).unwrap()
    }

    #[test]
    fn stable_window_sizes_by_concurrency() {
        // Target 0.7 × 20 = 14 per pod; 56 in flight on 4 → 4, steady.
        let m = metrics(60, 0.5, 56.0);
        assert!(kpa().decide(&view(60.0, 4, 0, &[], &m)).is_none());
        // 84 → ceil(6) = 6.
        let m = metrics(60, 0.5, 84.0);
        assert_eq!(kpa().decide(&view(60.0, 4, 0, &[], &m)).create, 2);
    }

    #[test]
    fn panics_at_twice_the_pods_and_does_not_scale_down_in_panic() {
        let mut k = kpa();
        // Stable 56, then 6 s at 120: panic window ceil(120/14) = 9 ≥ 2 × 4 → panic → 9.
        let mut m = metrics(54, 0.5, 56.0);
        extend(&mut m, 6, 1.0, 120.0);
        assert_eq!(k.decide(&view(60.0, 4, 0, &[], &m)).create, 5);
        // The load drops to 28 (2 pods' worth) but panic holds 9 for 60 s.
        extend(&mut m, 10, 0.2, 28.0);
        assert!(k.decide(&view(70.0, 9, 0, &[], &m)).is_none());
        extend(&mut m, 60, 0.2, 28.0);
        // 60 s after the last over-threshold tick: stable window 28 → 2, but at most ÷2
        // per tick: floor(9 / 2) = 4.
        let a = k.decide(&view(130.0, 9, 0, &[], &m));
        assert_eq!((a.park, a.delete), (5, 5));
    }

    #[test]
    fn scale_down_is_at_most_halving() {
        // 10 ready, 14 in flight → 1, but floor(10 / 2) = 5.
        let m = metrics(60, 0.1, 14.0);
        let a = kpa().decide(&view(60.0, 10, 0, &[], &m));
        assert_eq!(a.park, 5);
    }
}
