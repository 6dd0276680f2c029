//! Integration tests for do-sim. Every test starts its own simulator with
//! millisecond timings and talks to it with a tiny HTTP/1.1 client over
//! `std::net::TcpStream` (all reads and writes have timeouts).

// Test code: a failed unwrap is a failed test, with its message.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Read};
use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use do_sim::{Faults, MetadataIdentity, Sim, SimOptions};
use serde::Deserialize;
use serde_json::{json, Value};

mod common;

use common::*;

// ------------------------------------------------------------------ create

#[test]
fn create_single_returns_new_droplet_and_action_link() {
    let sim = Sim::start(SimOptions {
        active_after: Duration::from_secs(30),
        ..opts()
    })
    .unwrap();
    let mut body = create_body("web-1");
    body["user_data"] = json!("#cloud-config\n");
    body["ssh_keys"] = json!([289794, "3b:16:e4"]);
    body["vpc_uuid"] = json!("760e09ef-dc84-11e8-981e-3cfdfeaae000");
    let r = call(&sim, "POST", "/v2/droplets", Some(&body));
    assert_eq!(r.status, 202, "{}", r.text());
    assert_common_headers(&r, 5000);
    let v = r.json();
    let d = &v["droplet"];
    assert_eq!(d["name"], "web-1");
    assert_eq!(d["status"], "new");
    assert_eq!(d["locked"], false, "locked is the administrative lock only");
    assert_eq!(d["networks"], json!({"v4": [], "v6": []}));
    assert_eq!(d["tags"], json!(["doproxy"]));
    assert_eq!(d["size_slug"], "s-1vcpu-1gb");
    assert_eq!(d["region"]["slug"], "nyc3");
    assert_eq!(d["image"]["slug"], "ubuntu-24-04-x64");
    assert_eq!(d["vpc_uuid"], "760e09ef-dc84-11e8-981e-3cfdfeaae000");
    assert_eq!(d["kernel"], Value::Null);
    let created = d["created_at"].as_str().unwrap();
    assert_eq!(created.len(), 20, "{created}");
    assert!(created.ends_with('Z') && &created[10..11] == "T");
    let id = d["id"].as_u64().unwrap();
    let actions = v["links"]["actions"].as_array().unwrap();
    assert_eq!(actions.len(), 1);
    let aid = actions[0]["id"].as_u64().unwrap();
    assert_eq!(actions[0]["rel"], "create");
    assert_eq!(
        actions[0]["href"],
        format!("{}/v2/actions/{aid}", sim.url())
    );

    // Stored as asked.
    let list = sim.droplets();
    assert_eq!(list.len(), 1);
    assert_eq!(list[0].id, id);
    assert_eq!(list[0].status, "new");
    assert_eq!(list[0].user_data.as_deref(), Some("#cloud-config\n"));
    assert_eq!(list[0].private_ipv4, None);
    let detail = raw(
        sim.addr(),
        "GET",
        &format!("/_sim/droplets/{id}"),
        &[],
        None,
    )
    .unwrap()
    .json();
    assert_eq!(detail["ssh_keys"], json!([289794, "3b:16:e4"]));

    // GET shows the same droplet; the action is in progress.
    let g = get(&sim, &format!("/v2/droplets/{id}"));
    assert_eq!(g.status, 200);
    assert_eq!(g.json()["droplet"]["status"], "new");
    let a = get(&sim, &format!("/v2/actions/{aid}")).json();
    assert_eq!(a["action"]["status"], "in-progress");
    assert_eq!(a["action"]["completed_at"], Value::Null);
    assert_eq!(a["action"]["resource_id"], id);
    assert_eq!(a["action"]["resource_type"], "droplet");
    assert_eq!(a["action"]["type"], "create");
}

#[test]
fn create_multiple_returns_one_action_per_droplet() {
    let sim = Sim::start(opts()).unwrap();
    let body = json!({ "names": ["a-1", "a-2", "a-3"], "size": "s-1vcpu-1gb", "image": 12345, "tags": ["t1", "env:prod"] });
    let r = call(&sim, "POST", "/v2/droplets", Some(&body));
    assert_eq!(r.status, 202, "{}", r.text());
    let v = r.json();
    assert!(v.get("droplet").is_none());
    let ds = v["droplets"].as_array().unwrap();
    let names: Vec<&str> = ds.iter().map(|d| d["name"].as_str().unwrap()).collect();
    assert_eq!(names, vec!["a-1", "a-2", "a-3"]);
    assert!(ds
        .iter()
        .all(|d| d["status"] == "new" && d["image"]["id"] == 12345));
    let ids: BTreeSet<u64> = ds.iter().map(|d| d["id"].as_u64().unwrap()).collect();
    assert_eq!(ids.len(), 3);
    let actions = v["links"]["actions"].as_array().unwrap();
    assert_eq!(actions.len(), 3);
    let aids: BTreeSet<u64> = actions.iter().map(|a| a["id"].as_u64().unwrap()).collect();
    assert_eq!(aids.len(), 3);
    for a in actions {
        let resource = get(&sim, &format!("/v2/actions/{}", a["id"])).json()["action"]
            ["resource_id"]
            .as_u64()
            .unwrap();
        assert!(ids.contains(&resource));
    }
    assert_eq!(sim.droplets().len(), 3);
}

#[test]
fn create_validation_errors_are_422_with_request_id() {
    let sim = Sim::start(SimOptions {
        droplet_limit: 3,
        ..opts()
    })
    .unwrap();
    let post = |b: &Value| call(&sim, "POST", "/v2/droplets", Some(b));

    let eleven: Vec<String> = (0..11).map(|i| format!("n{i}")).collect();
    let mut b = create_body("x");
    b.as_object_mut().unwrap().remove("name");
    b["names"] = json!(eleven);
    assert_422(&post(&b));

    for bad in ["bad_name", "ends-with-dash-", "", "has space"] {
        let msg = assert_422(&post(&create_body(bad)));
        assert_eq!(
            msg,
            "Only valid hostname characters are allowed. (a-z, A-Z, 0-9, . and -)"
        );
    }
    assert_422(&post(&create_body(&"a".repeat(256))));

    let mut b = create_body("x");
    b.as_object_mut().unwrap().remove("size");
    assert_422(&post(&b));
    let mut b = create_body("x");
    b.as_object_mut().unwrap().remove("image");
    assert_422(&post(&b));
    let mut b = create_body("x");
    b["tags"] = json!(["ok", "not ok"]);
    assert_422(&post(&b));
    let mut b = create_body("x");
    b.as_object_mut().unwrap().remove("name");
    assert_422(&post(&b));
    let mut b = create_body("x");
    b["names"] = json!(["y"]);
    assert_422(&post(&b));

    let mut b = create_body("x");
    b["user_data"] = json!("u".repeat(65_537));
    assert_422(&post(&b));

    let not_json = raw(
        sim.addr(),
        "POST",
        "/v2/droplets",
        &[("Authorization", "Bearer sim-token")],
        Some(b"{not json"),
    )
    .unwrap();
    assert_422(&not_json);
    assert!(sim.droplets().is_empty(), "no 422 may create anything");

    // Exactly 64 KiB of user_data is accepted.
    let mut b = create_body("ud");
    b["user_data"] = json!("u".repeat(65_536));
    assert_eq!(post(&b).status, 202);

    // Droplet limit 3: one exists, two more fit, a third does not.
    let mut b = create_body("x");
    b.as_object_mut().unwrap().remove("name");
    b["names"] = json!(["l-1", "l-2", "l-3"]);
    let msg = assert_422(&post(&b));
    assert_eq!(
        msg,
        "creating this/these droplet(s) will exceed your droplet limit"
    );
    b["names"] = json!(["l-1", "l-2"]);
    assert_eq!(post(&b).status, 202);
    let msg = assert_422(&post(&create_body("l-4")));
    assert_eq!(
        msg,
        "creating this/these droplet(s) will exceed your droplet limit"
    );
    assert_eq!(sim.droplets().len(), 3);
    // Deleting one frees a slot.
    let id = sim.droplets()[0].id;
    assert_eq!(
        call(&sim, "DELETE", &format!("/v2/droplets/{id}"), None).status,
        204
    );
    assert_eq!(post(&create_body("l-4")).status, 202);
}

