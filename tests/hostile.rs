//! A hostile machine and a hostile API: configs, user data and templates that someone else
//! could change are refused before any request leaves; droplet names from the API cannot
//! forge output lines or reach the terminal; two deployments share one account; child
//! commands never see the token; planted symlinks are not followed; files keep safe owners
//! and modes; `kill -9` leaves no readable temp file and the next run sweeps it.
//!
//! The helpers for these tests stay in this file: a config written from scratch (absolute
//! paths, so it may sit in any folder) and a run in any folder.

use crate::support::*;
use serde_json::Value;
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

/// The uid (and gid) of `nobody`: a user that is neither root nor us.
const NOBODY: u32 = 65534;

/// A complete doproxy world in `dir`: the harness's typed loopback config
/// ([`DoproxyConfig::loopback`]) against the test's simulator, in a folder of its own.
struct World {
    dir: PathBuf,
    config: DoproxyConfig,
}

impl World {
    /// The test env's own folder and simulator.
    fn of(env: &TestEnv) -> World {
        Self::at(env, env.dir.path())
    }

    /// Another folder against the same simulator (made ready: `etc/`, an empty inventory,
    /// user data).
    fn at(env: &TestEnv, dir: &Path) -> World {
        let mut config = DoproxyConfig::loopback(
            dir,
            &env.sim.url(),
            TOKEN,
            env.backend_port,
            free_port(),
            false,
        );
        config.drain_timeout = Some("1s".into());
        config.reload_verify_timeout = Some("2s".into());
        if !dir.join("inventory").exists() {
            sandbox::prepare_dir(dir, &config, sandbox::TEST_USER_DATA).unwrap();
        }
        World {
            dir: dir.to_path_buf(),
            config,
        }
    }

    fn deployment(mut self, tag: &str) -> World {
        self.config.set_raw(
            "droplet_options.deployment_tag",
            serde_json::Value::from(tag),
        );
        self
    }

    /// Writes the config as `<dir>/doproxy.yml`, mode 0600, and returns its path.
    fn write(&self) -> PathBuf {
        sandbox::write_config(&self.dir, &self.config.to_yaml()).unwrap()
    }
}

