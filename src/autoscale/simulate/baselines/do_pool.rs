//! DigitalOcean Droplet Autoscale Pools on CPU, as DigitalOcean documents them: desired =
//! ceil(n × utilization / target) for the n droplets in the pool, with a cooldown of 5 to 20
//! minutes (default 10) between any two changes; no warm pool; a removed droplet gets a 60 s
//! shutdown before it is destroyed (and billed through it). The evaluation interval and the
//! averaging window are not published: they are parameters here (60 s each by default). It
//! sees the pool's mean CPU (here: busy slots over slots), not HAProxy's queue.

use super::{ceil, toward, window_mean, Params};
use crate::autoscale::simulate::engine::{Policy, View};
use crate::autoscale::Action;
use anyhow::Result;

/// The pool's parameters and state.
#[derive(Debug, Clone)]
pub struct DoPool {
    min: u32,
    max: u32,
    /// Target CPU utilization, 0.05–1 (`target`, default 0.7).
    pub target: f64,
    /// Seconds between any two changes, 300–1200 (`cooldown`, default 600).
    pub cooldown: f64,
    /// Seconds between evaluations (`interval`, default 60).
    pub interval: f64,
    /// Seconds of CPU averaged (`window`, default 60).
    pub window: f64,
    /// Seconds a removed droplet is billed for its shutdown (`shutdown`, default 60).
    pub shutdown: f64,
    last_change: f64,
}

impl DoPool {
    /// From `key=value` parameters, between `min` and `max` droplets.
    pub fn new(params: &str, min: u32, max: u32) -> Result<DoPool> {
        let mut p = Params::parse(params)?;
        let d = DoPool {
            min,
            max,
            target: p.get("target", 0.7, |v| (0.05..=1.0).contains(&v))?,
            cooldown: p.get("cooldown", 600.0, |v| (300.0..=1200.0).contains(&v))?,
            interval: p.get("interval", 60.0, |v| (1.0..=600.0).contains(&v))?,
            window: p.get("window", 60.0, |v| (1.0..=3600.0).contains(&v))?,
            shutdown: p.get("shutdown", 60.0, |v| v >= 0.0)?,
            last_change: f64::NEG_INFINITY,
        };
        p.finish()?;
        Ok(d)
    }
}

impl Policy for DoPool {
    fn name(&self) -> String {
        format!("do-pool:target={},cooldown={}", self.target, self.cooldown)
    }

    fn interval(&self) -> f64 {
        self.interval
    }

    fn removal_delay(&self) -> f64 {
        self.shutdown
    }

    fn decide(&mut self, v: &View<'_>) -> Action {
        let Some(util) = window_mean(&v.metrics.utilization, self.window as usize) else {
            return Action::default();
        };
        let n = v.fleet.serving + v.fleet.booting;
        let desired = ceil(f64::from(n) * util / self.target).clamp(self.min, self.max);
        if desired == n || v.now - self.last_change < self.cooldown {
            return Action::default();
        }
        let a = toward(v.fleet, desired);
        if !a.is_none() {
            self.last_change = v.now;
        }
        a
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::{metrics, view};
    use super::*;

    #[test]
    fn proportional_then_cooldown() {
        let mut p = DoPool::new("", 1, 100).unwrap();
        // 4 droplets at 90 % for 70 %: ceil(4 × 0.9 / 0.7) = ceil(5.14) = 6.
        let m = metrics(120, 0.9, 0.0);
        assert_eq!(p.decide(&view(120.0, 4, 0, &[], &m)).create, 2);
        // 599 s later: still cooling down.
        assert!(p.decide(&view(719.0, 6, 0, &[], &m)).is_none());
        // 600 s: 6 at 90 % → ceil(7.71) = 8.
        assert_eq!(p.decide(&view(720.0, 6, 0, &[], &m)).create, 2);
    }

    #[test]
    fn saturation_grows_at_most_1_43x_per_change() {
        // CPU cannot show more than 100 %: 10 at 100 % → ceil(10 / 0.7) = 15, however deep
        // the queue behind them.
        let mut p = DoPool::new("", 1, 100).unwrap();
        let m = metrics(60, 1.0, 0.0);
        assert_eq!(p.decide(&view(60.0, 10, 0, &[], &m)).create, 5);
    }

    #[test]
    fn scale_in_removes_with_a_shutdown() {
        let mut p = DoPool::new("cooldown=300", 1, 100).unwrap();
        // 8 at 35 %: ceil(8 × 0.5) = 4.
        let m = metrics(60, 0.35, 0.0);
        let a = p.decide(&view(60.0, 8, 0, &[], &m));
        assert_eq!((a.park, a.delete), (4, 4));
        assert_eq!(p.removal_delay(), 60.0);
        assert!(DoPool::new("cooldown=60", 1, 100).is_err());
    }
}
