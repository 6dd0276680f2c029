//! The fleet against what the API answers: an empty answer for a non-empty inventory is an
//! incident that changes nothing; a droplet missing from an answer keeps its server until
//! it has been missing for `not_found_grace`, counted afresh each time it goes missing;
//! `reload --watch` polls the API while a droplet boots, and is quiet once all are ready.

use crate::support::*;
use do_sim::SimOptions;
use std::time::{Duration, Instant};

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

#[test]
fn an_empty_answer_for_a_non_empty_inventory_changes_nothing() {
    let env = TestEnv::new();
    env.run(&["create", "--count", "2"]).ok();
    let installed = env.installed();
    // Every droplet vanishes from the API's answers at once (an incident, or all deleted
    // outside doproxy): no config without them is installed, even past not_found_grace.
    for d in env.sim.droplets() {
        assert!(env.delete_direct(d.id));
    }
    for pause in [2100, 0] {
        let r = env.run(&["reload"]).code(1);
        assert!(
            r.stderr
                .contains("the API listed none of the 2 inventory droplet(s)"),
            "{}",
            r.stderr
        );
        assert_eq!(env.installed(), installed);
        std::thread::sleep(Duration::from_millis(pause));
    }
    assert_eq!(
        env.inventory().len(),
        2,
        "nothing dropped from the inventory"
    );
}

#[test]
fn a_gone_droplet_beside_an_orphan_is_not_an_api_incident() {
    let env = TestEnv::new();
    // The inventory's only droplet is gone, but the API does list a tagged droplet (an
    // orphan): the answer is not empty, so this is no incident.
    let gone = env.create_direct("auto-nginx-gone", &["doproxy"]);
    assert!(env.delete_direct(gone));
    let orphan = env.create_direct("auto-nginx-orphan", &["doproxy"]);
    env.write("inventory", &format!("{gone}\n"));
    let r = env.run(&["reload"]).ok();
    assert!(!r.stderr.contains("listed none"), "{}", r.stderr);
    assert!(
        r.stderr
            .contains(&format!("droplet {gone} is missing from the API's answer")),
        "{}",
        r.stderr
    );
    assert!(env.server_lines().is_empty());
    assert!(env.sim.droplets().iter().any(|d| d.id == orphan));
}

#[test]
fn a_droplet_seen_again_gets_a_fresh_grace_when_it_goes_missing_again() {
    let env = TestEnv::new();
    env.run(&["create", "--count", "2"]).ok();
    let ids = env.inventory();
    // The node's missing log remembers droplet 0 missing an hour ago (it was missing from
    // an answer then); since then the API has listed it again.
    env.write(
        "etc/haproxy.cfg.missing.json",
        &format!(
            "{{\"first_missing\":{{\"{}\":{}}}}}",
            ids[0],
            unix_now() - 3600
        ),
    );
    env.run(&["reload"]).ok();
    assert_eq!(env.server_lines().len(), 2);
    // Now it really goes missing: its grace starts now, not an hour ago.
    assert!(env.delete_direct(ids[0]));
    let r = env.run(&["reload"]).ok();
    assert!(
        r.stderr.contains(&format!(
            "droplet {} is missing from the API's answer; its server stays",
            ids[0]
        )),
        "{}",
        r.stderr
    );
    assert!(
        env.server_lines()
            .iter()
            .any(|l| l.starts_with(&format!("server www-{} ", ids[0]))),
        "{:?}",
        env.server_lines()
    );
}

