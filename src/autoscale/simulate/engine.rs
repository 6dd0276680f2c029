//! The simulation engine: one policy against one trace, in fixed steps (100 ms by default).
//!
//! **The queueing model.** The serving droplets together are one pool of `serving × maxconn`
//! slots in front of HAProxy's backend queue, as HAProxy's `maxconn` per server makes them:
//! a request takes a free slot on any server or waits in the backend queue, first come first
//! served, and one still waiting after `timeout queue` is answered 503. Requests are counted,
//! not followed one by one. Arrivals per step are sampled exactly (each trace row's count is
//! spread uniformly at random over its steps: a Poisson process given the count). Requests in
//! service are kept as cohorts by age in steps; each step a cohort completes the fraction
//! that the service-time distribution says ends within it (a fluid model of an M/G/c queue:
//! the queue forms when the sampled arrivals outrun the freed slots, so bursts still queue).
//! Queue time is measured per cohort, to the step. A droplet that is parked or deleted takes
//! its share of the requests in service along into a draining pool that finishes them
//! without new ones. The cost per step is a few dozen float operations whatever the load,
//! so a day at 100 ms steps (864,000 steps) takes well under a second.
//!
//! **Droplets.** A create is accepted by the API (10 names per request, the rate limits of
//! 250 requests a minute and 5,000 an hour shared by polls, creates and deletes), turns
//! `active` after one sample of `active_after`, is seen active at the next poll and added to
//! HAProxy, answers after `app_ready_after` more, and is UP after `rise` health checks
//! `check_inter` apart. Billing is per second from the create to the destroy, at least 60 s.
//!
//! **What policies see.** Every second the engine takes a stats sample as HAProxy's socket
//! would give it (Σ scur, qcur, the request rate, the averaged qtime and rtime, the 5xx rate)
//! and per-second averages of utilization (busy slots over serving slots: the CPU of a
//! CPU-bound backend) and concurrency. During a metrics blackout both are missing.

use super::dist::Dist;
use super::trace::Trace;
use crate::autoscale::{Action, ApiState, Fleet, Signals};
use rand::{RngExt, SeedableRng};
use rand_distr::{Binomial, Distribution};
use std::collections::VecDeque;
use std::time::Duration;

/// The simulated world's parameters.
#[derive(Debug, Clone)]
pub struct Model {
    /// Step, seconds.
    pub step: f64,
    /// Concurrent requests per server (HAProxy `maxconn` on the server line).
    pub maxconn: u32,
    /// Service time per request, seconds.
    pub service: Dist,
    /// HAProxy `timeout queue`, seconds: a request queued longer is answered 503.
    pub timeout_queue: f64,
    /// From the create request to `active`.
    pub active_after: Dist,
    /// From `active` to the app answering.
    pub app_ready_after: Dist,
    /// HAProxy health-check interval, seconds.
    pub check_inter: f64,
    /// Passing checks to go UP.
    pub rise: u32,
    /// The droplet's price, $/h.
    pub hourly_price: f64,
    /// The least billed per droplet, seconds.
    pub min_billed: f64,
    /// Names per create request.
    pub names_per_create: u32,
    /// API requests per minute per token.
    pub api_per_minute: u32,
    /// API requests per hour per token.
    pub api_per_hour: u32,
    /// How often a creating droplet is polled, seconds.
    pub poll_interval: f64,
    /// The account's droplet limit (the load balancer not counted), if any.
    pub droplet_limit: Option<u32>,
    /// A minute violates the SLO when its p99 queue time is above this (ms) or it had a 503.
    pub slo_queue_ms: f64,
    /// (start, seconds) windows without stats or metrics.
    pub blackouts: Vec<(f64, f64)>,
    /// (start, seconds) windows in which the API answers 5xx.
    pub api_outages: Vec<(f64, f64)>,
    /// Serving droplets at the start (default: what the first row needs at 70 % of the slots).
    pub initial: Option<u32>,
    /// The random seed.
    pub seed: u64,
}

