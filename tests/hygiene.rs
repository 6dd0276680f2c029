//! Inventory hygiene (`inventory prune`, `adopt`, `forget`) against do-sim, hints that name
//! droplets by ID, and the operator's contract around them: usage errors under `-o json`,
//! the bare `doproxy` hint, `DOPROXY_PROGRESS`, `null` in `haproxy:`, duration bounds,
//! readable template errors, dry runs that leave no file, stdout write errors, and dry-run
//! diffs that `patch` applies.

use crate::support::*;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

fn json_of(r: &Run) -> Value {
    serde_json::from_str(&r.stdout)
        .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {:?}", r.stdout))
}

fn set_inventory(env: &TestEnv, ids: &[u64]) {
    let text: String = ids.iter().map(|id| format!("{id}\n")).collect();
    env.write("inventory", &text);
}

/// Every file under `dir` (lock files and sockets included) and its contents.
fn files(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let e = e.unwrap();
            let ft = e.file_type().unwrap();
            let path = e.path().display().to_string();
            if ft.is_dir() {
                stack.push(e.path());
                out.insert(path, Vec::new());
            } else if ft.is_file() {
                out.insert(path, std::fs::read(e.path()).unwrap());
            } else {
                out.insert(path, b"(special)".to_vec());
            }
        }
    }
    out
}

#[test]
fn prune_drops_only_droplets_confirmed_gone() {
    let env = TestEnv::new();
    env.run(&["create", "--count", "3"]).ok();
    let ids = env.inventory();
    assert!(env.delete_direct(ids[1]));
    env.sim.clear_requests();

    // Missing for 0 s: a dry run says it would wait; nothing changes.
    let r = env.run(&["inventory", "prune", "--dry-run"]).ok();
    assert!(
        r.stdout.contains(&format!(
            "dry run: droplet {} (line 1) is missing (404) for 0s only",
            ids[1]
        )),
        "{}",
        r.stdout
    );
    assert_eq!(env.inventory(), ids);

    // The real run waits out not_found_grace (2 s here), looks again, and drops it.
    let started = Instant::now();
    let r = env.run(&["inventory", "prune"]).ok();
    assert!(started.elapsed() >= Duration::from_millis(1800), "{r:?}");
    assert!(
        r.stderr.contains("waiting 2s for not_found_grace"),
        "{}",
        r.stderr
    );
    assert_eq!(
        r.stdout,
        format!(
            "Pruned: droplet {} is gone (404 for at least 2s); removed from the inventory.\n",
            ids[1]
        )
    );
    assert_eq!(env.inventory(), vec![ids[0], ids[2]]);
    assert!(env.api_writes().is_empty(), "prune destroys nothing");
    assert_eq!(env.sim.droplets().len(), 2);

    // Seen missing by a reload (the node's missing log) more than the grace ago: no wait.
    assert!(env.delete_direct(ids[2]));
    let r = env.run(&["reload"]).ok();
    assert!(
        r.stderr.contains("is missing from the API's answer"),
        "{}",
        r.stderr
    );
    assert!(env.path("etc/haproxy.cfg.missing.json").exists());
    std::thread::sleep(Duration::from_millis(2100));
    let r = env.run(&["inventory", "prune", "--dry-run"]).ok();
    assert!(
        r.stdout.starts_with(&format!(
            "dry run: would drop droplet {} (line 1): 404, missing for ",
            ids[2]
        )),
        "{}",
        r.stdout
    );
    let started = Instant::now();
    let v = json_of(&env.run(&["-o", "json", "inventory", "prune"]).ok());
    assert!(
        started.elapsed() < Duration::from_millis(1500),
        "prune waited"
    );
    assert_eq!(
        v,
        json!({"action": "prune", "removed": [ids[2]], "kept": [], "size": 1})
    );
    assert_eq!(env.inventory(), vec![ids[0]]);

    // Nothing to prune.
    let r = env.run(&["inventory", "prune"]).ok();
    assert!(r.stdout.starts_with("Nothing to prune"), "{}", r.stdout);
}

