//! Integration tests for the "as rough as production" knobs (issue #11): each one is off
//! by default, turned on by a start option or at run time (`Sim::set_faults`,
//! `POST /_sim/faults`), and shown here to do what `README.md` says.

// Test code: a failed unwrap is a failed test, with its message.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::*;
use do_sim::{Faults, Sim, SimOptions};
use serde_json::{json, Value};

fn control_post(sim: &Sim, path: &str, body: &Value) -> Resp {
    raw(
        sim.addr(),
        "POST",
        path,
        &[],
        Some(body.to_string().as_bytes()),
    )
    .unwrap()
}

fn droplet(sim: &Sim, id: u64) -> Value {
    let r = get(sim, &format!("/v2/droplets/{id}"));
    assert_eq!(r.status, 200, "{}", r.text());
    r.json()["droplet"].clone()
}

// ------------------------------------------------------------------ locked

#[test]
fn locked_is_the_administrative_lock() {
    let sim = Sim::start(SimOptions {
        active_after: Duration::from_secs(30),
        ..opts()
    })
    .unwrap();
    let id = create_id(&sim, "lock-1");
    let d = droplet(&sim, id);
    assert_eq!(
        (d["status"].as_str(), &d["locked"]),
        (Some("new"), &json!(false))
    );

    assert!(sim.lock_direct(id, true));
    let d = droplet(&sim, id);
    assert_eq!(
        (d["status"].as_str(), &d["locked"]),
        (Some("new"), &json!(true))
    );
    assert!(sim.droplets()[0].locked);
    assert!(sim.lock_direct(id, false));
    assert_eq!(droplet(&sim, id)["locked"], false);
    assert!(!sim.lock_direct(4242, true), "unknown droplet");

    // Over /_sim, answered with the SimDroplet.
    let r = control_post(
        &sim,
        &format!("/_sim/droplets/{id}/lock"),
        &json!({"locked": true}),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["locked"], true);
    assert_eq!(droplet(&sim, id)["locked"], true);
    let r = control_post(&sim, "/_sim/droplets/4242/lock", &json!({"locked": true}));
    assert_eq!(r.status, 404);
    let r = control_post(
        &sim,
        &format!("/_sim/droplets/{id}/lock"),
        &json!({"locked": 1}),
    );
    assert_eq!(r.status, 400);

    // A locked active droplet stays locked; a deleted one cannot be locked.
    let a = {
        sim.set_faults(Faults {
            active_after_ms: Some(0),
            ..Faults::default()
        });
        sim.create_droplet_direct("lock-2", &[])
    };
    assert!(sim.lock_direct(a, true));
    let d = droplet(&sim, a);
    assert_eq!(
        (d["status"].as_str(), &d["locked"]),
        (Some("active"), &json!(true))
    );
    assert!(sim.delete_droplet_direct(a));
    assert!(!sim.lock_direct(a, false));
}

#[test]
fn locked_while_new_restores_the_booting_reading() {
    let sim = Sim::start(SimOptions {
        active_after: Duration::from_millis(300),
        locked_while_new: true,
        ..opts()
    })
    .unwrap();
    let r = call(&sim, "POST", "/v2/droplets", Some(&create_body("boot-1")));
    assert_eq!(r.json()["droplet"]["locked"], true);
    let id = r.json()["droplet"]["id"].as_u64().unwrap();
    assert_eq!(droplet(&sim, id)["locked"], true);
    let d = wait_active(&sim, id);
    assert_eq!(d["locked"], false);

    // Off at run time: new droplets are unlocked from then on.
    let r = control_post(&sim, "/_sim/faults", &json!({"locked_while_new": false}));
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["locked_while_new"], false);
    let id = create_id(&sim, "boot-2");
    assert_eq!(droplet(&sim, id)["locked"], false);
}

// ------------------------------------------------------------------ sizes

#[test]
fn sizes_list_with_prices_and_pages() {
    let sim = Sim::start(opts()).unwrap();
    let r = get(&sim, "/v2/sizes");
    assert_eq!(r.status, 200);
    assert_common_headers(&r, 5000);
    let v = r.json();
    let total = v["meta"]["total"].as_u64().unwrap();
    let sizes = v["sizes"].as_array().unwrap();
    assert_eq!(sizes.len() as u64, total);
    assert!(total >= 5);
    assert_eq!(v["links"], json!({}));
    // The spec's required keys, and hourly = monthly / 672 rounded to 5 decimals.
    for s in sizes {
        for k in [
            "available",
            "disk",
            "memory",
            "price_hourly",
            "price_monthly",
            "regions",
            "slug",
            "transfer",
            "vcpus",
            "description",
        ] {
            assert!(s.get(k).is_some(), "{k} in {s}");
        }
        let monthly = s["price_monthly"].as_f64().unwrap();
        let hourly = s["price_hourly"].as_f64().unwrap();
        assert!((hourly - monthly / 672.0).abs() < 0.000_01, "{s}");
    }
    let one = sizes.iter().find(|s| s["slug"] == "s-1vcpu-1gb").unwrap();
    assert_eq!(one["price_hourly"], 0.00893);
    assert_eq!(one["price_monthly"], 6.0);
    assert_eq!(one["memory"], 1024);

    // The droplet's size object is the listed one.
    let id = sim.create_droplet_direct("sized", &[]);
    assert_eq!(&droplet(&sim, id)["size"], one);

    // per_page and the links, followed to the end.
    let mut target = "/v2/sizes?per_page=2".to_string();
    let mut seen = Vec::new();
    loop {
        let v = get(&sim, &target).json();
        assert_eq!(v["meta"]["total"], total);
        for s in v["sizes"].as_array().unwrap() {
            seen.push(s["slug"].as_str().unwrap().to_string());
        }
        match v["links"]["pages"]["next"].as_str() {
            Some(next) => {
                assert!(next.contains("/v2/sizes?page="), "{next}");
                target = target_of(&sim, next).to_string();
            }
            None => break,
        }
    }
    assert_eq!(seen.len() as u64, total);
    assert_error(&get(&sim, "/v2/sizes?per_page=0"), 400, "bad_request");
    assert_eq!(call(&sim, "POST", "/v2/sizes", None).status, 405);
}