impl Default for Model {
    fn default() -> Self {
        Model {
            step: 0.1,
            maxconn: 20,
            service: Dist::LogNormal {
                // Mean 100 ms: median × e^(σ²/2) with σ = 0.5.
                median: 0.1 / (0.125f64).exp(),
                sigma: 0.5,
                min: 0.0,
                max: f64::INFINITY,
            },
            timeout_queue: 5.0,
            active_after: Dist::LogNormal {
                median: 35.0,
                sigma: 0.25,
                min: 30.0,
                max: 71.0,
            },
            app_ready_after: Dist::Uniform(30.0, 90.0),
            check_inter: 2.0,
            rise: 2,
            hourly_price: 0.00893,
            min_billed: 60.0,
            names_per_create: 10,
            api_per_minute: 250,
            api_per_hour: 5000,
            poll_interval: 5.0,
            droplet_limit: None,
            slo_queue_ms: 100.0,
            blackouts: Vec::new(),
            api_outages: Vec::new(),
            initial: None,
            seed: 1,
        }
    }
}

/// Per-second history up to now; `NaN` where metrics were missing (a blackout).
#[derive(Debug, Clone, Default)]
pub struct Metrics {
    /// Mean busy slots over serving slots, 0–1.
    pub utilization: Vec<f64>,
    /// Mean requests in the system (in service plus queued).
    pub concurrency: Vec<f64>,
    /// Requests that arrived in the second.
    pub rate: Vec<f64>,
}

/// What a policy sees at a decision.
#[derive(Debug)]
pub struct View<'a> {
    /// Seconds since the trace's start.
    pub now: f64,
    /// The fleet by role.
    pub fleet: Fleet,
    /// When each serving droplet started serving (seconds; for warm-up rules).
    pub serving_since: &'a [f64],
    /// Per-second history.
    pub metrics: &'a Metrics,
    /// HAProxy's stats sample, `None` in a blackout.
    pub signals: Option<Signals>,
    /// The API's state.
    pub api: ApiState,
    /// How many more droplets the account may hold.
    pub droplet_headroom: Option<u32>,
    /// $/h per droplet.
    pub hourly_price: f64,
    /// Slots per server.
    pub maxconn: u32,
}

