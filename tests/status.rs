//! `doproxy status` against do-sim and a real HAProxy: a drained server, a DOWN one, a
//! droplet missing from the API, an untagged one, an orphan and a server HAProxy has that
//! is not in the inventory, in text and JSON; `--watch` redrawing in a pseudo-terminal
//! until Ctrl-C, and as JSON Lines until SIGINT.

use crate::support::*;
use serde_json::Value;
use std::io::{BufRead, Read, Write};
use std::os::unix::net::UnixStream;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// One runtime API command on the test HAProxy's stats socket.
fn admin(env: &TestEnv, command: &str) -> String {
    let mut s = UnixStream::connect(env.path("admin.sock")).expect("connect to the stats socket");
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(format!("{command}\n").as_bytes()).unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

/// HAProxy's status of server `www-<id>` (from `show stat`).
fn haproxy_status(env: &TestEnv, id: u64) -> Option<String> {
    let stat = admin(env, "show stat");
    let header: Vec<&str> = stat
        .lines()
        .next()?
        .trim_start_matches("# ")
        .split(',')
        .collect();
    let col = header.iter().position(|c| *c == "status")?;
    stat.lines().find_map(|l| {
        let cols: Vec<&str> = l.split(',').collect();
        (cols.first() == Some(&"www-backend") && cols.get(1) == Some(&format!("www-{id}").as_str()))
            .then(|| cols[col].to_string())
    })
}

fn wait_until(what: &str, timeout: Duration, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !ok() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The table row of droplet `id` (its cells, split at whitespace).
fn row(stdout: &str, id: u64) -> Vec<String> {
    stdout
        .lines()
        .map(|l| l.split_whitespace().map(String::from).collect::<Vec<_>>())
        .find(|cells| cells.get(1).map(String::as_str) == Some(id.to_string().as_str()))
        .unwrap_or_else(|| panic!("no row for {id}:\n{stdout}"))
}

fn set_inventory(env: &TestEnv, ids: &[u64]) {
    let text: String = ids.iter().map(|id| format!("{id}\n")).collect();
    env.write("inventory", &text);
}

#[test]
fn status_shows_drained_down_missing_untagged_orphan_and_stray_servers() {
    if !haproxy_available() {
        return;
    }
    let env = TestEnv::with_haproxy();
    env.run(&["create", "--count", "4"]).ok();
    let ids = env.inventory();
    // A Ruby-era droplet (no tag) in the inventory, and a stray HAProxy will serve whose
    // line is then removed by hand.
    let untagged = env.create_direct("ruby-era-web", &[]);
    let stray = env.create_direct("stray-web", &[]);
    wait_until(
        "the direct droplets to be active",
        Duration::from_secs(10),
        || {
            env.sim
                .droplets()
                .iter()
                .filter(|d| d.id == untagged || d.id == stray)
                .all(|d| d.status == "active")
        },
    );
    let mut served = ids.clone();
    served.extend([untagged, stray]);
    set_inventory(&env, &served);
    env.run(&["reload"]).ok();
    set_inventory(&env, &served[..5]);
    let orphan = env.create_direct("auto-nginx-orphan", &["doproxy"]);
    assert_eq!(
        admin(
            &env,
            &format!("set server www-backend/www-{} state drain", ids[0])
        )
        .trim(),
        ""
    );
    assert!(env.sim.power_off_direct(ids[1]));
    assert!(env.delete_direct(ids[2]));
    for id in [ids[1], ids[2]] {
        wait_until("HAProxy to mark it DOWN", Duration::from_secs(15), || {
            haproxy_status(&env, id).is_some_and(|s| s == "DOWN")
        });
    }
    wait_until(
        "a first health check of the healthy one",
        Duration::from_secs(15),
        || haproxy_status(&env, ids[3]).is_some_and(|s| s == "UP"),
    );

    env.sim.clear_requests();
    let r = env.run(&["status"]).ok();
    let out = &r.stdout;
    assert!(!out.contains('\x1b'), "no colour off a terminal: {out:?}");
    let header = out.lines().nth(1).unwrap();
    assert_eq!(
        header.split_whitespace().collect::<Vec<_>>(),
        [
            "LINE", "ID", "NAME", "API", "ROLE", "HAPROXY", "SINCE", "CHECK", "SCUR", "RATE",
            "QCUR"
        ]
    );
    let drained = row(out, ids[0]);
    assert_eq!(
        drained[..6],
        [
            "0",
            &ids[0].to_string(),
            &drained[2],
            "active",
            "serving",
            "DRAIN"
        ]
    );
    let down = row(out, ids[1]);
    assert_eq!(
        (down[3].as_str(), down[5].as_str()),
        ("off", "DOWN"),
        "{out}"
    );
    assert!(down[7].starts_with("L4"), "{down:?}");
    let missing = row(out, ids[2]);
    assert_eq!(
        missing[2..6],
        ["(missing)", "missing", "-", "DOWN"],
        "{out}"
    );
    let healthy = row(out, ids[3]);
    assert_eq!(healthy[4], "serving");
    assert!(healthy[5].starts_with("UP"), "{healthy:?}");
    assert_eq!(row(out, untagged)[2], "ruby-era-web");
    let o = row(out, orphan);
    assert_eq!((o[0].as_str(), o[2].as_str()), ("-", "auto-nginx-orphan"));
    let s = row(out, stray);
    assert_eq!((s[0].as_str(), s[3].as_str()), ("-", "unknown"));
    for want in [
        format!(
            "problem: www-{} is in DRAIN in HAProxy but no delete is in progress",
            ids[0]
        ),
        format!("problem: www-{} is DOWN in HAProxy for ", ids[1]),
        format!(
            "problem: droplet {} (line 2) is missing from the API",
            ids[2]
        ),
        format!("`doproxy inventory forget {}`", ids[2]),
        format!(
            "problem: droplet {untagged} (ruby-era-web, line 4) does not carry the tag \"doproxy\""
        ),
        format!("problem: droplet {orphan} (auto-nginx-orphan) carries the tag \"doproxy\""),
        format!("`doproxy inventory adopt {orphan}`"),
        format!("problem: HAProxy serves www-{stray} but it is not in"),
        "total: 5 backend(s): 3 serving, 0 draining, 0 booting, 1 missing; 1 orphan(s)".to_string(),
        "HAProxy: 6 server(s): 3 UP, 2 DOWN, 1 DRAIN, 0 MAINT".to_string(),
    ] {
        assert!(out.contains(&want), "expected {want:?} in:\n{out}");
    }
    // One listing, plus a GET for each inventory droplet the listing lacks (the untagged
    // one, the deleted one): never one request per droplet.
    let requests = env.sim.requests();
    let lists = requests.iter().filter(|r| r.path == "/v2/droplets").count();
    let gets: Vec<&str> = requests
        .iter()
        .filter(|r| r.path.starts_with("/v2/droplets/"))
        .map(|r| r.path.as_str())
        .collect();
    assert_eq!(lists, 1, "{requests:?}");
    assert_eq!(gets.len(), 2, "{gets:?}");
    assert!(env.api_writes().is_empty());

    let v: Value = serde_json::from_str(&env.run(&["-o", "json", "status"]).ok().stdout).unwrap();
    let backend = |id: u64| {
        v["backends"]
            .as_array()
            .unwrap()
            .iter()
            .find(|b| b["id"] == id)
            .cloned()
            .unwrap_or_else(|| panic!("no backend {id} in {v:#}"))
    };
    assert_eq!(backend(ids[0])["haproxy"]["status"], "DRAIN");
    assert_eq!(backend(ids[0])["role"], "serving");
    assert_eq!(backend(ids[1])["haproxy"]["status"], "DOWN");
    assert_eq!(backend(ids[1])["status"], "off");
    assert_eq!(backend(ids[2])["status"], "missing");
    assert_eq!(backend(untagged)["tagged"], false);
    assert_eq!(backend(orphan)["in_inventory"], false);
    assert_eq!(backend(orphan)["line"], Value::Null);
    assert_eq!(backend(stray)["status"], "unknown");
    assert_eq!(backend(ids[3])["haproxy"]["check_status"], "L7OK");
    assert!(backend(ids[3])["haproxy"]["check_duration_ms"].is_u64());
    assert!(backend(ids[3])["haproxy"]["scur"].is_u64());
    let kinds: Vec<(String, u64)> = v["problems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["kind"].as_str().unwrap().to_string(),
                p["id"].as_u64().unwrap_or(0),
            )
        })
        .collect();
    for want in [
        ("drained", ids[0]),
        ("down", ids[1]),
        ("not_active", ids[1]),
        ("missing", ids[2]),
        ("untagged", untagged),
        ("orphan", orphan),
        ("not_in_inventory", stray),
    ] {
        assert!(
            kinds.contains(&(want.0.to_string(), want.1)),
            "{want:?} not in {kinds:?}"
        );
    }
    assert_eq!(v["totals"]["haproxy"]["drain"], 1);
    assert_eq!(v["totals"]["haproxy"]["down"], 2);
    assert_eq!(v["totals"]["orphans"], 1);
}

