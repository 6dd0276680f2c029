//! The etcd v3 client (`doproxy::store::etcd`) against real etcd processes on 127.0.0.1, started
//! by the tests (skipped when etcd is not installed, unless CI is set): key-value calls,
//! compare-and-swap under contention, the lease lock, the autoscaler's leadership and published
//! signals, and watches that survive an etcd restart and the loss of a cluster member.

use crate::support::etcd::{post_json, EtcdCluster};
use doproxy::store::etcd::{Client, Compacted, Compare, Op, Options, Watch, WatchEvent};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const TIMEOUT: Duration = Duration::from_secs(2);

fn client(endpoints: Vec<String>) -> Client {
    Client::new(Options {
        endpoints,
        timeout: TIMEOUT,
        username: None,
        password: None,
        ca_pem: None,
        identity_pem: None,
    })
    .unwrap()
}

fn put_op(key: &str, value: &str) -> Op {
    Op::Put {
        key: key.to_string(),
        value: value.to_string(),
        lease: None,
    }
}

/// Compacts `etcd`'s history up to `revision` (physically: the revisions before it are gone).
fn compact(etcd: &EtcdCluster, revision: i64) {
    let (code, body) = post_json(
        etcd,
        0,
        "/v3/kv/compaction",
        &format!(r#"{{"revision":"{revision}","physical":true}}"#),
    )
    .expect("etcd answers");
    assert_eq!(code, 200, "{body}");
}

/// Reads events until `done` says so or `deadline` passes; every event with the time it
/// arrived.
async fn collect(
    mut w: Watch,
    deadline: Instant,
    done: impl Fn(&[(WatchEvent, Instant)]) -> bool,
) -> (Watch, Vec<(WatchEvent, Instant)>) {
    let mut seen = Vec::new();
    while !done(&seen) {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        match tokio::time::timeout(left, w.next()).await {
            Ok(Ok(events)) => {
                let now = Instant::now();
                seen.extend(events.into_iter().map(|e| (e, now)));
            }
            Ok(Err(e)) => panic!("watch failed: {e:#}"),
            Err(_) => break,
        }
    }
    (w, seen)
}

/// Revisions strictly increasing across batches, i.e. nothing delivered twice (every
/// change in these tests touches one key, so one event per revision).
fn assert_strictly_increasing(events: &[(WatchEvent, Instant)]) {
    for pair in events.windows(2) {
        assert!(
            pair[0].0.revision() < pair[1].0.revision(),
            "events out of order or repeated: {:?} then {:?}",
            pair[0].0,
            pair[1].0
        );
    }
}

/// Puts until acknowledged (the client already fails over; this rides out longer gaps).
async fn put_retrying(c: &Client, key: &str, value: &str, within: Duration) -> i64 {
    let deadline = Instant::now() + within;
    loop {
        match c.put(key, value, None).await {
            Ok(rev) => return rev,
            Err(e) if Instant::now() < deadline => {
                eprintln!("put {key} failed, retrying: {e:#}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("put {key} never succeeded: {e:#}"),
        }
    }
}

#[tokio::test]
async fn etcd_kv_put_get_range_delete_and_leases() {
    let Some(etcd) = EtcdCluster::start_single() else {
        return;
    };
    let c = client(etcd.endpoints());
    assert_eq!(c.get("inv/a").await.unwrap(), None);

    let r1 = c.put("inv/a", "1", None).await.unwrap();
    let kv = c.get("inv/a").await.unwrap().unwrap();
    assert_eq!((kv.key.as_str(), kv.value.as_str()), ("inv/a", "1"));
    assert_eq!(
        (kv.create_revision, kv.mod_revision, kv.version),
        (r1, r1, 1)
    );
    let r2 = c.put("inv/a", "ünïcode ✓\nline", None).await.unwrap();
    assert!(r2 > r1);
    let kv = c.get("inv/a").await.unwrap().unwrap();
    assert_eq!(kv.value, "ünïcode ✓\nline");
    assert_eq!(
        (kv.create_revision, kv.mod_revision, kv.version),
        (r1, r2, 2)
    );
    c.put("inv/b", "", None).await.unwrap();
    c.put("inv", "not under the prefix", None).await.unwrap();
    let r_last = c.put("inw/x", "not under the prefix", None).await.unwrap();
    assert_eq!(c.get("inv/b").await.unwrap().unwrap().value, "");

    let (kvs, rev) = c.range_prefix("inv/").await.unwrap();
    let keys: Vec<&str> = kvs.iter().map(|kv| kv.key.as_str()).collect();
    assert_eq!(keys, ["inv/a", "inv/b"]);
    assert_eq!(rev, r_last);

    // More keys than one range page: written 120 per transaction (etcd's limit is 128).
    for batch in 0..5 {
        let ops = (0..120)
            .map(|i| put_op(&format!("big/{:04}", batch * 120 + i), &format!("{i}")))
            .collect();
        let t = c.txn(vec![], ops, vec![]).await.unwrap();
        assert!(t.succeeded);
    }
    let (kvs, rev) = c.range_prefix("big/").await.unwrap();
    assert_eq!(kvs.len(), 600);
    assert!(kvs.windows(2).all(|w| w[0].key < w[1].key));
    assert_eq!(kvs[599].key, "big/0599");
    assert_eq!(rev, kvs[599].mod_revision);
    let t = c
        .txn(
            vec![],
            vec![Op::DeletePrefix {
                prefix: "big/".into(),
            }],
            vec![],
        )
        .await
        .unwrap();
    assert!(t.succeeded);
    assert!(c.range_prefix("big/").await.unwrap().0.is_empty());

    assert_eq!(c.delete("inv/a").await.unwrap(), 1);
    assert_eq!(c.delete("inv/a").await.unwrap(), 0);
    assert_eq!(c.get("inv/a").await.unwrap(), None);
    assert_eq!(
        c.get("inv").await.unwrap().unwrap().value,
        "not under the prefix"
    );

    // Leases: attached keys go with the lease.
    let lease = c.lease_grant(30).await.unwrap();
    c.put("inv/leased", "x", Some(lease)).await.unwrap();
    assert_eq!(c.get("inv/leased").await.unwrap().unwrap().lease, lease);
    let ttl = c.lease_keepalive(lease).await.unwrap();
    assert!((1..=30).contains(&ttl), "ttl {ttl}");
    c.lease_revoke(lease).await.unwrap();
    assert_eq!(c.get("inv/leased").await.unwrap(), None);
    assert_eq!(c.lease_keepalive(lease).await.unwrap(), 0);
    c.lease_revoke(lease).await.unwrap(); // already gone: fine
    assert!(c.lease_grant(0).await.is_err());

    // A dead endpoint first in the list: the call moves on, and the next one starts at
    // the endpoint that answered.
    let dead = format!("http://127.0.0.1:{}", {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    });
    let live = etcd.endpoint(0);
    let c2 = client(vec![dead, live.clone()]);
    let t = Instant::now();
    assert!(c2.get("inv/b").await.unwrap().is_some());
    eprintln!("etcd: failover past a dead endpoint took {:?}", t.elapsed());
    assert_eq!(c2.current_endpoint(), live);

    // Errors are one line.
    let err = c
        .txn(
            vec![],
            (0..200).map(|i| put_op(&format!("t/{i}"), "x")).collect(),
            vec![],
        )
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("too many operations"), "{err}");
    assert!(!err.contains('\n'), "{err}");
}

#[tokio::test]
async fn etcd_txn_compare_and_swap() {
    let Some(etcd) = EtcdCluster::start_single() else {
        return;
    };
    let c = client(etcd.endpoints());
    let r1 = c.put("cas/k", "v1", None).await.unwrap();
    let swap = |seen: i64, value: &str| {
        (
            vec![Compare::ModRevision("cas/k".into(), seen)],
            vec![put_op("cas/k", value)],
        )
    };
    let (cmp, ops) = swap(r1, "v2");
    let t = c.txn(cmp, ops, vec![]).await.unwrap();
    assert!(t.succeeded);
    assert!(t.revision > r1);
    // The same compare is stale now.
    let (cmp, ops) = swap(r1, "v3");
    let t2 = c
        .txn(cmp, ops, vec![put_op("cas/failed", "yes")])
        .await
        .unwrap();
    assert!(!t2.succeeded);
    assert_eq!(c.get("cas/k").await.unwrap().unwrap().value, "v2");
    assert_eq!(c.get("cas/failed").await.unwrap().unwrap().value, "yes");

    // Create-if-absent.
    let create = || {
        (
            vec![Compare::CreateRevision("cas/new".into(), 0)],
            vec![put_op("cas/new", "first")],
        )
    };
    let (cmp, ops) = create();
    assert!(c.txn(cmp, ops, vec![]).await.unwrap().succeeded);
    let (cmp, ops) = create();
    assert!(!c.txn(cmp, ops, vec![]).await.unwrap().succeeded);
    // Version and value compares; several compares are a conjunction.
    let kv = c.get("cas/k").await.unwrap().unwrap();
    let ok = c
        .txn(
            vec![
                Compare::Version("cas/k".into(), 2),
                Compare::Value("cas/k".into(), "v2".into()),
                Compare::CreateRevision("cas/k".into(), kv.create_revision),
                Compare::Version("cas/absent".into(), 0),
            ],
            vec![Op::Delete {
                key: "cas/new".into(),
            }],
            vec![],
        )
        .await
        .unwrap();
    assert!(ok.succeeded);
    assert_eq!(c.get("cas/new").await.unwrap(), None);
    let bad = c
        .txn(
            vec![
                Compare::Version("cas/k".into(), 2),
                Compare::Value("cas/k".into(), "nope".into()),
            ],
            vec![put_op("cas/k", "never")],
            vec![],
        )
        .await
        .unwrap();
    assert!(!bad.succeeded);
    assert_eq!(c.get("cas/k").await.unwrap().unwrap().value, "v2");
}

/// One worker of the append test: read the list, append `id` guarded by the revision it
/// read, retry on conflict. Idempotent: if a transaction's outcome was unknown and it had
/// in fact been applied, the id is already there and the worker stops.
async fn cas_append(c: Client, key: &'static str, id: String) -> u32 {
    for attempt in 0..1000u32 {
        let current = match c.get(key).await {
            Ok(v) => v,
            Err(_) => {
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue;
            }
        };
        let (mut ids, guard) = match &current {
            None => (Vec::new(), Compare::CreateRevision(key.into(), 0)),
            Some(kv) => (
                kv.value.split(',').map(str::to_string).collect::<Vec<_>>(),
                Compare::ModRevision(key.into(), kv.mod_revision),
            ),
        };
        if ids.contains(&id) {
            return attempt;
        }
        ids.push(id.clone());
        let put = put_op(key, &ids.join(","));
        if let Ok(t) = c.txn(vec![guard], vec![put], vec![]).await {
            if t.succeeded {
                return attempt;
            }
        }
    }
    panic!("worker {id} never got its append in");
}

#[tokio::test]
async fn etcd_concurrent_cas_appends_keep_every_id_exactly_once() {
    let Some(etcd) = EtcdCluster::start_single() else {
        return;
    };
    let started = Instant::now();
    let tasks: Vec<_> = (0..8)
        .map(|i| {
            let c = client(etcd.endpoints());
            tokio::spawn(cas_append(c, "cas/list", format!("id{i}")))
        })
        .collect();
    let mut conflicts = 0;
    for t in tasks {
        conflicts += t.await.unwrap();
    }
    let c = client(etcd.endpoints());
    let kv = c.get("cas/list").await.unwrap().unwrap();
    let mut ids: Vec<&str> = kv.value.split(',').collect();
    assert_eq!(ids.len(), 8, "{}", kv.value);
    ids.sort();
    assert_eq!(
        ids,
        ["id0", "id1", "id2", "id3", "id4", "id5", "id6", "id7"]
    );
    assert_eq!(kv.version, 8, "exactly one successful write per worker");
    eprintln!(
        "etcd: 8 CAS appenders done in {:?} with {conflicts} conflicts retried",
        started.elapsed()
    );
}

#[tokio::test]
async fn etcd_lock_excludes_contenders_and_hands_over() {
    let Some(etcd) = EtcdCluster::start_single() else {
        return;
    };
    let inside = Arc::new(AtomicBool::new(false));
    let worker = |who: usize| {
        let c = client(etcd.endpoints());
        let inside = inside.clone();
        async move {
            let mut spans = Vec::new();
            for _ in 0..4 {
                let lock = c
                    .lock("locks/job", 2, Duration::from_secs(10))
                    .await
                    .unwrap();
                let entered = Instant::now();
                assert!(!inside.swap(true, Ordering::SeqCst), "two holders at once");
                tokio::time::sleep(Duration::from_millis(30)).await;
                inside.store(false, Ordering::SeqCst);
                let left = Instant::now();
                lock.unlock().await.unwrap();
                let released = Instant::now();
                spans.push((entered, left, released, who));
                // Give the other side a chance to queue.
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            spans
        }
    };
    let a = tokio::spawn(worker(0));
    let b = tokio::spawn(worker(1));
    let mut spans = a.await.unwrap();
    spans.extend(b.await.unwrap());
    spans.sort_by_key(|s| s.0);
    let mut handovers = Vec::new();
    for pair in spans.windows(2) {
        let (prev, next) = (pair[0], pair[1]);
        assert!(
            prev.1 <= next.0,
            "critical sections overlap: {prev:?} and {next:?}"
        );
        if prev.3 != next.3 {
            handovers.push(next.0.saturating_duration_since(prev.2));
        }
    }
    assert!(!handovers.is_empty(), "the lock never changed hands");
    let max = handovers.iter().max().copied().unwrap_or_default();
    eprintln!(
        "etcd: lock handovers (release -> other holder in): {} handovers, max {max:?}, all {handovers:?}",
        handovers.len()
    );
    assert!(max < Duration::from_secs(2), "slow handover: {max:?}");
}

#[tokio::test]
async fn etcd_lock_is_freed_when_its_holder_stops_renewing() {
    let Some(etcd) = EtcdCluster::start_single() else {
        return;
    };
    let c1 = client(etcd.endpoints());
    let c2 = client(etcd.endpoints());
    let a = c1
        .lock("locks/dead", 2, Duration::from_secs(5))
        .await
        .unwrap();
    assert!(a.key().starts_with("locks/dead/"));
    // Past the TTL: the background renewal keeps it.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert!(!a.is_lost());
    let kv = c2
        .get(a.key())
        .await
        .unwrap()
        .expect("lock key still there");
    assert_eq!(kv.lease, a.lease());
    assert_eq!(kv.create_revision, a.create_revision());

    // A contender that gives up cleans up after itself.
    let t = Instant::now();
    let err = c2
        .lock("locks/dead", 2, Duration::from_millis(500))
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("timed out"), "{err}");
    assert!(err.contains(a.key()), "names the holder: {err}");
    assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
    let (kvs, _) = c2.range_prefix("locks/dead/").await.unwrap();
    assert_eq!(kvs.len(), 1, "{kvs:?}");

    // The holder "dies": no unlock, renewal stops; the lease runs out.
    let dropped = Instant::now();
    drop(a);
    let b = c2
        .lock("locks/dead", 2, Duration::from_secs(10))
        .await
        .unwrap();
    let took = dropped.elapsed();
    eprintln!("etcd: lock of a dead holder (ttl 2 s) taken over after {took:?}");
    assert!(took < Duration::from_secs(4), "{took:?}");

    // Revoking the holder's lease (what expiry does) hands the lock on at once, and the
    // old holder notices it lost the lock.
    let c3 = client(etcd.endpoints());
    let waiter = tokio::spawn(async move {
        let l = c3
            .lock("locks/dead", 2, Duration::from_secs(10))
            .await
            .unwrap();
        (Instant::now(), l)
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let revoked = Instant::now();
    c1.lease_revoke(b.lease()).await.unwrap();
    let (got, c) = waiter.await.unwrap();
    eprintln!(
        "etcd: lock handed over {:?} after the holder's lease was revoked",
        got.saturating_duration_since(revoked)
    );
    let deadline = Instant::now() + Duration::from_secs(3);
    while !b.is_lost() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        b.is_lost(),
        "the old holder did not notice its lease was gone"
    );
    c.unlock().await.unwrap();
    b.unlock().await.unwrap(); // its lease is gone already: not an error
    assert!(c2.range_prefix("locks/dead/").await.unwrap().0.is_empty());
}

#[tokio::test]
async fn etcd_lock_outlives_a_renewal_that_fails_once() {
    let Some(etcd) = EtcdCluster::start_single() else {
        return;
    };
    let link = Forwarder::to(&etcd);
    let holder = client(vec![link.url()]);
    let observer = client(etcd.endpoints());
    // TTL 6 s: renewed every 2 s, each renewal given 2 s, and retried 0.5 s after one
    // that failed.
    let lock = holder
        .lock("locks/blip", 6, Duration::from_secs(5))
        .await
        .unwrap();
    let taken = Instant::now();
    // A 2.7 s outage from 1.5 s: the renewal due at 2 s times out at 4 s. Its retry comes
    // after the outage and well before the lease (granted at 0) runs out at 6 s.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    link.cut();
    tokio::time::sleep(Duration::from_millis(2700)).await;
    link.restore();
    // Past the lease's first 6 s: only a renewal after the outage can have kept it.
    while taken.elapsed() < Duration::from_secs(7) {
        assert!(!lock.is_lost(), "the lock was lost to a 2.7 s outage");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let kv = observer
        .get(lock.key())
        .await
        .unwrap()
        .expect("the lock key lapsed: the failed renewal was not retried in time");
    assert_eq!(kv.lease, lock.lease());
    lock.unlock().await.unwrap();
}

#[tokio::test]
async fn etcd_calls_ride_out_an_outage_shorter_than_twice_the_timeout() {
    let Some(etcd) = EtcdCluster::start_single() else {
        return;
    };
    let link = Forwarder::to(&etcd);
    // Request timeout 2 s: a call keeps trying for 4 s.
    let c = client(vec![link.url()]);
    c.put("out/k", "v", None).await.unwrap();
    link.cut();
    // (A connection already open closes within the forwarder's 20 ms read timeout.)
    tokio::time::sleep(Duration::from_millis(100)).await;
    let t = Instant::now();
    let (got, ()) = tokio::join!(c.get("out/k"), async {
        tokio::time::sleep(Duration::from_millis(1500)).await;
        link.restore();
    });
    let took = t.elapsed();
    let kv = got.expect("a read during a 1.5 s outage failed");
    assert_eq!(kv.map(|kv| kv.value).as_deref(), Some("v"));
    assert!(took >= Duration::from_millis(1400), "{took:?}");
    // A longer outage ends the call after about 4 s, naming the endpoint, having tried
    // again after pauses that grow from 100 to 500 ms (about 11 tries), not in a loop.
    link.cut();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let before = link.sent.connections.load(Ordering::SeqCst);
    let t = Instant::now();
    let e = format!("{:#}", c.get("out/k").await.unwrap_err());
    let took = t.elapsed();
    let tries = link.sent.connections.load(Ordering::SeqCst) - before;
    eprintln!("etcd: a call through a 4 s outage tried {tries} connections in {took:?}");
    assert!((5..=20).contains(&tries), "{tries} tries: {e}");
    assert!(e.contains("no endpoint answered"), "{e}");
    assert!(e.contains(&link.url()), "{e}");
    assert!(
        took >= Duration::from_millis(3900) && took < Duration::from_secs(7),
        "{took:?}"
    );
    // A lease revoke that reaches nobody is an error too (only a lease already gone is
    // not).
    let quick = Client::new(Options {
        endpoints: vec![link.url()],
        timeout: Duration::from_millis(200),
        username: None,
        password: None,
        ca_pem: None,
        identity_pem: None,
    })
    .unwrap();
    let e = format!("{:#}", quick.lease_revoke(0x1234).await.unwrap_err());
    assert!(e.contains("no endpoint answered"), "{e}");
}

#[tokio::test]
async fn etcd_calls_stay_with_the_endpoint_that_answered() {
    let Some(etcd) = EtcdCluster::start_single() else {
        return;
    };
    let upstream = member_addr(&etcd);
    // Two ways to the same member; the first is down.
    let (down, up) = (Forwarder::start(upstream), Forwarder::start(upstream));
    down.cut();
    let c = client(vec![down.url(), up.url()]);
    for i in 0..6 {
        c.put(&format!("stay/{i}"), "v", None).await.unwrap();
    }
    // The first call tried the dead endpoint and failed over; the others went straight to
    // the one that answered.
    let tried = down.sent.connections.load(Ordering::SeqCst);
    assert!(
        (1..=2).contains(&tried),
        "{tried} connections to the dead endpoint"
    );
    assert_eq!(c.range_prefix("stay/").await.unwrap().0.len(), 6);
}

#[tokio::test]
async fn etcd_a_transaction_whose_answer_is_lost_is_not_sent_again() {
    let Some(etcd) = EtcdCluster::start_single() else {
        return;
    };
    let link = Forwarder::to(&etcd);
    let c = client(vec![link.url()]);
    let raw = client(etcd.endpoints());
    link.sent.lose_txn_answers.store(true, Ordering::SeqCst);
    let e = c
        .txn(
            vec![Compare::CreateRevision("lost/k".into(), 0)],
            vec![put_op("lost/k", "once")],
            vec![],
        )
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("outcome unknown"), "{e}");
    assert_eq!(link.sent.txns.load(Ordering::SeqCst), 1, "sent again: {e}");
    // It was applied: only a re-read can tell, which is the caller's to do.
    let kv = raw
        .get("lost/k")
        .await
        .unwrap()
        .expect("the transaction was applied");
    assert_eq!((kv.value.as_str(), kv.version), ("once", 1));
}

#[tokio::test]
async fn etcd_a_range_read_in_pages_is_one_snapshot() {
    let Some(etcd) = EtcdCluster::start_single() else {
        return;
    };
    let link = Forwarder::to(&etcd);
    let raw = client(etcd.endpoints());
    // 505 keys: a page of 500 and one of 5.
    for i in 0..505 {
        raw.put(&format!("pg/k{i:03}"), "v", None).await.unwrap();
    }
    let c = client(vec![link.url()]);
    link.sent.hold_later_ranges.store(true, Ordering::SeqCst);
    // While the second page is held back, the last key goes and a new one comes.
    let (read, ()) = tokio::join!(c.range_prefix("pg/"), async {
        tokio::time::sleep(Duration::from_millis(150)).await;
        raw.delete("pg/k504").await.unwrap();
        raw.put("pg/k505", "v", None).await.unwrap();
    });
    let (kvs, revision) = read.unwrap();
    assert!(
        link.sent.ranges.load(Ordering::SeqCst) >= 2,
        "not read in pages"
    );
    let keys: Vec<&str> = kvs.iter().map(|kv| kv.key.as_str()).collect();
    assert_eq!(keys.len(), 505);
    assert_eq!(
        keys.last(),
        Some(&"pg/k504"),
        "a page read after the first one's revision"
    );
    assert!(kvs.iter().all(|kv| kv.mod_revision <= revision));
}

#[tokio::test]
async fn etcd_a_quiet_watch_on_a_healthy_member_is_kept_not_reopened() {
    let Some(etcd) = EtcdCluster::start_single() else {
        return;
    };
    let link = Forwarder::to(&etcd);
    let c = client(vec![link.url()]);
    let raw = client(etcd.endpoints());
    let mut w = c.watch("quiet/", 0);
    // Silent for 6.5 s: after 5 s the member is probed with a read, answers, and the
    // stream stays.
    assert!(tokio::time::timeout(Duration::from_millis(6500), w.next())
        .await
        .is_err());
    let (watches, probes) = (
        link.sent.watches.load(Ordering::SeqCst),
        link.sent.ranges.load(Ordering::SeqCst),
    );
    assert_eq!(
        (watches, probes),
        (1, 1),
        "(watch requests, probes) in 6.5 s"
    );
    // And it still delivers.
    raw.put("quiet/k", "v", None).await.unwrap();
    let ev = tokio::time::timeout(Duration::from_secs(3), w.next())
        .await
        .expect("the quiet watch delivered nothing")
        .unwrap();
    assert_eq!(ev[0].key(), "quiet/k");
}

#[tokio::test]
async fn etcd_a_watch_reconnects_with_a_growing_backoff_and_loses_nothing() {
    let Some(etcd) = EtcdCluster::start_single() else {
        return;
    };
    let link = Forwarder::to(&etcd);
    let c = client(vec![link.url()]);
    let raw = client(etcd.endpoints());
    let r0 = raw.put("back/a", "1", None).await.unwrap();
    let mut w = c.watch("back/", r0);
    let first = tokio::time::timeout(Duration::from_secs(3), w.next())
        .await
        .expect("the first event")
        .unwrap();
    assert_eq!(first[0].key(), "back/a");
    // A 3 s outage: reconnection attempts back off 50, 100, 200, 400 then 500 ms apart
    // (about 8 in 3 s), not in a tight loop; a change made meanwhile arrives after it.
    link.cut();
    let before = link.sent.connections.load(Ordering::SeqCst);
    let (next, ()) = tokio::join!(
        tokio::time::timeout(Duration::from_secs(10), w.next()),
        async {
            tokio::time::sleep(Duration::from_millis(500)).await;
            raw.put("back/b", "2", None).await.unwrap();
            tokio::time::sleep(Duration::from_millis(2500)).await;
            link.restore();
        }
    );
    let tries = link.sent.connections.load(Ordering::SeqCst) - before;
    let next = next.expect("nothing after the outage").unwrap();
    assert_eq!(next[0].key(), "back/b");
    eprintln!("etcd: a watch through a 3 s outage tried {tries} connections");
    assert!(
        (3..=20).contains(&tries),
        "{tries} connection attempts in a 3 s outage"
    );
}

#[tokio::test]
async fn etcd_a_watch_on_a_stalled_member_moves_to_another() {
    let Some(etcd) = EtcdCluster::start_single() else {
        return;
    };
    let upstream = member_addr(&etcd);
    // Two ways to the member; the first one stalls (no answer, no close) mid-watch.
    let (stalls, works) = (Forwarder::start(upstream), Forwarder::start(upstream));
    let c = client(vec![stalls.url(), works.url()]);
    let raw = client(etcd.endpoints());
    let r0 = raw.put("stall/a", "1", None).await.unwrap();
    let mut w = c.watch("stall/", r0);
    let first = tokio::time::timeout(Duration::from_secs(3), w.next())
        .await
        .expect("the first event")
        .unwrap();
    assert_eq!(first[0].key(), "stall/a");
    assert_eq!(w.endpoint(), Some(stalls.url().as_str()));
    stalls.sent.freeze.store(true, Ordering::SeqCst);
    let t = Instant::now();
    let (next, ()) = tokio::join!(
        tokio::time::timeout(Duration::from_secs(15), w.next()),
        async {
            tokio::time::sleep(Duration::from_millis(200)).await;
            raw.put("stall/b", "2", None).await.unwrap();
        }
    );
    // Silent for 5 s, the probe finds the member unable to answer; the watch resumes on
    // the other endpoint with nothing lost.
    let next = next
        .expect("the watch stayed on the stalled member")
        .unwrap();
    assert_eq!(next[0].key(), "stall/b");
    assert_eq!(w.endpoint(), Some(works.url().as_str()));
    eprintln!(
        "etcd: a watch left a stalled member after {:?}",
        t.elapsed()
    );
}

#[tokio::test]
async fn etcd_a_watch_from_now_resumes_after_its_start_not_before() {
    let Some(etcd) = EtcdCluster::start_single() else {
        return;
    };
    let link = Forwarder::to(&etcd);
    let c = client(vec![link.url()]);
    let raw = client(etcd.endpoints());
    let before = raw.put("now/old", "1", None).await.unwrap();
    let mut w = c.watch("now/", 0);
    // Connected and created, nothing new yet.
    assert!(tokio::time::timeout(Duration::from_millis(500), w.next())
        .await
        .is_err());
    assert_eq!(
        w.revision(),
        before,
        "it starts after the revision it was created at"
    );
    // A reconnect resumes after that revision: the change made before the watch began is
    // not delivered now.
    link.cut();
    tokio::time::sleep(Duration::from_millis(300)).await;
    link.restore();
    raw.put("now/new", "2", None).await.unwrap();
    let ev = tokio::time::timeout(Duration::from_secs(5), w.next())
        .await
        .expect("nothing after the reconnect")
        .unwrap();
    let keys: Vec<&str> = ev.iter().map(|e| e.key()).collect();
    assert_eq!(keys, ["now/new"]);
}

#[tokio::test]
async fn etcd_watch_delivers_in_order_from_a_revision_and_reports_compaction() {
    let Some(etcd) = EtcdCluster::start_single() else {
        return;
    };
    let c = client(etcd.endpoints());
    let r0 = c.put("w/a", "1", None).await.unwrap();
    c.put("w/b", "2", None).await.unwrap();
    c.delete("w/a").await.unwrap();
    c.put("x/other", "x", None).await.unwrap();
    let t = c
        .txn(vec![], vec![put_op("w/c", "3"), put_op("w/d", "4")], vec![])
        .await
        .unwrap();
    let w = c.watch("w/", r0);
    let (mut w, seen) = collect(w, Instant::now() + Duration::from_secs(5), |s| s.len() >= 5).await;
    let got: Vec<(String, bool, i64)> = seen
        .iter()
        .map(|(e, _)| {
            (
                e.key().to_string(),
                matches!(e, WatchEvent::Put(_)),
                e.revision(),
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            ("w/a".to_string(), true, r0),
            ("w/b".to_string(), true, r0 + 1),
            ("w/a".to_string(), false, r0 + 2),
            ("w/c".to_string(), true, t.revision),
            ("w/d".to_string(), true, t.revision),
        ]
    );
    if let WatchEvent::Put(kv) = &seen[1].0 {
        assert_eq!(kv.value, "2");
    }
    assert_eq!(w.revision(), t.revision);
    let r = c.put("w/e", "5", None).await.unwrap();
    let ev = tokio::time::timeout(Duration::from_secs(5), w.next())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(ev.len(), 1);
    assert_eq!((ev[0].key(), ev[0].revision()), ("w/e", r));

    // From "now": only what happens after the watch starts.
    let mut w0 = c.watch("w/", 0);
    let (events, _) = tokio::join!(
        tokio::time::timeout(Duration::from_secs(5), w0.next()),
        async {
            tokio::time::sleep(Duration::from_millis(300)).await;
            c.put("w/f", "6", None).await.unwrap()
        }
    );
    let events = events.unwrap().unwrap();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].key(), "w/f");

    // Compacted history: the watch says so, with the compaction revision.
    let (_, now) = c.range_prefix("w/").await.unwrap();
    compact(&etcd, now);
    let mut old = c.watch("w/", r0);
    let err = tokio::time::timeout(Duration::from_secs(5), old.next())
        .await
        .unwrap()
        .unwrap_err();
    let compacted = err.downcast_ref::<Compacted>().expect("a Compacted error");
    assert_eq!(compacted.compact_revision, now);
    assert_eq!(compacted.requested, r0);
    assert!(err.to_string().contains("compacted"), "{err}");
    // And it keeps saying so.
    assert!(old.next().await.is_err());
}

#[tokio::test]
async fn etcd_watch_resumes_after_etcd_restarts_without_loss_or_duplicates() {
    let Some(mut etcd) = EtcdCluster::start_single() else {
        return;
    };
    let c = client(etcd.endpoints());
    let r0 = c.put("seed", "0", None).await.unwrap();
    let w = c.watch("r/", r0 + 1);
    for i in 0..5 {
        c.put(&format!("r/{i:02}"), &i.to_string(), None)
            .await
            .unwrap();
    }
    let (w, mut seen) = collect(w, Instant::now() + Duration::from_secs(5), |s| s.len() >= 5).await;
    assert_eq!(seen.len(), 5);

    // 1. Killed and restarted while nobody reads the watch; changes made meanwhile are
    //    caught up after the reconnect.
    etcd.kill_member(0);
    etcd.restart_member(0);
    for i in 5..10 {
        put_retrying(
            &c,
            &format!("r/{i:02}"),
            &i.to_string(),
            Duration::from_secs(10),
        )
        .await;
    }
    let before = Instant::now();
    let (w, more) = collect(w, Instant::now() + Duration::from_secs(10), |s| {
        s.len() >= 5
    })
    .await;
    eprintln!(
        "etcd: watch caught up 5 events after a restart in {:?}",
        before.elapsed()
    );
    seen.extend(more);

    // 2. Killed while the watch is waiting in another task; restarted in the background.
    let collector = tokio::spawn(collect(w, Instant::now() + Duration::from_secs(20), |s| {
        s.len() >= 5
    }));
    tokio::time::sleep(Duration::from_millis(200)).await;
    etcd.kill_member(0);
    let killed = Instant::now();
    etcd.spawn_member(0);
    for i in 10..15 {
        put_retrying(
            &c,
            &format!("r/{i:02}"),
            &i.to_string(),
            Duration::from_secs(15),
        )
        .await;
    }
    let acked = Instant::now();
    let (w, more) = collector.await.unwrap();
    assert!(!more.is_empty(), "no event after the second restart");
    eprintln!(
        "etcd: after kill -9 + restart, first put acknowledged after {:?}, watch saw the first event {:?} after the kill ({:?} after that put)",
        acked.saturating_duration_since(killed),
        more[0].1.saturating_duration_since(killed),
        more[0].1.saturating_duration_since(acked)
    );
    seen.extend(more);

    let keys: Vec<&str> = seen.iter().map(|(e, _)| e.key()).collect();
    let want: Vec<String> = (0..15).map(|i| format!("r/{i:02}")).collect();
    assert_eq!(keys, want, "lost or repeated events");
    assert_strictly_increasing(&seen);
    assert_eq!(w.revision(), seen[14].0.revision());
}

#[tokio::test]
async fn etcd_cluster_survives_killing_the_member_in_use() {
    let Some(mut etcd) = EtcdCluster::start_cluster(3) else {
        return;
    };
    // Talk to the leader first, so that killing "our" member also forces an election.
    let leader = etcd.wait_leader(Duration::from_secs(10));
    let mut order = vec![leader];
    order.extend((0..3).filter(|&i| i != leader));
    let endpoints: Vec<String> = order.iter().map(|&i| etcd.endpoint(i)).collect();
    let c = client(endpoints);
    let r0 = c.put("c/warmup", "x", None).await.unwrap();
    assert_eq!(c.current_endpoint(), etcd.endpoint(leader));

    let w = c.watch("c/k", r0 + 1);
    let collector = tokio::spawn(collect(w, Instant::now() + Duration::from_secs(30), |s| {
        s.last().is_some_and(|(e, _)| e.key() == "c/k-done")
    }));
    tokio::time::sleep(Duration::from_millis(200)).await;

    let mut acked: BTreeMap<String, (String, Instant)> = BTreeMap::new();
    let mut killed_at = None;
    let mut first_ack_after_kill = None;
    for i in 0..40 {
        if i == 15 {
            etcd.kill_member(leader);
            killed_at = Some(Instant::now());
        }
        let key = format!("c/k{i:02}");
        let value = format!("v{i}");
        // The test's own retry only covers a failed call; every attempt that reported
        // success is recorded.
        for _ in 0..5 {
            match c.put(&key, &value, None).await {
                Ok(_) => {
                    acked.insert(key.clone(), (value.clone(), Instant::now()));
                    if killed_at.is_some() && first_ack_after_kill.is_none() {
                        first_ack_after_kill = Some(Instant::now());
                    }
                    break;
                }
                Err(e) => eprintln!("put {key}: {e:#}"),
            }
        }
    }
    put_retrying(&c, "c/k-done", "end", Duration::from_secs(10)).await;
    let killed_at = killed_at.unwrap_or_else(Instant::now);
    let (_, seen) = collector.await.unwrap();
    assert!(
        seen.last().is_some_and(|(e, _)| e.key() == "c/k-done"),
        "the watch stopped short: {} events",
        seen.len()
    );

    // Every acknowledged put is readable, from the survivors.
    let (kvs, _) = c.range_prefix("c/k").await.unwrap();
    let stored: BTreeMap<&str, &doproxy::store::etcd::KeyValue> =
        kvs.iter().map(|kv| (kv.key.as_str(), kv)).collect();
    for (k, (v, _)) in &acked {
        assert_eq!(
            stored.get(k.as_str()).map(|kv| kv.value.as_str()),
            Some(v.as_str()),
            "acknowledged put of {k} lost"
        );
    }
    assert_eq!(acked.len(), 40, "every put got acknowledged in the end");

    // The watch saw every change exactly once: as many events per key as the key has
    // versions, in strictly increasing revisions, the last one at the key's mod revision.
    assert_strictly_increasing(&seen);
    let mut per_key: BTreeMap<&str, Vec<i64>> = BTreeMap::new();
    for (e, _) in &seen {
        assert!(matches!(e, WatchEvent::Put(_)), "{e:?}");
        per_key.entry(e.key()).or_default().push(e.revision());
    }
    let watched: BTreeSet<&str> = per_key.keys().copied().collect();
    let keys: BTreeSet<&str> = stored.keys().copied().collect();
    assert_eq!(watched, keys);
    for (k, kv) in &stored {
        let revs = &per_key[k];
        assert_eq!(revs.len() as i64, kv.version, "events for {k}: {revs:?}");
        assert_eq!(revs.last().copied(), Some(kv.mod_revision));
    }

    // How late the watch delivered the puts acknowledged after the kill.
    let lag_after_kill = seen
        .iter()
        .filter_map(|(e, at)| {
            let (_, acked_at) = acked.get(e.key())?;
            (*acked_at >= killed_at).then(|| at.saturating_duration_since(*acked_at))
        })
        .max();
    let first_event_after_kill = seen
        .iter()
        .find(|(e, _)| e.key() == "c/k15")
        .map(|(_, at)| at.saturating_duration_since(killed_at));
    let new_leader = Some(etcd.wait_leader(Duration::from_secs(10)));
    eprintln!(
        "etcd cluster: killed member {leader} (the leader, in use); new leader {new_leader:?}; first put acknowledged {:?} after the kill; watch delivered that put {first_event_after_kill:?} after the kill; worst watch lag behind a put acknowledged after the kill {lag_after_kill:?}; {} events, {} keys",
        first_ack_after_kill.map(|t| t.saturating_duration_since(killed_at)),
        seen.len(),
        stored.len()
    );
    assert!(new_leader.is_some_and(|l| l != leader));

    // The killed member comes back on its data dir and catches up.
    etcd.restart_member(leader);
    let back = client(vec![etcd.endpoint(leader)]);
    let (kvs_back, _) = back.range_prefix("c/k").await.unwrap();
    assert_eq!(kvs_back, kvs);

    // Quorum lost: the member serving a watch loses its leader and cuts the stream (the
    // watch does not sit on a member cut off from the cluster); once quorum is back the
    // watch resumes with nothing lost.
    let r = c.put("c/q-start", "x", None).await.unwrap();
    let mut w = c.watch("c/q", r);
    let first = tokio::time::timeout(Duration::from_secs(5), w.next())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(first[0].revision(), r);
    let all = etcd.endpoints();
    let serving_member = |w: &Watch| {
        let serving = w.endpoint().map(str::to_string).unwrap();
        all.iter().position(|e| *e == serving).unwrap()
    };

    // The member serving the watch is killed: the watch moves on by itself; how long until
    // it delivers a put made right after the kill (through another member)?
    let y = serving_member(&w);
    let elsewhere = client(
        (0..3)
            .filter(|&i| i != y)
            .map(|i| etcd.endpoint(i))
            .collect(),
    );
    etcd.kill_member(y);
    let killed = Instant::now();
    let r1 = put_retrying(&elsewhere, "c/q-1", "x", Duration::from_secs(10)).await;
    let acked = Instant::now();
    let ev = tokio::time::timeout(Duration::from_secs(10), w.next())
        .await
        .unwrap()
        .unwrap();
    assert_eq!((ev[0].key(), ev[0].revision()), ("c/q-1", r1));
    eprintln!(
        "etcd cluster: killed the member serving a watch; a put through another member was acknowledged {:?} after the kill and delivered by the watch {:?} after the kill",
        acked.saturating_duration_since(killed),
        killed.elapsed()
    );
    etcd.restart_member(y);

    let y = serving_member(&w);
    let others: Vec<usize> = (0..3).filter(|&i| i != y).collect();
    for &i in &others {
        etcd.kill_member(i);
    }
    let lost = Instant::now();
    let waited = tokio::time::timeout(Duration::from_millis(2500), w.next()).await;
    assert!(waited.is_err(), "events without a quorum: {waited:?}");
    assert_eq!(
        w.endpoint(),
        None,
        "the watch still sits on the leaderless member"
    );
    for &i in &others {
        etcd.restart_member(i);
    }
    let restored = Instant::now();
    let r2 = put_retrying(&c, "c/q-end", "y", Duration::from_secs(10)).await;
    let ev = tokio::time::timeout(Duration::from_secs(10), w.next())
        .await
        .unwrap()
        .unwrap();
    assert_eq!((ev[0].key(), ev[0].revision()), ("c/q-end", r2));
    eprintln!(
        "etcd cluster: quorum lost for {:?}; after it came back the watch delivered the next put {:?} later",
        restored.saturating_duration_since(lost),
        restored.elapsed()
    );
}

#[tokio::test]
async fn etcd_auth_tokens_are_used_refreshed_and_the_password_never_shown() {
    const PASSWORD: &str = "pw-9f8e7d-secret";
    let Some(etcd) =
        EtcdCluster::start_with(1, &["--auth-token", "simple", "--auth-token-ttl", "1"])
    else {
        return;
    };
    let ep = etcd.endpoint(0);
    for args in [
        vec!["user", "add", &format!("root:{PASSWORD}")],
        vec!["auth", "enable"],
    ] {
        let out = std::process::Command::new("etcdctl")
            .env("ETCDCTL_API", "3")
            .arg(format!("--endpoints={ep}"))
            .args(&args)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .map(|c| crate::support::output_with_deadline(c, crate::support::TOOL_DEADLINE));
        match out {
            Ok(o) if o.status.success() => {}
            Ok(o) => panic!("etcdctl {args:?}: {}", String::from_utf8_lossy(&o.stderr)),
            Err(e) => {
                if std::env::var_os("CI").is_some() {
                    panic!("etcdctl not runnable: {e}");
                }
                eprintln!("SKIPPED: etcdctl not runnable: {e}");
                return;
            }
        }
    }
    let with = |user: Option<&str>, password: Option<&str>| {
        Client::new(Options {
            endpoints: vec![ep.clone()],
            timeout: TIMEOUT,
            username: user.map(str::to_string),
            password: password.map(str::to_string),
            ca_pem: None,
            identity_pem: None,
        })
        .unwrap()
    };

    let anonymous = with(None, None);
    // Refused at once: a client without credentials has nothing to authenticate with.
    let err = tokio::time::timeout(Duration::from_secs(10), anonymous.put("a/k", "v", None))
        .await
        .expect("an anonymous call to an etcd with auth did not end")
        .unwrap_err()
        .to_string();
    assert!(err.contains("user name is empty"), "{err}");
    // And asked once: with no token to renew, there is nothing to try again with.
    let link = Forwarder::to(&etcd);
    let anonymous = client(vec![link.url()]);
    let err = anonymous.get("a/k").await.unwrap_err().to_string();
    assert!(err.contains("user name is empty"), "{err}");
    assert_eq!(link.sent.ranges.load(Ordering::SeqCst), 1, "{err}");

    let wrong = with(Some("root"), Some("not-the-password"));
    let err = wrong.get("a/k").await.unwrap_err().to_string();
    assert!(err.contains("authentication"), "{err}");
    assert!(!err.contains("not-the-password"), "{err}");

    let good = with(Some("root"), Some(PASSWORD));
    assert!(!format!("{good:?}").contains(PASSWORD));
    let r = good.put("a/k", "v", None).await.unwrap();
    assert_eq!(good.get("a/k").await.unwrap().unwrap().value, "v");
    // The simple token expires after 1 s idle: the client authenticates again by itself,
    // for unary calls and for a new watch.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(good.get("a/k").await.unwrap().unwrap().mod_revision, r);
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let mut w = good.watch("a/", r);
    let ev = tokio::time::timeout(Duration::from_secs(10), w.next())
        .await
        .expect("watch timed out")
        .unwrap();
    assert_eq!(ev[0].revision(), r);
    // Errors with credentials set never contain the password.
    let err = good
        .txn(
            vec![],
            (0..200).map(|i| put_op(&format!("a/{i}"), "x")).collect(),
            vec![],
        )
        .await
        .unwrap_err()
        .to_string();
    assert!(!err.contains(PASSWORD), "{err}");
}

/// Writes `value` at `key` from another client, on a thread of its own (for use inside
/// the store's synchronous update closures).
fn put_elsewhere(endpoint: &str, key: &str, value: &str) {
    let (endpoint, key, value) = (endpoint.to_string(), key.to_string(), value.to_string());
    std::thread::spawn(move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(client(vec![endpoint]).put(&key, &value, None))
            .unwrap();
    })
    .join()
    .unwrap();
}

#[test]
fn etcd_store_updates_retry_a_lost_compare_and_swap_and_nothing_else() {
    use doproxy::store::{Backend, Settings, Store};
    let Some(etcd) = EtcdCluster::start_single() else {
        return;
    };
    let ep = etcd.endpoint(0);
    let settings = Settings {
        backend: Backend::Etcd(doproxy::store::etcd::Settings {
            endpoints: vec![ep.clone()],
            prefix: "/cas/".into(),
            username: None,
            password: None,
            lock_ttl: Duration::from_secs(3),
            timeout: TIMEOUT,
            ca_file: None,
            cert_file: None,
            key_file: None,
        }),
        lock_timeout: Duration::from_secs(5),
    };
    let store = Store::new(&settings, std::path::Path::new("doproxy.yml")).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        // A missing inventory key is an error (`inventory init` creates it).
        assert!(store.init().await.unwrap());
        // Another writer changes the inventory between the read and the compare-and-swap:
        // the update is done again on what it wrote, and nothing is lost.
        let mut calls = 0;
        let inv = store
            .update(|inv| {
                calls += 1;
                if calls == 1 {
                    put_elsewhere(&ep, "/cas/inventory", "99\n");
                }
                inv.ids.push(7);
            })
            .await
            .unwrap();
        assert_eq!((calls, inv.ids.clone()), (2, vec![99, 7]));
        assert_eq!(store.load().await.unwrap().ids, vec![99, 7]);
        // The same for the journal.
        let mut calls = 0;
        let j = store
            .update_journal(|j| {
                calls += 1;
                if calls == 1 {
                    put_elsewhere(
                        &ep,
                        "/cas/journal",
                        r#"{"creating":[{"name":"web-other1","since":1}]}"#,
                    );
                }
                j.creating.push(doproxy::store::journal::Intent {
                    name: "web-mine01".into(),
                    since: 2,
                    ambiguous: false,
                });
            })
            .await
            .unwrap();
        let names: Vec<&str> = j.creating.iter().map(|i| i.name.as_str()).collect();
        assert_eq!((calls, names), (2, vec!["web-other1", "web-mine01"]));
        // A write etcd refuses for another reason (a value over its request size limit)
        // fails at once: only a lost compare-and-swap is worth doing again.
        let mut calls = 0;
        let e = store
            .update(|inv| {
                calls += 1;
                inv.ids.extend(1_000_000_000u64..1_000_300_000);
            })
            .await
            .unwrap_err();
        assert_eq!(calls, 1, "{e:#}");
        assert!(
            !format!("{e:#}").contains("too many concurrent changes"),
            "{e:#}"
        );
        let mut calls = 0;
        let e = store
            .update_journal(|j| {
                calls += 1;
                j.creating
                    .extend((0..60_000).map(|i| doproxy::store::journal::Intent {
                        name: format!("web-{i:06}"),
                        since: 3,
                        ambiguous: false,
                    }));
            })
            .await
            .unwrap_err();
        assert_eq!(calls, 1, "{e:#}");
        assert_eq!(store.load().await.unwrap().ids, vec![99, 7]);
    });
}

