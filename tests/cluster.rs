//! The etcd inventory backend end to end: the real binary against do-sim and a real etcd
//! (one member, or three with one killed mid-run), two load-balancer "nodes" (two config
//! files, two HAProxy instances, two `reload --watch` processes) sharing one inventory.

use crate::support::etcd::{start_cluster, start_single, EtcdCluster};
use crate::support::*;
use std::collections::HashSet;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Node A's config (the harness's) with the inventory in etcd.
fn etcd_config(env: &TestEnv, etcd: &EtcdCluster) -> DoproxyConfig {
    let mut c = env.config();
    c.watch_debounce = Some("100ms".into());
    c.inventory_file = None;
    c.inventory = InventoryOptions {
        backend: Some("etcd".into()),
        endpoints: Some(etcd.endpoints()),
        prefix: Some("/doproxy-test/".into()),
        lock_ttl: Some("3s".into()),
        timeout: Some("2s".into()),
        ..InventoryOptions::default()
    };
    c
}

/// Node B: the same inventory and API, its own HAProxy (config, port, sockets, pidfile).
fn node_b_config(env: &TestEnv, node_a: &DoproxyConfig, frontend_b: u16) -> DoproxyConfig {
    let mut c = node_a.clone();
    c.haproxy_cfg_path = Some("etc-b".into());
    c.haproxy_cfg_file = Some("haproxy-b.cfg".into());
    c.frontend_bind = Some(format!("127.0.0.1:{frontend_b}"));
    c.haproxy.stats_socket = Some(Some(env.path("admin-b.sock").display().to_string()));
    let (check, reload) = env.commands_with(&env.path("haproxy-b.pid"), &env.path("master-b.sock"));
    (c.check_command, c.reload_command) = (Some(check), Some(reload));
    c
}

/// Child processes (watchers) and node B's HAProxy, stopped on drop (by PID).
struct Procs {
    children: Vec<Child>,
    pidfiles: Vec<std::path::PathBuf>,
}

impl Drop for Procs {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = try_wait_until(c, Instant::now() + Duration::from_secs(10));
        }
        for p in &self.pidfiles {
            if let Some(pid) = std::fs::read_to_string(p)
                .ok()
                .and_then(|s| s.trim().parse::<u32>().ok())
            {
                signal(pid, "TERM");
            }
        }
    }
}

/// Like [`spawn`], with stderr going to `log` in the temp dir.
fn spawn_logged(env: &TestEnv, args: &[&str], log: &str) -> Child {
    let file = std::fs::File::create(env.path(log)).unwrap();
    env.command(args)
        .stdout(Stdio::null())
        .stderr(file)
        .spawn()
        .unwrap()
}

fn export(env: &TestEnv, config: &str) -> Vec<u64> {
    let r = env.run(&["-c", config, "inventory", "export"]).ok();
    r.stdout.lines().map(|l| l.parse().unwrap()).collect()
}

fn servers_in(env: &TestEnv, rel: &str) -> HashSet<u64> {
    env.read(rel)
        .lines()
        .filter_map(|l| {
            l.trim()
                .strip_prefix("server www-")?
                .split(' ')
                .next()?
                .parse()
                .ok()
        })
        .collect()
}

/// The droplet IDs an HAProxy serves, asked on its stats socket (`None` while it is not
/// running yet).
fn served_by(sock: &std::path::Path) -> Option<HashSet<u64>> {
    let answer = try_stats_command(sock, "show servers state www-backend").ok()?;
    Some(
        parse_admin_states(&answer)
            .iter()
            .filter_map(|(n, _)| n.strip_prefix("www-")?.parse().ok())
            .collect(),
    )
}