#[test]
fn prune_refuses_an_answer_that_knows_no_droplet() {
    let env = TestEnv::new();
    env.run(&["create", "--count", "2"]).ok();
    let ids = env.inventory();
    for id in &ids {
        env.delete_direct(*id);
    }
    let r = env.run(&["inventory", "prune"]).code(1);
    assert!(
        r.stderr
            .contains("knows none of the 2 inventory droplet(s)"),
        "{}",
        r.stderr
    );
    assert!(r.stderr.contains("inventory forget"), "{}", r.stderr);
    assert_eq!(env.inventory(), ids);
}

#[test]
fn adopt_takes_tagged_droplets_only() {
    let env = TestEnv::new();
    env.run(&["create"]).ok();
    env.sim.clear_requests();
    let first = env.inventory()[0];
    let orphan = env.create_direct("auto-nginx-orphan", &["doproxy"]);
    let untagged = env.create_direct("ruby-era-web", &[]);
    std::thread::sleep(Duration::from_millis(300));

    let r = env
        .run(&["inventory", "adopt", "--orphans", "--dry-run"])
        .ok();
    assert_eq!(
        r.stdout,
        format!(
            "dry run: would adopt droplet {orphan} (auto-nginx-orphan, active) into ./inventory\n"
        )
    );
    assert_eq!(env.inventory(), vec![first]);

    let r = env
        .run(&["inventory", "adopt", &untagged.to_string()])
        .code(2);
    assert!(
        r.stderr.contains("does not carry the tag \"doproxy\"")
            && r.stderr.contains(&format!(
                "doctl compute droplet tag {untagged} --tag-name doproxy"
            )),
        "{}",
        r.stderr
    );
    let r = env
        .run(&["inventory", "adopt", &orphan.to_string(), "999999"])
        .code(2);
    assert!(
        r.stderr
            .contains("droplet 999999 does not exist; nothing was adopted"),
        "{}",
        r.stderr
    );
    assert_eq!(env.inventory(), vec![first], "all or nothing");
    env.run(&["inventory", "adopt"]).code(2);

    let r = env.run(&["inventory", "adopt", &orphan.to_string()]).ok();
    assert_eq!(
        r.stdout,
        format!(
            "Adopted: droplet {orphan} (auto-nginx-orphan) added to the inventory on line 1.\n"
        )
    );
    assert_eq!(env.inventory(), vec![first, orphan]);
    let r = env.run(&["print"]).ok();
    assert!(!r.stderr.contains("carries the tag"), "{}", r.stderr);

    let second = env.create_direct("auto-nginx-orphan2", &["doproxy"]);
    let v = json_of(
        &env.run(&["-o", "json", "inventory", "adopt", "--orphans"])
            .ok(),
    );
    assert_eq!(v["action"], "adopt");
    assert_eq!(v["droplets"][0]["id"], second);
    assert_eq!(v["droplets"][0]["line"], 2);
    assert_eq!(env.inventory(), vec![first, orphan, second]);
    assert!(env.api_writes().is_empty());
}

