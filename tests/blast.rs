//! The blast-radius guarantees against a real HAProxy on 127.0.0.1 and do-sim: a truncated
//! inventory or an API incident never empties the load balancer, a droplet deleted out of
//! band goes only once confirmed, a store that cannot be written spends nothing, a hung
//! check command cannot hold doproxy forever, an interrupted delete leaves the server in
//! service, and an untagged droplet is not destroyed by a line number.

use crate::support::{haproxy_available, TestEnv};
use std::io::{Read, Write};
use std::net::TcpListener;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// A world with HAProxy serving `n` droplets (None when HAProxy is missing and CI unset).
fn serving(n: usize) -> Option<TestEnv> {
    if !haproxy_available() {
        return None;
    }
    let env = TestEnv::with_haproxy();
    env.run(&["create", "--count", &n.to_string()]).ok();
    assert_eq!(env.running_servers().len(), n);
    Some(env)
}

#[test]
fn a_truncated_inventory_never_empties_the_backend() {
    let Some(env) = serving(3) else { return };
    let before = env.running_servers();
    env.write("inventory", "");
    // The 5-minute `doproxy -q reload` timer of the README: refused, loudly, even with -q.
    let r = env.run(&["-q", "reload"]).code(1);
    assert!(
        r.stderr
            .contains("refusing to install a config with 0 of the 3 server(s)"),
        "{}",
        r.stderr
    );
    assert_eq!(env.running_servers(), before, "HAProxy lost its servers");
    let (bodies, failed) = env.requests(12);
    assert_eq!((bodies.len(), failed), (12, 0));
    // One of three lines lost is a normal shrink (33 % ≤ 50 %): installed.
    let ids: Vec<String> = before
        .iter()
        .map(|s| s.trim_start_matches("www-").to_string())
        .collect();
    env.write("inventory", &format!("{}\n{}\n", ids[0], ids[1]));
    env.run(&["reload"]).ok();
    assert_eq!(env.running_servers().len(), 2);
    // --force installs what the inventory says, whatever it says.
    env.write("inventory", "");
    env.run(&["reload", "--force"]).ok();
    assert!(env.running_servers().is_empty());
}

