//! Integration tests for the loadable apps: `app_service_time` (global, live, per
//! droplet, `?ms=N`) and `app_concurrency` (a per-droplet worker pool). Every timing
//! assertion is a lower bound, or an ordering between two requests started together.

// Test code: a failed unwrap is a failed test, with its message.
#![allow(clippy::unwrap_used)]

mod common;

use std::io::BufReader;
use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use common::*;
use do_sim::{Sim, SimOptions};
use serde_json::{json, Value};

/// A simulator serving apps on a free port, droplets active at once.
fn load_sim(opts: SimOptions) -> (Sim, u16) {
    let port = free_port();
    let sim = Sim::start(SimOptions {
        serve_apps: true,
        backend_port: port,
        active_after: Duration::ZERO,
        ..opts
    })
    .unwrap();
    (sim, port)
}

/// A direct droplet and its app's address.
fn app(sim: &Sim, port: u16, name: &str) -> (u64, SocketAddr) {
    let id = sim.create_droplet_direct(name, &[]);
    let d = sim.droplets().into_iter().find(|d| d.id == id).unwrap();
    let ip: Ipv4Addr = d.private_ipv4.unwrap().parse().unwrap();
    (id, SocketAddr::from((ip, port)))
}

/// One `GET target` on a new connection; returns how long it took.
fn timed_get(addr: SocketAddr, target: &str) -> Duration {
    let t = Instant::now();
    let r = raw(addr, "GET", target, &[], None).unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r.text().starts_with("Droplet: "), "{}", r.text());
    t.elapsed()
}

fn control(sim: &Sim, path: &str, body: &Value) -> Resp {
    raw(
        sim.addr(),
        "POST",
        path,
        &[],
        Some(body.to_string().as_bytes()),
    )
    .unwrap()
}

fn state_options(sim: &Sim) -> Value {
    raw(sim.addr(), "GET", "/_sim/state", &[], None)
        .unwrap()
        .json()["options"]
        .clone()
}

#[test]
fn service_time_delays_every_app_request() {
    let (sim, port) = load_sim(SimOptions {
        app_service_time: Duration::from_millis(200),
        ..opts()
    });
    let (_, addr) = app(&sim, port, "slow-1");
    // Any method and path, the health check's GET / included.
    assert!(timed_get(addr, "/") >= Duration::from_millis(190));
    let t = Instant::now();
    let r = raw(addr, "OPTIONS", "/health", &[], None).unwrap();
    assert_eq!(r.status, 200);
    assert!(t.elapsed() >= Duration::from_millis(190));
    let o = state_options(&sim);
    assert_eq!(
        (&o["app_service_time_ms"], &o["app_concurrency"]),
        (&json!(200), &Value::Null)
    );
}

#[test]
fn query_ms_sets_one_requests_service_time() {
    let (sim, port) = load_sim(opts());
    let (_, addr) = app(&sim, port, "query-1");
    assert!(timed_get(addr, "/?ms=300") >= Duration::from_millis(290));
    assert!(timed_get(addr, "/slow?x=1&ms=250") >= Duration::from_millis(240));
}

#[test]
fn query_status_sets_one_answers_status() {
    let (sim, port) = load_sim(opts());
    let (_, addr) = app(&sim, port, "status-1");
    let status = |target: &str| {
        do_sim::sandbox::load::http_get(addr, target, Duration::from_secs(5)).map(|a| a.0)
    };
    assert_eq!(status("/?status=500"), Some(500));
    assert_eq!(status("/health?x=1&status=404"), Some(404));
    assert_eq!(status("/"), Some(200));
    // Not a status: the page as usual.
    assert_eq!(status("/?status=42"), Some(200));
    assert_eq!(status("/?status=oops"), Some(200));
}

