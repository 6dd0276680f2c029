//! Each command's behaviour against do-sim (check and reload commands are stand-ins here;
//! the walkthrough and the failure tests use a real HAProxy).

use crate::support::*;

fn success_ids(stdout: &str) -> Vec<u64> {
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
fn no_arguments_lists_the_five_commands() {
    let env = TestEnv::new();
    let r = env.run(&[]).ok();
    for cmd in [
        "print",
        "create",
        "delete <LINE_NUMBER>",
        "reload",
        "generate",
    ] {
        assert!(r.stdout.contains(&format!("doproxy {cmd}")), "{}", r.stdout);
    }
    assert!(env.sim.requests().is_empty());
}

#[test]
fn create_count_records_tags_and_renders_every_droplet() {
    let env = TestEnv::new();
    env.count_reloads();
    let r = env.run(&["create", "--count", "3"]).ok();
    // Created together, ready together: one reload for the group (README), not three.
    assert_eq!(env.reloads(), 1, "{}", r.stderr);
    let ids = success_ids(&r.stdout);
    assert_eq!(ids.len(), 3, "{}", r.stdout);
    let mut inv = env.inventory();
    inv.sort();
    let mut sorted = ids.clone();
    sorted.sort();
    assert_eq!(inv, sorted);
    let droplets = env.sim.droplets();
    assert_eq!(droplets.len(), 3);
    for d in &droplets {
        assert!(d.tags.contains(&"doproxy".to_string()), "{d:?}");
        assert_eq!(
            d.user_data.as_deref(),
            Some("#cloud-config\nruncmd:\n  - echo hi\n")
        );
        let line = format!(
            "server www-{} {}:{} check # id:{}, hostname:{}",
            d.id,
            d.private_ipv4.as_ref().unwrap(),
            env.backend_port,
            d.id,
            d.name
        );
        assert!(
            env.server_lines().contains(&line),
            "{line} not in {:?}",
            env.server_lines()
        );
    }
    // Three names in one API request (multi-create), not three.
    let posts = env
        .sim
        .requests()
        .iter()
        .filter(|r| r.method == "POST")
        .count();
    assert_eq!(posts, 1);
    // The rendered copy (haproxy_cfg_file) and the installed one agree.
    assert_eq!(env.read("haproxy.cfg"), env.installed());
    // Recorded, so settled: no name is left in the journal.
    let journal = doproxy::store::journal::Journal::parse(
        "inventory.journal",
        &env.read("inventory.journal"),
    )
    .unwrap();
    assert!(journal.creating.is_empty(), "{journal:?}");
}

#[test]
fn create_sends_ten_names_per_request() {
    let env = TestEnv::new();
    let r = env.run(&["create", "--count", "11"]).ok();
    assert_eq!(success_ids(&r.stdout).len(), 11, "{}", r.stdout);
    let posts = env
        .sim
        .requests()
        .iter()
        .filter(|r| r.method == "POST")
        .count();
    assert_eq!(posts, 2, "11 names: one request of ten, one of one");
    assert_eq!(env.inventory().len(), 11);
    assert_eq!(env.sim.droplets().len(), 11);
}

#[test]
fn create_records_the_id_while_the_droplet_is_still_new() {
    // Droplets take 3 s to boot: long enough to look at the inventory meanwhile.
    let opts = do_sim::SimOptions {
        active_after: std::time::Duration::from_secs(3),
        ..fast_sim_options()
    };
    let env = TestEnv::with_options(opts, false);
    let mut child = env.spawn(&["create"]);
    let started = std::time::Instant::now();
    let id = loop {
        if let Some(id) = env.inventory().first() {
            break *id;
        }
        assert!(
            child.try_wait().unwrap().is_none(),
            "create ended before its droplet's ID reached the inventory"
        );
        assert!(
            started.elapsed() < std::time::Duration::from_millis(2500),
            "no ID in the inventory {:?} after the create: {:?}",
            started.elapsed(),
            env.sim.droplets()
        );
        std::thread::sleep(std::time::Duration::from_millis(5));
    };
    // Seen in the inventory while the droplet is still booting and create still waits.
    let droplets = env.sim.droplets();
    assert_eq!(droplets.len(), 1, "{droplets:?}");
    assert_eq!((droplets[0].id, droplets[0].status.as_str()), (id, "new"));
    assert!(
        child.try_wait().unwrap().is_none(),
        "create is still waiting for the droplet"
    );
    let r = env.finish(child, RUN_DEADLINE).ok();
    assert_eq!(success_ids(&r.stdout), vec![id]);
    assert_eq!(env.inventory(), vec![id]);
}

#[test]
fn stale_inventory_entry_is_reported_never_dropped() {
    let env = TestEnv::new();
    let r = env.run(&["create", "--count", "2"]).ok();
    let ids = success_ids(&r.stdout);
    let gone = env.inventory()[0];
    assert!(env.delete_direct(gone));
    let r = env.run(&["print"]).ok();
    assert!(
        r.stdout.starts_with(&format!(
            "0) (missing)  (pvt ip: , status: missing, id: {gone})\n"
        )),
        "{}",
        r.stdout
    );
    assert!(
        r.stderr.contains(&format!("droplet {gone} does not exist")),
        "{}",
        r.stderr
    );
    // Missing is not gone until confirmed: the server stays for not_found_grace (2 s).
    let r = env.run(&["reload"]).ok();
    assert!(
        r.stderr
            .contains(&format!("droplet {gone} is missing from the API's answer")),
        "{}",
        r.stderr
    );
    assert_eq!(env.server_lines().len(), 2, "removed before confirmed gone");
    std::thread::sleep(std::time::Duration::from_millis(2100));
    let r = env.run(&["reload"]).ok();
    assert!(
        r.stderr.contains(&format!("droplet {gone} does not exist")),
        "{}",
        r.stderr
    );
    assert_eq!(env.inventory().len(), 2, "stale line kept");
    assert_eq!(env.server_lines().len(), 1);
    assert!(ids.contains(&gone));
    // delete of the stale line converges: removes it (404 on delete means gone).
    env.run(&["delete", "0"]).ok();
    assert_eq!(env.inventory().len(), 1);
}

#[test]
fn print_reports_tagged_droplets_missing_from_the_inventory() {
    let env = TestEnv::new();
    let orphan = env.create_direct("auto-nginx-orphan", &["doproxy"]);
    let other = env.create_direct("unrelated", &["web"]);
    let r = env.run(&["print"]).ok();
    assert_eq!(
        r.stdout,
        "The inventory file is empty. Use the create command.\n"
    );
    assert!(
        r.stderr.contains(&format!(
            "droplet {orphan} (auto-nginx-orphan) carries the tag \"doproxy\" but is not in ./inventory;"
        )),
        "{}",
        r.stderr
    );
    assert!(!r.stderr.contains(&other.to_string()));
}

#[test]
fn reload_only_when_the_config_changed() {
    let env = TestEnv::new();
    env.count_reloads();
    env.run(&["reload"]).ok();
    let r = env.run(&["reload"]).ok();
    assert!(r.stderr.contains("up to date"), "{}", r.stderr);
    assert_eq!(env.reloads(), 1);
    env.run(&["reload", "--force"]).ok();
    assert_eq!(env.reloads(), 2);
}

#[test]
fn generate_renders_without_installing() {
    let env = TestEnv::new();
    env.create_direct("x", &["doproxy"]);
    env.run(&["generate"]).ok();
    assert!(env.read("haproxy.cfg").contains("backend www-backend"));
    assert!(!env.path("etc/haproxy.cfg").exists());
    // Nothing that changes anything was asked of the API.
    assert!(env.api_writes().is_empty(), "{:?}", env.api_writes());
}

#[test]
fn original_config_and_inventory_load_unchanged() {
    let env = TestEnv::new();
    let a = env.create_direct("auto-nginx-0", &[]);
    let b = env.create_direct("auto-nginx-1", &[]);
    std::thread::sleep(std::time::Duration::from_millis(300));
    // Shaped exactly like the Ruby DOProxy's doproxy.yml.sample and inventory file.
    env.write(
        "doproxy.yml",
        "---\ntoken: sim-token-7f3a9c\nssh_key_ids:\n  - 163420\nuserdata_file: user-data.yml\n\nhaproxy_cfg_file: haproxy.cfg\nhaproxy_cfg_path: /etc/haproxy\nhaproxy_template_file: haproxy.cfg.erb\n\n\ninventory_file: inventory\n\ndroplet_options:\n  hostname_prefix: auto-nginx\n  region: nyc3\n  size: 1gb\n  image: ubuntu-16-04-x64\n",
    );
    env.write("inventory", &format!("{a}\n{b}\n"));
    let r = env
        .run_env(&["print"], &[("DIGITALOCEAN_API_URL", &env.sim.url())])
        .ok();
    let lines: Vec<_> = r
        .stdout
        .lines()
        .map(|l| parse_print_line(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2);
    assert_eq!((lines[0].1.as_str(), lines[0].4), ("auto-nginx-0", a));
    assert_eq!(
        (lines[1].1.as_str(), lines[1].3.as_str(), lines[1].4),
        ("auto-nginx-1", "active", b)
    );
    // The ERB template it names cannot be used: a clear error, exit 2.
    env.write("haproxy.cfg.erb", "bind <%= x %>:80\n");
    let r = env
        .run_env(&["generate"], &[("DIGITALOCEAN_API_URL", &env.sim.url())])
        .code(2);
    assert!(
        r.stderr.contains("ERB template") && r.stderr.contains("haproxy.cfg.erb"),
        "{}",
        r.stderr
    );
}

#[test]
fn token_from_environment() {
    let env = TestEnv::new();
    env.configure(|c| c.token = None);
    env.run(&["print"]).code(2);
    env.run_env(&["print"], &[("DIGITALOCEAN_ACCESS_TOKEN", TOKEN)])
        .ok();
    env.run_env(&["print"], &[("DIGITALOCEAN_TOKEN", TOKEN)])
        .ok();
}

#[test]
fn config_flag_and_relative_paths() {
    let env = TestEnv::new();
    let mut cmd = env.command(&[
        "--config",
        &env.path("doproxy.yml").display().to_string(),
        "print",
    ]);
    cmd.current_dir("/");
    let r = run_with_deadline(&mut cmd, RUN_DEADLINE);
    let (stdout, stderr) = (
        String::from_utf8_lossy(&r.stdout),
        String::from_utf8_lossy(&r.stderr),
    );
    env.check_secrets("doproxy --config", &format!("{stdout}{stderr}"));
    assert!(r.status.success(), "{stderr}");
    assert_eq!(
        stdout,
        "The inventory file is empty. Use the create command.\n"
    );
}

#[test]
fn warns_when_the_token_file_is_readable_by_others() {
    use std::os::unix::fs::PermissionsExt;
    let env = TestEnv::new();
    let r = env.run(&["print"]).ok();
    assert!(
        !r.stderr.contains("readable by group or others"),
        "{}",
        r.stderr
    );
    std::fs::set_permissions(
        env.path("doproxy.yml"),
        std::fs::Permissions::from_mode(0o644),
    )
    .unwrap();
    let r = env.run(&["print"]).ok();
    assert!(
        r.stderr.contains("readable by group or others (mode 644)"),
        "{}",
        r.stderr
    );
}

#[test]
fn inventory_with_crlf_and_blank_lines_is_read_sensibly() {
    let env = TestEnv::new();
    let a = env.create_direct("auto-nginx-a", &["doproxy"]);
    let b = env.create_direct("auto-nginx-b", &["doproxy"]);
    env.write("inventory", &format!("{a}\r\n\r\n{b}\r\n"));
    let r = env.run(&["print"]).ok();
    let lines: Vec<_> = r
        .stdout
        .lines()
        .map(|l| parse_print_line(l).unwrap())
        .collect();
    assert_eq!(
        (lines[0].0, lines[0].4, lines[1].0, lines[1].4),
        (0, a, 1, b)
    );
    // A write normalizes the file to one ID a line.
    env.run(&["delete", "0"]).ok();
    assert_eq!(env.read("inventory"), format!("{b}\n"));
}

#[test]
fn print_with_200_droplets_lists_instead_of_one_get_per_line() {
    let env = TestEnv::new();
    let mut ids: Vec<u64> = (0..200)
        .map(|i| env.create_direct(&format!("auto-nginx-{i}"), &["doproxy"]))
        .collect();
    // Five droplets the Ruby DOProxy made carry no tag: they are looked up one by one.
    let untagged: Vec<u64> = (0..5)
        .map(|i| env.create_direct(&format!("ruby-{i}"), &[]))
        .collect();
    ids.extend(&untagged);
    env.write(
        "inventory",
        &ids.iter().map(|id| format!("{id}\n")).collect::<String>(),
    );
    std::thread::sleep(std::time::Duration::from_millis(200));
    env.sim.clear_requests();
    let r = env.run(&["print"]).ok();
    assert_eq!(r.stdout.lines().count(), 205);
    assert_eq!(
        r.stdout.matches("status: active").count(),
        205,
        "{}",
        r.stdout
    );
    let log = env.sim.requests();
    let lists = log.iter().filter(|r| r.path == "/v2/droplets").count();
    let gets: Vec<_> = log
        .iter()
        .filter(|r| r.path.starts_with("/v2/droplets/"))
        .collect();
    // The README's figure: ceil(N/200) list requests; 200 tagged droplets are one page.
    assert_eq!(
        lists, 1,
        "{lists} list requests for 200 tagged droplets: {log:?}"
    );
    assert_eq!(
        gets.len(),
        5,
        "only the untagged droplets are fetched one by one: {gets:?}"
    );
    eprintln!("FIGURES print 205 droplets: {lists} list request(s) + {} GETs (one-GET-per-line would be 205)", gets.len());
}

#[test]
fn readiness_gate_waits_until_the_app_answers() {
    let opts = do_sim::SimOptions {
        app_boot_delay: std::time::Duration::from_millis(1500),
        ..fast_sim_options()
    };
    let env = TestEnv::with_options(opts, false);
    env.configure(|c| c.readiness_check = Some(true));
    let r = env.run(&["-v", "create"]).ok();
    assert!(
        r.stderr.contains("readiness check http://127.") && r.stderr.contains(": not yet"),
        "{}",
        r.stderr
    );
    let d = &env.sim.droplets()[0];
    let addr: std::net::SocketAddr =
        format!("{}:{}", d.private_ipv4.as_ref().unwrap(), env.backend_port)
            .parse()
            .unwrap();
    // The moment create reports success, the backend answers.
    let (status, body) = http_get(addr, "/").expect("the app answers once create has returned");
    assert_eq!(status, 200);
    assert!(body.contains(&format!("ID: {}", d.id)));
}

#[test]
fn watch_with_the_file_backend_follows_the_inventory_and_stops_on_sigterm() {
    let env = TestEnv::new();
    let log = std::fs::File::create(env.path("watch.log")).unwrap();
    let out = std::fs::File::create(env.path("watch.out")).unwrap();
    let mut child = env
        .command(&["-o", "json", "reload", "--watch"])
        .stdout(out)
        .stderr(log)
        .spawn()
        .unwrap();
    let started = std::time::Instant::now();
    while !env.read("watch.log").contains("watching") {
        assert!(
            started.elapsed() < std::time::Duration::from_secs(10),
            "the watch did not start"
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let id = env.create_direct("auto-nginx-w", &["doproxy"]);
    env.write("inventory", &format!("{id}\n"));
    let started = std::time::Instant::now();
    while !env.installed().contains(&format!("server www-{id} ")) {
        assert!(
            started.elapsed() < std::time::Duration::from_secs(10),
            "the watch did not install the new droplet: {}",
            env.read("watch.log")
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let took = started.elapsed();
    assert!(signal(child.id(), "TERM"));
    let status = wait_with_deadline(&mut child, std::time::Duration::from_secs(10));
    assert!(
        status.success(),
        "{status:?}: {}",
        env.read_output("watch.log")
    );
    assert!(env.read_output("watch.log").contains("watch stopped"));
    // JSON Lines on stdout: one object per reload.
    let events: Vec<serde_json::Value> = env
        .read_output("watch.out")
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(!events.is_empty());
    assert!(
        events
            .iter()
            .all(|e| e["action"] == "reload" && e["reloaded"] == true),
        "{events:?}"
    );
    assert_eq!(events.last().unwrap()["backends"], 1);
    eprintln!("FIGURES file watch: new inventory line in the installed config after {took:.0?}");
}
