//! `doproxy autoscale` (no subcommand): the live autoscaler. Every `autoscale.tick` it reads
//! HAProxy's stats socket (`show stat`), the inventory and the store's journal, asks the
//! policy ([`Controller::tick`]) and carries the decision out:
//! - **admit** a hot spare: its server's weight goes from 0 to 1 over the runtime API (no
//!   reload: the next request may go to it), then the journal stops marking it a standby,
//!   so every later render serves it;
//! - **park** a serving droplet: weight 0 at once (it finishes what it has, gets nothing
//!   new), then marked a standby in the journal;
//! - **create** through `create`'s orphan-proof path, each new droplet marked a standby in
//!   the step that records it (it is admitted by a later tick once its checks pass);
//! - **delete** a standby through `delete`'s two-phase path (drain, reload, destroy).
//!
//! Creates and deletes run beside the loop (a create waits minutes for `active`), so the
//! loop keeps reading and admitting. Everything they do is in the store as they go (the
//! journal's intents, the leaving marks), so a kill at any moment loses nothing: the next
//! command adopts or finishes it. The (next) leader settles the creates another process
//! left in the journal itself before it decides: an intent whose droplet is in the
//! inventory is dropped at once, a journaled droplet found among the tagged ones joins the
//! pool as a standby, an absent one is dropped after `not_found_grace`.
//!
//! In steady state the API sees one call a minute (a reconciling list of the deployment's
//! droplets); everything else comes from the stats socket. With no sample, a stale one, or
//! the API failing, nothing is done (fail static): the policy's rules.
//!
//! `--once` takes two samples a tick apart (the rates need two), decides once, carries the
//! action out and waits for it; `--dry-run` decides and prints, and changes nothing. Each
//! decision worth telling (an action, a new reason or count, or a minute of quiet) is one
//! line on stdout; with `-o json` one JSON object a line with the keys `time`, `leader`,
//! `dry_run`, `signals`, `current`, `desired`, `action`, `reason`, `limited_by`.
//!
//! With an etcd inventory only one node's autoscaler acts (the leader, holding a lease);
//! every node publishes its HAProxy's signals under a lease-bound key and the leader decides
//! on their sum. Every node keeps its own HAProxy's weights in step with the journal.

use super::{create, delete, note, say, warn, Ctx};
use crate::autoscale::live::{self, Reading, Roster};
use crate::autoscale::{Action, ApiState, Controller, Decision, Fleet, Limit, Settings, Snapshot};
use crate::error::usage_error;
use crate::haproxy::runtime::{self, StatsUnavailable};
use crate::output;
use crate::store::journal::Journal;
use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::rc::Rc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::signal::unix::{signal, SignalKind};
use tokio::task::JoinSet;

/// How often the daemon tries the API again while it is failing (to stop failing static
/// soon after it recovers), at most: `reconcile_interval` when that is shorter.
const RECONCILE_FAILING: Duration = Duration::from_secs(10);
/// How often the account's droplet limit (and the size's price) are read again.
const ACCOUNT_EVERY: Duration = Duration::from_secs(24 * 3600);
/// A quiet daemon still prints its state this often.
const HEARTBEAT: Duration = Duration::from_secs(60);
/// How often the leader lists the droplets to settle creates another process left in the
/// journal, at most: `reconcile_interval` when that is shorter.
const SETTLE_EVERY: Duration = Duration::from_secs(5);

/// What `doproxy autoscale` was asked to do.
#[derive(Debug, Clone, Copy, Default)]
pub struct Options {
    /// One evaluation, then exit (for cron).
    pub once: bool,
    /// Decide and print; change nothing.
    pub dry_run: bool,
}

/// One decision as printed (`-o json`: one object a line) and kept in the state file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Line {
    /// When (RFC 3339).
    pub time: String,
    /// This node acts (the only one, or the etcd leader).
    pub leader: bool,
    /// `--dry-run`: nothing was done.
    pub dry_run: bool,
    /// The signals the decision read (all nodes' together).
    pub signals: Option<serde_json::Value>,
    /// The fleet by role.
    pub current: Fleet,
    /// How many droplets should serve.
    pub desired: Option<u32>,
    /// What was decided.
    pub action: Action,
    /// Why (the policy's reason, snake_case; or `follower`, `store_unreadable`).
    pub reason: String,
    /// The bound that cut it, if one did.
    pub limited_by: Option<serde_json::Value>,
    /// The droplets admitted, parked and sent to be deleted by this decision.
    #[serde(default)]
    pub admitted: Vec<u64>,
    /// See `admitted`.
    #[serde(default)]
    pub parked: Vec<u64>,
    /// See `admitted`.
    #[serde(default)]
    pub deleting: Vec<u64>,
}

/// The state file beside the installed config (`<installed>.autoscale.json`): the last
/// decision (for `status`) and the stabilization window (for the next `--once` or a
/// restarted daemon).
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct StateFile {
    /// The last decision printed.
    pub last: Option<Line>,
    /// (Unix seconds, recommendation, scale-down recommendation).
    #[serde(default)]
    pub window: Vec<(f64, u32, u32)>,
}

