//! The tutorial's walkthrough end to end: three creates, traffic through a real HAProxy
//! reaching three droplets, `print`, `delete 2`, two droplets left.

use crate::support::*;
use std::time::Duration;

#[test]
fn tutorial_walkthrough_on_real_haproxy() {
    if !haproxy_available() {
        return;
    }
    let env = TestEnv::with_haproxy();
    env.run(&["print"]).ok();
    assert_eq!(
        env.run(&["print"]).stdout,
        "The inventory file is empty. Use the create command.\n"
    );

    let mut ids = Vec::new();
    for _ in 0..3 {
        let r = env.run(&["create"]).ok();
        let line = r.stdout.trim();
        let id: u64 = line
            .strip_prefix("Success: ")
            .and_then(|s| s.strip_suffix(" created and added to backend."))
            .unwrap_or_else(|| panic!("unexpected create output {line:?}"))
            .parse()
            .unwrap();
        ids.push(id);
    }
    assert_eq!(env.inventory(), ids);
    assert!(
        env.haproxy_pid().is_some(),
        "the first reload started HAProxy"
    );

    // Requests through HAProxy reach three distinct droplets, each answering its page.
    let pages = env.wait_distinct_backends(3, Duration::from_secs(10));
    assert_eq!(pages.len(), 3, "{pages:?}");
    for id in &ids {
        assert!(
            pages
                .iter()
                .any(|p| p.contains(&format!(", ID: {id}, IP Address: 127."))),
            "{id} not reached: {pages:?}"
        );
    }

    // print: three lines in the original format, numbered from 0, in creation order.
    let out = env.run(&["print"]).ok().stdout;
    let lines: Vec<_> = out
        .lines()
        .map(|l| parse_print_line(l).unwrap_or_else(|| panic!("bad line {l:?}")))
        .collect();
    assert_eq!(lines.len(), 3, "{out}");
    let droplets = env.sim.droplets();
    for (n, (num, name, ip, status, id)) in lines.iter().enumerate() {
        assert_eq!(*num, n);
        assert_eq!(*id, ids[n]);
        assert_eq!(status, "active");
        let d = droplets.iter().find(|d| d.id == *id).unwrap();
        assert_eq!(name, &d.name);
        assert_eq!(Some(ip.clone()), d.private_ipv4);
        assert!(name.starts_with("auto-nginx-"));
    }
    let names: std::collections::HashSet<_> = lines.iter().map(|l| l.1.clone()).collect();
    assert_eq!(names.len(), 3, "hostnames are unique");

    // delete 2 → only two droplets answer; inventory and config have two entries.
    let r = env.run(&["delete", "2"]).ok();
    assert_eq!(
        r.stdout,
        format!("Success: {} deleted and removed from backend.\n", ids[2])
    );
    assert_eq!(env.inventory(), ids[..2].to_vec());
    let servers = env.server_lines();
    assert_eq!(servers.len(), 2, "{servers:?}");
    for id in &ids[..2] {
        assert!(servers
            .iter()
            .any(|l| l.starts_with(&format!("server www-{id} "))));
    }
    assert!(
        env.sim.droplets().iter().all(|d| d.id != ids[2]),
        "droplet destroyed"
    );
    let (bodies, failed) = env.requests(20);
    assert_eq!(failed, 0);
    assert!(bodies
        .iter()
        .all(|b| !b.contains(&format!("ID: {},", ids[2]))));
    let mut distinct = bodies.clone();
    distinct.sort();
    distinct.dedup();
    assert_eq!(distinct.len(), 2, "{distinct:?}");
    let (ok, text) = env.haproxy_check(&env.path("etc/haproxy.cfg"));
    assert!(ok, "{text}");
}
