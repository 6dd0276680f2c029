//! Fault injection: concurrent runs, kill -9 at random moments, a flaky rate-limited API,
//! connection resets after a create, broken templates and failing or ineffective reloads.
//! Each test prints its figures (run with `--nocapture` to see them).

use crate::support::proxy::{Act, ApiProxy, Reply};
use crate::support::*;
use do_sim::{Faults, SimOptions};
use doproxy::inventory::Inventory;
use doproxy::store::journal::Journal;
use std::collections::{HashMap, HashSet};
use std::process::Stdio;
use std::time::{Duration, Instant};

/// A small deterministic PRNG so that a failing trial can be replayed.
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

/// The invariants after any fault, strictly: the inventory parses, `print` succeeds and
/// reports no orphan, and every droplet in the simulator is in the inventory (a journaled
/// droplet of an interrupted create is adopted by that `print`; any other droplet outside
/// the inventory is a failure), and the installed config (if any) is valid.
fn assert_accounted(env: &TestEnv, what: &str) {
    Inventory::parse("inventory", &env.read("inventory"))
        .unwrap_or_else(|e| panic!("[{what}] {e}"));
    // The listing lags behind creates: wait it out so `print` can see, and adopt, what a
    // killed create made.
    env.settle();
    let r = env.run(&["print"]);
    assert_eq!(r.code, 0, "[{what}] print failed: {}", r.stderr);
    assert!(
        !r.stderr.contains("carries the tag"),
        "[{what}] print reports an orphan: {}",
        r.stderr
    );
    assert_no_orphans(env, what);
    if env.path("etc/haproxy.cfg").exists() && haproxy_available() {
        let (ok, text) = haproxy_check(&env.path("etc/haproxy.cfg"));
        assert!(ok, "[{what}] installed config invalid: {text}");
    }
}

/// Every droplet in the simulator is in the inventory file (read directly: no API request),
/// and no two droplets share a name.
fn assert_no_orphans(env: &TestEnv, what: &str) {
    let inv = Inventory::parse("inventory", &env.read("inventory"))
        .unwrap_or_else(|e| panic!("[{what}] {e}"));
    let droplets = env.sim.droplets();
    for d in &droplets {
        assert!(
            inv.ids.contains(&d.id),
            "[{what}] droplet {} ({}) is an orphan: it exists but is not in the inventory {:?}",
            d.id,
            d.name,
            inv.ids
        );
    }
    let names: HashSet<&str> = droplets.iter().map(|d| d.name.as_str()).collect();
    assert_eq!(
        names.len(),
        droplets.len(),
        "[{what}] duplicate droplets: {droplets:?}"
    );
}

/// The create journal beside the inventory.
fn journal(env: &TestEnv) -> Journal {
    Journal::parse("inventory.journal", &env.read("inventory.journal")).unwrap()
}

/// Right after a `kill -9`, before any other command: the droplets outside the inventory.
/// Each must have its name in the journal — the kill landed between writing the journal
/// (before the POST) and recording the ID (right after the 202) — or it is lost.
fn orphans_of_a_kill(env: &TestEnv, what: &str) -> Vec<String> {
    let inv = Inventory::parse("inventory", &env.read("inventory"))
        .unwrap_or_else(|e| panic!("[{what}] {e}"));
    let journal = journal(env);
    let mut excused = Vec::new();
    for d in env.sim.droplets() {
        if inv.ids.contains(&d.id) {
            continue;
        }
        assert!(
            journal.creating.iter().any(|i| i.name == d.name),
            "[{what}] droplet {} ({}) is lost: not in the inventory, and its name is not in the journal {journal:?}",
            d.id,
            d.name
        );
        excused.push(d.name);
    }
    excused
}

fn ready_ids(env: &TestEnv) -> Vec<u64> {
    let inv = env.inventory();
    let live: HashMap<u64, String> = env
        .sim
        .droplets()
        .into_iter()
        .map(|d| (d.id, d.status))
        .collect();
    inv.into_iter()
        .filter(|id| live.get(id).is_some_and(|s| s == "active"))
        .collect()
}

