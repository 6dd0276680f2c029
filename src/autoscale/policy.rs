//! The decision: [`Controller::tick`] turns one [`Snapshot`] (HAProxy's signals, the fleet by
//! role, the API's state, the clock) into one [`Decision`] (how many droplets should serve,
//! what to do about it, and why). Pure: no I/O, no clock of its own; its only state is the
//! settings and a bounded history of recent recommendations, desired counts and actions. The
//! simulator calls it, and so will the live daemon.
//!
//! One tick, in order:
//! 1. **Fail static.** With the API erroring or rate-limited, no sample, a stale sample, or a
//!    missing signal that the targets or the 5xx guard read, nothing is done (a missing
//!    signal is never read as zero).
//! 2. **Per target, a desired count** from this sample (scur averaged over the last 5 s,
//!    [`SMOOTHING`]) and, for scale-down, from every signal averaged over the last 30 s
//!    ([`SLOW_SMOOTHING`]); the
//!    recommendation is the largest. Within the tolerance band around the current desired
//!    count the recommendation is that count.
//! 3. **Stabilization**: scale up to the smallest recommendation of the up window, down to
//!    the largest of the down window (Kubernetes HPA's rule).
//! 4. **No scale-in while 5xx answers are elevated.**
//! 5. **Step limits** against the desired counts of the last `step_interval`.
//! 6. **Caps**: `min` and `max`, the account's droplet headroom, `max_hourly_cost`.
//! 7. **The plan**: admit standbys first, create what the serving count and the standby pool
//!    still lack (booting droplets count, draining ones do not); on the way down, park the
//!    surplus in standby and delete what the pool does not need.
//! 8. **The action budget**: at most `max_actions` decisions that create or delete droplets
//!    within `action_window`; admitting and parking (HAProxy only) are not counted.

use super::settings::Settings;
use serde::{Serialize, Serializer};
use std::collections::VecDeque;
use std::time::Duration;

/// What HAProxy's stats socket says (`show stat`), one sample. A field is `None` when the
/// sample did not have it; the controller then does nothing rather than guess.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Signals {
    /// How old the sample is when the controller sees it.
    #[serde(serialize_with = "secs")]
    pub age: Duration,
    /// Σ `scur` over the serving servers: requests in flight on the backends.
    pub in_flight: Option<f64>,
    /// The backend's `qcur`: requests queued in HAProxy with no server yet.
    pub queued: Option<f64>,
    /// Requests per second arriving at the frontend (`req_rate`, or the `req_tot` delta).
    pub request_rate: Option<f64>,
    /// The backend's `qtime`: average time in HAProxy's queue, ms.
    pub queue_time_ms: Option<f64>,
    /// The backend's `rtime`: average response time, ms.
    pub response_time_ms: Option<f64>,
    /// 5xx answers per second (the `hrsp_5xx` delta).
    pub error_rate: Option<f64>,
}

/// The fleet by role, as the caller knows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, serde::Deserialize)]
pub struct Fleet {
    /// In HAProxy and taking requests.
    pub serving: u32,
    /// Created, not serving yet (the API's `new`, booting, or failing health checks).
    pub booting: u32,
    /// Hot spares: booted, passing health checks, parked in HAProxy (drain state).
    pub standby: u32,
    /// Being drained before deletion.
    pub draining: u32,
}

/// Whether the DigitalOcean API can be used right now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ApiState {
    /// Answering.
    #[default]
    Ok,
    /// The last requests failed (5xx, timeouts).
    Erroring,
    /// The last request got a 429, and the limit has not reset yet.
    RateLimited,
}

/// Everything one decision looks at.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Snapshot {
    /// The caller's monotonic clock (any origin; it must not go backwards).
    #[serde(serialize_with = "secs")]
    pub now: Duration,
    /// The latest stats sample, or `None` when there is none.
    pub signals: Option<Signals>,
    /// The fleet by role.
    pub fleet: Fleet,
    /// The API's state.
    pub api: ApiState,
    /// How many more droplets the account may hold (`droplet_limit` minus the account's
    /// droplets), when known.
    pub droplet_headroom: Option<u32>,
    /// The droplet size's price in $/h, when the caller knows it (else the settings' price).
    pub hourly_price: Option<f64>,
}

/// What to do, in HAProxy and through the API. All zero means nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, serde::Deserialize)]
pub struct Action {
    /// Standbys to put into service now (HAProxy `set server … state ready`).
    pub admit: u32,
    /// Droplets to create (they boot, then land in standby, then get admitted).
    pub create: u32,
    /// Serving droplets to return to standby (HAProxy drain state: they finish what they
    /// have and take nothing new).
    pub park: u32,
    /// Parked droplets to delete (after `park`: drain, then destroy).
    pub delete: u32,
}

impl Action {
    /// True when there is nothing to do.
    pub fn is_none(&self) -> bool {
        *self == Action::default()
    }

    /// True when the action calls the API (creates or deletes droplets).
    pub fn uses_api(&self) -> bool {
        self.create > 0 || self.delete > 0
    }
}

/// Why the decision is what it is (machine-readable, snake_case in JSON).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    /// Fail static: no stats sample, or one without a signal the policy reads.
    SignalsMissing,
    /// Fail static: the sample is older than `stale_after`.
    SignalsStale,
    /// Fail static: the API is erroring.
    ApiErroring,
    /// Fail static: the API is rate-limited.
    ApiRateLimited,
    /// Fail static: `max_hourly_cost` is set and no price is known.
    PriceUnknown,
    /// The action budget (`max_actions` per `action_window`) is spent: no create or delete
    /// (admitting and parking still happen).
    ActionBudget,
    /// Load within the tolerance band; the fleet is as desired.
    WithinTolerance,
    /// The fleet is as desired.
    Steady,
    /// More serving droplets.
    ScaleUp,
    /// Fewer serving droplets.
    ScaleDown,
    /// Lower load, held by the scale-down stabilization window.
    Stabilizing,
    /// Lower load, but 5xx answers are elevated: no scale-in.
    ScaleInBlockedByErrors,
    /// The serving count is as desired; the standby pool is being refilled.
    RefillStandby,
    /// The serving count is as desired; surplus standbys are deleted.
    TrimStandby,
    /// More capacity is on its way (booting); nothing more to do.
    AwaitingBoot,
}

/// A bound that cut the desired count or the plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Limit {
    /// `min`.
    Min,
    /// `max`.
    Max,
    /// `step_up` / `step_down`.
    Step,
    /// The account's droplet limit.
    DropletLimit,
    /// `max_hourly_cost`.
    Cost,
}

/// One decision.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Decision {
    /// The snapshot's clock.
    #[serde(serialize_with = "secs")]
    pub at: Duration,
    /// How many droplets should serve after this decision.
    pub desired: u32,
    /// This tick's recommendation before stabilization, limits and caps (`None` when failing
    /// static for want of signals).
    pub recommendation: Option<u32>,
    /// What to do.
    pub action: Action,
    /// Why.
    pub reason: Reason,
    /// The bound that cut the desired count or the plan, if one did.
    pub limited_by: Option<Limit>,
    /// The signals the decision used.
    pub signals: Option<Signals>,
}

fn secs<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64())
}

/// The autoscaler: settings plus a bounded history. [`Controller::tick`] is the only way in.
#[derive(Debug, Clone)]
pub struct Controller {
    settings: Settings,
    /// The desired serving count after the last decision (`None` before the first one).
    desired: Option<u32>,
    /// (time, recommendation), for the stabilization windows.
    recommendations: VecDeque<(Duration, u32, u32)>,
    /// (time, desired), for the step limits.
    desireds: VecDeque<(Duration, u32)>,
    /// Times of recent actions, for the action budget.
    actions: VecDeque<Duration>,
    /// The complete samples of the last [`SLOW_SMOOTHING`].
    samples: VecDeque<(Duration, Signals)>,
    /// When the serving count was last lowered.
    last_down: Option<Duration>,
}