#[test]
fn concurrency_limit_serves_in_waves() {
    let (sim, port) = load_sim(SimOptions {
        app_service_time: Duration::from_millis(300),
        app_concurrency: Some(2),
        ..opts()
    });
    let (_, addr) = app(&sim, port, "pool-1");
    let start = Instant::now();
    let done: Vec<Duration> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..4)
            .map(|_| {
                s.spawn(move || {
                    timed_get(addr, "/");
                    start.elapsed()
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let last = done.iter().max().unwrap();
    assert!(*last >= Duration::from_millis(580), "{done:?}");
    assert_eq!(state_options(&sim)["app_concurrency"], 2);
}

#[test]
fn live_knobs_apply_to_a_running_droplet() {
    let (sim, port) = load_sim(opts());
    let (_, addr) = app(&sim, port, "live-1");
    // A keep-alive connection opened before the change.
    let mut s = connect(addr).unwrap();
    let mut reader = BufReader::new(s.try_clone().unwrap());
    write_request(&mut s, "GET", "/", &[], None, false).unwrap();
    assert_eq!(read_response(&mut reader).unwrap().status, 200);

    let r = control(&sim, "/_sim/faults", &json!({ "app_service_time_ms": 250 }));
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["app_service_time_ms"], 250);
    let t = Instant::now();
    write_request(&mut s, "GET", "/", &[], None, false).unwrap();
    assert_eq!(read_response(&mut reader).unwrap().status, 200);
    assert!(t.elapsed() >= Duration::from_millis(240));
    assert!(timed_get(addr, "/") >= Duration::from_millis(240));

    // The worker pool, live: one at a time, so two requests take two service times.
    let r = control(&sim, "/_sim/faults", &json!({ "app_concurrency": 1 }));
    assert_eq!(r.json()["app_concurrency"], 1);
    let start = Instant::now();
    std::thread::scope(|sc| {
        let a = sc.spawn(|| timed_get(addr, "/"));
        let b = sc.spawn(|| timed_get(addr, "/"));
        a.join().unwrap();
        b.join().unwrap();
    });
    assert!(start.elapsed() >= Duration::from_millis(490));

    // 0 is refused, changing nothing; null lifts the limit.
    let r = control(&sim, "/_sim/faults", &json!({ "app_concurrency": 0 }));
    assert_eq!(r.status, 400, "{}", r.text());
    assert_eq!(state_options(&sim)["app_concurrency"], 1);
    let r = control(&sim, "/_sim/faults", &json!({ "app_concurrency": null }));
    assert_eq!(r.status, 200);
    assert!(r.json()["app_concurrency"].is_null());
    // Through the library too.
    sim.set_faults(do_sim::Faults {
        app_service_time_ms: Some(0),
        app_concurrency: Some(Some(3)),
        ..Default::default()
    });
    let o = state_options(&sim);
    assert_eq!(
        (&o["app_service_time_ms"], &o["app_concurrency"]),
        (&json!(0), &json!(3))
    );
}

#[test]
fn per_droplet_service_time_overrides_only_that_droplet() {
    let (sim, port) = load_sim(opts());
    let (slow, slow_addr) = app(&sim, port, "own-slow");
    let (fast, fast_addr) = app(&sim, port, "own-fast");

    let r = control(
        &sim,
        &format!("/_sim/droplets/{slow}/app"),
        &json!({ "service_time_ms": 1000 }),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json(), json!({ "id": slow, "service_time_ms": 1000 }));
    let detail = |id: u64| {
        raw(
            sim.addr(),
            "GET",
            &format!("/_sim/droplets/{id}"),
            &[],
            None,
        )
        .unwrap()
        .json()["app_service_time_ms"]
            .clone()
    };
    assert_eq!((detail(slow), detail(fast)), (json!(1000), Value::Null));

    // Started together: the other droplet answers first, the slow one takes its time.
    let start = Instant::now();
    let (slow_done, fast_done) = std::thread::scope(|s| {
        let h = s.spawn(|| {
            timed_get(slow_addr, "/");
            start.elapsed()
        });
        timed_get(fast_addr, "/");
        let fast_done = start.elapsed();
        (h.join().unwrap(), fast_done)
    });
    assert!(slow_done >= Duration::from_millis(990), "{slow_done:?}");
    assert!(fast_done < slow_done, "{fast_done:?} vs {slow_done:?}");

    // The override wins over the global knob; the library call sets it too.
    sim.set_faults(do_sim::Faults {
        app_service_time_ms: Some(5000),
        ..Default::default()
    });
    assert!(sim.set_app_service_time_direct(fast, Some(Duration::from_millis(200))));
    assert!(timed_get(fast_addr, "/") >= Duration::from_millis(190));
    assert_eq!(detail(fast), 200);

    // null clears it; bad bodies and unknown droplets are refused.
    let r = control(
        &sim,
        &format!("/_sim/droplets/{slow}/app"),
        &json!({ "service_time_ms": null }),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r.json()["service_time_ms"].is_null());
    assert_eq!(detail(slow), Value::Null);
    for bad in [
        json!({}),
        json!({ "service_time_ms": "x" }),
        json!({ "ms": 5 }),
    ] {
        let r = control(&sim, &format!("/_sim/droplets/{slow}/app"), &bad);
        assert_eq!(r.status, 400, "{bad}: {}", r.text());
    }
    let r = control(
        &sim,
        "/_sim/droplets/4242/app",
        &json!({ "service_time_ms": 1 }),
    );
    assert_eq!(r.status, 404);
    assert!(!sim.set_app_service_time_direct(4242, None));
    sim.set_faults(do_sim::Faults {
        app_service_time_ms: Some(0),
        ..Default::default()
    });
}