/// Runs doproxy in `cwd` (the harness's environment otherwise), checking that the token
/// never shows. A run that should have been refused but goes on (`reload --watch`) is
/// killed after 20 s and fails its test.
fn run_in(env: &TestEnv, cwd: &Path, args: &[&str], vars: &[(&str, &str)]) -> Run {
    let mut cmd = env.command(args);
    cmd.current_dir(cwd)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in vars {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("run doproxy");
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while child.try_wait().unwrap().is_none() {
        if std::time::Instant::now() > deadline {
            child.kill().unwrap(); // our own child, by its handle
            let _ = child.wait();
            panic!("doproxy {args:?} was still running after 20 s");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let out = child.wait_with_output().unwrap();
    let run = Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    };
    assert!(
        !run.stdout.contains(TOKEN) && !run.stderr.contains(TOKEN),
        "the token leaked into doproxy's output: {run:?}"
    );
    run
}

/// Asserts a trust refusal: exit 2, one error line containing every needle, nothing on
/// stdout, and not one request at the simulator (the log is cleared first by the caller).
fn assert_refused(env: &TestEnv, what: &str, r: &Run, needles: &[&str]) {
    assert_eq!(r.code, 2, "[{what}] exit code: {r:?}");
    assert_eq!(
        r.stderr.lines().count(),
        1,
        "[{what}] one line on stderr: {}",
        r.stderr
    );
    assert!(
        r.stderr.starts_with("doproxy: error: refusing "),
        "[{what}] {}",
        r.stderr
    );
    for n in needles {
        assert!(r.stderr.contains(n), "[{what}] {n:?} missing: {}", r.stderr);
    }
    assert!(r.stdout.is_empty(), "[{what}] stdout: {}", r.stdout);
    let requests = env.sim.requests();
    assert!(requests.is_empty(), "[{what}] requests left: {requests:?}");
}

/// Runs every command that talks to the API with the refused setup: each is refused.
fn assert_every_command_refused(
    env: &TestEnv,
    what: &str,
    cwd: &Path,
    pre: &[&str],
    needles: &[&str],
) {
    let commands: [&[&str]; 7] = [
        &["print"],
        &["create"],
        &["delete", "0"],
        &["reload"],
        &["generate"],
        &["reload", "--watch"],
        &["inventory", "export"],
    ];
    for cmd in commands {
        env.sim.clear_requests();
        let args: Vec<&str> = pre.iter().chain(cmd).copied().collect();
        let r = run_in(env, cwd, &args, &[]);
        assert_refused(env, &format!("{what}: {args:?}"), &r, needles);
    }
    assert!(env.sim.droplets().is_empty(), "[{what}] droplets made");
}

fn chown(p: &Path, uid: u32) {
    std::os::unix::fs::chown(p, Some(uid), None).unwrap();
}

fn chmod(p: &Path, mode: u32) {
    fs::set_permissions(p, fs::Permissions::from_mode(mode)).unwrap();
}

#[test]
fn a_config_owned_by_another_user_is_refused_before_any_request() {
    let env = TestEnv::new();
    let cfg = env.path("doproxy.yml");
    chown(&cfg, NOBODY);
    let shown = cfg.display().to_string();
    let needles = ["owned by uid 65534", "chown root: "];
    // Found implicitly (./doproxy.yml) ...
    assert_every_command_refused(&env, "implicit", env.dir.path(), &[], &needles);
    // ... named by --config ...
    assert_every_command_refused(
        &env,
        "--config",
        Path::new("/"),
        &["--config", &shown],
        &needles,
    );
    // ... or by $DOPROXY_CONFIG.
    env.sim.clear_requests();
    let r = run_in(
        &env,
        Path::new("/"),
        &["print"],
        &[("DOPROXY_CONFIG", &shown)],
    );
    assert_refused(&env, "$DOPROXY_CONFIG", &r, &needles);
    // The fix the message names works.
    chown(&cfg, 0);
    env.run(&["print"]).ok();
}

#[test]
fn a_group_or_world_writable_config_is_refused() {
    let env = TestEnv::new();
    let cfg = env.path("doproxy.yml");
    for mode in [0o620, 0o602, 0o660, 0o666, 0o622] {
        chmod(&cfg, mode);
        let m = format!("(mode {mode:04o})");
        assert_every_command_refused(
            &env,
            &m,
            env.dir.path(),
            &[],
            &["writable by group or others", &m, "chmod go-w "],
        );
    }
    // Readable by others is only a warning (it is about the token, not about trust).
    chmod(&cfg, 0o644);
    let r = env.run(&["print"]).ok();
    assert!(
        r.stderr.contains("readable by group or others"),
        "{}",
        r.stderr
    );
    chmod(&cfg, 0o600);
    env.run(&["print"]).ok();
}

#[test]
fn a_config_in_a_folder_others_can_write_is_refused_unless_sticky() {
    let env = TestEnv::new();
    let sub = env.path("shared");
    fs::create_dir(&sub).unwrap();
    let cfg = World::at(&env, &sub).write();
    let shown = cfg.display().to_string();
    for mode in [0o777, 0o773, 0o775, 0o2775] {
        chmod(&sub, mode);
        let m = format!("(mode {mode:04o})");
        let needles = ["its folder", "no sticky bit", &m, "chmod go-w ", "move"];
        assert_every_command_refused(&env, &m, &sub, &[], &needles);
        assert_every_command_refused(&env, &m, Path::new("/"), &["-c", &shown], &needles);
        env.sim.clear_requests();
        let r = run_in(
            &env,
            Path::new("/"),
            &["print"],
            &[("DOPROXY_CONFIG", &shown)],
        );
        assert_refused(&env, "$DOPROXY_CONFIG", &r, &needles);
    }
    // World-writable with the sticky bit, owned by root: /tmp's case, accepted.
    chmod(&sub, 0o1777);
    run_in(&env, &sub, &["print"], &[]).ok();
    // The same folder owned by someone else: that user may delete and replace anything in it.
    chown(&sub, NOBODY);
    env.sim.clear_requests();
    let r = run_in(&env, &sub, &["print"], &[]);
    assert_refused(
        &env,
        "folder owned by nobody",
        &r,
        &["its folder", "owned by uid 65534"],
    );
    // A folder further up counts too.
    chown(&sub, 0);
    chmod(&sub, 0o755);
    let deep = sub.join("deeper");
    fs::create_dir(&deep).unwrap();
    let cfg = World::at(&env, &deep).write();
    run_in(&env, &deep, &["print"], &[]).ok();
    chmod(&sub, 0o777);
    env.sim.clear_requests();
    let r = run_in(
        &env,
        Path::new("/"),
        &["-c", &cfg.display().to_string(), "print"],
        &[],
    );
    assert_refused(
        &env,
        "an ancestor",
        &r,
        &[&format!("its folder {} ", sub.display())],
    );
}

#[test]
fn a_symlinked_config_is_judged_as_a_link_and_as_its_target() {
    let env = TestEnv::new();
    let real = env.path("real.yml");
    fs::rename(env.path("doproxy.yml"), &real).unwrap();
    let link = env.path("doproxy.yml");
    std::os::unix::fs::symlink(&real, &link).unwrap();
    env.run(&["print"]).ok();
    // A link someone else owns: they could point it anywhere.
    std::os::unix::fs::lchown(&link, Some(NOBODY), None).unwrap();
    env.sim.clear_requests();
    let r = env.run(&["print"]);
    assert_refused(
        &env,
        "link owned by nobody",
        &r,
        &["the symlink", "chown -h root: "],
    );
    std::os::unix::fs::lchown(&link, Some(0), None).unwrap();
    // A trusted link to an untrusted target.
    chmod(&real, 0o666);
    env.sim.clear_requests();
    let r = env.run(&["print"]);
    assert_refused(
        &env,
        "link to a writable file",
        &r,
        &["writable by group or others"],
    );
    chmod(&real, 0o600);
    // A trusted link to a file in a folder others can write.
    let open = env.path("open");
    fs::create_dir(&open).unwrap();
    let target = open.join("doproxy.yml");
    fs::write(&target, World::at(&env, env.dir.path()).config.to_yaml()).unwrap();
    chmod(&target, 0o600);
    fs::remove_file(&link).unwrap();
    std::os::unix::fs::symlink(open.join("doproxy.yml"), &link).unwrap();
    env.run(&["print"]).ok();
    chmod(&open, 0o777);
    env.sim.clear_requests();
    let r = env.run(&["print"]);
    assert_refused(
        &env,
        "link into an open folder",
        &r,
        &["its folder", "no sticky bit"],
    );
    // A dangling ./doproxy.yml is refused, not skipped in favour of /etc/doproxy/doproxy.yml.
    fs::remove_file(&link).unwrap();
    std::os::unix::fs::symlink(env.path("nowhere.yml"), &link).unwrap();
    env.sim.clear_requests();
    let r = env.run(&["print"]).code(2);
    assert!(r.stderr.contains("doproxy.yml"), "{}", r.stderr);
    assert!(env.sim.requests().is_empty());
}

#[test]
fn untrusted_user_data_and_templates_are_refused() {
    let env = TestEnv::new();
    let ud = env.path("user-data.yml");
    chown(&ud, NOBODY);
    assert_every_command_refused(
        &env,
        "user data owned by nobody",
        env.dir.path(),
        &[],
        &[
            "refusing userdata_file",
            "owned by uid 65534",
            "chown root: ",
        ],
    );
    chown(&ud, 0);
    chmod(&ud, 0o664);
    assert_every_command_refused(
        &env,
        "writable user data",
        env.dir.path(),
        &[],
        &["refusing userdata_file", "chmod go-w "],
    );
    chmod(&ud, 0o644);
    env.run(&["print"]).ok();

    let tpl = env.path("haproxy.cfg.tera");
    fs::write(&tpl, doproxy::haproxy::DEFAULT_TEMPLATE).unwrap();
    chmod(&tpl, 0o644);
    env.configure(|c| c.haproxy_template_file = Some(tpl.display().to_string()));
    env.run(&["generate"]).ok();
    chmod(&tpl, 0o646);
    assert_every_command_refused(
        &env,
        "writable template",
        env.dir.path(),
        &[],
        &["refusing haproxy_template_file", "chmod go-w "],
    );
    chmod(&tpl, 0o644);
    chown(&tpl, NOBODY);
    assert_every_command_refused(
        &env,
        "template owned by nobody",
        env.dir.path(),
        &[],
        &["refusing haproxy_template_file", "owned by uid 65534"],
    );
    // A template that does not exist yet, in a folder anyone can write: anyone could
    // create it before the next reload.
    let open = env.path("templates");
    fs::create_dir(&open).unwrap();
    chmod(&open, 0o777);
    env.configure(|c| c.haproxy_template_file = Some(format!("{}/later.tera", open.display())));
    assert_every_command_refused(
        &env,
        "missing template in an open folder",
        env.dir.path(),
        &[],
        &[
            "refusing haproxy_template_file",
            "its folder",
            "no sticky bit",
        ],
    );
}

#[test]
fn hostile_droplet_names_are_escaped_in_text_output() {
    let env = TestEnv::new();
    let raw = "evil\n7) forged  (pvt ip: 1.2.3.4, status: active, id: 9)\x1b[2J";
    let id = env.create_direct(raw, &["doproxy"]);
    let orphan = env.create_direct(
        "orphan\r\n8) forged\x1b]0;title\x07\u{9b}31m\u{202e}",
        &["doproxy"],
    );
    env.write("inventory", &format!("{id}\n"));
    // Right after creation the droplets are `new`: generate warns about them by name.
    let r = env.run(&["generate"]).ok();
    for (what, text) in [
        ("generate stderr", &r.stderr),
        ("generate stdout", &r.stdout),
    ] {
        assert!(
            !text.contains('\x1b') && !text.contains('\u{9b}') && !text.contains('\r'),
            "[{what}] {text:?}"
        );
        assert!(
            !text
                .lines()
                .any(|l| l.starts_with("7)") || l.starts_with("8)")),
            "[{what}] {text:?}"
        );
    }
    std::thread::sleep(Duration::from_millis(300));

    let r = env.run(&["print"]).ok();
    let lines: Vec<&str> = r.stdout.lines().collect();
    assert_eq!(lines.len(), 1, "one line per droplet: {:?}", r.stdout);
    assert_eq!(
        lines[0],
        format!(
            "0) evil\\n7) forged  (pvt ip: 1.2.3.4, status: active, id: 9)\\x1b[2J  (pvt ip: {}, status: active, id: {id})",
            env.sim
                .droplets()
                .iter()
                .find(|d| d.id == id)
                .and_then(|d| d.private_ipv4.clone())
                .unwrap()
        )
    );
    // The orphan warning: one line, escaped, nothing reaches the terminal.
    let warning: Vec<&str> = r
        .stderr
        .lines()
        .filter(|l| l.contains(&orphan.to_string()))
        .collect();
    assert_eq!(warning.len(), 1, "{:?}", r.stderr);
    assert!(
        warning[0].contains("(orphan\\r\\n8) forged\\x1b]0;title\\x07\\u{9b}31m\\u{202e})"),
        "{:?}",
        warning[0]
    );
    for text in [&r.stdout, &r.stderr] {
        assert!(
            !text.contains('\x1b')
                && !text.contains('\u{9b}')
                && !text.contains('\u{202e}')
                && !text.contains('\r'),
            "{text:?}"
        );
        assert!(
            !text
                .lines()
                .any(|l| l.starts_with("7)") || l.starts_with("8)")),
            "{text:?}"
        );
    }
    // JSON carries the name as it is (serde escapes it), for scripts.
    let r = env.run(&["-o", "json", "print"]).ok();
    let v: Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(v["droplets"][0]["name"], raw);
    assert_eq!(v["orphans"][0]["id"], orphan);
    assert!(!r.stdout.contains('\x1b'));
}

/// `print -o json` of the config at `cfg`: (inventory droplet IDs, orphan IDs), and the
/// text print's stderr.
fn print_of(env: &TestEnv, cfg: &Path) -> (Vec<u64>, Vec<u64>, String) {
    let c = cfg.display().to_string();
    let r = run_in(env, Path::new("/"), &["-c", &c, "-o", "json", "print"], &[]).ok();
    let v: Value = serde_json::from_str(&r.stdout).unwrap();
    let ids = |k: &str| -> Vec<u64> {
        v[k].as_array()
            .unwrap()
            .iter()
            .map(|d| d["id"].as_u64().unwrap())
            .collect()
    };
    let text = run_in(env, Path::new("/"), &["-c", &c, "print"], &[]).ok();
    (ids("droplets"), ids("orphans"), text.stderr)
}

#[test]
fn two_deployments_share_one_account_without_seeing_each_other() {
    let env = TestEnv::new();
    let blue = World::of(&env).deployment("shop-blue").write();
    let other = tempfile::tempdir().unwrap();
    let green = World::at(&env, other.path())
        .deployment("shop-green")
        .write();
    let third = tempfile::tempdir().unwrap();
    let default = World::at(&env, third.path()).write();

    let create = |cfg: &Path| {
        run_in(
            &env,
            Path::new("/"),
            &["-c", &cfg.display().to_string(), "create"],
            &[],
        )
        .ok();
    };
    create(&blue);
    create(&green);
    create(&blue);
    let droplets = env.sim.droplets();
    assert_eq!(droplets.len(), 3);
    let tagged = |tag: &str| -> Vec<u64> {
        droplets
            .iter()
            .filter(|d| d.tags.first().map(String::as_str) == Some(tag))
            .map(|d| d.id)
            .collect()
    };
    let (b, g) = (tagged("shop-blue"), tagged("shop-green"));
    assert_eq!((b.len(), g.len()), (2, 1), "{droplets:?}");
    assert!(droplets
        .iter()
        .all(|d| !d.tags.contains(&"doproxy".to_string())));

    let (ids, orphans, stderr) = print_of(&env, &blue);
    assert_eq!((ids, orphans), (b.clone(), vec![]));
    assert!(!stderr.contains("carries the tag"), "{stderr}");
    let (ids, orphans, stderr) = print_of(&env, &green);
    assert_eq!((ids, orphans), (g.clone(), vec![]));
    assert!(!stderr.contains("carries the tag"), "{stderr}");
    // The default deployment (tag doproxy) sees neither.
    let (ids, orphans, _) = print_of(&env, &default);
    assert_eq!((ids, orphans), (vec![], vec![]));

    // Orphan detection still works within a deployment: a droplet with blue's tag that
    // blue's inventory lacks is blue's orphan, and nobody else's.
    let stray = env.create_direct("auto-nginx-stray", &["shop-blue"]);
    let (_, orphans, stderr) = print_of(&env, &blue);
    assert_eq!(orphans, vec![stray]);
    assert!(stderr.contains("carries the tag \"shop-blue\""), "{stderr}");
    assert_eq!(print_of(&env, &green).1, Vec::<u64>::new());

    // Deleting in one deployment leaves the other alone.
    run_in(
        &env,
        Path::new("/"),
        &["-c", &green.display().to_string(), "delete", "0"],
        &[],
    )
    .ok();
    let left: Vec<u64> = env.sim.droplets().iter().map(|d| d.id).collect();
    assert!(
        b.iter().all(|id| left.contains(id)) && !left.contains(&g[0]),
        "{left:?}"
    );
    assert_eq!(print_of(&env, &blue).0, b);
}

#[test]
fn check_and_reload_commands_never_see_the_token() {
    let env = TestEnv::new();
    let mut w = World::of(&env);
    w.config.check_command = Some("env > check.env; true".into());
    w.config.reload_command = Some("env > reload.env; true".into());
    w.write();
    // The token in the file and in the environment (both the names doproxy reads).
    let vars = [
        ("DIGITALOCEAN_ACCESS_TOKEN", TOKEN),
        ("DIGITALOCEAN_TOKEN", TOKEN),
        ("DOPROXY_TEST_SECRET", "not-for-children"),
    ];
    run_in(&env, env.dir.path(), &["create"], &vars).ok();
    run_in(&env, env.dir.path(), &["reload", "--force"], &vars).ok();
    for f in ["check.env", "reload.env"] {
        let text = env.read(f);
        assert!(text.contains("DOPROXY_CONFIG="), "[{f}] {text}");
        assert!(
            !text.contains(TOKEN),
            "[{f}] the token reached a child: {text}"
        );
        assert!(!text.contains("DIGITALOCEAN"), "[{f}] {text}");
        assert!(!text.contains("not-for-children"), "[{f}] {text}");
        let names: Vec<&str> = text
            .lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, _)| k)
            .collect();
        for n in &names {
            // What doproxy passes, plus what sh sets for itself.
            assert!(
                ["PATH", "LANG", "LC_ALL", "DOPROXY_CONFIG", "PWD"].contains(n),
                "[{f}] unexpected variable {n}: {text}"
            );
        }
    }
}

