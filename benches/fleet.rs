//! Fleet benchmark: the real `doproxy` binary against do-sim (the local DigitalOcean API
//! simulator) and a real HAProxy, all on 127.0.0.0/8.
//!
//! Sections (one Markdown table each, on stdout; progress on stderr):
//! 1. `print` with 10/50/200 droplets vs one `GET /v2/droplets/{id}` per inventory line;
//! 2. `create --count N` vs N sequential `create` runs;
//! 3. reloads under load: 20 create/delete cycles while clients hit HAProxy;
//! 4. the binary: start-up time, sampled peak memory, size.
//!
//! Run: `cargo bench -p doproxy --bench fleet`. Exits non-zero when a step fails.

// Test code: a failed unwrap is a failed test, with its message.
#![allow(clippy::unwrap_used)]
// The benchmark prints its tables itself.
#![allow(clippy::disallowed_macros)]

// `doproxy_command`: the harness's isolated doproxy command, one copy for tests and bench.
#[path = "../tests/support/command.rs"]
mod command;

use anyhow::{anyhow, bail, Context, Result};
use do_sim::sandbox::{self, DoproxyConfig, RetryOptions};
use do_sim::{Faults, Sim, SimOptions};
use std::collections::HashSet;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::{mpsc, Arc, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_doproxy");
const TOKEN: &str = "bench-token-4e81c2";
const TAG: &str = "doproxy";
/// Upper bound for one doproxy run (create waits for droplets; everything else is quick).
const RUN_TIMEOUT: Duration = Duration::from_secs(90);
/// Simulated API latency per request.
const LATENCY: Duration = Duration::from_millis(50);
/// Simulated time from create to `active` (sections 1, 2, 4).
const ACTIVE_AFTER: Duration = Duration::from_secs(3);
/// The same for section 3, to keep it short.
const ACTIVE_AFTER_RELOADS: Duration = Duration::from_millis(300);
/// Hard limit for the load generator, whatever happens to the stop flag.
const LOAD_HARD_LIMIT: Duration = Duration::from_secs(300);
const RELOAD_CYCLES: usize = 20;

static T0: OnceLock<Instant> = OnceLock::new();

fn progress(msg: &str) {
    let t = T0.get().map_or(0.0, |t| t.elapsed().as_secs_f64());
    eprintln!("[fleet {t:7.1}s] {msg}");
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
            eprintln!("fleet bench FAILED after {total:.1} s: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<()> {
    // FLEET_SECTIONS=13 runs sections 1 and 3 only (default: all four).
    let only = std::env::var("FLEET_SECTIONS").unwrap_or_default();
    let want = |n: char| only.is_empty() || only.contains(n);
    print_header()?;
    if want('1') {
        section_print()?;
    }
    if want('2') {
        section_create()?;
    }
    if want('3') {
        section_reloads()?;
    }
    if want('4') {
        section_binary()?;
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Environment: simulator, temp dir, config, running doproxy
// ---------------------------------------------------------------------------------------

fn free_port() -> Result<u16> {
    sandbox::free_port().context("binding a free loopback port")
}

fn sim_options(latency: Duration, active_after: Duration) -> Result<SimOptions> {
    Ok(SimOptions {
        token: TOKEN.to_string(),
        latency,
        active_after,
        serve_apps: true,
        backend_port: free_port()?,
        rate_limit_per_minute: None,
        rate_limit_per_hour: 100_000,
        droplet_limit: 1000,
        ..SimOptions::default()
    })
}

/// One temp dir with a `doproxy.yml` pointing at one simulator.
struct World {
    dir: tempfile::TempDir,
    sim: Sim,
    backend_port: u16,
    frontend_port: u16,
}

impl World {
    fn new(opts: SimOptions, haproxy: bool, poll_interval: &str) -> Result<World> {
        let backend_port = opts.backend_port;
        let sim = Sim::start(opts).context("starting do-sim")?;
        let url = sim.url();
        if !url.starts_with("http://127.") {
            bail!("do-sim is not on loopback: {url}");
        }
        let dir = tempfile::tempdir().context("creating a temp dir")?;
        let w = World {
            dir,
            sim,
            backend_port,
            frontend_port: free_port()?,
        };
        sandbox::prepare_dir(
            w.dir.path(),
            &w.config(haproxy, poll_interval),
            sandbox::TEST_USER_DATA,
        )
        .context("writing doproxy.yml")?;
        Ok(w)
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// The tests' loopback config ([`DoproxyConfig::loopback`]) with the bench's own
    /// settings: `poll_interval`, longer waits, doproxy's defaults for the retry policy,
    /// grace, drain, reload verification and check interval, no SSH keys and no
    /// `userdata_file` (the `user-data.yml` [`sandbox::prepare_dir`] writes goes unused).
    fn config(&self, haproxy: bool, poll_interval: &str) -> DoproxyConfig {
        let mut c = DoproxyConfig::loopback(
            self.dir.path(),
            &self.sim.url(),
            TOKEN,
            self.backend_port,
            self.frontend_port,
            haproxy,
        );
        c.ssh_key_ids = None;
        c.userdata_file = None;
        c.poll_interval = Some(poll_interval.to_string());
        c.wait_timeout = Some("60s".into());
        c.api_timeout = Some("10s".into());
        c.lock_timeout = Some("30s".into());
        c.not_found_grace = None;
        c.drain_timeout = None;
        c.reload_verify_timeout = None;
        c.retry = RetryOptions::default();
        c.haproxy.check_inter = None;
        c
    }

    fn write_inventory(&self, ids: &[u64]) -> Result<()> {
        let text: String = ids.iter().map(|id| format!("{id}\n")).collect();
        std::fs::write(self.path("inventory"), text).context("writing the inventory")
    }

    fn inventory(&self) -> Result<Vec<u64>> {
        let text = std::fs::read_to_string(self.path("inventory"))?;
        text.lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(|l| l.parse().map_err(|e| anyhow!("inventory line {l:?}: {e}")))
            .collect()
    }

    fn doproxy(&self, args: &[&str]) -> Result<RunOut> {
        run_doproxy(self.dir.path(), &self.sim.url(), args, false)?.ok(args)
    }

    fn doproxy_sampled(&self, args: &[&str]) -> Result<RunOut> {
        run_doproxy(self.dir.path(), &self.sim.url(), args, true)?.ok(args)
    }

    /// Creates droplets outside doproxy until `ids` has `n`, then waits until all are active.
    fn grow_direct(&self, ids: &mut Vec<u64>, n: usize) -> Result<()> {
        while ids.len() < n {
            let name = format!("auto-nginx-b{:04}", ids.len());
            ids.push(self.sim.create_droplet_direct(&name, &[TAG]));
        }
        wait_active(&self.sim, ids, Duration::from_secs(30))
    }
}

fn wait_active(sim: &Sim, ids: &[u64], timeout: Duration) -> Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        let live = sim.droplets();
        let active = ids
            .iter()
            .filter(|id| {
                live.iter()
                    .any(|d| d.id == **id && d.status == "active" && d.private_ipv4.is_some())
            })
            .count();
        if active == ids.len() {
            return Ok(());
        }
        if Instant::now() >= deadline {
            bail!(
                "only {active} of {} droplets active after {timeout:?}",
                ids.len()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

struct RunOut {
    code: Option<i32>,
    stdout: String,
    stderr: String,
    wall: Duration,
    /// Largest VmHWM seen while polling /proc/<pid>/status, in KiB.
    peak_kib: Option<u64>,
}

impl RunOut {
    fn ok(self, args: &[&str]) -> Result<RunOut> {
        if self.code != Some(0) {
            bail!(
                "`doproxy {}` failed (exit {:?})\nstdout: {}\nstderr: {}",
                args.join(" "),
                self.code,
                self.stdout.trim_end(),
                self.stderr.trim_end()
            );
        }
        if self.stdout.contains(TOKEN) || self.stderr.contains(TOKEN) {
            bail!("`doproxy {}` printed the API token", args.join(" "));
        }
        Ok(self)
    }
}

/// Runs the doproxy binary in `dir`, bounded by [`RUN_TIMEOUT`] (killed by PID past it).
/// With `sample`, polls the child's VmHWM every millisecond.
fn run_doproxy(dir: &Path, sim_url: &str, args: &[&str], sample: bool) -> Result<RunOut> {
    // No DigitalOcean variables from the outside; the metadata service is the sim.
    let mut cmd = command::doproxy_command(dir, sim_url, args);
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());

    let start = Instant::now();
    let child = cmd.spawn().context("spawning doproxy")?;
    let pid = child.id();
    let (tx, rx) = mpsc::channel();
    let waiter = std::thread::spawn(move || {
        let out = child.wait_with_output();
        let end = Instant::now();
        let _ = tx.send((out, end));
    });
    let deadline = start + RUN_TIMEOUT;
    let mut peak: Option<u64> = None;
    let received = loop {
        let now = Instant::now();
        if now >= deadline {
            break None;
        }
        let slice = if sample {
            Duration::from_millis(1)
        } else {
            deadline - now
        };
        match rx.recv_timeout(slice) {
            Ok(r) => break Some(r),
            Err(mpsc::RecvTimeoutError::Timeout) => {
                if sample {
                    if let Some(kib) = vm_hwm_kib(pid) {
                        peak = Some(peak.map_or(kib, |p| p.max(kib)));
                    }
                }
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => bail!("doproxy waiter thread died"),
        }
    };
    let Some((out, end)) = received else {
        // Still unreaped, so the PID is still our child's.
        let _ = Command::new("kill")
            .args(["-KILL", &pid.to_string()])
            .status();
        let _ = rx.recv_timeout(Duration::from_secs(10));
        bail!(
            "`doproxy {}` did not finish within {RUN_TIMEOUT:?}; killed pid {pid}",
            args.join(" ")
        );
    };
    let _ = waiter.join();
    let out = out.context("waiting for doproxy")?;
    Ok(RunOut {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        wall: end - start,
        peak_kib: peak,
    })
}

fn vm_hwm_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

// ---------------------------------------------------------------------------------------
// Statistics and formatting
// ---------------------------------------------------------------------------------------

fn median(v: &[Duration]) -> Duration {
    let mut s = v.to_vec();
    s.sort();
    match s.len() {
        0 => Duration::ZERO,
        n if n % 2 == 1 => s[n / 2],
        n => (s[n / 2 - 1] + s[n / 2]) / 2,
    }
}

fn max(v: &[Duration]) -> Duration {
    v.iter().copied().max().unwrap_or_default()
}

fn ms(d: Duration) -> String {
    format!("{:.1}", d.as_secs_f64() * 1000.0)
}

fn secs(d: Duration) -> String {
    format!("{:.2}", d.as_secs_f64())
}

fn first_line(cmd: &str, args: &[&str]) -> String {
    Command::new(cmd)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .ok()
        .map(|o| {
            let mut t = String::from_utf8_lossy(&o.stdout).into_owned();
            if t.trim().is_empty() {
                t = String::from_utf8_lossy(&o.stderr).into_owned();
            }
            t.lines().next().unwrap_or("").trim().to_string()
        })
        .unwrap_or_else(|| format!("({cmd} not available)"))
}

fn print_header() -> Result<()> {
    let nproc = std::thread::available_parallelism().map_or(0, |n| n.get());
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split_once(':'))
        .map_or("(unknown)", |(_, v)| v.trim());
    let date = first_line("date", &["-u", "+%Y-%m-%d %H:%M:%S UTC"]);
    let haproxy = first_line("haproxy", &["-v"]);
    if !haproxy.starts_with("HAProxy") {
        bail!("haproxy is not installed or does not run: {haproxy}");
    }
    println!("# doproxy fleet bench\n");
    println!("- Machine: nproc {nproc}, CPU `{model}`");
    println!("- Date: {date}");
    println!("- {haproxy}");
    println!("- Binary: `{BIN}`");
    println!(
        "- do-sim: latency {} ms per API request, droplets active {} ms after create (section 3: {} ms), \
         serve_apps on, rate limit per minute off, per hour 100000, droplet_limit 1000; all on 127.0.0.0/8",
        LATENCY.as_millis(),
        ACTIVE_AFTER.as_millis(),
        ACTIVE_AFTER_RELOADS.as_millis()
    );
    println!();
    Ok(())
}

// ---------------------------------------------------------------------------------------
// 1. print
// ---------------------------------------------------------------------------------------

/// The original tool's approach: one `GET /v2/droplets/{id}` per inventory line, in order.
async fn one_get_per_line(client: &reqwest::Client, api: &str, ids: &[u64]) -> Result<usize> {
    let mut lines = 0;
    for id in ids {
        let resp = client
            .get(format!("{api}/v2/droplets/{id}"))
            .bearer_auth(TOKEN)
            .send()
            .await
            .with_context(|| format!("GET droplet {id}"))?;
        if !resp.status().is_success() {
            bail!("GET droplet {id}: HTTP {}", resp.status());
        }
        let v: serde_json::Value = resp.json().await?;
        let d = &v["droplet"];
        let ip = d["networks"]["v4"]
            .as_array()
            .and_then(|a| a.iter().find(|n| n["type"] == "private"))
            .and_then(|n| n["ip_address"].as_str())
            .unwrap_or("");
        // Formatted like the original's line, then dropped: the cost is the fetch.
        let line = format!(
            "{lines}) {}  (pvt ip: {ip}, status: {}, id: {id})",
            d["name"].as_str().unwrap_or(""),
            d["status"].as_str().unwrap_or("")
        );
        if !line.contains("status: active") {
            bail!("droplet {id} is not active: {line}");
        }
        lines += 1;
    }
    Ok(lines)
}

fn section_print() -> Result<()> {
    progress("section 1: print");
    let w = World::new(sim_options(LATENCY, ACTIVE_AFTER)?, false, "1s")?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()?;
    let api = w.sim.url();
    let mut ids = Vec::new();
    let mut rows = Vec::new();
    for n in [10usize, 50, 200] {
        progress(&format!(
            "  {n} droplets: creating in the sim and waiting until active"
        ));
        w.grow_direct(&mut ids, n)?;
        w.write_inventory(&ids)?;

        let mut walls = Vec::new();
        let mut reqs = Vec::new();
        for _ in 0..3 {
            w.sim.clear_requests();
            let r = w.doproxy(&["print"])?;
            reqs.push(w.sim.requests().len());
            let active = r
                .stdout
                .lines()
                .filter(|l| l.contains("status: active"))
                .count();
            if active != n {
                bail!("doproxy print showed {active} active droplets, expected {n}");
            }
            walls.push(r.wall);
        }
        reqs.dedup();
        let doproxy_reqs = reqs
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("/");

        progress(&format!("  {n} droplets: one GET per line"));
        w.sim.clear_requests();
        let t = Instant::now();
        let lines = rt.block_on(one_get_per_line(&client, &api, &ids))?;
        let replay_wall = t.elapsed();
        let replay_reqs = w.sim.requests().len();
        if lines != n {
            bail!("one-GET-per-line replay printed {lines} lines, expected {n}");
        }
        rows.push(format!(
            "| {n} | {doproxy_reqs} | {} | {replay_reqs} | {} |",
            ms(median(&walls)),
            ms(replay_wall)
        ));
    }
    println!("## 1. `doproxy print` vs one GET per inventory line\n");
    println!("| N | doproxy requests | doproxy wall (ms) | one-GET-per-line requests | one-GET-per-line wall (ms) |");
    println!("|---:|---:|---:|---:|---:|");
    for r in rows {
        println!("{r}");
    }
    println!(
        "\ndoproxy: the real binary (process start-up included), median of 3 runs; requests counted by the sim \
         (x/y if runs differed). One-GET-per-line: replayed in-process with reqwest (one pooled keep-alive \
         connection, JSON parsed), 1 run. Sim latency {} ms per request.\n",
        LATENCY.as_millis()
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------
// 2. create --count N vs N × create
// ---------------------------------------------------------------------------------------

fn count_created(stdout: &str) -> usize {
    stdout
        .lines()
        .filter(|l| l.starts_with("Success:") && l.contains("created"))
        .count()
}

fn section_create() -> Result<()> {
    progress("section 2: create --count N vs N x create");
    let w = World::new(sim_options(LATENCY, ACTIVE_AFTER)?, false, "1s")?;
    let mut rows = Vec::new();
    let mut batch = Vec::new();
    for n in [1usize, 5, 10] {
        progress(&format!("  create --count {n}"));
        w.sim.clear_requests();
        let before = w.inventory()?.len();
        let r = w.doproxy(&["create", "--count", &n.to_string()])?;
        let reqs = w.sim.requests();
        let created = count_created(&r.stdout);
        let after = w.inventory()?.len();
        if created != n || after != before + n {
            bail!(
                "create --count {n}: {created} success lines, inventory grew by {}\n{}",
                after - before,
                r.stderr
            );
        }
        let posts = reqs.iter().filter(|q| q.method == "POST").count();
        let lists = reqs
            .iter()
            .filter(|q| q.method == "GET" && q.path == "/v2/droplets")
            .count();
        batch.push((n, r.wall, reqs.len(), posts, lists));
    }

    progress("  10 sequential `create` runs");
    let mut cumulative = Vec::new();
    let mut seq_reqs = Vec::new();
    let t = Instant::now();
    for i in 0..10 {
        w.sim.clear_requests();
        let r = w.doproxy(&["create"])?;
        if count_created(&r.stdout) != 1 {
            bail!("sequential create {i}: no success line\n{}", r.stdout);
        }
        seq_reqs.push(w.sim.requests().len());
        cumulative.push(t.elapsed());
    }
    for (n, wall, reqs, posts, lists) in &batch {
        let seq = cumulative[n - 1];
        let seq_r: usize = seq_reqs[..*n].iter().sum();
        rows.push(format!(
            "| {n} | {} | {} | {reqs} ({posts} POST, {lists} list) | {seq_r} |",
            secs(*wall),
            secs(seq),
        ));
    }
    println!("## 2. `create --count N` vs N sequential `create` runs\n");
    println!("| N | create --count N (s) | N × create (s) | API requests (create --count N) | API requests (N × create) |");
    println!("|---:|---:|---:|---:|---:|");
    for r in rows {
        println!("{r}");
    }
    println!(
        "\nConfig: poll_interval 1s, check_command/reload_command `true` (no HAProxy). Sim: droplets active {} ms after \
         create, {} ms per request. N × create: one series of 10 back-to-back runs; the N = 1 and 5 columns are the \
         elapsed time after its first 1 and 5 runs.\n",
        ACTIVE_AFTER.as_millis(),
        LATENCY.as_millis()
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------
// 3. reloads under load
// ---------------------------------------------------------------------------------------

/// Stops the HAProxy master named in the pidfile (TERM, then waits up to 5 s).
struct HaproxyGuard {
    pidfile: PathBuf,
}

impl Drop for HaproxyGuard {
    fn drop(&mut self) {
        let Ok(text) = std::fs::read_to_string(&self.pidfile) else {
            return;
        };
        let Ok(pid) = text.trim().parse::<u32>() else {
            return;
        };
        let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
        if comm.trim() != "haproxy" {
            return;
        }
        progress(&format!("stopping HAProxy master pid {pid}"));
        let _ = Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline && Path::new(&format!("/proc/{pid}")).exists() {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// `show proc` on the master CLI: (reloads, failed reloads) of the master.
fn master_reloads(sock: &Path) -> Result<(u64, u64)> {
    let mut s = std::os::unix::net::UnixStream::connect(sock)
        .with_context(|| format!("connecting to {}", sock.display()))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    s.write_all(b"show proc\n")?;
    // The master CLI answers and closes once our side is closed.
    s.shutdown(std::net::Shutdown::Write)?;
    let mut out = String::new();
    s.read_to_string(&mut out)
        .context("reading `show proc` from the master CLI")?;
    // `<pid> master <reloads> [failed: <n>] <uptime> <version>`
    let line = out
        .lines()
        .find(|l| l.split_whitespace().nth(1) == Some("master"))
        .ok_or_else(|| anyhow!("no master line in `show proc`: {out}"))?;
    let cols: Vec<&str> = line.split_whitespace().collect();
    let reloads = cols
        .get(2)
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| anyhow!("cannot parse `show proc` line {line:?}"))?;
    let failed = line
        .split_once("failed:")
        .map(|(_, r)| {
            r.trim_start()
                .chars()
                .take_while(char::is_ascii_digit)
                .collect::<String>()
        })
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    Ok((reloads, failed))
}

#[derive(Default)]
struct LoadStats {
    ok: AtomicU64,
    connect_err: AtomicU64,
    io_err: AtomicU64,
    bad_status: AtomicU64,
    /// Keep-alive: the server closed a reused connection before answering.
    ka_closed: AtomicU64,
    ka_requests: AtomicU64,
    ka_reconnects: AtomicU64,
    /// Failures while nothing / a create / a delete was running.
    by_phase: [AtomicU64; 3],
    /// Status codes other than 200 (last seen).
    last_bad: AtomicU64,
}

impl LoadStats {
    fn fail(&self, counter: &AtomicU64, phase: &AtomicU8) {
        counter.fetch_add(1, Ordering::Relaxed);
        let p = usize::from(phase.load(Ordering::Relaxed)).min(2);
        self.by_phase[p].fetch_add(1, Ordering::Relaxed);
    }
    fn failed(&self) -> u64 {
        self.connect_err.load(Ordering::Relaxed)
            + self.io_err.load(Ordering::Relaxed)
            + self.bad_status.load(Ordering::Relaxed)
            + self.ka_closed.load(Ordering::Relaxed)
    }
    fn total(&self) -> u64 {
        self.ok.load(Ordering::Relaxed) + self.failed()
    }
}

/// Load threads; stopping (flag or drop) joins them.
struct LoadGen {
    stop: Arc<AtomicBool>,
    /// Each thread returns the IDs of the droplets that answered it.
    threads: Vec<JoinHandle<HashSet<u64>>>,
}

impl LoadGen {
    fn start(
        addr: SocketAddr,
        close_threads: usize,
        stats: Arc<LoadStats>,
        phase: Arc<AtomicU8>,
    ) -> LoadGen {
        let stop = Arc::new(AtomicBool::new(false));
        let hard_deadline = Instant::now() + LOAD_HARD_LIMIT;
        let mut threads = Vec::new();
        for _ in 0..close_threads {
            let (stop, stats, phase) = (stop.clone(), stats.clone(), phase.clone());
            threads.push(std::thread::spawn(move || {
                let mut seen = HashSet::new();
                while !stop.load(Ordering::Relaxed) && Instant::now() < hard_deadline {
                    if let Some(id) = close_request(addr, &stats, &phase) {
                        seen.insert(id);
                    }
                }
                seen
            }));
        }
        let (stop2, stats2, phase2) = (stop.clone(), stats, phase);
        threads.push(std::thread::spawn(move || {
            keepalive_loop(addr, &stop2, hard_deadline, &stats2, &phase2)
        }));
        LoadGen { stop, threads }
    }

    /// Stops and joins the threads; returns the droplets that answered.
    fn stop(&mut self) -> HashSet<u64> {
        self.stop.store(true, Ordering::Relaxed);
        let mut seen = HashSet::new();
        for t in self.threads.drain(..) {
            if let Ok(s) = t.join() {
                seen.extend(s);
            }
        }
        seen
    }
}

impl Drop for LoadGen {
    fn drop(&mut self) {
        let _ = self.stop();
    }
}

fn connect(addr: SocketAddr) -> std::io::Result<TcpStream> {
    let s = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    s.set_write_timeout(Some(Duration::from_secs(5)))?;
    s.set_nodelay(true)?;
    Ok(s)
}

/// One GET on a fresh connection with `Connection: close`; on a 200, the droplet ID the
/// app's page names.
fn close_request(addr: SocketAddr, stats: &LoadStats, phase: &AtomicU8) -> Option<u64> {
    let Ok(mut s) = connect(addr) else {
        stats.fail(&stats.connect_err, phase);
        return None;
    };
    if s.write_all(b"GET / HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n")
        .is_err()
    {
        stats.fail(&stats.io_err, phase);
        return None;
    }
    let mut buf = Vec::with_capacity(1024);
    if s.read_to_end(&mut buf).is_err() {
        stats.fail(&stats.io_err, phase);
        return None;
    }
    match parse_status(&buf) {
        Some(200) => {
            stats.ok.fetch_add(1, Ordering::Relaxed);
            return page_droplet_id(&buf);
        }
        Some(code) => {
            stats.last_bad.store(u64::from(code), Ordering::Relaxed);
            stats.fail(&stats.bad_status, phase);
        }
        None => stats.fail(&stats.io_err, phase),
    }
    None
}

/// The `ID: <n>` on the sim app's page.
fn page_droplet_id(response: &[u8]) -> Option<u64> {
    let text = String::from_utf8_lossy(response);
    let (_, rest) = text.split_once("ID: ")?;
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

fn parse_status(buf: &[u8]) -> Option<u16> {
    let head = std::str::from_utf8(buf.get(..buf.len().min(64))?).ok()?;
    head.split_whitespace().nth(1)?.parse().ok()
}

enum KaOutcome {
    Ok { close: bool, id: Option<u64> },
    Status(u16),
    ClosedBeforeResponse,
    Io,
}

/// One request on a kept-alive connection; reads exactly one response (Content-Length).
fn ka_request(s: &mut TcpStream) -> KaOutcome {
    if s.write_all(b"GET / HTTP/1.1\r\nHost: bench\r\n\r\n")
        .is_err()
    {
        return KaOutcome::Io;
    }
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break p + 4;
        }
        if buf.len() > 64 * 1024 {
            return KaOutcome::Io;
        }
        match s.read(&mut chunk) {
            Ok(0) if buf.is_empty() => return KaOutcome::ClosedBeforeResponse,
            Ok(0) | Err(_) => return KaOutcome::Io,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
    let Some(status) = parse_status(&buf) else {
        return KaOutcome::Io;
    };
    let header = |name: &str| {
        head.lines()
            .find_map(|l| l.strip_prefix(name).map(|v| v.trim().to_string()))
    };
    let close = header("connection:").is_some_and(|v| v.contains("close"));
    match header("content-length:").and_then(|v| v.parse::<usize>().ok()) {
        Some(len) if len > 1024 * 1024 => return KaOutcome::Io,
        Some(len) => {
            while buf.len() < head_end + len {
                match s.read(&mut chunk) {
                    Ok(0) | Err(_) => return KaOutcome::Io,
                    Ok(n) => buf.extend_from_slice(&chunk[..n]),
                }
            }
        }
        None => {
            // No length: the body ends with the connection.
            let mut rest = Vec::new();
            if s.read_to_end(&mut rest).is_err() {
                return KaOutcome::Io;
            }
            if status == 200 {
                buf.extend_from_slice(&rest);
                return KaOutcome::Ok {
                    close: true,
                    id: page_droplet_id(&buf),
                };
            }
        }
    }
    if status == 200 {
        KaOutcome::Ok {
            close,
            id: page_droplet_id(&buf),
        }
    } else {
        KaOutcome::Status(status)
    }
}

fn keepalive_loop(
    addr: SocketAddr,
    stop: &AtomicBool,
    hard_deadline: Instant,
    stats: &LoadStats,
    phase: &AtomicU8,
) -> HashSet<u64> {
    let mut seen = HashSet::new();
    let mut conn: Option<TcpStream> = None;
    while !stop.load(Ordering::Relaxed) && Instant::now() < hard_deadline {
        if conn.is_none() {
            match connect(addr) {
                Ok(s) => {
                    stats.ka_reconnects.fetch_add(1, Ordering::Relaxed);
                    conn = Some(s);
                }
                Err(_) => {
                    stats.fail(&stats.connect_err, phase);
                    std::thread::sleep(Duration::from_millis(1));
                    continue;
                }
            }
        }
        let Some(s) = conn.as_mut() else { continue };
        stats.ka_requests.fetch_add(1, Ordering::Relaxed);
        match ka_request(s) {
            KaOutcome::Ok { close, id } => {
                stats.ok.fetch_add(1, Ordering::Relaxed);
                seen.extend(id);
                if close {
                    conn = None;
                }
            }
            KaOutcome::Status(code) => {
                stats.last_bad.store(u64::from(code), Ordering::Relaxed);
                stats.fail(&stats.bad_status, phase);
                conn = None;
            }
            KaOutcome::ClosedBeforeResponse => {
                stats.fail(&stats.ka_closed, phase);
                conn = None;
            }
            KaOutcome::Io => {
                stats.fail(&stats.io_err, phase);
                conn = None;
            }
        }
    }
    seen
}

fn wait_serving(addr: SocketAddr, timeout: Duration) -> Result<()> {
    let deadline = Instant::now() + timeout;
    let stats = LoadStats::default();
    let phase = AtomicU8::new(0);
    loop {
        close_request(addr, &stats, &phase);
        if stats.ok.load(Ordering::Relaxed) >= 5 {
            return Ok(());
        }
        if Instant::now() >= deadline {
            bail!("HAProxy on {addr} did not answer 200 within {timeout:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn section_reloads() -> Result<()> {
    progress("section 3: reloads under load (real HAProxy)");
    let w = World::new(sim_options(LATENCY, ACTIVE_AFTER_RELOADS)?, true, "1s")?;
    let _haproxy = HaproxyGuard {
        pidfile: w.path("haproxy.pid"),
    };
    let addr = SocketAddr::from(([127, 0, 0, 1], w.frontend_port));
    progress("  create --count 2 (starts HAProxy)");
    w.doproxy(&["create", "--count", "2"])?;
    if w.inventory()?.len() != 2 {
        bail!("inventory does not hold 2 droplets after create --count 2");
    }
    wait_serving(addr, Duration::from_secs(10))?;
    // Every droplet that was in rotation at some point: the first 2 plus one per cycle.
    let mut in_rotation: HashSet<u64> = w.inventory()?.into_iter().collect();
    let master = w.path("master.sock");
    let (reloads_before, failed_before) = master_reloads(&master)?;

    let stats = Arc::new(LoadStats::default());
    let phase = Arc::new(AtomicU8::new(0));
    let close_threads = 3;
    progress(&format!(
        "  load: {close_threads} Connection: close threads + 1 keep-alive thread; {RELOAD_CYCLES} create/delete cycles"
    ));
    let mut load = LoadGen::start(addr, close_threads, stats.clone(), phase.clone());
    let load_started = Instant::now();
    // Let the load settle before the first cycle.
    std::thread::sleep(Duration::from_millis(500));

    let mut create_walls = Vec::new();
    let mut delete_walls = Vec::new();
    let mut create_reqs = Vec::new();
    let mut delete_reqs = Vec::new();
    for cycle in 0..RELOAD_CYCLES {
        phase.store(1, Ordering::Relaxed);
        w.sim.clear_requests();
        let c = w
            .doproxy(&["create"])
            .with_context(|| format!("cycle {cycle}: create"))?;
        create_reqs.push(w.sim.requests().len());
        create_walls.push(c.wall);
        let inv = w.inventory()?;
        if inv.len() != 3 {
            bail!(
                "cycle {cycle}: inventory has {} lines after create, expected 3",
                inv.len()
            );
        }
        in_rotation.extend(inv.last().copied());
        let last = (inv.len() - 1).to_string();
        phase.store(2, Ordering::Relaxed);
        w.sim.clear_requests();
        let d = w
            .doproxy(&["delete", &last])
            .with_context(|| format!("cycle {cycle}: delete {last}"))?;
        delete_reqs.push(w.sim.requests().len());
        delete_walls.push(d.wall);
        phase.store(0, Ordering::Relaxed);
        if w.inventory()?.len() != 2 {
            bail!("cycle {cycle}: inventory does not hold 2 lines after delete");
        }
        progress(&format!(
            "  cycle {}/{RELOAD_CYCLES}: create {} s, delete {} s, {} requests so far, {} failed",
            cycle + 1,
            secs(c.wall),
            secs(d.wall),
            stats.total(),
            stats.failed()
        ));
    }
    // A little load after the last reload, to catch late failures.
    std::thread::sleep(Duration::from_millis(500));
    let answered = load.stop();
    let load_time = load_started.elapsed();
    let (reloads_after, failed_after) = master_reloads(&master)?;

    let s = &stats;
    let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
    let mut cr = create_reqs.clone();
    cr.sort_unstable();
    let mut dr = delete_reqs.clone();
    dr.sort_unstable();
    println!("## 3. Reloads under load (HAProxy 2.6 master-worker, `kill -USR2`)\n");
    println!("| metric | value |");
    println!("|---|---:|");
    println!("| create/delete cycles | {RELOAD_CYCLES} |");
    println!(
        "| HAProxy reloads during the cycles (master `show proc`) | {} |",
        reloads_after - reloads_before
    );
    println!(
        "| failed reloads (master `show proc`) | {} |",
        failed_after - failed_before
    );
    println!("| total requests | {} |", s.total());
    println!("| failed requests | {} |", s.failed());
    println!(
        "| droplets that answered / droplets that were in rotation | {} / {} |",
        answered.intersection(&in_rotation).count(),
        in_rotation.len()
    );
    println!("| — connect errors | {} |", g(&s.connect_err));
    println!("| — read/write errors | {} |", g(&s.io_err));
    println!(
        "| — non-200 answers | {}{} |",
        g(&s.bad_status),
        if g(&s.bad_status) > 0 {
            format!(" (last: {})", g(&s.last_bad))
        } else {
            String::new()
        }
    );
    println!(
        "| — keep-alive connection closed before an answer | {} |",
        g(&s.ka_closed)
    );
    println!(
        "| failures during create / during delete / between | {} / {} / {} |",
        g(&s.by_phase[1]),
        g(&s.by_phase[2]),
        g(&s.by_phase[0])
    );
    println!(
        "| keep-alive thread: requests / connections | {} / {} |",
        g(&s.ka_requests),
        g(&s.ka_reconnects)
    );
    println!(
        "| load duration / throughput | {} s / {:.0} req/s |",
        secs(load_time),
        s.total() as f64 / load_time.as_secs_f64()
    );
    println!(
        "| `doproxy create` wall, median / max (s) | {} / {} |",
        secs(median(&create_walls)),
        secs(max(&create_walls))
    );
    println!(
        "| `doproxy delete <last line>` wall, median / max (s) | {} / {} |",
        secs(median(&delete_walls)),
        secs(max(&delete_walls))
    );
    println!(
        "| API requests per create, min / median / max | {} / {} / {} |",
        cr[0],
        cr[cr.len() / 2],
        cr[cr.len() - 1]
    );
    println!(
        "| API requests per delete, min / median / max | {} / {} / {} |",
        dr[0],
        dr[dr.len() / 2],
        dr[dr.len() - 1]
    );
    println!(
        "\nSetup: 2 droplets from `doproxy create --count 2`, then each cycle `doproxy create` + `doproxy delete <last line>`. \
         Sim: droplets active {} ms after create, {} ms per API request. doproxy: poll_interval 1s, check `haproxy -dW -c`, \
         reload = start master-worker (`-W -D -p -S`) or `kill -USR2`, built-in template (noreuseport, no chroot/user/log). \
         Load: {close_threads} threads of fresh-connection GETs with `Connection: close` + 1 keep-alive thread, \
         unthrottled, on the same 2 cores as doproxy and HAProxy. A failure is a non-200 answer or a socket error.\n",
        ACTIVE_AFTER_RELOADS.as_millis(),
        LATENCY.as_millis()
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------
// 4. the binary
// ---------------------------------------------------------------------------------------

fn section_binary() -> Result<()> {
    progress("section 4: the binary");
    let w = World::new(sim_options(Duration::ZERO, ACTIVE_AFTER)?, false, "1s")?;

    let mut version = Vec::new();
    w.doproxy(&["--version"])?; // warm-up (page cache), not counted
    for _ in 0..20 {
        version.push(w.doproxy(&["--version"])?.wall);
    }
    let mut print_empty = Vec::new();
    w.doproxy(&["print"])?;
    w.sim.clear_requests();
    for _ in 0..20 {
        let r = w.doproxy(&["print"])?;
        if !r.stdout.contains("inventory file is empty") {
            bail!(
                "print on an empty inventory: unexpected output {:?}",
                r.stdout
            );
        }
        print_empty.push(r.wall);
    }
    let empty_reqs = w.sim.requests().len();

    progress("  memory: 200 droplets, print and create (VmHWM sampled every 1 ms)");
    w.sim.set_faults(Faults {
        latency_ms: Some(LATENCY.as_millis() as u64),
        ..Faults::default()
    });
    let mut ids = Vec::new();
    w.grow_direct(&mut ids, 200)?;
    w.write_inventory(&ids)?;
    let mut print_peak = 0u64;
    let mut print_samples = 0;
    for _ in 0..3 {
        let r = w.doproxy_sampled(&["print"])?;
        if let Some(k) = r.peak_kib {
            print_peak = print_peak.max(k);
            print_samples += 1;
        }
    }
    let c = w.doproxy_sampled(&["create"])?;
    if count_created(&c.stdout) != 1 {
        bail!("create (memory run) printed no success line");
    }
    let create_peak = c.peak_kib;

    let meta = std::fs::metadata(BIN).with_context(|| format!("stat {BIN}"))?;
    let profile_dir = Path::new(BIN)
        .parent()
        .and_then(|p| p.file_name())
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let optimized = if profile_dir == "release" {
        "yes (target/release: the bench profile, optimized)"
    } else {
        "NO (not under target/release)"
    };
    let mib = |kib: u64| format!("{:.1}", kib as f64 / 1024.0);

    println!("## 4. The binary\n");
    println!("| metric | value |");
    println!("|---|---:|");
    println!(
        "| `doproxy --version`, median of 20 (ms) | {} (min {}, max {}) |",
        ms(median(&version)),
        ms(version.iter().copied().min().unwrap_or_default()),
        ms(max(&version))
    );
    println!(
        "| `doproxy print`, empty inventory, sim latency 0, median of 20 (ms) | {} (min {}, max {}; {} API requests in 20 runs) |",
        ms(median(&print_empty)),
        ms(print_empty.iter().copied().min().unwrap_or_default()),
        ms(max(&print_empty)),
        empty_reqs
    );
    println!(
        "| peak RSS `doproxy print`, 200 droplets (MiB, sampled VmHWM, max of 3 runs) | {} |",
        if print_samples > 0 {
            mib(print_peak)
        } else {
            "not sampled (exited too fast)".into()
        }
    );
    println!(
        "| peak RSS `doproxy create`, 200 droplets in inventory (MiB, sampled VmHWM) | {} |",
        create_peak.map_or("not sampled".into(), mib)
    );
    println!(
        "| binary size (MiB) | {:.2} |",
        meta.len() as f64 / (1024.0 * 1024.0)
    );
    println!("| optimized build | {optimized} |");
    println!(
        "\nWall times include process start-up (spawned from this bench; start→wait returns). Peak memory is VmHWM from \
         /proc/<pid>/status polled every 1 ms while the process runs, so it is a sampled lower bound of the true peak.\n"
    );
    Ok(())
}
