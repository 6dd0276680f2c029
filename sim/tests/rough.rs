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

// ------------------------------------------------------------------ Cloudflare 52x

fn assert_cloudflare(r: &Resp, codes: &[u16]) {
    assert!(codes.contains(&r.status), "status {}", r.status);
    assert!(
        r.header("content-type").unwrap().starts_with("text/html"),
        "{:?}",
        r.header("content-type")
    );
    assert_eq!(r.header("server"), Some("cloudflare"));
    assert!(r.header("cf-ray").is_some());
    let body = r.text();
    assert!(
        body.starts_with("<!DOCTYPE html>") && body.contains("<html"),
        "{body}"
    );
    assert!(body.contains("cloudflare") && body.contains(&format!("Error code {}", r.status)));
    // Cloudflare's own page: none of the API's headers.
    assert_eq!(r.header("ratelimit-limit"), None);
    assert_eq!(r.header("x-request-id"), None);
}

#[test]
fn cloudflare_before_the_api_has_no_effect() {
    let sim = Sim::start(SimOptions {
        cloudflare_rate: 1.0,
        ..opts()
    })
    .unwrap();
    let mut seen = std::collections::BTreeSet::new();
    for i in 0..40 {
        let r = call(
            &sim,
            "POST",
            "/v2/droplets",
            Some(&create_body(&format!("cf-{i}"))),
        );
        assert_cloudflare(&r, &[520, 521, 522, 523, 524]);
        seen.insert(r.status);
    }
    assert_eq!(seen.len(), 5, "every 52x seen: {seen:?}");
    assert!(sim.droplets().is_empty(), "nothing happened");
    // In front of the auth as well.
    let r = raw(sim.addr(), "GET", "/v2/account", &[], None).unwrap();
    assert_cloudflare(&r, &[520, 521, 522, 523, 524]);
    let log = sim.requests();
    assert_eq!(log.len(), 41);
    assert!(log.iter().all(|r| (520..=524).contains(&r.status)));

    // Not counted against the rate limit.
    sim.set_faults(Faults {
        cloudflare_rate: Some(0.0),
        ..Faults::default()
    });
    let r = get(&sim, "/v2/account");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("ratelimit-remaining"), Some("4999"));
}

#[test]
fn cloudflare_after_the_effect() {
    let sim = Sim::start(SimOptions {
        active_after: Duration::ZERO,
        ..opts()
    })
    .unwrap();
    let r = control_post(&sim, "/_sim/faults", &json!({"cloudflare_after_rate": 1.0}));
    assert_eq!(r.json()["cloudflare_after_rate"], 1.0);
    let r = call(&sim, "POST", "/v2/droplets", Some(&create_body("cf-after")));
    assert_cloudflare(&r, &[520, 524]);
    assert_eq!(sim.droplets().len(), 1, "the droplet was created");
    let id = sim.droplets()[0].id;
    let r = call(&sim, "DELETE", &format!("/v2/droplets/{id}"), None);
    assert_cloudflare(&r, &[520, 524]);
    assert!(sim.droplets().is_empty(), "and deleted");
    assert_eq!(
        control_post(&sim, "/_sim/faults", &json!({"cloudflare_after_rate": 2})).status,
        400
    );
    sim.set_faults(Faults {
        cloudflare_after_rate: Some(0.0),
        ..Faults::default()
    });
    // Both requests reached the API and were counted.
    assert_eq!(
        get(&sim, "/v2/account").header("ratelimit-remaining"),
        Some("4997")
    );
}

// ------------------------------------------------------------------ placements