#[test]
fn forget_drops_lines_and_says_the_droplet_still_bills() {
    let env = TestEnv::new();
    env.run(&["create", "--count", "2"]).ok();
    let ids = env.inventory();
    env.sim.clear_requests();

    env.run(&["inventory", "forget", &ids[0].to_string(), "--dry-run"])
        .ok();
    assert_eq!(env.inventory(), ids);
    let r = env
        .run(&["inventory", "forget", &ids[0].to_string(), "42"])
        .code(2);
    assert!(
        r.stderr.contains("droplet 42 is not in the inventory"),
        "{}",
        r.stderr
    );
    assert_eq!(env.inventory(), ids, "all or nothing");

    let r = env.run(&["inventory", "forget", &ids[0].to_string()]).ok();
    assert_eq!(
        r.stdout,
        format!(
            "Forgotten: droplet {} removed from the inventory; it was not destroyed.\n",
            ids[0]
        )
    );
    assert!(
        r.stderr.contains("still exists and is billed")
            && r.stderr
                .contains(&format!("doctl compute droplet delete {}", ids[0]))
            && r.stderr
                .contains(&format!("doproxy inventory adopt {}", ids[0])),
        "{}",
        r.stderr
    );
    assert_eq!(env.inventory(), vec![ids[1]]);
    assert_eq!(env.sim.droplets().len(), 2, "nothing destroyed");
    assert!(env.api_writes().is_empty());
    // It is now an orphan, and the hint names it by ID.
    let r = env.run(&["print"]).ok();
    assert!(
        r.stderr
            .contains(&format!("`doproxy inventory adopt {}` adds it", ids[0])),
        "{}",
        r.stderr
    );
}

#[test]
fn hints_name_droplets_by_id_not_line_number() {
    let env = TestEnv::new();
    env.run(&["create", "--count", "2"]).ok();
    let ids = env.inventory();
    env.delete_direct(ids[1]);
    let r = env.run(&["print"]).ok();
    assert!(
        r.stderr
            .contains(&format!("`doproxy inventory forget {}` at once", ids[1])),
        "{}",
        r.stderr
    );
    assert!(!r.stderr.contains("doproxy delete 1"), "{}", r.stderr);
    let r = env.run(&["status"]).ok();
    assert!(!r.stdout.contains("delete 1"), "{}", r.stdout);
}

#[test]
fn usage_errors_under_json_print_the_error_object() {
    let env = TestEnv::new();
    for args in [
        &["-o", "json", "bogus"][..],
        &["--output=json", "delete"],
        &["-ojson", "print", "--nope"],
        &["status", "--interval", "1s", "-o", "json"],
        &["-o", "json", "inventory"],
    ] {
        let r = env.run(args).code(2);
        let v = json_of(&r);
        assert_eq!(v["error"]["exit_code"], 2, "{args:?}: {v}");
        assert!(
            v["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty()),
            "{v}"
        );
        assert!(
            r.stderr.contains("Usage:") || r.stderr.contains("Commands:"),
            "{args:?}: {}",
            r.stderr
        );
    }
    let v = json_of(&env.run(&["-o", "json", "delete"]).code(2));
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("LINE_NUMBER"),
        "{v}"
    );
    // Text mode: nothing on stdout.
    let r = env.run(&["bogus"]).code(2);
    assert!(r.stdout.is_empty(), "{}", r.stdout);
    // --help is no error, whatever the format.
    let r = env.run(&["-o", "json", "--help"]).ok();
    assert!(r.stdout.contains("Usage:"));
}

#[test]
fn bare_doproxy_lists_the_commands_then_points_to_help() {
    let env = TestEnv::new();
    let r = env.run(&[]).ok();
    assert!(
        r.stdout.starts_with("Commands:\ndoproxy print "),
        "{}",
        r.stdout
    );
    let last = r.stdout.lines().last().unwrap();
    assert!(last.contains("doproxy --help"), "{last}");
}

