//! Autoscaler benchmark: the live daemon (`doproxy -o json autoscale`, the real binary)
//! against do-sim and a real HAProxy, all on 127.0.0.0/8, under a closed-loop load that
//! goes through HAProxy's frontend.
//!
//! Two scenarios, each in a fresh world (1 serving droplet from `doproxy create`, then the
//! daemon fills `standby: 2` through the create path), each stopping by itself within
//! [`SCENARIO_LIMIT`]:
//! - **step**: the load steps from 2 to 8 workers (4×): more than the serving droplet and
//!   both standbys carry at the target, so a cold create is needed too;
//! - **ramp**: the load grows linearly from 2 to 16 workers, past the standby pool and past
//!   `max`.
//!
//! Measured: the time from the step (the ramp's start) to the first request served by an
//! admitted standby and by a droplet created after it; failed requests; API calls (do-sim's
//! request log); droplet-seconds (the sim's live droplets, sampled every 100 ms); peak
//! droplets against `max`. One Markdown table on stdout; progress on stderr.
//!
//! Besides the table, stderr gets each scenario's summary, every decision that acted, the
//! daemon's stderr, and what HAProxy showed of any droplet put in rotation before a check of
//! its passed. `AS_SCENARIOS=step` (or `ramp`) runs one scenario; `AS_VERBOSE=1` prints every
//! decision line.
//!
//! Run: `nice cargo bench --bench autoscale`. Needs `haproxy` and `socat` on PATH; exits
//! non-zero when one is missing or a step fails.

// Bench code: a failed unwrap is a failed run, with its message.
#![allow(clippy::unwrap_used)]
// The benchmark prints its table itself.
#![allow(clippy::disallowed_macros)]

// `doproxy_command`: the harness's isolated doproxy command, one copy for tests and benches.
#[path = "../tests/support/command.rs"]
mod command;

use anyhow::{bail, Context, Result};
use do_sim::sandbox::load::Load;
use do_sim::sandbox::{self, DoproxyConfig};
use do_sim::{RequestRecord, Sim, SimOptions};
use doproxy::haproxy::runtime::parse_show_stat;
use doproxy::store::journal::Journal;
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

const TOKEN: &str = "bench-token-a7c31e";
/// Simulated API latency per request.
const LATENCY: Duration = Duration::from_millis(50);
/// Simulated time from create to `active` (the create delay).
const ACTIVE_AFTER: Duration = Duration::from_secs(2);
/// After `active`, the app accepts connections this much later (the boot).
const APP_BOOT_DELAY: Duration = Duration::from_secs(1);
/// Every app request (health checks included) takes this long.
const SERVICE_TIME: Duration = Duration::from_millis(50);
/// HAProxy's health-check interval (`fall 3 rise 2` in the built-in template).
const CHECK_INTER: &str = "300ms";
/// doproxy's `poll_interval` (how often a create polls the API for `active`).
const POLL_INTERVAL: &str = "1s";
/// The daemon's `autoscale.tick`.
const TICK: &str = "200ms";
const MIN: u32 = 1;
const MAX: u32 = 6;
const STANDBY: u32 = 2;
/// `targets.sessions_per_server`: one closed-loop worker keeps one request in flight.
const TARGET_SESSIONS: f64 = 2.0;
/// Workers before the step / at the ramp's start: what the serving droplet carries.
const BASE_WORKERS: usize = 2;
/// Step: 4× the base load.
const STEP_WORKERS: usize = 8;
/// Ramp: up to this many workers (desired 8 > max 6).
const RAMP_WORKERS: usize = 16;
/// Load before the step / before the ramp starts.
const LEAD_IN: Duration = Duration::from_secs(3);
/// Load after the step.
const STEP_HOLD: Duration = Duration::from_secs(15);
/// The ramp's length (2 → 16 workers), then its hold at 16.
const RAMP_LEN: Duration = Duration::from_secs(24);
const RAMP_HOLD: Duration = Duration::from_secs(8);
/// Each scenario, setup and teardown included, ends within this.
const SCENARIO_LIMIT: Duration = Duration::from_secs(60);
/// How often the sampler reads the sim's droplets and HAProxy's servers.
const SAMPLE_EVERY: Duration = Duration::from_millis(100);
/// Upper bound for `doproxy create` in the setup.
const RUN_TIMEOUT: Duration = Duration::from_secs(30);
const BACKEND: &str = "www-backend";

