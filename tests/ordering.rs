//! What happens in which order, on a real HAProxy: `delete` drains the server (seen on the
//! stats socket at the moment the reload command runs), reloads without it, destroys the
//! droplet only after that reload (the simulator's request log), and drops the line only
//! after the API said yes; a failed API delete or a failed reload keeps everything; the
//! `.last-good` copy is the previous config and what a failed reload puts back. Retries
//! honour `retry-after` (measured between arrivals at a scripted proxy), and a failed
//! delete is retried exactly `retry.max_attempts` times.

use crate::support::proxy::{Act, ApiProxy, Reply};
use crate::support::*;
use std::time::Duration;

/// A world with a real HAProxy whose reloads are traced ([`TestEnv::log_reloads`]) and
/// `n` droplets created, active and served. `None` when HAProxy or socat is missing
/// (outside CI).
fn traced_world(n: usize) -> Option<(TestEnv, Vec<u64>)> {
    if !haproxy_available() || !socat_available() {
        return None;
    }
    let env = TestEnv::with_haproxy();
    env.log_reloads();
    env.run(&["create", "--count", &n.to_string()]).ok();
    let ids = env.inventory();
    assert_eq!(ids.len(), n);
    assert_eq!(
        env.wait_distinct_backends(n, Duration::from_secs(10)).len(),
        n
    );
    Some((env, ids))
}

/// The simulator's request log from the first reload mark on: `(method, path)`.
fn api_log(env: &TestEnv) -> Vec<(String, String)> {
    env.sim
        .requests()
        .into_iter()
        .map(|r| (r.method, r.path))
        .collect()
}

#[test]
fn delete_drains_then_reloads_then_destroys_then_drops_the_line() {
    let Some((env, ids)) = traced_world(2) else {
        return;
    };
    let (gone, kept) = (ids[0], ids[1]);
    let reloads_before = env.logged_reloads().len();
    env.sim.clear_requests();
    let r = env.run(&["delete", "0"]).ok();
    assert!(
        r.stdout.contains(&format!("Success: {gone} deleted")),
        "{r:?}"
    );

    // 1. Drained before the reload that removes it: at the moment the reload command ran,
    //    HAProxy held www-<gone> in forced drain, and only that server.
    let reloads = env.logged_reloads();
    assert_eq!(reloads.len(), reloads_before + 1, "one reload for a delete");
    let at_reload = &reloads[reloads_before];
    let state = |id: u64| {
        at_reload
            .iter()
            .find(|(name, _)| *name == format!("www-{id}"))
            .map(|(_, admin)| *admin)
            .unwrap_or_else(|| panic!("www-{id} not served at the reload: {at_reload:?}"))
    };
    assert_ne!(
        state(gone) & ADMIN_FORCED_DRAIN,
        0,
        "www-{gone} was not in drain when the reload ran: {at_reload:?}"
    );
    assert_eq!(state(kept) & ADMIN_FORCED_DRAIN, 0, "{at_reload:?}");

    // 2. Reloaded before destroyed: the reload's mark comes before the one DELETE.
    let log = api_log(&env);
    let mark = log
        .iter()
        .position(|(_, p)| p == "/v2/_reload_mark")
        .unwrap_or_else(|| panic!("no reload mark in {log:?}"));
    let deletes: Vec<usize> = log
        .iter()
        .enumerate()
        .filter(|(_, (m, _))| m == "DELETE")
        .map(|(i, _)| i)
        .collect();
    assert_eq!(deletes.len(), 1, "{log:?}");
    assert_eq!(log[deletes[0]].1, format!("/v2/droplets/{gone}"));
    assert!(mark < deletes[0], "destroyed before the reload: {log:?}");

    // 3. Gone everywhere: inventory, installed config, running HAProxy, the API.
    assert_eq!(env.inventory(), vec![kept]);
    assert!(!env.installed().contains(&format!("www-{gone} ")));
    assert_eq!(env.running_servers(), vec![format!("www-{kept}")]);
    assert!(env.sim.droplets().iter().all(|d| d.id != gone));
}

#[test]
fn a_delete_whose_reload_fails_destroys_nothing() {
    let Some((env, ids)) = traced_world(2) else {
        return;
    };
    let installed = env.installed();
    let inventory = env.read("inventory");
    env.configure(|c| {
        c.reload_command = c.reload_command.take().map(|r| format!("exit 1; {r}"));
    });
    env.sim.clear_requests();
    let r = env.run(&["delete", "0"]).code(1);
    assert!(
        r.stderr
            .contains(&format!("droplet {} not deleted", ids[0])),
        "{}",
        r.stderr
    );
    let log = api_log(&env);
    assert!(
        log.iter().all(|(m, _)| m != "DELETE"),
        "a DELETE was sent although HAProxy could not be reloaded: {log:?}"
    );
    assert_eq!(env.read("inventory"), inventory, "the line stays");
    assert_eq!(env.installed(), installed, "the previous config is back");
    assert_eq!(env.sim.droplets().len(), 2);
    // HAProxy still runs the old config: the drained server got its traffic back.
    let states = env.server_admin_states();
    assert_eq!(states.len(), 2, "{states:?}");
    for (name, admin) in &states {
        assert_eq!(
            admin & ADMIN_FORCED_DRAIN,
            0,
            "{name} left in drain: {states:?}"
        );
    }
    let (bodies, failed) = env.requests(20);
    assert_eq!(
        (bodies.len(), failed),
        (20, 0),
        "HAProxy keeps serving both"
    );
}