#[test]
fn injected_errors_after_the_effect() {
    let sim = Sim::start(SimOptions {
        error_rate: 1.0,
        error_placement: do_sim::Placement::After,
        active_after: Duration::ZERO,
        rate_limit_per_minute: None,
        ..opts()
    })
    .unwrap();
    let r = call(&sim, "POST", "/v2/droplets", Some(&create_body("e-after")));
    assert!([500, 502, 503].contains(&r.status), "{}", r.status);
    assert_common_headers(&r, 5000);
    assert_eq!(sim.droplets().len(), 1, "created despite the 5xx");

    // creates-after: the create takes effect, the delete does not.
    let r = control_post(
        &sim,
        "/_sim/faults",
        &json!({"error_placement": "creates-after"}),
    );
    assert_eq!(r.json()["error_placement"], "creates-after");
    let id = sim.droplets()[0].id;
    let r = call(&sim, "DELETE", &format!("/v2/droplets/{id}"), None);
    assert!(r.status >= 500);
    assert_eq!(sim.droplets().len(), 1, "the delete had no effect");
    let r = call(
        &sim,
        "POST",
        "/v2/droplets",
        Some(&create_body("e-after-2")),
    );
    assert!(r.status >= 500);
    assert_eq!(sim.droplets().len(), 2);
    // after: the delete takes effect too.
    sim.set_faults(Faults {
        error_placement: Some(do_sim::Placement::After),
        ..Faults::default()
    });
    assert!(call(&sim, "DELETE", &format!("/v2/droplets/{id}"), None).status >= 500);
    assert_eq!(sim.droplets().len(), 1);
    assert_eq!(
        control_post(&sim, "/_sim/faults", &json!({"error_placement": "later"})).status,
        400
    );
}

#[test]
fn resets_before_or_after_the_effect() {
    let sim = Sim::start(SimOptions {
        reset_rate: 1.0,
        reset_placement: do_sim::Placement::Before,
        active_after: Duration::ZERO,
        ..opts()
    })
    .unwrap();
    let auth = [("Authorization", "Bearer sim-token")];
    let body = create_body("r-before").to_string();
    let r = raw(
        sim.addr(),
        "POST",
        "/v2/droplets",
        &auth,
        Some(body.as_bytes()),
    );
    assert!(r.is_err(), "no response: {r:?}");
    assert!(
        sim.droplets().is_empty(),
        "a reset before the effect creates nothing"
    );

    sim.set_faults(Faults {
        reset_placement: Some(do_sim::Placement::After),
        ..Faults::default()
    });
    let id = sim.create_droplet_direct("r-after", &[]);
    let r = raw(
        sim.addr(),
        "DELETE",
        &format!("/v2/droplets/{id}"),
        &auth,
        None,
    );
    assert!(r.is_err());
    assert!(sim.droplets().is_empty(), "deleted, then reset");
    assert!(sim.requests().iter().all(|r| r.status == 0));
}

// ------------------------------------------------------------------ hourly 429

#[test]
fn hourly_429_without_retry_after() {
    let sim = Sim::start(SimOptions {
        rate_limit_per_minute: None,
        rate_limit_per_hour: 2,
        omit_hourly_retry_after: true,
        ..opts()
    })
    .unwrap();
    assert_eq!(get(&sim, "/v2/account").status, 200);
    assert_eq!(get(&sim, "/v2/account").status, 200);
    let r = get(&sim, "/v2/account");
    assert_error(&r, 429, "too_many_requests");
    assert_eq!(
        r.header("retry-after"),
        None,
        "the hourly 429 has no retry-after"
    );
    assert_eq!(r.header("ratelimit-remaining"), Some("0"));
    let reset: u64 = r.header("ratelimit-reset").unwrap().parse().unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    assert!(
        reset > now + 3500 && reset <= now + 3601,
        "reset {reset} now {now}"
    );

    // The per-minute 429 keeps its retry-after.
    sim.set_faults(Faults {
        rate_limit_per_hour: Some(100),
        rate_limit_per_minute: Some(Some(3)),
        ..Faults::default()
    });
    assert_eq!(get(&sim, "/v2/account").status, 200);
    let r = get(&sim, "/v2/account");
    assert_error(&r, 429, "too_many_requests");
    let retry: u64 = r.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=60).contains(&retry));

    // Off at run time: the hourly 429 has retry-after again.
    sim.set_faults(Faults {
        rate_limit_per_hour: Some(3),
        rate_limit_per_minute: Some(None),
        omit_hourly_retry_after: Some(false),
        ..Faults::default()
    });
    let r = get(&sim, "/v2/account");
    assert_eq!(r.status, 429);
    assert!(r.header("retry-after").is_some());
}