// ------------------------------------------------------------------ lifecycle

#[test]
fn lifecycle_new_then_active_with_loopback_addresses() {
    let active_after = Duration::from_millis(800);
    let sim = Sim::start(SimOptions {
        active_after,
        ..opts()
    })
    .unwrap();
    let before = Instant::now();
    let r = call(&sim, "POST", "/v2/droplets", Some(&create_body("life-1")));
    let id = r.json()["droplet"]["id"].as_u64().unwrap();
    let d = get(&sim, &format!("/v2/droplets/{id}")).json()["droplet"].clone();
    assert_eq!(d["status"], "new");
    assert_eq!(d["locked"], false);
    assert!(ipv4s(&d).is_empty());

    let mut active = Value::Null;
    assert!(wait_until(Duration::from_secs(10), || {
        let d = get(&sim, &format!("/v2/droplets/{id}")).json()["droplet"].clone();
        if d["status"] == "active" {
            active = d;
            true
        } else {
            false
        }
    }));
    assert!(
        before.elapsed() >= active_after,
        "active after {:?}, before active_after",
        before.elapsed()
    );
    assert_eq!(active["locked"], false);
    let nets = ipv4s(&active);
    assert_eq!(nets.len(), 2);
    assert_eq!(nets[0].0, "private", "private entry comes first");
    assert_eq!(nets[1].0, "public");
    let private: Ipv4Addr = nets[0].1.parse().unwrap();
    let public: Ipv4Addr = nets[1].1.parse().unwrap();
    for ip in [private, public] {
        assert!(ip.is_loopback(), "{ip}");
        assert!(ip.octets()[3] != 0 && ip.octets()[3] != 255, "{ip}");
    }
    assert_eq!(private.octets()[1], 128);
    assert_eq!(public.octets()[1], 64);
    let v4 = active["networks"]["v4"].as_array().unwrap();
    assert_eq!(v4[0]["netmask"], "255.255.0.0");
    assert_eq!(v4[0]["gateway"], "nil");
    assert_eq!(v4[1]["netmask"], "255.255.255.0");
    let gw: Ipv4Addr = v4[1]["gateway"].as_str().unwrap().parse().unwrap();
    assert!(gw.is_loopback());

    let s = &sim.droplets()[0];
    assert_eq!(s.status, "active");
    assert_eq!(s.private_ipv4.as_deref(), Some(nets[0].1.as_str()));
    assert_eq!(s.public_ipv4.as_deref(), Some(nets[1].1.as_str()));

    // The create action is completed now.
    let aid = r.json()["links"]["actions"][0]["id"].as_u64().unwrap();
    let a = get(&sim, &format!("/v2/actions/{aid}")).json();
    assert_eq!(a["action"]["status"], "completed");
    assert!(a["action"]["completed_at"].is_string());
}

#[test]
fn addresses_are_distinct_across_many_droplets() {
    let sim = Sim::start(SimOptions {
        active_after: Duration::ZERO,
        ..opts()
    })
    .unwrap();
    for i in 0..300 {
        sim.create_droplet_direct(&format!("d{i}"), &[]);
    }
    let ds = sim.droplets();
    let mut seen = BTreeSet::new();
    for d in &ds {
        assert_eq!(d.status, "active");
        for ip in [
            d.private_ipv4.as_ref().unwrap(),
            d.public_ipv4.as_ref().unwrap(),
        ] {
            let a: Ipv4Addr = ip.parse().unwrap();
            assert!(
                a.is_loopback() && a.octets()[3] != 0 && a.octets()[3] != 255,
                "{a}"
            );
            assert!(seen.insert(a), "duplicate {a}");
        }
    }
    assert_eq!(seen.len(), 600);
}

#[test]
fn not_found_after_create_window() {
    let sim = Sim::start(SimOptions {
        not_found_after_create: Duration::from_millis(400),
        ..opts()
    })
    .unwrap();
    let start = Instant::now();
    let id = call(&sim, "POST", "/v2/droplets", Some(&create_body("ghost"))).json()["droplet"]
        ["id"]
        .as_u64()
        .unwrap();
    let g = get(&sim, &format!("/v2/droplets/{id}"));
    let l = get(&sim, "/v2/droplets");
    if start.elapsed() < Duration::from_millis(350) {
        assert_error(&g, 404, "not_found");
        assert_eq!(l.json()["meta"]["total"], 0);
    }
    // It exists for the simulator from the start.
    assert_eq!(sim.droplets().len(), 1);
    assert!(wait_until(Duration::from_secs(10), || get(
        &sim,
        &format!("/v2/droplets/{id}")
    )
    .status
        == 200));
    assert!(start.elapsed() >= Duration::from_millis(400));
    assert_eq!(get(&sim, "/v2/droplets").json()["meta"]["total"], 1);
}

#[test]
fn deleted_droplet_lingers_then_404() {
    let sim = Sim::start(SimOptions {
        delete_linger: Duration::from_millis(400),
        active_after: Duration::ZERO,
        ..opts()
    })
    .unwrap();
    let id = sim.create_droplet_direct("linger", &["x"]);
    let start = Instant::now();
    let r = call(&sim, "DELETE", &format!("/v2/droplets/{id}"), None);
    assert_eq!(r.status, 204);
    assert!(r.body.is_empty());
    assert_common_headers(&r, 5000);
    assert!(
        sim.droplets().is_empty(),
        "droplets() lists live droplets only"
    );
    let g = get(&sim, &format!("/v2/droplets/{id}"));
    if start.elapsed() < Duration::from_millis(350) {
        assert_eq!(g.status, 200);
        assert_eq!(g.json()["droplet"]["status"], "active", "status unchanged");
        assert_eq!(get(&sim, "/v2/droplets").json()["meta"]["total"], 1);
        // A second delete of a deleted droplet is a 404.
        assert_eq!(
            call(&sim, "DELETE", &format!("/v2/droplets/{id}"), None).status,
            404
        );
    }
    assert!(wait_until(Duration::from_secs(10), || get(
        &sim,
        &format!("/v2/droplets/{id}")
    )
    .status
        == 404));
    assert!(start.elapsed() >= Duration::from_millis(400));
    assert_eq!(get(&sim, "/v2/droplets").json()["meta"]["total"], 0);
}

#[test]
fn delete_without_linger_and_by_tag() {
    let sim = Sim::start(opts()).unwrap();
    let a = sim.create_droplet_direct("a", &["keep"]);
    let b = sim.create_droplet_direct("b", &["drop", "x"]);
    let c = sim.create_droplet_direct("c", &["drop"]);
    assert_eq!(
        call(&sim, "DELETE", &format!("/v2/droplets/{a}"), None).status,
        204
    );
    assert_error(&get(&sim, &format!("/v2/droplets/{a}")), 404, "not_found");
    assert_error(
        &call(&sim, "DELETE", &format!("/v2/droplets/{a}"), None),
        404,
        "not_found",
    );
    assert_error(
        &call(&sim, "DELETE", "/v2/droplets/99", None),
        404,
        "not_found",
    );

    assert_422(&call(&sim, "DELETE", "/v2/droplets", None));
    let r = call(&sim, "DELETE", "/v2/droplets?tag_name=drop", None);
    assert_eq!(r.status, 204);
    assert!(r.body.is_empty());
    assert!(sim.droplets().is_empty());
    for id in [b, c] {
        assert_eq!(get(&sim, &format!("/v2/droplets/{id}")).status, 404);
    }
    // A tag without droplets is still a 204.
    assert_eq!(
        call(&sim, "DELETE", "/v2/droplets?tag_name=none", None).status,
        204
    );
    assert!(sim.delete_droplet_direct(sim.create_droplet_direct("d", &[])));
    assert!(!sim.delete_droplet_direct(12));
}