#[test]
fn a_failed_api_delete_keeps_the_line_and_the_droplet_and_is_retried_max_attempts_times() {
    let env = TestEnv::new();
    env.run(&["create", "--count", "2"]).ok();
    let ids = env.inventory();
    // Every DELETE answers 500 (retryable); everything else reaches the simulator.
    let proxy = ApiProxy::start(
        &env.sim.url(),
        Box::new(|method, _, _| {
            if method == "DELETE" {
                Act::Answer(Reply::error(500, "server_error", &[]))
            } else {
                Act::Pass
            }
        }),
    );
    let api = proxy.url();
    env.configure(|c| c.api_url = Some(api));
    let r = env.run(&["delete", "0"]).code(1);
    let errors: Vec<&str> = r
        .stderr
        .lines()
        .filter(|l| l.starts_with("doproxy: error:"))
        .collect();
    assert_eq!(errors.len(), 1, "{}", r.stderr);
    assert!(
        errors[0].contains(&format!(
            "droplet {} is out of the HAProxy config but could not be destroyed",
            ids[0]
        )) && errors[0].contains(&format!("doproxy delete --id {}", ids[0])),
        "{}",
        r.stderr
    );
    assert_eq!(
        env.inventory(),
        ids,
        "the line of a droplet still billed stays"
    );
    assert_eq!(env.sim.droplets().len(), 2, "the droplet still exists");
    // Retried, within the policy: exactly retry.max_attempts (6 in the test config) tries.
    let deletes = proxy.seen().iter().filter(|s| s.method == "DELETE").count();
    assert_eq!(deletes, 6, "{:?}", proxy.seen());
    // The API comes back: the same command converges.
    env.configure(|_| {});
    env.run(&["delete", "0"]).ok();
    assert_eq!(env.inventory(), vec![ids[1]]);
    assert_eq!(env.sim.droplets().len(), 1);
}

#[test]
fn last_good_is_the_previous_config_and_what_a_failed_reload_puts_back() {
    let env = TestEnv::new();
    let last_good = || env.read("etc/haproxy.cfg.last-good");
    env.run(&["create"]).ok();
    let first = env.installed();
    assert_eq!(env.server_lines().len(), 1);
    // A second droplet joins through a reload: the first config is kept as .last-good.
    let extra = env
        .sim
        .create_droplet_direct("auto-nginx-extra", &["doproxy"]);
    env.write("inventory", &format!("{}{extra}\n", env.read("inventory")));
    std::thread::sleep(Duration::from_millis(200));
    env.run(&["reload"]).ok();
    let second = env.installed();
    assert_eq!(env.server_lines().len(), 2);
    assert_eq!(
        last_good(),
        first,
        ".last-good is the config before this reload"
    );
    // A third joins, but the reload fails: the installed config is .last-good again.
    let third = env
        .sim
        .create_droplet_direct("auto-nginx-third", &["doproxy"]);
    env.write("inventory", &format!("{}{third}\n", env.read("inventory")));
    std::thread::sleep(Duration::from_millis(200));
    env.configure(|c| c.reload_command = Some("exit 7".into()));
    let r = env.run(&["reload"]).code(1);
    assert!(
        r.stderr.contains("put the previous config back"),
        "{}",
        r.stderr
    );
    assert_eq!(
        env.installed(),
        second,
        "the config before the failed reload"
    );
    assert_eq!(
        env.installed(),
        last_good(),
        "what a failed reload puts back is .last-good"
    );
    assert!(
        env.read("haproxy.cfg").contains(&format!("www-{third} ")),
        "rendered, not installed"
    );
}

#[test]
fn a_429_with_retry_after_is_retried_no_sooner_than_asked() {
    let env = TestEnv::new();
    // The first listing answers 429 `retry-after: 1`; the rest reach the simulator.
    let proxy = ApiProxy::start(
        &env.sim.url(),
        Box::new(|method, target, n| {
            if n == 0 && method == "GET" && target.starts_with("/v2/droplets?") {
                Act::Answer(Reply::too_many_requests("1"))
            } else {
                Act::Pass
            }
        }),
    );
    let api = proxy.url();
    env.configure(|c| c.api_url = Some(api));
    let r = env.run(&["print"]).ok();
    assert_eq!(
        r.stdout,
        "The inventory file is empty. Use the create command.\n"
    );
    let seen = proxy.seen();
    assert_eq!(seen.len(), 2, "one 429, one retry: {seen:?}");
    assert_eq!(seen[0].scripted, Some(429));
    assert_eq!((seen[1].scripted, &seen[1].target), (None, &seen[0].target));
    let gap = seen[1].at - seen[0].at;
    // A lower bound only: a slow machine can make the gap longer, never shorter.
    assert!(
        gap >= Duration::from_millis(950),
        "retried {gap:?} after a 429 that asked for 1 s (retry.max_delay is 200ms here)"
    );
    eprintln!("FIGURES retry-after: 1 -> retried after {gap:.2?}");
}
