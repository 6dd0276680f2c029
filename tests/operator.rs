//! The operator-facing surface: JSON output, progress display, quiet and verbose modes,
//! dry runs, delete by id or name, completions, help examples, config discovery.

use crate::support::*;
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::Path;

fn json(r: &Run) -> Value {
    serde_json::from_str(&r.stdout)
        .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {:?}", r.stdout))
}

/// Every regular file under `dir` and its contents (sockets and the lock file skipped).
fn snapshot(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let e = e.unwrap();
            let ft = e.file_type().unwrap();
            if ft.is_dir() {
                stack.push(e.path());
            } else if ft.is_file() && !e.path().to_string_lossy().ends_with(".lock") {
                out.insert(
                    e.path().display().to_string(),
                    std::fs::read(e.path()).unwrap(),
                );
            }
        }
    }
    out
}

fn assert_droplet_object(v: &Value) {
    for key in ["line", "id", "name", "status", "private_ip", "public_ip"] {
        assert!(v.get(key).is_some(), "missing {key} in {v}");
    }
    assert!(v["id"].is_u64(), "{v}");
}

#[test]
fn json_output_of_every_command() {
    let env = TestEnv::new();
    let r = env.run(&["-o", "json", "create", "--count", "2"]).ok();
    let v = json(&r);
    assert_eq!(v["action"], "create");
    let created = v["droplets"].as_array().unwrap();
    assert_eq!(created.len(), 2);
    for d in created {
        assert_droplet_object(d);
        assert_eq!(d["status"], "active");
        assert!(d["private_ip"].as_str().unwrap().starts_with("127."));
    }
    // Each created droplet's `line` is its inventory line, as `print` numbers them.
    let inventory = env.inventory();
    let lines: Vec<(u64, Option<u64>)> = created
        .iter()
        .map(|d| (d["id"].as_u64().unwrap(), d["line"].as_u64()))
        .collect();
    for (id, line) in &lines {
        let at = inventory.iter().position(|x| x == id).map(|p| p as u64);
        assert_eq!((*line, at.is_some()), (at, true), "{lines:?} {inventory:?}");
    }
    let orphan = env.create_direct("auto-nginx-orphan", &["doproxy"]);

    let v = json(&env.run(&["-o", "json", "print"]).ok());
    let ds = v["droplets"].as_array().unwrap();
    assert_eq!(ds.len(), 2);
    for (n, d) in ds.iter().enumerate() {
        assert_droplet_object(d);
        assert_eq!(d["line"], n);
    }
    assert_eq!(v["orphans"][0]["id"], orphan);
    assert_eq!(v["orphans"][0]["line"], Value::Null);

    let v = json(&env.run(&["-o", "json", "generate"]).ok());
    assert_eq!(v["action"], "generate");
    assert_eq!(v["backends"].as_array().unwrap().len(), 2);

    let v = json(&env.run(&["-o", "json", "reload"]).ok());
    assert_eq!(v["action"], "reload");
    assert_eq!(v["reloaded"], false, "create already installed this config");

    let first = ds[0]["id"].as_u64().unwrap();
    let v = json(&env.run(&["-o", "json", "delete", "0"]).ok());
    assert_eq!(v["action"], "delete");
    assert_eq!(v["droplet"]["id"], first);
    assert_eq!(v["droplet"]["line"], 0);

    // Failure: a JSON error object on stdout, the usual line on stderr, the exit code.
    let r = env.run(&["-o", "json", "delete", "9"]).code(2);
    let v = json(&r);
    assert_eq!(v["error"]["exit_code"], 2);
    assert!(v["error"]["message"]
        .as_str()
        .unwrap()
        .contains("line 9 does not exist"));
    assert!(r.stderr.contains("doproxy: error: line 9"));
}