/// The state file's path for the installed config `installed`.
pub fn state_path(installed: &std::path::Path) -> PathBuf {
    let mut s = installed.as_os_str().to_owned();
    s.push(".autoscale.json");
    PathBuf::from(s)
}

/// Reads the state file (a missing or unreadable one is empty: it only holds history).
pub fn load_state(installed: &std::path::Path) -> StateFile {
    std::fs::read_to_string(state_path(installed))
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or_default()
}

fn unix_now() -> Duration {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
}

/// Runs the autoscaler (see the module's documentation).
pub async fn run(ctx: Rc<Ctx>, opts: Options) -> Result<()> {
    let Some(settings) = ctx.cfg.autoscale.clone() else {
        return Err(usage_error(format!(
            "{}: no autoscale: section; add one (`autoscale: {{}}` takes every default, see doproxy.yml.example)",
            ctx.cfg.path.display()
        )));
    };
    if ctx.cfg.haproxy.values.stats_socket.is_none() {
        return Err(usage_error(format!(
            "{}: haproxy.stats_socket is null: the autoscaler reads its signals from HAProxy's stats socket",
            ctx.cfg.path.display()
        )));
    }
    // The daemon prints its own lines; the commands it runs print no result objects.
    output::json_results_off();
    let local = tokio::task::LocalSet::new();
    local
        .run_until(Daemon::new(ctx, settings, opts).run())
        .await
}

/// What a finished background operation was.
enum Op {
    Create(u32),
    Delete(u64),
    Roles,
    Settle,
}

struct Daemon {
    ctx: Rc<Ctx>,
    opts: Options,
    controller: Controller,
    /// The clock's origin: the controller's clock is Unix time, so that a saved window
    /// means the same to the next process.
    prev: Option<Reading>,
    api: ApiState,
    api_until: Option<Instant>,
    last_reconcile: Option<Instant>,
    ops: JoinSet<(Op, Result<()>)>,
    /// Droplets a delete task is working on.
    deleting: BTreeSet<u64>,
    /// The account's `droplet_limit` (`GET /v2/account`), once read.
    droplet_limit: Option<u32>,
    /// The size's hourly price (`GET /v2/sizes`), when `max_hourly_cost` needs one and the
    /// config gives none.
    price: Option<f64>,
    /// When the account and the price were last read.
    account_read: Option<Instant>,
    /// Tagged droplets outside the inventory at the last listing (they count against the
    /// account's limit too).
    orphans: u32,
    /// Create tasks whose names are not in the journal yet: (count, reserved yet).
    unreserved: Vec<(u32, Rc<std::cell::Cell<bool>>)>,
    /// Create tasks running.
    creates: u32,
    /// When the leader last tried to settle creates left in the journal.
    last_settle: Option<Instant>,
    /// A task settling them is running (the leader decides nothing meanwhile).
    settling: bool,
    /// Role changes made in HAProxy and not yet in the journal (id → standby).
    pending_roles: BTreeMap<u64, bool>,
    last_line: Option<Line>,
    last_print: Option<Instant>,
    last_save: Option<Instant>,
    clock: Duration,
    /// What `metrics_listen` serves.
    metrics: Rc<std::cell::RefCell<Metrics>>,
    /// This node's name among the load balancers.
    node: String,
    /// The autoscaler's leadership, while this node holds it.
    leadership: Option<crate::store::etcd::Leadership>,
    /// The leader's lease TTL (the etcd inventory's `lock_ttl`).
    leader_ttl: Duration,
}

/// One node's signals as published in etcd for the leader.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
struct Published {
    /// When they were read (Unix seconds).
    at: f64,
    in_flight: Option<f64>,
    queued: Option<f64>,
    request_rate: Option<f64>,
    queue_time_ms: Option<f64>,
    response_time_ms: Option<f64>,
    error_rate: Option<f64>,
}

impl Published {
    fn of(s: &crate::autoscale::Signals, now: Duration) -> Published {
        Published {
            at: now.saturating_sub(s.age).as_secs_f64(),
            in_flight: s.in_flight,
            queued: s.queued,
            request_rate: s.request_rate,
            queue_time_ms: s.queue_time_ms,
            response_time_ms: s.response_time_ms,
            error_rate: s.error_rate,
        }
    }

    fn signals(&self, now: Duration) -> crate::autoscale::Signals {
        let at = if self.at.is_finite() && self.at >= 0.0 {
            Duration::from_secs_f64(self.at)
        } else {
            Duration::ZERO
        };
        crate::autoscale::Signals {
            age: now.saturating_sub(at),
            in_flight: self.in_flight,
            queued: self.queued,
            request_rate: self.request_rate,
            queue_time_ms: self.queue_time_ms,
            response_time_ms: self.response_time_ms,
            error_rate: self.error_rate,
        }
    }
}

