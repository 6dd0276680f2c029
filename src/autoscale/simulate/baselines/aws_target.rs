//! AWS EC2 Auto Scaling target tracking, as AWS documents it: keep the group's average CPU
//! (and optionally the ALB request count per target) at a target; 1-minute metrics; the
//! alarms it creates fire after 3 high datapoints (scale out) or 15 low ones (scale in, below
//! the target by a margin: our estimate, 10 %); scale out if any policy says so, in only if
//! all agree; instances in their warm-up (default 300 s) are left out of the metric but their
//! capacity counts, and there is no scale-in while any warm; a 300 s cooldown after a
//! scale-in; no action on missing data (INSUFFICIENT_DATA).

use super::{ceil, toward, window_mean, Params};
use crate::autoscale::simulate::engine::{Policy, View};
use crate::autoscale::Action;
use anyhow::Result;
use std::collections::VecDeque;

/// Target tracking's parameters and state.
#[derive(Debug, Clone)]
pub struct AwsTarget {
    min: u32,
    max: u32,
    /// Target CPU utilization, 0–1 (`target`, default 0.7).
    pub target: f64,
    /// ALB requests per target per minute (`requests`, default 0: no second policy).
    pub requests: f64,
    /// Seconds after a scaling activity before a scale-in (`cooldown`, default 300).
    pub cooldown: f64,
    /// Seconds a new instance is left out of the metric (`warmup`, default 300).
    pub warmup: f64,
    /// The metric period, s (`period`, default 60).
    pub period: f64,
    /// High datapoints before a scale-out (`out_points`, default 3).
    pub out_points: usize,
    /// Low datapoints before a scale-in (`in_points`, default 15).
    pub in_points: usize,
    /// How far below the target a datapoint is low (`in_margin`, default 0.1).
    pub in_margin: f64,
    cpu: VecDeque<f64>,
    req: VecDeque<f64>,
    last_activity: f64,
}

impl AwsTarget {
    /// From `key=value` parameters, between `min` and `max` instances.
    pub fn new(params: &str, min: u32, max: u32) -> Result<AwsTarget> {
        let mut p = Params::parse(params)?;
        let a = AwsTarget {
            min,
            max,
            target: p.get("target", 0.7, |v| v > 0.0 && v <= 1.0)?,
            requests: p.get("requests", 0.0, |v| v >= 0.0)?,
            cooldown: p.get("cooldown", 300.0, |v| v >= 0.0)?,
            warmup: p.get("warmup", 300.0, |v| v >= 0.0)?,
            period: p.get("period", 60.0, |v| v == 10.0 || v == 60.0)?,
            out_points: p.get("out_points", 3.0, |v| (1.0..=60.0).contains(&v))? as usize,
            in_points: p.get("in_points", 15.0, |v| (1.0..=60.0).contains(&v))? as usize,
            in_margin: p.get("in_margin", 0.1, |v| (0.0..1.0).contains(&v))?,
            cpu: VecDeque::new(),
            req: VecDeque::new(),
            last_activity: f64::NEG_INFINITY,
        };
        p.finish()?;
        Ok(a)
    }
}

impl Policy for AwsTarget {
    fn name(&self) -> String {
        if self.requests > 0.0 {
            format!(
                "aws-target:target={},requests={}",
                self.target, self.requests
            )
        } else {
            format!("aws-target:target={},warmup={}", self.target, self.warmup)
        }
    }

    fn interval(&self) -> f64 {
        self.period
    }

