//! Starting etcd on loopback for tests: a single member or a small cluster, every member
//! listening on free 127.0.0.1 ports (client and peer) with its data and log in a temp dir.
//! Members can be killed (SIGKILL, by PID) and restarted on the same data dir; dropping the
//! cluster kills and reaps every process it started.
//!
//! When `etcd` is not installed the constructors return `None` (the test prints SKIPPED),
//! unless `CI` is set: then they panic.

use super::free_port;
use std::fs::OpenOptions;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long a member (or a whole cluster) gets to become healthy.
pub const START_TIMEOUT: Duration = Duration::from_secs(15);

/// True when an `etcd` binary runs; panics instead of returning false when `CI` is set.
pub fn etcd_available() -> bool {
    let found = Command::new("etcd")
        .arg("--version")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .is_ok_and(|mut c| super::wait_with_deadline(&mut c, super::TOOL_DEADLINE).success());
    if !found {
        if std::env::var_os("CI").is_some() {
            panic!("etcd is not installed, and CI is set: the etcd tests must not be skipped");
        }
        eprintln!("SKIPPED: etcd is not installed (install etcd-server, or set CI to make this a failure)");
    }
    found
}

/// Shorthand for [`EtcdCluster::start_single`].
pub fn start_single() -> Option<Etcd> {
    EtcdCluster::start_single()
}

/// Shorthand for [`EtcdCluster::start_cluster`].
pub fn start_cluster(n: usize) -> Option<EtcdCluster> {
    EtcdCluster::start_cluster(n)
}

/// A single etcd is a cluster of one.
pub type Etcd = EtcdCluster;

/// etcd processes started by a test.
pub struct EtcdCluster {
    dir: tempfile::TempDir,
    token: String,
    extra_args: Vec<String>,
    members: Vec<Member>,
}

struct Member {
    name: String,
    client_port: u16,
    peer_port: u16,
    child: Option<Child>,
}

impl EtcdCluster {
    /// One member.
    pub fn start_single() -> Option<EtcdCluster> {
        Self::start_with(1, &[])
    }

    /// `n` members forming one cluster.
    pub fn start_cluster(n: usize) -> Option<EtcdCluster> {
        Self::start_with(n, &[])
    }

    /// `n` members, each started with `extra_args` too.
    pub fn start_with(n: usize, extra_args: &[&str]) -> Option<EtcdCluster> {
        assert!(n >= 1);
        if !etcd_available() {
            return None;
        }
        // A port found free can be taken by someone else before etcd binds it: one retry
        // with new ports.
        let mut failures = String::new();
        for attempt in 0..2 {
            let cluster = Self::spawn_all(n, extra_args);
            if cluster.wait_all_healthy(START_TIMEOUT) {
                return Some(cluster);
            }
            for i in 0..n {
                failures.push_str(&format!(
                    "--- attempt {attempt}, member {i} log tail:\n{}\n",
                    cluster.log_tail(i, 25)
                ));
            }
            drop(cluster);
        }
        panic!("etcd did not become healthy within {START_TIMEOUT:?}:\n{failures}");
    }

    fn spawn_all(n: usize, extra_args: &[&str]) -> EtcdCluster {
        let mut used = Vec::new();
        let mut port = || loop {
            let p = free_port();
            if !used.contains(&p) {
                used.push(p);
                return p;
            }
        };
        let members = (0..n)
            .map(|i| Member {
                name: format!("m{i}"),
                client_port: port(),
                peer_port: port(),
                child: None,
            })
            .collect();
        let dir = tempfile::tempdir().expect("temp dir for etcd");
        let token = format!(
            "doproxy-test-{}-{}",
            std::process::id(),
            dir.path()
                .file_name()
                .map(|f| f.to_string_lossy().into_owned())
                .unwrap_or_default()
        );
        let mut cluster = EtcdCluster {
            dir,
            token,
            extra_args: extra_args.iter().map(|s| s.to_string()).collect(),
            members,
        };
        for i in 0..n {
            cluster.spawn_member(i);
        }
        cluster
    }

    /// The client URLs, in member order.
    pub fn endpoints(&self) -> Vec<String> {
        (0..self.members.len()).map(|i| self.endpoint(i)).collect()
    }

    /// Member `i`'s client URL.
    pub fn endpoint(&self, i: usize) -> String {
        format!("http://127.0.0.1:{}", self.members[i].client_port)
    }

    pub fn len(&self) -> usize {
        self.members.len()
    }

    pub fn is_running(&self, i: usize) -> bool {
        self.members[i].child.is_some()
    }

    fn log_path(&self, i: usize) -> PathBuf {
        self.dir
            .path()
            .join(format!("{}.log", self.members[i].name))
    }