#[test]
fn progress_display_on_a_terminal_only() {
    let env = TestEnv::new();
    // Captured stderr is not a terminal: plain timestamped lines, no cursor control.
    let r = env.run(&["create"]).ok();
    assert!(
        r.stderr.contains("doproxy: [20") && r.stderr.contains("waiting for 1 droplet(s)"),
        "{}",
        r.stderr
    );
    assert!(!r.stderr.contains('\r'), "{:?}", r.stderr);
    // A line when something changes, not one per poll: a droplet `new` for 600 ms (about
    // ten polls) is one line.
    let slow = TestEnv::with_options(
        do_sim::SimOptions {
            active_after: std::time::Duration::from_millis(600),
            ..fast_sim_options()
        },
        false,
    );
    let r = slow.run(&["create"]).ok();
    assert_eq!(
        r.stderr.matches("waiting for 1 droplet(s)").count(),
        1,
        "{}",
        r.stderr
    );
    // Forced terminal display: a spinner line redrawn in place.
    let r = env
        .run_env(&["create"], &[("DOPROXY_PROGRESS", "live")])
        .ok();
    assert!(r.stderr.contains("\r\x1b[2K"), "{:?}", r.stderr);
    assert!(
        r.stderr
            .chars()
            .any(|c| ('\u{2800}'..='\u{28FF}').contains(&c)),
        "no spinner: {:?}",
        r.stderr
    );
    // --quiet: nothing but the result.
    let r = env.run(&["-q", "create"]).ok();
    assert_eq!(r.stderr, "");
    assert!(r.stdout.starts_with("Success: "));
}

#[test]
fn verbose_logs_every_api_request() {
    let env = TestEnv::new();
    let r = env.run(&["-v", "print"]).ok();
    let api_lines: Vec<_> = r.stderr.lines().filter(|l| l.contains(" api ")).collect();
    assert_eq!(api_lines.len(), env.sim.requests().len(), "{}", r.stderr);
    assert!(
        api_lines[0].contains("api GET /v2/droplets?page=1&per_page=200&tag_name=doproxy -> 200"),
        "{}",
        r.stderr
    );
    assert!(
        api_lines[0].contains("request id ") && api_lines[0].contains("ratelimit-remaining "),
        "{}",
        r.stderr
    );
    // Retries are logged too.
    env.sim.set_faults(do_sim::Faults {
        error_rate: Some(1.0),
        ..Default::default()
    });
    let r = env.run(&["-v", "print"]).code(1);
    assert!(r.stderr.contains("retrying in"), "{}", r.stderr);
}

#[test]
fn dry_runs_change_nothing() {
    let env = TestEnv::new();
    env.count_reloads();
    env.run(&["create", "--count", "3"]).ok();
    // A droplet deleted outside doproxy, seen missing by a reload and confirmed gone after
    // not_found_grace (2 s in tests): a dry run must show its server going.
    let gone = env.inventory()[2];
    env.delete_direct(gone);
    env.run(&["reload"]).ok();
    std::thread::sleep(std::time::Duration::from_millis(2100));
    let reloads = env.reloads();
    env.sim.clear_requests();
    let before = snapshot(env.dir.path());

    let r = env.run(&["create", "--count", "3", "--dry-run"]).ok();
    assert!(
        r.stdout
            .starts_with("dry run: would create 3 droplet(s) in 1 API request(s): auto-nginx-"),
        "{}",
        r.stdout
    );
    let ids = env.inventory();
    let r = env.run(&["delete", "1", "--dry-run"]).ok();
    assert!(
        r.stdout.contains(&format!("would drain www-{}", ids[1])),
        "{}",
        r.stdout
    );
    assert!(
        r.stdout
            .lines()
            .any(|l| l.starts_with(&format!("-    server www-{} ", ids[1]))),
        "{}",
        r.stdout
    );
    let r = env.run(&["reload", "--dry-run"]).ok();
    assert!(
        r.stdout
            .lines()
            .any(|l| l.starts_with(&format!("-    server www-{gone} "))),
        "{}",
        r.stdout
    );
    let v = json(&env.run(&["-o", "json", "reload", "--dry-run"]).ok());
    assert_eq!(
        (v["dry_run"].as_bool(), v["changed"].as_bool()),
        (Some(true), Some(true))
    );

    assert_eq!(snapshot(env.dir.path()), before, "a dry run changed a file");
    let writes = env.api_writes();
    assert!(
        writes.is_empty(),
        "a dry run changed something through the API: {writes:?}"
    );
    assert_eq!(env.reloads(), reloads, "a dry run reloaded HAProxy");
}

