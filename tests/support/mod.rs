//! The test harness: a temp dir with a `doproxy.yml` pointing at a fresh do-sim, an
//! optional HAProxy on a free loopback port (started and reloaded by doproxy's own reload
//! command), and helpers to run the binary and make requests through HAProxy.

#![allow(dead_code)]

mod command;
pub mod etcd;
pub mod proc;
pub mod proxy;

pub use do_sim::sandbox::{self, DoproxyConfig, InventoryOptions};
use do_sim::{Sim, SimOptions};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

pub use proc::{
    output_with_deadline, run_with_deadline, signal, try_wait_until, wait_with_deadline,
    RUN_DEADLINE, TOOL_DEADLINE,
};

/// The simulator's token in every test config.
pub const TOKEN: &str = "sim-token-7f3a9c";

/// True when HAProxy can be used; when `CI` is set a missing HAProxy fails the test instead
/// of skipping it.
pub fn haproxy_available() -> bool {
    tool_available("haproxy", "-v")
}

/// True when `socat` and `curl` can be used (the ordering tests' reload command reads
/// HAProxy's stats socket with socat and marks the simulator's log with curl); like
/// [`haproxy_available`], a failure when `CI` is set.
pub fn socat_available() -> bool {
    tool_available("socat", "-V") && tool_available("curl", "--version")
}

/// True when `tool arg` runs; when `CI` is set a missing tool fails the test instead of
/// skipping it.
fn tool_available(tool: &str, arg: &str) -> bool {
    let found = Command::new(tool)
        .arg(arg)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .is_ok_and(|mut c| wait_with_deadline(&mut c, TOOL_DEADLINE).success());
    if !found {
        if std::env::var_os("CI").is_some() {
            panic!("{tool} is not installed, and CI is set: integration tests that need it must not be skipped (scripts/install-deps.sh installs it)");
        }
        eprintln!(
            "SKIPPED: {tool} is not installed (install it, or set CI to make this a failure)"
        );
    }
    found
}

/// A free TCP port on 127.0.0.1 (bound then released).
pub fn free_port() -> u16 {
    sandbox::free_port().unwrap()
}

/// Simulator options for fast tests: droplets active after 100 ms and serving their page,
/// and the real API's eventual consistency on: a new droplet is missing from listings for
/// 150 ms (plus up to 100 ms of jitter), a deleted one lingers as long. A test that turns
/// these off says why.
pub fn fast_sim_options() -> SimOptions {
    SimOptions {
        token: TOKEN.to_string(),
        active_after: Duration::from_millis(100),
        serve_apps: true,
        backend_port: free_port(),
        droplet_limit: 100,
        rate_limit_per_minute: None,
        list_lag_after_create: Duration::from_millis(150),
        delete_linger: Duration::from_millis(150),
        lag_jitter: Duration::from_millis(100),
        ..SimOptions::default()
    }
}

/// One test's world.
pub struct TestEnv {
    pub dir: tempfile::TempDir,
    pub sim: Sim,
    pub frontend_port: u16,
    pub backend_port: u16,
    haproxy: bool,
    /// Every secret this test configured (tokens good and bad, the stats password, the
    /// etcd password): no output of any process the test runs may contain one.
    secrets: Mutex<Vec<String>>,
}

/// The result of one doproxy run.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    /// Asserts success and returns self.
    pub fn ok(self) -> Run {
        assert_eq!(
            self.code, 0,
            "expected success\nstdout: {}\nstderr: {}",
            self.stdout, self.stderr
        );
        self
    }
    /// Asserts the exit code and returns self.
    pub fn code(self, code: i32) -> Run {
        assert_eq!(
            self.code, code,
            "expected exit {code}\nstdout: {}\nstderr: {}",
            self.stdout, self.stderr
        );
        self
    }
}

impl TestEnv {
    /// A config pointing at a fresh simulator; no HAProxy (check and reload are `true`).
    pub fn new() -> TestEnv {
        Self::with_options(fast_sim_options(), false)
    }