/// Waits until both nodes' running HAProxy instances serve exactly `want` (read on each
/// one's stats socket) and their installed configs say the same; returns how long it took.
fn converge(env: &TestEnv, want: &HashSet<u64>, timeout: Duration) -> Duration {
    let started = Instant::now();
    loop {
        let a = served_by(&env.path("admin.sock"));
        let b = served_by(&env.path("admin-b.sock"));
        if a.as_ref() == Some(want) && b.as_ref() == Some(want) {
            let took = started.elapsed();
            assert_eq!(&servers_in(env, "etc/haproxy.cfg"), want);
            assert_eq!(&servers_in(env, "etc-b/haproxy-b.cfg"), want);
            return took;
        }
        assert!(
            started.elapsed() < timeout,
            "nodes did not converge on {want:?}: A serves {a:?}, B serves {b:?}\nwatch A: {}\nwatch B: {}",
            env.read_output("watch-a.log"),
            env.read_output("watch-b.log")
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn active_ids(env: &TestEnv) -> HashSet<u64> {
    env.sim
        .droplets()
        .into_iter()
        .filter(|d| d.status == "active")
        .map(|d| d.id)
        .collect()
}

#[test]
fn etcd_inventory_commands_import_and_export() {
    let Some(etcd) = start_single() else { return };
    let env = TestEnv::new();
    env.write_config(&etcd_config(&env, &etcd));
    // A missing inventory key is an error, never an empty inventory.
    let r = env.run(&["print"]).code(1);
    assert!(
        r.stderr.contains("run `doproxy inventory init`"),
        "{}",
        r.stderr
    );
    let r = env.run(&["inventory", "init"]).ok();
    assert!(
        r.stderr
            .contains("created an empty inventory in etcd key /doproxy-test/"),
        "{}",
        r.stderr
    );
    assert_eq!(
        env.run(&["print"]).ok().stdout,
        "The inventory file is empty. Use the create command.\n"
    );
    env.run(&["create", "--count", "2"]).ok();
    let ids = export(&env, "doproxy.yml");
    assert_eq!(ids.len(), 2);
    assert_eq!(
        env.read("inventory"),
        "",
        "the line file is not used with etcd"
    );
    let out = env.run(&["print"]).ok().stdout;
    assert!(
        out.starts_with("0) auto-nginx-") && out.contains(&format!("id: {})\n1) ", ids[0])),
        "{out}"
    );
    // Import a Ruby-era inventory file: appended in order, idempotent.
    let old = env.create_direct("ruby-0", &[]);
    env.write("old-inventory", &format!("{}\n{old}\n", ids[1]));
    env.run(&["inventory", "import", "old-inventory"]).ok();
    env.run(&["inventory", "import", "old-inventory"]).ok();
    assert_eq!(export(&env, "doproxy.yml"), vec![ids[0], ids[1], old]);
    // delete N keeps its meaning.
    env.run(&["delete", "1"]).ok();
    assert_eq!(export(&env, "doproxy.yml"), vec![ids[0], old]);
    // Export back to a file the file backend reads.
    env.run(&["inventory", "export", "back"]).ok();
    assert_eq!(env.read("back"), format!("{}\n{old}\n", ids[0]));
}

#[test]
fn two_nodes_racing_creates_record_every_droplet_once() {
    let Some(etcd) = start_single() else { return };
    let env = TestEnv::new();
    let a = etcd_config(&env, &etcd);
    env.write_config(&a);
    env.run(&["inventory", "init"]).ok();
    env.write(
        "node-b.yml",
        &node_b_config(&env, &a, free_port()).to_yaml(),
    );
    std::fs::create_dir_all(env.path("etc-b")).unwrap();
    let started = Instant::now();
    let children: Vec<Child> = (0..8)
        .map(|i| {
            env.spawn(&[
                "-c",
                if i % 2 == 0 {
                    "doproxy.yml"
                } else {
                    "node-b.yml"
                },
                "create",
            ])
        })
        .collect();
    for c in children {
        env.finish(c, RUN_DEADLINE).ok();
    }
    let elapsed = started.elapsed();
    let ids = export(&env, "doproxy.yml");
    let distinct: HashSet<_> = ids.iter().copied().collect();
    assert_eq!((ids.len(), distinct.len()), (8, 8), "{ids:?}");
    let live: HashSet<u64> = env.sim.droplets().into_iter().map(|d| d.id).collect();
    assert_eq!(
        live, distinct,
        "every droplet recorded exactly once, no orphans"
    );
    let r = env.run(&["print"]).ok();
    assert!(!r.stderr.contains("not in"), "{}", r.stderr);
    eprintln!(
        "FIGURES etcd: 8 creates over 2 nodes in {elapsed:.2?}: 8 entries, 8 distinct, 0 orphans"
    );
}

#[test]
fn three_member_cluster_loses_nothing_and_watchers_converge() {
    if !haproxy_available() {
        return;
    }
    let Some(mut etcd) = start_cluster(3) else {
        return;
    };
    let env = TestEnv::with_haproxy();
    let a = etcd_config(&env, &etcd);
    let frontend_b = free_port();
    env.write_config(&a);
    env.run(&["inventory", "init"]).ok();
    env.write("node-b.yml", &node_b_config(&env, &a, frontend_b).to_yaml());
    std::fs::create_dir_all(env.path("etc-b")).unwrap();
    let mut procs = Procs {
        children: Vec::new(),
        pidfiles: vec![env.path("haproxy-b.pid")],
    };
    procs.children.push(spawn_logged(
        &env,
        &["-c", "doproxy.yml", "reload", "--watch"],
        "watch-a.log",
    ));
    procs.children.push(spawn_logged(
        &env,
        &["-c", "node-b.yml", "reload", "--watch"],
        "watch-b.log",
    ));
    let started = Instant::now();
    while !(env.path("etc/haproxy.cfg").exists() && env.path("etc-b/haproxy-b.cfg").exists()) {
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "the watchers did not install a config"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    converge(&env, &HashSet::new(), Duration::from_secs(15));

    let mut times = Vec::new();
    // 1. A create on node A reaches node B through the watch.
    env.run(&["-c", "doproxy.yml", "create", "--count", "2"])
        .ok();
    times.push(converge(&env, &active_ids(&env), Duration::from_secs(15)));

    // 2. Kill the leader mid-sequence; creates and deletes go on from both nodes. The
    //    leader is found for real: the member every member's status names.
    let victim = etcd.wait_leader(Duration::from_secs(10));
    let victim_pid = etcd.pid(victim).unwrap();
    etcd.kill_member(victim);
    assert!(!signal(victim_pid, "0"), "the leader's process is gone");
    env.run(&["-c", "node-b.yml", "create"]).ok();
    times.push(converge(&env, &active_ids(&env), Duration::from_secs(20)));
    let first = export(&env, "doproxy.yml")[0];
    let r = env.run(&["-c", "node-b.yml", "delete", "0"]).ok();
    assert!(r.stdout.contains(&format!("Success: {first} deleted")));
    times.push(converge(&env, &active_ids(&env), Duration::from_secs(20)));

    // The survivors elected another leader.
    let new_leader = etcd.wait_leader(Duration::from_secs(10));
    assert_ne!(new_leader, victim);

    // 3. The member comes back; more changes.
    etcd.restart_member(victim);
    env.run(&["-c", "doproxy.yml", "create"]).ok();
    times.push(converge(&env, &active_ids(&env), Duration::from_secs(20)));

    // Nothing lost: the inventory is exactly the live droplets, each once.
    let ids = export(&env, "doproxy.yml");
    let distinct: HashSet<u64> = ids.iter().copied().collect();
    assert_eq!(ids.len(), distinct.len());
    let live: HashSet<u64> = env.sim.droplets().into_iter().map(|d| d.id).collect();
    assert_eq!(live, distinct);
    assert_eq!(ids.len(), 3);
    // Both HAProxy instances serve the same three droplets.
    let b = TestEnvFrontend(frontend_b);
    assert_eq!(
        env.wait_distinct_backends(3, Duration::from_secs(10)).len(),
        3
    );
    assert_eq!(b.distinct(3).len(), 3);
    // The watchers stop cleanly on SIGTERM.
    for c in &procs.children {
        assert!(signal(c.id(), "TERM"));
    }
    for mut c in procs.children.drain(..) {
        let status = wait_with_deadline(&mut c, Duration::from_secs(10));
        assert!(status.success(), "watch exit: {status:?}");
    }
    for log in ["watch-a.log", "watch-b.log"] {
        assert!(
            env.read_output(log).contains("watch stopped"),
            "{log}: {}",
            env.read(log)
        );
    }
    let ms: Vec<String> = times
        .iter()
        .map(|t| format!("{:.0}", t.as_secs_f64() * 1000.0))
        .collect();
    eprintln!("FIGURES etcd 3 members, leader killed: 4 changes, watchers converged after {} ms (from the command's return); 0 lost, 0 duplicated", ms.join(" / "));
}

/// Requests through node B's frontend.
struct TestEnvFrontend(u16);

impl TestEnvFrontend {
    fn distinct(&self, want: usize) -> HashSet<String> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let bodies: HashSet<String> = (0..want * 6)
                .filter_map(|_| http_get(std::net::SocketAddr::from(([127, 0, 0, 1], self.0)), "/"))
                .filter(|(s, _)| *s == 200)
                .map(|(_, b)| b)
                .collect();
            if bodies.len() == want || Instant::now() >= deadline {
                return bodies;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// A single etcd started by the test with its own TLS settings; killed by PID on drop.
struct TlsEtcd(Child);

impl Drop for TlsEtcd {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = try_wait_until(&mut self.0, Instant::now() + Duration::from_secs(10));
    }
}

fn sh(dir: &std::path::Path, script: &str) {
    let out = run_with_deadline(
        Command::new("sh").arg("-c").arg(script).current_dir(dir),
        TOOL_DEADLINE,
    );
    assert!(
        out.status.success(),
        "{script}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn etcd_over_mutual_tls_with_a_private_ca() {
    if !crate::support::etcd::etcd_available() {
        return;
    }
    let env = TestEnv::new();
    let pki = env.path("pki");
    std::fs::create_dir_all(&pki).unwrap();
    // A private CA, a server certificate for 127.0.0.1 and a client certificate.
    sh(
        &pki,
        "set -e
        openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.pem -days 1 -subj /CN=doproxy-test-ca 2>/dev/null
        openssl req -newkey rsa:2048 -nodes -keyout server.key -out server.csr -subj /CN=127.0.0.1 2>/dev/null
        printf 'subjectAltName=IP:127.0.0.1\\nextendedKeyUsage=serverAuth,clientAuth\\n' > server.ext
        openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out server.pem -days 1 -extfile server.ext 2>/dev/null
        openssl req -newkey rsa:2048 -nodes -keyout client.key -out client.csr -subj /CN=doproxy 2>/dev/null
        printf 'extendedKeyUsage=clientAuth\\n' > client.ext
        openssl x509 -req -in client.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out client.pem -days 1 -extfile client.ext 2>/dev/null",
    );
    let (client_port, peer_port) = (free_port(), free_port());
    let log = std::fs::File::create(env.path("etcd-tls.log")).unwrap();
    let _etcd = TlsEtcd(
        Command::new("etcd")
            .args(["--name", "tls0", "--data-dir"])
            .arg(env.path("etcd-tls-data"))
            .args([
                "--listen-client-urls",
                &format!("https://127.0.0.1:{client_port}"),
            ])
            .args([
                "--advertise-client-urls",
                &format!("https://127.0.0.1:{client_port}"),
            ])
            .args([
                "--listen-peer-urls",
                &format!("http://127.0.0.1:{peer_port}"),
            ])
            .args([
                "--initial-advertise-peer-urls",
                &format!("http://127.0.0.1:{peer_port}"),
            ])
            .args([
                "--initial-cluster",
                &format!("tls0=http://127.0.0.1:{peer_port}"),
            ])
            .arg("--cert-file")
            .arg(pki.join("server.pem"))
            .arg("--key-file")
            .arg(pki.join("server.key"))
            .arg("--client-cert-auth")
            .arg("--trusted-ca-file")
            .arg(pki.join("ca.pem"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start etcd"),
    );
    // The inventory in etcd over TLS, with the given `ca_file`, `cert_file` and `key_file`.
    let with_tls = |ca: Option<&str>, cert: Option<&str>, key: Option<&str>| {
        env.configure(|c| {
            c.inventory_file = None;
            c.inventory = InventoryOptions {
                backend: Some("etcd".into()),
                endpoints: Some(vec![format!("https://127.0.0.1:{client_port}")]),
                prefix: Some("/tls-test/".into()),
                timeout: Some("1s".into()),
                ca_file: ca.map(String::from),
                cert_file: cert.map(String::from),
                key_file: key.map(String::from),
                ..InventoryOptions::default()
            };
        })
    };
    with_tls(
        Some("pki/ca.pem"),
        Some("pki/client.pem"),
        Some("pki/client.key"),
    );
    let started = Instant::now();
    while env.run(&["inventory", "init"]).code != 0 {
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "etcd (TLS) did not come up: {}",
            env.read("etcd-tls.log")
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let r = env.run(&["create"]).ok();
    let id = r.stdout.split_whitespace().nth(1).unwrap().to_string();
    assert_eq!(env.run(&["inventory", "export"]).ok().stdout.trim(), id);

    // Without the client certificate, etcd refuses; without the CA, doproxy refuses etcd.
    with_tls(Some("pki/ca.pem"), None, None);
    let r = env.run(&["print"]).code(1);
    assert!(r.stderr.contains("etcd"), "{}", r.stderr);
    with_tls(None, Some("pki/client.pem"), Some("pki/client.key"));
    let r = env.run(&["print"]).code(1);
    assert!(r.stderr.contains("etcd"), "{}", r.stderr);
    // A key file that is not a key: a configuration error naming the field, never the key.
    env.write("pki/bad.key", "not a key\n");
    with_tls(None, Some("pki/client.pem"), Some("pki/bad.key"));
    let r = env.run(&["print"]).code(2);
    assert!(
        r.stderr.contains("client certificate and key"),
        "{}",
        r.stderr
    );
}

/// The server names the HAProxy behind the stats socket `sock` serves (empty when it does
/// not answer).
fn served_names(sock: &std::path::Path) -> Vec<String> {
    served_if_answered(sock).unwrap_or_default()
}

/// Like [`served_names`], `None` when the socket does not answer (mid-reload).
fn served_if_answered(sock: &std::path::Path) -> Option<Vec<String>> {
    use std::io::{Read, Write};
    let mut s = std::os::unix::net::UnixStream::connect(sock).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    s.write_all(b"show servers state www-backend\n").ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    if !out.contains("www-backend") && !out.starts_with('1') {
        return None;
    }
    let mut names: Vec<String> = out
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split_whitespace().nth(3).map(String::from))
        .collect();
    names.sort();
    Some(names)
}

/// Two nodes, each with its HAProxy and its `reload --watch`, serving `n` droplets.
fn two_watching_nodes(n: usize) -> Option<(TestEnv, EtcdCluster, Procs)> {
    two_watching_nodes_with(n, "100ms")
}

/// [`two_watching_nodes`] with node A's watcher waiting `debounce_a` for changes to settle
/// before it reloads (node B's waits 100 ms).
fn two_watching_nodes_with(n: usize, debounce_a: &str) -> Option<(TestEnv, EtcdCluster, Procs)> {
    if !haproxy_available() {
        return None;
    }
    let etcd = start_single()?;
    let env = TestEnv::with_haproxy();
    let mut a = etcd_config(&env, &etcd);
    // Deletes (run as node B) wait up to this for every node's acknowledgement.
    a.reload_verify_timeout = Some("15s".into());
    let b = node_b_config(&env, &a, free_port());
    a.watch_debounce = Some(debounce_a.into());
    env.write_config(&a);
    env.run(&["inventory", "init"]).ok();
    env.write("node-b.yml", &b.to_yaml());
    std::fs::create_dir_all(env.path("etc-b")).unwrap();
    let mut procs = Procs {
        children: Vec::new(),
        pidfiles: vec![env.path("haproxy-b.pid")],
    };
    procs.children.push(spawn_logged(
        &env,
        &["-c", "doproxy.yml", "reload", "--watch"],
        "watch-a.log",
    ));
    procs.children.push(spawn_logged(
        &env,
        &["-c", "node-b.yml", "reload", "--watch"],
        "watch-b.log",
    ));
    env.run(&["-c", "doproxy.yml", "create", "--count", &n.to_string()])
        .ok();
    let deadline = Instant::now() + Duration::from_secs(20);
    while served_names(&env.path("admin.sock")).len() != n
        || served_names(&env.path("admin-b.sock")).len() != n
    {
        assert!(
            Instant::now() < deadline,
            "the nodes did not serve {n}: A {:?} B {:?}\n{}\n{}",
            served_names(&env.path("admin.sock")),
            served_names(&env.path("admin-b.sock")),
            env.read("watch-a.log"),
            env.read("watch-b.log")
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    Some((env, etcd, procs))
}

#[test]
fn a_deleted_etcd_key_empties_no_load_balancer() {
    let Some((env, etcd, _procs)) = two_watching_nodes(2) else {
        return;
    };
    let before_a = served_names(&env.path("admin.sock"));
    let before_b = served_names(&env.path("admin-b.sock"));
    // Someone deletes the inventory key under both watchers.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let client = doproxy::store::etcd::Client::new(doproxy::store::etcd::Options {
            endpoints: etcd.endpoints(),
            timeout: Duration::from_secs(2),
            username: None,
            password: None,
            ca_pem: None,
            identity_pem: None,
        })
        .unwrap();
        client.delete("/doproxy-test/inventory").await.unwrap();
    });
    // Both watchers notice within their debounce (100 ms) and a re-sync; neither installs.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !(env.read("watch-a.log").contains("does not exist")
        && env.read("watch-b.log").contains("does not exist"))
    {
        assert!(
            Instant::now() < deadline,
            "the watchers did not see the missing key\n{}\n{}",
            env.read("watch-a.log"),
            env.read("watch-b.log")
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(served_names(&env.path("admin.sock")), before_a);
    assert_eq!(served_names(&env.path("admin-b.sock")), before_b);
}

#[test]
fn no_node_routes_to_a_droplet_when_it_is_destroyed() {
    // Node A's watcher is slow to follow (it lets changes settle for 1.5 s): only the
    // delete's waiting for its acknowledgement keeps the DELETE from coming first.
    let Some((env, _etcd, _procs)) = two_watching_nodes_with(3, "1500ms") else {
        return;
    };
    let victim = export(&env, "doproxy.yml")[1];
    let server = format!("www-{victim}");
    // The simulator's clock against this one: a request's arrival (`at_ms`) is known to
    // be no later than `clock.0 + (at_ms - clock.1)`.
    let _ = http_get(env.sim.addr(), "/v2/account/clock");
    let clock = (
        Instant::now(),
        env.sim
            .requests()
            .iter()
            .rev()
            .find(|q| q.path == "/v2/account/clock")
            .expect("the clock request was recorded")
            .at_ms,
    );
    // Sample both nodes' stats sockets until the droplet is gone from the simulator.
    let (sock_a, sock_b) = (env.path("admin.sock"), env.path("admin-b.sock"));
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sampler = {
        let stop = stop.clone();
        let server = server.clone();
        std::thread::spawn(move || {
            let mut samples: Vec<(Instant, bool, bool)> = Vec::new();
            let deadline = Instant::now() + Duration::from_secs(30);
            while !stop.load(std::sync::atomic::Ordering::SeqCst) && Instant::now() < deadline {
                // A socket that does not answer (mid-reload) says nothing: no sample.
                if let (Some(a), Some(b)) =
                    (served_if_answered(&sock_a), served_if_answered(&sock_b))
                {
                    samples.push((Instant::now(), a.contains(&server), b.contains(&server)));
                }
                std::thread::sleep(Duration::from_millis(5));
            }
            samples
        })
    };
    let t = Instant::now();
    let r = env
        .run(&["-c", "node-b.yml", "delete", "--id", &victim.to_string()])
        .ok();
    let took = t.elapsed();
    assert!(r.stdout.contains(&format!("Success: {victim} deleted")));
    assert!(!r.stderr.contains("did not confirm"), "{}", r.stderr);
    // It went on once both nodes had acknowledged (node A after its 1.5 s), not at the
    // acknowledgement deadline (`reload_verify_timeout`, 15 s).
    eprintln!("cluster: the delete took {took:?}");
    assert!(took < Duration::from_secs(10), "the delete took {took:?}");
    // Keep sampling a little: once gone from both nodes, the server must stay gone.
    std::thread::sleep(Duration::from_millis(500));
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let samples = sampler.join().unwrap();
    // The DELETE reached the API only after both nodes had stopped routing to it: every
    // sample taken after the first one showing neither node routing to it shows the same.
    let first_clear = samples
        .iter()
        .position(|(_, a, b)| !a && !b)
        .expect("the server never left both nodes");
    assert!(
        samples[first_clear..].iter().all(|(_, a, b)| !a && !b),
        "a node routed to {server} again after dropping it"
    );
    assert!(first_clear > 0, "the sampler never saw the server served");
    let deletes: Vec<_> = env
        .sim
        .requests()
        .into_iter()
        .filter(|q| q.method == "DELETE")
        .collect();
    assert_eq!(deletes.len(), 1, "{deletes:?}");
    assert!(!env.sim.droplets().iter().any(|d| d.id == victim));
    // And it reached the API only once neither node routed to the droplet (each node
    // acknowledged first): no sample taken after the DELETE shows it served.
    let deleted = clock.0 + Duration::from_millis(deletes[0].at_ms.saturating_sub(clock.1));
    let late: Vec<_> = samples
        .iter()
        .filter(|(t, a, b)| *t > deleted && (*a || *b))
        .map(|(t, a, b)| (t.duration_since(deleted), a, b))
        .collect();
    assert!(
        late.is_empty(),
        "{server} was still served after its DELETE: {late:?}"
    );
}

#[test]
fn etcd_passwords_never_appear_in_any_output() {
    const PASSWORD: &str = "etcd-pw-81b2c3";
    const WRONG: &str = "etcd-wrong-pw-7d6e";
    let Some(etcd) = crate::support::etcd::EtcdCluster::start_with(1, &["--auth-token", "simple"])
    else {
        return;
    };
    let env = TestEnv::new();
    let ep = etcd.endpoint(0);
    for args in [
        vec!["user".to_string(), "add".into(), format!("root:{PASSWORD}")],
        vec!["auth".into(), "enable".into()],
    ] {
        let mut cmd = Command::new("etcdctl");
        cmd.env("ETCDCTL_API", "3")
            .arg(format!("--endpoints={ep}"))
            .args(&args);
        let out = run_with_deadline(&mut cmd, TOOL_DEADLINE);
        assert!(
            out.status.success(),
            "etcdctl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let with_password = |password: &str| {
        let mut c = etcd_config(&env, &etcd);
        c.inventory.username = Some("root".into());
        c.inventory.password = Some(password.into());
        env.write_config(&c);
    };
    with_password(PASSWORD);
    env.run(&["-v", "inventory", "init"]).ok();
    // Every run's output is checked for both passwords (and the token) by the harness.
    env.run(&["-v", "create"]).ok();
    env.run(&["-v", "print"]).ok();
    env.run(&["-o", "json", "reload", "--force"]).ok();
    assert_eq!(export(&env, "doproxy.yml").len(), 1);
    with_password(WRONG);
    assert!(
        env.secrets().iter().any(|s| s == PASSWORD) && env.secrets().iter().any(|s| s == WRONG)
    );
    let r = env.run(&["-v", "print"]).code(1);
    assert!(r.stderr.contains("etcd"), "{}", r.stderr);
    env.run(&["-o", "json", "delete", "0"]).code(1);
    assert_eq!(
        env.sim.droplets().len(),
        1,
        "a refused store changes nothing"
    );
}

#[test]
fn the_etcd_lock_is_released_at_once_not_left_to_lapse() {
    let Some(etcd) = start_single() else { return };
    let env = TestEnv::new();
    env.write_config(&etcd_config(&env, &etcd));
    env.run(&["inventory", "init"]).ok();
    env.run(&["reload"]).ok();
    // Each command takes the lock (lease TTL 3 s here) and gives it back as it ends: the
    // next one does not wait for the lease to run out.
    for _ in 0..3 {
        let started = Instant::now();
        env.run(&["reload", "--force"]).ok();
        let took = started.elapsed();
        assert!(
            took < Duration::from_millis(1500),
            "a reload took {took:?}: it waited for the previous run's lock to lapse"
        );
    }
}