/// The temp files doproxy leaves in `dir` (`.<name>.doproxy-<pid>-<random>.tmp`).
fn temps(dir: &Path) -> Vec<PathBuf> {
    fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.contains(".doproxy-") && n.ends_with(".tmp"))
        })
        .collect()
}

#[test]
fn planted_symlinks_are_replaced_never_followed() {
    let env = TestEnv::new();
    let victim = env.path("victim");
    fs::write(&victim, "precious\n").unwrap();
    chmod(&victim, 0o644);
    let id = env.create_direct("auto-nginx-a", &["doproxy"]);
    env.write("inventory", &format!("{id}\n"));
    std::thread::sleep(Duration::from_millis(200));
    // An installed config to keep as last-good, so that every write path is exercised.
    env.write("etc/haproxy.cfg", "# live\n");
    // Every file doproxy writes by replacing it (the inventory is written through a link by
    // design: a shared inventory behind a symlink stays shared).
    let planted = ["haproxy.cfg", "etc/haproxy.cfg.last-good"];
    for p in planted {
        std::os::unix::fs::symlink(&victim, env.path(p)).unwrap();
    }
    env.run(&["generate"]).ok();
    env.run(&["reload", "--force"]).ok();
    // The installed config itself as a link.
    let installed = env.path("etc/haproxy.cfg");
    fs::remove_file(&installed).unwrap();
    std::os::unix::fs::symlink(&victim, &installed).unwrap();
    env.run(&["create"]).ok();
    env.run(&["delete", "0"]).ok();
    assert_eq!(fs::read_to_string(&victim).unwrap(), "precious\n");
    assert_eq!(fs::metadata(&victim).unwrap().mode() & 0o7777, 0o644);
    for p in planted.iter().chain(&["etc/haproxy.cfg"]) {
        let m = fs::symlink_metadata(env.path(p)).unwrap();
        assert!(m.file_type().is_file(), "{p} is still a link");
        assert_eq!(m.mode() & 0o077, 0, "{p}: a new file is 0600");
    }
    assert!(
        env.installed().contains("server www-"),
        "{}",
        env.installed()
    );
    assert!(temps(env.dir.path()).is_empty() && temps(&env.path("etc")).is_empty());
}

