//! The policies people use today, re-implemented from their documented rules and defaults,
//! each in its own file, each seeing only what its real counterpart sees: DigitalOcean
//! Droplet Autoscale Pools ([`do_pool`]), the Kubernetes Horizontal Pod Autoscaler
//! ([`hpa`]), AWS EC2 Auto Scaling target tracking ([`aws_target`]) and the Knative Pod
//! Autoscaler ([`knative`]). What they share: `key=value` parameters, windowed means of the
//! engine's per-second metrics (a window with a missing second is no data), and turning a
//! desired count into an action on a fleet without a warm pool.

pub mod aws_target;
pub mod do_pool;
pub mod hpa;
pub mod knative;

use crate::autoscale::{Action, Fleet};
use anyhow::{bail, Result};

/// `key=value` parameters of a `--policy NAME:k=v,...` flag; every key must be used.
#[derive(Debug, Default)]
pub struct Params {
    given: Vec<(String, f64)>,
    used: Vec<String>,
}

impl Params {
    /// Parses `k=v,k=v` (the part after `NAME:`).
    pub fn parse(text: &str) -> Result<Params> {
        let mut given = Vec::new();
        for kv in text.split(',').filter(|s| !s.trim().is_empty()) {
            let Some((k, v)) = kv.split_once('=') else {
                bail!("{kv:?} is not key=value");
            };
            let v: f64 = match v.trim().parse() {
                Ok(v) if f64::is_finite(v) => v,
                _ => bail!("{k}={v}: not a number"),
            };
            given.push((k.trim().to_string(), v));
        }
        Ok(Params {
            given,
            used: Vec::new(),
        })
    }

    /// The value of `key`, or `default`; `check` names the allowed range in errors.
    pub fn get(&mut self, key: &str, default: f64, ok: impl Fn(f64) -> bool) -> Result<f64> {
        self.used.push(key.to_string());
        match self.given.iter().rev().find(|(k, _)| k == key) {
            None => Ok(default),
            Some((_, v)) if ok(*v) => Ok(*v),
            Some((_, v)) => bail!("{key}={v} is out of range"),
        }
    }

    /// Fails on a key no `get` asked for, listing the known ones.
    pub fn finish(self) -> Result<()> {
        for (k, _) in &self.given {
            if !self.used.contains(k) {
                bail!("unknown parameter {k:?} (known: {})", self.used.join(", "));
            }
        }
        Ok(())
    }
}

/// The mean of the last `secs` seconds of `series`; `None` when there are fewer or one is
/// missing (`NaN`): no data, no decision.
pub fn window_mean(series: &[f64], secs: usize) -> Option<f64> {
    if secs == 0 || series.is_empty() {
        return None;
    }
    let tail = &series[series.len().saturating_sub(secs)..];
    if tail.iter().any(|v| v.is_nan()) {
        return None;
    }
    Some(tail.iter().sum::<f64>() / tail.len() as f64)
}

/// The action that moves a fleet without a warm pool toward `desired` droplets in all
/// (booting included): create the difference, or remove serving droplets beyond `desired`.
/// Booting droplets cannot be called back: a count too high by them is corrected once they
/// serve.
pub fn toward(fleet: Fleet, desired: u32) -> Action {
    let total = fleet.serving + fleet.booting;
    if desired > total {
        Action {
            create: desired - total,
            ..Action::default()
        }
    } else {
        let remove = fleet.serving.saturating_sub(desired);
        Action {
            park: remove,
            delete: remove,
            ..Action::default()
        }
    }
}

/// ceil() that does not turn 5.000000001 into 6.
pub fn ceil(x: f64) -> u32 {
    (x - 1e-9).ceil().clamp(0.0, f64::from(u32::MAX)) as u32
}

#[cfg(test)]
pub(crate) mod testing {
    //! A hand-made view for the baselines' tests.
    use crate::autoscale::simulate::engine::{Metrics, View};
    use crate::autoscale::{ApiState, Fleet};

    /// Metrics where every second so far had `util` utilization and `conc` concurrency.
    pub fn metrics(secs: usize, util: f64, conc: f64) -> Metrics {
        Metrics {
            utilization: vec![util; secs],
            concurrency: vec![conc; secs],
            rate: vec![conc * 10.0; secs],
        }
    }

    /// Appends `secs` seconds of `util` / `conc`.
    pub fn extend(m: &mut Metrics, secs: usize, util: f64, conc: f64) {
        m.utilization.extend(std::iter::repeat_n(util, secs));
        m.concurrency.extend(std::iter::repeat_n(conc, secs));
        m.rate.extend(std::iter::repeat_n(conc * 10.0, secs));
    }

    /// A view at `now` with `serving` old droplets and `booting` new ones.
    pub fn view<'a>(
        now: f64,
        serving: u32,
        booting: u32,
        since: &'a [f64],
        m: &'a Metrics,
    ) -> View<'a> {
        View {
            now,
            fleet: Fleet {
                serving,
                booting,
                standby: 0,
                draining: 0,
            },
            serving_since: since,
            metrics: m,
            signals: None,
            api: ApiState::Ok,
            droplet_headroom: None,
            hourly_price: 0.01,
            maxconn: 20,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn params_parse_and_refuse_unknown_keys() {
        let mut p = Params::parse("target=0.5,window=60").unwrap();
        assert_eq!(p.get("target", 0.7, |v| v > 0.0).unwrap(), 0.5);
        assert_eq!(p.get("tolerance", 0.1, |_| true).unwrap(), 0.1);
        let e = p.finish().unwrap_err().to_string();
        assert!(
            e.contains("window") && e.contains("target, tolerance"),
            "{e}"
        );
        let mut p = Params::parse("target=-1").unwrap();
        assert!(p.get("target", 0.7, |v| v > 0.0).is_err());
        assert!(Params::parse("target").is_err());
    }

    #[test]
    fn window_means_need_every_second() {
        assert_eq!(window_mean(&[1.0, 2.0, 3.0], 2), Some(2.5));
        assert_eq!(window_mean(&[1.0, f64::NAN, 3.0], 2), None);
        assert_eq!(window_mean(&[], 2), None);
    }

    #[test]
    fn toward_creates_or_removes_serving_only() {
        let f = Fleet {
            serving: 4,
            booting: 2,
            standby: 0,
            draining: 0,
        };
        assert_eq!(toward(f, 9).create, 3);
        assert!(toward(f, 5).is_none());
        assert_eq!((toward(f, 3).park, toward(f, 3).delete), (1, 1));
    }
}