/// A scaling policy under simulation.
pub trait Policy {
    /// The name in reports, with its parameters.
    fn name(&self) -> String;
    /// Seconds between two decisions.
    fn interval(&self) -> f64;
    /// True when ready droplets park in standby until admitted; false when they serve at once.
    fn warm_pool(&self) -> bool {
        false
    }
    /// Standbys at the start.
    fn initial_standby(&self) -> u32 {
        0
    }
    /// Seconds a removed droplet stays billed after it has drained.
    fn removal_delay(&self) -> f64 {
        0.0
    }
    /// One decision.
    fn decide(&mut self, view: &View<'_>) -> Action;
}

/// One minute of the run, for plots and scores.
#[derive(Debug, Clone, Copy, Default)]
pub struct Minute {
    /// Requests per second, mean over the minute.
    pub rate: f64,
    /// Mean serving droplets.
    pub serving: f64,
    /// Mean booting droplets.
    pub booting: f64,
    /// Mean standby droplets.
    pub standby: f64,
    /// Mean draining droplets (removed, still billed).
    pub draining: f64,
    /// p99 queue time, ms.
    pub p99_ms: f64,
    /// 503 answers.
    pub errors: f64,
    /// p99 over the SLO threshold, or a 503.
    pub violation: bool,
}

/// What one run produced.
#[derive(Debug, Clone, Default)]
pub struct Outcome {
    /// The policy's name.
    pub policy: String,
    /// Per minute.
    pub minutes: Vec<Minute>,
    /// Billed droplet-seconds (every role).
    pub droplet_seconds: f64,
    /// Decisions that created or deleted droplets.
    pub actions: u64,
    /// Droplets created.
    pub created: u64,
    /// Droplets deleted.
    pub deleted: u64,
    /// Standbys admitted and servers parked (HAProxy-only changes).
    pub admitted: u64,
    /// Servers parked.
    pub parked: u64,
    /// API requests made (creates, deletes, polls).
    pub api_calls: u64,
    /// API requests refused (429, 5xx, 422 for the droplet limit).
    pub api_refused: u64,
    /// Decisions that did something during a blackout or an API outage.
    pub actions_in_blackout: u64,
    /// The most droplets at once (every role).
    pub peak_droplets: u32,
    /// Longest queue time of any request, ms.
    pub max_queue_ms: f64,
    /// Requests answered 503.
    pub errors: f64,
    /// Requests.
    pub requests: u64,
    /// Seconds simulated.
    pub seconds: f64,
}

#[derive(Debug, Clone, Copy)]
struct Droplet {
    created: f64,
    /// When the API says active and the next poll sees it (then it joins HAProxy).
    added: f64,
    /// When it is UP in HAProxy.
    ready: f64,
    /// When it began serving.
    since: f64,
    /// When it stops being billed (draining ones).
    gone: f64,
}

/// The API's rate limits and outages.
#[derive(Debug, Default)]
struct Api {
    minute: VecDeque<f64>,
    hour: VecDeque<f64>,
    per_minute: usize,
    per_hour: usize,
    limited_until: f64,
    calls: u64,
    refused: u64,
}

impl Api {
    /// One request at `now`: true when it goes through.
    fn call(&mut self, now: f64, outage: bool) -> bool {
        while self.minute.front().is_some_and(|t| now - t >= 60.0) {
            self.minute.pop_front();
        }
        while self.hour.front().is_some_and(|t| now - t >= 3600.0) {
            self.hour.pop_front();
        }
        if self.minute.len() >= self.per_minute || self.hour.len() >= self.per_hour {
            self.refused += 1;
            let mut until = now;
            if self.minute.len() >= self.per_minute {
                until = until.max(self.minute.front().map_or(now, |t| t + 60.0));
            }
            if self.hour.len() >= self.per_hour {
                until = until.max(self.hour.front().map_or(now, |t| t + 3600.0));
            }
            self.limited_until = until;
            return false;
        }
        self.minute.push_back(now);
        self.hour.push_back(now);
        self.calls += 1;
        if outage {
            self.refused += 1;
            return false;
        }
        true
    }
}

/// Runs `policy` on `trace` between `min` and `max` serving droplets.
pub fn run(trace: &Trace, model: &Model, policy: &mut dyn Policy, min: u32, max: u32) -> Outcome {
    // Separate streams, so that every policy sees the very same arrivals whatever it does
    // with its droplets.
    let mut arrivals_rng = rand_pcg::Pcg64Mcg::seed_from_u64(model.seed);
    let mut rng = rand_pcg::Pcg64Mcg::seed_from_u64(model.seed ^ 0x9e37_79b9_7f4a_7c15);
    let mut service_rng = rand_pcg::Pcg64Mcg::seed_from_u64(model.seed ^ 0x5851_f42d_4c95_7f2d);
    let dt = model.step;
    let per_sec = (1.0 / dt).round().max(1.0) as u64;
    let dt = 1.0 / per_sec as f64;
    let total_steps = (trace.duration() / dt).round() as u64;

    // Service cohorts: survive[a] is the share of a cohort of age a that is still in service
    // one step later, estimated from samples of the distribution.
    let cohorts = cohort_tables(&model.service, dt, &mut service_rng);
    let (survive, done_age) = (&cohorts.survive, &cohorts.age);
    let k = survive.len();
    let mut busy = vec![0.0f64; k];
    let mut drain = vec![0.0f64; k];
    let mut next = vec![0.0f64; k];
    let mut queue: VecDeque<(u64, f64)> = VecDeque::new();
    let mut queued = 0.0f64;
    let timeout_steps = (model.timeout_queue / dt).round() as u64;
    let mut wait_hist = vec![0.0f64; timeout_steps as usize + 2];

    let mut api = Api {
        per_minute: model.api_per_minute as usize,
        per_hour: model.api_per_hour as usize,
        ..Api::default()
    };
    let mean_service = model.service.mean();
    let n0 = model
        .initial
        .unwrap_or_else(|| {
            (trace.initial_rate() * mean_service / (f64::from(model.maxconn) * 0.7)).ceil() as u32
        })
        .clamp(min, max);
    let old = Droplet {
        created: -3600.0,
        added: -3600.0,
        ready: -3600.0,
        since: -3600.0,
        gone: f64::INFINITY,
    };
    let mut serving: Vec<Droplet> = vec![old; n0 as usize];
    let mut standby: Vec<Droplet> = vec![old; policy.initial_standby() as usize];
    let mut booting: Vec<Droplet> = Vec::new();
    let mut draining: Vec<Droplet> = Vec::new();
    let warm_pool = policy.warm_pool();
    let removal_delay = policy.removal_delay();
    let interval_steps = ((policy.interval() / dt).round() as u64).max(1);

    let mut out = Outcome {
        policy: policy.name(),
        seconds: total_steps as f64 * dt,
        ..Outcome::default()
    };
    let mut metrics = Metrics::default();
    let mut billed = 0.0f64;
    let bill = |d: &Droplet, until: f64| -> f64 {
        if d.created < 0.0 {
            until.max(0.0)
        } else {
            (until - d.created).max(model.min_billed)
        }
    };

    // Per-second accumulators.
    let (mut sec_busy, mut sec_conc, mut sec_arrivals, mut sec_errors) = (0.0, 0.0, 0u64, 0.0);
    // HAProxy's qtime and rtime: averages over about the last 512 requests.
    let (mut qtime_ms, mut rtime_ms) = (0.0f64, mean_service * 1000.0);
    // Per-minute accumulators.
    let mut minute = Minute::default();
    let mut minute_secs = 0.0f64;
    let mut last_poll = f64::NEG_INFINITY;

    // Arrivals: the current segment, what is left of its count and its steps.
    let mut seg = 0usize;
    let (mut left, mut left_steps) = (0u64, 0u64);
    let mut seg_end_step = 0u64;

    for step in 0..total_steps {
        let now = step as f64 * dt;
        // Arrivals this step.
        while step >= seg_end_step && seg < trace.segments.len() {
            let s = trace.segments[seg];
            let a = (s.start / dt).round() as u64;
            let b = ((s.end / dt).round() as u64).max(a + 1);
            seg_end_step = b;
            left = s.count;
            left_steps = b.saturating_sub(step).max(1);
            seg += 1;
        }
        let arrivals = if left == 0 {
            0
        } else if left_steps <= 1 {
            left
        } else {
            Binomial::new(left, 1.0 / left_steps as f64).map_or(0, |b| b.sample(&mut arrivals_rng))
        };
        left -= arrivals;
        left_steps = left_steps.saturating_sub(1);
        out.requests += arrivals;

        // Service: what is still in service at the end of this step.
        let mut done_n = 0.0;
        let mut done_t = 0.0;
        let mut survivors = 0.0;
        for a in (0..k).rev() {
            let stay = busy[a] * survive[a];
            let gone = busy[a] - stay;
            done_n += gone;
            done_t += gone * done_age[a];
            if a + 1 < k {
                next[a + 1] = stay;
                survivors += stay;
            }
        }
        std::mem::swap(&mut busy, &mut next);
        busy[0] = 0.0;
        if drain.iter().any(|v| *v > 0.0) {
            for a in (0..k).rev() {
                let stay = drain[a] * survive[a];
                drain[a] = 0.0;
                if a + 1 < k && stay > 1e-9 {
                    drain[a + 1] = stay;
                }
            }
        }

        // Queue timeouts, then dispatch into free slots, oldest first.
        let mut errors = 0.0;
        while let Some(&(t0, n)) = queue.front() {
            if step - t0 >= timeout_steps {
                errors += n;
                queued -= n;
                queue.pop_front();
            } else {
                break;
            }
        }
        let capacity = (serving.len() as f64) * f64::from(model.maxconn);
        // Starts that end within the step never hold a slot at a boundary: the slots they
        // use in between are reused (the fluid view of requests counted at boundaries).
        let mut free = ((capacity - survivors) / cohorts.first.max(1e-6)).max(0.0);
        let mut starts = 0.0;
        while free > 1e-9 {
            let Some(front) = queue.front_mut() else {
                break;
            };
            let take = front.1.min(free);
            let waited = (step - front.0) as usize;
            let bucket = waited.min(wait_hist.len() - 1);
            wait_hist[bucket] += take;
            let w_ms = waited as f64 * dt * 1000.0;
            out.max_queue_ms = out.max_queue_ms.max(w_ms);
            qtime_ms += (w_ms - qtime_ms) * (take / 512.0).min(1.0);
            front.1 -= take;
            free -= take;
            queued -= take;
            starts += take;
            if front.1 <= 1e-9 {
                queue.pop_front();
            }
        }
        let a = arrivals as f64;
        if serving.is_empty() {
            // No server: HAProxy answers 503 at once.
            errors += a;
        } else {
            let direct = a.min(free);
            if direct > 0.0 {
                wait_hist[0] += direct;
                qtime_ms += (0.0 - qtime_ms) * (direct / 512.0).min(1.0);
                starts += direct;
            }
            if a > direct {
                queue.push_back((step, a - direct));
                queued += a - direct;
            }
        }
        // Those that end within the step never hold a slot at a boundary.
        if starts > 0.0 {
            let stay = starts * cohorts.first;
            busy[0] = stay;
            done_n += starts - stay;
            done_t += (starts - stay) * cohorts.first_age;
        }
        if done_n > 0.0 {
            let mean = done_t / done_n * 1000.0;
            rtime_ms += (mean - rtime_ms) * (done_n / 512.0).min(1.0);
        }
        out.errors += errors;
        minute.errors += errors;
        let in_service: f64 = busy.iter().sum();
        sec_busy += if capacity > 0.0 {
            (in_service / capacity).min(1.0)
        } else {
            1.0
        };
        sec_conc += in_service + queued;
        sec_arrivals += arrivals;
        sec_errors += errors;

        // Droplets: boots finish, drained ones go.
        let t_end = now + dt;
        let mut i = 0;
        while i < booting.len() {
            if booting[i].ready <= t_end {
                let mut d = booting.swap_remove(i);
                d.since = t_end;
                if warm_pool {
                    standby.push(d);
                } else {
                    serving.push(d);
                }
            } else {
                i += 1;
            }
        }
        if !warm_pool && !standby.is_empty() {
            // No warm pool: a droplet whose delete failed goes back into service.
            for mut d in standby.drain(..) {
                d.since = t_end;
                serving.push(d);
            }
        }
        draining.retain(|d| {
            if d.gone <= t_end {
                billed += bill(d, d.gone);
                false
            } else {
                true
            }
        });

        // Every second: metrics, the stats sample, the API's polls, decisions.
        if (step + 1) % per_sec != 0 {
            continue;
        }
        let sec_end = t_end;
        let dark = in_window(&model.blackouts, sec_end);
        let outage = in_window(&model.api_outages, sec_end);
        let ps = per_sec as f64;
        if dark {
            metrics.utilization.push(f64::NAN);
            metrics.concurrency.push(f64::NAN);
            metrics.rate.push(f64::NAN);
        } else {
            metrics.utilization.push(sec_busy / ps);
            metrics.concurrency.push(sec_conc / ps);
            metrics.rate.push(sec_arrivals as f64);
        }
        let signals = (!dark).then_some(Signals {
            age: Duration::ZERO,
            in_flight: Some(in_service),
            queued: Some(queued),
            request_rate: Some(sec_arrivals as f64),
            queue_time_ms: Some(qtime_ms),
            response_time_ms: Some(rtime_ms),
            error_rate: Some(sec_errors),
        });
        let fleet_now = Fleet {
            serving: serving.len() as u32,
            booting: booting.len() as u32,
            standby: standby.len() as u32,
            draining: draining.len() as u32,
        };
        minute.rate += sec_arrivals as f64;
        minute.serving += f64::from(fleet_now.serving);
        minute.booting += f64::from(fleet_now.booting);
        minute.standby += f64::from(fleet_now.standby);
        minute.draining += f64::from(fleet_now.draining);
        minute_secs += 1.0;
        sec_busy = 0.0;
        sec_conc = 0.0;
        sec_arrivals = 0;
        sec_errors = 0.0;
        let total = fleet_now.serving + fleet_now.booting + fleet_now.standby + fleet_now.draining;
        out.peak_droplets = out.peak_droplets.max(total);

        // Polls while a droplet is not active yet.
        if booting.iter().any(|d| d.added > sec_end) && sec_end - last_poll >= model.poll_interval {
            last_poll = sec_end;
            api.call(sec_end, outage);
        }

        let step_no = step + 1;
        if step_no % interval_steps == 0 || interval_steps < per_sec {
            let api_state = if outage {
                ApiState::Erroring
            } else if sec_end < api.limited_until {
                ApiState::RateLimited
            } else {
                ApiState::Ok
            };
            let since: Vec<f64> = serving.iter().map(|d| d.since).collect();
            let headroom = model.droplet_limit.map(|l| l.saturating_sub(total));
            let view = View {
                now: sec_end,
                fleet: fleet_now,
                serving_since: &since,
                metrics: &metrics,
                signals,
                api: api_state,
                droplet_headroom: headroom,
                hourly_price: model.hourly_price,
                maxconn: model.maxconn,
            };
            let action = policy.decide(&view);
            if !action.is_none() && (dark || outage) {
                out.actions_in_blackout += 1;
            }
            // Admit, park, delete, create, in that order.
            let admit = (action.admit as usize).min(standby.len());
            for _ in 0..admit {
                if let Some(mut d) = standby.pop() {
                    d.since = sec_end;
                    serving.push(d);
                }
            }
            out.admitted += admit as u64;
            let park = (action.park as usize).min(serving.len());
            if park > 0 {
                // The parked servers' share of the requests in service drains elsewhere.
                let share = park as f64 / serving.len() as f64;
                for a in 0..k {
                    let moved = busy[a] * share;
                    busy[a] -= moved;
                    drain[a] += moved;
                }
                for _ in 0..park {
                    if let Some(d) = serving.pop() {
                        standby.push(d);
                    }
                }
                out.parked += park as u64;
            }
            let mut changed = false;
            let delete = (action.delete as usize).min(standby.len());
            for _ in 0..delete {
                if !api.call(sec_end, outage) {
                    break;
                }
                if let Some(mut d) = standby.pop() {
                    // Drained within a second (service times are short), then destroyed.
                    d.gone = sec_end + 1.0 + removal_delay;
                    draining.push(d);
                    out.deleted += 1;
                    changed = true;
                }
            }
            let mut create = action.create;
            while create > 0 {
                let batch = create.min(model.names_per_create);
                create -= batch;
                if !api.call(sec_end, outage) {
                    break;
                }
                let held = (serving.len() + booting.len() + standby.len() + draining.len()) as u32;
                if model.droplet_limit.is_some_and(|l| held + batch > l) {
                    // 422: the request would pass the account's droplet limit.
                    api.refused += 1;
                    break;
                }
                for _ in 0..batch {
                    let active = sec_end + model.active_after.sample(&mut rng);
                    let added = sec_end
                        + ((active - sec_end) / model.poll_interval).ceil() * model.poll_interval;
                    let app = active + model.app_ready_after.sample(&mut rng);
                    let ready = added.max(app)
                        + model.check_inter * rng.random::<f64>()
                        + model.check_inter * f64::from(model.rise.saturating_sub(1));
                    booting.push(Droplet {
                        created: sec_end,
                        added,
                        ready,
                        since: f64::INFINITY,
                        gone: f64::INFINITY,
                    });
                }
                out.created += u64::from(batch);
                changed = true;
            }
            if changed {
                out.actions += 1;
            }
        }

        // Minute boundary: p99 queue time, violation.
        if (step_no / per_sec).is_multiple_of(60) || step_no == total_steps {
            let n: f64 = wait_hist.iter().sum();
            let mut p99_steps = 0usize;
            if n > 0.0 {
                let mut cum = 0.0;
                for (i, c) in wait_hist.iter().enumerate() {
                    cum += c;
                    if cum >= 0.99 * n - 1e-9 {
                        p99_steps = i;
                        break;
                    }
                }
            }
            let m = minute_secs.max(1.0);
            minute.p99_ms = p99_steps as f64 * dt * 1000.0;
            minute.violation = minute.p99_ms > model.slo_queue_ms || minute.errors >= 0.5;
            minute.rate /= m;
            minute.serving /= m;
            minute.booting /= m;
            minute.standby /= m;
            minute.draining /= m;
            out.minutes.push(minute);
            minute = Minute::default();
            minute_secs = 0.0;
            wait_hist.iter_mut().for_each(|c| *c = 0.0);
        }
    }
    let end = out.seconds;
    for d in serving.iter().chain(&standby).chain(&booting) {
        billed += bill(d, end);
    }
    for d in &draining {
        billed += bill(d, d.gone.min(end));
    }
    out.droplet_seconds = billed;
    out.api_calls = api.calls;
    out.api_refused = api.refused;
    out
}

fn in_window(windows: &[(f64, f64)], t: f64) -> bool {
    windows.iter().any(|(s, len)| t >= *s && t < s + len)
}

/// How cohorts of requests in service age, step by step.
#[derive(Debug)]
struct Cohorts {
    /// The share of the requests started in a step still in service at its end (they start
    /// at a uniformly random moment of it).
    first: f64,
    /// The mean service time (s) of those that finish within their first step.
    first_age: f64,
    /// For each age (boundaries since the first): the share of a cohort still in service at
    /// the next boundary.
    survive: Vec<f64>,
    /// For each age: the mean service time (s) of those that finish in that step.
    age: Vec<f64>,
}

/// [`Cohorts`] for `service` at step `dt`, estimated from 200,000 samples. A request
/// starts at a uniformly random moment of its step, so at the first boundary it has been
/// in service (1 − u) steps; counting requests at boundaries then gives the mean occupancy
/// exactly (Little's law), whatever the distribution.
fn cohort_tables<R: rand::Rng>(service: &Dist, dt: f64, rng: &mut R) -> Cohorts {
    const N: usize = 200_000;
    // (what is left after the first boundary, the service time)
    let mut samples: Vec<(f64, f64)> = (0..N)
        .map(|_| {
            let s = service.sample(rng);
            (s - (1.0 - rng.random::<f64>()) * dt, s)
        })
        .collect();
    samples.sort_by(|a, b| a.0.total_cmp(&b.0));
    let mut prefix = Vec::with_capacity(N + 1);
    prefix.push(0.0);
    for s in &samples {
        prefix.push(prefix.last().copied().unwrap_or(0.0) + s.1);
    }
    // Samples whose remainder is ≤ t.
    let upto = |t: f64| samples.partition_point(|s| s.0 <= t);
    let mean_between = |i: usize, j: usize, fallback: f64| {
        if j > i {
            (prefix[j] - prefix[i]) / (j - i) as f64
        } else {
            fallback
        }
    };
    let at0 = upto(0.0);
    let first = (N - at0) as f64 / N as f64;
    let first_age = mean_between(0, at0, 0.25 * dt);
    let longest = samples[N - 1].0.max(dt);
    let max_age = (longest / dt).ceil().clamp(1.0, 600.0) as usize;
    let mut survive = Vec::with_capacity(max_age + 1);
    let mut age = Vec::with_capacity(max_age + 1);
    for a in 0..=max_age {
        let (t0, t1) = (a as f64 * dt, (a + 1) as f64 * dt);
        let (i0, i1) = (upto(t0), upto(t1));
        let alive0 = N - i0;
        // The last 0.01 % of the tail ends at once: it would keep the list long for nothing.
        if alive0 < N / 10_000 || a == max_age {
            survive.push(0.0);
            age.push(mean_between(i0, N, t1));
            break;
        }
        survive.push((N - i1) as f64 / alive0 as f64);
        age.push(mean_between(i0, i1, t1));
    }
    Cohorts {
        first,
        first_age,
        survive,
        age,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::autoscale::simulate::trace::Segment;

    /// A policy that never does anything.
    struct Still;
    impl Policy for Still {
        fn name(&self) -> String {
            "still".into()
        }
        fn interval(&self) -> f64 {
            1.0
        }
        fn decide(&mut self, _: &View<'_>) -> Action {
            Action::default()
        }
    }

    fn flat(rate: u64, secs: u64) -> Trace {
        Trace {
            name: "flat".into(),
            segments: (0..secs)
                .map(|s| Segment {
                    start: s as f64,
                    end: s as f64 + 1.0,
                    count: rate,
                })
                .collect(),
        }
    }

    #[test]
    fn utilization_follows_littles_law() {
        // 4 servers × 20 slots, 400 req/s × 100 ms = 40 busy slots: 50 %.
        let model = Model {
            initial: Some(4),
            ..Model::default()
        };
        let out = run(&flat(400, 120), &model, &mut Still, 1, 10);
        let u = &out.minutes;
        assert_eq!(out.requests, 48_000);
        assert_eq!(u.len(), 2);
        assert!(u.iter().all(|m| !m.violation), "{u:?}");
        assert_eq!(out.errors, 0.0);
        // 4 droplets billed for 120 s.
        assert!((out.droplet_seconds - 480.0).abs() < 1e-6);
    }

    #[test]
    fn overload_queues_then_times_out() {
        // 1 server: 20 slots / 100 ms = 200 req/s at most; 400 req/s arrive.
        let model = Model {
            initial: Some(1),
            ..Model::default()
        };
        let out = run(&flat(400, 60), &model, &mut Still, 1, 10);
        assert!(out.minutes[0].violation);
        assert!(out.max_queue_ms >= 4_900.0, "{}", out.max_queue_ms);
        // About half the requests time out once the queue is 5 s deep.
        assert!(
            out.errors > 5_000.0 && out.errors < 12_000.0,
            "{}",
            out.errors
        );
    }

    #[test]
    fn throughput_matches_capacity() {
        // At 90 % of capacity (180 req/s on one server) the queue stays short.
        let model = Model {
            initial: Some(1),
            ..Model::default()
        };
        let out = run(&flat(180, 120), &model, &mut Still, 1, 10);
        assert_eq!(out.errors, 0.0);
        assert!(out.max_queue_ms < 2_000.0, "{}", out.max_queue_ms);
    }
}