/// A store on etcd at `endpoints` under `prefix`, as `doproxy` builds it.
fn etcd_store(endpoints: Vec<String>, prefix: &str) -> doproxy::store::Store {
    etcd_store_with(endpoints, prefix, TIMEOUT)
}

/// [`etcd_store`] with its own request timeout (a call gives up after twice that).
fn etcd_store_with(
    endpoints: Vec<String>,
    prefix: &str,
    timeout: Duration,
) -> doproxy::store::Store {
    use doproxy::store::{Backend, Settings, Store};
    let settings = Settings {
        backend: Backend::Etcd(doproxy::store::etcd::Settings {
            endpoints,
            prefix: prefix.into(),
            username: None,
            password: None,
            lock_ttl: Duration::from_secs(3),
            timeout,
            ca_file: None,
            cert_file: None,
            key_file: None,
        }),
        lock_timeout: Duration::from_secs(5),
    };
    Store::new(&settings, std::path::Path::new("doproxy.yml")).unwrap()
}

#[tokio::test]
async fn etcd_store_writes_stop_once_the_lock_is_lost() {
    use doproxy::store::Guard;
    let Some(etcd) = EtcdCluster::start_single() else {
        return;
    };
    let store = etcd_store(etcd.endpoints(), "/fence/");
    let other = client(etcd.endpoints());
    assert!(store.init().await.unwrap());
    let lease_of = |g: &Guard| match g {
        Guard::Etcd(l) => l.lease(),
        Guard::File(_) => unreachable!("an etcd store's lock"),
    };

    // The lock's lease is revoked (what expiry does) and the write comes before the holder
    // could notice: the transaction's compare on the lock key refuses it.
    let guard = store.lock().await.unwrap();
    other.lease_revoke(lease_of(&guard)).await.unwrap();
    let e = format!(
        "{:#}",
        store.update(|inv| inv.ids.push(5)).await.unwrap_err()
    );
    assert!(e.contains("lost the etcd lock /fence/lock/"), "{e}");
    assert!(e.contains("nothing was written"), "{e}");
    store.release(guard).await.unwrap();

    // Once the renewal found the lease gone, nothing is even sent.
    let guard = store.lock().await.unwrap();
    other.lease_revoke(lease_of(&guard)).await.unwrap();
    let Guard::Etcd(lock) = &guard else {
        unreachable!()
    };
    let deadline = Instant::now() + Duration::from_secs(5);
    while !lock.is_lost() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        lock.is_lost(),
        "the holder never noticed its lease was revoked"
    );
    let e = format!(
        "{:#}",
        store.update(|inv| inv.ids.push(6)).await.unwrap_err()
    );
    assert!(e.contains("the etcd lock's lease lapsed"), "{e}");
    assert!(e.contains("nothing more is written"), "{e}");
    store.release(guard).await.unwrap();

    assert!(store.load().await.unwrap().ids.is_empty());
    // With the lock held, writes go through, and a compare-and-swap lost to a writer that
    // ignores the lock is done again (the lock is still ours: not "lost").
    let guard = store.lock().await.unwrap();
    assert_eq!(store.update(|inv| inv.ids.push(7)).await.unwrap().ids, [7]);
    let mut calls = 0;
    let inv = store
        .update(|inv| {
            calls += 1;
            if calls == 1 {
                put_elsewhere(&etcd.endpoint(0), "/fence/inventory", "7\n99\n");
            }
            inv.ids.push(8);
        })
        .await
        .unwrap();
    assert_eq!((calls, inv.ids), (2, vec![7, 99, 8]));
    store.release(guard).await.unwrap();
    assert_eq!(store.load().await.unwrap().ids, [7, 99, 8]);
    // Released, the lock fences nothing more: a write without it goes through.
    assert_eq!(
        store
            .update(|inv| inv.ids.retain(|&id| id != 99))
            .await
            .unwrap()
            .ids,
        [7, 8]
    );
}

