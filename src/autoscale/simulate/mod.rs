//! The proving ground: replay a trace against doproxy's policy and the baselines in the
//! simulated world of [`engine`], and score each run — SLO-violation minutes (a minute whose
//! p99 queue time is over the threshold, or with any 503), droplet-seconds and their cost
//! (standby and booting droplets included), create/delete actions, the worst queue time,
//! the time to recover after each step up in the load, API calls, actions taken during a
//! blackout, and the peak fleet.
//!
//! doproxy's policy runs through [`Doproxy`], which builds the [`Snapshot`] a live daemon
//! would read from HAProxy's stats socket and hands it to the very [`Controller`] the daemon
//! will use.

pub mod baselines;
pub mod dist;
pub mod engine;
pub mod plot;
pub mod synth;
pub mod trace;

use crate::autoscale::{Action, Controller, Decision, Settings, Snapshot};
use anyhow::{bail, Context, Result};
use baselines::Params;
use engine::{Model, Outcome, Policy, View};
use serde::Serialize;
use std::time::{Duration, Instant};
use trace::Trace;

/// The policies `simulate` knows, in the order it runs them by default.
pub const POLICIES: [&str; 5] = ["doproxy", "do-pool", "hpa", "aws-target", "knative"];

/// doproxy's [`Controller`] as a simulated policy: it sees what the daemon will see (the
/// stats sample, the fleet by role, the API's state, the account's headroom, the price).
#[derive(Debug)]
pub struct Doproxy {
    controller: Controller,
    label: String,
    /// Every (snapshot, decision) pair, when recording.
    pub log: Option<Vec<(Snapshot, Decision)>>,
}

impl Doproxy {
    /// The policy with `settings`; `label` is its name in reports.
    pub fn new(settings: Settings, label: String) -> Doproxy {
        Doproxy {
            controller: Controller::new(settings),
            label,
            log: None,
        }
    }

    /// Keeps every snapshot and decision in [`Doproxy::log`].
    pub fn recording(mut self) -> Doproxy {
        self.log = Some(Vec::new());
        self
    }
}

impl Policy for Doproxy {
    fn name(&self) -> String {
        self.label.clone()
    }

    fn interval(&self) -> f64 {
        self.controller.settings().tick.as_secs_f64()
    }

    fn warm_pool(&self) -> bool {
        true
    }

    fn initial_standby(&self) -> u32 {
        self.controller.settings().standby
    }

    fn decide(&mut self, v: &View<'_>) -> Action {
        let snap = Snapshot {
            now: Duration::from_secs_f64(v.now),
            signals: v.signals,
            fleet: v.fleet,
            api: v.api,
            droplet_headroom: v.droplet_headroom,
            hourly_price: Some(v.hourly_price),
        };
        let d = self.controller.tick(&snap);
        if let Some(log) = &mut self.log {
            log.push((snap, d));
        }
        d.action
    }
}