#[test]
fn eight_concurrent_creates() {
    if !haproxy_available() {
        return;
    }
    let env = TestEnv::with_haproxy();
    env.run(&["reload"]).ok(); // starts HAProxy with an empty backend
    let started = Instant::now();
    let children: Vec<_> = (0..8).map(|_| env.spawn(&["create"])).collect();
    let runs: Vec<Run> = children
        .into_iter()
        .map(|c| env.finish(c, RUN_DEADLINE))
        .collect();
    let elapsed = started.elapsed();
    for r in runs {
        r.ok();
    }
    let inv = env.inventory();
    let distinct: HashSet<_> = inv.iter().collect();
    assert_eq!((inv.len(), distinct.len()), (8, 8), "{inv:?}");
    assert_eq!(env.server_lines().len(), 8, "{:?}", env.server_lines());
    let names: HashSet<_> = env.sim.droplets().into_iter().map(|d| d.name).collect();
    assert_eq!(names.len(), 8);
    assert_eq!(env.sim.droplets().len(), 8, "no orphans");
    assert_accounted(&env, "8 concurrent");
    let pages = env.wait_distinct_backends(8, Duration::from_secs(10));
    assert_eq!(pages.len(), 8);
    eprintln!(
        "FIGURES 8 concurrent creates: {elapsed:.2?} wall, 8 lines, 8 servers, 8 names, 0 orphans"
    );
}

#[test]
fn kill_9_at_random_moments_loses_nothing() {
    if !haproxy_available() {
        return;
    }
    let env = TestEnv::with_haproxy();
    env.run(&["reload"]).ok();
    let mut rng = Lcg(0x5eed_0001);
    let (mut killed, mut finished, mut adopted) = (0, 0, 0);
    let trials = 24;
    for trial in 0..trials {
        // Two of three trials kill a create, one a delete (of line 0).
        let is_delete = trial % 3 == 2 && !env.inventory().is_empty();
        let args: &[&str] = if is_delete {
            &["delete", "0"]
        } else {
            &["create"]
        };
        let mut child = env
            .command(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(rng.below(250)));
        match child.try_wait().unwrap() {
            Some(_) => finished += 1,
            None => {
                child.kill().unwrap(); // SIGKILL, by its PID
                killed += 1;
            }
        }
        wait_with_deadline(&mut child, Duration::from_secs(10));
        let what = format!("trial {trial} {args:?}");
        // Before any other command runs: a droplet outside the inventory is lost unless
        // its name is journaled; the next command (print) must adopt it: 0 orphans.
        adopted += orphans_of_a_kill(&env, &what).len();
        assert_accounted(&env, &what);
        // Re-running converges: once droplets are active, a reload puts every ready
        // inventory droplet (and only those) in the config.
        std::thread::sleep(Duration::from_millis(150));
        env.run(&["reload"]).ok();
        let mut want: Vec<String> = ready_ids(&env)
            .iter()
            .map(|id| format!("server www-{id} "))
            .collect();
        want.sort();
        let mut have: Vec<String> = env
            .server_lines()
            .iter()
            .map(|l| {
                l.split(':')
                    .next()
                    .unwrap()
                    .rsplit_once(' ')
                    .unwrap()
                    .0
                    .to_string()
                    + " "
            })
            .collect();
        have.sort();
        assert_eq!(
            have, want,
            "[{what}] config does not match the ready inventory"
        );
        let mut running: Vec<String> = want
            .iter()
            .map(|l| l.trim_start_matches("server ").trim().to_string())
            .collect();
        running.sort();
        assert_eq!(
            env.running_servers(),
            running,
            "[{what}] HAProxy does not serve the installed config"
        );
        // A delete killed after the droplet was destroyed leaves a "missing" line:
        // running delete again converges.
        let out = env.run(&["print"]).stdout;
        if let Some(line) = out.lines().find(|l| l.contains("status: missing")) {
            let n = line.split(')').next().unwrap();
            env.run(&["delete", n]).ok();
        }
    }
    assert!(
        killed >= 8,
        "only {killed} of {trials} trials killed a running process"
    );
    eprintln!("FIGURES kill -9: {trials} trials, {killed} killed mid-run, {finished} finished first; {adopted} droplet(s) created but not yet recorded at the kill, each journaled and adopted by the next print; 0 orphans, 0 lost droplets, inventory always parsed, config always valid");
}

/// The IDs of `Success: ID created and added to backend.` lines.
fn created_ids(stdout: &str) -> Vec<u64> {
    stdout
        .lines()
        .filter_map(|l| {
            l.strip_prefix("Success: ")?
                .strip_suffix(" created and added to backend.")?
                .parse()
                .ok()
        })
        .collect()
}

