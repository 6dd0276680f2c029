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