#[test]
fn create_failure_rate_one_errors_the_action_and_removes_the_droplet() {
    let sim = Sim::start(SimOptions {
        create_failure_rate: 1.0,
        active_after: Duration::from_millis(300),
        ..opts()
    })
    .unwrap();
    let r = call(&sim, "POST", "/v2/droplets", Some(&create_body("doomed")));
    assert_eq!(r.status, 202);
    let v = r.json();
    let id = v["droplet"]["id"].as_u64().unwrap();
    let aid = v["links"]["actions"][0]["id"].as_u64().unwrap();
    let a = get(&sim, &format!("/v2/actions/{aid}")).json();
    assert_eq!(a["action"]["status"], "in-progress");
    assert!(wait_until(Duration::from_secs(10), || get(
        &sim,
        &format!("/v2/actions/{aid}")
    )
    .json()["action"]["status"]
        == "errored"));
    assert_error(&get(&sim, &format!("/v2/droplets/{id}")), 404, "not_found");
    assert_eq!(get(&sim, "/v2/droplets").json()["meta"]["total"], 0);
    assert!(sim.droplets().is_empty());
    // Direct creates never fail.
    let d = sim.create_droplet_direct("direct", &[]);
    assert!(wait_until(Duration::from_secs(10), || sim
        .droplets()
        .iter()
        .any(|x| x.id == d && x.status == "active")));
}

// ------------------------------------------------------------------ list

#[test]
fn pagination_over_450_droplets() {
    let sim = Sim::start(SimOptions {
        active_after: Duration::ZERO,
        ..opts()
    })
    .unwrap();
    for i in 0..450 {
        sim.create_droplet_direct(&format!("p{i}"), &["page"]);
    }
    let base = sim.url();
    let mut seen = Vec::new();
    let mut target = "/v2/droplets?per_page=200".to_string();
    let mut pages = Vec::new();
    loop {
        let r = get(&sim, &target);
        assert_eq!(r.status, 200);
        let v = r.json();
        assert_eq!(v["meta"]["total"], 450);
        for d in v["droplets"].as_array().unwrap() {
            seen.push(d["id"].as_u64().unwrap());
        }
        pages.push(v["links"]["pages"].clone());
        match v["links"]["pages"]["next"].as_str() {
            Some(next) => target = target_of(&sim, next).to_string(),
            None => break,
        }
        assert!(pages.len() < 10);
    }
    assert_eq!(pages.len(), 3);
    let url = |p: u32| format!("{base}/v2/droplets?page={p}&per_page=200");
    assert_eq!(pages[0], json!({"next": url(2), "last": url(3)}));
    assert_eq!(
        pages[1],
        json!({"first": url(1), "prev": url(1), "next": url(3), "last": url(3)})
    );
    assert_eq!(pages[2], json!({"first": url(1), "prev": url(2)}));
    assert_eq!(seen.len(), 450);
    let sorted: Vec<u64> = {
        let mut s = seen.clone();
        s.sort();
        s
    };
    assert_eq!(seen, sorted, "sorted by id ascending");
    assert_eq!(
        seen.iter().collect::<BTreeSet<_>>().len(),
        450,
        "each id once"
    );

    // Page sizes 200, 200, 50; beyond the end: empty with the same total.
    let r = get(&sim, "/v2/droplets?page=3&per_page=200").json();
    assert_eq!(r["droplets"].as_array().unwrap().len(), 50);
    let r = get(&sim, "/v2/droplets?page=4&per_page=200").json();
    assert_eq!(r["droplets"].as_array().unwrap().len(), 0);
    assert_eq!(r["meta"]["total"], 450);

    // Default per_page is 20.
    let r = get(&sim, "/v2/droplets").json();
    assert_eq!(r["droplets"].as_array().unwrap().len(), 20);
    assert_eq!(
        r["links"],
        json!({"pages": {
            "next": format!("{base}/v2/droplets?page=2&per_page=20"),
            "last": format!("{base}/v2/droplets?page=23&per_page=20"),
        }})
    );
    // per_page above 200 is clamped to 200.
    let r = get(&sim, "/v2/droplets?per_page=1000").json();
    assert_eq!(r["droplets"].as_array().unwrap().len(), 200);
    // Invalid numbers are a 400.
    assert_error(&get(&sim, "/v2/droplets?page=0"), 400, "bad_request");
    assert_error(&get(&sim, "/v2/droplets?per_page=x"), 400, "bad_request");
}

#[test]
fn tag_and_name_filters() {
    let sim = Sim::start(opts()).unwrap();
    for i in 0..5 {
        sim.create_droplet_direct(&format!("web-{i}"), &["env:prod", "web"]);
    }
    sim.create_droplet_direct("db-1", &["env:prod"]);
    sim.create_droplet_direct("Other", &["misc"]);

    let r = get(&sim, "/v2/droplets?tag_name=web").json();
    assert_eq!(r["meta"]["total"], 5);
    assert_eq!(r["links"], json!({}), "one page: empty links");
    let r = get(&sim, "/v2/droplets?tag_name=env%3Aprod&per_page=4").json();
    assert_eq!(r["meta"]["total"], 6);
    assert_eq!(
        r["links"]["pages"]["next"],
        format!(
            "{}/v2/droplets?page=2&per_page=4&tag_name=env%3Aprod",
            sim.url()
        )
    );
    let next = r["links"]["pages"]["next"].as_str().unwrap().to_string();
    let r2 = get(&sim, target_of(&sim, &next)).json();
    assert_eq!(r2["droplets"].as_array().unwrap().len(), 2);
    assert!(r2["droplets"]
        .as_array()
        .unwrap()
        .iter()
        .all(|d| d["tags"].as_array().unwrap().contains(&json!("env:prod"))));
    assert_eq!(
        get(&sim, "/v2/droplets?tag_name=nope").json()["meta"]["total"],
        0
    );

    // name: exact, case-insensitive.
    let r = get(&sim, "/v2/droplets?name=other").json();
    assert_eq!(r["meta"]["total"], 1);
    assert_eq!(r["droplets"][0]["name"], "Other");
    assert_eq!(
        get(&sim, "/v2/droplets?name=web").json()["meta"]["total"],
        0
    );
    assert_eq!(
        get(&sim, "/v2/droplets?name=WEB-3").json()["meta"]["total"],
        1
    );

    assert_422(&get(&sim, "/v2/droplets?tag_name=web&name=web-1"));
}

// ------------------------------------------------------------------ errors

#[test]
fn unauthorized_without_or_with_wrong_token() {
    let sim = Sim::start(opts()).unwrap();
    let cases: [&[(&str, &str)]; 3] = [
        &[],
        &[("Authorization", "Bearer wrong")],
        &[("Authorization", "sim-token")],
    ];
    for headers in cases {
        let r = raw(sim.addr(), "GET", "/v2/account", headers, None).unwrap();
        let v = assert_error(&r, 401, "unauthorized");
        assert_eq!(
            v,
            json!({"id": "unauthorized", "message": "Unable to authenticate you."})
        );
        assert_common_headers(&r, 5000);
        assert_eq!(
            r.header("ratelimit-remaining"),
            Some("5000"),
            "401s are not counted"
        );
    }
    let r = raw(
        sim.addr(),
        "POST",
        "/v2/droplets",
        &[],
        Some(create_body("x").to_string().as_bytes()),
    )
    .unwrap();
    assert_eq!(r.status, 401);
    assert!(sim.droplets().is_empty());
}

