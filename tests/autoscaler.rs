//! The live autoscaler (`doproxy autoscale`) on a real HAProxy on 127.0.0.1 and do-sim, with
//! apps that take time to answer (`app_service_time`), so that a load through HAProxy
//! builds real sessions. A bounded in-process load generator counts every response and who
//! served it.

use crate::support::*;
use do_sim::sandbox::load::{Answer, Load};
use do_sim::SimOptions;
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

/// A world whose apps take `service` per request, with health checks every 300 ms (their
/// timeout too: a check slower than that fails), and an
/// `autoscale:` section `autoscale`.
fn world(service: Duration, autoscale: Value) -> Option<TestEnv> {
    let opts = SimOptions {
        app_service_time: service,
        ..fast_sim_options()
    };
    world_with(opts, autoscale)
}

/// [`world`] with the simulator's options given.
fn world_with(opts: SimOptions, autoscale: Value) -> Option<TestEnv> {
    if !haproxy_available() || !socat_available() {
        return None;
    }
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

/// A running daemon: killed (by its PID) and reaped if the test ends without [`stop`] (a
/// failed assertion must not leave it running).
struct Daemon(Option<Child>);

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut c) = self.0.take() {
            crate::support::proc::kill_and_reap(&mut c);
        }
    }
}

/// Starts `doproxy -o json autoscale` with its output in `autoscale.log`.
fn daemon(env: &TestEnv, extra: &[&str]) -> Daemon {
    let log = std::fs::File::create(env.path("autoscale.log")).unwrap();
    let err = std::fs::File::create(env.path("autoscale.err")).unwrap();
    let mut args = vec!["-o", "json", "autoscale"];
    args.extend_from_slice(extra);
    crate::support::proc::dies_with_its_test(&env.command(&args))
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(err)
        .spawn()
        .map(|c| Daemon(Some(c)))
        .expect("start doproxy autoscale")
}

