//! Tests that bite (issue #17): each pins a guarantee that mutation testing
//! (`scripts/mutants.sh`) found no test noticing when broken.

use crate::support::TestEnv;
use doproxy::store::journal::{self, Intent, Journal};

/// The create journal beside the inventory.
fn journal(env: &TestEnv) -> Journal {
    Journal::parse("inventory.journal", &env.read("inventory.journal")).unwrap()
}

/// Journals `name` as a create in flight (an interrupted `create`), written now.
fn journal_intent(env: &TestEnv, name: &str) {
    let j = Journal {
        creating: vec![Intent {
            name: name.into(),
            since: journal::now(),
            ambiguous: false,
        }],
        ..Journal::default()
    };
    env.write("inventory.journal", &j.render());
}

#[test]
fn a_delete_adopts_an_interrupted_create_first_and_a_dry_run_does_not() {
    // One droplet in the inventory; a second, of the deployment, made by a create that was
    // interrupted before it recorded the ID: only its name is in the journal.
    let env = TestEnv::new();
    env.run(&["create"]).ok();
    let mine = env.inventory()[0];
    let interrupted = env.create_direct("auto-nginx-interrupted", &["doproxy"]);
    journal_intent(&env, "auto-nginx-interrupted");

    // A dry run changes nothing: not the inventory, not the journal.
    let journal_text = env.read("inventory.journal");
    env.run(&["delete", "0", "--dry-run"]).ok();
    assert_eq!(env.inventory(), vec![mine]);
    assert_eq!(env.read("inventory.journal"), journal_text);

    // The delete adopts it before deleting line 0: it stays, in the inventory.
    env.run(&["delete", "0"]).ok();
    assert_eq!(env.inventory(), vec![interrupted]);
    assert!(journal(&env).creating.is_empty(), "{:?}", journal(&env));
    let left: Vec<u64> = env.sim.droplets().iter().map(|d| d.id).collect();
    assert_eq!(left, vec![interrupted]);
}

#[test]
fn a_delete_keeps_the_missing_log_and_its_dry_run_does_not() {
    // Two droplets; the second is destroyed out of band, so the API's answer lacks it: a
    // delete's pass over the servers records it in the node's missing log (its grace
    // starts), a dry run's pass does not.
    let env = TestEnv::new();
    env.run(&["create", "--count", "2"]).ok();
    let ids = env.inventory();
    assert!(env.delete_direct(ids[1]));
    let log = "etc/haproxy.cfg.missing.json";
    env.run(&["delete", "0", "--dry-run"]).ok();
    assert!(!env.path(log).exists(), "a dry run wrote {log}");
    env.run(&["delete", "0"]).ok();
    let text = env.read(log);
    assert!(text.contains(&ids[1].to_string()), "{log}: {text:?}");
}

#[test]
fn a_delete_that_no_other_node_has_to_confirm_warns_of_none() {
    // A file store has no other node: nobody is waited for, nobody is named.
    let env = TestEnv::new();
    env.run(&["create"]).ok();
    let r = env.run(&["delete", "0"]).ok();
    assert!(!r.stderr.contains("did not confirm"), "{}", r.stderr);
    assert!(env.inventory().is_empty());
}

#[test]
fn a_delete_marks_the_droplet_leaving_before_the_reload_and_clears_the_mark_after() {
    // The reload command copies the journal as it is at the moment HAProxy is reloaded
    // without the server: the droplet must be marked leaving then (so no other node's
    // `reload --watch` puts it back while it is destroyed), and unmarked once gone.
    let env = TestEnv::new();
    env.run(&["create", "--count", "2"]).ok();
    let gone = env.inventory()[0];
    let (journal_path, seen) = (env.path("inventory.journal"), env.path("journal-at-reload"));
    env.configure(|c| {
        c.reload_command = Some(format!("cp {} {}", journal_path.display(), seen.display()))
    });
    env.run(&["delete", "0"]).ok();
    let at_reload = Journal::parse("journal-at-reload", &env.read("journal-at-reload")).unwrap();
    assert_eq!(at_reload.leaving_ids(), vec![gone], "{at_reload:?}");
    assert!(journal(&env).leaving.is_empty(), "{:?}", journal(&env));
}

/// A raw API answering every listing with `page` (a 200 with that JSON).
fn same_page_server(
    page: &'static str,
) -> (String, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    use crate::client::{head, raw_server, Raw};
    raw_server(move |_| {
        let mut bytes = head("200 OK", &format!("content-length: {}\r\n", page.len())).into_bytes();
        bytes.extend_from_slice(page.as_bytes());
        Raw::Bytes(bytes)
    })
}

