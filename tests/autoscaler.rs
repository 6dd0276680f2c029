//! The live autoscaler (`doproxy autoscale`) on a real HAProxy on 127.0.0.1 and do-sim, with
//! apps that take time to answer (`app_service_time`), so that a load through HAProxy
//! builds real sessions. A bounded in-process load generator counts every response and who
//! served it.

use crate::support::*;
use do_sim::SimOptions;
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::process::{Child, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Every response the load generator saw: when (since its start), the status (0 when the
/// connection failed) and the droplet ID in the page.
#[derive(Debug, Clone, Copy)]
struct Answer {
    at: Duration,
    status: u16,
    id: Option<u64>,
}

/// A closed-loop load: `workers` threads, of which the first `active` send one request
/// after another through HAProxy's frontend. Stops by itself after `limit`.
struct Load {
    started: Instant,
    active: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    answers: Arc<Mutex<Vec<Answer>>>,
    threads: Vec<JoinHandle<()>>,
}

impl Load {
    fn start(addr: SocketAddr, workers: usize, active: usize, limit: Duration) -> Load {
        let started = Instant::now();
        let active = Arc::new(AtomicUsize::new(active));
        let stop = Arc::new(AtomicBool::new(false));
        let answers = Arc::new(Mutex::new(Vec::new()));
        let threads = (0..workers)
            .map(|i| {
                let (active, stop, answers) = (active.clone(), stop.clone(), answers.clone());
                std::thread::spawn(move || {
                    while !stop.load(Ordering::Relaxed) && started.elapsed() < limit {
                        if i >= active.load(Ordering::Relaxed) {
                            std::thread::sleep(Duration::from_millis(5));
                            continue;
                        }
                        let got = http_get(addr, "/");
                        let at = started.elapsed();
                        let (status, id) = match got {
                            Some((status, body)) => (status, page_id(&body)),
                            None => (0, None),
                        };
                        answers.lock().unwrap().push(Answer { at, status, id });
                    }
                })
            })
            .collect();
        Load {
            started,
            active,
            stop,
            answers,
            threads,
        }
    }

    fn set_active(&self, n: usize) -> Duration {
        self.active.store(n, Ordering::Relaxed);
        self.started.elapsed()
    }

    fn stop(mut self) -> Vec<Answer> {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            t.join().unwrap();
        }
        self.answers.lock().unwrap().clone()
    }
}

/// The droplet ID in a do-sim app's page (`Droplet: NAME, ID: 123, IP Address: …`).
fn page_id(body: &str) -> Option<u64> {
    body.split("ID: ")
        .nth(1)?
        .split(',')
        .next()?
        .trim()
        .parse()
        .ok()
}

/// A world whose apps take `service` per request, with health checks every 300 ms (their
/// timeout too: a check slower than that fails), and an
/// `autoscale:` section `autoscale`.
fn world(service: Duration, autoscale: Value) -> Option<TestEnv> {
    if !haproxy_available() || !socat_available() {
        return None;
    }
    let opts = SimOptions {
        app_service_time: service,
        ..fast_sim_options()
    };
    let env = TestEnv::with_options(opts, true);
    env.configure(|c| {
        c.haproxy.check_inter = Some("300ms".into());
        c.set_raw("autoscale", autoscale);
    });
    Some(env)
}

fn journal(env: &TestEnv) -> doproxy::store::journal::Journal {
    let text = std::fs::read_to_string(env.path("inventory.journal")).unwrap_or_default();
    doproxy::store::journal::Journal::parse("inventory.journal", &text).unwrap()
}

/// The backend's servers as HAProxy shows them: (id, status, weight).
fn haproxy_servers(env: &TestEnv) -> Vec<(u64, String, u64)> {
    let text = stats_command(&env.path("admin.sock"), "show stat");
    doproxy::haproxy::runtime::parse_show_stat(&text, "www-backend")
        .into_iter()
        .filter_map(|s| Some((s.id?, s.state(), s.weight?)))
        .collect()
}

/// Waits (bounded) until `cond` holds.
fn wait_for(what: &str, timeout: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Starts `doproxy -o json autoscale` with its output in `autoscale.log`.
fn daemon(env: &TestEnv, extra: &[&str]) -> Child {
    let log = std::fs::File::create(env.path("autoscale.log")).unwrap();
    let err = std::fs::File::create(env.path("autoscale.err")).unwrap();
    let mut args = vec!["-o", "json", "autoscale"];
    args.extend_from_slice(extra);
    env.command(&args)
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(err)
        .spawn()
        .expect("start doproxy autoscale")
}

/// Stops the daemon with SIGTERM: it must exit 0 within 10 s. Returns its decision lines.
fn stop(env: &TestEnv, mut child: Child) -> Vec<Value> {
    assert!(signal(child.id(), "TERM"));
    let status = wait_with_deadline(&mut child, Duration::from_secs(10));
    let err = env.read_output("autoscale.err");
    assert!(status.success(), "autoscale exit {status:?}: {err}");
    decisions(env)
}

fn decisions(env: &TestEnv) -> Vec<Value> {
    env.read_output("autoscale.log")
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect()
}

/// Standbys created, booted, UP and parked at weight 0 in HAProxy.
fn parked_standbys(env: &TestEnv) -> Vec<u64> {
    let j = journal(env);
    haproxy_servers(env)
        .into_iter()
        .filter(|(id, st, w)| j.standby.contains(id) && st == "UP" && *w == 0)
        .map(|(id, _, _)| id)
        .collect()
}

#[test]
fn a_step_is_served_by_an_admitted_standby_within_a_second() {
    let Some(env) = world(
        Duration::from_millis(50),
        json!({
            "min": 1, "max": 6, "standby": 3, "tick": "200ms",
            "targets": {"sessions_per_server": 2},
            "reconcile_interval": "2s",
        }),
    ) else {
        return;
    };
    env.run(&["create"]).ok();
    let first = env.inventory();
    assert_eq!(first.len(), 1);
    let child = daemon(&env, &[]);
    // The daemon fills the standby pool through create's path: three droplets, parked.
    wait_for("3 parked standbys", Duration::from_secs(30), || {
        parked_standbys(&env).len() == 3
    });
    let standbys: BTreeSet<u64> = parked_standbys(&env).into_iter().collect();
    assert_eq!(env.inventory().len(), 4);
    // A load one server carries (2 in flight against a target of 2), then 4 times that.
    let load = Load::start(env.frontend(), 8, 2, Duration::from_secs(30));
    std::thread::sleep(Duration::from_secs(2));
    let before = load.answers.lock().unwrap().clone();
    assert!(
        before.iter().all(|a| a.id == Some(first[0])),
        "parked standbys got requests before the step: {before:?}\n{}\n{}",
        env.read("autoscale.log"),
        env.read("autoscale.err")
    );
    let step = load.set_active(8);
    std::thread::sleep(Duration::from_secs(3));
    let answers = load.stop();
    let lines = stop(&env, child);

    let failed: Vec<&Answer> = answers.iter().filter(|a| a.status != 200).collect();
    assert!(failed.is_empty(), "failed requests: {failed:?}");
    let first_standby = answers
        .iter()
        .filter(|a| a.at >= step && a.id.is_some_and(|id| standbys.contains(&id)))
        .map(|a| a.at - step)
        .min()
        .expect("no request was served by a standby after the step");
    assert!(
        first_standby < Duration::from_secs(1),
        "first request served by an admitted standby {first_standby:?} after the step"
    );
    // Admitted over the runtime API: no reload happened for it, and the journal follows.
    let admits: u64 = lines
        .iter()
        .map(|l| l["action"]["admit"].as_u64().unwrap())
        .sum();
    assert!(admits >= 1, "{lines:?}");
    for l in &lines {
        for key in ["time", "signals", "current", "desired", "action", "reason"] {
            assert!(l.get(key).is_some(), "{key} missing in {l}");
        }
    }
    // The admitted left the journal's pool (every later render serves them), and the pool
    // was refilled through create's path.
    let admitted: Vec<u64> = lines
        .iter()
        .flat_map(|l| l["admitted"].as_array().unwrap().clone())
        .map(|v| v.as_u64().unwrap())
        .collect();
    let j = journal(&env);
    assert!(
        admitted
            .iter()
            .all(|id| !j.standby.contains(id) && standbys.contains(id)),
        "admitted {admitted:?}, journal {j:?}"
    );
}