#[test]
fn not_found_cases() {
    let sim = Sim::start(opts()).unwrap();
    for target in [
        "/v2/droplets/1",
        "/v2/droplets/abc",
        "/v2/actions/5",
        "/v2/actions/x",
        "/v2/nothing",
    ] {
        let r = get(&sim, target);
        let v = assert_error(&r, 404, "not_found");
        assert_eq!(
            v["message"],
            "The resource you requested could not be found."
        );
        assert_common_headers(&r, 5000);
    }
    let r = raw(sim.addr(), "GET", "/elsewhere", &[], None).unwrap();
    assert_error(&r, 404, "not_found");
    assert_eq!(call(&sim, "PUT", "/v2/droplets", None).status, 405);
}

#[test]
fn rate_limit_per_minute_gives_429_with_retry_after() {
    let sim = Sim::start(SimOptions {
        rate_limit_per_minute: Some(3),
        rate_limit_per_hour: 100,
        ..opts()
    })
    .unwrap();
    for expected_remaining in [99, 98, 97] {
        let r = get(&sim, "/v2/account");
        assert_eq!(r.status, 200);
        assert_common_headers(&r, 100);
        assert_eq!(
            r.header("ratelimit-remaining"),
            Some(expected_remaining.to_string().as_str())
        );
    }
    for _ in 0..2 {
        let r = get(&sim, "/v2/account");
        let v = assert_error(&r, 429, "too_many_requests");
        assert_eq!(v["message"], "API rate limit exceeded.");
        assert_common_headers(&r, 100);
        assert_eq!(r.header("ratelimit-remaining"), Some("0"));
        let retry: u64 = r.header("retry-after").unwrap().parse().unwrap();
        assert!((1..=60).contains(&retry), "retry-after {retry}");
    }
    // 429s did not count; lifting the per-minute limit shows 97 remaining.
    sim.set_faults(Faults {
        rate_limit_per_minute: Some(None),
        ..Faults::default()
    });
    let r = get(&sim, "/v2/account");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("ratelimit-remaining"), Some("96"));
    // The hourly limit applies as well.
    sim.set_faults(Faults {
        rate_limit_per_hour: Some(4),
        ..Faults::default()
    });
    let r = get(&sim, "/v2/account");
    assert_error(&r, 429, "too_many_requests");
    let retry: u64 = r.header("retry-after").unwrap().parse().unwrap();
    assert!(retry > 3000 && retry <= 3600, "{retry}");
}

#[test]
fn error_rate_one_gives_5xx_without_side_effects() {
    let sim = Sim::start(SimOptions {
        error_rate: 1.0,
        rate_limit_per_minute: None,
        ..opts()
    })
    .unwrap();
    let mut statuses = BTreeSet::new();
    for i in 0..60 {
        let r = call(
            &sim,
            "POST",
            "/v2/droplets",
            Some(&create_body(&format!("e{i}"))),
        );
        let (id, msg) = match r.status {
            500 => ("server_error", Some("Unexpected server-side error")),
            502 => ("bad_gateway", None),
            503 => ("service_unavailable", None),
            s => panic!("unexpected status {s}"),
        };
        let v = assert_error(&r, r.status, id);
        if let Some(m) = msg {
            assert_eq!(v["message"], m);
        }
        assert_common_headers(&r, 5000);
        statuses.insert(r.status);
    }
    assert_eq!(statuses.len(), 3, "all of 500, 502, 503 seen: {statuses:?}");
    assert!(sim.droplets().is_empty());
    sim.set_faults(Faults {
        error_rate: Some(0.0),
        ..Faults::default()
    });
    assert_eq!(get(&sim, "/v2/account").status, 200);
}

#[test]
fn reset_on_post_creates_the_droplet_but_sends_nothing() {
    let sim = Sim::start(SimOptions {
        reset_rate: 1.0,
        ..opts()
    })
    .unwrap();
    let body = create_body("ambiguous").to_string();
    let mut s = connect(sim.addr()).unwrap();
    write_request(
        &mut s,
        "POST",
        "/v2/droplets",
        &[("Authorization", "Bearer sim-token")],
        Some(body.as_bytes()),
        true,
    )
    .unwrap();
    let mut buf = Vec::new();
    let res = s.read_to_end(&mut buf);
    assert!(
        buf.is_empty(),
        "got bytes: {:?}",
        String::from_utf8_lossy(&buf)
    );
    if let Err(e) = res {
        assert_ne!(
            e.kind(),
            std::io::ErrorKind::WouldBlock,
            "timed out instead of a reset"
        );
        assert_ne!(e.kind(), std::io::ErrorKind::TimedOut);
    }
    let ds = sim.droplets();
    assert_eq!(ds.len(), 1);
    assert_eq!(ds[0].name, "ambiguous");

    // A reset GET has no side effects and no response either.
    let e = raw(
        sim.addr(),
        "GET",
        "/v2/droplets",
        &[("Authorization", "Bearer sim-token")],
        None,
    );
    assert!(e.is_err());
    let log = sim.requests();
    assert_eq!(log.len(), 2);
    assert!(log.iter().all(|r| r.status == 0));

    // Control and metadata endpoints are never reset.
    assert_eq!(
        raw(sim.addr(), "GET", "/metadata/v1/id", &[], None)
            .unwrap()
            .status,
        200
    );
    sim.set_faults(Faults {
        reset_rate: Some(0.0),
        ..Faults::default()
    });
    assert_eq!(get(&sim, "/v2/droplets").json()["meta"]["total"], 1);
}

#[test]
fn latency_is_added_to_api_requests_only() {
    let sim = Sim::start(SimOptions {
        latency: Duration::from_millis(150),
        ..opts()
    })
    .unwrap();
    let t = Instant::now();
    assert_eq!(get(&sim, "/v2/account").status, 200);
    assert!(t.elapsed() >= Duration::from_millis(150));
    sim.set_faults(Faults {
        latency_ms: Some(0),
        ..Faults::default()
    });
    let t = Instant::now();
    for _ in 0..5 {
        assert_eq!(get(&sim, "/v2/account").status, 200);
    }
    assert!(
        t.elapsed() < Duration::from_millis(750),
        "{:?}",
        t.elapsed()
    );
}

// ------------------------------------------------------------------ log, account, control

#[test]
fn request_log_records_api_requests() {
    let sim = Sim::start(opts()).unwrap();
    get(&sim, "/v2/droplets?tag_name=a%3Ab&per_page=5");
    call(&sim, "POST", "/v2/droplets", Some(&create_body("logged")));
    raw(sim.addr(), "GET", "/v2/account", &[], None).unwrap();
    raw(sim.addr(), "GET", "/metadata/v1/id", &[], None).unwrap();
    raw(sim.addr(), "GET", "/_sim/state", &[], None).unwrap();
    let log = sim.requests();
    let got: Vec<(&str, &str, Option<&str>, u16)> = log
        .iter()
        .map(|r| {
            (
                r.method.as_str(),
                r.path.as_str(),
                r.query.as_deref(),
                r.status,
            )
        })
        .collect();
    assert_eq!(
        got,
        vec![
            (
                "GET",
                "/v2/droplets",
                Some("tag_name=a%3Ab&per_page=5"),
                200
            ),
            ("POST", "/v2/droplets", None, 202),
            ("GET", "/v2/account", None, 401),
        ]
    );
    assert!(log.windows(2).all(|w| w[0].at_ms <= w[1].at_ms));
    let over_http: Vec<do_sim::RequestRecord> = serde_json::from_value(
        raw(sim.addr(), "GET", "/_sim/requests", &[], None)
            .unwrap()
            .json(),
    )
    .unwrap();
    assert_eq!(over_http, log);
    assert_eq!(
        raw(sim.addr(), "DELETE", "/_sim/requests", &[], None)
            .unwrap()
            .status,
        204
    );
    assert!(sim.requests().is_empty());
    get(&sim, "/v2/account");
    sim.clear_requests();
    assert!(sim.requests().is_empty());
}

