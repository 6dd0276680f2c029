//! The live autoscaler (`doproxy autoscale`) on two load balancers sharing one etcd
//! inventory: two real HAProxies on 127.0.0.1, each with its `reload --watch` and its own
//! `doproxy -o json autoscale`, do-sim behind them with apps that take 50 ms to answer.
//! Only the etcd leader acts; the other node only follows (publishes its signals, keeps its
//! HAProxy's weights in step with the journal). A leader killed outright is replaced within
//! its lease's TTL, and nothing is done twice.

use crate::support::etcd::{start_single, EtcdCluster};
use crate::support::proxy::{Act, ApiProxy};
use crate::support::*;
use do_sim::SimOptions;
use doproxy::store::journal::Journal;
use serde_json::{json, Value};
use std::process::{Child, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// The etcd prefix of these tests' inventory.
const PREFIX: &str = "/doproxy-as-test/";

/// One load balancer of the pair.
#[derive(Clone, Copy)]
struct Node {
    name: &'static str,
    config: &'static str,
    sock: &'static str,
    /// The end of its installed config's path: the end of its node name too.
    installed: &'static str,
}

const NODES: [Node; 2] = [
    Node {
        name: "a",
        config: "doproxy.yml",
        sock: "admin.sock",
        installed: "/etc/haproxy.cfg",
    },
    Node {
        name: "b",
        config: "node-b.yml",
        sock: "admin-b.sock",
        installed: "/etc-b/haproxy-b.cfg",
    },
];

impl Node {
    fn log(&self) -> String {
        format!("autoscale-{}.log", self.name)
    }
    fn err(&self) -> String {
        format!("autoscale-{}.err", self.name)
    }
}

/// Two nodes, their etcd and every process the test started (killed by PID on drop).
struct Pair {
    watchers: Vec<Child>,
    daemons: [Option<Child>; 2],
    rt: tokio::runtime::Runtime,
    client: doproxy::store::etcd::Client,
    env: TestEnv,
    _etcd: EtcdCluster,
    _proxy: Option<ApiProxy>,
}

impl Drop for Pair {
    fn drop(&mut self) {
        for c in self.daemons.iter_mut().flatten().chain(&mut self.watchers) {
            let _ = c.kill();
            let _ = try_wait_until(c, Instant::now() + Duration::from_secs(10));
        }
        // Node B's HAProxy (node A's is stopped by the TestEnv).
        if let Ok(pid) = self.env.read("haproxy-b.pid").trim().parse::<u32>() {
            signal(pid, "TERM");
        }
    }
}

/// The `autoscale:` section both nodes run with.
fn autoscale_section(standby: u32) -> Value {
    json!({
        "min": 1, "max": 6, "standby": standby, "tick": "200ms",
        "targets": {"sessions_per_server": 2},
        "reconcile_interval": "2s",
    })
}

impl Pair {
    /// Two HAProxy nodes sharing an etcd inventory with `lock_ttl`, each running `reload
    /// --watch`, serving one droplet (created from node A); the autoscalers not started yet.
    fn start(lock_ttl: Duration, autoscale: Value) -> Option<Pair> {
        Self::start_with(lock_ttl, autoscale, false)
    }

    /// [`Pair::start`]; with `slow_creates`, the API goes through a proxy that carries
    /// every create after the first out at once and holds its answer back for 3 s (the
    /// proxy is kept in the pair).
    fn start_with(lock_ttl: Duration, autoscale: Value, slow_creates: bool) -> Option<Pair> {
        if !haproxy_available() || !socat_available() {
            return None;
        }
        let etcd = start_single()?;
        let opts = SimOptions {
            app_service_time: Duration::from_millis(50),
            ..fast_sim_options()
        };
        let env = TestEnv::with_options(opts, true);
        let proxy = slow_creates.then(|| {
            let posts = AtomicUsize::new(0);
            ApiProxy::start(
                &env.sim.url(),
                Box::new(move |method, _, _| {
                    if method == "POST" && posts.fetch_add(1, Ordering::SeqCst) > 0 {
                        Act::PassSlowly(Duration::from_secs(3))
                    } else {
                        Act::Pass
                    }
                }),
            )
        });
        let mut a = env.config();
        if let Some(p) = &proxy {
            a.api_url = Some(p.url());
        }
        a.watch_debounce = Some("100ms".into());
        a.inventory_file = None;
        a.inventory = InventoryOptions {
            backend: Some("etcd".into()),
            endpoints: Some(etcd.endpoints()),
            prefix: Some(PREFIX.into()),
            lock_ttl: Some(format!("{}s", lock_ttl.as_secs())),
            timeout: Some("2s".into()),
            ..InventoryOptions::default()
        };
        a.haproxy.check_inter = Some("300ms".into());
        a.set_raw("autoscale", autoscale);
        env.write_config(&a);
        // Node B: the same inventory and API, its own HAProxy (config, port, sockets).
        let mut b = a.clone();
        b.haproxy_cfg_path = Some("etc-b".into());
        b.haproxy_cfg_file = Some("haproxy-b.cfg".into());
        b.frontend_bind = Some(format!("127.0.0.1:{}", free_port()));
        b.haproxy.stats_socket = Some(Some(env.path("admin-b.sock").display().to_string()));
        let (check, reload) =
            env.commands_with(&env.path("haproxy-b.pid"), &env.path("master-b.sock"));
        (b.check_command, b.reload_command) = (Some(check), Some(reload));
        env.write("node-b.yml", &b.to_yaml());
        std::fs::create_dir_all(env.path("etc-b")).unwrap();
        env.run(&["inventory", "init"]).ok();

        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let client = doproxy::store::etcd::Client::new(doproxy::store::etcd::Options {
            endpoints: etcd.endpoints(),
            timeout: Duration::from_secs(2),
            username: None,
            password: None,
            ca_pem: None,
            identity_pem: None,
        })
        .unwrap();
        let mut pair = Pair {
            watchers: Vec::new(),
            daemons: [None, None],
            rt,
            client,
            env,
            _etcd: etcd,
            _proxy: proxy,
        };
        for n in NODES {
            let log =
                std::fs::File::create(pair.env.path(&format!("watch-{}.log", n.name))).unwrap();
            let child = pair
                .env
                .command(&["-c", n.config, "reload", "--watch"])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .unwrap();
            pair.watchers.push(child);
        }
        pair.env.run(&["create"]).ok();
        let first = pair.inventory();
        assert_eq!(first.len(), 1);
        pair.wait_for("both nodes serving the first droplet", 20, |p| {
            NODES.iter().all(|n| {
                p.servers(n)
                    .iter()
                    .any(|(id, st, w)| *id == first[0] && st == "UP" && *w > 0)
            })
        });
        Some(pair)
    }

    /// Starts node `i`'s `doproxy -o json autoscale`, its output in its log files.
    fn start_daemon(&mut self, i: usize) {
        let n = NODES[i];
        let log = std::fs::File::create(self.env.path(&n.log())).unwrap();
        let err = std::fs::File::create(self.env.path(&n.err())).unwrap();
        let cmd = self
            .env
            .command(&["-c", n.config, "-o", "json", "autoscale"]);
        let child = crate::support::proc::dies_with_its_test(&cmd)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(err)
            .spawn()
            .expect("start doproxy autoscale");
        self.daemons[i] = Some(child);
    }

    /// Stops node `i`'s daemon with SIGTERM: it must exit 0 within 10 s.
    fn stop_daemon(&mut self, i: usize) {
        let mut child = self.daemons[i].take().expect("a running daemon");
        assert!(signal(child.id(), "TERM"));
        let status = wait_with_deadline(&mut child, Duration::from_secs(10));
        let err = self.env.read_output(&NODES[i].err());
        assert!(
            status.success(),
            "autoscale {} exit {status:?}: {err}",
            NODES[i].name
        );
    }

    /// Node `i`'s decision lines so far (a line being written is left out).
    fn decisions(&self, i: usize) -> Vec<Value> {
        let text = self.env.read_output(&NODES[i].log());
        let complete = match text.rfind('\n') {
            Some(end) => &text[..=end],
            None => "",
        };
        complete
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
            .collect()
    }

    /// Both daemons' logs, for failure messages.
    fn logs(&self) -> String {
        NODES
            .iter()
            .map(|n| {
                format!(
                    "--- node {} stdout:\n{}--- node {} stderr:\n{}",
                    n.name,
                    self.env.read(&n.log()),
                    n.name,
                    self.env.read(&n.err())
                )
            })
            .collect()
    }

    /// An etcd key's value (`None` when absent).
    fn etcd_get(&self, key: &str) -> Option<String> {
        self.rt
            .block_on(self.client.get(key))
            .unwrap_or_else(|e| panic!("reading {key} from etcd: {e:#}"))
            .map(|kv| kv.value)
    }

    fn inventory(&self) -> Vec<u64> {
        let key = format!("{PREFIX}inventory");
        let text = self.etcd_get(&key).unwrap_or_default();
        doproxy::inventory::Inventory::parse(&key, &text)
            .unwrap()
            .ids
    }

    fn journal(&self) -> Journal {
        let key = format!("{PREFIX}journal");
        Journal::parse(&key, &self.etcd_get(&key).unwrap_or_default()).unwrap()
    }

    /// The node leading the autoscalers, from etcd's leader key (its value is the node name:
    /// host and installed config path).
    fn leader(&self) -> Option<usize> {
        let name = self.etcd_get(&format!("{PREFIX}autoscale/leader"))?;
        let i = NODES.iter().position(|n| name.ends_with(n.installed));
        assert!(i.is_some(), "leader key names neither node: {name}");
        i
    }

    /// Node `n`'s backend servers as its HAProxy shows them (`show stat` on its stats
    /// socket): (id, status, weight); empty while it does not answer.
    fn servers(&self, n: &Node) -> Vec<(u64, String, u64)> {
        let Ok(text) = try_stats_command(&self.env.path(n.sock), "show stat") else {
            return Vec::new();
        };
        doproxy::haproxy::runtime::parse_show_stat(&text, "www-backend")
            .into_iter()
            .filter_map(|s| Some((s.id?, s.state(), s.weight?)))
            .collect()
    }

    /// The journal's standbys node `n`'s HAProxy has UP and parked at weight 0.
    fn parked(&self, n: &Node, journal: &Journal) -> Vec<u64> {
        self.servers(n)
            .into_iter()
            .filter(|(id, st, w)| journal.is_standby(*id) && st == "UP" && *w == 0)
            .map(|(id, _, _)| id)
            .collect()
    }

    /// True when the pool holds `standby` droplets, each UP at weight 0 on both nodes, the
    /// rest of the inventory UP and serving on both.
    fn settled(&self, standby: usize) -> bool {
        let j = self.journal();
        let inv = self.inventory();
        j.creating.is_empty()
            && j.standby.len() == standby
            && j.standby.iter().all(|id| inv.contains(id))
            && NODES.iter().all(|n| {
                let servers = self.servers(n);
                self.parked(n, &j).len() == standby
                    && inv.iter().filter(|id| !j.is_standby(**id)).all(|id| {
                        servers
                            .iter()
                            .any(|(s, st, w)| s == id && st == "UP" && *w > 0)
                    })
            })
    }

    /// Starts both nodes' daemons and waits (at most 20 s) until one leads: named by etcd's
    /// leader key and deciding as the leader. Returns (leader, the other node).
    fn elect(&mut self) -> (usize, usize) {
        self.start_daemon(0);
        self.start_daemon(1);
        self.wait_for("a leader", 20, |p| {
            p.leader()
                .is_some_and(|i| p.decisions(i).iter().any(is_leader_line))
        });
        let leader = self.leader().unwrap();
        (leader, 1 - leader)
    }

    /// Waits (at most `secs`) until `cond` holds.
    fn wait_for(&self, what: &str, secs: u64, mut cond: impl FnMut(&Pair) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(secs);
        while !cond(self) {
            assert!(
                Instant::now() < deadline,
                "timed out after {secs} s waiting for {what}\ninventory {:?}, journal {:?}\nA: {:?}\nB: {:?}\n{}",
                self.inventory(),
                self.journal(),
                self.servers(&NODES[0]),
                self.servers(&NODES[1]),
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The live droplets in the simulator.
    fn live_droplets(&self) -> usize {
        self.env.sim.droplets().len()
    }
}

fn is_leader_line(l: &Value) -> bool {
    l["leader"] == json!(true)
}

/// What a line's action did (admit + create + park + delete).
fn acted(l: &Value) -> u64 {
    ["admit", "create", "park", "delete"]
        .iter()
        .map(|k| l["action"][k].as_u64().unwrap_or(0))
        .sum()
}

fn created(lines: &[Value]) -> u64 {
    lines
        .iter()
        .map(|l| l["action"]["create"].as_u64().unwrap_or(0))
        .sum()
}

#[test]
fn two_load_balancers_have_one_acting_autoscaler() {
    let Some(mut pair) = Pair::start(Duration::from_secs(3), autoscale_section(2)) else {
        return;
    };
    pair.start_daemon(0);
    pair.start_daemon(1);
    // The leader fills the pool through create's path; both HAProxies park the standbys.
    pair.wait_for("2 standbys parked on both nodes", 40, |p| p.settled(2));
    // A few more ticks and a reconcile: nothing more is done, by either node.
    std::thread::sleep(Duration::from_millis(2500));
    assert!(
        pair.settled(2),
        "the pool did not stay as it was\n{}",
        pair.logs()
    );
    let leader = pair.leader().expect("a leader key while both run");
    let follower = 1 - leader;
    // The follower stops first: otherwise it would take over from the resigning leader.
    pair.stop_daemon(follower);
    pair.stop_daemon(leader);

    let (lead, follow) = (pair.decisions(leader), pair.decisions(follower));
    assert!(
        !lead.is_empty() && lead.iter().all(is_leader_line),
        "node {}'s lines are not all the leader's\n{}",
        NODES[leader].name,
        pair.logs()
    );
    assert!(
        !follow.is_empty()
            && follow
                .iter()
                .all(|l| !is_leader_line(l) && l["reason"] == "follower" && acted(l) == 0),
        "node {} acted or led\n{}",
        NODES[follower].name,
        pair.logs()
    );
    for l in follow.iter() {
        for key in ["admitted", "parked", "deleting"] {
            assert_eq!(l[key], json!([]), "{l}");
        }
    }
    // The pool was filled exactly once: 1 + 2, not 1 + 4.
    assert_eq!(created(&lead), 2, "{}", pair.logs());
    assert_eq!(pair.inventory().len(), 3, "{}", pair.logs());
    assert_eq!(pair.live_droplets(), 3, "no droplet beyond the inventory");
    let j = pair.journal();
    assert!(j.creating.is_empty() && j.leaving.is_empty(), "{j:?}");
    // Both HAProxies: the two standbys UP at weight 0, the first droplet serving.
    for n in &NODES {
        let mut parked = pair.parked(n, &j);
        parked.sort_unstable();
        let mut standby = j.standby.clone();
        standby.sort_unstable();
        assert_eq!(parked, standby, "node {}: {:?}", n.name, pair.servers(n));
    }
    eprintln!(
        "FIGURES autoscale 2 nodes: node {} led, node {} followed ({} follower lines); pool of 2 filled once (inventory 3)",
        NODES[leader].name,
        NODES[follower].name,
        follow.len()
    );
}

#[test]
fn killing_the_leader_hands_over_within_its_lease_ttl() {
    let ttl = Duration::from_secs(2);
    let Some(mut pair) = Pair::start(ttl, autoscale_section(2)) else {
        return;
    };
    // The leader, from etcd's leader key, and its first decision line.
    let (leader, other) = pair.elect();
    // Killed outright (SIGKILL) as soon as it decides to fill the pool: its create may be
    // anywhere on its way (reserved, sent, recorded, booting).
    pair.wait_for("the leader's create decision", 20, |p| {
        created(&p.decisions(leader)) > 0
    });
    let mut victim = pair.daemons[leader].take().unwrap();
    victim.kill().unwrap();
    let killed = Instant::now();
    let status = wait_with_deadline(&mut victim, Duration::from_secs(10));
    assert!(!status.success());
    // Where its create was: intents journaled and droplets recorded at the kill.
    let at_kill = (pair.journal().creating.len(), pair.inventory().len() - 1);
    let before = pair.decisions(other).len();
    assert!(
        pair.decisions(other)
            .iter()
            .all(|l| !is_leader_line(l) && acted(l) == 0),
        "node {} led before the kill\n{}",
        NODES[other].name,
        pair.logs()
    );
    // The other node leads within the lease's TTL (plus its tick and a margin).
    let bound = ttl + Duration::from_secs(2);
    let took = loop {
        if pair.decisions(other)[before..].iter().any(is_leader_line) {
            break killed.elapsed();
        }
        assert!(
            killed.elapsed() < bound,
            "node {} did not lead within {bound:?} of the kill\n{}",
            NODES[other].name,
            pair.logs()
        );
        std::thread::sleep(Duration::from_millis(10));
    };
    assert_eq!(pair.leader(), Some(other));
    // No double action: the pool ends full once (an interrupted create is adopted or
    // dropped, never repeated on top), and both HAProxies park it.
    pair.wait_for(
        "2 standbys parked on both nodes after the handover",
        40,
        |p| p.settled(2),
    );
    std::thread::sleep(Duration::from_millis(2500));
    assert!(
        pair.settled(2),
        "the pool did not stay as it was\n{}",
        pair.logs()
    );
    let inv = pair.inventory();
    assert!(inv.len() <= 3, "inventory {inv:?}\n{}", pair.logs());
    assert_eq!(pair.live_droplets(), inv.len(), "no orphan droplet");
    let j = pair.journal();
    assert!(j.creating.is_empty(), "{j:?}");
    pair.stop_daemon(other);
    let lines = pair.decisions(other);
    // Following until the lease lapsed, then leading to the end.
    let first = lines.iter().position(is_leader_line).unwrap();
    assert!(
        lines[..first].iter().all(|l| acted(l) == 0) && lines[first..].iter().all(is_leader_line),
        "{}",
        pair.logs()
    );
    eprintln!(
        "FIGURES autoscale 2 nodes, leader SIGKILLed (lock_ttl {ttl:?}): node {} led {:.0} ms after the kill (at the kill: {} intent(s) journaled, {} standby(s) recorded); inventory {} after settling, 0 orphans, 0 intents left",
        NODES[other].name,
        took.as_secs_f64() * 1000.0,
        at_kill.0,
        at_kill.1,
        inv.len()
    );
}

#[test]
fn a_leader_killed_before_its_create_is_recorded_is_not_repeated() {
    // The leader's create is carried out at once, its answer held back for 3 s: killed in
    // that window, it leaves two droplets that exist, billed, journaled only by name.
    let ttl = Duration::from_secs(2);
    let Some(mut pair) = Pair::start_with(ttl, autoscale_section(2), true) else {
        return;
    };
    let (leader, other) = pair.elect();
    pair.wait_for("the leader's create carried out, unanswered", 20, |p| {
        p.live_droplets() == 3 && p.journal().creating.len() == 2
    });
    let mut victim = pair.daemons[leader].take().unwrap();
    victim.kill().unwrap();
    let killed = Instant::now();
    wait_with_deadline(&mut victim, Duration::from_secs(10));
    assert_eq!(pair.inventory().len(), 1, "recorded before the kill");
    // The other node leads, adopts the two as the standbys they are, and creates nothing.
    pair.wait_for("the other node leading", 10, |p| {
        p.decisions(other).iter().any(is_leader_line)
    });
    let took = killed.elapsed();
    pair.wait_for(
        "the interrupted create adopted and parked on both nodes",
        40,
        |p| p.settled(2),
    );
    let adopted = killed.elapsed();
    std::thread::sleep(Duration::from_millis(2500));
    assert!(
        pair.settled(2),
        "the pool did not stay as it was\n{}",
        pair.logs()
    );
    pair.stop_daemon(other);
    let lines = pair.decisions(other);
    assert_eq!(
        created(&lines),
        0,
        "the create was repeated\n{}",
        pair.logs()
    );
    assert!(lines.iter().all(|l| acted(l) == 0), "{}", pair.logs());
    assert_eq!(pair.inventory().len(), 3);
    assert_eq!(
        pair.live_droplets(),
        3,
        "no droplet created twice, no orphan"
    );
    let posts = pair
        .env
        .sim
        .requests()
        .into_iter()
        .filter(|q| q.method == "POST" && q.path == "/v2/droplets")
        .count();
    assert_eq!(
        posts, 2,
        "the first droplet's create and the killed leader's"
    );
    eprintln!(
        "FIGURES autoscale 2 nodes, leader SIGKILLed mid-create (lock_ttl {ttl:?}): node {} led {:.0} ms after the kill, its 2 droplets adopted as standbys and parked on both nodes {:.1} s after it; 0 created again",
        NODES[other].name,
        took.as_secs_f64() * 1000.0,
        adopted.as_secs_f64()
    );
}