// ------------------------------------------------------------------ scopes

fn call_as(sim: &Sim, token: &str, method: &str, target: &str, body: Option<&Value>) -> Resp {
    let auth = format!("Bearer {token}");
    let body = body.map(|b| serde_json::to_vec(b).unwrap());
    raw(
        sim.addr(),
        method,
        target,
        &[("Authorization", auth.as_str())],
        body.as_deref(),
    )
    .unwrap()
}

fn assert_403(r: &Resp) {
    assert_eq!(r.status, 403, "{}", r.text());
    assert_eq!(
        r.json(),
        json!({"id": "forbidden", "message": "You are not authorized to perform this operation."})
    );
    assert_common_headers(r, 5000);
}

#[test]
fn scoped_tokens_get_403_without_the_scope() {
    use do_sim::ScopedToken;
    let sim = Sim::start(SimOptions {
        active_after: Duration::ZERO,
        tokens: vec![
            ScopedToken::new("reader", &["droplet:read", "actions:read"]),
            ScopedToken::new("creator", &["droplet:create", "droplet:read"]),
            ScopedToken::new(
                "tagger",
                &[
                    "droplet:create",
                    "tag:create",
                    "tag:read",
                    "droplet:read",
                    "droplet:delete",
                ],
            ),
            ScopedToken::new("nothing", &[]),
        ],
        rate_limit_per_minute: None,
        ..opts()
    })
    .unwrap();
    let id = sim.create_droplet_direct("scoped", &["doproxy"]);
    let mut untagged = create_body("s-1");
    untagged.as_object_mut().unwrap().remove("tags");

    // reader: GETs of droplets and actions, nothing else.
    assert_eq!(
        call_as(&sim, "reader", "GET", "/v2/droplets", None).status,
        200
    );
    assert_eq!(
        call_as(&sim, "reader", "GET", &format!("/v2/droplets/{id}"), None).status,
        200
    );
    assert_403(&call_as(
        &sim,
        "reader",
        "GET",
        "/v2/droplets?tag_name=doproxy",
        None,
    ));
    assert_403(&call_as(
        &sim,
        "reader",
        "POST",
        "/v2/droplets",
        Some(&untagged),
    ));
    assert_403(&call_as(
        &sim,
        "reader",
        "DELETE",
        &format!("/v2/droplets/{id}"),
        None,
    ));
    assert_403(&call_as(&sim, "reader", "GET", "/v2/account", None));
    assert_403(&call_as(&sim, "reader", "GET", "/v2/sizes", None));
    // Unknown routes stay 404, a wrong method 405.
    assert_eq!(
        call_as(&sim, "nothing", "GET", "/v2/nothing", None).status,
        404
    );
    assert_eq!(
        call_as(&sim, "nothing", "PUT", "/v2/droplets", None).status,
        405
    );

    // creator: creates without tags; tags need tag:create, ssh_keys ssh_key:read,
    // vpc_uuid vpc:read, volumes block_storage:read.
    let r = call_as(&sim, "creator", "POST", "/v2/droplets", Some(&untagged));
    assert_eq!(r.status, 202, "{}", r.text());
    let aid = r.json()["links"]["actions"][0]["id"].as_u64().unwrap();
    assert_403(&call_as(
        &sim,
        "creator",
        "GET",
        &format!("/v2/actions/{aid}"),
        None,
    ));
    assert_eq!(
        call_as(&sim, "reader", "GET", &format!("/v2/actions/{aid}"), None).status,
        200
    );
    let before = sim.droplets().len();
    assert_403(&call_as(
        &sim,
        "creator",
        "POST",
        "/v2/droplets",
        Some(&create_body("s-2")),
    ));
    for (k, v) in [
        ("ssh_keys", json!([1])),
        ("vpc_uuid", json!("760e09ef-dc84-11e8-981e-3cfdfeaae000")),
        ("volumes", json!(["v"])),
    ] {
        let mut b = untagged.clone();
        b[k] = v;
        assert_403(&call_as(&sim, "creator", "POST", "/v2/droplets", Some(&b)));
    }
    assert_eq!(sim.droplets().len(), before, "no 403 creates anything");
    // A bad body is still a 422 first.
    let r = call_as(
        &sim,
        "creator",
        "POST",
        "/v2/droplets",
        Some(&json!({"name": "x"})),
    );
    assert_eq!(r.status, 422);

    // tagger: tagged creates, tag filters, deletes by tag.
    let r = call_as(
        &sim,
        "tagger",
        "POST",
        "/v2/droplets",
        Some(&create_body("s-3")),
    );
    assert_eq!(r.status, 202, "{}", r.text());
    assert_eq!(
        call_as(&sim, "tagger", "GET", "/v2/droplets?tag_name=doproxy", None).status,
        200
    );
    assert_eq!(
        call_as(
            &sim,
            "tagger",
            "DELETE",
            "/v2/droplets?tag_name=doproxy",
            None
        )
        .status,
        204
    );
    assert_403(&call_as(
        &sim,
        "creator",
        "DELETE",
        "/v2/droplets?tag_name=x",
        None,
    ));

    // The main token keeps everything; an unknown one is a 401.
    assert_eq!(get(&sim, "/v2/account").status, 200);
    assert_eq!(
        call_as(&sim, "stranger", "GET", "/v2/account", None).status,
        401
    );

    // Replaced at run time, over /_sim.
    let r = control_post(
        &sim,
        "/_sim/faults",
        &json!({"tokens": [{"token": "acct", "scopes": ["account:read", "sizes:read"]}]}),
    );
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["tokens"][0]["token"], "acct");
    assert_eq!(
        call_as(&sim, "acct", "GET", "/v2/account", None).status,
        200
    );
    assert_eq!(call_as(&sim, "acct", "GET", "/v2/sizes", None).status, 200);
    assert_eq!(
        call_as(&sim, "reader", "GET", "/v2/droplets", None).status,
        401
    );
    let bad = json!({"tokens": [{"token": "has space", "scopes": []}]});
    assert_eq!(control_post(&sim, "/_sim/faults", &bad).status, 400);
    sim.set_faults(Faults {
        tokens: Some(Vec::new()),
        ..Faults::default()
    });
    assert_eq!(
        call_as(&sim, "acct", "GET", "/v2/account", None).status,
        401
    );
}