#[test]
fn account_endpoint() {
    let sim = Sim::start(SimOptions {
        droplet_limit: 7,
        ..opts()
    })
    .unwrap();
    let r = get(&sim, "/v2/account");
    assert_eq!(r.status, 200);
    assert_common_headers(&r, 5000);
    let a = &r.json()["account"];
    assert_eq!(a["droplet_limit"], 7);
    assert_eq!(a["status"], "active");
    assert_eq!(a["email_verified"], true);
    for k in ["floating_ip_limit", "email", "uuid", "status_message"] {
        assert!(a.get(k).is_some(), "{k}");
    }
}

#[test]
fn control_endpoints() {
    let sim = Sim::start(opts()).unwrap();
    let post = |path: &str, body: &Value| {
        raw(
            sim.addr(),
            "POST",
            path,
            &[],
            Some(body.to_string().as_bytes()),
        )
        .unwrap()
    };
    let r = post("/_sim/droplets", &json!({"name": "ctl", "tags": ["a"]}));
    assert_eq!(r.status, 201);
    let id = r.json()["id"].as_u64().unwrap();
    assert_eq!(r.json()["tags"], json!(["a"]));
    let listed: Vec<do_sim::SimDroplet> = serde_json::from_value(
        raw(sim.addr(), "GET", "/_sim/droplets", &[], None)
            .unwrap()
            .json(),
    )
    .unwrap();
    assert_eq!(listed, sim.droplets());
    let state = raw(sim.addr(), "GET", "/_sim/state", &[], None)
        .unwrap()
        .json();
    assert_eq!(state["droplets"][0]["id"], id);
    assert_eq!(state["options"]["active_after_ms"], 50);
    assert_eq!(state["options"]["rate_limit_per_minute"], 250);

    let r = post(
        "/_sim/faults",
        &json!({"latency_ms": 5, "error_rate": 0.25, "rate_limit_per_minute": null, "active_after_ms": 7}),
    );
    assert_eq!(r.status, 200);
    let o = r.json();
    assert_eq!(o["latency_ms"], 5);
    assert_eq!(o["error_rate"], 0.25);
    assert_eq!(o["rate_limit_per_minute"], Value::Null);
    assert_eq!(o["active_after_ms"], 7);
    assert_eq!(o["rate_limit_per_hour"], 5000, "absent knobs are unchanged");
    assert_eq!(post("/_sim/faults", &json!({"error_rate": 3})).status, 400);
    assert_eq!(
        post("/_sim/faults", &json!({"error_rate": "x"})).status,
        400
    );

    assert_eq!(
        raw(
            sim.addr(),
            "DELETE",
            &format!("/_sim/droplets/{id}"),
            &[],
            None
        )
        .unwrap()
        .status,
        204
    );
    assert_eq!(
        raw(
            sim.addr(),
            "DELETE",
            &format!("/_sim/droplets/{id}"),
            &[],
            None
        )
        .unwrap()
        .status,
        404
    );
    assert!(sim.droplets().is_empty());
    assert!(sim.requests().is_empty(), "control requests are not logged");
}