#[test]
fn doproxy_progress_is_checked_and_off_keeps_warnings() {
    let env = TestEnv::new();
    let r = env
        .run_env(&["print"], &[("DOPROXY_PROGRESS", "fancy")])
        .code(2);
    assert!(
        r.stderr.starts_with(
            "doproxy: error: DOPROXY_PROGRESS=\"fancy\" is not one of live, plain, off"
        ),
        "{}",
        r.stderr
    );
    assert!(r.stdout.is_empty());
    let v = json_of(
        &env.run_env(&["-o", "json", "print"], &[("DOPROXY_PROGRESS", "Live")])
            .code(2),
    );
    assert_eq!(v["error"]["exit_code"], 2);

    let r = env
        .run_env(&["create"], &[("DOPROXY_PROGRESS", "off")])
        .ok();
    assert!(r.stdout.starts_with("Success: "));
    assert_eq!(r.stderr, "", "off silences progress");
    env.create_direct("auto-nginx-orphan", &["doproxy"]);
    let r = env.run_env(&["print"], &[("DOPROXY_PROGRESS", "off")]).ok();
    assert!(
        r.stderr.starts_with("doproxy: warning: droplet ") && r.stderr.contains("carries the tag"),
        "off keeps warnings: {}",
        r.stderr
    );
    // Plain (not a terminal) still talks.
    let r = env.run(&["create"]).ok();
    assert!(
        r.stderr.contains("doproxy: created droplet"),
        "{}",
        r.stderr
    );
}

#[test]
fn null_and_empty_leave_haproxy_lines_out_and_absent_keeps_the_default() {
    let env = TestEnv::new();
    // The test world writes `chroot: null`, `user: null`, `group: null`, `log: null`.
    assert!(env.read("doproxy.yml").contains("\n  chroot: null\n"));
    env.run(&["generate"]).ok();
    let cfg = env.read("haproxy.cfg");
    for line in ["chroot ", "user ", "group ", "log "] {
        assert!(
            !cfg.lines().any(|l| l.trim_start().starts_with(line)),
            "{line:?} rendered despite null:\n{cfg}"
        );
    }
    assert!(cfg.contains("stats socket "), "{cfg}");
    env.configure(|c| {
        c.haproxy.chroot = Some(Some(String::new()));
        c.haproxy.user = None;
        c.haproxy.group = None;
        c.haproxy.stats_socket = Some(None);
    });
    env.run(&["generate"]).ok();
    let cfg = env.read("haproxy.cfg");
    assert!(!cfg.contains("chroot"), "empty leaves it out:\n{cfg}");
    assert!(
        cfg.contains("\n    user haproxy\n") && cfg.contains("\n    group haproxy\n"),
        "{cfg}"
    );
    assert!(!cfg.contains("stats socket"), "{cfg}");
}

#[test]
fn durations_below_their_bound_are_refused_naming_the_key() {
    let env = TestEnv::new();
    env.configure(|c| c.poll_interval = Some("0".into()));
    let r = env.run(&["print"]).code(2);
    assert!(
        r.stderr
            .contains("doproxy.yml: poll_interval: 0ns is below the minimum of 10ms"),
        "{}",
        r.stderr
    );
    env.configure(|c| c.api_timeout = Some("100ms".into()));
    let r = env.run(&["print"]).code(2);
    assert!(
        r.stderr
            .contains("api_timeout: 100ms is below the minimum of 1s"),
        "{}",
        r.stderr
    );
    env.configure(|c| c.drain_timeout = Some("0".into()));
    env.run(&["print"]).ok();
}

#[test]
fn template_errors_exit_2_with_their_context_kept() {
    let env = TestEnv::new();
    env.write("my.tera", "global\n{% if %}\n");
    env.configure(|c| c.haproxy_template_file = Some("my.tera".into()));
    let r = env.run(&["reload"]).code(2);
    let lines: Vec<&str> = r.stderr.lines().collect();
    assert!(
        lines[0].starts_with("doproxy: error: template ")
            && lines[0].ends_with("Failed to parse 'haproxy.cfg':"),
        "{}",
        r.stderr
    );
    assert!(
        lines[1..].iter().all(|l| l.starts_with("  ")),
        "{}",
        r.stderr
    );
    assert!(
        lines.iter().any(|l| l.contains("2 | {% if %}")),
        "{}",
        r.stderr
    );
    assert!(lines.iter().any(|l| l.contains('^')), "{}", r.stderr);
    let v = json_of(&env.run(&["-o", "json", "generate"]).code(2));
    assert!(
        v["error"]["message"].as_str().unwrap().contains("\n  "),
        "{v}"
    );
}