// ------------------------------------------------------------------ lags

fn total(sim: &Sim) -> u64 {
    get(sim, "/v2/droplets").json()["meta"]["total"]
        .as_u64()
        .unwrap()
}

#[test]
fn list_lag_after_create_hides_from_lists_only() {
    let sim = Sim::start(SimOptions {
        list_lag_after_create: Duration::from_millis(500),
        ..opts()
    })
    .unwrap();
    let start = std::time::Instant::now();
    let id = create_id(&sim, "lagging");
    let g = get(&sim, &format!("/v2/droplets/{id}"));
    let n = total(&sim);
    let by_name = get(&sim, "/v2/droplets?name=lagging").json()["meta"]["total"].clone();
    if start.elapsed() < Duration::from_millis(450) {
        assert_eq!(g.status, 200, "GET by id answers at once");
        assert_eq!(n, 0, "the list lags");
        assert_eq!(by_name, 0);
    }
    assert_eq!(sim.droplets().len(), 1);
    assert!(wait_until(Duration::from_secs(10), || total(&sim) == 1));
    assert!(start.elapsed() >= Duration::from_millis(500));

    // With not_found_after_create too: 404 first, then GET, then the list.
    sim.set_faults(Faults {
        not_found_after_create_ms: Some(300),
        list_lag_after_create_ms: Some(700),
        ..Faults::default()
    });
    let start = std::time::Instant::now();
    let id = sim.create_droplet_direct("both", &[]);
    let g = get(&sim, &format!("/v2/droplets/{id}")).status;
    if start.elapsed() < Duration::from_millis(250) {
        assert_eq!(g, 404);
    }
    assert!(wait_until(Duration::from_secs(10), || get(
        &sim,
        &format!("/v2/droplets/{id}")
    )
    .status
        == 200));
    let seen_at = start.elapsed();
    let n = total(&sim);
    if start.elapsed() < Duration::from_millis(650) {
        assert_eq!(n, 1, "still unlisted at {seen_at:?}");
    }
    assert!(wait_until(Duration::from_secs(10), || total(&sim) == 2));
    assert!(start.elapsed() >= Duration::from_millis(700));
}