#[test]
fn faults_change_active_after_for_new_droplets() {
    let sim = Sim::start(SimOptions {
        active_after: Duration::from_secs(60),
        ..opts()
    })
    .unwrap();
    let slow = sim.create_droplet_direct("slow", &[]);
    sim.set_faults(Faults {
        active_after_ms: Some(0),
        ..Faults::default()
    });
    let fast = sim.create_droplet_direct("fast", &[]);
    let ds = sim.droplets();
    let status = |id| ds.iter().find(|d| d.id == id).unwrap().status.clone();
    assert_eq!(status(slow), "new");
    assert_eq!(status(fast), "active");
    // Faults round-trip through serde, with null meaning "off".
    let f: Faults = serde_json::from_str(r#"{"rate_limit_per_minute": null}"#).unwrap();
    assert_eq!(f.rate_limit_per_minute, Some(None));
    let f: Faults = serde_json::from_str("{}").unwrap();
    assert_eq!(f, Faults::default());
}

// ------------------------------------------------------------------ metadata

#[test]
fn metadata_endpoints() {
    let sim = Sim::start(SimOptions {
        metadata: MetadataIdentity {
            id: 4242,
            hostname: "lb-1".into(),
            public_ipv4: "127.0.0.7".into(),
            private_ipv4: "127.0.0.8".into(),
            user_data: "#!/bin/sh\necho hi\n".into(),
            region: "ams3".into(),
            tags: vec!["lb".into(), "env:prod".into()],
            ..MetadataIdentity::default()
        },
        ..opts()
    })
    .unwrap();
    let m = |p: &str| raw(sim.addr(), "GET", p, &[], None).unwrap();
    let text = |p: &str| {
        let r = m(p);
        assert_eq!(r.status, 200, "{p}");
        assert!(
            r.header("content-type").unwrap().starts_with("text/plain"),
            "{p}"
        );
        r.text()
    };
    assert_eq!(text("/metadata/v1/id"), "4242");
    assert_eq!(text("/metadata/v1/hostname"), "lb-1");
    assert_eq!(text("/metadata/v1/user-data"), "#!/bin/sh\necho hi\n");
    assert_eq!(text("/metadata/v1/region"), "ams3");
    assert_eq!(text("/metadata/v1/tags"), "lb\nenv:prod\n");
    assert_eq!(
        text("/metadata/v1/interfaces/public/0/ipv4/address"),
        "127.0.0.7"
    );
    assert_eq!(
        text("/metadata/v1/interfaces/public/0/ipv4/gateway"),
        "127.0.0.1"
    );
    assert_eq!(
        text("/metadata/v1/interfaces/private/0/ipv4/address"),
        "127.0.0.8"
    );
    assert_eq!(
        text("/metadata/v1/interfaces/private/0/ipv4/netmask"),
        "255.255.0.0"
    );
    assert_eq!(text("/metadata/v1/interfaces/"), "public/\nprivate/\n");
    let index = text("/metadata/v1/");
    for entry in [
        "id",
        "hostname",
        "user-data",
        "region",
        "interfaces/",
        "tags/",
    ] {
        assert!(index.lines().any(|l| l == entry), "{entry} in {index:?}");
    }
    let r = m("/metadata/v1/interfaces");
    assert_eq!(r.status, 301);
    assert_eq!(r.header("location"), Some("/metadata/v1/interfaces/"));
    assert_eq!(m("/metadata/v1/nope").status, 404);
    assert_eq!(
        m("/metadata/v1/interfaces/public/1/ipv4/address").status,
        404
    );

    let r = m("/metadata/v1.json");
    assert_eq!(r.status, 200);
    let j = r.json();
    assert_eq!(j["droplet_id"], 4242);
    assert_eq!(j["hostname"], "lb-1");
    assert_eq!(j["region"], "ams3");
    assert_eq!(j["tags"], json!(["lb", "env:prod"]));
    assert_eq!(
        j["interfaces"]["public"][0]["ipv4"]["ip_address"],
        "127.0.0.7"
    );
    assert_eq!(j["interfaces"]["public"][0]["type"], "public");
    assert_eq!(
        j["interfaces"]["private"][0]["ipv4"]["ip_address"],
        "127.0.0.8"
    );
    for k in [
        "user_data",
        "vendor_data",
        "public_keys",
        "floating_ip",
        "reserved_ip",
        "dns",
        "features",
    ] {
        assert!(j.get(k).is_some(), "{k}");
    }
    assert!(sim.requests().is_empty(), "metadata is not logged");
}

// ------------------------------------------------------------------ apps

#[test]
fn serve_apps_answers_identity_page_until_deleted() {
    let (sim, port) = app_sim();
    let id = create_id(&sim, "app-1");
    let d = wait_active(&sim, id);
    let nets = ipv4s(&d);
    let private: Ipv4Addr = nets[0].1.parse().unwrap();
    let public = &nets[1].1;
    let addr = SocketAddr::from((private, port));
    let expected = format!("Droplet: app-1, ID: {id}, IP Address: {public}\n");

    // Keep-alive: two requests on one connection.
    let mut s = connect(addr).unwrap();
    let mut reader = BufReader::new(s.try_clone().unwrap());
    for _ in 0..2 {
        write_request(&mut s, "GET", "/", &[], None, false).unwrap();
        let r = read_response(&mut reader).unwrap();
        assert_eq!(r.status, 200);
        assert_eq!(r.header("content-type"), Some("text/html"));
        assert_eq!(r.text(), expected);
    }
    let r = raw(addr, "GET", "/any/path?x=1", &[], None).unwrap();
    assert_eq!(r.text(), expected);

    assert_eq!(
        call(&sim, "DELETE", &format!("/v2/droplets/{id}"), None).status,
        204
    );
    // The open keep-alive connection is closed and new ones are refused.
    let res = write_request(&mut s, "GET", "/", &[], None, false)
        .and_then(|_| read_response(&mut reader));
    assert!(res.is_err(), "kept answering after delete: {res:?}");
    assert!(wait_until(Duration::from_secs(5), || connect(addr).is_err()));
}

#[test]
fn app_boot_delay_refuses_until_booted() {
    let port = free_port();
    let boot = Duration::from_millis(1000);
    let sim = Sim::start(SimOptions {
        serve_apps: true,
        backend_port: port,
        app_boot_delay: boot,
        active_after: Duration::ZERO,
        ..opts()
    })
    .unwrap();
    let t = Instant::now();
    let id = sim.create_droplet_direct("booting", &[]);
    let d = sim.droplets().into_iter().find(|d| d.id == id).unwrap();
    assert_eq!(d.status, "active");
    let ip: Ipv4Addr = d.private_ipv4.unwrap().parse().unwrap();
    let addr = SocketAddr::from((ip, port));
    let first = connect(addr);
    if t.elapsed() < Duration::from_millis(900) {
        let e = first.expect_err("app accepted before its boot delay");
        assert_eq!(e.kind(), std::io::ErrorKind::ConnectionRefused);
    }
    assert!(wait_until(Duration::from_secs(10), || raw(
        addr,
        "GET",
        "/",
        &[],
        None
    )
    .is_ok_and(|r| r.status == 200)));
    assert!(t.elapsed() >= boot);
}

#[test]
fn parallel_sims_share_a_backend_port() {
    let port = free_port();
    let sims: Vec<Sim> = (0..3)
        .map(|_| {
            Sim::start(SimOptions {
                serve_apps: true,
                backend_port: port,
                active_after: Duration::ZERO,
                ..opts()
            })
            .unwrap()
        })
        .collect();
    let mut addrs = BTreeSet::new();
    for (n, sim) in sims.iter().enumerate() {
        for i in 0..4 {
            sim.create_droplet_direct(&format!("s{n}-{i}"), &[]);
        }
    }
    for (n, sim) in sims.iter().enumerate() {
        for d in sim.droplets() {
            let ip: Ipv4Addr = d.private_ipv4.clone().unwrap().parse().unwrap();
            let addr = SocketAddr::from((ip, port));
            assert!(addrs.insert(addr), "address {addr} used twice");
            let r = raw(addr, "GET", "/", &[], None).unwrap();
            assert!(
                r.text()
                    .starts_with(&format!("Droplet: {}, ID: {}", d.name, d.id)),
                "sim {n}"
            );
        }
    }
    assert_eq!(addrs.len(), 12);
}

// ------------------------------------------------------------------ conformance

fn example(name: &str) -> Value {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/data/digitalocean/");
    let text = std::fs::read_to_string(format!("{path}{name}"))
        .unwrap_or_else(|e| panic!("reading {path}{name}: {e}"));
    serde_json::from_str(&text).unwrap()
}

/// The API's models, strict: unknown fields are errors, required fields are
/// non-`Option`. Fields exist to be checked by deserialization, not read.
#[allow(dead_code)]
mod model {
    use serde::Deserialize;
    use serde_json::Value;

    #[derive(Deserialize, Debug)]
    #[serde(deny_unknown_fields)]
    pub struct Droplet {
        pub id: u64,
        pub name: String,
        pub memory: u64,
        pub vcpus: u64,
        pub disk: u64,
        #[serde(default)]
        pub disk_info: Option<Vec<DiskInfo>>,
        pub locked: bool,
        pub status: Status,
        pub kernel: Option<Value>,
        pub created_at: String,
        pub features: Vec<String>,
        pub backup_ids: Vec<u64>,
        pub next_backup_window: Option<Window>,
        pub snapshot_ids: Vec<u64>,
        pub image: Image,
        pub volume_ids: Vec<String>,
        pub size: Size,
        pub size_slug: String,
        pub networks: Networks,
        pub region: Region,
        pub tags: Vec<String>,
        #[serde(default)]
        pub vpc_uuid: Option<String>,
    }

    #[derive(Deserialize, Debug, PartialEq)]
    #[serde(rename_all = "lowercase")]
    pub enum Status {
        New,
        Active,
        Off,
        Archive,
    }

    #[derive(Deserialize, Debug)]
    #[serde(deny_unknown_fields)]
    pub struct DiskInfo {
        #[serde(rename = "type")]
        pub kind: String,
        pub size: DiskSize,
    }

    #[derive(Deserialize, Debug)]
    #[serde(deny_unknown_fields)]
    pub struct DiskSize {
        pub amount: u64,
        pub unit: String,
    }

    #[derive(Deserialize, Debug)]
    #[serde(deny_unknown_fields)]
    pub struct Window {
        pub start: String,
        pub end: String,
    }

    #[derive(Deserialize, Debug)]
    #[serde(deny_unknown_fields)]
    pub struct Image {
        pub id: u64,
        pub name: String,
        pub distribution: String,
        pub slug: Option<String>,
        pub public: bool,
        pub regions: Vec<String>,
        pub created_at: String,
        #[serde(rename = "type")]
        pub kind: String,
        pub min_disk_size: Option<u64>,
        pub size_gigabytes: Option<f64>,
        pub description: String,
        pub tags: Vec<String>,
        pub status: String,
        pub error_message: String,
    }

    #[derive(Deserialize, Debug)]
    #[serde(deny_unknown_fields)]
    pub struct Size {
        pub slug: String,
        pub memory: u64,
        pub vcpus: u64,
        pub disk: u64,
        pub transfer: f64,
        pub price_monthly: f64,
        pub price_hourly: f64,
        pub regions: Vec<String>,
        pub available: bool,
        pub description: String,
        /// Optional in the spec's size model.
        #[serde(default)]
        pub disk_info: Option<Vec<Value>>,
    }

    #[derive(Deserialize, Debug)]
    #[serde(deny_unknown_fields)]
    pub struct Region {
        pub name: String,
        pub slug: String,
        pub features: Vec<String>,
        pub available: bool,
        pub sizes: Vec<String>,
    }

    #[derive(Deserialize, Debug)]
    #[serde(deny_unknown_fields)]
    pub struct Networks {
        pub v4: Vec<NetV4>,
        pub v6: Vec<NetV6>,
    }

    #[derive(Deserialize, Debug)]
    #[serde(deny_unknown_fields)]
    pub struct NetV4 {
        pub ip_address: String,
        pub netmask: String,
        pub gateway: String,
        #[serde(rename = "type")]
        pub kind: String,
    }

    #[derive(Deserialize, Debug)]
    #[serde(deny_unknown_fields)]
    pub struct NetV6 {
        pub ip_address: String,
        pub netmask: u64,
        pub gateway: String,
        #[serde(rename = "type")]
        pub kind: String,
    }

    #[derive(Deserialize, Debug)]
    #[serde(deny_unknown_fields)]
    pub struct One {
        pub droplet: Droplet,
    }

    #[derive(Deserialize, Debug)]
    #[serde(deny_unknown_fields)]
    pub struct Page {
        pub droplets: Vec<Droplet>,
        #[serde(default)]
        pub links: Option<PageLinks>,
        pub meta: Meta,
    }

    #[derive(Deserialize, Debug)]
    #[serde(deny_unknown_fields)]
    pub struct PageLinks {
        #[serde(default)]
        pub pages: Option<Pages>,
    }

    #[derive(Deserialize, Debug)]
    #[serde(deny_unknown_fields)]
    pub struct Pages {
        pub first: Option<String>,
        pub prev: Option<String>,
        pub next: Option<String>,
        pub last: Option<String>,
    }

    #[derive(Deserialize, Debug)]
    #[serde(deny_unknown_fields)]
    pub struct Meta {
        pub total: u64,
    }

    #[derive(Deserialize, Debug)]
    #[serde(deny_unknown_fields)]
    pub struct CreateOne {
        pub droplet: Droplet,
        pub links: CreateLinks,
    }

    #[derive(Deserialize, Debug)]
    #[serde(deny_unknown_fields)]
    pub struct CreateMany {
        pub droplets: Vec<Droplet>,
        pub links: CreateLinks,
    }

    #[derive(Deserialize, Debug)]
    #[serde(deny_unknown_fields)]
    pub struct CreateLinks {
        pub actions: Vec<ActionLink>,
    }

    #[derive(Deserialize, Debug)]
    #[serde(deny_unknown_fields)]
    pub struct ActionLink {
        pub id: u64,
        pub rel: String,
        pub href: String,
    }

    #[derive(Deserialize, Debug)]
    #[serde(deny_unknown_fields)]
    pub struct ActionBody {
        pub action: Action,
    }

    #[derive(Deserialize, Debug)]
    #[serde(deny_unknown_fields)]
    pub struct Action {
        pub id: u64,
        pub status: String,
        #[serde(rename = "type")]
        pub kind: String,
        pub started_at: String,
        pub completed_at: Option<String>,
        pub resource_id: Option<u64>,
        pub resource_type: String,
        pub region: Region,
        pub region_slug: Option<String>,
    }

    #[derive(Deserialize, Debug)]
    #[serde(deny_unknown_fields)]
    pub struct AccountBody {
        pub account: Account,
    }

    #[derive(Deserialize, Debug)]
    #[serde(deny_unknown_fields)]
    pub struct Account {
        pub droplet_limit: u64,
        pub floating_ip_limit: u64,
        pub email: String,
        #[serde(default)]
        pub name: Option<String>,
        pub uuid: String,
        pub email_verified: bool,
        pub status: String,
        pub status_message: String,
        #[serde(default)]
        pub team: Option<Team>,
    }

    #[derive(Deserialize, Debug)]
    #[serde(deny_unknown_fields)]
    pub struct Team {
        pub uuid: String,
        pub name: String,
    }

    #[derive(Deserialize, Debug)]
    #[serde(deny_unknown_fields)]
    pub struct Error {
        pub id: String,
        pub message: String,
        #[serde(default)]
        pub request_id: Option<String>,
    }
}

/// Every key of every object in `example` must exist at the same place in
/// `sim` (arrays: compared element 0 to element 0 when both have one).
fn keys_superset(
    example: &Value,
    sim: &Value,
    path: &str,
    skip: &[&str],
    missing: &mut Vec<String>,
) {
    if skip.contains(&path) {
        return;
    }
    match (example, sim) {
        (Value::Object(e), Value::Object(s)) => {
            for (k, ev) in e {
                let p = format!("{path}.{k}");
                match s.get(k) {
                    Some(sv) => keys_superset(ev, sv, &p, skip, missing),
                    None => missing.push(p),
                }
            }
        }
        (Value::Array(e), Value::Array(s)) => {
            if let (Some(e0), Some(s0)) = (e.first(), s.first()) {
                keys_superset(e0, s0, &format!("{path}[0]"), skip, missing);
            }
        }
        _ => {}
    }
}

fn check_keys(example: &Value, sim: &Value, skip: &[&str], what: &str) {
    let mut missing = Vec::new();
    keys_superset(example, sim, "", skip, &mut missing);
    assert!(
        missing.is_empty(),
        "{what}: the simulator lacks {missing:?}"
    );
}

fn parse<T: for<'de> Deserialize<'de>>(v: &Value, what: &str) -> T {
    serde_json::from_value(v.clone()).unwrap_or_else(|e| panic!("{what}: {e}\n{v:#}"))
}

#[test]
fn conformance_with_spec_examples() {
    use model::*;
    let sim = Sim::start(SimOptions {
        rate_limit_per_minute: None,
        active_after: Duration::from_millis(100),
        ..opts()
    })
    .unwrap();
    let req = example("droplet_create_request.json");
    let create_resp = call(&sim, "POST", "/v2/droplets", Some(&req));
    assert_eq!(create_resp.status, 202, "{}", create_resp.text());
    let create_v = create_resp.json();
    let multi_req = example("droplets_create_multiple_request.json");
    let multi_v = call(&sim, "POST", "/v2/droplets", Some(&multi_req)).json();

    // Examples and simulator output parse into the same strict structs.
    parse::<One>(&example("droplet.json"), "droplet.json");
    parse::<Page>(&example("droplets_page.json"), "droplets_page.json");
    parse::<Page>(
        &example("droplets_by_tag_page.json"),
        "droplets_by_tag_page.json",
    );
    parse::<CreateOne>(
        &example("droplet_create_response.json"),
        "droplet_create_response.json",
    );
    parse::<CreateMany>(
        &example("droplets_create_multiple_response.json"),
        "droplets_create_multiple_response.json",
    );
    parse::<ActionBody>(&example("action.json"), "action.json");
    parse::<AccountBody>(&example("account.json"), "account.json");
    for e in [
        "error_401.json",
        "error_404.json",
        "error_422.json",
        "error_429.json",
        "error_500.json",
    ] {
        parse::<model::Error>(&example(e), e);
    }

    let created: CreateOne = parse(&create_v, "sim create");
    assert_eq!(created.droplet.status, Status::New);
    assert!(created.droplet.networks.v4.is_empty());
    let created_many: CreateMany = parse(&multi_v, "sim multi create");
    assert_eq!(created_many.droplets.len(), 2);
    assert_eq!(created_many.links.actions.len(), 2);
    check_keys(
        &example("droplet_create_response.json"),
        &create_v,
        &[],
        "create",
    );
    check_keys(
        &example("droplets_create_multiple_response.json"),
        &multi_v,
        &[],
        "multi create",
    );

    let id = created.droplet.id;
    let active = wait_active(&sim, id);
    let one_v = json!({ "droplet": active });
    let one: One = parse(&one_v, "sim droplet");
    assert_eq!(one.droplet.status, Status::Active);
    assert_eq!(one.droplet.name, "example.com");
    assert_eq!(one.droplet.tags, vec!["env:prod", "web"]);
    assert_eq!(
        one.droplet.features,
        vec!["backups", "private_networking", "ipv6", "monitoring"]
    );
    assert!(one.droplet.next_backup_window.is_some());
    assert!(one.droplet.networks.v4.iter().any(|n| n.kind == "private"));
    assert!(one.droplet.networks.v4.iter().any(|n| n.kind == "public"));
    assert_eq!(
        one.droplet.vpc_uuid.as_deref(),
        Some("760e09ef-dc84-11e8-981e-3cfdfeaae000")
    );
    // v6 is always empty in the simulator (no IPv6 addresses are handed out).
    check_keys(
        &example("droplet.json"),
        &one_v,
        &[".droplet.networks.v6"],
        "droplet",
    );

    for i in 3..6 {
        sim.create_droplet_direct(&format!("extra-{i}"), &["env:prod"]);
    }
    let list_v = get(&sim, "/v2/droplets").json();
    let page: Page = parse(&list_v, "sim list");
    assert_eq!(page.meta.total, 6);
    assert!(page.links.is_some_and(|l| l.pages.is_none()));
    // The example shows `links: {"pages": {}}`; the simulator sends `{}` for a single page.
    check_keys(&example("droplets_page.json"), &list_v, &[".links"], "list");
    let tagged_v = get(&sim, "/v2/droplets?tag_name=env:prod&per_page=2").json();
    let tagged: Page = parse(&tagged_v, "sim tagged list");
    let pages = tagged.links.unwrap().pages.unwrap();
    assert!(
        pages.next.is_some()
            && pages.last.is_some()
            && pages.first.is_none()
            && pages.prev.is_none()
    );
    check_keys(
        &example("droplets_by_tag_page.json"),
        &tagged_v,
        &[".links"],
        "tagged list",
    );
    check_keys(
        &example("droplet_kernels_page.json")["links"],
        &tagged_v["links"],
        &[],
        "page links",
    );

    let aid = created.links.actions[0].id;
    let action_v = get(&sim, &format!("/v2/actions/{aid}")).json();
    let action: ActionBody = parse(&action_v, "sim action");
    assert_eq!(action.action.status, "completed");
    assert_eq!(action.action.region_slug.as_deref(), Some("nyc3"));
    check_keys(&example("action.json"), &action_v, &[], "action");

    let account_v = get(&sim, "/v2/account").json();
    parse::<AccountBody>(&account_v, "sim account");
    check_keys(&example("account.json"), &account_v, &[], "account");

    let e401 = raw(sim.addr(), "GET", "/v2/account", &[], None)
        .unwrap()
        .json();
    let e404 = get(&sim, "/v2/droplets/1").json();
    let e422 = call(&sim, "POST", "/v2/droplets", Some(&json!({"name": "x"}))).json();
    for (file, v) in [
        ("error_401.json", &e401),
        ("error_404.json", &e404),
        ("error_422.json", &e422),
    ] {
        parse::<model::Error>(v, file);
        check_keys(&example(file), v, &[], file);
        assert_eq!(v["id"], example(file)["id"], "{file}");
    }
    assert_eq!(e401, example("error_401.json"));
    assert_eq!(e404, example("error_404.json"));

    sim.set_faults(Faults {
        error_rate: Some(1.0),
        ..Faults::default()
    });
    let mut e500 = None;
    for _ in 0..200 {
        let r = get(&sim, "/v2/account");
        if r.status == 500 {
            e500 = Some(r.json());
            break;
        }
    }
    let e500 = e500.expect("no 500 among 200 injected errors");
    assert_eq!(e500, example("error_500.json"));
    sim.set_faults(Faults {
        error_rate: Some(0.0),
        rate_limit_per_minute: Some(Some(1)),
        ..Faults::default()
    });
    get(&sim, "/v2/account");
    let e429 = get(&sim, "/v2/account").json();
    assert_eq!(e429, example("error_429.json"));
}

// ------------------------------------------------------------------ runtime, binary, start-up

#[test]
fn works_inside_another_tokio_runtime_and_refuses_non_loopback() {
    fn send_sync<T: Send + Sync>() {}
    send_sync::<Sim>();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let sim = Sim::start(opts()).unwrap();
        let addr = sim.addr();
        let resp = tokio::task::spawn_blocking(move || {
            raw(addr, "GET", "/metadata/v1/hostname", &[], None)
                .unwrap()
                .text()
        })
        .await
        .unwrap();
        assert_eq!(resp, "sim-lb");
        let id = sim.create_droplet_direct("in-rt", &[]);
        assert!(sim.delete_droplet_direct(id));
        drop(sim); // must neither panic nor hang inside a runtime
    });
    for bad in ["0.0.0.0:0", "10.1.2.3:0", "[::1]:0"] {
        let e = Sim::start(SimOptions {
            listen: bad.parse().unwrap(),
            ..opts()
        })
        .unwrap_err();
        assert!(e.to_string().contains("127.0.0.0/8"), "{e}");
    }
    let other = Sim::start(SimOptions {
        listen: "127.0.0.2:0".parse().unwrap(),
        ..opts()
    })
    .unwrap();
    assert!(other.url().starts_with("http://127.0.0.2:"));
    assert!(!other.url().ends_with('/'));
}