#[test]
fn delete_by_id_and_by_name() {
    let env = TestEnv::new();
    env.run(&["create", "--count", "3"]).ok();
    let ids = env.inventory();
    let name = env
        .sim
        .droplets()
        .into_iter()
        .find(|d| d.id == ids[2])
        .unwrap()
        .name;
    env.run(&["delete", "--id", &ids[1].to_string()]).ok();
    assert_eq!(env.inventory(), vec![ids[0], ids[2]]);
    env.run(&["delete", "--name", &name]).ok();
    assert_eq!(env.inventory(), vec![ids[0]]);
    let r = env.run(&["delete", "--id", "424242"]).code(2);
    assert!(
        r.stderr.contains("droplet 424242 is not in the inventory"),
        "{}",
        r.stderr
    );
    let r = env.run(&["delete", "--name", "nope"]).code(2);
    assert!(
        r.stderr.contains("no droplet named \"nope\""),
        "{}",
        r.stderr
    );
    env.run(&["delete", "0", "--id", "1"]).code(2);
}

#[test]
fn completions_version_and_help_examples() {
    let env = TestEnv::new();
    for shell in ["bash", "zsh", "fish"] {
        let r = env.run(&["completions", shell]).ok();
        assert!(
            r.stdout.contains("doproxy")
                && r.stdout.contains("delete")
                && r.stdout.contains("dry-run"),
            "{shell}"
        );
    }
    let r = env.run(&["--version"]).ok();
    assert_eq!(r.stdout, format!("doproxy {}\n", env!("CARGO_PKG_VERSION")));
    for cmd in [
        &[][..],
        &["print"],
        &["create"],
        &["delete"],
        &["reload"],
        &["generate"],
        &["completions"],
    ] {
        let mut args = cmd.to_vec();
        args.push("--help");
        let r = env.run(&args).ok();
        assert!(
            r.stdout.contains("Example"),
            "no example in `doproxy {} --help`:\n{}",
            cmd.join(" "),
            r.stdout
        );
    }
}

#[test]
fn config_discovery() {
    let env = TestEnv::new();
    std::fs::rename(env.path("doproxy.yml"), env.path("other.yml")).unwrap();
    // Without ./doproxy.yml the search goes on to the Debian package's folder; this machine
    // must not have a config there for the "no config file" error to show.
    if std::path::Path::new("/etc/doproxy/doproxy.yml").exists() {
        eprintln!("config_discovery: /etc/doproxy/doproxy.yml exists, not checking the error");
    } else {
        let r = env.run(&["print"]).code(2);
        assert!(
            r.stderr
                .contains("tried ./doproxy.yml, /etc/doproxy/doproxy.yml (no --config given")
                && r.stderr.contains("doproxy.yml.example"),
            "{}",
            r.stderr
        );
    }
    env.run_env(&["print"], &[("DOPROXY_CONFIG", "other.yml")])
        .ok();
    let r = env
        .run_env(&["print"], &[("DOPROXY_CONFIG", "nope.yml")])
        .code(2);
    assert!(
        r.stderr.contains("tried $DOPROXY_CONFIG=nope.yml"),
        "{}",
        r.stderr
    );
    // --config wins over DOPROXY_CONFIG.
    env.run_env(
        &["--config", "other.yml", "print"],
        &[("DOPROXY_CONFIG", "nope.yml")],
    )
    .ok();
}

#[test]
fn a_closed_stdout_is_not_an_error() {
    let env = TestEnv::new();
    env.create_direct("auto-nginx-p", &["doproxy"]);
    for args in [
        &["completions", "bash"][..],
        &["print"],
        &[],
        &["-o", "json", "print"],
    ] {
        // The read end is closed before doproxy starts: every write to stdout fails (EPIPE).
        let (reader, writer) = std::io::pipe().unwrap();
        drop(reader);
        let child = env
            .command(args)
            .stdin(std::process::Stdio::null())
            .stdout(writer)
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let out = output_with_deadline(child, RUN_DEADLINE);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{args:?}: {:?} {stderr}", out.status);
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
    }
}