    fn decide(&mut self, v: &View<'_>) -> Action {
        let now = v.now;
        let f = v.fleet;
        let warm = v
            .serving_since
            .iter()
            .filter(|s| now - **s >= self.warmup)
            .count() as u32;
        let warming = f.serving - warm.min(f.serving) + f.booting;
        let secs = self.period as usize;
        let cpu = window_mean(&v.metrics.utilization, secs);
        let rate = window_mean(&v.metrics.rate, secs);
        let (Some(cpu), Some(rate)) = (cpu, rate) else {
            // INSUFFICIENT_DATA: no action; the alarms' datapoints restart.
            self.cpu.clear();
            self.req.clear();
            return Action::default();
        };
        if warm == 0 {
            return Action::default();
        }
        // Requests per in-service instance per minute.
        let per_target = rate * 60.0 / f64::from(f.serving.max(1));
        let keep = self.out_points.max(self.in_points);
        self.cpu.push_back(cpu);
        self.req.push_back(per_target);
        while self.cpu.len() > keep {
            self.cpu.pop_front();
            self.req.pop_front();
        }
        let measured = f64::from(warm);
        let current = f.serving + f.booting;
        let mut policies = vec![(&self.cpu, self.target)];
        if self.requests > 0.0 {
            policies.push((&self.req, self.requests));
        }
        let last = |q: &VecDeque<f64>, n: usize| -> Option<Vec<f64>> {
            (q.len() >= n).then(|| q.iter().rev().take(n).copied().collect())
        };
        let mut out = None;
        let mut all_low = true;
        let mut in_desired = 0u32;
        for (q, target) in &policies {
            let latest = q.back().copied().unwrap_or(0.0);
            let desired = ceil(measured * latest / target);
            if last(q, self.out_points).is_some_and(|p| p.iter().all(|x| x > target)) {
                out = Some(out.unwrap_or(0).max(desired));
            }
            let low = last(q, self.in_points)
                .is_some_and(|p| p.iter().all(|x| *x < target * (1.0 - self.in_margin)));
            all_low &= low;
            in_desired = in_desired.max(desired);
        }
        if let Some(d) = out {
            // Warming capacity counts as current capacity.
            let d = d.clamp(self.min, self.max);
            if d > current {
                self.last_activity = now;
                return toward(f, d);
            }
            return Action::default();
        }
        if all_low && warming == 0 && now - self.last_activity >= self.cooldown {
            let d = in_desired.clamp(self.min, self.max);
            if d < current {
                self.last_activity = now;
                self.cpu.clear();
                self.req.clear();
                return toward(f, d);
            }
        }
        Action::default()
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::{extend, metrics, view};
    use super::*;

    #[test]
    fn three_high_minutes_then_out() {
        let mut a = AwsTarget::new("", 1, 100).unwrap();
        let old = [-1000.0; 4];
        let mut m = metrics(60, 0.9, 0.0);
        assert!(a.decide(&view(60.0, 4, 0, &old, &m)).is_none());
        extend(&mut m, 60, 0.9, 0.0);
        assert!(a.decide(&view(120.0, 4, 0, &old, &m)).is_none());
        // Third high minute: ceil(4 × 0.9 / 0.7) = 6 → create 2.
        extend(&mut m, 60, 0.9, 0.0);
        assert_eq!(a.decide(&view(180.0, 4, 0, &old, &m)).create, 2);
        // Still high, but the 2 warming ones count: 6 ≤ 6, nothing.
        extend(&mut m, 60, 0.9, 0.0);
        assert!(a.decide(&view(240.0, 4, 2, &old, &m)).is_none());
    }

    #[test]
    fn fifteen_low_minutes_then_in_only_if_all_agree() {
        let old = [-1000.0; 8];
        // CPU 35 % for 15 minutes: ceil(8 × 0.35 / 0.7) = 4.
        let mut a = AwsTarget::new("", 1, 100).unwrap();
        let mut m = metrics(0, 0.0, 0.0);
        for i in 1..=15 {
            extend(&mut m, 60, 0.35, 0.0);
            let act = a.decide(&view(60.0 * f64::from(i), 8, 0, &old, &m));
            if i < 15 {
                assert!(act.is_none(), "minute {i}");
            } else {
                assert_eq!((act.park, act.delete), (4, 4));
            }
        }
        // With a request policy whose metric is high, CPU alone cannot scale in: 8 servers
        // × 40 req/s (concurrency 4 × 10) → 300 req/min per target against 100.
        let mut a = AwsTarget::new("requests=100", 1, 100).unwrap();
        let mut m = metrics(0, 0.0, 0.0);
        for i in 1..=15 {
            extend(&mut m, 60, 0.35, 4.0);
            let act = a.decide(&view(60.0 * f64::from(i), 8, 0, &old, &m));
            assert!(act.park == 0, "minute {i}: {act:?}");
        }
    }

    #[test]
    fn no_data_no_action() {
        let mut a = AwsTarget::new("out_points=1", 1, 100).unwrap();
        let mut m = metrics(59, 1.0, 0.0);
        extend(&mut m, 1, f64::NAN, 0.0);
        assert!(a.decide(&view(60.0, 4, 0, &[-1000.0; 4], &m)).is_none());
    }
}