/// The daemon's figures for Prometheus (`metrics_listen`).
#[derive(Debug, Default)]
struct Metrics {
    last: Option<Line>,
    decisions: BTreeMap<String, u64>,
}

impl Metrics {
    /// The Prometheus text exposition format.
    fn render(&self) -> String {
        let mut out = String::new();
        let mut metric = |name: &str, help: &str, kind: &str, rows: Vec<(String, f64)>| {
            out.push_str(&format!("# HELP {name} {help}\n# TYPE {name} {kind}\n"));
            for (labels, v) in rows {
                out.push_str(&format!("{name}{labels} {v}\n"));
            }
        };
        if let Some(l) = &self.last {
            metric(
                "doproxy_autoscale_desired_servers",
                "Serving droplets the last decision asked for.",
                "gauge",
                l.desired
                    .map(|d| (String::new(), f64::from(d)))
                    .into_iter()
                    .collect(),
            );
            let c = &l.current;
            metric(
                "doproxy_autoscale_servers",
                "Droplets by role.",
                "gauge",
                [
                    ("serving", c.serving),
                    ("standby", c.standby),
                    ("booting", c.booting),
                    ("draining", c.draining),
                ]
                .iter()
                .map(|(r, n)| (format!("{{role=\"{r}\"}}"), f64::from(*n)))
                .collect(),
            );
            metric(
                "doproxy_autoscale_leader",
                "1 when this node's autoscaler acts.",
                "gauge",
                vec![(String::new(), if l.leader { 1.0 } else { 0.0 })],
            );
            let signals: Vec<(String, f64)> = l
                .signals
                .as_ref()
                .and_then(|s| s.as_object())
                .map(|o| {
                    o.iter()
                        .filter_map(|(k, v)| Some((format!("{{name=\"{k}\"}}"), v.as_f64()?)))
                        .collect()
                })
                .unwrap_or_default();
            metric(
                "doproxy_autoscale_signal",
                "The signals the last decision read (age in seconds; times in ms; rates per second).",
                "gauge",
                signals,
            );
        }
        metric(
            "doproxy_autoscale_decisions_total",
            "Decisions taken, by reason.",
            "counter",
            self.decisions
                .iter()
                .map(|(r, n)| (format!("{{reason=\"{r}\"}}"), *n as f64))
                .collect(),
        );
        out
    }
}