#[test]
fn watch_polls_while_a_droplet_boots_and_is_quiet_once_all_are_ready() {
    let opts = SimOptions {
        active_after: Duration::from_millis(1500),
        ..fast_sim_options()
    };
    let env = TestEnv::with_options(opts, false);
    // A short debounce: a watch that took "no change" for a change would pass every 0.5 s.
    env.configure(|c| c.watch_debounce = Some("50ms".into()));
    let id = env.create_direct("auto-nginx-boot", &["doproxy"]);
    env.write("inventory", &format!("{id}\n"));
    let log = std::fs::File::create(env.path("watch.log")).unwrap();
    let mut child = env
        .command(&["reload", "--watch"])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    // The inventory does not change: only polling the API (every poll_interval while the
    // droplet is `new`, not the 60 s re-sync) brings it in once it is active.
    let started = Instant::now();
    while !env.installed().contains(&format!("server www-{id} ")) {
        if started.elapsed() > Duration::from_secs(10) {
            let _ = child.kill();
            wait_with_deadline(&mut child, Duration::from_secs(10));
            panic!(
                "the booted droplet was not installed within 10 s: {}",
                env.read_output("watch.log")
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    // Everything ready: the watch leaves the API alone (the inventory file is watched
    // locally; the next API pass is the 60 s re-sync).
    std::thread::sleep(Duration::from_millis(300));
    env.sim.clear_requests();
    let cpu_before = cpu_time(child.id());
    std::thread::sleep(Duration::from_millis(1000));
    let quiet = env.sim.requests();
    let cpu = cpu_time(child.id()) - cpu_before;
    assert!(signal(child.id(), "TERM"));
    let status = wait_with_deadline(&mut child, Duration::from_secs(10));
    assert!(status.success(), "{}", env.read_output("watch.log"));
    assert!(
        quiet.len() <= 1,
        "{} API requests in 1 s with nothing pending: {quiet:?}",
        quiet.len()
    );
    // And it sleeps: no busy loop waiting for a change.
    assert!(
        cpu < Duration::from_millis(250),
        "{cpu:?} of CPU in 1 s idle"
    );
}

/// User plus system CPU time of process `pid` so far (`/proc/PID/stat`).
fn cpu_time(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // Fields after the command name (which is in parentheses): utime is the 14th field.
    let after = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<u64> = after
        .split_whitespace()
        .map(|x| x.parse().unwrap_or(0))
        .collect();
    let ticks = f[11] + f[12];
    // USER_HZ is 100 on Linux.
    Duration::from_millis(ticks * 10)
}

#[test]
fn the_shrink_guard_asks_haproxy_what_it_serves_and_yields_to_force() {
    if !haproxy_available() {
        return;
    }
    let env = TestEnv::with_haproxy();
    env.run(&["create", "--count", "3"]).ok();
    let ids = env.inventory();
    assert_eq!(
        env.wait_distinct_backends(3, Duration::from_secs(10)).len(),
        3
    );
    let installed = env.installed();
    // The inventory loses two of its three lines (a bad restore, a truncated file): a
    // config dropping 2 of the 3 served servers unasked is refused.
    env.write("inventory", &format!("{}\n", ids[0]));
    let r = env.run(&["reload"]).code(1);
    assert!(
        r.stderr
            .contains("refusing to install a config with 1 of the 3 server(s) HAProxy serves now"),
        "{}",
        r.stderr
    );
    assert_eq!(env.installed(), installed);
    assert_eq!(env.running_servers().len(), 3);
    // What HAProxy serves counts, not what the installed file says: with the file edited
    // down to one server behind doproxy's back, HAProxy still serves three.
    let one: String = installed
        .lines()
        .filter(|l| {
            !l.trim_start().starts_with("server ") || l.contains(&format!("server www-{} ", ids[0]))
        })
        .map(|l| format!("{l}\n"))
        .collect();
    env.write("etc/haproxy.cfg", &one);
    let r = env.run(&["reload"]).code(1);
    assert!(r.stderr.contains("1 of the 3 server(s)"), "{}", r.stderr);
    assert_eq!(env.running_servers().len(), 3);
    // --force installs it anyway.
    env.run(&["reload", "--force"]).ok();
    assert_eq!(env.running_servers(), vec![format!("www-{}", ids[0])]);
}