static T0: OnceLock<Instant> = OnceLock::new();

fn progress(msg: &str) {
    let t = T0.get().map_or(0.0, |t| t.elapsed().as_secs_f64());
    eprintln!("[autoscale {t:7.1}s] {msg}");
}

fn main() -> ExitCode {
    let started = *T0.get_or_init(Instant::now);
    // `cargo bench` passes `--bench`; there are no options to parse.
    let result = run();
    let total = started.elapsed().as_secs_f64();
    match result {
        Ok(()) => {
            println!("\nTotal bench wall time: {total:.1} s");
            progress("done");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("autoscale bench FAILED after {total:.1} s: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<()> {
    let haproxy = require_tool("haproxy", "-v")?;
    require_tool("socat", "-V")?;
    // AS_SCENARIOS=step or =ramp runs one of them (default: both).
    let only = std::env::var("AS_SCENARIOS").unwrap_or_default();
    let want = |name: &str| only.is_empty() || only.contains(name);
    let mut results = Vec::new();
    if want("step") {
        results.push(scenario(Scenario::Step)?);
    }
    if want("ramp") {
        results.push(scenario(Scenario::Ramp)?);
    }
    print_table(&haproxy, &results);
    Ok(())
}

/// The tool's first line of `tool arg`, or a clear error when it does not run.
fn require_tool(tool: &str, arg: &str) -> Result<String> {
    let out = Command::new(tool)
        .arg(arg)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| {
            anyhow::anyhow!(
                "this benchmark needs `{tool}` on PATH ({e}); install it (apt-get install {tool})"
            )
        })?;
    let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
    if text.trim().is_empty() {
        text = String::from_utf8_lossy(&out.stderr).into_owned();
    }
    Ok(text.lines().next().unwrap_or("").trim().to_string())
}

// ---------------------------------------------------------------------------------------
// The world: do-sim, a temp dir with doproxy.yml, HAProxy, the daemon
// ---------------------------------------------------------------------------------------

struct World {
    dir: tempfile::TempDir,
    sim: Sim,
    frontend_port: u16,
    daemon: Option<Child>,
}

impl World {
    fn new() -> Result<World> {
        let backend_port = sandbox::free_port()?;
        let opts = SimOptions {
            token: TOKEN.to_string(),
            latency: LATENCY,
            active_after: ACTIVE_AFTER,
            app_boot_delay: APP_BOOT_DELAY,
            app_service_time: SERVICE_TIME,
            serve_apps: true,
            backend_port,
            rate_limit_per_minute: None,
            rate_limit_per_hour: 100_000,
            droplet_limit: 100,
            ..SimOptions::default()
        };
        let sim = Sim::start(opts).context("starting do-sim")?;
        let url = sim.url();
        if !url.starts_with("http://127.") {
            bail!("do-sim is not on loopback: {url}");
        }
        let dir = tempfile::tempdir().context("creating a temp dir")?;
        let frontend_port = sandbox::free_port()?;
        let mut c =
            DoproxyConfig::loopback(dir.path(), &url, TOKEN, backend_port, frontend_port, true);
        c.ssh_key_ids = None;
        c.poll_interval = Some(POLL_INTERVAL.into());
        c.wait_timeout = Some("60s".into());
        c.api_timeout = Some("10s".into());
        c.haproxy.check_inter = Some(CHECK_INTER.into());
        c.set_raw(
            "autoscale",
            json!({
                "min": MIN, "max": MAX, "standby": STANDBY, "tick": TICK,
                "targets": {"sessions_per_server": TARGET_SESSIONS},
            }),
        );
        sandbox::prepare_dir(dir.path(), &c, sandbox::TEST_USER_DATA)
            .context("writing doproxy.yml")?;
        Ok(World {
            dir,
            sim,
            frontend_port,
            daemon: None,
        })
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    fn frontend(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.frontend_port))
    }

    fn command(&self, args: &[&str]) -> Command {
        command::doproxy_command(self.dir.path(), &self.sim.url(), args)
    }

    /// `doproxy ARGS`, bounded by [`RUN_TIMEOUT`] (killed by PID past it); must exit 0.
    fn doproxy(&self, args: &[&str]) -> Result<Output> {
        let mut child = self
            .command(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .context("spawning doproxy")?;
        let deadline = Instant::now() + RUN_TIMEOUT;
        loop {
            if child.try_wait()?.is_some() {
                break;
            }
            if Instant::now() >= deadline {
                kill_child(&mut child);
                bail!(
                    "`doproxy {}` did not finish within {RUN_TIMEOUT:?}",
                    args.join(" ")
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let out = child.wait_with_output()?;
        if !out.status.success() {
            bail!(
                "`doproxy {}` failed ({})\n{}",
                args.join(" "),
                out.status,
                String::from_utf8_lossy(&out.stderr).trim_end()
            );
        }
        Ok(out)
    }

    /// Starts `doproxy -o json autoscale`, its output in `autoscale.log` / `autoscale.err`.
    fn start_daemon(&mut self) -> Result<()> {
        let log = std::fs::File::create(self.path("autoscale.log"))?;
        let err = std::fs::File::create(self.path("autoscale.err"))?;
        let child = self
            .command(&["-o", "json", "autoscale"])
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(err)
            .spawn()
            .context("starting doproxy autoscale")?;
        self.daemon = Some(child);
        Ok(())
    }

    /// SIGTERM to the daemon (our child, by PID); its exit status, or an error when it had
    /// to be killed.
    fn stop_daemon(&mut self) -> Result<std::process::ExitStatus> {
        let Some(mut child) = self.daemon.take() else {
            bail!("the daemon was not running");
        };
        if let Some(status) = child.try_wait()? {
            return Ok(status);
        }
        signal(child.id(), "TERM");
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Some(status) = child.try_wait()? {
                return Ok(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        kill_child(&mut child);
        bail!("the daemon did not exit within 10 s of SIGTERM; killed it")
    }

    /// `show stat` on the stats socket: (id, state, weight) of each server. A server whose
    /// first check has not ended (check status `INI`) counts as `INI`, not `UP`: HAProxy
    /// shows a new server UP until its checks say otherwise.
    fn servers(&self) -> Vec<(u64, String, u64)> {
        let Ok(text) = stats_command(&self.path("admin.sock"), "show stat") else {
            return Vec::new();
        };
        parse_show_stat(&text, BACKEND)
            .into_iter()
            .filter_map(|s| {
                let checked = s
                    .check_status
                    .as_deref()
                    .is_some_and(|c| !c.trim_start_matches("* ").starts_with("INI"));
                let state = if checked { s.state() } else { "INI".into() };
                Some((s.id?, state, s.weight?))
            })
            .collect()
    }

    /// `show stat` as (server, status, weight, check status), for error messages.
    fn servers_debug(&self) -> String {
        let Ok(text) = stats_command(&self.path("admin.sock"), "show stat") else {
            return "(no stats socket)".into();
        };
        parse_show_stat(&text, BACKEND)
            .into_iter()
            .map(|s| {
                format!(
                    "{} {} w{:?} {:?}",
                    s.server, s.status, s.weight, s.check_status
                )
            })
            .collect::<Vec<_>>()
            .join("; ")
    }

    fn journal(&self) -> Journal {
        let text = std::fs::read_to_string(self.path("inventory.journal")).unwrap_or_default();
        Journal::parse("inventory.journal", &text).unwrap_or_default()
    }

    /// Standbys booted, UP and parked at weight 0.
    fn parked_standbys(&self) -> BTreeSet<u64> {
        let j = self.journal();
        self.servers()
            .into_iter()
            .filter(|(id, st, w)| j.standby.contains(id) && st == "UP" && *w == 0)
            .map(|(id, _, _)| id)
            .collect()
    }

    /// Servers UP with a weight above 0.
    fn serving(&self) -> BTreeSet<u64> {
        self.servers()
            .into_iter()
            .filter(|(_, st, w)| st == "UP" && *w > 0)
            .map(|(id, _, _)| id)
            .collect()
    }
}

impl Drop for World {
    fn drop(&mut self) {
        if let Some(mut child) = self.daemon.take() {
            signal(child.id(), "TERM");
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline && matches!(child.try_wait(), Ok(None)) {
                std::thread::sleep(Duration::from_millis(20));
            }
            kill_child(&mut child);
        }
        // The HAProxy doproxy's first reload started: TERM to the master named in the
        // world's pidfile (as the tests' TestEnv does), if it is still a haproxy.
        let Ok(text) = std::fs::read_to_string(self.path("haproxy.pid")) else {
            return;
        };
        let Ok(pid) = text.trim().parse::<u32>() else {
            return;
        };
        let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
        if comm.trim() != "haproxy" {
            return;
        }
        signal(pid, "TERM");
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline && Path::new(&format!("/proc/{pid}")).exists() {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// Kills an unreaped child of ours (so its PID is still its own) and reaps it.
fn kill_child(child: &mut Child) {
    if matches!(child.try_wait(), Ok(None)) {
        let _ = child.kill();
        let _ = child.wait();
    }
}

fn signal(pid: u32, sig: &str) -> bool {
    Command::new("kill")
        .args([format!("-{sig}"), pid.to_string()])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn stats_command(sock: &Path, command: &str) -> std::io::Result<String> {
    let mut s = std::os::unix::net::UnixStream::connect(sock)?;
    s.set_read_timeout(Some(Duration::from_secs(2)))?;
    s.write_all(format!("{command}\n").as_bytes())?;
    let mut out = String::new();
    s.read_to_string(&mut out)?;
    Ok(out)
}

fn wait_for(what: &str, deadline: Instant, mut cond: impl FnMut() -> bool) -> Result<()> {
    while !cond() {
        if Instant::now() >= deadline {
            bail!("timed out waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Load and sampling
// ---------------------------------------------------------------------------------------

/// What the sampler saw at one moment.
#[derive(Debug, Clone)]
struct Sample {
    at: Duration,
    /// The sim's live droplets (any status).
    droplets: BTreeSet<u64>,
    /// HAProxy's servers UP with a weight above 0.
    serving: BTreeSet<u64>,
    /// Servers with a weight above 0, whatever their state.
    in_rotation: BTreeSet<u64>,
    /// Servers UP after a check.
    checked: BTreeSet<u64>,
    /// Load workers active then.
    workers: usize,
    /// Every server as `show stat` showed it: (id, state, weight).
    servers: Vec<(u64, String, u64)>,
}

// ---------------------------------------------------------------------------------------
// Scenarios
// ---------------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq)]
enum Scenario {
    Step,
    Ramp,
}

impl Scenario {
    fn name(self) -> &'static str {
        match self {
            Scenario::Step => "step",
            Scenario::Ramp => "ramp",
        }
    }

    fn workers(self) -> usize {
        match self {
            Scenario::Step => STEP_WORKERS,
            Scenario::Ramp => RAMP_WORKERS,
        }
    }

    /// How long the load runs.
    fn length(self) -> Duration {
        match self {
            Scenario::Step => LEAD_IN + STEP_HOLD,
            Scenario::Ramp => LEAD_IN + RAMP_LEN + RAMP_HOLD,
        }
    }

    /// Active workers `t` after the load's start.
    fn active_at(self, t: Duration) -> usize {
        if t < LEAD_IN {
            return BASE_WORKERS;
        }
        match self {
            Scenario::Step => STEP_WORKERS,
            Scenario::Ramp => {
                let f = ((t - LEAD_IN).as_secs_f64() / RAMP_LEN.as_secs_f64()).min(1.0);
                BASE_WORKERS + ((RAMP_WORKERS - BASE_WORKERS) as f64 * f).floor() as usize
            }
        }
    }
}

/// One scenario's figures.
struct Figures {
    scenario: Scenario,
    setup: Duration,
    setup_api: usize,
    /// From the step (the ramp's start) to the first admission seen on the stats socket.
    first_admit: Option<Duration>,
    first_standby_served: Option<Duration>,
    first_cold_served: Option<Duration>,
    /// Ramp: when the load first exceeded what the serving droplet and the standbys carry
    /// at the target (since the ramp's start).
    exceeded_pool: Option<Duration>,
    total: usize,
    failed: usize,
    api: Vec<RequestRecord>,
    droplet_seconds: f64,
    /// Server-seconds below the capacity the load asked for (ceil(workers / target),
    /// capped at `max`), over the measured window.
    short_seconds: f64,
    peak_serving: usize,
    /// Droplets seen with a weight above 0 before any check of theirs had passed.
    unchecked: BTreeSet<u64>,

    peak_droplets: usize,
    end_droplets: usize,
    window: Duration,
    decisions: Decisions,
    daemon_exit: String,
    warnings: Vec<String>,
    /// `limited_by` of the last decision, from the daemon's state file.
    last_limited_by: String,
}

#[derive(Debug, Default)]
struct Decisions {
    lines: usize,
    admit: u64,
    create: u64,
    park: u64,
    delete: u64,
    max_desired: u64,
    /// The decisions that did something, one compact line each.
    actions: Vec<String>,
}

fn decisions(text: &str) -> Decisions {
    let mut d = Decisions::default();
    for line in text.lines() {
        let Ok(v) = serde_json::from_str::<Value>(line) else {
            continue;
        };
        d.lines += 1;
        let a = &v["action"];
        let n = |k: &str| a[k].as_u64().unwrap_or(0);
        d.admit += n("admit");
        d.create += n("create");
        d.park += n("park");
        d.delete += n("delete");
        d.max_desired = d.max_desired.max(v["desired"].as_u64().unwrap_or(0));
        if ["admit", "create", "park", "delete"]
            .iter()
            .any(|k| n(k) > 0)
        {
            let c = &v["current"];
            let s = &v["signals"];
            d.actions.push(format!(
                "{} serving/standby/booting {}/{}/{}, in_flight {:.1}, rate {:.0}/s, desired {}: \
                 admit {} create {} park {} delete {} ({}) admitted {} parked {}",
                v["time"].as_str().unwrap_or(""),
                c["serving"],
                c["standby"],
                c["booting"],
                s["in_flight"].as_f64().unwrap_or(f64::NAN),
                s["request_rate"].as_f64().unwrap_or(f64::NAN),
                v["desired"],
                n("admit"),
                n("create"),
                n("park"),
                n("delete"),
                v["reason"].as_str().unwrap_or(""),
                v["admitted"],
                v["parked"]
            ));
        }
    }
    d
}

/// The droplets seen in rotation (weight > 0, in any state) before any sample had seen them
/// UP after a check: admitted before they were known to answer. `serving` and `standbys`
/// passed theirs in the setup.
fn never_checked_in_rotation(
    samples: &[Sample],
    serving: &BTreeSet<u64>,
    standbys: &BTreeSet<u64>,
) -> BTreeSet<u64> {
    let mut passed: BTreeSet<u64> = serving.union(standbys).copied().collect();
    let mut out = BTreeSet::new();
    for s in samples {
        passed.extend(s.checked.iter().copied());
        out.extend(
            s.in_rotation
                .iter()
                .filter(|id| !passed.contains(id))
                .copied(),
        );
    }
    out
}

fn scenario(sc: Scenario) -> Result<Figures> {
    let begun = Instant::now();
    let deadline = begun + SCENARIO_LIMIT;
    progress(&format!("scenario {}: setting up", sc.name()));
    let mut w = World::new()?;
    w.doproxy(&["create"])?;
    let first = w.serving();
    wait_for("the first droplet UP in HAProxy", deadline, || {
        w.serving().len() == 1
    })?;
    w.start_daemon()?;
    wait_for(
        &format!("{STANDBY} parked standbys"),
        deadline - sc.length() - Duration::from_secs(5),
        || w.parked_standbys().len() == STANDBY as usize,
    )?;
    // Let the daemon see the full pool for a few ticks.
    std::thread::sleep(Duration::from_millis(600));
    let standbys = w.parked_standbys();
    let serving0 = w.serving();
    if serving0.len() != 1 || standbys.len() != STANDBY as usize {
        bail!(
            "setup: serving {serving0:?} (first {first:?}), parked standbys {standbys:?}\nHAProxy: {}\njournal: {:?}\n{}",
            w.servers_debug(),
            w.journal(),
            std::fs::read_to_string(w.path("autoscale.err")).unwrap_or_default()
        );
    }
    let setup = begun.elapsed();
    let setup_api = w.sim.requests().len();
    progress(&format!(
        "  setup done in {:.1} s ({setup_api} API calls): serving {serving0:?}, standbys {standbys:?}",
        setup.as_secs_f64()
    ));

    w.sim.clear_requests();
    let length = sc.length();
    let mut load = Load::start(w.frontend(), sc.workers(), BASE_WORKERS, length);
    let started = load.started;
    let mut samples: Vec<Sample> = Vec::new();
    let mut known_at_step: Option<BTreeSet<u64>> = None;
    let mut last_active = BASE_WORKERS;
    progress(&format!(
        "  load: {BASE_WORKERS} workers for {} s, then {}",
        LEAD_IN.as_secs(),
        match sc {
            Scenario::Step => format!("{STEP_WORKERS} for {} s", STEP_HOLD.as_secs()),
            Scenario::Ramp => format!(
                "+1 worker every {:.2} s up to {RAMP_WORKERS}, held {} s",
                RAMP_LEN.as_secs_f64() / (RAMP_WORKERS - BASE_WORKERS) as f64,
                RAMP_HOLD.as_secs()
            ),
        }
    ));
    while started.elapsed() < length {
        let t = started.elapsed();
        let active = sc.active_at(t);
        if active != last_active {
            load.set_active(active);
            last_active = active;
        }
        let droplets: BTreeSet<u64> = w.sim.droplets().iter().map(|d| d.id).collect();
        if t >= LEAD_IN && known_at_step.is_none() {
            known_at_step = Some(droplets.clone());
        }
        let servers = w.servers();
        let ids = |keep: &dyn Fn(&str, u64) -> bool| -> BTreeSet<u64> {
            servers
                .iter()
                .filter(|(_, st, wt)| keep(st, *wt))
                .map(|(id, _, _)| *id)
                .collect()
        };
        samples.push(Sample {
            at: t,
            droplets,
            serving: ids(&|st, wt| st == "UP" && wt > 0),
            in_rotation: ids(&|_, wt| wt > 0),
            checked: ids(&|st, _| st == "UP"),
            workers: active,
            servers,
        });
        if Instant::now() >= deadline {
            bail!("scenario {} ran past {SCENARIO_LIMIT:?}", sc.name());
        }
        let next = SAMPLE_EVERY.saturating_sub(started.elapsed().saturating_sub(t));
        std::thread::sleep(next);
    }
    let answers = load.stop();
    let window = started.elapsed();
    let api = w.sim.requests();
    let status = w.stop_daemon()?;
    let log = std::fs::read_to_string(w.path("autoscale.log")).unwrap_or_default();
    let err = std::fs::read_to_string(w.path("autoscale.err")).unwrap_or_default();
    let warnings: Vec<String> = err
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(str::to_string)
        .collect();
    let known = known_at_step.unwrap_or_default();
    let state =
        std::fs::read_to_string(w.path("etc/haproxy.cfg.autoscale.json")).unwrap_or_default();
    let last_limited_by = serde_json::from_str::<Value>(&state)
        .map(|v| v["last"]["limited_by"].to_string())
        .unwrap_or_else(|_| "(no state file)".into());

    let after = |pred: &dyn Fn(u64) -> bool| {
        answers
            .iter()
            .filter(|a| a.status == 200 && a.at >= LEAD_IN && a.id.is_some_and(pred))
            .map(|a| a.at - LEAD_IN)
            .min()
    };
    let first_standby_served = after(&|id| standbys.contains(&id));
    let first_cold_served = after(&|id| !known.contains(&id));
    let first_admit = samples
        .iter()
        .find(|s| s.at >= LEAD_IN && s.serving.iter().any(|id| standbys.contains(id)))
        .map(|s| s.at - LEAD_IN);
    let pool_capacity = f64::from(1 + STANDBY) * TARGET_SESSIONS;
    let exceeded_pool = samples
        .iter()
        .find(|s| s.workers as f64 > pool_capacity * 1.1)
        .map(|s| s.at.saturating_sub(LEAD_IN));

    let mut droplet_seconds = 0.0;
    let mut short_seconds = 0.0;
    for pair in samples.windows(2) {
        let dt = (pair[1].at - pair[0].at).as_secs_f64();
        droplet_seconds += pair[0].droplets.len() as f64 * dt;
        let wanted = ((pair[0].workers as f64 / TARGET_SESSIONS).ceil() as usize).min(MAX as usize);
        short_seconds += wanted.saturating_sub(pair[0].serving.len()) as f64 * dt;
    }
    if let Some(last) = samples.last() {
        droplet_seconds += last.droplets.len() as f64 * (window - last.at).as_secs_f64();
    }
    let failed = answers.iter().filter(|a| a.status != 200).count();
    let f = Figures {
        scenario: sc,
        setup,
        setup_api,
        first_admit,
        first_standby_served,
        first_cold_served,
        exceeded_pool: (sc == Scenario::Ramp).then_some(exceeded_pool).flatten(),
        total: answers.len(),
        failed,
        api,
        droplet_seconds,
        short_seconds,
        peak_serving: samples.iter().map(|s| s.serving.len()).max().unwrap_or(0),
        unchecked: never_checked_in_rotation(&samples, &serving0, &standbys),
        peak_droplets: samples.iter().map(|s| s.droplets.len()).max().unwrap_or(0),
        end_droplets: samples.last().map_or(0, |s| s.droplets.len()),
        window,
        decisions: decisions(&log),
        daemon_exit: status.to_string(),
        last_limited_by,
        warnings,
    };
    progress(&format!(
        "  {}: {} requests, {} failed; standby served +{}, cold served +{}; {} API calls; \
         {:.1} droplet-s; peak serving {} / droplets {}; daemon {}",
        sc.name(),
        f.total,
        f.failed,
        opt_secs(f.first_standby_served),
        opt_secs(f.first_cold_served),
        f.api.len(),
        f.droplet_seconds,
        f.peak_serving,
        f.peak_droplets,
        f.daemon_exit
    ));
    for l in &f.warnings {
        progress(&format!("  daemon stderr: {l}"));
    }
    for id in &f.unchecked {
        // What HAProxy showed of it, one entry per change: t (s since the load's start),
        // state (`INI`: first check since a reload not ended), weight.
        let mut seen: Vec<String> = Vec::new();
        let mut last = None;
        for s in &samples {
            let now = s
                .servers
                .iter()
                .find(|(i, _, _)| i == id)
                .map(|(_, st, w)| (st.clone(), *w));
            if now != last {
                seen.push(match &now {
                    Some((st, w)) => format!("{:.1} {st} w{w}", s.at.as_secs_f64()),
                    None => format!("{:.1} absent", s.at.as_secs_f64()),
                });
                last = now;
            }
        }
        progress(&format!(
            "  {id} was in rotation before any check of its passed: {}",
            seen.join(", ")
        ));
    }
    for l in &f.decisions.actions {
        progress(&format!("  action: {l}"));
    }
    if std::env::var_os("AS_VERBOSE").is_some() {
        for l in log.lines() {
            progress(&format!("  decision: {l}"));
        }
    }
    drop(w);
    progress(&format!(
        "  scenario {} done in {:.1} s",
        sc.name(),
        begun.elapsed().as_secs_f64()
    ));
    Ok(f)
}

// ---------------------------------------------------------------------------------------
// The table
// ---------------------------------------------------------------------------------------

fn opt_secs(d: Option<Duration>) -> String {
    d.map_or("never".into(), |d| format!("{:.2}", d.as_secs_f64()))
}

fn api_breakdown(reqs: &[RequestRecord]) -> String {
    let posts = reqs.iter().filter(|r| r.method == "POST").count();
    let lists = reqs
        .iter()
        .filter(|r| r.method == "GET" && r.path == "/v2/droplets")
        .count();
    let deletes = reqs.iter().filter(|r| r.method == "DELETE").count();
    let other = reqs.len() - posts - lists - deletes;
    format!(
        "{} ({posts} POST, {lists} list, {deletes} DELETE, {other} other)",
        reqs.len()
    )
}

fn print_table(haproxy: &str, results: &[Figures]) {
    let nproc = std::thread::available_parallelism().map_or(0, |n| n.get());
    println!("# doproxy autoscale bench\n");
    println!(
        "- Machine: nproc {nproc}; {haproxy}; date {}",
        first_line("date", &["-u", "+%Y-%m-%d %H:%M UTC"])
    );
    println!(
        "- do-sim: {} ms per API request, droplets active {} s after create, apps up {} s later, \
         {} ms per app request; HAProxy checks every {CHECK_INTER} (rise 2, fall 3)",
        LATENCY.as_millis(),
        ACTIVE_AFTER.as_secs(),
        APP_BOOT_DELAY.as_secs(),
        SERVICE_TIME.as_millis()
    );
    println!(
        "- doproxy: `autoscale: {{min: {MIN}, max: {MAX}, standby: {STANDBY}, tick: {TICK}, \
         targets: {{sessions_per_server: {TARGET_SESSIONS}}}}}`, poll_interval {POLL_INTERVAL}"
    );
    println!(
        "- Load: closed-loop workers, one `Connection: close` GET after another through HAProxy; \
         step {BASE_WORKERS} → {STEP_WORKERS} workers at t = {} s; ramp {BASE_WORKERS} → {RAMP_WORKERS} \
         over {} s from t = {} s, then held {} s\n",
        LEAD_IN.as_secs(),
        RAMP_LEN.as_secs(),
        LEAD_IN.as_secs(),
        RAMP_HOLD.as_secs()
    );
    let head: Vec<&str> = results.iter().map(|f| f.scenario.name()).collect();
    println!("| metric | {} |", head.join(" | "));
    println!("|---|{}", "---:|".repeat(results.len()));
    let row = |name: &str, cell: &dyn Fn(&Figures) -> String| {
        let cells: Vec<String> = results.iter().map(cell).collect();
        println!("| {name} | {} |", cells.join(" | "));
    };
    row(
        "setup: 1 serving + 2 standbys parked (s, API calls)",
        &|f| format!("{:.1} s, {}", f.setup.as_secs_f64(), f.setup_api),
    );
    row(
        "first standby admitted (weight > 0 on the stats socket), s after the step",
        &|f| opt_secs(f.first_admit),
    );
    row(
        "**first request served by an admitted standby**, s after the step",
        &|f| format!("**{}**", opt_secs(f.first_standby_served)),
    );
    row(
        "load exceeds 1 + standby servers at the target, s after the step",
        &|f| match f.scenario {
            Scenario::Step => "0.00".into(),
            Scenario::Ramp => opt_secs(f.exceeded_pool),
        },
    );
    row(
        "**first request served by a cold-created droplet**, s after the step",
        &|f| format!("**{}**", opt_secs(f.first_cold_served)),
    );
    row("requests / **failed**", &|f| {
        format!("{} / **{}**", f.total, f.failed)
    });
    row("API calls during the load", &|f| api_breakdown(&f.api));
    row(
        "droplet-seconds (sim's live droplets, sampled every 100 ms)",
        &|f| {
            format!(
                "{:.1} over {:.1} s",
                f.droplet_seconds,
                f.window.as_secs_f64()
            )
        },
    );
    row(
        "server-seconds short of ceil(workers / target) (capped at max)",
        &|f| format!("{:.1}", f.short_seconds),
    );
    row(
        &format!("peak serving (UP, weight > 0) vs max {MAX}"),
        &|f| format!("{} / {MAX}", f.peak_serving),
    );
    row(
        "droplets seen at weight > 0 before any check of theirs passed",
        &|f| f.unchecked.len().to_string(),
    );
    row("peak droplets (all roles) / at the end", &|f| {
        format!("{} / {}", f.peak_droplets, f.end_droplets)
    });
    row(
        "decisions: lines; admitted, created, parked, deleted",
        &|f| {
            let d = &f.decisions;
            format!(
                "{}; {}, {}, {}, {}",
                d.lines, d.admit, d.create, d.park, d.delete
            )
        },
    );
    row(
        "highest desired (printed lines); last decision's limited_by (state file)",
        &|f| format!("{}; {}", f.decisions.max_desired, f.last_limited_by),
    );
    row("daemon exit on SIGTERM; stderr lines", &|f| {
        format!("{}; {}", f.daemon_exit, f.warnings.len())
    });
    println!(
        "\n\"The step\" is the ramp's start for the ramp. \"Cold-created\": a droplet that did not exist \
         at the step. Admission is read from HAProxy every 100 ms, requests as they end (a request \
         takes {} ms), so the two lag the daemon's tick a little. A failure is a non-200 answer or a socket error.",
        SERVICE_TIME.as_millis()
    );
}

fn first_line(cmd: &str, args: &[&str]) -> String {
    Command::new(cmd)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .ok()
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .next()
                .unwrap_or("")
                .trim()
                .to_string()
        })
        .unwrap_or_default()
}