#[test]
fn a_last_page_stops_the_listing_even_when_the_total_says_more_pages() {
    // One droplet, no `links.pages.next`, and a stale `meta.total` of 450 (three pages'
    // worth): the missing next link ends the listing after one request.
    use crate::client::{block_on, client};
    use std::sync::atomic::Ordering;
    let (url, count) = same_page_server(
        r#"{"droplets":[{"id":7,"name":"web-1","status":"active","locked":false,"networks":{"v4":[{"ip_address":"10.0.0.7","type":"private"}]},"tags":["doproxy"]}],"links":{},"meta":{"total":450}}"#,
    );
    let listed = block_on(client(&url).list_by_tag("doproxy")).unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(count.load(Ordering::SeqCst), 1, "requests for one page");
}

#[test]
fn an_empty_page_stops_the_listing_even_with_a_next_link() {
    // No droplet on the page, yet a next link and a total of 450: an empty page ends the
    // listing (following it would page on until the page cap).
    use crate::client::{block_on, client};
    use std::sync::atomic::Ordering;
    let (url, count) = same_page_server(
        r#"{"droplets":[],"links":{"pages":{"next":"https://api.digitalocean.com/v2/droplets?page=2"}},"meta":{"total":450}}"#,
    );
    let listed = block_on(client(&url).list_by_tag("doproxy")).unwrap();
    assert!(listed.is_empty());
    assert_eq!(count.load(Ordering::SeqCst), 1, "requests for one page");
}

#[test]
fn a_check_command_killed_by_a_signal_is_named_so() {
    // The check command dies of SIGKILL (an OOM kill, say): the error names the signal,
    // not an "unknown status", and nothing is installed.
    let env = TestEnv::new();
    env.configure(|c| c.check_command = Some("kill -KILL $$".into()));
    let r = env.run(&["reload"]);
    assert_ne!(r.code, 0, "{r:?}");
    assert!(r.stderr.contains("failed (signal 9)"), "{}", r.stderr);
    assert!(!env.path("etc/haproxy.cfg").exists());
}

/// What a failed command's one-line error shows of its output (after its status).
fn shown_output(stderr: &str) -> &str {
    let (_, rest) = stderr
        .split_once("failed (exit code 1): ")
        .unwrap_or_else(|| panic!("no failed command in {stderr}"));
    rest.lines().next().unwrap_or_default()
}

#[test]
fn a_failed_check_shows_the_alert_lines_of_its_output() {
    // HAProxy's check prints notices and ALERT lines: the one-line error shows the ALERTs
    // only (blank lines and notices dropped), at most five of them.
    let env = TestEnv::new();
    let script = "echo '[NOTICE] noise'; echo; for i in 1 2 3 4 5 6; do echo \"[ALERT] bad $i\"; done; echo '[WARNING] more noise'; exit 1";
    env.configure(|c| c.check_command = Some(format!("{{ {script}; }} >&2")));
    let r = env.run(&["reload"]).code(1);
    assert_eq!(
        shown_output(&r.stderr),
        "[ALERT] bad 1 | [ALERT] bad 2 | [ALERT] bad 3 | [ALERT] bad 4 | [ALERT] bad 5",
        "{}",
        r.stderr
    );
    // Without ALERT lines, the lines it printed (blank ones dropped); without output, that
    // it printed none.
    env.configure(|c| c.check_command = Some("echo; echo 'it broke' >&2; echo; exit 1".into()));
    let r = env.run(&["reload"]).code(1);
    assert_eq!(shown_output(&r.stderr), "it broke", "{}", r.stderr);
    env.configure(|c| c.check_command = Some("exit 1".into()));
    let r = env.run(&["reload"]).code(1);
    assert_eq!(shown_output(&r.stderr), "(no output)", "{}", r.stderr);
}

#[test]
fn an_unreadable_inventory_is_not_called_missing() {
    // A path that exists but cannot be read as a file (a directory here) is a read error,
    // not "doesn't exist; create an empty one" (touching it would not help).
    let env = TestEnv::new();
    std::fs::remove_file(env.path("inventory")).unwrap();
    std::fs::create_dir(env.path("inventory")).unwrap();
    let r = env.run(&["print"]);
    assert_ne!(r.code, 0, "{r:?}");
    assert!(
        r.stderr.contains("cannot read inventory file"),
        "{}",
        r.stderr
    );
    assert!(!r.stderr.contains("doesn't exist"), "{}", r.stderr);
}