#[test]
fn owners_and_modes_survive_create_delete_and_reload() {
    let env = TestEnv::new();
    // Debian's layout: haproxy.cfg root:haproxy 0640 (nogroup stands in for haproxy); the
    // inventory as the harness made it (0644).
    let installed = env.path("etc/haproxy.cfg");
    fs::write(&installed, "# live\n").unwrap();
    std::os::unix::fs::chown(&installed, Some(0), Some(NOBODY)).unwrap();
    chmod(&installed, 0o640);
    let inv = env.path("inventory");
    chmod(&inv, 0o644);
    let check = |what: &str, p: &Path, uid: u32, gid: u32, mode: u32| {
        let m = fs::metadata(p).unwrap();
        assert_eq!(
            (m.uid(), m.gid(), m.mode() & 0o7777),
            (uid, gid, mode),
            "[{what}] {} owner, group, mode",
            p.display()
        );
    };
    env.run(&["create"]).ok();
    check("create", &installed, 0, NOBODY, 0o640);
    check("create", &inv, 0, 0, 0o644);
    check(
        "create: last-good is new",
        &env.path("etc/haproxy.cfg.last-good"),
        0,
        0,
        0o600,
    );
    env.run(&["reload", "--force"]).ok();
    check("reload", &installed, 0, NOBODY, 0o640);
    env.run(&["generate"]).ok();
    check(
        "generate: new rendered file",
        &env.path("haproxy.cfg"),
        0,
        0,
        0o600,
    );
    env.run(&["delete", "0"]).ok();
    check("delete", &installed, 0, NOBODY, 0o640);
    check("delete", &inv, 0, 0, 0o644);
    assert!(env.inventory().is_empty());

    // With the stats password in the config, no config file is group- or world-readable,
    // whatever mode it had.
    let mut w = World::of(&env);
    w.config.haproxy.stats_user = Some("admin".into());
    w.config.haproxy.stats_password = Some("s3cret-stats".into());
    w.write();
    chmod(&env.path("haproxy.cfg"), 0o644);
    env.run(&["create"]).ok();
    check("secret: installed", &installed, 0, NOBODY, 0o600);
    check(
        "secret: last-good",
        &env.path("etc/haproxy.cfg.last-good"),
        0,
        0,
        0o600,
    );
    env.run(&["generate"]).ok();
    check("secret: rendered", &env.path("haproxy.cfg"), 0, 0, 0o600);
    assert!(env.installed().contains("s3cret-stats"));
}