#[test]
fn flaky_rate_limited_api_loses_nothing_and_duplicates_nothing() {
    let opts = SimOptions {
        error_rate: 0.2,
        rate_limit_per_minute: Some(15),
        seed: 42,
        ..fast_sim_options()
    };
    let env = TestEnv::with_options(opts, false);
    env.configure(|c| c.wait_timeout = Some("4s".into()));
    let mut outcomes = Vec::new();
    for args in [
        &["create", "--count", "3"][..],
        &["print"],
        &["reload", "--force"],
        &["create"],
        &["delete", "0"],
        &["generate"],
        &["print"],
    ] {
        let what = args.join(" ");
        let before = env.inventory();
        let r = env.run(args);
        let after = env.inventory();
        // Nothing is killed here: no droplet may be outside the inventory, ever.
        assert_no_orphans(&env, &what);
        let errors: Vec<&str> = r
            .stderr
            .lines()
            .filter(|l| l.starts_with("doproxy: error:"))
            .collect();
        match r.code {
            0 => assert!(
                errors.is_empty(),
                "[{what}] succeeded with an error line: {}",
                r.stderr
            ),
            1 => assert_eq!(
                errors.len(),
                1,
                "[{what}] must fail with one error line: {}",
                r.stderr
            ),
            2 if args[0] == "delete" && before.is_empty() => {}
            _ => panic!("[{what}] exit {}: {r:?}", r.code),
        }
        let ok = r.code == 0;
        match args[0] {
            "create" => {
                let asked: usize = args.get(2).map_or(1, |n| n.parse().unwrap());
                let new: Vec<u64> = after
                    .iter()
                    .copied()
                    .filter(|id| !before.contains(id))
                    .collect();
                assert!(
                    after.starts_with(&before),
                    "[{what}] lines changed: {before:?} -> {after:?}"
                );
                assert!(
                    new.len() <= asked,
                    "[{what}] {} droplets for {asked} names",
                    new.len()
                );
                if ok {
                    assert_eq!(new.len(), asked, "[{what}] {r:?}");
                    let mut said = created_ids(&r.stdout);
                    said.sort();
                    let mut new = new.clone();
                    new.sort();
                    assert_eq!(said, new, "[{what}] one Success line per new droplet");
                    for id in &new {
                        assert!(
                            env.server_lines()
                                .iter()
                                .any(|l| l.starts_with(&format!("server www-{id} "))),
                            "[{what}] {id} created but not in the config"
                        );
                    }
                }
            }
            "delete" if !before.is_empty() => {
                let id = before[0];
                let exists = env.sim.droplets().iter().any(|d| d.id == id);
                if ok {
                    assert_eq!(after, before[1..], "[{what}] exactly line 0 goes");
                    assert!(
                        !exists,
                        "[{what}] droplet {id} reported deleted but still exists"
                    );
                    assert!(
                        r.stdout.contains(&format!("Success: {id} deleted")),
                        "{r:?}"
                    );
                } else {
                    assert_eq!(after, before, "[{what}] a failed delete keeps the line");
                    assert!(
                        exists,
                        "[{what}] droplet {id} destroyed, yet the delete failed"
                    );
                }
            }
            _ => {
                assert_eq!(after, before, "[{what}] changed the inventory");
                if ok && args[0] == "print" {
                    assert_eq!(
                        r.stdout.lines().count(),
                        after.len().max(1),
                        "[{what}] {r:?}"
                    );
                }
            }
        }
        outcomes.push((what, r.code));
    }
    let log = env.sim.requests();
    let count = |f: &dyn Fn(u16) -> bool| log.iter().filter(|r| f(r.status)).count();
    let (s5xx, s429) = (count(&|s| s >= 500), count(&|s| s == 429));
    assert!(s5xx > 0, "the test must exercise 5xx answers: {log:?}");
    env.sim.set_faults(Faults {
        error_rate: Some(0.0),
        rate_limit_per_minute: Some(None),
        ..Faults::default()
    });
    assert_accounted(&env, "flaky api");
    let names: Vec<String> = env.sim.droplets().into_iter().map(|d| d.name).collect();
    eprintln!(
        "FIGURES flaky API (20% 5xx, 15/min): {} requests, {s5xx} answered 5xx, {s429} answered 429; outcomes {outcomes:?}; {} droplets, 0 orphans after every command, 0 duplicates",
        log.len(),
        names.len()
    );
}