    /// Like [`TestEnv::new`] with a real HAProxy, started by the first reload.
    pub fn with_haproxy() -> TestEnv {
        Self::with_options(fast_sim_options(), true)
    }

    /// Full control over the simulator.
    pub fn with_options(opts: SimOptions, haproxy: bool) -> TestEnv {
        let backend_port = opts.backend_port;
        let sim = Sim::start(opts).expect("start do-sim");
        let env = TestEnv {
            dir: tempfile::tempdir().unwrap(),
            sim,
            frontend_port: free_port(),
            backend_port,
            haproxy,
            secrets: Mutex::new(Vec::new()),
        };
        env.add_secret(TOKEN);
        sandbox::prepare_dir(env.dir.path(), &env.config(), sandbox::TEST_USER_DATA).unwrap();
        env
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    pub fn read(&self, rel: &str) -> String {
        std::fs::read_to_string(self.path(rel)).unwrap_or_default()
    }

    pub fn write(&self, rel: &str, text: &str) {
        std::fs::write(self.path(rel), text).unwrap();
        if rel.ends_with(".yml") {
            self.learn_secrets(text);
            // It holds the token: doproxy warns unless only the owner can read it.
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(self.path(rel), std::fs::Permissions::from_mode(0o600))
                .unwrap();
        }
    }

    /// The loopback config this world starts with ([`DoproxyConfig::loopback`] for this
    /// simulator, ports and temp dir; a real HAProxy's commands with [`TestEnv::with_haproxy`],
    /// else `true`). A fresh copy each call: edits never pile up between calls.
    pub fn config(&self) -> DoproxyConfig {
        DoproxyConfig::loopback(
            self.dir.path(),
            &self.sim.url(),
            TOKEN,
            self.backend_port,
            self.frontend_port,
            self.haproxy,
        )
    }

    /// Writes `config` as `./doproxy.yml` (mode 0600).
    pub fn write_config(&self, config: &DoproxyConfig) {
        let yaml = config.to_yaml();
        self.learn_secrets(&yaml);
        sandbox::write_config(self.dir.path(), &yaml).unwrap();
    }

    /// Adds `secret` to the strings no output may contain (see [`TestEnv::check_secrets`]).
    pub fn add_secret(&self, secret: &str) {
        let secret = secret.trim();
        // A value this short could be part of any output: not worth checking.
        if secret.len() < 4 {
            return;
        }
        let mut all = self.secrets.lock().unwrap();
        if !all.iter().any(|s| s == secret) {
            all.push(secret.to_string());
        }
    }

    /// Learns the secrets a config text holds: `token`, `haproxy.stats_password`,
    /// `inventory.password` (any config the test writes, typed or raw).
    fn learn_secrets(&self, yaml: &str) {
        let Ok(v) = serde_yaml::from_str::<serde_yaml::Value>(yaml) else {
            return;
        };
        for value in [
            &v["token"],
            &v["haproxy"]["stats_password"],
            &v["inventory"]["password"],
        ] {
            if let Some(s) = value.as_str() {
                self.add_secret(s);
            }
        }
    }

    /// The secrets this test configured so far.
    pub fn secrets(&self) -> Vec<String> {
        self.secrets.lock().unwrap().clone()
    }

    /// Fails the test when `text` (the output of a process it ran, named by `what`) holds
    /// one of its secrets.
    pub fn check_secrets(&self, what: &str, text: &str) {
        for s in self.secrets() {
            assert!(
                !text.contains(&s),
                "a secret ({} characters, starting {:?}) leaked into the output of {what}:\n{text}",
                s.len(),
                &s[..2]
            );
        }
    }

    /// Waits (at most `timeout`) for a doproxy child started with piped output, checks its
    /// output for secrets and returns it as a [`Run`].
    pub fn finish(&self, child: Child, timeout: Duration) -> Run {
        let out = output_with_deadline(child, timeout);
        self.to_run("a doproxy child", out)
    }

    /// A doproxy child with piped output (see [`TestEnv::finish`]).
    pub fn spawn(&self, args: &[&str]) -> Child {
        self.command(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start doproxy")
    }

    fn to_run(&self, what: &str, out: Output) -> Run {
        let run = Run {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        };
        self.check_secrets(what, &run.stdout);
        self.check_secrets(what, &run.stderr);
        run
    }

    /// Reads a file a child of this test wrote its output into, checked for secrets.
    pub fn read_output(&self, rel: &str) -> String {
        let text = self.read(rel);
        self.check_secrets(rel, &text);
        text
    }

    /// Writes [`TestEnv::config`] after `edit` as `./doproxy.yml`.
    pub fn configure(&self, edit: impl FnOnce(&mut DoproxyConfig)) {
        let mut config = self.config();
        edit(&mut config);
        self.write_config(&config);
    }

    /// The check and reload commands of this world's kind (a real HAProxy or `true`), for a
    /// second HAProxy with its own pidfile and master socket.
    pub fn commands_with(&self, pidfile: &Path, master_socket: &Path) -> (String, String) {
        if self.haproxy {
            sandbox::haproxy_commands_with(pidfile, master_socket)
        } else {
            sandbox::stand_in_commands()
        }
    }

    /// Makes the (stand-in) reload command count its runs; see [`TestEnv::reloads`].
    pub fn count_reloads(&self) {
        let log = self.path("reloads");
        self.configure(|c| c.reload_command = Some(format!("echo x >> {}", log.display())));
    }

    /// How often the reload command ran since [`TestEnv::count_reloads`].
    pub fn reloads(&self) -> usize {
        self.read("reloads").lines().count()
    }

    /// Runs doproxy with `args` in the temp dir (so `./doproxy.yml` is found).
    pub fn run(&self, args: &[&str]) -> Run {
        self.run_env(args, &[])
    }

    /// The doproxy command in the temp dir, with no DigitalOcean variables from the outside
    /// and the metadata service pointed at the simulator.
    pub fn command(&self, args: &[&str]) -> Command {
        command::doproxy_command(self.dir.path(), &self.sim.url(), args)
    }

    /// Runs doproxy with `args` and extra environment variables (a token or password
    /// among them is a secret too), for at most [`RUN_DEADLINE`]; no output may hold a
    /// secret of this test.
    pub fn run_env(&self, args: &[&str], env: &[(&str, &str)]) -> Run {
        let mut cmd = self.command(args);
        for (k, v) in env {
            if k.contains("TOKEN") || k.contains("PASSWORD") {
                self.add_secret(v);
            }
            cmd.env(k, v);
        }
        let out = run_with_deadline(&mut cmd, RUN_DEADLINE);
        self.to_run(&format!("doproxy {}", args.join(" ")), out)
    }

    /// Creates a droplet "outside doproxy" (see `Sim::create_droplet_direct`) and waits out
    /// the simulated list lag, so the test's next step sees it listed.
    pub fn create_direct(&self, name: &str, tags: &[&str]) -> u64 {
        let id = self.sim.create_droplet_direct(name, tags);
        self.settle();
        id
    }

    /// Deletes a droplet "outside doproxy" and waits out the simulated linger, so the
    /// test's next step sees it gone.
    pub fn delete_direct(&self, id: u64) -> bool {
        let deleted = self.sim.delete_droplet_direct(id);
        self.settle();
        deleted
    }

    /// Waits out the default world's list lag and delete linger (150 ms + up to 100 ms).
    pub fn settle(&self) {
        std::thread::sleep(Duration::from_millis(300));
    }

    /// Every API request the simulator logged that could change something (not a GET).
    pub fn api_writes(&self) -> Vec<do_sim::RequestRecord> {
        self.sim
            .requests()
            .into_iter()
            .filter(|r| r.method != "GET")
            .collect()
    }

    /// The inventory's IDs.
    pub fn inventory(&self) -> Vec<u64> {
        self.read("inventory")
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| l.trim().parse().unwrap())
            .collect()
    }

    /// The installed config.
    pub fn installed(&self) -> String {
        self.read("etc/haproxy.cfg")
    }

    /// `server` lines of the installed config.
    pub fn server_lines(&self) -> Vec<String> {
        self.installed()
            .lines()
            .map(str::trim)
            .filter(|l| l.starts_with("server "))
            .map(String::from)
            .collect()
    }

    pub fn frontend(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.frontend_port))
    }

    /// The server names the running HAProxy serves (runtime API on the stats socket).
    pub fn running_servers(&self) -> Vec<String> {
        running_servers_at(&self.path("admin.sock"))
    }

    /// Each server of the running HAProxy's backend with its `srv_admin_state` bits.
    pub fn server_admin_states(&self) -> Vec<(String, u32)> {
        parse_admin_states(&stats_command(
            &self.path("admin.sock"),
            "show servers state www-backend",
        ))
    }

    /// Makes the reload command of this world (a real HAProxy's) leave two traces, for
    /// tests of what happens in which order:
    /// - before reloading, it appends HAProxy's `show servers state www-backend` (asked on
    ///   the stats socket with `socat`, at the moment the reload runs) to `reload-states.log`,
    ///   after a line `=== reload`;
    /// - after reloading, it sends `GET /v2/_reload_mark` (curl) to the simulator (answered 401:
    ///   no token), which puts the moment of the reload into the simulator's request log,
    ///   between the API requests doproxy made before and after it.
    ///
    /// The reload's own exit status is kept.
    pub fn log_reloads(&self) {
        let (_, reload) = sandbox::haproxy_commands(self.dir.path());
        let log = self.path("reload-states.log");
        let sock = self.path("admin.sock");
        let port = self.sim.addr().port();
        let traced = format!(
            "{{ echo '=== reload'; echo 'show servers state www-backend' | socat -t 2 - UNIX-CONNECT:{sock} 2>&1; }} >> {log}; {reload}; rc=$?; curl -s -m 5 -o /dev/null http://127.0.0.1:{port}/v2/_reload_mark; exit $rc",
            sock = sock.display(),
            log = log.display(),
        );
        self.configure(|c| c.reload_command = Some(traced));
    }

    /// What [`TestEnv::log_reloads`] logged: per reload, each server with its admin state
    /// at the moment the reload command ran (empty when HAProxy was not running yet).
    pub fn logged_reloads(&self) -> Vec<Vec<(String, u32)>> {
        self.read("reload-states.log")
            .split("=== reload\n")
            .skip(1)
            .map(parse_admin_states)
            .collect()
    }

    /// The HAProxy master's PID, if running.
    pub fn haproxy_pid(&self) -> Option<i32> {
        self.read("haproxy.pid").trim().parse().ok()
    }

    /// Sends `n` requests through HAProxy (fresh connection each) and returns the bodies of
    /// the successful ones plus the number of failures.
    pub fn requests(&self, n: usize) -> (Vec<String>, usize) {
        let mut bodies = Vec::new();
        let mut failed = 0;
        for _ in 0..n {
            match http_get(self.frontend(), "/") {
                Some((200, body)) => bodies.push(body),
                _ => failed += 1,
            }
        }
        (bodies, failed)
    }

    /// Waits until requests through HAProxy reach exactly `want` distinct backends.
    pub fn wait_distinct_backends(&self, want: usize, timeout: Duration) -> Vec<String> {
        let deadline = Instant::now() + timeout;
        loop {
            let (bodies, _) = self.requests(want * 6);
            let mut distinct: Vec<String> = bodies;
            distinct.sort();
            distinct.dedup();
            if distinct.len() == want || Instant::now() >= deadline {
                return distinct;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Runs `haproxy -dW -c` on a file.
    pub fn haproxy_check(&self, file: &Path) -> (bool, String) {
        haproxy_check(file)
    }
}

/// Sends one command to an HAProxy stats socket and returns the answer.
pub fn stats_command(sock: &Path, command: &str) -> String {
    try_stats_command(sock, command)
        .unwrap_or_else(|e| panic!("{command:?} on the stats socket {}: {e}", sock.display()))
}

/// [`stats_command`], or the error (no HAProxy listening yet, say).
pub fn try_stats_command(sock: &Path, command: &str) -> std::io::Result<String> {
    use std::os::unix::net::UnixStream;
    let mut s = UnixStream::connect(sock)?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    s.write_all(format!("{command}\n").as_bytes())?;
    let mut out = String::new();
    s.read_to_string(&mut out)?;
    Ok(out)
}

/// The server names an HAProxy serves in `www-backend`, sorted, from its stats socket.
pub fn running_servers_at(sock: &Path) -> Vec<String> {
    let mut names: Vec<String> =
        parse_admin_states(&stats_command(sock, "show servers state www-backend"))
            .into_iter()
            .map(|(name, _)| name)
            .collect();
    names.sort();
    names
}

/// `srv_admin_state` bit: drain forced through the runtime API.
pub const ADMIN_FORCED_DRAIN: u32 = 0x08;

/// `(srv_name, srv_admin_state)` of each `www-backend` line of `show servers state`.
pub fn parse_admin_states(show_servers_state: &str) -> Vec<(String, u32)> {
    show_servers_state
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let cols: Vec<&str> = l.split_whitespace().collect();
            if cols.len() < 7 || cols[1] != "www-backend" {
                return None;
            }
            Some((cols[3].to_string(), cols[6].parse().ok()?))
        })
        .collect()
}

