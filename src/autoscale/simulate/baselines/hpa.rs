//! The Kubernetes Horizontal Pod Autoscaler on CPU utilization, as kubernetes.io documents
//! it: every 15 s, desired = ceil(ready × utilization / target); no change while the ratio is
//! within 10 % of 1; pods not ready yet count as 0 % when scaling up (and the scale-up is
//! dropped if that reverses it); scale-down follows the largest recommendation of the last
//! 300 s; scale-up at most the larger of +100 % and +4 pods per 15 s. It sees the mean CPU of
//! the ready pods over the metrics window (here: busy slots over slots), not the queue.

use super::{ceil, toward, window_mean, Params};
use crate::autoscale::simulate::engine::{Policy, View};
use crate::autoscale::Action;
use anyhow::Result;
use std::collections::VecDeque;

/// HPA's parameters and state.
#[derive(Debug, Clone)]
pub struct Hpa {
    min: u32,
    max: u32,
    /// Target utilization, 0–1 (`target`, default 0.7).
    pub target: f64,
    /// Tolerance (`tolerance`, default 0.1).
    pub tolerance: f64,
    /// Scale-down stabilization window, s (`window`, default 300).
    pub window: f64,
    /// Scale-up stabilization window, s (`up_window`, default 0).
    pub up_window: f64,
    /// Sync period, s (`period`, default 15).
    pub period: f64,
    /// The metrics window, s (`metric_window`, default 15: metrics-server's resolution).
    pub metric_window: f64,
    /// Scale-up policy: percent per `up_period` (`up_percent`, default 100).
    pub up_percent: f64,
    /// Scale-up policy: pods per `up_period` (`up_pods`, default 4).
    pub up_pods: f64,
    /// The scale-up policies' period, s (`up_period`, default 15).
    pub up_period: f64,
    recs: VecDeque<(f64, u32)>,
    ups: VecDeque<(f64, u32)>,
}

impl Hpa {
    /// From `key=value` parameters, between `min` and `max` replicas.
    pub fn new(params: &str, min: u32, max: u32) -> Result<Hpa> {
        let mut p = Params::parse(params)?;
        let h = Hpa {
            min,
            max,
            target: p.get("target", 0.7, |v| v > 0.0 && v <= 1.0)?,
            tolerance: p.get("tolerance", 0.1, |v| (0.0..1.0).contains(&v))?,
            window: p.get("window", 300.0, |v| (0.0..=3600.0).contains(&v))?,
            up_window: p.get("up_window", 0.0, |v| (0.0..=3600.0).contains(&v))?,
            period: p.get("period", 15.0, |v| (1.0..=600.0).contains(&v))?,
            metric_window: p.get("metric_window", 15.0, |v| (1.0..=600.0).contains(&v))?,
            up_percent: p.get("up_percent", 100.0, |v| v >= 0.0)?,
            up_pods: p.get("up_pods", 4.0, |v| v >= 0.0)?,
            up_period: p.get("up_period", 15.0, |v| v >= 1.0)?,
            recs: VecDeque::new(),
            ups: VecDeque::new(),
        };
        p.finish()?;
        Ok(h)
    }

    /// The recommendation for `ready` pods at `util` with `unready` pods not ready yet.
    fn recommend(&self, ready: u32, unready: u32, util: f64) -> Option<u32> {
        let current = ready + unready;
        let ratio = util / self.target;
        if (ratio - 1.0).abs() <= self.tolerance {
            return None;
        }
        if ratio > 1.0 && unready > 0 {
            // Not-ready pods count as 0 % when scaling up.
            let all = f64::from(ready + unready);
            let rebalanced = util * f64::from(ready) / (self.target * all);
            if rebalanced <= 1.0 || (rebalanced - 1.0).abs() <= self.tolerance {
                return None;
            }
            return Some(ceil(rebalanced * all).max(current));
        }
        Some(ceil(ratio * f64::from(ready)))
    }
}

impl Policy for Hpa {
    fn name(&self) -> String {
        format!(
            "hpa:target={},window={},period={}",
            self.target, self.window, self.period
        )
    }

    fn interval(&self) -> f64 {
        self.period
    }