/// Scale-up reads `scur` averaged over this long (the samples within it).
pub const SMOOTHING: Duration = Duration::from_secs(5);
/// Scale-down reads the signals averaged over this long.
pub const SLOW_SMOOTHING: Duration = Duration::from_secs(30);

/// The mean of each signal over the `samples` (all complete) younger than `window`; the
/// latest sample's age and 5xx rate.
fn mean_signals(
    samples: &VecDeque<(Duration, Signals)>,
    now: Duration,
    window: Duration,
) -> Option<Signals> {
    let last = samples.back()?.1;
    let recent: Vec<&Signals> = samples
        .iter()
        .filter(|(t, _)| now.saturating_sub(*t) < window)
        .map(|(_, s)| s)
        .collect();
    let n = recent.len().max(1) as f64;
    let mean = |f: fn(&Signals) -> Option<f64>| -> Option<f64> {
        recent
            .iter()
            .map(|s| f(s))
            .sum::<Option<f64>>()
            .map(|t| t / n)
    };
    Some(Signals {
        age: last.age,
        in_flight: mean(|s| s.in_flight),
        queued: mean(|s| s.queued),
        request_rate: mean(|s| s.request_rate),
        queue_time_ms: mean(|s| s.queue_time_ms),
        response_time_ms: mean(|s| s.response_time_ms),
        error_rate: last.error_rate,
    })
}

impl Controller {
    /// A controller with no history. The settings should be valid ([`Settings::validate`]).
    pub fn new(settings: Settings) -> Controller {
        Controller {
            settings,
            desired: None,
            recommendations: VecDeque::new(),
            desireds: VecDeque::new(),
            actions: VecDeque::new(),
            samples: VecDeque::new(),
            last_down: None,
        }
    }

    /// The settings.
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// The stabilization windows' history: (time, recommendation, scale-down
    /// recommendation), oldest first. A process that stops (a `--once` run, a restart) saves
    /// it and gives it back with [`Controller::remember`], so its successor does not scale
    /// in before the load has been low for the whole `stabilization_down`.
    pub fn window(&self) -> Vec<(Duration, u32, u32)> {
        self.recommendations.iter().copied().collect()
    }

    /// Puts saved window entries back (see [`Controller::window`]), before the first tick.
    /// An entry `(now, n, n)` holds the fleet at `n` or more for `stabilization_down`: what a
    /// process with no saved history starts with, so that it watches before it scales in.
    pub fn remember(&mut self, entries: &[(Duration, u32, u32)]) {
        let mut all: Vec<(Duration, u32, u32)> = self.recommendations.drain(..).collect();
        all.extend_from_slice(entries);
        all.sort_by_key(|e| e.0);
        self.recommendations = all.into();
    }

    /// Decides what to do about `snap`. Call it every `settings.tick`, with the clock
    /// never going backwards; the returned action is assumed carried out (what was not is
    /// seen in the next snapshot's fleet).
    pub fn tick(&mut self, snap: &Snapshot) -> Decision {
        let st = self.settings.clone();
        let now = snap.now;
        self.prune(now);
        let f = snap.fleet;
        // The count the last decision asked for; at the start, the serving droplets plus
        // the booting ones that are not refilling the standby pool.
        let current = self.desired.unwrap_or_else(|| {
            let refill = st.standby.saturating_sub(f.standby);
            (f.serving + f.booting.saturating_sub(refill)).clamp(st.min, st.max)
        });
        // The count before this decision is part of the step limits' window.
        self.desireds.push_back((now, current));
        let hold = |reason, recommendation, signals| Decision {
            at: now,
            desired: current,
            recommendation,
            action: Action::default(),
            reason,
            limited_by: None,
            signals,
        };

        // 1. Fail static on signals.
        let Some(sig) = snap.signals else {
            return hold(Reason::SignalsMissing, None, None);
        };
        if sig.age > st.stale_after {
            return hold(Reason::SignalsStale, None, Some(sig));
        }
        if recommend(&st, current, f.booting, &sig).is_none() {
            return hold(Reason::SignalsMissing, None, Some(sig));
        }
        // Going up reads this sample, but scur averaged over the last SMOOTHING (a snapshot
        // of scur is far noisier than a second's request count); going down reads every
        // signal averaged over the last SLOW_SMOOTHING: the largest of 300 one-second
        // readings (the down window's rule) would keep several per cent too many droplets.
        self.samples.push_back((now, sig));
        while self
            .samples
            .front()
            .is_some_and(|(t, _)| now.saturating_sub(*t) >= SLOW_SMOOTHING)
        {
            self.samples.pop_front();
        }
        let used = Signals {
            in_flight: mean_signals(&self.samples, now, SMOOTHING)
                .and_then(|m| m.in_flight)
                .or(sig.in_flight),
            ..sig
        };
        let slow = mean_signals(&self.samples, now, SLOW_SMOOTHING).unwrap_or(used);
        let rec = recommend(&st, current, f.booting, &used).unwrap_or(current);
        let rec_slow = recommend(&st, current, f.booting, &slow).unwrap_or(rec);
        self.recommendations.push_back((now, rec, rec_slow));
        let slot = self.recommendations.len() - 1;
        match snap.api {
            ApiState::Ok => {}
            ApiState::Erroring => return hold(Reason::ApiErroring, Some(rec), Some(sig)),
            ApiState::RateLimited => return hold(Reason::ApiRateLimited, Some(rec), Some(sig)),
        }
        let price = snap.hourly_price.or(st.hourly_price);
        if st.max_hourly_cost.is_some() && price.is_none() {
            return hold(Reason::PriceUnknown, Some(rec), Some(sig));
        }

        // 3. Stabilization (HPA's rule): up to the smallest (fast) recommendation of the up
        // window, down to the largest (slow) recommendation of the down window — but not
        // below this tick's own: the slow mean lags behind a rise it has not caught up with.
        let within = |w: Duration| {
            self.recommendations
                .iter()
                .filter(move |(t, _, _)| now.saturating_sub(*t) <= w)
        };
        let up = within(st.stabilization_up)
            .map(|r| r.1)
            .min()
            .unwrap_or(rec);
        let down = within(st.stabilization_down)
            .map(|r| r.2)
            .max()
            .unwrap_or(rec_slow);
        let mut desired = current;
        if desired < up {
            desired = up;
        }
        if desired > down {
            // One scale-down per SLOW_SMOOTHING at most: the slow mean is still settling
            // after a drop, and following it second by second would be one action a second.
            let settled = self
                .last_down
                .is_none_or(|t| now.saturating_sub(t) >= SLOW_SMOOTHING);
            if settled {
                desired = down.max(up);
            }
        }
        // A count scaled up to stays in the down window: no scale-down within it.
        if desired > current {
            if let Some(r) = self.recommendations.get_mut(slot) {
                r.2 = r.2.max(desired);
            }
        }
        let mut reason = if desired > current {
            Reason::ScaleUp
        } else if desired < current {
            Reason::ScaleDown
        } else if rec != current {
            Reason::Stabilizing
        } else if raw_differs(&st, current, f.booting, &used) {
            Reason::WithinTolerance
        } else {
            Reason::Steady
        };

        // 4. No scale-in while errors are elevated.
        let errors_high = errors_elevated(&st, &sig);
        if errors_high && desired < current {
            desired = current;
            reason = Reason::ScaleInBlockedByErrors;
        }

        // 5. Step limits over the last step_interval (this tick's current count included).
        let mut limited_by = None;
        let (lo, hi) = self
            .desireds
            .iter()
            .map(|(_, d)| *d)
            .fold((current, current), |(lo, hi), d| (lo.min(d), hi.max(d)));
        if desired > lo.saturating_add(st.step_up) {
            desired = lo.saturating_add(st.step_up).max(current);
            limited_by = Some(Limit::Step);
        }
        if desired < hi.saturating_sub(st.step_down) {
            desired = hi.saturating_sub(st.step_down).min(current);
            limited_by = Some(Limit::Step);
        }

        // 6. Caps.
        if desired > st.max {
            desired = st.max;
            limited_by = Some(Limit::Max);
        }
        if desired < st.min {
            desired = st.min;
            limited_by = Some(Limit::Min);
        }
        let pool = f.serving + f.standby + f.booting;
        let billed = pool + f.draining;
        // Droplets the money cap allows in all (every droplet is billed, whatever its role).
        let cost_cap = match (st.max_hourly_cost, price) {
            (Some(cap), Some(p)) if p > 0.0 => Some((cap / p).floor().min(1e9) as u32),
            _ => None,
        };
        if let Some(h) = snap.droplet_headroom {
            let reachable = pool.saturating_add(h);
            if desired > reachable.max(current) {
                desired = reachable.max(current);
                limited_by = Some(Limit::DropletLimit);
            }
        }
        if let Some(c) = cost_cap {
            let affordable = c.saturating_sub(f.draining).max(st.min);
            if desired > affordable {
                desired = affordable;
                limited_by = Some(Limit::Cost);
            }
        }
        // The standby pool shrinks first when the cap bites.
        let mut standby_goal = st.standby;
        if let Some(c) = cost_cap {
            let room = c.saturating_sub(f.draining).saturating_sub(desired);
            if room < standby_goal {
                standby_goal = room;
                limited_by.get_or_insert(Limit::Cost);
            }
        }

        // 7. The plan.
        let mut action = Action::default();
        let (mut serving, mut standby) = (f.serving, f.standby);
        if desired > serving {
            action.admit = standby.min(desired - serving);
            serving += action.admit;
            standby -= action.admit;
        } else if desired < serving {
            action.park = serving - desired;
            serving -= action.park;
            standby += action.park;
        }
        let goal = desired + standby_goal;
        let have = serving + standby + f.booting;
        if goal > have {
            let mut create = goal - have;
            if let Some(h) = snap.droplet_headroom {
                if create > h {
                    create = h;
                    limited_by.get_or_insert(Limit::DropletLimit);
                }
            }
            if let Some(c) = cost_cap {
                let room = c.saturating_sub(billed);
                if create > room {
                    create = room;
                    limited_by.get_or_insert(Limit::Cost);
                }
            }
            action.create = create;
        } else if have > goal && !errors_high {
            // Only parked droplets are deleted; booting ones land in standby and go later.
            action.delete = (have - goal).min(standby);
        }
        if desired == current && reason != Reason::ScaleInBlockedByErrors {
            if action.create > 0 && action.admit == 0 && serving >= desired {
                reason = Reason::RefillStandby;
            } else if action.delete > 0 && action.park == 0 {
                reason = Reason::TrimStandby;
            } else if action.is_none() && serving < desired {
                reason = Reason::AwaitingBoot;
            }
        }

        // 8. The action budget counts what calls the API (creates, deletes); admitting and
        // parking are HAProxy state changes of droplets already paid for, and stay free.
        if action.uses_api() {
            if self.actions.len() >= st.max_actions as usize {
                action.create = 0;
                action.delete = 0;
                reason = Reason::ActionBudget;
            } else {
                self.actions.push_back(now);
            }
        }
        if desired < current {
            self.last_down = Some(now);
        }
        self.desired = Some(desired);
        self.desireds.push_back((now, desired));
        Decision {
            at: now,
            desired,
            recommendation: Some(rec),
            action,
            reason,
            limited_by,
            signals: Some(used),
        }
    }