#[test]
fn binary_prints_ready_line_and_exits_on_sigterm() {
    use std::process::{Command, Stdio};
    let exe = env!("CARGO_BIN_EXE_do-sim");
    let refused = Command::new(exe)
        .args(["--listen", "0.0.0.0:0"])
        .output()
        .unwrap();
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("127.0.0.0/8"));

    let mut child = Command::new(exe)
        .args([
            "--listen",
            "127.0.0.1:0",
            "--token",
            "bin-token",
            "--rate-limit-per-minute",
            "off",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = BufReader::new(stdout).read_line(&mut line);
        let _ = tx.send(line);
    });
    let line = match rx.recv_timeout(Duration::from_secs(30)) {
        Ok(l) => l,
        Err(e) => {
            let _ = child.kill();
            panic!("no ready line: {e}");
        }
    };
    let url = line
        .trim()
        .strip_prefix("do-sim listening on http://")
        .unwrap_or_else(|| panic!("bad ready line {line:?}"));
    let addr: SocketAddr = url.parse().unwrap();
    let r = raw(
        addr,
        "GET",
        "/v2/account",
        &[("Authorization", "Bearer bin-token")],
        None,
    )
    .unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.header("ratelimit-limit"), Some("5000"));

    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(10);
    let exit = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("do-sim did not exit after SIGTERM");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(exit.success(), "{exit:?}");
}