#[test]
fn connection_resets_after_create_make_no_duplicates() {
    let opts = SimOptions {
        reset_rate: 0.35,
        seed: 7,
        ..fast_sim_options()
    };
    let env = TestEnv::with_options(opts, false);
    let post_resets = |env: &TestEnv| {
        env.sim
            .requests()
            .iter()
            .filter(|r| r.method == "POST" && r.status == 0)
            .count()
    };
    // Which requests get reset depends on how many polls came before: run creates until
    // at least two POSTs were reset after their droplets were made (bounded: 24 runs, where
    // missing even one would take 0.65^24 = 3e-5 bad luck).
    let (mut runs, mut ok) = (0, 0);
    while runs < 24 && post_resets(&env) < 2 {
        let r = env.run(&["create"]);
        assert!(r.code == 0 || r.code == 1, "{r:?}");
        runs += 1;
        ok += usize::from(r.code == 0);
    }
    let log = env.sim.requests();
    let posts = log.iter().filter(|r| r.method == "POST").count();
    let resets_on_post = post_resets(&env);
    let resets = log.iter().filter(|r| r.status == 0).count();
    assert!(
        resets_on_post >= 1,
        "the test must exercise a reset after a create: {log:?}"
    );
    env.sim.set_faults(Faults {
        reset_rate: Some(0.0),
        ..Faults::default()
    });
    assert_accounted(&env, "resets");
    let names: Vec<String> = env.sim.droplets().into_iter().map(|d| d.name).collect();
    let distinct: HashSet<_> = names.iter().collect();
    assert_eq!(names.len(), distinct.len(), "duplicate droplets: {names:?}");
    assert!(
        names.len() <= runs,
        "{} droplets from {runs} creates",
        names.len()
    );
    eprintln!(
        "FIGURES resets (35%): {runs} creates, {ok} succeeded; {posts} POSTs of which {resets_on_post} reset after the create; {resets} resets in all; {} droplets, 0 duplicates",
        names.len()
    );
}

#[test]
fn create_failing_asynchronously_is_forgotten_cleanly() {
    let opts = SimOptions {
        create_failure_rate: 1.0,
        ..fast_sim_options()
    };
    let env = TestEnv::with_options(opts, false);
    let r = env.run(&["create"]).code(1);
    assert!(r.stderr.contains("errored"), "{}", r.stderr);
    assert!(
        env.inventory().is_empty(),
        "a droplet that no longer exists is not kept"
    );
    assert!(env.sim.droplets().is_empty());
}

#[test]
fn haproxy_keeps_serving_through_bad_templates_and_failed_reloads() {
    if !haproxy_available() {
        return;
    }
    let env = TestEnv::with_haproxy();
    env.run(&["create", "--count", "2"]).ok();
    assert_eq!(
        env.wait_distinct_backends(2, Duration::from_secs(10)).len(),
        2
    );
    let good = env.installed();
    // Runs `reload` under `config`: it must fail saying all of `says`, leave the good config
    // installed, and HAProxy must go on serving every request.
    let refused = |config: &DoproxyConfig, args: &[&str], says: &[&str]| {
        env.write_config(config);
        let r = env.run(args).code(1);
        for s in says {
            assert!(r.stderr.contains(s), "expected {s:?}: {}", r.stderr);
        }
        assert_eq!(env.installed(), good);
        let (bodies, failed) = env.requests(20);
        assert_eq!((bodies.len(), failed), (20, 0));
    };
    let base = env.config();
    let edited = |edit: fn(&mut DoproxyConfig)| {
        let mut c = base.clone();
        edit(&mut c);
        c
    };

    // A broken template: refused before install.
    env.write(
        "broken.tera",
        "global\n    maxconn {{ haproxy.maxconn }}\nbogus_directive here\n",
    );
    refused(
        &edited(|c| c.haproxy_template_file = Some("broken.tera".into())),
        &["reload", "--force"],
        &["config check", "bogus_directive"],
    );

    // A reload command that fails: the previous config is put back.
    let extra = env.create_direct("auto-nginx-extra", &["doproxy"]);
    env.write("inventory", &format!("{}{extra}\n", env.read("inventory")));
    std::thread::sleep(Duration::from_millis(200));
    refused(
        &edited(|c| c.reload_command = c.reload_command.take().map(|r| format!("exit 1; {r}"))),
        &["reload"],
        &["reload command", "put the previous config back"],
    );

    // A reload "succeeds" but HAProxy never reloads: detected through the stats socket.
    refused(
        &edited(|c| {
            c.reload_command = c
                .reload_command
                .take()
                .map(|r| format!("true; exit 0; {r}"))
        }),
        &["reload"],
        &["did not take effect"],
    );

    // With a working reload the extra droplet joins.
    env.write_config(&base);
    env.run(&["reload"]).ok();
    assert_eq!(
        env.wait_distinct_backends(3, Duration::from_secs(10)).len(),
        3
    );
}