#[tokio::test]
async fn etcd_wait_acks_names_each_node_that_has_not_acknowledged_its_own() {
    let Some(etcd) = EtcdCluster::start_single() else {
        return;
    };
    let store = etcd_store(etcd.endpoints(), "/acks/");
    let raw = client(etcd.endpoints());
    for node in ["lb-a", "lb-b", "lb-c"] {
        raw.put(&format!("/acks/nodes/{node}"), node, None)
            .await
            .unwrap();
    }
    // lb-b acknowledged droplet 5, lb-c only droplet 6: lb-b's acknowledgement is not lb-a's.
    raw.put("/acks/acks/lb-b", "[4,5]", None).await.unwrap();
    raw.put("/acks/acks/lb-c", "[6]", None).await.unwrap();
    let t = Instant::now();
    let silent = store
        .wait_acks(5, Duration::from_millis(300))
        .await
        .unwrap();
    assert_eq!(silent, ["lb-a", "lb-c"]);
    assert!(
        t.elapsed() >= Duration::from_millis(300),
        "{:?}",
        t.elapsed()
    );
    // Once every node has, the wait ends at once, not at its deadline.
    raw.put("/acks/acks/lb-a", "[5]", None).await.unwrap();
    raw.put("/acks/acks/lb-c", "[6,5]", None).await.unwrap();
    let t = Instant::now();
    let silent = store.wait_acks(5, Duration::from_secs(10)).await.unwrap();
    assert!(silent.is_empty(), "{silent:?}");
    assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
}