#[test]
fn status_without_haproxy_says_the_socket_cannot_be_asked() {
    let env = TestEnv::new();
    env.run(&["create"]).ok();
    let r = env.run(&["status"]).ok();
    assert!(
        r.stdout
            .contains("problem: HAProxy's stats socket cannot be asked"),
        "{}",
        r.stdout
    );
    let v: Value = serde_json::from_str(&env.run(&["-o", "json", "status"]).ok().stdout).unwrap();
    assert_eq!(v["totals"]["haproxy"], Value::Null);
    assert_eq!(v["backends"][0]["role"], "serving");
    assert_eq!(v["backends"][0]["haproxy"], Value::Null);
    // With no stats socket configured, nothing is wrong.
    env.configure(|c| c.haproxy.stats_socket = Some(None));
    let v: Value = serde_json::from_str(&env.run(&["-o", "json", "status"]).ok().stdout).unwrap();
    assert_eq!(v["problems"], serde_json::json!([]), "{v:#}");
}

/// Collects a child's stdout in the background.
fn collect(child: &mut Child) -> Arc<Mutex<Vec<u8>>> {
    let buf = Arc::new(Mutex::new(Vec::new()));
    let mut out = child.stdout.take().unwrap();
    let sink = buf.clone();
    std::thread::spawn(move || {
        let mut chunk = [0u8; 4096];
        while let Ok(n) = out.read(&mut chunk) {
            if n == 0 {
                break;
            }
            sink.lock().unwrap().extend_from_slice(&chunk[..n]);
        }
    });
    buf
}