/// Builds a policy from `NAME` or `NAME:key=value,...`, between `settings.min` and
/// `settings.max`. doproxy's keys override its settings: `standby`, `sessions`, `rps`,
/// `queue_ms`, `tolerance`, `up`, `down` (stabilization windows, s), `step_up`,
/// `step_down`, `max_actions`.
pub fn policy(spec: &str, settings: &Settings) -> Result<Box<dyn Policy>> {
    let (name, params) = spec.split_once(':').unwrap_or((spec, ""));
    let (min, max) = (settings.min, settings.max);
    let p: Box<dyn Policy> = match name {
        "doproxy" => {
            let mut st = settings.clone();
            let mut p = Params::parse(params)?;
            let any = |v: f64| v >= 0.0;
            st.standby = p.get("standby", f64::from(st.standby), any)? as u32;
            if let Some(v) = opt(&mut p, "sessions")? {
                st.targets.sessions_per_server = Some(v);
            }
            if let Some(v) = opt(&mut p, "rps")? {
                st.targets.requests_per_second_per_server = Some(v);
            }
            if let Some(v) = opt(&mut p, "queue_ms")? {
                st.targets.queue_time_ms = Some(v);
            }
            st.tolerance = p.get("tolerance", st.tolerance, any)?;
            st.stabilization_up = secs(p.get("up", st.stabilization_up.as_secs_f64(), any)?);
            st.stabilization_down =
                secs(p.get("down", st.stabilization_down.as_secs_f64(), any)?);
            st.step_up = p.get("step_up", f64::from(st.step_up), any)? as u32;
            st.step_down = p.get("step_down", f64::from(st.step_down), any)? as u32;
            st.max_actions = p.get("max_actions", f64::from(st.max_actions), any)? as u32;
            p.finish()?;
            st.validate()
                .map_err(|(k, m)| anyhow::anyhow!("doproxy policy: {k}: {m}"))?;
            Box::new(Doproxy::new(st, spec.to_string()))
        }
        "do-pool" => Box::new(baselines::do_pool::DoPool::new(params, min, max)?),
        "hpa" => Box::new(baselines::hpa::Hpa::new(params, min, max)?),
        "aws-target" => Box::new(baselines::aws_target::AwsTarget::new(params, min, max)?),
        "knative" => Box::new(baselines::knative::Knative::new(params, min, max)?),
        other => bail!("unknown policy {other:?} (known: {})", POLICIES.join(", ")),
    };
    Ok(p)
}

fn opt(p: &mut Params, key: &str) -> Result<Option<f64>> {
    let v = p.get(key, f64::NAN, |v| v > 0.0)?;
    Ok((!v.is_nan()).then_some(v))
}

fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(s.clamp(0.0, 86_400.0))
}

/// One policy's scores on one trace.
#[derive(Debug, Clone, Serialize)]
pub struct Score {
    /// The policy, with its parameters.
    pub policy: String,
    /// Minutes whose p99 queue time was over the threshold, or that had a 503.
    pub slo_violation_minutes: u64,
    /// Billed droplet-seconds, every role (serving, booting, standby, draining).
    pub droplet_seconds: f64,
    /// What they cost, $.
    pub cost_usd: f64,
    /// Decisions that created or deleted droplets.
    pub actions: u64,
    /// Droplets created.
    pub droplets_created: u64,
    /// Droplets deleted.
    pub droplets_deleted: u64,
    /// Standbys admitted (HAProxy only).
    pub admitted: u64,
    /// Servers parked (HAProxy only).
    pub parked: u64,
    /// The worst minute's p99 queue time, ms.
    pub worst_p99_queue_ms: f64,
    /// The longest any request queued, ms.
    pub max_queue_ms: f64,
    /// Requests answered 503.
    pub errors_503: u64,
    /// For each step up in the load: seconds until two clean minutes in a row.
    pub recovery_s: Vec<f64>,
    /// API requests (creates, deletes, polls).
    pub api_calls: u64,
    /// API requests per hour of trace.
    pub api_calls_per_hour: f64,
    /// API requests refused (rate limit, outage, droplet limit).
    pub api_refused: u64,
    /// Decisions that acted during a metrics blackout or an API outage (should be 0).
    pub actions_in_blackout: u64,
    /// The most droplets at once.
    pub peak_droplets: u32,
    /// Wall time of the simulation, ms.
    pub elapsed_ms: f64,
}

/// Starts of steps up in the load: minutes whose rate is at least 1.5× the mean of the 3
/// before, at most one per 10 minutes.
pub fn steps(minutes: &[engine::Minute]) -> Vec<usize> {
    let mut out: Vec<usize> = Vec::new();
    for m in 3..minutes.len() {
        let before = minutes[m - 3..m].iter().map(|x| x.rate).sum::<f64>() / 3.0;
        if minutes[m].rate >= 1.5 * before.max(1.0) && out.last().is_none_or(|l| m - l >= 10) {
            out.push(m);
        }
    }
    out
}