    /// Drops history older than every window that reads it.
    fn prune(&mut self, now: Duration) {
        let st = &self.settings;
        let keep = st.stabilization_up.max(st.stabilization_down);
        while self
            .recommendations
            .front()
            .is_some_and(|(t, _, _)| now.saturating_sub(*t) > keep)
        {
            self.recommendations.pop_front();
        }
        while self
            .desireds
            .front()
            .is_some_and(|(t, _)| now.saturating_sub(*t) > st.step_interval)
        {
            self.desireds.pop_front();
        }
        while self
            .actions
            .front()
            .is_some_and(|t| now.saturating_sub(*t) >= st.action_window)
        {
            self.actions.pop_front();
        }
    }
}

/// Seconds within which the sessions target sizes for draining HAProxy's queue.
pub const BACKLOG_HORIZON_S: f64 = 30.0;

/// Each target's (desired count, usage ratio) for `current` serving droplets (`booting` of
/// them still booting), or `None` when a signal it reads is missing.
fn per_target(st: &Settings, current: u32, booting: u32, s: &Signals) -> Option<Vec<(f64, f64)>> {
    let c = f64::from(current.max(1));
    let mut out = Vec::new();
    let t = &st.targets;
    if let Some(target) = t.sessions_per_server {
        // In flight now, or by Little's law over the arrival rate and the response time
        // (smoother, and under saturation it still sees the whole demand: the rate is the
        // frontend's, and rtime does not include the queue). While nothing boots, the
        // backlog in HAProxy's queue adds the concurrency that drains it within
        // BACKLOG_HORIZON_S: counting each queued request as a session would ask for
        // thousands of servers for a queue that a few seconds of capacity empty; and while
        // capacity boots, the queue it will drain is not asked for twice.
        let w = s.response_time_ms? / 1000.0;
        let queued = s.queued?;
        let backlog = if booting == 0 {
            queued * w / BACKLOG_HORIZON_S
        } else {
            0.0
        };
        // While requests queue, scur is the slots, busy with the backlog as well: the arrival
        // rate tells the demand, the backlog term the rest.
        let little = s.request_rate? * w;
        let in_flight = s.in_flight?;
        let demand = if queued >= 1.0 {
            little
        } else {
            in_flight.max(little)
        } + backlog;
        out.push((demand / target, demand / (c * target)));
    }
    if let Some(target) = t.requests_per_second_per_server {
        let rate = s.request_rate?;
        out.push((rate / target, rate / (c * target)));
    }
    if let Some(target) = t.queue_time_ms {
        let ratio = s.queue_time_ms? / target;
        if ratio > 1.0 {
            out.push((c * ratio.min(2.0), ratio));
        }
    }
    Some(out)
}

/// This tick's recommendation: the largest desired count over the targets, or `current`
/// when every usage ratio is within the tolerance band; clamped to [min, max]. `None` when a
/// signal is missing (the 5xx guard's signals included).
fn recommend(st: &Settings, current: u32, booting: u32, s: &Signals) -> Option<u32> {
    s.error_rate?;
    s.request_rate?;
    let targets = per_target(st, current, booting, s)?;
    let ratio = targets.iter().map(|t| t.1).fold(0.0, f64::max);
    let rec = if (ratio - 1.0).abs() <= st.tolerance {
        current
    } else {
        let raw = targets.iter().map(|t| t.0).fold(0.0, f64::max);
        // A hair of slack so that 14.000000001 sessions for a target of 14 stays 1 server.
        (raw - 1e-9).ceil().max(0.0).min(f64::from(u32::MAX)) as u32
    };
    // Not capped at max here: the caps (step 6) do that and say `limited_by: max`.
    Some(rec.max(st.min))
}

/// True when the raw recommendation would differ from `current` without the tolerance band.
fn raw_differs(st: &Settings, current: u32, booting: u32, s: &Signals) -> bool {
    per_target(st, current, booting, s).is_some_and(|t| {
        let raw = t.iter().map(|t| t.0).fold(0.0, f64::max);
        ((raw - 1e-9).ceil().max(0.0) as u32).clamp(st.min, st.max) != current
    })
}