#[test]
fn api_values_cannot_inject_config_lines() {
    let env = TestEnv::new();
    let id = env.create_direct("evil\n    server x 203.0.113.9:80", &["doproxy"]);
    env.write("inventory", &format!("{id}\n"));
    std::thread::sleep(Duration::from_millis(200));
    env.run(&["generate"]).ok();
    let cfg = env.read("haproxy.cfg");
    assert!(!cfg.contains("203.0.113.9"), "{cfg}");
    assert_eq!(
        cfg.lines()
            .filter(|l| l.trim_start().starts_with("server "))
            .count(),
        1
    );
}

#[test]
fn droplet_that_ends_off_is_reported_and_kept() {
    let opts = SimOptions {
        active_after: Duration::from_millis(400),
        ..fast_sim_options()
    };
    let env = TestEnv::with_options(opts, false);
    let child = env.spawn(&["create"]);
    let started = Instant::now();
    let id = loop {
        if let Some(d) = env.sim.droplets().first() {
            break d.id;
        }
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "create made no droplet"
        );
        std::thread::sleep(Duration::from_millis(5));
    };
    assert!(env.sim.power_off_direct(id));
    let r = env.finish(child, RUN_DEADLINE);
    let stderr = &r.stderr;
    assert_eq!(r.code, 1, "{stderr}");
    assert!(
        stderr.contains(&format!("droplet {id}"))
            && stderr.contains("is \"off\" instead of becoming active"),
        "{stderr}"
    );
    assert_eq!(
        env.inventory(),
        vec![id],
        "an off droplet is still billed: it stays in the inventory"
    );
    assert!(env
        .run(&["print"])
        .ok()
        .stdout
        .contains(&format!("status: off, id: {id})")));
    assert!(env.server_lines().is_empty());
}

#[test]
fn a_run_killed_between_install_and_reload_converges() {
    if !haproxy_available() {
        return;
    }
    let env = TestEnv::with_haproxy();
    env.run(&["create"]).ok();
    let extra = env.create_direct("auto-nginx-extra", &["doproxy"]);
    env.write("inventory", &format!("{}{extra}\n", env.read("inventory")));
    std::thread::sleep(Duration::from_millis(200));
    // What a run killed right after installing leaves: the new file, the old HAProxy.
    env.run(&["generate"]).ok();
    std::fs::copy(env.path("haproxy.cfg"), env.path("etc/haproxy.cfg")).unwrap();
    assert_eq!(env.server_lines().len(), 2);
    let r = env.run(&["reload"]).ok();
    assert!(
        r.stderr.contains("HAProxy reloaded with 2 backend(s)"),
        "{}",
        r.stderr
    );
    assert_eq!(
        env.wait_distinct_backends(2, Duration::from_secs(10)).len(),
        2
    );
    // Now it really is up to date.
    let r = env.run(&["reload"]).ok();
    assert!(r.stderr.contains("up to date"), "{}", r.stderr);
}