/// Serves `GET /metrics` on `addr` (any other path: 404) until the daemon stops.
async fn serve_metrics(
    listener: tokio::net::TcpListener,
    metrics: Rc<std::cell::RefCell<Metrics>>,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    loop {
        let Ok((mut sock, _)) = listener.accept().await else {
            continue;
        };
        let metrics = metrics.clone();
        tokio::task::spawn_local(async move {
            let mut buf = Vec::new();
            let mut chunk = [0u8; 1024];
            let read = async {
                while !buf.windows(4).any(|w| w == b"\r\n\r\n") && buf.len() < 8192 {
                    match sock.read(&mut chunk).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
            };
            if tokio::time::timeout(Duration::from_secs(5), read)
                .await
                .is_err()
            {
                return;
            }
            let head = String::from_utf8_lossy(&buf);
            let path = head.split_whitespace().nth(1).unwrap_or("");
            let (status, body) = if head.starts_with("GET ")
                && (path == "/metrics" || path.starts_with("/metrics?"))
            {
                ("200 OK", metrics.borrow().render())
            } else {
                ("404 Not Found", "not found; try /metrics\n".to_string())
            };
            let reply = format!(
                "HTTP/1.1 {status}\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = sock.write_all(reply.as_bytes()).await;
        });
    }
}

impl Daemon {
    fn new(ctx: Rc<Ctx>, settings: Settings, opts: Options) -> Daemon {
        let node = ctx.node_name();
        let leader_ttl = match &ctx.cfg.store.backend {
            crate::store::Backend::Etcd(e) => e.lock_ttl,
            _ => Duration::from_secs(10),
        };
        let mut controller = Controller::new(settings.clone());
        let now = unix_now();
        let keep = settings.stabilization_down.max(settings.stabilization_up);
        let saved: Vec<(Duration, u32, u32)> = load_state(&ctx.cfg.haproxy.installed_cfg)
            .window
            .into_iter()
            .filter(|(t, _, _)| t.is_finite() && *t >= 0.0)
            .map(|(t, a, b)| (Duration::from_secs_f64(t), a, b))
            .filter(|(t, _, _)| *t <= now && now - *t <= keep)
            .collect();
        controller.remember(&saved);
        Daemon {
            ctx,
            opts,
            controller,
            prev: None,
            api: ApiState::Ok,
            api_until: None,
            last_reconcile: None,
            ops: JoinSet::new(),
            deleting: BTreeSet::new(),
            unreserved: Vec::new(),
            droplet_limit: None,
            price: None,
            account_read: None,
            orphans: 0,
            creates: 0,
            last_settle: None,
            settling: false,
            pending_roles: BTreeMap::new(),
            last_line: None,
            last_print: None,
            last_save: None,
            clock: now,
            metrics: Rc::default(),
            node,
            leadership: None,
            leader_ttl,
        }
    }

    /// The controller's clock: Unix time, never going backwards.
    fn now(&mut self) -> Duration {
        self.clock = self.clock.max(unix_now());
        self.clock
    }

    async fn run(mut self) -> Result<()> {
        let mut term = signal(SignalKind::terminate()).context("cannot handle SIGTERM")?;
        let mut int = signal(SignalKind::interrupt()).context("cannot handle SIGINT")?;
        let tick = self.controller.settings().tick;
        if let (Some(addr), false) = (self.controller.settings().metrics_listen, self.opts.once) {
            let listener = tokio::net::TcpListener::bind(addr)
                .await
                .with_context(|| format!("autoscale.metrics_listen: cannot listen on {addr}"))?;
            note(&format!("serving metrics on http://{addr}/metrics"));
            tokio::task::spawn_local(serve_metrics(listener, self.metrics.clone()));
        }
        if self.opts.once {
            let work = async {
                // The rates (requests, 5xx) need two samples.
                self.sample().await;
                tokio::time::sleep(tick).await;
                self.step(true).await;
                while let Some(done) = self.ops.join_next().await {
                    self.finished(done);
                }
            };
            tokio::select! {
                () = work => {}
                _ = term.recv() => return Err(self.ctx.interrupted("SIGTERM").await),
                _ = int.recv() => return Err(self.ctx.interrupted("SIGINT").await),
            }
            return Ok(());
        }
        note(&format!(
            "autoscaling {} every {tick:.1?}{}",
            self.ctx.store.describe(),
            if self.opts.dry_run {
                " (dry run: nothing is changed)"
            } else {
                ""
            }
        ));
        let mut interval = tokio::time::interval(tick);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = term.recv() => break,
                _ = int.recv() => break,
                _ = interval.tick() => self.step(false).await,
                Some(done) = self.ops.join_next(), if !self.ops.is_empty() => self.finished(done),
            }
        }
        // Creates and deletes in flight stop where they are: the journal has each of them
        // (the next command adopts an interrupted create, finishes an interrupted delete).
        let running = self.ops.len();
        self.ops.abort_all();
        while self.ops.join_next().await.is_some() {}
        if running > 0 {
            let what = self.ctx.interrupted("SIGTERM").await;
            note(&format!(
                "stopping: {running} operation(s) interrupted: {what:#}"
            ));
        }
        if let Some(l) = self.leadership.take() {
            if let Err(e) = l.resign().await {
                warn(&format!(
                    "autoscale: giving up the leadership: {e:#} (it lapses by itself)"
                ));
            }
        }
        note("autoscaler stopped");
        Ok(())
    }

    /// Reads HAProxy's stats; keeps the reading as the previous one for the rates.
    async fn sample(&mut self) -> Option<(Reading, Option<Reading>)> {
        let timeout = self
            .controller
            .settings()
            .stale_after
            .min(Duration::from_secs(2));
        let at = self.now();
        match runtime::sample(&self.ctx.cfg.haproxy.values, timeout).await {
            Ok(sample) => {
                let cur = Reading { at, sample };
                let prev = self.prev.replace(cur.clone());
                Some((cur, prev))
            }
            Err(e) => {
                // A gap: the next sample's rates are not measured across it.
                self.prev = None;
                let why = match e {
                    StatsUnavailable::NotConfigured => "haproxy.stats_socket is null".into(),
                    StatsUnavailable::Unreachable(w) => w,
                };
                log::debug!("autoscale: no stats sample: {why}");
                None
            }
        }
    }

    /// One evaluation.
    async fn step(&mut self, once: bool) {
        let reading = self.sample().await;
        let (inv, mut journal) = match self.read_store().await {
            Ok(x) => x,
            Err(e) => {
                warn(&format!(
                    "autoscale: {e:#}; doing nothing until the store can be read"
                ));
                let line = self.line_without_decision("store_unreadable", Fleet::default());
                self.print(line, once);
                return;
            }
        };
        for (id, standby) in &self.pending_roles {
            journal.standby.retain(|s| s != id);
            if *standby {
                journal.standby.push(*id);
            }
        }
        let stats = reading
            .as_ref()
            .map(|(r, _)| r.sample.servers.clone())
            .unwrap_or_default();
        let mut roster = Roster::new(&inv, &journal, &stats);
        // A create just started is on its way before the journal shows it.
        self.unreserved.retain(|(_, r)| !r.get());
        let unreserved: u32 = self.unreserved.iter().map(|(n, _)| n).sum();
        roster.creating = roster.creating.saturating_add(unreserved);
        for m in &mut roster.members {
            if self.deleting.contains(&m.id) {
                m.role = live::Role::Draining;
            }
        }
        if !self.opts.dry_run && reading.is_some() {
            self.fix_weights(&roster).await;
        }
        let now = self.now();
        let own = reading
            .as_ref()
            .map(|(cur, prev)| live::signals(prev.as_ref(), cur, &roster, now));
        // What a new leader holds for `stabilization_down`: the droplets serving or booting
        // to serve (booting standbys and creates in flight refill the pool).
        let hold = roster
            .members
            .iter()
            .filter(|m| {
                m.role == live::Role::Serving || (m.role == live::Role::Booting && !m.standby)
            })
            .count();
        let hold = u32::try_from(hold).unwrap_or(u32::MAX);
        if !self.lead(own.as_ref(), hold, now).await {
            let mut line = self.line_without_decision("follower", roster.fleet());
            line.leader = false;
            line.signals = own.as_ref().and_then(|s| serde_json::to_value(s).ok());
            self.print(line, once);
            return;
        }
        // Intents no create of ours is working on (a leader killed mid-create) would count
        // as booting droplets: they are settled beside the loop, and nothing is decided
        // until that is done.
        if !self.opts.dry_run && self.creates == 0 && !journal.creating.is_empty() {
            self.settle_creates();
        }
        if self.settling {
            return;
        }
        let signals = match self.all_signals(own, now).await {
            Ok(s) => s,
            Err(e) => {
                warn(&format!(
                    "autoscale: reading the other nodes' signals: {e:#}"
                ));
                None
            }
        };
        self.reconcile(&inv).await;
        // The account's room: its limit minus every droplet doproxy knows of (the inventory,
        // creates on their way, the deployment's orphans). Droplets of other deployments on
        // the account are not counted: the API's own refusal covers them.
        let known = u32::try_from(inv.len())
            .unwrap_or(u32::MAX)
            .saturating_add(roster.creating)
            .saturating_add(self.orphans);
        let snap = Snapshot {
            now,
            signals,
            fleet: roster.fleet(),
            api: self.api_state(),
            droplet_headroom: self.droplet_limit.map(|l| l.saturating_sub(known)),
            hourly_price: self.price,
        };
        let d = self.controller.tick(&snap);
        let line = if self.opts.dry_run {
            self.line_from(&d, snap.fleet)
        } else {
            self.act(&d, &roster, once).await
        };
        self.print(line, once);
        self.save(once);
    }

    /// Publishes this node's signals (etcd) and holds or seeks the leadership; true when
    /// this node acts.
    async fn lead(
        &mut self,
        own: Option<&crate::autoscale::Signals>,
        hold: u32,
        now: Duration,
    ) -> bool {
        if let Some(s) = own {
            let text = serde_json::to_string(&Published::of(s, now)).unwrap_or_default();
            if let Err(e) = self
                .ctx
                .store
                .publish_signals(&self.node, &text, self.leader_ttl)
                .await
            {
                log::debug!("autoscale: publishing this node's signals: {e:#}");
            }
        }
        if self.leadership.as_ref().is_some_and(|l| l.is_lost()) {
            warn("autoscale: the leadership was lost (its lease expired); standing by");
            self.leadership = None;
        }
        if self.leadership.is_none() {
            let wait = (self.controller.settings().tick / 4).min(Duration::from_millis(250));
            match self
                .ctx
                .store
                .try_lead(&self.node, self.leader_ttl, wait)
                .await
            {
                Ok(Some(l)) => {
                    if l.key().is_some() {
                        note(&format!("autoscale: this node ({}) leads", self.node));
                    }
                    // A leader with no saved window (a first start, a takeover) watches
                    // for `stabilization_down` before it scales in: its window starts
                    // now, holding the fleet it found.
                    if self.controller.window().is_empty() {
                        self.controller.remember(&[(now, hold, hold)]);
                    }
                    self.leadership = Some(l);
                }
                Ok(None) => {}
                Err(e) => log::debug!("autoscale: seeking the leadership: {e:#}"),
            }
        }
        self.leadership.is_some()
    }

    /// The signals the leader decides on: every node's latest (etcd), this node's own
    /// fresh sample in place of its published copy. With one load balancer, its own.
    async fn all_signals(
        &self,
        own: Option<crate::autoscale::Signals>,
        now: Duration,
    ) -> Result<Option<crate::autoscale::Signals>> {
        let Some(own) = own else { return Ok(None) };
        let published = self.ctx.store.published_signals().await?;
        let mut all = vec![own];
        for (node, text) in published {
            if node == self.node {
                continue;
            }
            match serde_json::from_str::<Published>(&text) {
                Ok(p) => all.push(p.signals(now)),
                // A node whose signals cannot be read: fail static, never read as zero.
                Err(_) => return Ok(None),
            }
        }
        Ok(live::combine(&all))
    }

    async fn read_store(&self) -> Result<(Vec<u64>, Journal)> {
        let inv = self.ctx.store.load().await?;
        let journal = self.ctx.store.journal().await?;
        Ok((inv.ids, journal))
    }

    fn api_state(&mut self) -> ApiState {
        if self.api_until.is_some_and(|t| Instant::now() >= t) && self.api == ApiState::RateLimited
        {
            // The limit has reset; the next call tells.
            self.api = ApiState::Ok;
            self.api_until = None;
        }
        self.api
    }

    /// Notes what an API failure says about the API (a 429 is a rate limit until its
    /// reset; anything else from the API is an error).
    fn api_failed(&mut self, e: &anyhow::Error) {
        let Some(de) = e
            .chain()
            .find_map(|c| c.downcast_ref::<crate::digitalocean::Error>())
        else {
            return;
        };
        if de.status() == Some(429) {
            self.api = ApiState::RateLimited;
            self.api_until =
                Some(Instant::now() + de.retry_after().unwrap_or(Duration::from_secs(60)));
        } else {
            self.api = ApiState::Erroring;
        }
    }

    /// The reconciling list: once a minute (every 10 s while the API fails).
    async fn reconcile(&mut self, inv: &[u64]) {
        let every = self.controller.settings().reconcile_interval;
        let every = if self.api == ApiState::Ok {
            every
        } else {
            every.min(RECONCILE_FAILING)
        };
        if self.last_reconcile.is_some_and(|t| t.elapsed() < every) {
            return;
        }
        self.last_reconcile = Some(Instant::now());
        let inventory = crate::inventory::Inventory { ids: inv.to_vec() };
        self.read_account().await;
        match self.ctx.fleet(&inventory).await {
            Ok(fleet) => {
                self.api = ApiState::Ok;
                self.api_until = None;
                self.orphans = u32::try_from(fleet.orphans.len()).unwrap_or(u32::MAX);
                fleet.warn_orphans(self.ctx.tag(), &self.ctx.store.describe());
            }
            Err(e) => {
                warn(&format!("autoscale: listing the droplets: {e:#}"));
                self.api_failed(&e);
            }
        }
    }

    /// Reads the account's droplet limit and, when `max_hourly_cost` needs it and the config
    /// names none, the size's price: at the start, then once a day (two requests).
    async fn read_account(&mut self) {
        if self
            .account_read
            .is_some_and(|t| t.elapsed() < ACCOUNT_EVERY && self.droplet_limit.is_some())
        {
            return;
        }
        self.account_read = Some(Instant::now());
        match self.ctx.client.droplet_limit().await {
            Ok(l) => self.droplet_limit = Some(l),
            Err(e) => {
                warn(&format!(
                    "autoscale: reading the account's droplet limit: {e}"
                ));
                self.api_failed(&anyhow::Error::new(e));
            }
        }
        let st = self.controller.settings();
        if st.max_hourly_cost.is_some() && st.hourly_price.is_none() {
            let size = self.ctx.cfg.droplet.size.clone();
            match self.ctx.client.hourly_price(&size).await {
                Ok(Some(p)) => self.price = Some(p),
                Ok(None) => warn(&format!(
                    "autoscale: GET /v2/sizes does not list {size:?}: no price for max_hourly_cost (set autoscale.hourly_price); no action until one is known"
                )),
                Err(e) => {
                    warn(&format!("autoscale: reading the price of {size}: {e}"));
                    self.api_failed(&anyhow::Error::new(e));
                }
            }
        }
    }

    /// Starts [`settle`] beside the loop, at most every `SETTLE_EVERY` (the
    /// `reconcile_interval` when shorter), unless it is running.
    fn settle_creates(&mut self) {
        let every = self
            .controller
            .settings()
            .reconcile_interval
            .min(SETTLE_EVERY);
        if self.settling || self.last_settle.is_some_and(|t| t.elapsed() < every) {
            return;
        }
        self.last_settle = Some(Instant::now());
        self.settling = true;
        let ctx = self.ctx.clone();
        self.ops
            .spawn_local(async move { (Op::Settle, settle(&ctx).await) });
    }

    /// Keeps this node's HAProxy weights in step with the journal (a standby at weight 0, a
    /// serving server above it), whoever changed the journal.
    async fn fix_weights(&self, roster: &Roster) {
        for (id, w) in roster.weight_fixes() {
            if let Err(e) = runtime::set_weight(&self.ctx.cfg.haproxy.values, id, w).await {
                warn(&format!(
                    "autoscale: cannot set the weight of {}: {e:#}",
                    crate::haproxy::server_name(id)
                ));
            }
        }
    }

    /// Carries `d` out; returns its line.
    async fn act(&mut self, d: &Decision, roster: &Roster, once: bool) -> Line {
        let a = d.action;
        let values = &self.ctx.cfg.haproxy.values;
        let mut admitted = Vec::new();
        for id in roster.to_admit(a.admit) {
            match runtime::set_weight(values, id, 1).await {
                Ok(()) => admitted.push(id),
                Err(e) => warn(&format!(
                    "autoscale: cannot admit {}: {e:#}",
                    crate::haproxy::server_name(id)
                )),
            }
        }
        let mut parked = Vec::new();
        for id in roster.to_park(a.park) {
            match runtime::set_weight(values, id, 0).await {
                Ok(()) => parked.push(id),
                Err(e) => warn(&format!(
                    "autoscale: cannot park {}: {e:#}",
                    crate::haproxy::server_name(id)
                )),
            }
        }
        if !admitted.is_empty() || !parked.is_empty() {
            for id in &admitted {
                self.pending_roles.insert(*id, false);
            }
            for id in &parked {
                self.pending_roles.insert(*id, true);
            }
            let ctx = self.ctx.clone();
            let (admit, park) = (admitted.clone(), parked.clone());
            self.ops.spawn_local(async move {
                let r = ctx
                    .locked(async || {
                        ctx.store
                            .update_journal(|j| {
                                j.standby
                                    .retain(|s| !admit.contains(s) && !park.contains(s));
                                j.standby.extend(park.iter().copied());
                            })
                            .await
                            .map(|_| ())
                    })
                    .await;
                (Op::Roles, r)
            });
        }
        let deleting = roster.to_delete(a.delete, &parked);
        for id in &deleting {
            self.deleting.insert(*id);
            let ctx = self.ctx.clone();
            let id = *id;
            self.ops.spawn_local(async move {
                let opts = delete::Options {
                    which: delete::Which::Id(id),
                    dry_run: false,
                    force: false,
                };
                (Op::Delete(id), delete::run(&ctx, opts).await)
            });
        }
        if a.create > 0 {
            self.creates += 1;
            let ctx = self.ctx.clone();
            let n = a.create;
            let reserved = Rc::new(std::cell::Cell::new(false));
            self.unreserved.push((n, reserved.clone()));
            self.ops.spawn_local(async move {
                (Op::Create(n), create::run_standby(&ctx, n, &reserved).await)
            });
        }
        if !once {
            // Let the role change reach the journal before the next tick reads it.
            tokio::task::yield_now().await;
        }
        let snap_fleet = roster.fleet();
        let mut line = self.line_from(d, snap_fleet);
        line.admitted = admitted;
        line.parked = parked;
        line.deleting = deleting;
        line
    }

    /// A background operation ended.
    fn finished(&mut self, done: std::result::Result<(Op, Result<()>), tokio::task::JoinError>) {
        let Ok((op, result)) = done else {
            // A task that panicked: a settle is tried again later.
            self.settling = false;
            return;
        };
        match (&op, &result) {
            (Op::Delete(id), _) => {
                self.deleting.remove(id);
            }
            (Op::Create(_), _) => self.creates = self.creates.saturating_sub(1),
            (Op::Settle, _) => self.settling = false,
            (Op::Roles, Ok(())) => self.pending_roles.clear(),
            _ => {}
        }
        if let Err(e) = result {
            let what = match op {
                Op::Create(n) => format!("creating {n} droplet(s)"),
                Op::Delete(id) => format!("deleting droplet {id}"),
                Op::Roles => {
                    self.pending_roles.clear();
                    "recording the standby pool in the journal".to_string()
                }
                Op::Settle => "settling interrupted creates".to_string(),
            };
            warn(&format!("autoscale: {what}: {e:#}"));
            self.api_failed(&e);
        }
    }

    fn line_from(&self, d: &Decision, current: Fleet) -> Line {
        Line {
            time: output::timestamp(SystemTime::now()),
            leader: true,
            dry_run: self.opts.dry_run,
            signals: d
                .signals
                .as_ref()
                .and_then(|s| serde_json::to_value(s).ok()),
            current,
            desired: Some(d.desired),
            action: d.action,
            reason: json_name(&d.reason),
            limited_by: d
                .limited_by
                .as_ref()
                .and_then(|l: &Limit| serde_json::to_value(l).ok()),
            admitted: Vec::new(),
            parked: Vec::new(),
            deleting: Vec::new(),
        }
    }

    fn line_without_decision(&self, reason: &str, current: Fleet) -> Line {
        Line {
            time: output::timestamp(SystemTime::now()),
            leader: true,
            dry_run: self.opts.dry_run,
            signals: None,
            current,
            desired: None,
            action: Action::default(),
            reason: reason.into(),
            limited_by: None,
            admitted: Vec::new(),
            parked: Vec::new(),
            deleting: Vec::new(),
        }
    }

    /// Prints `line` when it says something new (an action, another reason or count, a
    /// minute of quiet, or `--once`).
    fn print(&mut self, line: Line, once: bool) {
        {
            let mut m = self.metrics.borrow_mut();
            *m.decisions.entry(line.reason.clone()).or_default() += 1;
            m.last = Some(line.clone());
        }
        let same = self.last_line.as_ref().is_some_and(|l| {
            l.reason == line.reason
                && l.current == line.current
                && l.desired == line.desired
                && l.leader == line.leader
                && l.limited_by == line.limited_by
        });
        let quiet_long = self.last_print.is_none_or(|t| t.elapsed() >= HEARTBEAT);
        if once || !line.action.is_none() || !same || quiet_long {
            if output::is_json() {
                output::json_line(&line);
            } else {
                say(&text(&line));
            }
            self.last_print = Some(Instant::now());
        }
        self.last_line = Some(line);
    }

    /// Writes the state file (at most every few seconds; never in a dry run).
    fn save(&mut self, force: bool) {
        if self.opts.dry_run
            || (!force
                && self
                    .last_save
                    .is_some_and(|t| t.elapsed() < Duration::from_secs(5)))
        {
            return;
        }
        self.last_save = Some(Instant::now());
        let state = StateFile {
            last: self.last_line.clone(),
            window: self
                .controller
                .window()
                .into_iter()
                .map(|(t, a, b)| (t.as_secs_f64(), a, b))
                .collect(),
        };
        let path = state_path(&self.ctx.cfg.haproxy.installed_cfg);
        let text = serde_json::to_string(&state).unwrap_or_default();
        if let Err(e) = crate::fsutil::write_atomic(&path, format!("{text}\n").as_bytes()) {
            warn(&format!(
                "autoscale: cannot write {}: {e:#}",
                path.display()
            ));
        }
    }
}

