//! How `create` polls (README, `poll_interval`): the first poll comes soon after the
//! create, then the pauses grow to `poll_interval`; when `ratelimit-remaining` is low the
//! pauses are at least twice `poll_interval`, leaving the hourly budget to other commands.
//! Measured from the arrival times in do-sim's request log: lower bounds, and upper
//! bounds only with a wide margin or on counts (a slow machine polls later, never sooner,
//! never more often).

use crate::support::*;
use do_sim::SimOptions;
use std::time::Duration;

/// Arrival times (ms since the simulator started) of the POST and of the tag listings that
/// came after it while the droplet was still booting (`booting_ms` after the POST).
fn polls(env: &TestEnv, booting_ms: u64) -> (u64, Vec<u64>) {
    let log = env.sim.requests();
    let post = log
        .iter()
        .find(|r| r.method == "POST")
        .unwrap_or_else(|| panic!("no POST: {log:?}"))
        .at_ms;
    let lists = log
        .iter()
        .filter(|r| {
            r.method == "GET"
                && r.path == "/v2/droplets"
                && r.query.as_deref().is_some_and(|q| q.contains("tag_name="))
                && r.at_ms > post
                && r.at_ms < post + booting_ms
        })
        .map(|r| r.at_ms)
        .collect();
    (post, lists)
}

#[test]
fn create_polls_soon_then_backs_off_to_poll_interval() {
    let opts = SimOptions {
        active_after: Duration::from_millis(2500),
        ..fast_sim_options()
    };
    let env = TestEnv::with_options(opts, false);
    env.configure(|c| c.poll_interval = Some("800ms".into()));
    env.run(&["create"]).ok();
    let (post, lists) = polls(&env, 2400);
    assert!(lists.len() >= 2, "{:?}", env.sim.requests());
    // First look after poll_interval / 8 (100 ms): not at once, and well before 800 ms.
    let first = lists[0] - post;
    assert!(
        (95..600).contains(&first),
        "first poll {first} ms after the POST (expected about 100): {lists:?}"
    );
    // Then pauses of 200, 400, 800, 800 ms: growing, never a burst (5 polls while the
    // droplet boots for 2.4 s).
    assert!(
        lists[1] - lists[0] >= 190,
        "polls {lists:?} (POST at {post})"
    );
    assert!(
        lists.len() <= 6,
        "{} polls in 2.4 s with poll_interval 800ms: {lists:?}",
        lists.len()
    );
    eprintln!("FIGURES polling: POST at {post} ms, polls at {lists:?}");
}

#[test]
fn create_polls_less_often_when_few_requests_are_left() {
    // An hourly budget of 90: `ratelimit-remaining` is below 100 from the first answer.
    let opts = SimOptions {
        active_after: Duration::from_millis(1200),
        rate_limit_per_hour: 90,
        ..fast_sim_options()
    };
    let env = TestEnv::with_options(opts, false);
    env.configure(|c| c.poll_interval = Some("100ms".into()));
    env.run(&["create"]).ok();
    let (post, lists) = polls(&env, 1100);
    assert!(lists.len() >= 2, "{:?}", env.sim.requests());
    // Every pause is at least 2 x poll_interval (the schedule alone would be 12, 25, 50 ms).
    let mut at = post;
    for t in &lists {
        assert!(
            t - at >= 190,
            "a poll {} ms after the one before, with ratelimit-remaining below 100: POST at {post}, polls {lists:?}",
            t - at
        );
        at = *t;
    }
}

#[test]
fn the_live_line_keeps_moving_between_polls_without_extra_requests() {
    let opts = SimOptions {
        active_after: Duration::from_millis(1500),
        ..fast_sim_options()
    };
    let env = TestEnv::with_options(opts, false);
    env.configure(|c| c.poll_interval = Some("1s".into()));
    let r = env
        .run_env(&["create"], &[("DOPROXY_PROGRESS", "live")])
        .ok();
    // Polls at about 125, 375, 875 and 1875 ms; the line is redrawn every 100 ms between
    // them, so its spinner and elapsed time move.
    // (About 15 draws of the line, each writing it about 3 times; drawing only at the
    // polls would write it about 15 times.)
    let redraws = r.stderr.matches("waiting for 1 droplet(s)").count();
    assert!(redraws >= 30, "{redraws} redraws in 1.5 s: {:?}", r.stderr);
    let (_, lists) = polls(&env, 1400);
    assert!(
        (1..=5).contains(&lists.len()),
        "{} polls in 1.4 s with poll_interval 1s: {lists:?}",
        lists.len()
    );
}

/// With recent creates on record (the journal's `activations_ms`), create polls once near
/// the usual time and then every second (at most), instead of backing off: fewer requests,
/// and the droplet is seen within a second of turning active.
#[test]
fn create_learns_the_usual_activation_time() {
    let opts = SimOptions {
        active_after: Duration::from_millis(4000),
        list_lag_after_create: Duration::ZERO, // the lag would blur the lower bounds
        lag_jitter: Duration::ZERO,
        ..fast_sim_options()
    };
    let env = TestEnv::with_options(opts, false);
    env.configure(|c| c.poll_interval = Some("2s".into()));
    // Three recent creates took about 4 s.
    env.write(
        "inventory.journal",
        "{\"activations_ms\": [4000, 4100, 3900]}\n",
    );
    env.run(&["create"]).ok();
    let (post, lists) = polls(&env, 60_000);
    let after: Vec<u64> = lists.iter().map(|t| t - post).collect();
    // Nothing before 1 s ahead of the fastest usual time (3.9 s - 1 s), then polls every
    // second: the one that sees it active comes within 1 s (+ scheduling slack) of 4 s.
    assert!(after[0] >= 2800, "first poll {after:?} ms after the POST");
    let seen = *after
        .iter()
        .find(|t| **t >= 4000)
        .expect("no poll after 4 s");
    assert!(
        (4000..5400).contains(&seen),
        "the poll that saw it active came {seen} ms after the POST: {after:?}"
    );
    // Backing off from 250 ms would have polled at about 0.25, 0.75, 1.75, 3.75, 5.75 s.
    // Here: 3 polls, then the listing that adds it to HAProxy.
    assert!(after.len() <= 4, "{after:?}");
    // This create's own time is on record for the next one.
    let journal = env.read("inventory.journal");
    assert!(journal.contains("activations_ms"), "{journal}");
    eprintln!("FIGURES polling (learned): polls at {after:?} ms after the POST");
}