#[test]
fn a_create_killed_before_its_answer_arrives_is_adopted_by_the_next_command() {
    let env = TestEnv::new();
    // Every create is carried out at once, but its answer is held back for 5 s: a kill in
    // that window leaves a droplet that exists, billed, whose ID doproxy never saw.
    let proxy = ApiProxy::start(
        &env.sim.url(),
        Box::new(|method, _, _| match method {
            "POST" => Act::PassSlowly(Duration::from_secs(5)),
            _ => Act::Pass,
        }),
    );
    let api = proxy.url();
    env.configure(|c| c.api_url = Some(api));
    // Two names in one request, then one.
    for (next, count) in [("print", 2), ("reload", 1)] {
        let what = format!("killed create --count {count}, then {next}");
        let mut child = env.spawn(&["create", "--count", &count.to_string()]);
        let started = Instant::now();
        let new = loop {
            let inv = env.inventory();
            let new: Vec<_> = env
                .sim
                .droplets()
                .into_iter()
                .filter(|d| !inv.contains(&d.id))
                .collect();
            if new.len() == count {
                break new;
            }
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "[{what}] the create did not reach the API"
            );
            std::thread::sleep(Duration::from_millis(5));
        };
        assert!(
            child.try_wait().unwrap().is_none(),
            "[{what}] create still waits for the answer"
        );
        child.kill().unwrap(); // SIGKILL, by its PID
        wait_with_deadline(&mut child, Duration::from_secs(10));
        // The droplets exist, their IDs are nowhere, their names are in the journal.
        let mut names: Vec<String> = new.iter().map(|d| d.name.clone()).collect();
        names.sort();
        let mut journaled = orphans_of_a_kill(&env, &what);
        journaled.sort();
        assert_eq!(journaled, names, "[{what}]");
        // The next command adopts them once the listing shows them (it lags behind creates).
        env.settle();
        let r = env.run(&[next]).ok();
        for d in &new {
            assert!(
                r.stderr.contains(&format!(
                    "droplet {} ({}) of an interrupted create is adopted",
                    d.id, d.name
                )),
                "[{what}] {}",
                r.stderr
            );
            assert!(env.inventory().contains(&d.id), "[{what}]");
            assert!(
                !journal(&env).creating.iter().any(|i| i.name == d.name),
                "[{what}] adopted, so settled"
            );
        }
        assert!(
            !r.stderr.contains("carries the tag"),
            "[{what}] {}",
            r.stderr
        );
        assert_no_orphans(&env, &what);
    }
    // Once active, the adopted droplets are served like any other.
    std::thread::sleep(Duration::from_millis(200));
    env.run(&["reload"]).ok();
    let inv = env.inventory();
    assert_eq!(inv.len(), 3);
    for id in inv {
        assert!(env.installed().contains(&format!("server www-{id} ")));
    }
}

#[test]
fn an_ambiguous_create_is_looked_up_by_name_and_never_sent_again() {
    let env = TestEnv::new();
    // 1. The POST is carried out, but the connection drops before the answer: doproxy
    //    finds the droplet by its name, records it and succeeds; nothing is sent twice.
    let proxy = ApiProxy::start(
        &env.sim.url(),
        Box::new(|method, _, _| match method {
            "POST" => Act::PassThenDrop,
            _ => Act::Pass,
        }),
    );
    let api = proxy.url();
    env.configure(|c| c.api_url = Some(api));
    let started = Instant::now();
    let r = env.run(&["create"]).ok();
    // Found at the first look: not searched for the whole grace (2 s).
    assert!(
        started.elapsed() < Duration::from_millis(1500),
        "took {:?}",
        started.elapsed()
    );
    let droplets = env.sim.droplets();
    assert_eq!(droplets.len(), 1, "{droplets:?}");
    assert_eq!(created_ids(&r.stdout), vec![droplets[0].id], "{r:?}");
    assert_eq!(env.inventory(), vec![droplets[0].id]);
    assert!(journal(&env).creating.is_empty(), "{:?}", journal(&env));
    let posts = proxy.seen().iter().filter(|s| s.method == "POST").count();
    assert_eq!(posts, 1, "a POST is never re-sent");
    drop(proxy);

    // 2. The POST is answered 503 and was not carried out: looked for during the whole
    //    not_found_grace (2 s), not found, never re-sent; exit 1, one error line.
    let proxy = ApiProxy::start(
        &env.sim.url(),
        Box::new(|method, _, _| match method {
            "POST" => Act::Answer(Reply::error(503, "service_unavailable", &[])),
            _ => Act::Pass,
        }),
    );
    let api = proxy.url();
    env.configure(|c| c.api_url = Some(api));
    let started = Instant::now();
    let r = env.run(&["create"]).code(1);
    let took = started.elapsed();
    let errors: Vec<&str> = r
        .stderr
        .lines()
        .filter(|l| l.starts_with("doproxy: error:"))
        .collect();
    assert_eq!(errors.len(), 1, "{}", r.stderr);
    assert!(
        errors[0].contains("is unknown, so the request was not sent again"),
        "{}",
        errors[0]
    );
    assert!(
        took >= Duration::from_secs(2),
        "gave up looking after {took:?}"
    );
    let posts = proxy.seen().iter().filter(|s| s.method == "POST").count();
    assert_eq!(posts, 1, "a POST is never re-sent");
    // Looked for with growing pauses (up to poll_interval, 50 ms here), not hammered.
    let lookups = proxy.seen().iter().filter(|s| s.method == "GET").count();
    assert!(lookups <= 100, "{lookups} lookups in {took:?}");
    assert_eq!(env.sim.droplets().len(), 1, "nothing more was created");
    assert_eq!(env.inventory(), vec![droplets[0].id]);
    assert!(
        journal(&env).creating.is_empty(),
        "absent for the whole grace: settled as never created {:?}",
        journal(&env)
    );
}