/// An enum's snake_case JSON name.
fn json_name<T: Serialize>(v: &T) -> String {
    match serde_json::to_value(v) {
        Ok(serde_json::Value::String(s)) => s,
        _ => String::new(),
    }
}

/// The text form of a decision line.
pub fn text(l: &Line) -> String {
    let c = &l.current;
    let mut s = format!(
        "{} serving {}, standby {}, booting {}, draining {}",
        l.time, c.serving, c.standby, c.booting, c.draining
    );
    if let Some(d) = l.desired {
        s.push_str(&format!("; desired {d}"));
    }
    let a = &l.action;
    let mut did = Vec::new();
    if a.admit > 0 {
        did.push(format!("admit {}", a.admit));
    }
    if a.park > 0 {
        did.push(format!("park {}", a.park));
    }
    if a.create > 0 {
        did.push(format!("create {}", a.create));
    }
    if a.delete > 0 {
        did.push(format!("delete {}", a.delete));
    }
    s.push_str(": ");
    s.push_str(&if did.is_empty() {
        "no change".to_string()
    } else {
        did.join(", ")
    });
    s.push_str(&format!(" ({})", l.reason.replace('_', " ")));
    if l.dry_run {
        s.push_str(" [dry run]");
    }
    if !l.leader {
        s.push_str(" [follower]");
    }
    s
}