/// A small deterministic PRNG (a failing trial can be replayed from the seed printed).
struct Lcg(u64);
impl Lcg {
    fn below(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) % n
    }
}

#[test]
fn kill_9_leaves_no_readable_temp_and_the_next_run_sweeps_it() {
    let env = TestEnv::new();
    // A slow check command keeps a candidate temp file on disk while doproxy waits.
    let mut w = World::of(&env);
    w.config.check_command = Some("sleep 0.05".into());
    w.write();
    let seed = doproxy::fsutil::random_u64();
    let mut rng = Lcg(seed);
    let (mut killed, trials) = (0, 12);
    let etc = env.path("etc");
    for trial in 0..trials {
        let args: &[&str] = match trial % 3 {
            0 => &["create"],
            1 => &["reload", "--force"],
            _ => &["delete", "0"],
        };
        if args[0] == "delete" && env.inventory().is_empty() {
            continue;
        }
        let mut child = env
            .command(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(rng.below(200)));
        if child.try_wait().unwrap().is_none() {
            child.kill().unwrap(); // SIGKILL
            killed += 1;
        }
        let _ = child.wait();
        // Whatever was left behind belongs to root and is no more readable than the file it
        // was to replace (0600 for a new one).
        for t in temps(env.dir.path()).iter().chain(&temps(&etc)) {
            let m = fs::metadata(t).unwrap();
            let name = t.file_name().unwrap().to_str().unwrap();
            let target = name
                .strip_prefix('.')
                .and_then(|n| n.split_once(".doproxy-"))
                .map(|(n, _)| t.with_file_name(n))
                .unwrap();
            let allowed = fs::metadata(&target).map_or(0o600, |m| m.mode() & 0o777);
            assert!(
                m.uid() == 0 && m.mode() & 0o777 & !allowed == 0,
                "[seed {seed} trial {trial} {args:?}] {} (mode {:o}) is more readable than {} ({allowed:o})",
                t.display(),
                m.mode() & 0o777,
                target.display()
            );
        }
        // The next runs that write into those folders sweep the dead run's temps.
        std::thread::sleep(Duration::from_millis(150));
        env.run(&["reload", "--force"]).ok();
        env.run(&["generate"]).ok();
        // An inventory write (create, then delete of that line) sweeps the inventory's.
        env.run(&["create"]).ok();
        let last = env.inventory().len() - 1;
        env.run(&["delete", &last.to_string()]).ok();
        let left: Vec<PathBuf> = temps(env.dir.path())
            .into_iter()
            .chain(temps(&etc))
            .collect();
        assert!(
            left.is_empty(),
            "[seed {seed} trial {trial} {args:?}] temp files left: {left:?}"
        );
    }
    assert!(
        killed >= 3,
        "[seed {seed}] only {killed} of {trials} trials killed a running process"
    );
    eprintln!("FIGURES hostile kill -9: {trials} trials, {killed} killed mid-run; no temp file more readable than its target, none left after the next runs");
}