/// Waits up to `timeout` for `child` to exit; kills it (by its PID) if it does not.
fn wait_bounded(child: &mut Child, timeout: Duration) -> Option<std::process::ExitStatus> {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if let Some(status) = child.try_wait().unwrap() {
            return Some(status);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
    None
}

/// `doproxy ARGS` in a pseudo-terminal (`script`), 100 columns wide, with `extra`
/// environment: waits until the screen shows `until`, types Ctrl-C, and returns everything
/// the terminal showed and whether doproxy exited 0 within the bound.
fn in_terminal(
    env: &TestEnv,
    args: &str,
    extra: &[(&str, &str)],
    until: impl Fn(&str) -> bool,
) -> (String, bool) {
    let doproxy = env!("CARGO_BIN_EXE_doproxy");
    let template = env.command(&[]);
    let mut cmd = Command::new("script");
    cmd.arg("-qefc")
        .arg(format!("stty cols 100 rows 40; exec {doproxy} {args}"))
        .arg("/dev/null")
        .current_dir(env.dir.path())
        .env("TERM", "xterm")
        .env_remove("NO_COLOR")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    for (k, v) in template.get_envs() {
        match v {
            Some(v) => cmd.env(k, v),
            None => cmd.env_remove(k),
        };
    }
    for (k, v) in extra {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("run script(1)");
    let screen = collect(&mut child);
    let text = || String::from_utf8_lossy(&screen.lock().unwrap()).into_owned();
    let deadline = Instant::now() + Duration::from_secs(20);
    while !until(&text()) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    // Ctrl-C, typed: the terminal sends SIGINT to doproxy.
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(b"\x03").unwrap();
    stdin.flush().unwrap();
    let status = wait_bounded(&mut child, Duration::from_secs(10));
    drop(stdin);
    (text(), status.is_some_and(|s| s.success()))
}

const CLEAR: &str = "\x1b[H\x1b[2J";

#[test]
fn status_watch_redraws_in_a_terminal_until_ctrl_c() {
    let env = TestEnv::new();
    env.run(&["create", "--count", "2"]).ok();
    let ids = env.inventory();
    let frames = |s: &str| s.matches(CLEAR).count();
    let (screen, ok) = in_terminal(&env, "status --watch --interval 200ms", &[], |s| {
        frames(s) >= 3
    });
    assert!(ok, "status --watch did not exit 0 on Ctrl-C:\n{screen}");
    assert!(frames(&screen) >= 3, "fewer than 3 redraws:\n{screen:?}");
    // The last frame: the table, coloured, with the footer.
    let last = screen.rsplit(CLEAR).next().unwrap();
    assert!(last.starts_with("doproxy status  20"), "{last:?}");
    assert!(
        last.contains("\x1b[1mLINE\x1b[0m"),
        "a bold header: {last:?}"
    );
    assert!(
        last.contains("\x1b[32mserving\x1b[0m"),
        "coloured roles: {last:?}"
    );
    for id in &ids {
        assert!(last.contains(&id.to_string()), "{last:?}");
    }
    assert!(last.contains("every 200ms; Ctrl-C to quit"), "{last:?}");
    // NO_COLOR: the same screens without colour.
    let (screen, ok) = in_terminal(
        &env,
        "status --watch --interval 200ms",
        &[("NO_COLOR", "1")],
        |s| frames(s) >= 2,
    );
    assert!(ok, "{screen}");
    let last = screen.rsplit(CLEAR).next().unwrap();
    assert!(last.contains("LINE  "), "{last:?}");
    assert!(
        !last.contains("\x1b[3") && !last.contains("\x1b[1m"),
        "colour despite NO_COLOR: {last:?}"
    );
}

#[test]
fn status_watch_writes_json_lines_until_sigint() {
    let env = TestEnv::new();
    env.run(&["create"]).ok();
    let mut child = env
        .command(&["-o", "json", "status", "--watch", "--interval", "200ms"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let pid = child.id();
    let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let mut seen = Vec::new();
    for _ in 0..3 {
        let line = lines.next().expect("a JSON line").unwrap();
        let v: Value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line}"));
        assert_eq!(v["totals"]["backends"], 1, "{v}");
        seen.push(v["at"].as_str().unwrap().to_string());
    }
    Command::new("kill")
        .args(["-INT", &pid.to_string()])
        .status()
        .unwrap();
    let status = wait_bounded(&mut child, Duration::from_secs(10));
    assert!(status.is_some_and(|s| s.success()), "{status:?}");
    assert_eq!(seen.len(), 3);
}