    fn decide(&mut self, v: &View<'_>) -> Action {
        let now = v.now;
        let f = v.fleet;
        let current = f.serving + f.booting;
        // A failed metrics fetch: no scaling.
        let Some(util) = window_mean(&v.metrics.utilization, self.metric_window as usize) else {
            return Action::default();
        };
        let rec = self
            .recommend(f.serving, f.booting, util)
            .unwrap_or(current)
            .clamp(self.min, self.max);
        self.recs.push_back((now, rec));
        let keep = self.window.max(self.up_window);
        while self
            .recs
            .front()
            .is_some_and(|(t, _)| now - t >= keep.max(1e-9))
        {
            self.recs.pop_front();
        }
        let up = self
            .recs
            .iter()
            .filter(|(t, _)| now - t < self.up_window.max(1e-9))
            .map(|r| r.1)
            .min()
            .unwrap_or(rec);
        let down = self
            .recs
            .iter()
            .filter(|(t, _)| now - t < self.window.max(1e-9))
            .map(|r| r.1)
            .max()
            .unwrap_or(rec);
        let mut desired = current;
        if desired < up {
            desired = up;
        }
        if desired > down {
            desired = down;
        }
        // Scale-up policies: the larger of +up_percent % and +up_pods over up_period,
        // counted from the replicas at the period's start.
        while self
            .ups
            .front()
            .is_some_and(|(t, _)| now - t >= self.up_period)
        {
            self.ups.pop_front();
        }
        let added: u32 = self.ups.iter().map(|u| u.1).sum();
        let start = f64::from(current.saturating_sub(added));
        let limit = (start * (1.0 + self.up_percent / 100.0))
            .ceil()
            .max(start + self.up_pods) as u32;
        desired = desired.min(limit.max(current)).clamp(self.min, self.max);
        if desired > current {
            self.ups.push_back((now, desired - current));
        }
        toward(f, desired)
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::{extend, metrics, view};
    use super::*;

    fn hpa() -> Hpa {
        Hpa::new("", 1, 100).unwrap()
    }

    #[test]
    fn proportional_with_tolerance() {
        // 4 ready at 90 % for a 70 % target: ceil(4 × 0.9 / 0.7) = ceil(5.14) = 6.
        let m = metrics(60, 0.9, 0.0);
        assert_eq!(hpa().decide(&view(60.0, 4, 0, &[], &m)).create, 2);
        // 75 %: ratio 1.07 is within 10 %.
        let m = metrics(60, 0.75, 0.0);
        assert!(hpa().decide(&view(60.0, 4, 0, &[], &m)).is_none());
    }

    #[test]
    fn unready_pods_count_as_idle_when_scaling_up() {
        // 2 ready at 90 % + 2 booting: 0.9 × 2 / (0.7 × 4) = 0.64 → no scale-up.
        let m = metrics(60, 0.9, 0.0);
        assert!(hpa().decide(&view(60.0, 2, 2, &[], &m)).is_none());
        // 2 ready at 100 % + 1 booting for a 30 % target: 1.0 × 2 / (0.3 × 3) = 2.22 →
        // ceil(2.22 × 3) = 7 → create 4 (limit max(2 × 3, 3 + 4) = 7).
        let mut h = Hpa::new("target=0.3", 1, 100).unwrap();
        assert_eq!(
            h.decide(&view(60.0, 2, 1, &[], &metrics(60, 1.0, 0.0)))
                .create,
            4
        );
    }

    #[test]
    fn scale_up_is_limited_per_period() {
        // 2 ready at 100 % for a 10 % target: ceil(2 × 10) = 20; limit max(2 × 2, 2 + 4) = 6.
        let mut h = Hpa::new("target=0.1", 1, 100).unwrap();
        let m = metrics(60, 1.0, 0.0);
        assert_eq!(h.decide(&view(60.0, 2, 0, &[], &m)).create, 4);
        // 15 s later: 6 ready, limit max(12, 10) = 12 → create 6.
        assert_eq!(h.decide(&view(75.0, 6, 0, &[], &m)).create, 6);
    }

    #[test]
    fn scale_down_waits_300_s() {
        let mut h = hpa();
        let mut m = metrics(15, 0.7, 0.0);
        assert!(h.decide(&view(15.0, 10, 0, &[], &m)).is_none());
        // 35 %: ceil(10 × 0.5) = 5, held while t=15's 10 is in the window.
        extend(&mut m, 15, 0.35, 0.0);
        assert!(h.decide(&view(30.0, 10, 0, &[], &m)).is_none());
        extend(&mut m, 270, 0.35, 0.0);
        assert!(h.decide(&view(300.0, 10, 0, &[], &m)).is_none());
        // At t = 315 the 10 from t = 15 is 300 s old: out of the window.
        extend(&mut m, 15, 0.35, 0.0);
        let a = h.decide(&view(315.0, 10, 0, &[], &m));
        assert_eq!((a.park, a.delete), (5, 5));
    }

    #[test]
    fn no_metrics_no_scaling() {
        let mut m = metrics(60, 1.0, 0.0);
        extend(&mut m, 1, f64::NAN, 0.0);
        assert!(hpa().decide(&view(61.0, 2, 0, &[], &m)).is_none());
    }
}