/// Runs `haproxy -dW -c -f file` (warnings fatal).
pub fn haproxy_check(file: &Path) -> (bool, String) {
    let out = run_with_deadline(
        Command::new("haproxy")
            .arg("-dW")
            .arg("-c")
            .arg("-f")
            .arg(file),
        TOOL_DEADLINE,
    );
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

impl Drop for TestEnv {
    fn drop(&mut self) {
        // Stop the HAProxy this test started (by its pidfile's PID; TERM to the master).
        if let Some(pid) = self.haproxy_pid() {
            let pid = pid as u32;
            signal(pid, "TERM");
            let deadline = Instant::now() + Duration::from_secs(5);
            while Instant::now() < deadline && signal(pid, "0") {
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }
}

/// A minimal HTTP/1.1 GET over a fresh connection, reading for at most 5 s; `None` on any
/// failure.
pub fn http_get(addr: SocketAddr, path: &str) -> Option<(u16, String)> {
    sandbox::load::http_get(addr, path, Duration::from_secs(5))
}

/// Parses the original's `print` line format.
pub fn parse_print_line(line: &str) -> Option<(usize, String, String, String, u64)> {
    let (n, rest) = line.split_once(") ")?;
    let (name, rest) = rest.split_once("  (pvt ip: ")?;
    let (ip, rest) = rest.split_once(", status: ")?;
    let (status, rest) = rest.split_once(", id: ")?;
    let id = rest.strip_suffix(')')?;
    Some((
        n.parse().ok()?,
        name.into(),
        ip.into(),
        status.into(),
        id.parse().ok()?,
    ))
}

/// A stand-in API on 127.0.0.1 that answers every request with `status` and `body` (to test
/// answers the real API should never give). It serves at most 100 connections or 20 s, then
/// stops by itself. Returns its base URL.
pub fn fake_api(status: u16, body: &'static str) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    listener.set_nonblocking(true).unwrap();
    std::thread::spawn(move || {
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut served = 0;
        while served < 100 && Instant::now() < deadline {
            match listener.accept() {
                Ok((mut s, _)) => {
                    served += 1;
                    let _ = s.set_nonblocking(false);
                    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
                    let mut buf = [0u8; 8192];
                    let _ = s.read(&mut buf);
                    let _ = write!(
                        s,
                        "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                        body.len()
                    );
                }
                Err(_) => std::thread::sleep(Duration::from_millis(5)),
            }
        }
    });
    format!("http://{addr}")
}