    /// Starts member `i`'s process (on its existing data dir, if any) without waiting.
    pub fn spawn_member(&mut self, i: usize) {
        assert!(
            self.members[i].child.is_none(),
            "member {i} is already running"
        );
        let host = |p: u16| format!("http://127.0.0.1:{p}");
        let initial_cluster = self
            .members
            .iter()
            .map(|m| format!("{}={}", m.name, host(m.peer_port)))
            .collect::<Vec<_>>()
            .join(",");
        let m = &self.members[i];
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path(i))
            .expect("open the etcd log");
        let log2 = log.try_clone().expect("clone the etcd log handle");
        let mut cmd = Command::new("etcd");
        for (k, _) in std::env::vars_os() {
            if k.to_string_lossy().starts_with("ETCD") {
                cmd.env_remove(k);
            }
        }
        cmd.arg("--name")
            .arg(&m.name)
            .arg("--data-dir")
            .arg(self.dir.path().join(format!("{}.etcd", m.name)))
            .arg("--listen-client-urls")
            .arg(host(m.client_port))
            .arg("--advertise-client-urls")
            .arg(host(m.client_port))
            .arg("--listen-peer-urls")
            .arg(host(m.peer_port))
            .arg("--initial-advertise-peer-urls")
            .arg(host(m.peer_port))
            .arg("--initial-cluster")
            .arg(&initial_cluster)
            .arg("--initial-cluster-state")
            .arg("new")
            .arg("--initial-cluster-token")
            .arg(&self.token)
            .arg("--heartbeat-interval")
            .arg("50")
            .arg("--election-timeout")
            .arg("250")
            .arg("--logger")
            .arg("zap")
            .arg("--log-outputs")
            .arg("stderr")
            .args(&self.extra_args)
            .stdin(Stdio::null())
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(log2));
        let child = cmd.spawn().expect("start etcd");
        self.members[i].child = Some(child);
    }

    /// Kills member `i` with SIGKILL (by its PID) and reaps it (waiting at most 10 s: this
    /// runs in `Drop` too, so it never panics).
    pub fn kill_member(&mut self, i: usize) {
        if let Some(mut child) = self.members[i].child.take() {
            let _ = child.kill();
            let _ = super::try_wait_until(&mut child, Instant::now() + Duration::from_secs(10));
        }
    }

    /// Member `i`'s process ID, while it runs.
    pub fn pid(&self, i: usize) -> Option<u32> {
        self.members[i].child.as_ref().map(Child::id)
    }

    /// Starts member `i` again on its data dir and waits until it is healthy.
    pub fn restart_member(&mut self, i: usize) {
        self.kill_member(i);
        self.spawn_member(i);
        if !self.wait_healthy(i, START_TIMEOUT) {
            panic!(
                "etcd member {i} did not come back within {START_TIMEOUT:?}; log tail:\n{}",
                self.log_tail(i, 30)
            );
        }
    }

    /// Waits until member `i` answers `/health` with `true` (false on timeout or exit).
    pub fn wait_healthy(&mut self, i: usize, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            match self.members[i].child.as_mut().map(|c| c.try_wait()) {
                Some(Ok(None)) => {}
                _ => return false, // not started, or exited
            }
            if self.healthy(i) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    }

    fn wait_all_healthy(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if (0..self.members.len()).all(|i| self.healthy(i)) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    }

    /// Does member `i` report itself healthy (it has a leader and no alarm)?
    pub fn healthy(&self, i: usize) -> bool {
        http(self.members[i].client_port, "GET", "/health", "")
            .is_some_and(|(code, body)| code == 200 && body.contains("\"true\""))
    }

    /// The index of the leader the running members agree on, asked again until `timeout`
    /// (an election may be under way); panics when none is found.
    pub fn wait_leader(&self, timeout: Duration) -> usize {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(i) = self.leader() {
                return i;
            }
            assert!(
                Instant::now() < deadline,
                "no etcd member is the leader after {timeout:?} (asked /v3/maintenance/status of each running member)"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The index of the current leader, as seen by the running members: each member's
    /// `/v3/maintenance/status` names the leader's member ID and its own
    /// (`header.member_id`); the leader is the member whose ID every answer names.
    pub fn leader(&self) -> Option<usize> {
        let mut ids: Vec<Option<String>> = vec![None; self.members.len()];
        let mut leader = None;
        for (i, m) in self.members.iter().enumerate() {
            if m.child.is_none() {
                continue;
            }
            let Some((200, body)) = http(m.client_port, "POST", "/v3/maintenance/status", "{}")
            else {
                continue;
            };
            let Ok(v) = serde_json::from_str::<serde_json::Value>(&body) else {
                continue;
            };
            ids[i] = v["header"]["member_id"].as_str().map(str::to_string);
            match (v["leader"].as_str(), &leader) {
                (Some(l), None) => leader = Some(l.to_string()),
                (Some(l), Some(seen)) if l == seen => {}
                // Members disagree (an election in progress), or one has no leader.
                _ => return None,
            }
        }
        let leader = leader?;
        ids.iter()
            .position(|id| id.as_deref() == Some(leader.as_str()))
    }

    /// The last `lines` lines of member `i`'s log.
    pub fn log_tail(&self, i: usize, lines: usize) -> String {
        let text = std::fs::read_to_string(self.log_path(i)).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }
}

impl Drop for EtcdCluster {
    fn drop(&mut self) {
        for i in 0..self.members.len() {
            self.kill_member(i);
        }
    }
}

/// A minimal HTTP/1.0 request to 127.0.0.1:`port` (no chunked answers, connection closed
/// by the server); `None` on any failure.
fn http(port: u16, method: &str, path: &str, body: &str) -> Option<(u16, String)> {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(1)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    s.set_write_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(
        s,
        "{method} {path} HTTP/1.0\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .ok()?;
    let mut buf = String::new();
    s.read_to_string(&mut buf).ok()?;
    let code: u16 = buf.split_whitespace().nth(1)?.parse().ok()?;
    let body = buf
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Some((code, body))
}

/// Sends one JSON request to member `i` of `cluster` (for test set-up the client under
/// test does not offer, e.g. compaction).
pub fn post_json(cluster: &EtcdCluster, i: usize, path: &str, body: &str) -> Option<(u16, String)> {
    http(cluster.members[i].client_port, "POST", path, body)
}