/// Scores one outcome.
pub fn score(o: &Outcome, model: &Model, elapsed: Duration) -> Score {
    let recovery = steps(&o.minutes)
        .into_iter()
        .map(|m| {
            let clean = |i: usize| o.minutes.get(i).is_none_or(|x| !x.violation);
            let j = (m..=o.minutes.len())
                .find(|&j| clean(j) && clean(j + 1))
                .unwrap_or(o.minutes.len());
            ((j - m) * 60) as f64
        })
        .collect();
    let hours = (o.seconds / 3600.0).max(1e-9);
    Score {
        policy: o.policy.clone(),
        slo_violation_minutes: o.minutes.iter().filter(|m| m.violation).count() as u64,
        droplet_seconds: o.droplet_seconds.round(),
        cost_usd: (o.droplet_seconds / 3600.0 * model.hourly_price * 100.0).round() / 100.0,
        actions: o.actions,
        droplets_created: o.created,
        droplets_deleted: o.deleted,
        admitted: o.admitted,
        parked: o.parked,
        worst_p99_queue_ms: o.minutes.iter().map(|m| m.p99_ms).fold(0.0, f64::max),
        max_queue_ms: o.max_queue_ms,
        errors_503: o.errors.round() as u64,
        recovery_s: recovery,
        api_calls: o.api_calls,
        api_calls_per_hour: (o.api_calls as f64 / hours * 10.0).round() / 10.0,
        api_refused: o.api_refused,
        actions_in_blackout: o.actions_in_blackout,
        peak_droplets: o.peak_droplets,
        elapsed_ms: (elapsed.as_secs_f64() * 1e4).round() / 10.0,
    }
}

/// Runs each policy of `specs` on `trace` and scores it; returns the outcomes too (for
/// plots).
pub fn compare(
    trace: &Trace,
    model: &Model,
    settings: &Settings,
    specs: &[String],
) -> Result<Vec<(Score, Outcome)>> {
    let mut out = Vec::new();
    for spec in specs {
        let mut p = policy(spec, settings).with_context(|| format!("--policy {spec}"))?;
        let t0 = Instant::now();
        let o = engine::run(trace, model, p.as_mut(), settings.min, settings.max);
        out.push((score(&o, model, t0.elapsed()), o));
    }
    Ok(out)
}