/// 5xx answers above `scale_in_error_ratio` of the requests.
fn errors_elevated(st: &Settings, s: &Signals) -> bool {
    match (s.error_rate, s.request_rate) {
        (Some(e), Some(r)) if r > 0.0 => e / r > st.scale_in_error_ratio,
        (Some(e), _) => e > 0.0,
        (None, _) => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    /// Signals with `in_flight` sessions, nothing queued, a request rate whose Little's-law
    /// demand equals `in_flight` (rtime 100 ms), and no errors.
    fn sig(in_flight: f64) -> Signals {
        Signals {
            age: Duration::ZERO,
            in_flight: Some(in_flight),
            queued: Some(0.0),
            request_rate: Some(in_flight * 10.0),
            queue_time_ms: Some(0.0),
            response_time_ms: Some(100.0),
            error_rate: Some(0.0),
        }
    }

    fn fleet(serving: u32, booting: u32, standby: u32) -> Fleet {
        Fleet {
            serving,
            booting,
            standby,
            draining: 0,
        }
    }

    fn snap(t: u64, signals: Option<Signals>, fleet: Fleet) -> Snapshot {
        Snapshot {
            now: secs(t),
            signals,
            fleet,
            api: ApiState::Ok,
            droplet_headroom: None,
            hourly_price: None,
        }
    }

    /// Target 10 sessions per server, no stabilization, wide step limits: the bare rules.
    fn base() -> Settings {
        Settings {
            min: 1,
            max: 100,
            targets: super::super::Targets {
                sessions_per_server: Some(10.0),
                requests_per_second_per_server: None,
                queue_time_ms: None,
            },
            stabilization_down: Duration::ZERO,
            step_up: 1000,
            step_down: 1000,
            max_actions: 1000,
            ..Settings::default()
        }
    }

    fn act(admit: u32, create: u32, park: u32, delete: u32) -> Action {
        Action {
            admit,
            create,
            park,
            delete,
        }
    }

    /// One-tick cases from a fresh controller: (name, settings change, snapshot, desired,
    /// action, reason). Each expected value is worked out in the comment beside it.
    #[test]
    fn one_tick_table() {
        type Case = (
            &'static str,
            fn(&mut Settings),
            Snapshot,
            u32,
            Action,
            Reason,
        );
        let none: fn(&mut Settings) = |_| {};
        let cases: Vec<Case> = vec![
            // 4 serving, 55 in flight: ratio 55/40 = 1.375 > 1.1; ceil(55/10) = 6 → create 2.
            (
                "up",
                none,
                snap(0, Some(sig(55.0)), fleet(4, 0, 0)),
                6,
                act(0, 2, 0, 0),
                Reason::ScaleUp,
            ),
            // 42 in flight on 4: ratio 1.05 within 10 % → stay at 4.
            (
                "tolerance",
                none,
                snap(0, Some(sig(42.0)), fleet(4, 0, 0)),
                4,
                act(0, 0, 0, 0),
                Reason::WithinTolerance,
            ),
            // 40 on 4: exactly the target.
            (
                "steady",
                none,
                snap(0, Some(sig(40.0)), fleet(4, 0, 0)),
                4,
                act(0, 0, 0, 0),
                Reason::Steady,
            ),
            // While requests queue, the in-flight demand is rate × rtime (200 × 0.1 = 20),
            // + 6,000 queued drained within 30 s at 100 ms each (20 more in flight) = 40 →
            // 4 on 2 serving.
            (
                "queue counts",
                none,
                snap(
                    0,
                    Some(Signals {
                        queued: Some(6000.0),
                        ..sig(20.0)
                    }),
                    fleet(2, 0, 0),
                ),
                4,
                act(0, 2, 0, 0),
                Reason::ScaleUp,
            ),
            // Little's law: scur says 10, but 500 req/s × 100 ms = 50 in flight → 5.
            (
                "little",
                none,
                snap(
                    0,
                    Some(Signals {
                        request_rate: Some(500.0),
                        ..sig(10.0)
                    }),
                    fleet(1, 0, 0),
                ),
                5,
                act(0, 4, 0, 0),
                Reason::ScaleUp,
            ),
            // 2 serving + 2 booting = 4 of the desired 6 already exist → create 2, not 4.
            (
                "booting counts",
                none,
                snap(0, Some(sig(55.0)), fleet(2, 2, 0)),
                6,
                act(0, 2, 0, 0),
                Reason::ScaleUp,
            ),
            // standby 2: 4 serving + 2 parked; need 6 → admit 2, then refill 2.
            (
                "admit then refill",
                |s| s.standby = 2,
                snap(0, Some(sig(55.0)), fleet(4, 0, 2)),
                6,
                act(2, 2, 0, 0),
                Reason::ScaleUp,
            ),
            // need 9, 4 serving + 2 parked: admit 2, create 3 for serving + 2 for standby.
            (
                "admit, create",
                |s| s.standby = 2,
                snap(0, Some(sig(85.0)), fleet(4, 0, 2)),
                9,
                act(2, 5, 0, 0),
                Reason::ScaleUp,
            ),
            // 4 serving, no spares, load as desired: refill the 2 spares.
            (
                "refill",
                |s| s.standby = 2,
                snap(0, Some(sig(40.0)), fleet(4, 0, 0)),
                4,
                act(0, 2, 0, 0),
                Reason::RefillStandby,
            ),
            // 8 serving, 20 in flight: ceil(2) = 2 → park 6; the pool keeps 1 spare, deletes 5.
            (
                "down",
                |s| s.standby = 1,
                snap(0, Some(sig(20.0)), fleet(8, 0, 0)),
                2,
                act(0, 0, 6, 5),
                Reason::ScaleDown,
            ),
            // 3 spares for a goal of 1: delete 2 parked.
            (
                "trim",
                |s| s.standby = 1,
                snap(0, Some(sig(40.0)), fleet(4, 0, 3)),
                4,
                act(0, 0, 0, 2),
                Reason::TrimStandby,
            ),
            // ceil(300/10) = 30, max 12.
            (
                "max",
                |s| s.max = 12,
                snap(0, Some(sig(300.0)), fleet(4, 0, 0)),
                12,
                act(0, 8, 0, 0),
                Reason::ScaleUp,
            ),
            // 0 in flight, min 3.
            (
                "min",
                |s| s.min = 3,
                snap(0, Some(sig(0.0)), fleet(5, 0, 0)),
                3,
                act(0, 0, 2, 2),
                Reason::ScaleDown,
            ),
            // need 30 from 4, step_up 5 → 9.
            (
                "step up",
                |s| s.step_up = 5,
                snap(0, Some(sig(300.0)), fleet(4, 0, 0)),
                9,
                act(0, 5, 0, 0),
                Reason::ScaleUp,
            ),
            // need 1 from 10, step_down 3 → 7.
            (
                "step down",
                |s| s.step_down = 3,
                snap(0, Some(sig(5.0)), fleet(10, 0, 0)),
                7,
                act(0, 0, 3, 3),
                Reason::ScaleDown,
            ),
            // $0.10/h at $0.03/h buys 3 droplets.
            (
                "cost",
                |s| {
                    s.max_hourly_cost = Some(0.10);
                    s.hourly_price = Some(0.03);
                },
                snap(0, Some(sig(300.0)), fleet(2, 0, 0)),
                3,
                act(0, 1, 0, 0),
                Reason::ScaleUp,
            ),
            // Cost cap 5 with 4 serving wanted 6 + standby 2: 5 serving, no spare.
            (
                "cost eats standby",
                |s| {
                    s.standby = 2;
                    s.max_hourly_cost = Some(0.05);
                    s.hourly_price = Some(0.01);
                },
                snap(0, Some(sig(55.0)), fleet(4, 0, 0)),
                5,
                act(0, 1, 0, 0),
                Reason::ScaleUp,
            ),
            // 5xx at 5 % of 100 req/s: no scale-in from 8 (would be 1).
            (
                "errors block scale-in",
                none,
                snap(
                    0,
                    Some(Signals {
                        error_rate: Some(5.0),
                        request_rate: Some(100.0),
                        ..sig(10.0)
                    }),
                    fleet(8, 0, 0),
                ),
                8,
                act(0, 0, 0, 0),
                Reason::ScaleInBlockedByErrors,
            ),
            // 5xx elevated, but overloaded: scale-up still goes (ceil(80/10)=8 on 4).
            (
                "errors allow scale-up",
                none,
                snap(
                    0,
                    Some(Signals {
                        error_rate: Some(50.0),
                        ..sig(80.0)
                    }),
                    fleet(4, 0, 0),
                ),
                8,
                act(0, 4, 0, 0),
                Reason::ScaleUp,
            ),
            // No sample at all.
            (
                "missing",
                none,
                snap(0, None, fleet(4, 0, 0)),
                4,
                act(0, 0, 0, 0),
                Reason::SignalsMissing,
            ),
            // One missing field (queued) is not read as zero.
            (
                "missing field",
                none,
                snap(
                    0,
                    Some(Signals {
                        queued: None,
                        ..sig(300.0)
                    }),
                    fleet(4, 0, 0),
                ),
                4,
                act(0, 0, 0, 0),
                Reason::SignalsMissing,
            ),
            // 6 s old, stale_after 5 s.
            (
                "stale",
                none,
                snap(
                    0,
                    Some(Signals {
                        age: secs(6),
                        ..sig(300.0)
                    }),
                    fleet(4, 0, 0),
                ),
                4,
                act(0, 0, 0, 0),
                Reason::SignalsStale,
            ),
            // Account headroom of 1 droplet.
            (
                "droplet limit",
                none,
                Snapshot {
                    droplet_headroom: Some(1),
                    ..snap(0, Some(sig(100.0)), fleet(4, 0, 0))
                },
                5,
                act(0, 1, 0, 0),
                Reason::ScaleUp,
            ),
            (
                "api erroring",
                none,
                Snapshot {
                    api: ApiState::Erroring,
                    ..snap(0, Some(sig(300.0)), fleet(4, 0, 0))
                },
                4,
                act(0, 0, 0, 0),
                Reason::ApiErroring,
            ),
            (
                "rate limited",
                none,
                Snapshot {
                    api: ApiState::RateLimited,
                    ..snap(0, Some(sig(300.0)), fleet(4, 0, 0))
                },
                4,
                act(0, 0, 0, 0),
                Reason::ApiRateLimited,
            ),
            // Cost cap without a price: hold.
            (
                "price unknown",
                |s| s.max_hourly_cost = Some(1.0),
                snap(0, Some(sig(300.0)), fleet(4, 0, 0)),
                4,
                act(0, 0, 0, 0),
                Reason::PriceUnknown,
            ),
            // 200 req/s at 30 per server: ceil(6.67) = 7 (sessions 20 → 2; the larger wins).
            (
                "rps target",
                |s| s.targets.requests_per_second_per_server = Some(30.0),
                snap(
                    0,
                    Some(Signals {
                        request_rate: Some(200.0),
                        ..sig(20.0)
                    }),
                    fleet(2, 0, 0),
                ),
                7,
                act(0, 5, 0, 0),
                Reason::ScaleUp,
            ),
            // qtime 150 ms against 50: ratio 3, capped at 2× → 8 from 4.
            (
                "queue time",
                |s| {
                    s.targets.sessions_per_server = None;
                    s.targets.queue_time_ms = Some(50.0);
                },
                snap(
                    0,
                    Some(Signals {
                        queue_time_ms: Some(150.0),
                        ..sig(40.0)
                    }),
                    fleet(4, 0, 0),
                ),
                8,
                act(0, 4, 0, 0),
                Reason::ScaleUp,
            ),
            // Below its target the queue-time target asks nothing; min 1 is the floor.
            (
                "queue time idle",
                |s| {
                    s.targets.sessions_per_server = None;
                    s.targets.queue_time_ms = Some(50.0);
                },
                snap(0, Some(sig(40.0)), fleet(4, 0, 0)),
                1,
                act(0, 0, 3, 3),
                Reason::ScaleDown,
            ),
        ];
        for (name, change, snapshot, desired, action, reason) in cases {
            let mut st = base();
            change(&mut st);
            assert_eq!(st.validate(), Ok(()), "{name}");
            let d = Controller::new(st).tick(&snapshot);
            assert_eq!(
                (d.desired, d.action, d.reason),
                (desired, action, reason),
                "case {name}: {d:?}"
            );
        }
    }

    /// Sequences: each step is (time, in flight, fleet) → (desired, reason).
    fn run(st: Settings, steps: &[(u64, f64, Fleet, u32, Reason)]) {
        let mut c = Controller::new(st);
        for (i, (t, load, f, desired, reason)) in steps.iter().enumerate() {
            let d = c.tick(&snap(*t, Some(sig(*load)), *f));
            assert_eq!(
                (d.desired, d.reason),
                (*desired, *reason),
                "step {i}: {d:?}"
            );
        }
    }

    #[test]
    fn scale_down_waits_for_the_window() {
        // Down window 300 s: the max recommendation of the last 300 s rules.
        let st = Settings {
            stabilization_down: secs(300),
            ..base()
        };
        run(
            st,
            &[
                (0, 80.0, fleet(8, 0, 0), 8, Reason::Steady),
                (100, 30.0, fleet(8, 0, 0), 8, Reason::Stabilizing),
                (200, 30.0, fleet(8, 0, 0), 8, Reason::Stabilizing),
                // t=0's 8 is 301 s old: the window's max is 3.
                (301, 30.0, fleet(8, 0, 0), 3, Reason::ScaleDown),
            ],
        );
    }

    #[test]
    fn scale_up_window_takes_the_minimum() {
        // Up window 30 s: a short spike does not scale up; a sustained one does. (Ticks 10 s
        // apart: each is its own 5 s mean.)
        let st = Settings {
            stabilization_up: secs(30),
            ..base()
        };
        run(
            st,
            &[
                (0, 40.0, fleet(4, 0, 0), 4, Reason::Steady),
                (10, 100.0, fleet(4, 0, 0), 4, Reason::Stabilizing),
                (20, 40.0, fleet(4, 0, 0), 4, Reason::Steady),
                // t=0's and t=20's 4 are more than 30 s old.
                (51, 100.0, fleet(4, 0, 0), 10, Reason::ScaleUp),
            ],
        );
    }

    #[test]
    fn booting_capacity_is_not_asked_for_twice() {
        let mut c = Controller::new(base());
        let d = c.tick(&snap(0, Some(sig(60.0)), fleet(2, 0, 0)));
        assert_eq!(d.action.create, 4);
        // Next tick the 4 are booting: nothing more, awaiting them.
        let d = c.tick(&snap(1, Some(sig(60.0)), fleet(2, 4, 0)));
        assert_eq!(
            (d.desired, d.action, d.reason),
            (6, act(0, 0, 0, 0), Reason::AwaitingBoot)
        );
        // They land in standby: admit them.
        let d = c.tick(&snap(2, Some(sig(60.0)), fleet(2, 0, 4)));
        assert_eq!(
            (d.desired, d.action, d.reason),
            (6, act(4, 0, 0, 0), Reason::Steady)
        );
    }

    #[test]
    fn step_limit_counts_over_the_interval() {
        // step_up 3 per 60 s: 2 → 5 at t=0, still 5 at t=30, 8 at t=61.
        let st = Settings {
            step_up: 3,
            ..base()
        };
        run(
            st,
            &[
                (0, 200.0, fleet(2, 0, 0), 5, Reason::ScaleUp),
                (30, 200.0, fleet(2, 3, 0), 5, Reason::AwaitingBoot),
                (61, 200.0, fleet(5, 0, 0), 8, Reason::ScaleUp),
            ],
        );
    }

    #[test]
    fn the_action_budget_holds_however_the_load_oscillates() {
        // 3 actions per 600 s; the load flips every 40 s between 2 and 8 servers' worth
        // (each flip alone would be an action: no stabilization window).
        let st = Settings {
            max_actions: 3,
            action_window: secs(600),
            ..base()
        };
        let mut c = Controller::new(st);
        let mut serving = 2;
        let mut acted: Vec<u64> = Vec::new();
        let mut held = 0;
        for t in 0..3600u64 {
            let load = if (t / 40) % 2 == 0 { 80.0 } else { 20.0 };
            let d = c.tick(&snap(t, Some(sig(load)), fleet(serving, 0, 0)));
            if d.action.uses_api() {
                acted.push(t);
                // Carried out at once.
                serving = d.desired;
            }
            held += usize::from(d.reason == Reason::ActionBudget);
        }
        assert!(held > 0);
        assert!(acted.len() >= 6, "{acted:?}");
        for (i, t) in acted.iter().enumerate() {
            let in_window = acted[i..].iter().take_while(|u| **u < t + 600).count();
            assert!(in_window <= 3, "{acted:?}");
        }
    }

    #[test]
    fn nothing_is_done_during_a_blackout() {
        let mut c = Controller::new(base());
        assert_eq!(c.tick(&snap(0, Some(sig(40.0)), fleet(4, 0, 0))).desired, 4);
        for t in 1..100 {
            let d = c.tick(&snap(t, None, fleet(4, 0, 0)));
            assert!(d.action.is_none() && d.desired == 4, "{d:?}");
        }
        // Back: the first fresh sample acts.
        let d = c.tick(&snap(100, Some(sig(80.0)), fleet(4, 0, 0)));
        assert_eq!((d.desired, d.action.create), (8, 4));
    }

    // Tests that pin what mutation testing found unpinned (issue #17).

    #[test]
    fn settings_are_the_ones_given() {
        let st = Settings {
            standby: 3,
            ..base()
        };
        assert_eq!(Controller::new(st.clone()).settings(), &st);
    }

    #[test]
    fn the_fast_mean_covers_five_seconds_and_no_more() {
        // scur alone (no request rate for Little's law): t=0 idle on 1, t=4 100 in flight:
        // the 5 s mean is 50 → 5. At t=5 the t=0 sample is 5 s old, out of the window: 10.
        let scur = |n: f64| Signals {
            request_rate: Some(0.0),
            ..sig(n)
        };
        for (t, mean, desired) in [(4, 50.0, 5), (5, 100.0, 10)] {
            let mut c = Controller::new(base());
            c.tick(&snap(0, Some(scur(0.0)), fleet(1, 0, 0)));
            let d = c.tick(&snap(t, Some(scur(100.0)), fleet(1, 0, 0)));
            assert_eq!(d.signals.and_then(|s| s.in_flight), Some(mean), "{d:?}");
            assert_eq!(d.desired, desired, "{d:?}");
        }
    }

    #[test]
    fn a_sudden_drop_is_read_through_the_means() {
        // 100 in flight on 10, then nothing: the means (5 s and 30 s) are 50 → 5, not 1.
        let mut c = Controller::new(base());
        assert_eq!(
            c.tick(&snap(0, Some(sig(100.0)), fleet(10, 0, 0))).desired,
            10
        );
        let d = c.tick(&snap(1, Some(sig(0.0)), fleet(10, 0, 0)));
        assert_eq!(d.signals.and_then(|s| s.in_flight), Some(50.0), "{d:?}");
        assert_eq!((d.desired, d.reason), (5, Reason::ScaleDown), "{d:?}");
    }

    #[test]
    fn booting_droplets_count_at_the_start() {
        // 4 serving and 2 booting (no standby pool to refill): the fleet is already 6, as
        // 60 in flight asks.
        let d = Controller::new(base()).tick(&snap(0, Some(sig(60.0)), fleet(4, 2, 0)));
        assert_eq!(
            (d.desired, d.action, d.reason),
            (6, act(0, 0, 0, 0), Reason::AwaitingBoot),
            "{d:?}"
        );
    }

    #[test]
    fn a_sample_exactly_stale_after_old_is_still_fresh() {
        let s = Signals {
            age: Settings::default().stale_after,
            ..sig(40.0)
        };
        let d = Controller::new(base()).tick(&snap(0, Some(s), fleet(4, 0, 0)));
        assert_eq!(d.reason, Reason::Steady, "{d:?}");
    }

    #[test]
    fn a_count_scaled_up_to_is_held_through_the_down_window() {
        // Down window 300 s; ticks 10 s apart (each its own 5 s mean). 40 → 100 scales 4 → 10
        // at t=10 (the 30 s mean then says 7). At t=20 the load is 50: the 30 s mean says 7,
        // but the 10 scaled up to stays in the window, so no scale-down.
        let st = Settings {
            stabilization_down: secs(300),
            ..base()
        };
        let mut c = Controller::new(st);
        assert_eq!(c.tick(&snap(0, Some(sig(40.0)), fleet(4, 0, 0))).desired, 4);
        let d = c.tick(&snap(10, Some(sig(100.0)), fleet(4, 0, 0)));
        assert_eq!((d.desired, d.reason), (10, Reason::ScaleUp), "{d:?}");
        let d = c.tick(&snap(20, Some(sig(50.0)), fleet(10, 0, 0)));
        assert_eq!((d.desired, d.reason), (10, Reason::Stabilizing), "{d:?}");
    }

    #[test]
    fn a_saved_window_holds_a_successor_through_the_down_window() {
        // What a `--once` run or a restart saves and gives back: the 10 scaled up to at
        // t=10 holds its successor at 10 through the 300 s down window, where a controller
        // with no history scales in at once.
        let st = Settings {
            stabilization_down: secs(300),
            ..base()
        };
        let mut c = Controller::new(st.clone());
        c.tick(&snap(0, Some(sig(40.0)), fleet(4, 0, 0)));
        assert_eq!(
            c.tick(&snap(10, Some(sig(100.0)), fleet(4, 0, 0))).desired,
            10
        );
        let saved = c.window();
        assert!(
            saved.iter().any(|&(t, n, _)| t == secs(10) && n == 10),
            "{saved:?}"
        );
        let mut next = Controller::new(st.clone());
        next.remember(&saved);
        let d = next.tick(&snap(20, Some(sig(50.0)), fleet(10, 0, 0)));
        assert_eq!((d.desired, d.reason), (10, Reason::Stabilizing), "{d:?}");
        let fresh = Controller::new(st).tick(&snap(20, Some(sig(50.0)), fleet(10, 0, 0)));
        assert!(fresh.desired < 10, "{fresh:?}");
    }

    #[test]
    fn a_decision_that_lands_exactly_on_a_limit_is_not_limited_by_it() {
        // `limited_by` names the limit that cut the decision (the daemon prints it): a load
        // asking for exactly the limit is not cut; one more server's worth is.
        let tick2 = |st: Settings, first: (f64, u32), load: f64| {
            let mut c = Controller::new(st);
            c.tick(&snap(0, Some(sig(first.0)), fleet(first.1, 0, 0)));
            // 40 s later: past the 30 s slow mean, within the 60 s step interval.
            c.tick(&snap(40, Some(sig(load)), fleet(first.1, 0, 0)))
        };
        let steps = Settings {
            step_up: 2,
            step_down: 2,
            ..base()
        };
        // Up from 2 with step_up 2: 4 is reachable, 5 is cut to 4.
        let d = tick2(steps.clone(), (20.0, 2), 40.0);
        assert_eq!((d.desired, d.limited_by), (4, None), "{d:?}");
        let d = tick2(steps.clone(), (20.0, 2), 50.0);
        assert_eq!((d.desired, d.limited_by), (4, Some(Limit::Step)), "{d:?}");
        // Down from 6 with step_down 2: 4 is reachable, 3 is cut to 4.
        let d = tick2(steps.clone(), (60.0, 6), 40.0);
        assert_eq!((d.desired, d.limited_by), (4, None), "{d:?}");
        let d = tick2(steps, (60.0, 6), 30.0);
        assert_eq!((d.desired, d.limited_by), (4, Some(Limit::Step)), "{d:?}");
        // max 4: a load for 4 is not cut, one for 5 is.
        let capped = Settings { max: 4, ..base() };
        let d = tick2(capped.clone(), (20.0, 2), 40.0);
        assert_eq!((d.desired, d.limited_by), (4, None), "{d:?}");
        let d = tick2(capped, (20.0, 2), 50.0);
        assert_eq!((d.desired, d.limited_by), (4, Some(Limit::Max)), "{d:?}");
        // The account's droplet limit: 2 serve and 2 more may be made.
        let headroom = |load: f64| {
            let s = Snapshot {
                droplet_headroom: Some(2),
                ..snap(0, Some(sig(load)), fleet(2, 0, 0))
            };
            Controller::new(base()).tick(&s)
        };
        let d = headroom(40.0);
        assert_eq!((d.desired, d.limited_by), (4, None), "{d:?}");
        let d = headroom(50.0);
        assert_eq!(
            (d.desired, d.limited_by),
            (4, Some(Limit::DropletLimit)),
            "{d:?}"
        );
        // The cost cap: $0.04 an hour at $0.01 pays for 4; with a spare wanted, $0.05 pays
        // for 4 and the spare, $0.04 for 4 and no spare.
        let cost = |cap: f64, standby: u32, load: f64| {
            let st = Settings {
                max_hourly_cost: Some(cap),
                hourly_price: Some(0.01),
                standby,
                ..base()
            };
            Controller::new(st).tick(&snap(0, Some(sig(load)), fleet(2, 0, standby)))
        };
        let d = cost(0.04, 0, 40.0);
        assert_eq!((d.desired, d.limited_by), (4, None), "{d:?}");
        let d = cost(0.04, 0, 50.0);
        assert_eq!((d.desired, d.limited_by), (4, Some(Limit::Cost)), "{d:?}");
        let d = cost(0.05, 1, 40.0);
        assert_eq!((d.desired, d.limited_by), (4, None), "{d:?}");
        let d = cost(0.04, 1, 40.0);
        assert_eq!((d.desired, d.limited_by), (4, Some(Limit::Cost)), "{d:?}");
        // min 3: the recommendation itself never goes below min (so a fleet resting at
        // min reads `steady`, not `stabilizing`), and min is not reported as a cut.
        let floor = Settings { min: 3, ..base() };
        let d = tick2(floor.clone(), (60.0, 6), 30.0);
        assert_eq!((d.desired, d.limited_by), (3, None), "{d:?}");
        let d = tick2(floor, (60.0, 6), 20.0);
        assert_eq!(
            (d.desired, d.recommendation, d.limited_by),
            (3, Some(3), None),
            "{d:?}"
        );
    }

    #[test]
    fn the_standby_pool_is_refilled_within_the_limits_and_kept_while_errors_are_high() {
        let pool = |standby: u32| Settings { standby, ..base() };
        // 2 serve, 2 spares wanted, room for 1 more droplet at the account: 1 is made.
        let s = Snapshot {
            droplet_headroom: Some(1),
            ..snap(0, Some(sig(20.0)), fleet(2, 0, 0))
        };
        let d = Controller::new(pool(2)).tick(&s);
        assert_eq!(
            (d.desired, d.action, d.limited_by),
            (2, act(0, 1, 0, 0), Some(Limit::DropletLimit)),
            "{d:?}"
        );
        // Room for exactly the 2: both are made and nothing is said to limit them.
        let s = Snapshot {
            droplet_headroom: Some(2),
            ..s
        };
        let d = Controller::new(pool(2)).tick(&s);
        assert_eq!((d.action, d.limited_by), (act(0, 2, 0, 0), None), "{d:?}");
        // $0.04 an hour at $0.01 pays for exactly the 2 serving and the 2 spares.
        let st = Settings {
            max_hourly_cost: Some(0.04),
            hourly_price: Some(0.01),
            ..pool(2)
        };
        let d = Controller::new(st).tick(&snap(0, Some(sig(20.0)), fleet(2, 0, 0)));
        assert_eq!((d.action, d.limited_by), (act(0, 2, 0, 0), None), "{d:?}");
        // 5xx at 5 %: 3 spares where 1 is wanted are kept (no delete while errors are
        // high) ...
        let high = |load: f64| Signals {
            error_rate: Some(load * 10.0 * 0.05),
            ..sig(load)
        };
        let d = Controller::new(pool(1)).tick(&snap(0, Some(high(40.0)), fleet(4, 0, 3)));
        assert_eq!(d.action, act(0, 0, 0, 0), "{d:?}");
        // ... and a load asking for 2 of 4 is a blocked scale-in, even while the missing
        // spare is made.
        let d = Controller::new(pool(1)).tick(&snap(0, Some(high(20.0)), fleet(4, 0, 0)));
        assert_eq!(
            (d.desired, d.action, d.reason),
            (4, act(0, 1, 0, 0), Reason::ScaleInBlockedByErrors),
            "{d:?}"
        );
    }

    #[test]
    fn a_scale_down_waits_for_the_slow_mean_to_settle_before_the_next() {
        // Down 8 -> 4 at t=40; at t=50 the load asks for 3, but the slow mean is still
        // settling after the last scale-down (30 s): held at 4 until t=70.
        run(
            base(),
            &[
                (0, 80.0, fleet(8, 0, 0), 8, Reason::Steady),
                (40, 40.0, fleet(8, 0, 0), 4, Reason::ScaleDown),
                (50, 20.0, fleet(4, 0, 0), 4, Reason::Stabilizing),
                (70, 20.0, fleet(4, 0, 0), 2, Reason::ScaleDown),
            ],
        );
    }

    #[test]
    fn a_recommendation_exactly_the_down_window_old_still_counts() {
        let st = Settings {
            stabilization_down: secs(300),
            ..base()
        };
        run(
            st,
            &[
                (0, 80.0, fleet(8, 0, 0), 8, Reason::Steady),
                (300, 30.0, fleet(8, 0, 0), 8, Reason::Stabilizing),
                (301, 30.0, fleet(8, 0, 0), 3, Reason::ScaleDown),
            ],
        );
    }

    #[test]
    fn a_decision_exactly_the_step_interval_old_still_limits_the_step() {
        // step_down 2 over 60 s: 6 until t=30 (the count before that decision is in the
        // interval from then), 4 after. At t=90 that 6 is exactly 60 s old and still in the
        // interval, so 4 is as low as it goes; at t=91 it has left.
        let st = Settings {
            step_down: 2,
            ..base()
        };
        run(
            st,
            &[
                (0, 60.0, fleet(6, 0, 0), 6, Reason::Steady),
                (30, 40.0, fleet(6, 0, 0), 4, Reason::ScaleDown),
                // The load asks for 2 (the reason says so); the step limit keeps 4.
                (60, 20.0, fleet(4, 0, 0), 4, Reason::ScaleDown),
                (90, 20.0, fleet(4, 0, 0), 4, Reason::ScaleDown),
                (91, 20.0, fleet(4, 0, 0), 2, Reason::ScaleDown),
            ],
        );
    }

    #[test]
    fn a_request_rate_within_the_tolerance_keeps_the_count() {
        let st = Settings {
            targets: super::super::Targets {
                sessions_per_server: None,
                requests_per_second_per_server: Some(100.0),
                queue_time_ms: None,
            },
            tolerance: 0.1,
            ..base()
        };
        // 4 serve 410 req/s against 100 each: 2.5 % over, within the band, so 4 stay.
        let d = Controller::new(st.clone()).tick(&snap(0, Some(sig(41.0)), fleet(4, 0, 0)));
        assert_eq!((d.desired, d.reason), (4, Reason::WithinTolerance), "{d:?}");
        // 480 req/s is 20 % over: 5.
        let d = Controller::new(st).tick(&snap(0, Some(sig(48.0)), fleet(4, 0, 0)));
        assert_eq!((d.desired, d.reason), (5, Reason::ScaleUp), "{d:?}");
    }

    #[test]
    fn errors_block_a_scale_in_only_above_the_ratio() {
        // 4 serve 200 req/s, a load for 2; scale_in_error_ratio 1 %.
        let with_errors = |e: f64| {
            let s = Signals {
                error_rate: Some(e),
                ..sig(20.0)
            };
            Controller::new(base()).tick(&snap(0, Some(s), fleet(4, 0, 0)))
        };
        for (errors, desired, reason) in [
            (0.0, 2, Reason::ScaleDown),
            (1.0, 2, Reason::ScaleDown),                // 0.5 %
            (2.0, 2, Reason::ScaleDown),                // exactly 1 %: not above it
            (3.0, 4, Reason::ScaleInBlockedByErrors),   // 1.5 %
            (200.0, 4, Reason::ScaleInBlockedByErrors), // every request
        ] {
            let d = with_errors(errors);
            assert_eq!(
                (d.desired, d.reason),
                (desired, reason),
                "{errors} 5xx/s: {d:?}"
            );
        }
        // With no request rate to compare with, any 5xx is elevated.
        let s = Signals {
            error_rate: Some(1.0),
            request_rate: Some(0.0),
            ..sig(20.0)
        };
        assert!(errors_elevated(&base(), &s));
        let s = Signals {
            error_rate: Some(0.0),
            ..s
        };
        assert!(!errors_elevated(&base(), &s));
    }

    #[test]
    fn queue_time_above_its_target_scales_up_and_at_it_holds_nothing_back() {
        // Sessions say 2 of 4; the queue-time target (100 ms) only ever asks for more.
        let st = Settings {
            targets: super::super::Targets {
                sessions_per_server: Some(10.0),
                requests_per_second_per_server: None,
                queue_time_ms: Some(100.0),
            },
            ..base()
        };
        let with_queue = |q: f64| {
            let s = Signals {
                queue_time_ms: Some(q),
                ..sig(20.0)
            };
            Controller::new(st.clone()).tick(&snap(0, Some(s), fleet(4, 0, 0)))
        };
        // Under or exactly at the target: the sessions rule, 2.
        assert_eq!(with_queue(50.0).desired, 2);
        assert_eq!(with_queue(100.0).desired, 2);
        // 1.5 times the target: 4 x 1.5 = 6; far above it, at most twice the fleet.
        assert_eq!(with_queue(150.0).desired, 6);
        assert_eq!(with_queue(1000.0).desired, 8);
    }

    #[test]
    fn elevated_errors_at_a_steady_load_are_not_a_blocked_scale_in() {
        // 5xx at 5 % of 400 req/s, the load exactly the fleet's: steady, nothing blocked.
        let s = Signals {
            error_rate: Some(20.0),
            ..sig(40.0)
        };
        let d = Controller::new(base()).tick(&snap(0, Some(s), fleet(4, 0, 0)));
        assert_eq!((d.desired, d.reason), (4, Reason::Steady), "{d:?}");
    }

    #[test]
    fn a_partly_booted_fleet_admits_what_is_ready_and_awaits_no_more() {
        // Scaled to 6 on 2; next tick 2 of the 4 are in standby, 2 still booting: admit
        // the 2, create nothing, and that is an action (not "awaiting boot").
        let mut c = Controller::new(base());
        assert_eq!(
            c.tick(&snap(0, Some(sig(60.0)), fleet(2, 0, 0))).action,
            act(0, 4, 0, 0)
        );
        let d = c.tick(&snap(1, Some(sig(60.0)), fleet(2, 2, 2)));
        assert_eq!(
            (d.desired, d.action, d.reason),
            (6, act(2, 0, 0, 0), Reason::Steady),
            "{d:?}"
        );
    }

    #[test]
    fn standbys_beyond_the_need_are_not_all_admitted() {
        // 60 in flight on 4 with 3 parked (no pool wanted): admit 2, delete the third.
        let d = Controller::new(base()).tick(&snap(0, Some(sig(60.0)), fleet(4, 0, 3)));
        assert_eq!((d.desired, d.action), (6, act(2, 0, 0, 1)), "{d:?}");
    }

    #[test]
    fn the_cost_cap_shrinks_the_standby_pool_and_never_grows_it() {
        let capped = |cap: f64| Settings {
            standby: 1,
            max_hourly_cost: Some(cap),
            hourly_price: Some(0.01),
            ..base()
        };
        // Room for 10 droplets, 4 serve and 1 is parked, as wanted: nothing to do.
        let d = Controller::new(capped(0.1)).tick(&snap(0, Some(sig(40.0)), fleet(4, 0, 1)));
        assert_eq!((d.desired, d.action), (4, act(0, 0, 0, 0)), "{d:?}");
        // Room for 4 (the price rose): the spare goes.
        let d = Controller::new(capped(0.04)).tick(&snap(0, Some(sig(40.0)), fleet(4, 0, 1)));
        assert_eq!((d.desired, d.action), (4, act(0, 0, 0, 1)), "{d:?}");
    }

    #[test]
    fn the_droplet_limit_counts_every_droplet_the_pool_has() {
        // No headroom left: 2 serving + 1 booting + 1 parked are all there is, so 4 can
        // serve (admit the parked one), not 3.
        let mut s = snap(0, Some(sig(100.0)), fleet(2, 1, 1));
        s.droplet_headroom = Some(0);
        let d = Controller::new(base()).tick(&s);
        assert_eq!(
            (d.desired, d.action, d.limited_by),
            (4, act(1, 0, 0, 0), Some(Limit::DropletLimit)),
            "{d:?}"
        );
    }

    #[test]
    fn the_cost_cap_bills_the_draining_droplets_too() {
        // Room for 7 droplets; 3 serve and 2 drain (billed until gone); min 6: 2 more, not 3.
        let st = Settings {
            min: 6,
            max_hourly_cost: Some(0.07),
            hourly_price: Some(0.01),
            ..base()
        };
        let f = Fleet {
            draining: 2,
            ..fleet(3, 0, 0)
        };
        let d = Controller::new(st).tick(&snap(0, Some(sig(30.0)), f));
        assert_eq!((d.desired, d.action.create), (6, 2), "{d:?}");
    }
}

#[cfg(test)]
mod max_tests {
    use super::*;

    /// A load beyond `max` stops at `max`, and the decision says `max` cut it.
    #[test]
    fn a_load_beyond_max_is_limited_by_max() {
        let st = Settings {
            max: 3,
            stabilization_down: Duration::ZERO,
            ..Settings::default()
        };
        let mut c = Controller::new(st);
        let sig = Signals {
            age: Duration::ZERO,
            in_flight: Some(140.0), // 10 servers at the default 14 a server
            queued: Some(0.0),
            request_rate: Some(1400.0),
            queue_time_ms: Some(0.0),
            response_time_ms: Some(100.0),
            error_rate: Some(0.0),
        };
        let d = c.tick(&Snapshot {
            now: Duration::from_secs(10),
            signals: Some(sig),
            fleet: Fleet {
                serving: 1,
                ..Fleet::default()
            },
            api: ApiState::Ok,
            droplet_headroom: None,
            hourly_price: None,
        });
        assert_eq!(d.desired, 3);
        assert_eq!(d.limited_by, Some(Limit::Max));
        assert_eq!(d.action.create, 2);
    }
}
