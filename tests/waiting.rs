//! Waiting is visible and bounded, and JSON never loses facts: retries and lock waits are
//! said at normal verbosity, `--timeout` stops any command saying what was recorded, and a
//! partial `create` reports the droplets it made together with the error.

use crate::support::{fast_sim_options, TestEnv};
use std::process::Stdio;
use std::time::{Duration, Instant};

#[test]
fn a_retry_is_said_without_verbose() {
    let env = TestEnv::new();
    env.sim.set_faults(do_sim::Faults {
        error_rate: Some(1.0),
        ..Default::default()
    });
    let r = env.run(&["print"]).code(1);
    assert!(r.stderr.contains("retrying in"), "{}", r.stderr);
}

#[test]
fn a_lock_wait_is_said_with_its_holder() {
    let env = TestEnv::new();
    env.run(&["create"]).ok();
    // A reload that holds the lock for 3 s.
    env.configure(|c| c.reload_command = Some("sleep 3".into()));
    let mut holder = env
        .command(&["reload", "--force"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(500));
    let r = env.run(&["reload", "--force"]);
    let _ = holder.kill();
    let _ = holder.wait();
    assert!(
        r.stderr.contains("waiting for the lock")
            && r.stderr
                .contains(&format!("held by process {}", holder.id())),
        "{}",
        r.stderr
    );
}

#[test]
fn timeout_stops_a_command_and_says_what_was_recorded() {
    let env = TestEnv::with_options(
        do_sim::SimOptions {
            active_after: Duration::from_secs(60),
            ..fast_sim_options()
        },
        false,
    );
    let started = Instant::now();
    let r = env.run(&["create", "--timeout", "1s"]).code(1);
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(
        r.stderr.contains("stopped after --timeout 1s")
            && r.stderr
                .contains("the inventory records every droplet created so far"),
        "{}",
        r.stderr
    );
    // The droplet being waited for is recorded.
    assert_eq!(env.inventory().len(), 1);
    assert_eq!(env.sim.droplets().len(), 1);
}

#[test]
fn a_partial_create_reports_its_droplets_and_the_error_in_one_object() {
    let env = TestEnv::with_options(
        do_sim::SimOptions {
            droplet_limit: 12,
            ..fast_sim_options()
        },
        false,
    );
    let r = env.run(&["-o", "json", "create", "--count", "14"]).code(1);
    let v: serde_json::Value = serde_json::from_str(&r.stdout)
        .unwrap_or_else(|e| panic!("one JSON object on stdout ({e}): {}", r.stdout));
    assert_eq!(v["action"], "create");
    assert_eq!(v["droplets"].as_array().map(Vec::len), Some(10), "{v}");
    assert_eq!(v["error"]["exit_code"], 1);
    assert!(
        v["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("droplet limit")),
        "{v}"
    );
    assert_eq!(env.inventory().len(), 10);
}

#[test]
fn delete_force_destroys_an_orphan_of_the_deployment_only() {
    let env = TestEnv::new();
    let orphan = env.create_direct("auto-nginx-orphan", &["doproxy"]);
    let stranger = env.create_direct("someone-elses", &["web"]);
    // Without --force: refused, with the way forward.
    let r = env.run(&["delete", "--id", &orphan.to_string()]).code(2);
    assert!(
        r.stderr.contains("--force") && r.stderr.contains("inventory adopt"),
        "{}",
        r.stderr
    );
    // Not the deployment's: refused even with --force.
    env.run(&["delete", "--id", &stranger.to_string(), "--force"])
        .code(2);
    let r = env
        .run(&["delete", "--id", &orphan.to_string(), "--force"])
        .ok();
    assert!(r.stdout.contains(&format!("Success: {orphan} deleted.")));
    let left: Vec<u64> = env.sim.droplets().iter().map(|d| d.id).collect();
    assert_eq!(left, vec![stranger]);
}