/// Settles the creates another process left in the journal (a leader killed mid-create:
/// its intents would count as booting droplets for ever, its droplets stay orphans).
/// Under the lock, after one listing: an intent whose droplet is in the inventory is
/// dropped (its create recorded it and stopped before settling it). The others wait until
/// every one is older than `api_timeout` (a running create has recorded its droplets by
/// then): a journaled droplet found among the tagged ones is then marked a standby first
/// and adopted into the inventory (so no node serves it unparked), an intent absent for
/// longer than `not_found_grace` is dropped.
async fn settle(ctx: &Ctx) -> Result<()> {
    let young = ctx.cfg.api.timeout.as_secs().max(1);
    ctx.locked(async || {
        let mut inv = ctx.store.load().await?;
        let journal = ctx.store.journal().await?;
        if journal.creating.is_empty() {
            return Ok(());
        }
        let mut fleet = ctx.fleet(&inv).await?;
        let recorded: Vec<String> = journal
            .creating
            .iter()
            .filter(|i| {
                inv.ids.iter().any(|id| {
                    fleet
                        .by_id
                        .get(id)
                        .is_some_and(|d| d.name.eq_ignore_ascii_case(&i.name))
                })
            })
            .map(|i| i.name.clone())
            .collect();
        if !recorded.is_empty() {
            ctx.store
                .update_journal(|j| j.creating.retain(|i| !recorded.contains(&i.name)))
                .await?;
        }
        let now = crate::store::journal::now();
        let rest: Vec<_> = journal
            .creating
            .iter()
            .filter(|i| !recorded.contains(&i.name))
            .collect();
        if rest.is_empty() || rest.iter().any(|i| now.saturating_sub(i.since) < young) {
            return Ok(());
        }
        let spares: Vec<u64> = fleet
            .orphans
            .iter()
            .filter(|d| rest.iter().any(|i| d.name.eq_ignore_ascii_case(&i.name)))
            .map(|d| d.id)
            .collect();
        if !spares.is_empty() {
            ctx.store
                .update_journal(|j| {
                    for id in &spares {
                        if !j.standby.contains(id) {
                            j.standby.push(*id);
                        }
                    }
                })
                .await?;
        }
        ctx.settle_journal(&mut inv, &mut fleet).await
    })
    .await
}