#[test]
fn delete_linger_at_run_time_covers_get_and_lists() {
    let sim = Sim::start(SimOptions {
        active_after: Duration::ZERO,
        ..opts()
    })
    .unwrap();
    let r = control_post(&sim, "/_sim/faults", &json!({"delete_linger_ms": 500}));
    assert_eq!(r.json()["delete_linger_ms"], 500);
    let id = sim.create_droplet_direct("ghost", &["t"]);
    let start = std::time::Instant::now();
    assert_eq!(
        call(&sim, "DELETE", &format!("/v2/droplets/{id}"), None).status,
        204
    );
    let g = get(&sim, &format!("/v2/droplets/{id}"));
    let n = total(&sim);
    let tagged = get(&sim, "/v2/droplets?tag_name=t").json()["meta"]["total"].clone();
    if start.elapsed() < Duration::from_millis(450) {
        assert_eq!(g.status, 200);
        assert_eq!((n, tagged), (1, json!(1)));
    }
    assert!(sim.droplets().is_empty());
    assert!(wait_until(Duration::from_secs(10), || get(
        &sim,
        &format!("/v2/droplets/{id}")
    )
    .status
        == 404));
    assert!(start.elapsed() >= Duration::from_millis(500));
    assert_eq!(total(&sim), 0);
}