#[test]
fn dry_runs_leave_no_file_behind_not_even_a_lock() {
    let env = TestEnv::new();
    // A world no doproxy run has touched yet: no lock file, no journal, no installed config.
    let a = env.create_direct("auto-nginx-a", &["doproxy"]);
    let b = env.create_direct("auto-nginx-b", &["doproxy"]);
    env.create_direct("auto-nginx-orphan", &["doproxy"]);
    set_inventory(&env, &[a, b]);
    std::thread::sleep(Duration::from_millis(300));
    let before = files(env.dir.path());
    for args in [
        &["create", "--count", "2", "--dry-run"][..],
        &["reload", "--dry-run"],
        &["delete", "--id", &a.to_string(), "--dry-run"],
        &["inventory", "prune", "--dry-run"],
        &["inventory", "adopt", "--orphans", "--dry-run"],
        &["inventory", "forget", &b.to_string(), "--dry-run"],
        &["status"],
    ] {
        env.run(args).ok();
        let after = files(env.dir.path());
        let new: Vec<&String> = after.keys().filter(|k| !before.contains_key(*k)).collect();
        assert!(new.is_empty(), "{args:?} created {new:?}");
        assert_eq!(after, before, "{args:?} changed a file");
    }
    assert!(env.api_writes().is_empty());
    // A real run still takes (and so creates) the lock.
    env.run(&["reload"]).ok();
    assert!(env.path("inventory.lock").exists());
    // Once it exists, dry runs wait on it as usual, and still change nothing.
    let before = files(env.dir.path());
    env.run(&["reload", "--dry-run"]).ok();
    assert_eq!(files(env.dir.path()), before);
}

#[test]
fn a_failed_write_to_stdout_exits_1_but_a_closed_pipe_does_not() {
    let env = TestEnv::new();
    env.run(&["create"]).ok();
    for args in [&["print"][..], &["-o", "json", "status"], &[]] {
        let full = std::fs::OpenOptions::new()
            .write(true)
            .open("/dev/full")
            .unwrap();
        let out = env
            .command(args)
            .stdout(full)
            .stderr(std::process::Stdio::piped())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {stderr}");
        assert!(
            stderr.contains("doproxy: error: cannot write the result to stdout: "),
            "{args:?}: {stderr}"
        );
    }
}

#[test]
fn a_dry_run_diff_is_a_patch_that_applies() {
    let env = TestEnv::new();
    env.run(&["create", "--count", "2"]).ok();
    let extra = env.create_direct("auto-nginx-extra", &["doproxy"]);
    let mut ids = env.inventory();
    let gone = ids.remove(0);
    ids.push(extra);
    std::thread::sleep(Duration::from_millis(300));
    set_inventory(&env, &ids);
    let v = json_of(&env.run(&["-o", "json", "reload", "--dry-run"]).ok());
    let diff = v["diff"].as_str().unwrap();
    let lines: Vec<&str> = diff.lines().collect();
    assert!(
        lines[0].starts_with("--- ") && lines[1].starts_with("+++ "),
        "{diff}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("@@ -") && l.ends_with(" @@")),
        "{diff}"
    );
    env.write("change.patch", diff);
    std::fs::copy(env.path("etc/haproxy.cfg"), env.path("copy.cfg")).unwrap();
    let out = std::process::Command::new("patch")
        .args(["-o", "patched.cfg", "copy.cfg", "change.patch"])
        .current_dir(env.dir.path())
        .output()
        .expect("run patch");
    assert!(
        out.status.success(),
        "patch refused the diff: {}{}\n{diff}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    env.run(&["reload"]).ok();
    assert_eq!(env.read("patched.cfg"), env.installed());
    assert!(!env.installed().contains(&format!("www-{gone} ")));
}