/// The scores as a table: `markdown` for the README, else aligned text.
pub fn table(scores: &[Score], markdown: bool) -> String {
    let head = [
        "policy",
        "SLO-violation min",
        "droplet-hours",
        "cost $",
        "actions",
        "created/deleted",
        "worst p99 queue ms",
        "max recovery s",
        "API calls",
        "peak droplets",
    ];
    let rows: Vec<Vec<String>> = scores
        .iter()
        .map(|s| {
            vec![
                s.policy.clone(),
                s.slo_violation_minutes.to_string(),
                format!("{:.1}", s.droplet_seconds / 3600.0),
                format!("{:.2}", s.cost_usd),
                s.actions.to_string(),
                format!("{}/{}", s.droplets_created, s.droplets_deleted),
                format!("{:.0}", s.worst_p99_queue_ms),
                s.recovery_s
                    .iter()
                    .copied()
                    .fold(None, |m: Option<f64>, r| Some(m.map_or(r, |m| m.max(r))))
                    .map_or_else(|| "-".into(), |r| format!("{r:.0}")),
                s.api_calls.to_string(),
                s.peak_droplets.to_string(),
            ]
        })
        .collect();
    let mut out = String::new();
    if markdown {
        out.push_str(&format!("| {} |\n", head.join(" | ")));
        out.push_str(&format!(
            "|{}\n",
            head.iter()
                .enumerate()
                .map(|(i, _)| if i == 0 { "---|" } else { "---:|" })
                .collect::<String>()
        ));
        for r in rows {
            out.push_str(&format!("| {} |\n", r.join(" | ")));
        }
    } else {
        let mut w: Vec<usize> = head.iter().map(|h| h.len()).collect();
        for r in &rows {
            for (i, c) in r.iter().enumerate() {
                w[i] = w[i].max(c.chars().count());
            }
        }
        let line = |cells: Vec<String>| {
            cells
                .iter()
                .enumerate()
                .map(|(i, c)| {
                    if i == 0 {
                        format!("{c:<width$}", width = w[i])
                    } else {
                        format!("{c:>width$}", width = w[i])
                    }
                })
                .collect::<Vec<_>>()
                .join("  ")
        };
        out.push_str(&line(head.iter().map(|h| h.to_string()).collect()));
        out.push('\n');
        for r in rows {
            out.push_str(&line(r));
            out.push('\n');
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use trace::Segment;

    /// 20 minutes: 5 at 2,000 req/s, 10 at 6,000, 5 at 2,000 (per-minute rows).
    fn stepped() -> Trace {
        let rates = [
            2000u64, 2000, 2000, 2000, 2000, 6000, 6000, 6000, 6000, 6000, 6000, 6000, 6000, 6000,
            6000, 2000, 2000, 2000, 2000, 2000,
        ];
        Trace {
            name: "stepped".into(),
            segments: rates
                .iter()
                .enumerate()
                .map(|(m, r)| Segment {
                    start: m as f64 * 60.0,
                    end: m as f64 * 60.0 + 60.0,
                    count: r * 60,
                })
                .collect(),
        }
    }

    fn settings() -> Settings {
        Settings {
            max: 100,
            standby: 2,
            ..Settings::default()
        }
    }

    #[test]
    fn the_simulator_and_a_live_caller_decide_alike() {
        // The simulator drives one controller and records what it saw; a second controller
        // fed those snapshots directly, as the daemon will feed its own, decides the same.
        let st = settings();
        let mut sim = Doproxy::new(st.clone(), "doproxy".into()).recording();
        let model = Model {
            blackouts: vec![(400.0, 30.0)],
            ..Model::default()
        };
        let out = engine::run(&stepped(), &model, &mut sim, st.min, st.max);
        let log = sim.log.unwrap_or_default();
        assert_eq!(log.len(), 1200);
        assert!(out.actions > 0);
        let mut live = Controller::new(st);
        for (snap, decision) in &log {
            assert_eq!(&live.tick(snap), decision, "at {:?}", snap.now);
        }
        // Nothing was done in the blackout.
        assert_eq!(out.actions_in_blackout, 0);
        assert!(log
            .iter()
            .filter(|(s, _)| s.signals.is_none())
            .all(|(_, d)| d.action.is_none()));
    }

    #[test]
    fn every_policy_runs_and_scores() {
        let st = settings();
        let specs: Vec<String> = POLICIES.iter().map(|p| p.to_string()).collect();
        let res = compare(&stepped(), &Model::default(), &st, &specs).unwrap();
        assert_eq!(res.len(), 5);
        for (s, o) in &res {
            assert_eq!(o.minutes.len(), 20, "{}", s.policy);
            assert!(s.droplet_seconds > 0.0);
            // One step up, at minute 5.
            assert_eq!(s.recovery_s.len(), 1, "{}", s.policy);
        }
        let t = table(&res.iter().map(|r| r.0.clone()).collect::<Vec<_>>(), true);
        assert!(t.starts_with("| policy |") && t.lines().count() == 7, "{t}");
    }

    #[test]
    fn policy_specs() {
        let st = settings();
        assert!(policy("hpa:target=0.5,window=60", &st).is_ok());
        assert!(policy("hpa:bogus=1", &st).is_err());
        assert!(policy("doproxy:standby=3,down=120", &st).is_ok());
        assert!(policy("doproxy:tolerance=2", &st).is_err());
        let e = policy("nope", &st)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(e.contains("knative"), "{e}");
    }
}