#[test]
fn lag_jitter_spreads_the_windows_per_droplet() {
    let sim = Sim::start(SimOptions {
        list_lag_after_create: Duration::from_millis(100),
        lag_jitter: Duration::from_millis(900),
        ..opts()
    })
    .unwrap();
    let start = std::time::Instant::now();
    let ids: Vec<u64> = (0..10)
        .map(|i| sim.create_droplet_direct(&format!("j{i}"), &[]))
        .collect();
    let mut first_seen = std::collections::BTreeMap::new();
    while first_seen.len() < ids.len() && start.elapsed() < Duration::from_secs(10) {
        let v = get(&sim, "/v2/droplets").json();
        for d in v["droplets"].as_array().unwrap() {
            first_seen
                .entry(d["id"].as_u64().unwrap())
                .or_insert_with(|| start.elapsed());
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(first_seen.len(), ids.len());
    let min = *first_seen.values().min().unwrap();
    let max = *first_seen.values().max().unwrap();
    assert!(min >= Duration::from_millis(100), "{min:?}");
    assert!(
        max - min >= Duration::from_millis(150),
        "no spread: {first_seen:?}"
    );
    // A zero window stays zero: GET by id answered at once.
    assert!(ids
        .iter()
        .all(|id| get(&sim, &format!("/v2/droplets/{id}")).status == 200));
}

// ------------------------------------------------------------------ nulls

#[test]
fn nulls_for_empty_arrays_objects_and_strings() {
    let sim = Sim::start(SimOptions {
        nulls_for_empty: true,
        active_after: Duration::from_millis(200),
        ..opts()
    })
    .unwrap();
    // An empty list: no droplets, no links.
    let v = get(&sim, "/v2/droplets").json();
    assert_eq!(
        v,
        json!({"droplets": null, "links": null, "meta": {"total": 0}})
    );

    let mut body = create_body("nully");
    body.as_object_mut().unwrap().remove("tags");
    let v = call(&sim, "POST", "/v2/droplets", Some(&body)).json();
    let d = &v["droplet"];
    for k in [
        "networks",
        "tags",
        "volume_ids",
        "backup_ids",
        "snapshot_ids",
        "vpc_uuid",
        "kernel",
        "next_backup_window",
    ] {
        assert!(d.get(k).is_some_and(Value::is_null), "{k}: {d}");
    }
    assert!(d["image"]["tags"].is_null() && d["image"]["description"].is_null());
    assert!(v["links"]["actions"].is_array(), "non-empty arrays stay");
    let id = d["id"].as_u64().unwrap();
    assert!(droplet(&sim, id)["networks"].is_null());

    // Active: networks has v4, and v6 is null; the VPC is known.
    let d = wait_active(&sim, id);
    assert_eq!(d["networks"]["v4"].as_array().unwrap().len(), 2);
    assert!(d["networks"]["v6"].is_null());
    assert!(d["vpc_uuid"].is_string());
    // One page: `links: {"pages": null}`.
    let v = get(&sim, "/v2/droplets").json();
    assert_eq!(v["links"], json!({"pages": null}));
    assert_eq!(v["droplets"][0]["id"], id);
    let aid = call(&sim, "POST", "/v2/droplets", Some(&create_body("n2"))).json()["links"]
        ["actions"][0]["id"]
        .clone();
    // Past the end (two droplets, one per page): droplets null, the links kept.
    let v = get(&sim, "/v2/droplets?page=3&per_page=1").json();
    assert!(v["droplets"].is_null());
    assert!(v["links"]["pages"]["prev"].is_string());
    assert!(get(&sim, &format!("/v2/actions/{aid}")).json()["action"]["completed_at"].is_null());
    assert_eq!(
        get(&sim, "/v2/sizes").json()["links"],
        json!({"pages": null})
    );

    // Off at run time: arrays again.
    sim.set_faults(Faults {
        nulls_for_empty: Some(false),
        ..Faults::default()
    });
    let d = droplet(&sim, id);
    assert_eq!((&d["tags"], &d["networks"]["v6"]), (&json!([]), &json!([])));
    assert_eq!(
        get(&sim, "/v2/droplets?tag_name=none").json()["droplets"],
        json!([])
    );
}

// ------------------------------------------------------------------ ids, actions

#[test]
fn big_ids_start_above_2_to_the_32() {
    let sim = Sim::start(SimOptions {
        big_ids: true,
        ..opts()
    })
    .unwrap();
    let v = call(&sim, "POST", "/v2/droplets", Some(&create_body("big"))).json();
    let id = v["droplet"]["id"].as_u64().unwrap();
    let aid = v["links"]["actions"][0]["id"].as_u64().unwrap();
    assert!(id > 1 << 32 && aid > 1 << 32, "{id} {aid}");
    assert_eq!(droplet(&sim, id)["id"], id);
    assert_eq!(
        get(&sim, &format!("/v2/actions/{aid}")).json()["action"]["resource_id"],
        id
    );
    assert_eq!(
        call(&sim, "DELETE", &format!("/v2/droplets/{id}"), None).status,
        204
    );

    // Turned on at run time, the next ids jump; turned off, they keep counting.
    let small = Sim::start(opts()).unwrap();
    let a = small.create_droplet_direct("a", &[]);
    assert!(a < 1 << 32);
    let r = control_post(&small, "/_sim/faults", &json!({"big_ids": true}));
    assert_eq!(r.json()["big_ids"], true);
    let b = small.create_droplet_direct("b", &[]);
    assert!(b > 1 << 32);
    small.set_faults(Faults {
        big_ids: Some(false),
        ..Faults::default()
    });
    assert_eq!(small.create_droplet_direct("c", &[]), b + 1);
}

#[test]
fn shuffled_action_links_in_multi_creates() {
    let sim = Sim::start(SimOptions {
        shuffle_actions: true,
        ..opts()
    })
    .unwrap();
    let body = json!({ "names": ["m-1", "m-2", "m-3", "m-4", "m-5"], "size": "s-1vcpu-1gb", "image": "ubuntu-24-04-x64" });
    let v = call(&sim, "POST", "/v2/droplets", Some(&body)).json();
    let ids: Vec<u64> = v["droplets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["id"].as_u64().unwrap())
        .collect();
    let owners: Vec<u64> = v["links"]["actions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            let a = get(&sim, &format!("/v2/actions/{}", a["id"])).json();
            a["action"]["resource_id"].as_u64().unwrap()
        })
        .collect();
    assert_ne!(owners, ids, "the i-th action is not the i-th droplet's");
    let mut sorted = owners.clone();
    sorted.sort();
    assert_eq!(sorted, ids, "one action per droplet, resource_id right");
    // A single create has one action; unshuffled at run time.
    assert_eq!(
        call(&sim, "POST", "/v2/droplets", Some(&create_body("one"))).json()["links"]["actions"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    sim.set_faults(Faults {
        shuffle_actions: Some(false),
        ..Faults::default()
    });
    let v = call(&sim, "POST", "/v2/droplets", Some(&body)).json();
    let first = v["links"]["actions"][0]["id"].clone();
    let owner = get(&sim, &format!("/v2/actions/{first}")).json()["action"]["resource_id"].clone();
    assert_eq!(owner, v["droplets"][0]["id"]);
}

// ------------------------------------------------------------------ metadata

#[test]
fn metadata_anchor_reserved_ip_and_ipv6() {
    let sim = Sim::start(opts()).unwrap();
    let text = |p: &str| {
        let r = raw(sim.addr(), "GET", p, &[], None).unwrap();
        assert_eq!(r.status, 200, "{p}");
        r.text()
    };
    let status = |p: &str| raw(sim.addr(), "GET", p, &[], None).unwrap().status;
    // Defaults: an anchor at 127.0.0.1, no reserved IP, no IPv6.
    assert_eq!(
        text("/metadata/v1/interfaces/public/0/"),
        "mac\ntype\nipv4/\nanchor_ipv4/\n"
    );
    assert_eq!(
        text("/metadata/v1/interfaces/public/0/anchor_ipv4/"),
        "address\nnetmask\ngateway\n"
    );
    assert_eq!(
        text("/metadata/v1/interfaces/public/0/anchor_ipv4/address"),
        "127.0.0.1"
    );
    assert_eq!(
        text("/metadata/v1/interfaces/public/0/anchor_ipv4/netmask"),
        "255.255.0.0"
    );
    assert_eq!(
        text("/metadata/v1/interfaces/public/0/anchor_ipv4/gateway"),
        "127.0.0.1"
    );
    assert_eq!(
        text("/metadata/v1/reserved_ip/ipv4/"),
        "active\nip_address\n"
    );
    assert_eq!(text("/metadata/v1/reserved_ip/ipv4/active"), "false");
    assert_eq!(text("/metadata/v1/reserved_ip/ipv4/ip_address"), "");
    assert_eq!(text("/metadata/v1/floating_ip/ipv4/active"), "false");
    assert_eq!(status("/metadata/v1/interfaces/public/0/ipv6/address"), 404);
    assert_eq!(
        status("/metadata/v1/interfaces/private/0/anchor_ipv4/address"),
        404
    );
    let j = raw(sim.addr(), "GET", "/metadata/v1.json", &[], None)
        .unwrap()
        .json();
    assert_eq!(j["reserved_ip"], json!({"ipv4": {"active": false}}));
    assert_eq!(
        j["interfaces"]["public"][0]["anchor_ipv4"]["ip_address"],
        "127.0.0.1"
    );

    // A reserved IP and IPv6, at run time over /_sim.
    let m = json!({"id": 1000, "hostname": "sim-lb", "public_ipv4": "127.0.0.1",
        "private_ipv4": "127.0.0.1", "user_data": "", "region": "nyc3", "tags": [],
        "anchor_ipv4": "127.0.3.4", "reserved_ipv4": "127.5.6.7", "public_ipv6": "::1"});
    let r = control_post(&sim, "/_sim/faults", &json!({"metadata": m}));
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["metadata"]["reserved_ipv4"], "127.5.6.7");
    assert_eq!(text("/metadata/v1/reserved_ip/ipv4/active"), "true");
    assert_eq!(
        text("/metadata/v1/reserved_ip/ipv4/ip_address"),
        "127.5.6.7"
    );
    assert_eq!(
        text("/metadata/v1/floating_ip/ipv4/ip_address"),
        "127.5.6.7"
    );
    assert_eq!(
        text("/metadata/v1/interfaces/public/0/anchor_ipv4/address"),
        "127.0.3.4"
    );
    assert_eq!(
        text("/metadata/v1/interfaces/public/0/anchor_ipv4/gateway"),
        "127.0.0.1"
    );
    assert_eq!(text("/metadata/v1/interfaces/public/0/ipv6/address"), "::1");
    assert_eq!(text("/metadata/v1/interfaces/public/0/ipv6/cidr"), "128");
    let j = raw(sim.addr(), "GET", "/metadata/v1.json", &[], None)
        .unwrap()
        .json();
    assert_eq!(
        j["reserved_ip"],
        json!({"ipv4": {"active": true, "ip_address": "127.5.6.7"}})
    );
    assert_eq!(j["interfaces"]["public"][0]["ipv6"]["ip_address"], "::1");

    // Loopback only, at run time and at start.
    let mut bad = m.clone();
    bad["reserved_ipv4"] = json!("45.55.96.17");
    assert_eq!(
        control_post(&sim, "/_sim/faults", &json!({"metadata": bad})).status,
        400
    );
    assert_eq!(
        text("/metadata/v1/reserved_ip/ipv4/ip_address"),
        "127.5.6.7",
        "unchanged"
    );
    let e = Sim::start(SimOptions {
        metadata: do_sim::MetadataIdentity {
            anchor_ipv4: Some("10.17.0.160".into()),
            ..Default::default()
        },
        ..opts()
    })
    .unwrap_err();
    assert!(e.to_string().contains("127.0.0.0/8"), "{e}");
    // No anchor at all (a custom image).
    let custom = Sim::start(SimOptions {
        metadata: do_sim::MetadataIdentity {
            anchor_ipv4: None,
            ..Default::default()
        },
        ..opts()
    })
    .unwrap();
    let r = raw(
        custom.addr(),
        "GET",
        "/metadata/v1/interfaces/public/0/anchor_ipv4/address",
        &[],
        None,
    )
    .unwrap();
    assert_eq!(r.status, 404);
}

// ------------------------------------------------------------------ /_sim/state

#[test]
fn state_shows_every_knob() {
    let sim = Sim::start(opts()).unwrap();
    let o = raw(sim.addr(), "GET", "/_sim/state", &[], None)
        .unwrap()
        .json()["options"]
        .clone();
    let expect = json!({
        "not_found_after_create_ms": 0, "list_lag_after_create_ms": 0, "delete_linger_ms": 0,
        "lag_jitter_ms": 0, "omit_hourly_retry_after": false, "error_placement": "before",
        "reset_placement": "creates-after", "cloudflare_rate": 0.0, "cloudflare_after_rate": 0.0,
        "nulls_for_empty": false, "tokens": [], "big_ids": false, "shuffle_actions": false,
        "locked_while_new": false,
    });
    for (k, v) in expect.as_object().unwrap() {
        assert_eq!(&o[k], v, "{k}");
    }
    assert_eq!(o["metadata"]["anchor_ipv4"], "127.0.0.1");
    assert!(o["metadata"]["reserved_ipv4"].is_null());
}