#[test]
fn startup_time_of_20_sims() {
    let mut total = Duration::ZERO;
    let mut total_drop = Duration::ZERO;
    for _ in 0..20 {
        let t = Instant::now();
        let sim = Sim::start(opts()).unwrap();
        total += t.elapsed();
        // Each one really serves.
        assert_eq!(
            raw(sim.addr(), "GET", "/metadata/v1/id", &[], None)
                .unwrap()
                .text(),
            "1000"
        );
        let t = Instant::now();
        drop(sim);
        total_drop += t.elapsed();
    }
    eprintln!(
        "do-sim start-up: mean {:?} to start, {:?} to drop (20 sims)",
        total / 20,
        total_drop / 20
    );
}

#[test]
fn power_off_keeps_addresses_stops_the_app_and_freezes_a_new_droplet() {
    let (sim, port) = app_sim();
    let id = create_id(&sim, "off-1");
    let d = wait_active(&sim, id);
    let private: Ipv4Addr = ipv4s(&d)[0].1.parse().unwrap();
    let addr = SocketAddr::from((private, port));
    assert_eq!(raw(addr, "GET", "/", &[], None).unwrap().status, 200);
    assert!(sim.power_off_direct(id));
    let d = get(&sim, &format!("/v2/droplets/{id}")).json()["droplet"].clone();
    assert_eq!(d["status"], "off");
    assert_eq!(d["locked"], false);
    assert_eq!(ipv4s(&d).len(), 2, "an off droplet keeps its addresses");
    assert!(wait_until(Duration::from_secs(5), || connect(addr).is_err()));

    // Powered off while still new: it never becomes active.
    let id = create_id(&sim, "off-2");
    assert!(sim.power_off_direct(id));
    std::thread::sleep(opts().active_after * 3);
    let d = get(&sim, &format!("/v2/droplets/{id}")).json()["droplet"].clone();
    assert_eq!(d["status"], "off");
    assert!(!sim.power_off_direct(424242));
}