#[tokio::test]
async fn etcd_store_changes_are_the_inventorys_and_survive_a_compaction() {
    let Some(etcd) = EtcdCluster::start_single() else {
        return;
    };
    let store = etcd_store(etcd.endpoints(), "/chg/");
    let raw = client(etcd.endpoints());
    assert!(store.init().await.unwrap());
    let quiet = Duration::from_millis(400);
    let mut changes = store.watch(Duration::from_millis(50)).await.unwrap();

    // Nothing changed: no notice (the stream waits).
    assert!(tokio::time::timeout(quiet, changes.next()).await.is_err());
    // Other keys under the prefix (a node's acknowledgement, the lock) are not changes.
    raw.put("/chg/acks/lb-a", "[1]", None).await.unwrap();
    raw.put("/chg/lock/x", "", None).await.unwrap();
    assert!(
        tokio::time::timeout(quiet, changes.next()).await.is_err(),
        "an acknowledgement counted as an inventory change"
    );
    // The inventory and the journal are.
    store.update(|inv| inv.ids.push(1)).await.unwrap();
    tokio::time::timeout(Duration::from_secs(3), changes.next())
        .await
        .expect("no notice of an inventory change")
        .unwrap();
    raw.put("/chg/journal", r#"{"leaving":[1]}"#, None)
        .await
        .unwrap();
    tokio::time::timeout(Duration::from_secs(3), changes.next())
        .await
        .expect("no notice of a journal change")
        .unwrap();

    // History compacted past where the stream stands: one notice (re-read everything),
    // then it follows changes again from now on.
    let mut behind = store.watch(Duration::from_millis(50)).await.unwrap();
    // (The inventory write last: the stream that starts over after the compaction must
    // start after it, or it would report it again.)
    raw.put("/chg/acks/lb-a", "[2]", None).await.unwrap();
    store.update(|inv| inv.ids.push(2)).await.unwrap();
    let (_, now) = raw.range_prefix("/chg/").await.unwrap();
    compact(&etcd, now);
    tokio::time::timeout(Duration::from_secs(3), behind.next())
        .await
        .expect("no notice after the compaction")
        .expect("a compaction is a notice to re-read, not an error");
    assert!(
        tokio::time::timeout(quiet, behind.next()).await.is_err(),
        "notices with nothing changed after the compaction"
    );
    store.update(|inv| inv.ids.push(3)).await.unwrap();
    tokio::time::timeout(Duration::from_secs(3), behind.next())
        .await
        .expect("no notice of a change after the compaction")
        .unwrap();
}

#[tokio::test]
async fn etcd_a_dropped_presence_lapses_with_its_lease() {
    let Some(etcd) = EtcdCluster::start_single() else {
        return;
    };
    // lock_ttl 3 s: the presence's lease.
    let store = etcd_store(etcd.endpoints(), "/pres/");
    let raw = client(etcd.endpoints());
    let presence = store
        .announce("lb-x")
        .await
        .unwrap()
        .expect("etcd announces");
    // Kept alive past its TTL while held.
    tokio::time::sleep(Duration::from_millis(3500)).await;
    assert!(raw.get("/pres/nodes/lb-x").await.unwrap().is_some());
    let dropped = Instant::now();
    drop(presence);
    let deadline = dropped + Duration::from_secs(8);
    while raw.get("/pres/nodes/lb-x").await.unwrap().is_some() {
        assert!(
            Instant::now() < deadline,
            "a dropped presence is still announced after {:?}",
            dropped.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    eprintln!(
        "etcd: a dropped presence (ttl 3 s) lapsed after {:?}",
        dropped.elapsed()
    );
}

/// Waits (up to `within`) until `lead` reports its leadership lost; when it did.
async fn wait_lost(lead: &doproxy::store::etcd::Leadership, within: Duration) -> Option<Instant> {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if lead.is_lost() {
            return Some(Instant::now());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    None
}

/// Calls `try_lead` (with `wait`) until it leads or `within` passes; the leadership and
/// when it was had.
async fn lead_within(
    store: &doproxy::store::Store,
    node: &str,
    ttl: Duration,
    wait: Duration,
    within: Duration,
) -> Option<(doproxy::store::etcd::Leadership, Instant)> {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if let Some(l) = store.try_lead(node, ttl, wait).await.unwrap() {
            return Some((l, Instant::now()));
        }
    }
    None
}

#[tokio::test]
async fn etcd_leadership_is_exclusive_named_and_handed_over_on_resign() {
    let Some(etcd) = EtcdCluster::start_single() else {
        return;
    };
    let ttl = Duration::from_secs(2);
    let wait = Duration::from_secs(1);
    let a = etcd_store(etcd.endpoints(), "/lead/");
    let b = etcd_store(etcd.endpoints(), "/lead/");
    assert_eq!(a.leader().await.unwrap(), None);

    // Two nodes at once: exactly one leads, the other hears so within about `wait`.
    let t = Instant::now();
    let (ra, rb) = tokio::join!(
        async { (a.try_lead("lb-a", ttl, wait).await.unwrap(), t.elapsed()) },
        async { (b.try_lead("lb-b", ttl, wait).await.unwrap(), t.elapsed()) },
    );
    let (lead, lead_store, follower_store, holder, other, refused_after) = match (ra, rb) {
        ((Some(l), _), (None, took)) => (l, &a, &b, "lb-a", "lb-b", took),
        ((None, took), (Some(l), _)) => (l, &b, &a, "lb-b", "lb-a", took),
        (ra, rb) => panic!(
            "not exactly one leader: a {:?}, b {:?}",
            ra.0.is_some(),
            rb.0.is_some()
        ),
    };
    eprintln!("etcd: {holder} leads; {other} was told no after {refused_after:?}");
    assert!(
        refused_after < wait + Duration::from_secs(1),
        "{refused_after:?}"
    );
    assert!(!lead.is_lost());
    assert!(lead.key().unwrap().ends_with("/lead/autoscale/leader"));
    // What fences writes made as the leader: the leader key's create revision.
    let kv = client(etcd.endpoints())
        .get("/lead/autoscale/leader")
        .await
        .unwrap()
        .expect("the leader key");
    assert_eq!(lead.create_revision(), Some(kv.create_revision));
    // The node that lost the race gave back any lease it was granted on the way.
    let (code, body) = post_json(&etcd, 0, "/v3/lease/leases", "{}").expect("etcd answers");
    assert_eq!(code, 200, "{body}");
    let leases: serde_json::Value = serde_json::from_str(&body).unwrap();
    let ids: Vec<&str> = leases["leases"]
        .as_array()
        .map(|a| a.iter().filter_map(|l| l["ID"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(ids, [kv.lease.to_string()], "leases left: {body}");
    assert_eq!(a.leader().await.unwrap().as_deref(), Some(holder));
    assert_eq!(b.leader().await.unwrap().as_deref(), Some(holder));

    // Past the TTL the renewal keeps it; the other still cannot lead.
    tokio::time::sleep(ttl + Duration::from_millis(500)).await;
    assert!(!lead.is_lost());
    let t = Instant::now();
    assert!(follower_store
        .try_lead(other, ttl, Duration::from_millis(300))
        .await
        .unwrap()
        .is_none());
    assert!(
        t.elapsed() < Duration::from_millis(1300),
        "{:?}",
        t.elapsed()
    );
    assert_eq!(a.leader().await.unwrap().as_deref(), Some(holder));

    // A follower waiting in try_lead takes over as soon as the leader resigns.
    let waiting = async {
        let r = follower_store
            .try_lead(other, ttl, Duration::from_secs(5))
            .await
            .unwrap();
        (r, Instant::now())
    };
    let resigning = async {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let at = Instant::now();
        lead.resign().await.unwrap();
        at
    };
    let ((next, got), resigned) = tokio::join!(waiting, resigning);
    let next = next.expect("the waiting follower leads after the resignation");
    let handover = got.saturating_duration_since(resigned);
    eprintln!("etcd: resign -> waiting follower leads in {handover:?}");
    assert!(handover < Duration::from_millis(800), "{handover:?}");
    assert_eq!(a.leader().await.unwrap().as_deref(), Some(other));

    // And a fresh call after a resignation leads at once.
    next.resign().await.unwrap();
    assert_eq!(a.leader().await.unwrap(), None);
    let t = Instant::now();
    let again = lead_store.try_lead(holder, ttl, wait).await.unwrap();
    let again = again.expect("leads again after the other resigned");
    assert!(
        t.elapsed() < Duration::from_millis(500),
        "{:?}",
        t.elapsed()
    );

    // A leader whose key is deleted under it (by hand) notices within a renewal period.
    let raw = client(etcd.endpoints());
    assert_eq!(raw.delete(again.key().unwrap()).await.unwrap(), 1);
    let noticed = wait_lost(&again, ttl).await;
    assert!(
        noticed.is_some(),
        "the leader did not notice its key vanished"
    );
    again.resign().await.unwrap();

    // Several nodes racing, round after round: never two leaders.
    let stores: Vec<_> = (0..4)
        .map(|_| Arc::new(etcd_store(etcd.endpoints(), "/lead/")))
        .collect();
    for round in 0..3 {
        let tries: Vec<_> = stores
            .iter()
            .enumerate()
            .map(|(i, s)| {
                let s = s.clone();
                tokio::spawn(async move {
                    s.try_lead(&format!("lb-{i}"), ttl, Duration::from_millis(300))
                        .await
                        .unwrap()
                })
            })
            .collect();
        let mut won = Vec::new();
        for t in tries {
            won.extend(t.await.unwrap());
        }
        assert_eq!(won.len(), 1, "round {round}: {} leaders", won.len());
        for l in won {
            l.resign().await.unwrap();
        }
    }
    assert_eq!(a.leader().await.unwrap(), None);
}

#[tokio::test]
async fn etcd_leadership_of_a_holder_that_dies_passes_on_after_its_ttl() {
    let Some(etcd) = EtcdCluster::start_single() else {
        return;
    };
    let ttl = Duration::from_secs(2);
    let wait = Duration::from_millis(500);
    let a = etcd_store(etcd.endpoints(), "/dead/");
    let b = etcd_store(etcd.endpoints(), "/dead/");
    let lead = a.try_lead("lb-a", ttl, wait).await.unwrap().unwrap();
    tokio::time::sleep(Duration::from_millis(700)).await;
    // The holder "dies": no resignation, its renewal stops with it; the lease runs out.
    let died = Instant::now();
    drop(lead);
    assert_eq!(b.leader().await.unwrap().as_deref(), Some("lb-a"));
    let (next, got) = lead_within(&b, "lb-b", ttl, wait, ttl * 3)
        .await
        .expect("the other node never took over from the dead leader");
    let took = got.saturating_duration_since(died);
    eprintln!("etcd: leadership of a dead holder (ttl {ttl:?}) taken over after {took:?}");
    assert!(
        took >= ttl / 2,
        "taken over before the lease could lapse: {took:?}"
    );
    assert!(took <= ttl + Duration::from_secs(1), "{took:?}");
    assert!(!next.is_lost());
    assert_eq!(a.leader().await.unwrap().as_deref(), Some("lb-b"));
    next.resign().await.unwrap();
}

/// A TCP forwarder on 127.0.0.1 to `upstream` that can be cut: every connection is closed
/// and new ones are closed at once, as if the network between a node and etcd failed.
struct Forwarder {
    port: u16,
    cut: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
    /// The requests sent through it, of two kinds.
    sent: Arc<Sent>,
}

/// Requests a [`Forwarder`] passed on (lease renewals, key reads, transactions), and the
/// faults it is told to make: hold key writes back for a while (a window between a renewal
/// and a put), hold every read after the next one (a window between two pages), or pass
/// transactions on and lose their answers.
#[derive(Default)]
struct Sent {
    keepalives: AtomicUsize,
    ranges: AtomicUsize,
    txns: AtomicUsize,
    watches: AtomicUsize,
    hold_puts: AtomicBool,
    /// Nothing passes either way, and nothing is closed: a member that stalls.
    freeze: AtomicBool,
    hold_later_ranges: AtomicBool,
    first_range_passed: AtomicBool,
    lose_txn_answers: AtomicBool,
    /// Connections accepted, the ones closed at once during a cut included.
    connections: AtomicUsize,
}

fn has(data: &[u8], needle: &[u8]) -> bool {
    data.windows(needle.len()).any(|w| w == needle)
}

impl Sent {
    /// Counts the requests in `data` and makes the faults asked for; true when the answer
    /// to `data` is to be lost.
    fn count(&self, data: &[u8]) -> bool {
        if self.hold_puts.load(Ordering::SeqCst) && has(data, b"POST /v3/kv/put ") {
            std::thread::sleep(Duration::from_millis(400));
        }
        if self.hold_later_ranges.load(Ordering::SeqCst)
            && has(data, b"POST /v3/kv/range ")
            && self.first_range_passed.swap(true, Ordering::SeqCst)
        {
            std::thread::sleep(Duration::from_millis(400));
        }
        let txn = has(data, b"POST /v3/kv/txn ");
        if txn {
            self.txns.fetch_add(1, Ordering::SeqCst);
        }
        for (needle, n) in [
            (&b"POST /v3/lease/keepalive "[..], &self.keepalives),
            (&b"POST /v3/kv/range "[..], &self.ranges),
            (&b"POST /v3/watch "[..], &self.watches),
        ] {
            let seen = data.windows(needle.len()).filter(|w| *w == needle).count();
            n.fetch_add(seen, Ordering::SeqCst);
        }
        txn && self.lose_txn_answers.load(Ordering::SeqCst)
    }
}

/// The address of `etcd`'s first member.
fn member_addr(etcd: &EtcdCluster) -> std::net::SocketAddr {
    etcd.endpoint(0)
        .trim_start_matches("http://")
        .parse()
        .unwrap()
}

impl Forwarder {
    /// A forwarder to `etcd`'s first member.
    fn to(etcd: &EtcdCluster) -> Forwarder {
        Forwarder::start(member_addr(etcd))
    }

    fn start(upstream: std::net::SocketAddr) -> Forwarder {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let cut = Arc::new(AtomicBool::new(false));
        let stop = Arc::new(AtomicBool::new(false));
        let sent = Arc::new(Sent::default());
        let (c, s, k) = (cut.clone(), stop.clone(), sent.clone());
        std::thread::spawn(move || {
            while !s.load(Ordering::SeqCst) {
                let accepted = listener.accept();
                if accepted.is_ok() {
                    k.connections.fetch_add(1, Ordering::SeqCst);
                }
                match accepted {
                    Ok((down, _)) if !c.load(Ordering::SeqCst) => {
                        down.set_nonblocking(false).unwrap();
                        let Ok(up) = std::net::TcpStream::connect(upstream) else {
                            continue;
                        };
                        // Set when an answer on this connection is to be lost.
                        let mute = Arc::new(AtomicBool::new(false));
                        for (from, to, count) in [
                            (down.try_clone().unwrap(), up.try_clone().unwrap(), Some(&k)),
                            (up, down, None),
                        ] {
                            let (c, mute) = (c.clone(), mute.clone());
                            let count = count.cloned();
                            let k = k.clone();
                            std::thread::spawn(move || {
                                pump(from, to, &c, count.as_deref(), &mute, &k.freeze)
                            });
                        }
                    }
                    Ok((down, _)) => drop(down),
                    Err(_) => std::thread::sleep(Duration::from_millis(10)),
                }
            }
        });
        Forwarder {
            port,
            cut,
            stop,
            sent,
        }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn cut(&self) {
        self.cut.store(true, Ordering::SeqCst);
    }

    /// Ends a cut: new connections go through again.
    fn restore(&self) {
        self.cut.store(false, Ordering::SeqCst);
    }
}

impl Drop for Forwarder {
    fn drop(&mut self) {
        self.cut();
        self.stop.store(true, Ordering::SeqCst);
    }
}

/// Copies `from` to `to` until either closes or `cut` is set (then closes both), counting
/// the requests in what it copies into `sent` (the client's side). A request whose answer
/// is to be lost sets `mute`: it is passed on, the answer's side drops what comes back, and
/// the connection is closed.
fn pump(
    mut from: std::net::TcpStream,
    mut to: std::net::TcpStream,
    cut: &AtomicBool,
    sent: Option<&Sent>,
    mute: &AtomicBool,
    freeze: &AtomicBool,
) {
    use std::io::{Read, Write};
    from.set_read_timeout(Some(Duration::from_millis(20)))
        .unwrap();
    let mut buf = [0u8; 16 * 1024];
    while !cut.load(Ordering::SeqCst) {
        if freeze.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(20));
            continue;
        }
        match from.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                let lose = sent.is_some_and(|sent| sent.count(&buf[..n]));
                if lose {
                    mute.store(true, Ordering::SeqCst);
                }
                if (sent.is_none() && mute.load(Ordering::SeqCst))
                    || to.write_all(&buf[..n]).is_err()
                {
                    break;
                }
                if lose {
                    // Time for the server to apply it; its answer is dropped meanwhile.
                    std::thread::sleep(Duration::from_millis(300));
                    break;
                }
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => break,
        }
    }
    let _ = from.shutdown(std::net::Shutdown::Both);
    let _ = to.shutdown(std::net::Shutdown::Both);
}

#[tokio::test]
async fn etcd_a_leader_cut_off_from_etcd_knows_it_lost_before_another_leads() {
    let Some(etcd) = EtcdCluster::start_single() else {
        return;
    };
    let ttl = Duration::from_secs(2);
    let wait = Duration::from_millis(500);
    let link = Forwarder::to(&etcd);
    let a = etcd_store(vec![link.url()], "/cut/");
    let b = etcd_store(etcd.endpoints(), "/cut/");
    let lead = a.try_lead("lb-a", ttl, wait).await.unwrap().unwrap();
    // Renewed through the link past the TTL.
    tokio::time::sleep(ttl + Duration::from_millis(300)).await;
    assert!(!lead.is_lost());

    let cut = Instant::now();
    link.cut();
    let (lost, taken) = tokio::join!(wait_lost(&lead, ttl + Duration::from_secs(1)), async {
        let (next, got) = lead_within(&b, "lb-b", ttl, wait, ttl * 3)
            .await
            .expect("the other node never took over from the cut-off leader");
        // The moment the other leads, the old leader already knows it does not.
        assert!(lead.is_lost(), "two leaders at once");
        (next, got)
    });
    let lost = lost.expect("the cut-off leader never noticed it lost the leadership");
    let (next, got) = taken;
    let (lost_after, taken_after) = (lost - cut, got - cut);
    eprintln!(
        "etcd: leader cut off from etcd (ttl {ttl:?}): knew it lost after {lost_after:?}, another led after {taken_after:?}"
    );
    // Lost at the latest a TTL after the last renewal, itself before the cut (the slack is
    // for a busy machine's timers).
    assert!(
        lost_after <= ttl + Duration::from_millis(250),
        "{lost_after:?}"
    );
    assert!(
        taken_after <= ttl + Duration::from_secs(1),
        "{taken_after:?}"
    );
    assert_eq!(b.leader().await.unwrap().as_deref(), Some("lb-b"));
    drop(lead);
    next.resign().await.unwrap();
}

#[tokio::test]
async fn etcd_leadership_outlives_a_renewal_that_fails_once() {
    let Some(etcd) = EtcdCluster::start_single() else {
        return;
    };
    let link = Forwarder::to(&etcd);
    // Requests time out after 0.5 s, so a call gives up after 1 s.
    let a = etcd_store_with(vec![link.url()], "/blip/", Duration::from_millis(500));
    // TTL 6 s: renewed every 2 s, and retried 0.5 s after a renewal that failed.
    let lead = a
        .try_lead("lb-a", Duration::from_secs(6), Duration::from_millis(500))
        .await
        .unwrap()
        .expect("nobody else leads");
    let taken = Instant::now();
    // A 2.5 s outage from 1.5 s: the renewal due at 2 s fails by about 3 s, and its retry
    // gets through once the outage is over, well before the lease runs out at 6 s.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    link.cut();
    tokio::time::sleep(Duration::from_millis(2500)).await;
    link.restore();
    while taken.elapsed() < Duration::from_secs(7) {
        assert!(
            !lead.is_lost(),
            "the leadership was lost to a 2.5 s outage after {:?}",
            taken.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(a.leader().await.unwrap().as_deref(), Some("lb-a"));
    lead.resign().await.unwrap();
}

#[tokio::test]
async fn etcd_a_follower_waits_for_the_leader_key_on_a_watch_not_by_polling() {
    let Some(etcd) = EtcdCluster::start_single() else {
        return;
    };
    let link = Forwarder::to(&etcd);
    let a = etcd_store(etcd.endpoints(), "/wait/");
    let b = etcd_store(vec![link.url()], "/wait/");
    let lead = a
        .try_lead("lb-a", Duration::from_secs(10), Duration::from_millis(500))
        .await
        .unwrap()
        .expect("nobody else leads");
    let t = Instant::now();
    let refused = b
        .try_lead("lb-b", Duration::from_secs(10), Duration::from_millis(1500))
        .await
        .unwrap();
    let waited = t.elapsed();
    assert!(refused.is_none(), "two leaders");
    // It read the key, watched it for the whole wait, and read it again.
    let ranges = link.sent.ranges.load(Ordering::SeqCst);
    eprintln!(
        "etcd: a follower's 1.5 s wait for the leader key took {waited:?} and {ranges} reads"
    );
    assert!(waited >= Duration::from_millis(1400), "{waited:?}");
    assert!((1..=3).contains(&ranges), "{ranges} reads in a 1.5 s wait");
    lead.resign().await.unwrap();
}

#[tokio::test]
async fn etcd_lock_and_leadership_are_renewed_every_third_of_their_ttl_not_more() {
    let Some(etcd) = EtcdCluster::start_single() else {
        return;
    };
    let upstream = member_addr(&etcd);
    let (lock_link, lead_link) = (Forwarder::start(upstream), Forwarder::start(upstream));
    let lock = client(vec![lock_link.url()])
        .lock("locks/pace", 3, Duration::from_secs(5))
        .await
        .unwrap();
    let store = etcd_store(vec![lead_link.url()], "/pace/");
    let lead = store
        .try_lead("lb-a", Duration::from_secs(3), Duration::from_millis(500))
        .await
        .unwrap()
        .expect("nobody else leads");
    // TTL 3 s: a renewal every second, so 3 in 3.3 s (a busy machine's late timer may
    // make it 2; a failed renewal retried adds one).
    tokio::time::sleep(Duration::from_millis(3300)).await;
    let renewals = [
        lock_link.sent.keepalives.load(Ordering::SeqCst),
        lead_link.sent.keepalives.load(Ordering::SeqCst),
    ];
    eprintln!("etcd: renewals in 3.3 s at ttl 3 s (lock, leadership): {renewals:?}");
    for (what, n) in ["lock", "leadership"].into_iter().zip(renewals) {
        assert!((2..=5).contains(&n), "{what}: {n} renewals in 3.3 s");
    }
    assert!(!lock.is_lost() && !lead.is_lost());
    lock.unlock().await.unwrap();
    lead.resign().await.unwrap();
}

#[tokio::test]
async fn etcd_signals_survive_their_lease_lapsing_between_renewal_and_put() {
    let Some(etcd) = EtcdCluster::start_single() else {
        return;
    };
    let link = Forwarder::to(&etcd);
    let a = etcd_store(vec![link.url()], "/race/");
    let raw = client(etcd.endpoints());
    let key = "/race/autoscale/signals/lb-a";
    let ttl = Duration::from_secs(30);
    a.publish_signals("lb-a", r#"{"rps":1}"#, ttl)
        .await
        .unwrap();
    let first = raw.get(key).await.unwrap().unwrap().lease;
    // The renewal finds the lease alive; the put is held back, and meanwhile the lease goes.
    link.sent.hold_puts.store(true, Ordering::SeqCst);
    let (published, ()) = tokio::join!(a.publish_signals("lb-a", r#"{"rps":2}"#, ttl), async {
        tokio::time::sleep(Duration::from_millis(150)).await;
        raw.lease_revoke(first).await.unwrap();
    });
    link.sent.hold_puts.store(false, Ordering::SeqCst);
    published.unwrap();
    let kv = raw
        .get(key)
        .await
        .unwrap()
        .expect("the signals were published");
    assert_eq!(kv.value, r#"{"rps":2}"#);
    assert_ne!(kv.lease, first);

    // A put refused for another reason (over gRPC's 2 MiB message limit) fails at once
    // with that reason: not retried, not a lease that "keeps expiring".
    let huge = format!(r#"{{"pad":"{}"}}"#, "x".repeat(2 << 20));
    let t = Instant::now();
    let e = format!(
        "{:#}",
        a.publish_signals("lb-a", &huge, ttl).await.unwrap_err()
    );
    assert!(e.contains("larger than max"), "{e}");
    assert!(!e.contains("keeps expiring"), "{e}");
    assert!(
        t.elapsed() < Duration::from_secs(2),
        "{:?}: {e}",
        t.elapsed()
    );
    assert_eq!(raw.get(key).await.unwrap().unwrap().value, r#"{"rps":2}"#);
}

#[tokio::test]
async fn etcd_published_signals_list_live_nodes_and_drop_the_dead() {
    let Some(etcd) = EtcdCluster::start_single() else {
        return;
    };
    let ttl = Duration::from_secs(2);
    let a = etcd_store(etcd.endpoints(), "/sig/");
    let b = etcd_store(etcd.endpoints(), "/sig/");
    assert_eq!(a.published_signals().await.unwrap(), vec![]);
    a.publish_signals("lb-a", r#"{"rps":1}"#, ttl)
        .await
        .unwrap();
    // A `/` in a node name stays inside the prefix, escaped.
    b.publish_signals("lb/b", r#"{"rps":2}"#, ttl)
        .await
        .unwrap();
    let both = vec![
        ("lb-a".to_string(), r#"{"rps":1}"#.to_string()),
        ("lb/b".to_string(), r#"{"rps":2}"#.to_string()),
    ];
    assert_eq!(a.published_signals().await.unwrap(), both);
    assert_eq!(b.published_signals().await.unwrap(), both);
    let raw = client(etcd.endpoints());
    let (kvs, _) = raw.range_prefix("/sig/").await.unwrap();
    let keys: Vec<&str> = kvs.iter().map(|kv| kv.key.as_str()).collect();
    assert_eq!(
        keys,
        [
            "/sig/autoscale/signals/lb%2Fb",
            "/sig/autoscale/signals/lb-a"
        ]
    );
    assert!(kvs.iter().all(|kv| kv.lease != 0), "{kvs:?}");
    let lease_a = kvs[1].lease;
    assert!(a.publish_signals("", "{}", ttl).await.is_err());

    // Node a keeps publishing (each call replaces its value, on the same lease); node b
    // stops, and its entry goes when its lease runs out.
    let stopped = Instant::now();
    let deadline = stopped + ttl * 3;
    let mut gone = None;
    let mut n = 1;
    while Instant::now() < deadline {
        n += 1;
        let json = format!(r#"{{"rps":{n}}}"#);
        a.publish_signals("lb-a", &json, ttl).await.unwrap();
        let listed = a.published_signals().await.unwrap();
        assert!(listed.contains(&("lb-a".to_string(), json)), "{listed:?}");
        if listed.len() == 1 {
            gone = Some(stopped.elapsed());
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let gone = gone.expect("the silent node's signals never went");
    eprintln!("etcd: signals of a node that stopped publishing (ttl {ttl:?}) gone after {gone:?}");
    assert!(gone >= ttl / 2, "{gone:?}");
    // etcd looks for expired leases every 500 ms; the rest is slack for a busy machine.
    assert!(gone <= ttl + Duration::from_secs(2), "{gone:?}");
    let kv = raw
        .get("/sig/autoscale/signals/lb-a")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(kv.lease, lease_a, "one lease per process, renewed");
    assert!(kv.version > 2, "{kv:?}");

    // A new TTL gets a lease of that TTL (and the old lease goes at once).
    a.publish_signals("lb-a", r#"{"rps":0}"#, Duration::from_secs(30))
        .await
        .unwrap();
    let kv = raw
        .get("/sig/autoscale/signals/lb-a")
        .await
        .unwrap()
        .unwrap();
    assert_ne!(kv.lease, lease_a, "a new TTL on the old lease");
    let ttl_of = |lease: i64| {
        let (code, body) = post_json(
            &etcd,
            0,
            "/v3/lease/timetolive",
            &format!(r#"{{"ID":"{lease}"}}"#),
        )
        .expect("etcd answers");
        assert_eq!(code, 200, "{body}");
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        v["TTL"].as_str().map_or(-1, |t| t.parse::<i64>().unwrap())
    };
    let new_ttl = ttl_of(kv.lease);
    assert!(
        (20..=30).contains(&new_ttl),
        "the new lease's TTL: {new_ttl}"
    );
    assert_eq!(ttl_of(lease_a), -1, "the old lease was not revoked");
}