#[test]
fn an_unreadable_journal_is_an_error_not_an_empty_journal() {
    // A journal that exists but cannot be read (a directory here) must stop the command:
    // read as empty, the interrupted creates it names would be forgotten.
    let env = TestEnv::new();
    std::fs::create_dir(env.path("inventory.journal")).unwrap();
    let r = env.run(&["print"]);
    assert_ne!(r.code, 0, "{r:?}");
    assert!(
        r.stderr.contains("cannot read") && r.stderr.contains("inventory.journal"),
        "{}",
        r.stderr
    );
}

#[test]
fn an_idle_file_backed_watch_asks_the_api_nothing() {
    // Nothing changes and nothing boots: `reload --watch` on the file backend sleeps
    // until the next resync (60 s), polling only the files, not the API.
    use crate::support::{signal, wait_with_deadline};
    use std::time::{Duration, Instant};
    // One droplet, active and served (with none, a pass asks the API nothing anyway).
    let env = TestEnv::new();
    env.run(&["create"]).ok();
    // A short debounce: a change reported when there is none would show within 2 s.
    env.configure(|c| c.watch_debounce = Some("50ms".into()));
    let log = std::fs::File::create(env.path("watch.log")).unwrap();
    let mut child = env
        .command(&["reload", "--watch"])
        .stdout(std::process::Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    let started = Instant::now();
    while !env.read("watch.log").contains("watching") {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the watch did not start"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    // Past the first pass (and its debounce), then idle for 2 s.
    std::thread::sleep(Duration::from_millis(500));
    env.sim.clear_requests();
    std::thread::sleep(Duration::from_secs(2));
    let asked: Vec<String> = env.sim.requests().into_iter().map(|r| r.path).collect();
    assert!(signal(child.id(), "TERM"));
    wait_with_deadline(&mut child, Duration::from_secs(10));
    assert!(asked.is_empty(), "an idle watch asked the API {asked:?}");
}

#[test]
fn an_ambiguous_answer_marks_its_own_intents_ambiguous_and_no_others() {
    // A 503 to the POST: whether the droplet was made is unknown. While create looks for
    // it by name (up to not_found_grace, 2 s here), its own intent reads ambiguous with a
    // fresh `since` (the grace counts from the ambiguous answer); another create's intent
    // in the same journal is left as it was.
    use crate::support::proxy::{Act, ApiProxy, Reply};
    use std::time::{Duration, Instant};
    let env = TestEnv::new();
    let proxy = ApiProxy::start(
        &env.sim.url(),
        Box::new(|method, _, _| match method {
            "POST" => Act::Answer(Reply::error(503, "service_unavailable", &[])),
            _ => Act::Pass,
        }),
    );
    let api = proxy.url();
    env.configure(|c| c.api_url = Some(api));
    // Another node's create, written a second ago.
    let other = Intent {
        name: "other-node-web".into(),
        since: journal::now() - 1,
        ambiguous: false,
    };
    let j = Journal {
        creating: vec![other.clone()],
        ..Journal::default()
    };
    env.write("inventory.journal", &j.render());
    let before = journal::now();
    let child = env.spawn(&["create"]);
    let started = Instant::now();
    let own = loop {
        let j = journal(&env);
        if let Some(i) = j
            .creating
            .iter()
            .find(|i| i.name != other.name && i.ambiguous)
        {
            break (i.clone(), j);
        }
        assert!(
            started.elapsed() < Duration::from_millis(1500),
            "no intent marked ambiguous while create looks for its droplet: {j:?}"
        );
        std::thread::sleep(Duration::from_millis(10));
    };
    let (mine, j) = own;
    assert!(
        mine.since >= before,
        "{mine:?} (create started at {before})"
    );
    assert_eq!(
        j.creating.iter().find(|i| i.name == other.name),
        Some(&other),
        "another create's intent is not touched: {j:?}"
    );
    let r = env.finish(child, Duration::from_secs(20)).code(1);
    assert!(
        r.stderr
            .contains("is unknown, so the request was not sent again"),
        "{}",
        r.stderr
    );
}

#[test]
fn a_429_on_create_is_waited_out_and_the_post_sent_once_more() {
    // A 429 proves nothing was created: the POST is sent again once its retry-after has
    // passed (the one case a create is re-sent), and one droplet results.
    use crate::support::proxy::{Act, ApiProxy, Reply};
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::Duration;
    let env = TestEnv::new();
    let first = AtomicBool::new(true);
    let proxy = ApiProxy::start(
        &env.sim.url(),
        Box::new(move |method, _, _| {
            if method == "POST" && first.swap(false, Ordering::SeqCst) {
                Act::Answer(Reply::too_many_requests("1"))
            } else {
                Act::Pass
            }
        }),
    );
    let api = proxy.url();
    env.configure(|c| c.api_url = Some(api));
    env.run(&["create"]).ok();
    let posts: Vec<_> = proxy
        .seen()
        .into_iter()
        .filter(|s| s.method == "POST")
        .collect();
    assert_eq!(posts.len(), 2, "one 429, one POST after it: {posts:?}");
    assert_eq!((posts[0].scripted, posts[1].scripted), (Some(429), None));
    let gap = posts[1].at - posts[0].at;
    assert!(gap >= Duration::from_millis(950), "re-sent after {gap:?}");
    assert_eq!(env.sim.droplets().len(), 1);
    assert_eq!(env.inventory().len(), 1);
}

#[test]
fn a_lost_create_is_not_settled_as_never_made_while_the_listing_fails() {
    // The POST is carried out but its answer lost, and every listing fails until create
    // gives up: absence was never seen, so the intent stays journaled, and the next
    // command (the API back) adopts the droplet instead of calling it an orphan.
    use crate::support::proxy::{Act, ApiProxy, Reply};
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    let env = TestEnv::new();
    let down = Arc::new(AtomicBool::new(false));
    let flag = down.clone();
    let proxy = ApiProxy::start(
        &env.sim.url(),
        Box::new(move |method, target, _| {
            if method == "POST" {
                flag.store(true, Ordering::SeqCst);
                Act::PassThenDrop
            } else if flag.load(Ordering::SeqCst) && target.starts_with("/v2/droplets") {
                Act::Answer(Reply::error(500, "server_error", &[]))
            } else {
                Act::Pass
            }
        }),
    );
    let api = proxy.url();
    env.configure(|c| c.api_url = Some(api));
    let r = env.run(&["create"]).code(1);
    let made = env.sim.droplets();
    assert_eq!(made.len(), 1, "{made:?}");
    let j = journal(&env);
    assert_eq!(
        j.creating
            .iter()
            .map(|i| i.name.as_str())
            .collect::<Vec<_>>(),
        vec![made[0].name.as_str()],
        "the lost create's intent is kept: {j:?}\n{}",
        r.stderr
    );
    down.store(false, Ordering::SeqCst);
    env.settle();
    env.run(&["print"]).ok();
    assert_eq!(
        env.inventory(),
        vec![made[0].id],
        "adopted by the next command"
    );
    assert!(journal(&env).creating.is_empty(), "{:?}", journal(&env));
}

#[test]
fn the_first_look_for_a_lost_create_comes_well_before_poll_interval() {
    // Lists lag behind creates by moments, not by poll_interval: the lookups after a lost
    // answer start at an eighth of poll_interval (1 s here) and double from there.
    use crate::support::proxy::{Act, ApiProxy};
    use std::time::Duration;
    let env = TestEnv::new();
    let proxy = ApiProxy::start(
        &env.sim.url(),
        Box::new(|method, _, _| match method {
            "POST" => Act::PassThenDrop,
            _ => Act::Pass,
        }),
    );
    let api = proxy.url();
    env.configure(|c| {
        c.api_url = Some(api);
        c.poll_interval = Some("1s".into());
        c.not_found_grace = Some("5s".into());
    });
    env.run(&["create"]).ok();
    let seen = proxy.seen();
    let post = seen.iter().position(|s| s.method == "POST").unwrap();
    let looks: Vec<_> = seen[post + 1..]
        .iter()
        .filter(|s| s.method == "GET" && s.target.starts_with("/v2/droplets?"))
        .collect();
    assert!(looks.len() >= 2, "{seen:?}");
    let gap = looks[1].at - looks[0].at;
    assert!(
        gap < Duration::from_millis(900),
        "the second look came {gap:?} after the first (poll_interval 1 s)"
    );
    assert_eq!(env.inventory().len(), 1);
}

#[test]
fn create_keeps_how_long_its_droplet_took_to_become_active() {
    // The journal's activations_ms (what the cold path learns its polling from) holds the
    // time from the POST to `active`: 600 ms here, seen no sooner; never a poll that still
    // saw the droplet `new`.
    let opts = do_sim::SimOptions {
        active_after: std::time::Duration::from_millis(600),
        ..crate::support::fast_sim_options()
    };
    let env = TestEnv::with_options(opts, false);
    env.run(&["create"]).ok();
    let j = journal(&env);
    assert_eq!(j.activations_ms.len(), 1, "{j:?}");
    assert!(j.activations_ms[0] >= 550, "{j:?}");
}

#[test]
fn a_delete_waits_for_the_leaving_servers_requests_before_it_reloads() {
    // The drain lets the leaving server's requests in flight finish (up to drain_timeout,
    // 30 s by default) before the reload drops it: with four 2-second requests spread over
    // both servers, the delete cannot be done in less than the rest of their time.
    use crate::support::{haproxy_available, http_get};
    use std::time::{Duration, Instant};
    if !haproxy_available() {
        return;
    }
    let env = TestEnv::with_haproxy();
    env.run(&["create", "--count", "2"]).ok();
    let ids = env.inventory();
    assert_eq!(env.running_servers().len(), 2);
    for id in &ids {
        assert!(env
            .sim
            .set_app_service_time_direct(*id, Some(Duration::from_secs(2))));
    }
    let front = env.frontend();
    let sent = Instant::now();
    let requests: Vec<_> = (0..4)
        .map(|_| std::thread::spawn(move || http_get(front, "/")))
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    let started = Instant::now();
    env.run(&["delete", "1"]).ok();
    let took = started.elapsed();
    for r in requests {
        assert_eq!(r.join().unwrap().map(|a| a.0), Some(200));
    }
    assert!(
        started + took >= sent + Duration::from_millis(1900),
        "the delete was done {:?} after the requests were sent, before they could finish",
        (started + took) - sent
    );
    assert_eq!(env.inventory(), vec![ids[0]]);
}

#[test]
fn a_droplet_404_for_a_moment_after_its_create_is_waited_for_not_called_gone() {
    // The API can answer 404 for a droplet it has just accepted (and leave it out of
    // lists): within not_found_grace (2 s here) that is lag, not a droplet gone.
    let opts = do_sim::SimOptions {
        not_found_after_create: std::time::Duration::from_millis(800),
        ..crate::support::fast_sim_options()
    };
    let env = TestEnv::with_options(opts, false);
    let r = env.run(&["create"]).ok();
    let made = env.sim.droplets();
    assert_eq!(made.len(), 1);
    assert_eq!(env.inventory(), vec![made[0].id], "{}", r.stderr);
    assert!(!r.stderr.contains("disappeared"), "{}", r.stderr);
    let gets = env
        .sim
        .requests()
        .iter()
        .filter(|q| q.method == "GET" && q.path == format!("/v2/droplets/{}", made[0].id))
        .count();
    assert!(
        gets <= 1,
        "{gets} GETs of the droplet while it was only lagging"
    );
}

#[test]
fn the_readiness_check_takes_an_answer_below_500_and_not_a_500() {
    // The app answers the readiness path with the status it names (do-sim's `?status=N`):
    // a 499 is an app that answers; a 500 is a broken one, and create waits for it until
    // wait_timeout, leaving the droplet in the inventory and out of HAProxy.
    let env = TestEnv::new();
    env.configure(|c| {
        c.readiness_check = Some(true);
        c.readiness_path = Some("/?status=499".into());
    });
    env.run(&["create"]).ok();
    assert_eq!(env.inventory().len(), 1);
    env.configure(|c| {
        c.readiness_check = Some(true);
        c.readiness_path = Some("/?status=500".into());
        c.wait_timeout = Some("1s".into());
    });
    let r = env.run(&["create"]).code(1);
    assert!(r.stderr.contains("not ready after"), "{}", r.stderr);
    assert!(!r.stdout.contains("Success"), "{}", r.stdout);
    assert_eq!(env.inventory().len(), 2, "kept in the inventory");
}

#[test]
fn inventory_init_names_the_file_it_creates() {
    // Messages that concern the store name it (the file's path, or the etcd key).
    let env = TestEnv::new();
    std::fs::remove_file(env.path("inventory")).unwrap();
    // The config names it `./inventory` (relative to the config's folder).
    let r = env.run(&["inventory", "init"]).ok();
    assert!(
        r.stderr
            .contains("created an empty inventory in ./inventory\n"),
        "{}",
        r.stderr
    );
    let r = env.run(&["inventory", "init"]).ok();
    assert!(
        r.stderr
            .contains("./inventory already exists; left as it is"),
        "{}",
        r.stderr
    );
}

#[test]
fn the_activation_time_is_the_time_to_active_not_to_the_first_http_answer() {
    // With the readiness check, a droplet active at once whose app boots for 3 s is
    // added after 3 s; what the cold path learns is the time to `active`, well under that.
    let opts = do_sim::SimOptions {
        app_boot_delay: std::time::Duration::from_secs(3),
        ..crate::support::fast_sim_options()
    };
    let env = TestEnv::with_options(opts, false);
    env.configure(|c| c.readiness_check = Some(true));
    env.run(&["create"]).ok();
    let j = journal(&env);
    assert_eq!(j.activations_ms.len(), 1, "{j:?}");
    assert!(j.activations_ms[0] < 2000, "{j:?}");
}