/// A stand-in API that answers every listing with no droplet and every GET with 404 (an
/// incident on the API's side), for `secs` seconds.
fn incident_api(secs: u64) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    listener.set_nonblocking(true).unwrap();
    std::thread::spawn(move || {
        let deadline = Instant::now() + Duration::from_secs(secs);
        while Instant::now() < deadline {
            let Ok((mut s, _)) = listener.accept() else {
                std::thread::sleep(Duration::from_millis(5));
                continue;
            };
            let _ = s.set_nonblocking(false);
            let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
            let mut buf = [0u8; 8192];
            let n = s.read(&mut buf).unwrap_or(0);
            let head = String::from_utf8_lossy(&buf[..n]);
            let path = head.split_whitespace().nth(1).unwrap_or("");
            let (status, body) = if path.starts_with("/v2/droplets?") {
                (200, r#"{"droplets":[],"links":{},"meta":{"total":0}}"#)
            } else {
                (
                    404,
                    r#"{"id":"not_found","message":"The resource you were accessing could not be found."}"#,
                )
            };
            let _ = write!(
                s,
                "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    format!("http://{addr}")
}

#[test]
fn an_api_incident_removes_nothing() {
    let Some(env) = serving(2) else { return };
    let before = env.running_servers();
    let api = incident_api(20);
    env.configure(|c| c.api_url = Some(api));
    let r = env.run(&["reload"]).code(1);
    assert!(
        r.stderr
            .contains("the API listed none of the 2 inventory droplet(s)"),
        "{}",
        r.stderr
    );
    assert_eq!(env.running_servers(), before);
    assert_eq!(env.inventory().len(), 2);
    // The API is back: nothing to do.
    env.configure(|_| {});
    env.run(&["reload"]).ok();
    assert_eq!(env.running_servers(), before);
}

#[test]
fn a_droplet_deleted_out_of_band_goes_only_once_confirmed() {
    let Some(env) = serving(2) else { return };
    let gone = env.inventory()[0];
    assert!(env.delete_direct(gone));
    env.run(&["reload"]).ok();
    assert_eq!(env.running_servers().len(), 2, "removed before confirmed");
    // not_found_grace is 2 s in the test config.
    std::thread::sleep(Duration::from_millis(2100));
    env.run(&["reload"]).ok();
    assert_eq!(
        env.running_servers(),
        vec![format!("www-{}", env.inventory()[1])]
    );
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

/// A tmpfs of `size` mounted at `dir` for the duration of a test (unmounted on drop).
struct Tmpfs(std::path::PathBuf);

impl Tmpfs {
    fn mount(dir: &std::path::Path, size: &str) -> Tmpfs {
        std::fs::create_dir_all(dir).unwrap();
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .status()
            .unwrap()
            .success();
        assert!(ok, "mount tmpfs on {}", dir.display());
        Tmpfs(dir.to_path_buf())
    }
    fn remount_ro(&self) {
        let ok = Command::new("mount")
            .args(["-o", "remount,ro"])
            .arg(&self.0)
            .status()
            .unwrap()
            .success();
        assert!(ok);
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

/// The store cannot be written: `create` fails before it spends anything.
fn create_spends_nothing(env: &TestEnv, what: &str) {
    let r = env.run(&["create", "--count", "2"]).code(1);
    assert!(
        r.stderr
            .contains("cannot record the droplets about to be created"),
        "[{what}] {}",
        r.stderr
    );
    let posts = env
        .sim
        .requests()
        .iter()
        .filter(|q| q.method == "POST")
        .count();
    assert_eq!(posts, 0, "[{what}] a droplet was POSTed");
    assert!(env.sim.droplets().is_empty(), "[{what}] a droplet exists");
}

#[test]
fn a_store_that_cannot_be_written_spends_nothing() {
    if !is_root() {
        assert!(
            std::env::var_os("CI").is_none(),
            "this test needs root (mount)"
        );
        return;
    }
    let env = TestEnv::new();
    // Read-only file system.
    let ro = Tmpfs::mount(&env.path("ro"), "1m");
    std::fs::write(env.path("ro/inventory"), "").unwrap();
    ro.remount_ro();
    env.configure(|c| c.inventory_file = Some("ro/inventory".into()));
    create_spends_nothing(&env, "read-only");
    drop(ro);
    // Full file system.
    let full = Tmpfs::mount(&env.path("full"), "64k");
    std::fs::write(env.path("full/inventory"), "").unwrap();
    let mut filler = std::fs::File::create(env.path("full/filler")).unwrap();
    while filler.write_all(&[0u8; 4096]).is_ok() {}
    drop(filler);
    env.configure(|c| c.inventory_file = Some("full/inventory".into()));
    create_spends_nothing(&env, "full");
    drop(full);
}

#[test]
fn a_hung_check_command_is_killed_and_the_lock_freed() {
    let Some(env) = serving(1) else { return };
    let before = env.installed();
    let (check, reload) = env.commands_with(&env.path("haproxy.pid"), &env.path("master.sock"));
    let _ = check;
    env.configure(|c| {
        c.check_command = Some("sleep 1000 & sleep 1000".into());
        c.reload_command = Some(reload.clone());
        c.set_raw("command_timeout", serde_json::json!("1s"));
    });
    let started = Instant::now();
    let r = env.run(&["reload", "--force"]).code(1);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    assert!(
        r.stderr
            .contains("did not finish within 1s (command_timeout)"),
        "{}",
        r.stderr
    );
    assert_eq!(env.installed(), before, "the live config changed");
    assert_eq!(env.running_servers().len(), 1);
    // The lock is free: the next run does not wait for it.
    env.configure(|c| c.set_raw("command_timeout", serde_json::json!("1s")));
    let started = Instant::now();
    env.run(&["print"]).ok();
    assert!(started.elapsed() < Duration::from_secs(3));
    // Nothing of the killed command's group is left.
    let left = Command::new("pgrep")
        .args(["-f", "sleep 1000"])
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&left.stdout).trim().is_empty(),
        "children of the hung check survive"
    );
}

/// The admin state HAProxy reports for `server` (`show servers state`, column 7).
fn admin_state(env: &TestEnv, server: &str) -> Option<u32> {
    use std::os::unix::net::UnixStream;
    let mut s = UnixStream::connect(env.path("admin.sock")).ok()?;
    s.write_all(b"show servers state www-backend\n").ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    out.lines().find_map(|l| {
        let cols: Vec<&str> = l.split_whitespace().collect();
        (cols.get(3) == Some(&server)).then(|| cols.get(6)?.parse().ok())?
    })
}

#[test]
fn sigint_after_the_drain_leaves_the_server_in_service() {
    let Some(env) = serving(2) else { return };
    let ids = env.inventory();
    let (_, reload) = env.commands_with(&env.path("haproxy.pid"), &env.path("master.sock"));
    // A slow reload: the delete is interrupted after it drained the server.
    env.configure(|c| c.reload_command = Some(format!("sleep 3; {reload}")));
    let mut child = env
        .command(&["delete", "--id", &ids[0].to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let server = format!("www-{}", ids[0]);
    let deadline = Instant::now() + Duration::from_secs(10);
    while admin_state(&env, &server).unwrap_or(0) & 0x08 == 0 {
        assert!(
            Instant::now() < deadline,
            "the delete never drained {server}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status();
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            panic!("delete did not stop after SIGINT");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    assert_eq!(status.code(), Some(130), "{stderr}");
    assert!(
        stderr.contains(&format!("the delete of droplet {} was stopped", ids[0])),
        "{stderr}"
    );
    assert_eq!(admin_state(&env, &server), Some(0), "left drained");
    assert_eq!(env.inventory(), ids);
    assert!(!env
        .read("inventory.journal")
        .contains("\"leaving\": [\n    {"));
    // And the next plain reload keeps it serving.
    env.configure(|_| {});
    env.run(&["reload"]).ok();
    assert_eq!(env.running_servers().len(), 2);
    assert_eq!(admin_state(&env, &server), Some(0));
}

#[test]
fn reload_readies_a_server_left_drained() {
    let Some(env) = serving(2) else { return };
    let id = env.inventory()[1];
    let server = format!("www-{id}");
    {
        use std::os::unix::net::UnixStream;
        let mut s = UnixStream::connect(env.path("admin.sock")).unwrap();
        s.write_all(format!("set server www-backend/{server} state drain\n").as_bytes())
            .unwrap();
        let mut out = String::new();
        let _ = s.read_to_string(&mut out);
    }
    assert_eq!(admin_state(&env, &server).map(|a| a & 0x08), Some(0x08));
    let r = env.run(&["reload"]).ok();
    assert!(
        r.stderr.contains(&format!("{server} was left drained")),
        "{}",
        r.stderr
    );
    assert_eq!(admin_state(&env, &server), Some(0));
    // Only the server that was left drained is put back (and said to be).
    let other = format!("www-{}", env.inventory()[0]);
    assert!(
        !r.stderr.contains(&format!("{other} was left drained")),
        "{}",
        r.stderr
    );
}

#[test]
fn an_untagged_droplet_is_not_destroyed_by_a_line_number() {
    let env = TestEnv::new();
    env.run(&["create"]).ok();
    let stranger = env.create_direct("someone-elses", &["web"]);
    std::thread::sleep(Duration::from_millis(300));
    let mine = env.inventory()[0];
    env.write("inventory", &format!("{mine}\n{stranger}\n"));
    let r = env.run(&["delete", "1"]).code(2);
    assert!(
        r.stderr.contains("does not carry the deployment's tag"),
        "{}",
        r.stderr
    );
    assert!(env.sim.droplets().iter().any(|d| d.id == stranger));
    assert_eq!(env.inventory(), vec![mine, stranger]);
    env.run(&["delete", "--id", &stranger.to_string(), "--force"])
        .ok();
    assert!(!env.sim.droplets().iter().any(|d| d.id == stranger));
}

#[test]
fn a_lost_create_answer_with_a_lagging_list_makes_exactly_one_droplet() {
    // The create's answer is lost after the droplet was made (a reset), and the droplet
    // stays out of listings for 1.5 s: far longer than the old settle window (200 ms here).
    let env = TestEnv::with_options(
        do_sim::SimOptions {
            reset_rate: 1.0,
            reset_placement: do_sim::Placement::CreatesAfter,
            list_lag_after_create: Duration::from_millis(1500),
            ..crate::support::fast_sim_options()
        },
        false,
    );
    let mut child = env
        .command(&["create"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Only the POST is reset: the lookups that follow get answers.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !env.sim.requests().iter().any(|q| q.method == "POST") {
        assert!(Instant::now() < deadline, "no POST");
        std::thread::sleep(Duration::from_millis(2));
    }
    env.sim.set_faults(do_sim::Faults {
        reset_rate: Some(0.0),
        ..Default::default()
    });
    let deadline = Instant::now() + Duration::from_secs(30);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() >= deadline {
            let _ = child.kill();
            panic!("create did not finish");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let droplets = env.sim.droplets();
    assert_eq!(droplets.len(), 1, "{droplets:?}\n{stderr}");
    assert_eq!(env.inventory(), vec![droplets[0].id]);
    let posts: Vec<_> = env
        .sim
        .requests()
        .into_iter()
        .filter(|q| q.method == "POST")
        .collect();
    assert_eq!(posts.len(), 1, "a create was sent again");
    assert_eq!(posts[0].status, 0, "the POST was not reset");
    assert!(stdout.contains(&format!("Success: {} created", droplets[0].id)));
}