/// Stops the daemon with SIGTERM: it must exit 0 within 10 s. Returns its decision lines.
fn stop(env: &TestEnv, mut daemon: Daemon) -> Vec<Value> {
    let mut child = daemon.0.take().expect("a running daemon");
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

/// Standbys created, booted, UP after a passed health check and parked at weight 0.
fn parked_standbys(env: &TestEnv) -> Vec<u64> {
    let j = journal(env);
    let text = stats_command(&env.path("admin.sock"), "show stat");
    doproxy::haproxy::runtime::parse_show_stat(&text, "www-backend")
        .into_iter()
        .filter(|s| {
            s.state() == "UP"
                && s.weight == Some(0)
                && s.check_status
                    .as_deref()
                    .is_some_and(|c| c.trim_start_matches("* ").starts_with("L7OK"))
        })
        .filter_map(|s| s.id)
        .filter(|id| j.standby.contains(id))
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
    // A load one server carries with room to spare (1 in flight against a target of 2: at
    // 2 a busy machine's slower answers read as a second server's worth, and a spare was
    // admitted before the step), then 8 times that.
    let mut load = Load::start(env.frontend(), 8, 1, Duration::from_secs(30));
    std::thread::sleep(Duration::from_secs(2));
    let before = load.answers();
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
    eprintln!(
        "FIGURES autoscale step: first request served by an admitted standby {first_standby:?} after the 8x step; {} requests, {} failed",
        answers.len(),
        failed.len()
    );
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
    // What is admitted is a spare: one of the first pool or, when the load (read slowly
    // on a busy machine) asks for more than the first pool, one the refill made. Never the
    // droplet that served from the start.
    let inventory = env.inventory();
    assert!(
        admitted
            .iter()
            .all(|id| !j.standby.contains(id) && *id != first[0] && inventory.contains(id)),
        "admitted {admitted:?}, journal {j:?}, inventory {inventory:?}"
    );
    assert!(
        admitted.iter().any(|id| standbys.contains(id)),
        "admitted {admitted:?}, the first pool {standbys:?}"
    );
    assert_eq!(j.standby.len(), 3, "the pool was refilled: {j:?}");
}

/// POSTs to `/v2/droplets` the simulator answered (droplets created or tried).
fn creates_sent(env: &TestEnv) -> usize {
    env.sim
        .requests()
        .iter()
        .filter(|r| r.method == "POST" && r.path == "/v2/droplets")
        .count()
}

/// DELETEs of droplets the simulator saw.
fn deletes_sent(env: &TestEnv) -> usize {
    env.sim
        .requests()
        .iter()
        .filter(|r| r.method == "DELETE" && r.path.starts_with("/v2/droplets/"))
        .count()
}

/// Waits (bounded) until a decision line satisfies `pred`.
fn wait_line(env: &TestEnv, what: &str, timeout: Duration, pred: impl Fn(&Value) -> bool) {
    wait_for(what, timeout, || {
        env.read("autoscale.log")
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .any(|l| pred(&l))
    });
}

fn actions(lines: &[Value], key: &str) -> u64 {
    lines
        .iter()
        .map(|l| l["action"][key].as_u64().unwrap())
        .sum()
}

#[test]
fn no_stats_sample_means_no_action_and_haproxy_keeps_serving() {
    let Some(env) = world(
        Duration::from_millis(50),
        json!({"min": 1, "max": 6, "standby": 1, "tick": "200ms", "stale_after": "1s",
               "targets": {"sessions_per_server": 2}, "reconcile_interval": "2s"}),
    ) else {
        return;
    };
    env.run(&["create"]).ok();
    let child = daemon(&env, &[]);
    wait_for("1 parked standby", Duration::from_secs(30), || {
        parked_standbys(&env).len() == 1
    });
    // Blackout: the stats socket is gone from where the config says it is.
    let sock = env.path("admin.sock");
    let away = env.path("admin.sock.away");
    std::fs::rename(&sock, &away).unwrap();
    wait_line(
        &env,
        "a signals_missing line",
        Duration::from_secs(5),
        |l| l["reason"] == "signals_missing",
    );
    let (posts, deletes, inventory) = (creates_sent(&env), deletes_sent(&env), env.inventory());
    let mut load = Load::start(env.frontend(), 8, 8, Duration::from_secs(20));
    std::thread::sleep(Duration::from_secs(2));
    let during = decisions(&env);
    // Nothing done while blind: no create, no delete, no standby admitted.
    assert_eq!(creates_sent(&env), posts);
    assert_eq!(deletes_sent(&env), deletes);
    assert_eq!(env.inventory(), inventory);
    std::fs::rename(&away, &sock).unwrap();
    assert_eq!(parked_standbys(&env).len(), 1, "{during:?}");
    // Sight back: the same load gets the standby admitted (the test can see an action).
    wait_line(&env, "an admit", Duration::from_secs(10), |l| {
        l["action"]["admit"].as_u64() > Some(0)
    });
    let answers = load.stop();
    stop(&env, child);
    let failed = answers.iter().filter(|a| a.status != 200).count();
    assert_eq!(failed, 0, "HAProxy kept serving through the blackout");
}

#[test]
fn an_api_outage_means_no_create_and_no_delete() {
    let Some(env) = world(
        Duration::from_millis(50),
        json!({"min": 1, "max": 6, "standby": 0, "tick": "200ms",
               "targets": {"sessions_per_server": 2}, "reconcile_interval": "1s"}),
    ) else {
        return;
    };
    env.run(&["create"]).ok();
    let child = daemon(&env, &[]);
    wait_line(&env, "a steady line", Duration::from_secs(10), |l| {
        l["reason"] == "steady"
    });
    // Every API answer is a 503 now (429s behave the same: the rate-limited state).
    env.sim.set_faults(do_sim::Faults {
        error_rate: Some(1.0),
        ..Default::default()
    });
    wait_line(&env, "an api_erroring line", Duration::from_secs(10), |l| {
        l["reason"] == "api_erroring"
    });
    let (posts, deletes) = (creates_sent(&env), deletes_sent(&env));
    let mut load = Load::start(env.frontend(), 8, 8, Duration::from_secs(30));
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(
        creates_sent(&env),
        posts,
        "a create was sent during the outage"
    );
    assert_eq!(deletes_sent(&env), deletes);
    assert_eq!(env.inventory().len(), 1);
    // The API is back: the load that was waiting gets its droplets.
    env.sim.set_faults(do_sim::Faults {
        error_rate: Some(0.0),
        ..Default::default()
    });
    wait_for("a create after the outage", Duration::from_secs(15), || {
        env.inventory().len() > 1
    });
    let answers = load.stop();
    let lines = stop(&env, child);
    assert!(actions(&lines, "create") >= 1);
    let failed = answers.iter().filter(|a| a.status != 200).count();
    assert_eq!(failed, 0, "HAProxy kept serving through the outage");
}

#[test]
fn a_ramp_beyond_max_creates_up_to_max_and_no_further() {
    let Some(env) = world(
        Duration::from_millis(50),
        json!({"min": 1, "max": 3, "standby": 0, "tick": "200ms",
               "targets": {"requests_per_second_per_server": 5}, "reconcile_interval": "2s"}),
    ) else {
        return;
    };
    env.run(&["create"]).ok();
    let child = daemon(&env, &[]);
    // 5 requests a second per server; the ramp ends far beyond what 3 servers take.
    let mut load = Load::start(env.frontend(), 16, 1, Duration::from_secs(30));
    let mut peak = 0;
    for n in [4, 8, 12, 16] {
        load.set_active(n);
        let until = Instant::now() + Duration::from_secs(1);
        while Instant::now() < until {
            peak = peak.max(env.sim.droplets().len());
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    wait_for("3 serving", Duration::from_secs(20), || {
        haproxy_servers(&env)
            .iter()
            .filter(|(_, st, w)| st == "UP" && *w > 0)
            .count()
            == 3
    });
    let until = Instant::now() + Duration::from_secs(2);
    while Instant::now() < until {
        peak = peak.max(env.sim.droplets().len());
        std::thread::sleep(Duration::from_millis(50));
    }
    let answers = load.stop();
    let lines = stop(&env, child);
    assert_eq!(peak, 3, "droplets at the peak (max 3)");
    assert_eq!(env.inventory().len(), 3);
    assert!(lines.iter().all(|l| l["desired"].as_u64() <= Some(3)));
    assert!(
        lines.iter().any(|l| l["limited_by"] == "max"),
        "no decision says max cut it: {lines:?}"
    );
    // The demand was well beyond max: 20 requests a second or more want 4 or more.
    let rates: Vec<f64> = lines
        .iter()
        .filter_map(|l| l["signals"]["request_rate"].as_f64())
        .collect();
    assert!(
        rates.iter().any(|r| *r >= 20.0),
        "the load never asked for more than max: {rates:?}"
    );
    let failed = answers.iter().filter(|a| a.status != 200).count();
    assert_eq!(failed, 0);
}

#[test]
fn when_load_falls_servers_go_after_the_window_and_not_below_min() {
    let Some(env) = world(
        Duration::from_millis(50),
        json!({"min": 1, "max": 6, "standby": 0, "tick": "200ms",
               "stabilization_down": "3s",
               "targets": {"sessions_per_server": 2}, "reconcile_interval": "2s"}),
    ) else {
        return;
    };
    env.run(&["create", "--count", "3"]).ok();
    assert_eq!(
        env.wait_distinct_backends(3, Duration::from_secs(10)).len(),
        3
    );
    // One in flight: one server is enough; the daemon starts with three.
    let mut load = Load::start(env.frontend(), 1, 1, Duration::from_secs(40));
    let started = Instant::now();
    let child = daemon(&env, &[]);
    wait_for("one droplet left", Duration::from_secs(30), || {
        env.inventory().len() == 1
    });
    let took = started.elapsed();
    std::thread::sleep(Duration::from_secs(1));
    let answers = load.stop();
    let lines = stop(&env, child);
    // Not before the window: a new daemon watches for stabilization_down first.
    let first_down = lines
        .iter()
        .position(|l| {
            l["action"]["park"].as_u64() > Some(0) || l["action"]["delete"].as_u64() > Some(0)
        })
        .expect("no scale-in decision");
    assert!(took >= Duration::from_secs(3), "scaled in after {took:?}");
    assert!(lines[..first_down]
        .iter()
        .all(|l| l["desired"].as_u64() >= Some(3)));
    // Never below min; the droplets went through delete's path (destroyed at the API).
    assert!(lines
        .iter()
        .all(|l| l["desired"].as_u64().is_none_or(|d| d >= 1)));
    assert_eq!(env.sim.droplets().len(), 1, "the others were destroyed");
    let failed: Vec<&Answer> = answers.iter().filter(|a| a.status != 200).collect();
    assert!(
        failed.is_empty(),
        "failed requests while scaling in: {failed:?}"
    );
}

#[test]
fn a_square_wave_load_stays_within_the_action_budget() {
    let metrics_port = free_port();
    let Some(env) = world(
        Duration::from_millis(50),
        json!({"min": 1, "max": 6, "standby": 0, "tick": "200ms",
               "stabilization_down": "0s", "max_actions": 2, "action_window": "1h",
               "targets": {"sessions_per_server": 2}, "reconcile_interval": "2s",
               "metrics_listen": format!("127.0.0.1:{metrics_port}")}),
    ) else {
        return;
    };
    env.run(&["create"]).ok();
    let child = daemon(&env, &[]);
    let mut load = Load::start(env.frontend(), 10, 1, Duration::from_secs(60));
    // Half-periods of 0.8 s until the budget has held an action back (a slow machine takes
    // more of them), at most 40.
    for i in 0..40 {
        load.set_active(if i % 2 == 0 { 10 } else { 1 });
        std::thread::sleep(Duration::from_millis(800));
        if i >= 9 && env.read("autoscale.log").contains("\"action_budget\"") {
            break;
        }
    }
    // The daemon's figures in Prometheus' text format.
    let addr: SocketAddr = format!("127.0.0.1:{metrics_port}").parse().unwrap();
    let (status, metrics) = http_get(addr, "/metrics").expect("metrics answer");
    assert_eq!(status, 200);
    for want in [
        "doproxy_autoscale_servers{role=\"serving\"}",
        "doproxy_autoscale_desired_servers ",
        "doproxy_autoscale_decisions_total{reason=\"",
        "doproxy_autoscale_signal{name=\"request_rate\"}",
    ] {
        assert!(metrics.contains(want), "{want} missing:\n{metrics}");
    }
    let answers = load.stop();
    let lines = stop(&env, child);
    let api_decisions = lines
        .iter()
        .filter(|l| {
            l["action"]["create"].as_u64() > Some(0) || l["action"]["delete"].as_u64() > Some(0)
        })
        .count();
    assert!(
        api_decisions >= 1,
        "the wave never moved the fleet: {lines:?}"
    );
    assert!(
        api_decisions <= 2,
        "{api_decisions} API actions with max_actions 2: {lines:?}"
    );
    assert!(
        lines.iter().any(|l| l["reason"] == "action_budget"),
        "the budget never held an action back"
    );
    let failed = answers.iter().filter(|a| a.status != 200).count();
    assert_eq!(failed, 0);
}

#[test]
fn once_dry_run_and_scale_to() {
    let Some(env) = world(
        Duration::ZERO,
        json!({"min": 1, "max": 6, "standby": 1, "tick": "200ms",
               "targets": {"sessions_per_server": 2}}),
    ) else {
        return;
    };
    env.run(&["create"]).ok();
    // --dry-run --once: decides to fill the pool, changes nothing.
    let posts = creates_sent(&env);
    let r = env
        .run(&["-o", "json", "autoscale", "--once", "--dry-run"])
        .ok();
    let line: Value = serde_json::from_str(r.stdout.trim()).unwrap();
    assert_eq!(line["action"]["create"], 1, "{line}");
    assert_eq!(line["dry_run"], true);
    assert_eq!(creates_sent(&env), posts);
    assert_eq!(env.inventory().len(), 1);
    assert!(!env.path("etc/haproxy.cfg.autoscale.json").exists());
    // --once: the standby is created (parked), and the run waits for it.
    let r = env.run(&["autoscale", "--once"]).ok();
    assert!(r.stdout.contains("create 1"), "{}", r.stdout);
    assert_eq!(env.inventory().len(), 2);
    assert_eq!(journal(&env).standby.len(), 1);
    assert!(
        env.installed().contains(" weight 0 # id:"),
        "{}",
        env.installed()
    );
    let state: Value = serde_json::from_str(&env.read("etc/haproxy.cfg.autoscale.json")).unwrap();
    assert_eq!(state["last"]["reason"], "refill_standby", "{state}");
    // status shows the role and the last decision.
    let st = env.run(&["status"]);
    assert!(st.stdout.contains("1 standby"), "{}", st.stdout);
    assert!(
        st.stdout.contains("autoscale: last decision"),
        "{}",
        st.stdout
    );
    // scale --to 2 admits the standby (no create), --to 1 deletes the newest.
    let posts = creates_sent(&env);
    wait_for("the standby UP", Duration::from_secs(10), || {
        parked_standbys(&env).len() == 1
    });
    let spare = journal(&env).standby[0];
    let r = env.run(&["scale", "--to", "2", "--dry-run"]).ok();
    assert!(r.stdout.contains("would admit standby"), "{}", r.stdout);
    assert_eq!(journal(&env).standby, [spare]);
    env.run(&["scale", "--to", "2"]).ok();
    assert_eq!(creates_sent(&env), posts, "admitted, not created");
    assert!(journal(&env).standby.is_empty());
    assert!(haproxy_servers(&env)
        .iter()
        .any(|(id, _, w)| *id == spare && *w == 1));
    let r = env.run(&["-o", "json", "scale", "--to", "1"]).ok();
    let out: Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(out["deleted"], json!([spare]), "{out}");
    assert_eq!(env.inventory().len(), 1);
}

#[test]
fn bad_autoscale_input_is_refused_naming_the_key() {
    let env = TestEnv::new();
    let r = env.run(&["autoscale", "--once"]).code(2);
    assert!(r.stderr.contains("no autoscale: section"), "{}", r.stderr);
    for (key, value, says) in [
        ("autoscale.tick", json!("0s"), "autoscale.tick"),
        (
            "autoscale.metrics_listen",
            json!("localhost"),
            "autoscale.metrics_listen",
        ),
        (
            "autoscale.reconcile_interval",
            json!("10ms"),
            "autoscale.reconcile_interval",
        ),
    ] {
        env.configure(|c| c.set_raw(key, value.clone()));
        let r = env.run(&["autoscale", "--once"]).code(2);
        assert!(r.stderr.contains(says), "{key}: {}", r.stderr);
        assert_eq!(r.stderr.lines().count(), 1, "{}", r.stderr);
    }
    env.configure(|c| {
        c.set_raw("autoscale", json!({}));
        c.haproxy.stats_socket = Some(None);
    });
    let r = env.run(&["autoscale"]).code(2);
    assert!(r.stderr.contains("haproxy.stats_socket"), "{}", r.stderr);
    assert!(env.inventory().is_empty());
}

#[test]
fn a_daemon_killed_mid_create_loses_no_droplet() {
    let Some(env) = world(
        Duration::ZERO,
        json!({"min": 1, "max": 6, "standby": 2, "tick": "200ms",
               "targets": {"sessions_per_server": 2}}),
    ) else {
        return;
    };
    env.run(&["create"]).ok();
    // Slow boots from here on: the daemon's creates are still waiting when it is killed.
    env.sim.set_faults(do_sim::Faults {
        active_after_ms: Some(3000),
        ..Default::default()
    });
    let mut child = daemon(&env, &[]).0.take().unwrap();
    wait_for(
        "the standby creates at the API",
        Duration::from_secs(20),
        || env.sim.droplets().len() == 3,
    );
    child.kill().unwrap(); // SIGKILL, by its PID
    wait_with_deadline(&mut child, Duration::from_secs(10));
    // Every droplet is in the inventory or in the journal's intents: none is lost.
    let j = journal(&env);
    for d in env.sim.droplets() {
        assert!(
            env.inventory().contains(&d.id) || j.creating.iter().any(|i| i.name == d.name),
            "droplet {} ({}) is neither in the inventory nor journaled",
            d.id,
            d.name
        );
    }
    // The next command adopts what the kill left; the standbys keep their role.
    env.settle();
    env.run(&["print"]).ok();
    let inv = env.inventory();
    assert_eq!(inv.len(), 3);
    assert!(env.sim.droplets().iter().all(|d| inv.contains(&d.id)));
    assert!(journal(&env).creating.is_empty());
}

/// Ramps the load (rate-driven target) far beyond what `cap` droplets carry and returns the
/// most droplets the simulator ever held, and the decision lines.
fn ramp_to_a_cap(env: &TestEnv) -> (usize, Vec<Value>) {
    env.run(&["create"]).ok();
    let child = daemon(env, &[]);
    let mut load = Load::start(env.frontend(), 12, 1, Duration::from_secs(30));
    let mut peak = 0;
    for n in [4, 8, 12, 12, 12] {
        load.set_active(n);
        let until = Instant::now() + Duration::from_secs(1);
        while Instant::now() < until {
            peak = peak.max(env.sim.droplets().len());
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    let answers = load.stop();
    let lines = stop(env, child);
    assert_eq!(answers.iter().filter(|a| a.status != 200).count(), 0);
    (peak, lines)
}

#[test]
fn the_accounts_droplet_limit_caps_the_fleet() {
    let opts = SimOptions {
        app_service_time: Duration::from_millis(50),
        droplet_limit: 3,
        ..fast_sim_options()
    };
    let Some(env) = world_with(
        opts,
        json!({"min": 1, "max": 10, "tick": "200ms",
               "targets": {"requests_per_second_per_server": 5}}),
    ) else {
        return;
    };
    let (peak, lines) = ramp_to_a_cap(&env);
    assert_eq!(peak, 3, "droplets at the peak (droplet_limit 3, max 10)");
    assert!(
        lines.iter().any(|l| l["limited_by"] == "droplet_limit"),
        "{:?}",
        lines
            .iter()
            .map(|l| (&l["desired"], &l["reason"], &l["limited_by"]))
            .collect::<Vec<_>>()
    );
    // It read the limit from the API (GET /v2/account), and no create was refused.
    assert!(env.sim.requests().iter().any(|r| r.path == "/v2/account"));
    assert!(env
        .sim
        .requests()
        .iter()
        .all(|r| !(r.method == "POST" && r.status == 422)));
}

#[test]
fn max_hourly_cost_caps_the_fleet_at_the_sizes_price() {
    // s-1vcpu-1gb costs $0.00893 an hour at do-sim as at DigitalOcean: $0.03 buys 3.
    let Some(env) = world(
        Duration::from_millis(50),
        json!({"min": 1, "max": 10, "tick": "200ms", "max_hourly_cost": 0.03,
               "targets": {"requests_per_second_per_server": 5}}),
    ) else {
        return;
    };
    let (peak, lines) = ramp_to_a_cap(&env);
    assert_eq!(peak, 3, "droplets at the peak ($0.03/h at $0.00893/h each)");
    assert!(lines.iter().any(|l| l["limited_by"] == "cost"), "{lines:?}");
    assert!(env.sim.requests().iter().any(|r| r.path == "/v2/sizes"));
}

#[test]
fn in_steady_state_the_api_sees_one_listing_per_reconcile_interval() {
    let Some(env) = world(
        Duration::from_millis(50),
        json!({"min": 1, "max": 6, "tick": "200ms", "reconcile_interval": "2s",
               "targets": {"sessions_per_server": 2}}),
    ) else {
        return;
    };
    env.run(&["create"]).ok();
    let mut load = Load::start(env.frontend(), 1, 1, Duration::from_secs(20));
    let child = daemon(&env, &[]);
    wait_line(&env, "a steady line", Duration::from_secs(10), |l| {
        l["reason"] == "steady"
    });
    env.sim.clear_requests();
    std::thread::sleep(Duration::from_millis(6500));
    let seen: Vec<(String, String)> = env
        .sim
        .requests()
        .into_iter()
        .map(|r| (r.method, r.path))
        .collect();
    load.stop();
    let lines = stop(&env, child);
    // 6.5 s at a tick of 200 ms is 32 decisions; the API saw only the listings.
    assert!(
        seen.iter().all(|(m, p)| m == "GET" && p == "/v2/droplets"),
        "{seen:?}"
    );
    assert!(
        (3..=4).contains(&seen.len()),
        "{} listings in 6.5 s: {seen:?}",
        seen.len()
    );
    assert_eq!(actions(&lines, "create") + actions(&lines, "delete"), 0);
}

/// A create stopped between recording its ID and settling its intent leaves both: the next
/// command settles the intent at once (the droplet is in the inventory), adopting nothing.
#[test]
fn an_intent_whose_droplet_is_recorded_is_settled_by_the_next_command() {
    let env = TestEnv::new();
    let id = env.create_direct("auto-nginx-rec0rd", &["doproxy"]);
    env.write("inventory", &format!("{id}\n"));
    env.write(
        "inventory.journal",
        &format!(
            "{{\"creating\": [{{\"name\": \"auto-nginx-rec0rd\", \"since\": {}}}]}}\n",
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_secs()
        ),
    );
    let r = env.run(&["reload"]).ok();
    assert!(!r.stderr.contains("adopted"), "{}", r.stderr);
    assert!(journal(&env).creating.is_empty(), "{:?}", journal(&env));
    assert_eq!(env.inventory(), [id]);
}
