//! The client against a hostile upstream: small HTTP servers written here on raw tokio TCP
//! sockets on 127.0.0.1:0 (each stops by itself within a minute, and with its test's
//! runtime), answering what no documented API answers — a 1 GiB body, a `retry-after` of
//! `u64::MAX`, endless `next` links, an ID of 0, a redirect on the create POST, Cloudflare
//! pages, resets and stalls — and an HTTP proxy from the environment that must never see a
//! loopback or metadata request (checked in a child process, so that no other test's
//! client is built with the proxy variables set).

use super::*;
use crate::metadata;
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// A token shaped like a real one, so that redaction applies.
const TOKEN: &str = "dop_v1_4f1c0de5ec7e7000000000000000000000000000000000000000000000000abc";

/// One request as the server read it.
#[derive(Debug, Clone)]
struct Req {
    method: String,
    target: String,
    head: String,
    body: Vec<u8>,
}

/// What the server does with a request.
enum Reply {
    /// A complete answer (`Content-Length` and `Connection: close` are added).
    Full {
        status: u16,
        headers: Vec<(&'static str, String)>,
        body: Vec<u8>,
    },
    /// A 200 whose body is `len` bytes generated on the fly (never held in memory), with
    /// or without a `Content-Length` saying so.
    Endless { declared: bool, len: u64 },
    /// Close the connection without answering.
    Close,
    /// Wait, then close without answering.
    Stall(Duration),
}

fn json(status: u16, body: &str) -> Reply {
    Reply::Full {
        status,
        headers: vec![("content-type", "application/json".into())],
        body: body.as_bytes().to_vec(),
    }
}

fn with_headers(status: u16, headers: &[(&'static str, &str)], body: &str) -> Reply {
    Reply::Full {
        status,
        headers: headers.iter().map(|(k, v)| (*k, v.to_string())).collect(),
        body: body.as_bytes().to_vec(),
    }
}

type Handler = Arc<dyn Fn(&Req, usize) -> Reply + Send + Sync>;

/// The same reply to every request.
type MakeReply = Arc<dyn Fn() -> Reply + Send + Sync>;

/// A one-request-per-connection HTTP/1.1 server on 127.0.0.1:0.
struct Server {
    url: String,
    requests: Arc<Mutex<Vec<Req>>>,
    written: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl Server {
    /// Starts a server answering request number `n` (0-based, all connections counted)
    /// with `handler(&req, n)`.
    async fn start(handler: impl Fn(&Req, usize) -> Reply + Send + Sync + 'static) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let requests: Arc<Mutex<Vec<Req>>> = Arc::default();
        let written = Arc::new(AtomicU64::new(0));
        let handler: Handler = Arc::new(handler);
        let (reqs, wr) = (requests.clone(), written.clone());
        let task = tokio::spawn(async move {
            // Stops by itself after a minute at the latest.
            let _ = tokio::time::timeout(Duration::from_secs(60), async move {
                while let Ok((sock, _)) = listener.accept().await {
                    tokio::spawn(serve(sock, handler.clone(), reqs.clone(), wr.clone()));
                }
            })
            .await;
        });
        Server {
            url,
            requests,
            written,
            task,
        }
    }

    fn requests(&self) -> Vec<Req> {
        self.requests.lock().unwrap().clone()
    }

    fn count(&self, method: &str) -> usize {
        self.requests()
            .iter()
            .filter(|r| r.method == method)
            .count()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve(
    mut sock: TcpStream,
    handler: Handler,
    requests: Arc<Mutex<Vec<Req>>>,
    written: Arc<AtomicU64>,
) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        match sock.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
        if buf.len() > 1 << 20 {
            return;
        }
    };
    let head = String::from_utf8_lossy(&buf[..end]).into_owned();
    let mut first = head.split_whitespace();
    let method = first.next().unwrap_or_default().to_string();
    let target = first.next().unwrap_or_default().to_string();
    let length: usize = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse().ok())?
        })
        .unwrap_or(0);
    let mut body = buf[end..].to_vec();
    while body.len() < length {
        match sock.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => body.extend_from_slice(&chunk[..n]),
        }
    }
    let req = Req {
        method,
        target,
        head,
        body,
    };
    let n = {
        let mut r = requests.lock().unwrap();
        r.push(req.clone());
        r.len() - 1
    };
    match handler(&req, n) {
        Reply::Full {
            status,
            headers,
            body,
        } => {
            let mut out = format!(
                "HTTP/1.1 {status} Whatever\r\ncontent-length: {}\r\nconnection: close\r\n",
                body.len()
            );
            for (k, v) in headers {
                out.push_str(&format!("{k}: {v}\r\n"));
            }
            out.push_str("\r\n");
            let mut bytes = out.into_bytes();
            bytes.extend_from_slice(&body);
            let _ = sock.write_all(&bytes).await;
            let _ = sock.shutdown().await;
        }
        Reply::Endless { declared, len } => {
            let mut out =
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\nconnection: close\r\n"
                    .to_string();
            if declared {
                out.push_str(&format!("content-length: {len}\r\n"));
            }
            out.push_str("\r\n");
            if sock.write_all(out.as_bytes()).await.is_err() {
                return;
            }
            // JSON whitespace, 64 KiB at a time, until the client hangs up.
            let filler = [b' '; 64 << 10];
            let mut sent = 0u64;
            while sent < len {
                let n = filler
                    .len()
                    .min(usize::try_from(len - sent).unwrap_or(usize::MAX));
                if sock.write_all(&filler[..n]).await.is_err() {
                    break;
                }
                sent += n as u64;
                written.fetch_add(n as u64, Ordering::Relaxed);
            }
        }
        Reply::Close => drop(sock),
        Reply::Stall(d) => {
            tokio::time::sleep(d).await;
            drop(sock);
        }
    }
}

fn fast_retry() -> RetryPolicy {
    RetryPolicy {
        max_attempts: 3,
        min_delay: Duration::from_millis(1),
        max_delay: Duration::from_millis(5),
        budget: Duration::from_secs(5),
    }
}

fn client_with(url: &str, timeout: Duration, retry: RetryPolicy) -> Client {
    Client::new(&Settings {
        api_url: url.to_string(),
        token: Secret::new(TOKEN.into()),
        timeout,
        retry,
    })
    .unwrap()
}

fn client(url: &str) -> Client {
    client_with(url, Duration::from_secs(10), fast_retry())
}

fn droplet(id: u64, name: &str) -> String {
    format!(
        r#"{{"id":{id},"name":"{name}","status":"active","locked":false,"networks":{{"v4":[{{"ip_address":"10.0.0.{}","type":"private"}}]}},"tags":["doproxy"]}}"#,
        id % 250 + 1
    )
}

fn names(n: &[&str]) -> Vec<String> {
    n.iter().map(|s| s.to_string()).collect()
}

fn fields() -> serde_json::Map<String, serde_json::Value> {
    let mut m = serde_json::Map::new();
    m.insert("size".into(), "s-1vcpu-1gb".into());
    m.insert("image".into(), "ubuntu-24-04-x64".into());
    m.insert("tags".into(), vec!["doproxy".to_string()].into());
    m
}

/// Peak resident set size of this process so far, in KiB (`VmHWM`).
fn vm_hwm_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

// The measured figure is reported on stderr, as the integration tests report theirs.
#[allow(clippy::disallowed_macros)]
#[tokio::test]
async fn a_1_gib_body_is_refused_without_being_buffered() {
    // The peak RSS is the whole process's: measured in a child running only this test, so
    // that the other tests running beside it (and a loaded machine) do not count.
    const CHILD: &str = "DOPROXY_TEST_HWM_CHILD";
    if std::env::var_os(CHILD).is_none() {
        let exe = std::env::current_exe().unwrap();
        let name = "digitalocean::hostile_tests::a_1_gib_body_is_refused_without_being_buffered";
        let mut child = std::process::Command::new(exe)
            .args([name, "--exact", "--test-threads", "1", "--nocapture"])
            .env(CHILD, "1")
            .stdin(std::process::Stdio::null())
            // Its own test summary would read as a second test run; its figures go to
            // stderr.
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(120);
        let status = loop {
            if let Some(st) = child.try_wait().unwrap() {
                break st;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("the measuring child did not finish within 120 s");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        assert!(status.success(), "the measuring child failed: {status}");
        return;
    }
    const GIB: u64 = 1 << 30;
    let before = vm_hwm_kib();
    // Streamed without a length: the client must stop reading at the limit.
    let s = Server::start(|_, _| Reply::Endless {
        declared: false,
        len: GIB,
    })
    .await;
    let c = client_with(&s.url, Duration::from_secs(60), fast_retry());
    let started = Instant::now();
    let e = c.get_droplet(1).await.unwrap_err();
    let elapsed = started.elapsed();
    assert!(
        matches!(
            e,
            Error::BodyTooLarge {
                limit: BODY_LIMIT,
                status: 200,
                ..
            }
        ),
        "{e}"
    );
    assert!(e.to_string().contains("8388608-byte limit"), "{e}");
    assert_eq!(s.count("GET"), 1, "an oversized body is not retried");
    // Let the server notice the hang-up.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let sent = s.written.load(Ordering::Relaxed);
    assert!(sent < GIB / 8, "the server got to send {sent} bytes");

    // Announced by its length: refused before reading.
    let s2 = Server::start(|_, _| Reply::Endless {
        declared: true,
        len: GIB,
    })
    .await;
    let e = client(&s2.url).list_by_tag("doproxy").await.unwrap_err();
    assert!(matches!(e, Error::BodyTooLarge { .. }), "{e}");
    assert!(e.is_ambiguous() && !e.is_retryable());

    let after = vm_hwm_kib();
    eprintln!(
        "FIGURES 1 GiB body: refused after {elapsed:.2?}, {} MiB sent by the server; VmHWM {before} KiB before, {after} KiB after",
        sent >> 20
    );
    assert!(
        after < 64 * 1024,
        "peak RSS {after} KiB (was {before} KiB before the test)"
    );
}

#[tokio::test]
async fn a_retry_after_of_u64_max_does_not_panic() {
    for status in [429u16, 503] {
        let s = Server::start(move |_, _| {
            with_headers(status, &[("retry-after", "18446744073709551615")], "{}")
        })
        .await;
        let c = client_with(&s.url, Duration::from_secs(5), RetryPolicy::default());
        let started = Instant::now();
        let e = c.get_droplet(1).await.unwrap_err();
        assert_eq!(e.status(), Some(status));
        assert_eq!(e.retry_after(), Some(MAX_HINT));
        assert!(e.to_string().contains("retry after 3600s"), "{e}");
        // Longer than the whole retry budget: given up at once rather than slept on.
        assert_eq!(s.count("GET"), 1);
        assert!(started.elapsed() < Duration::from_secs(5));
    }
    // The hourly limit's 429: only `ratelimit-reset`, here at the end of time.
    let s = Server::start(|_, _| {
        with_headers(
            429,
            &[
                ("ratelimit-remaining", "0"),
                ("ratelimit-reset", "18446744073709551615"),
            ],
            "{}",
        )
    })
    .await;
    let c = client(&s.url);
    let e = c.delete_droplet(1).await.unwrap_err();
    assert_eq!(e.retry_after(), Some(MAX_HINT));
    // On the create POST: a 429 proves nothing was made; beyond the budget, not re-sent.
    let s =
        Server::start(|_, _| with_headers(429, &[("retry-after", "18446744073709551615")], "{}"))
            .await;
    let out = client(&s.url).create(&names(&["web-a"]), &fields()).await;
    assert_eq!(out.not_created, names(&["web-a"]));
    assert!(out.unknown.is_empty() && out.created.is_empty());
    assert_eq!(s.count("POST"), 1);
}

#[tokio::test]
async fn a_retry_after_http_date_is_waited_out() {
    let s = Server::start(|_, n| {
        if n == 0 {
            let when = httpdate::fmt_http_date(SystemTime::now() + Duration::from_secs(2));
            with_headers(503, &[("retry-after", &when)], "")
        } else {
            json(200, &format!(r#"{{"droplet":{}}}"#, droplet(1, "web-a")))
        }
    })
    .await;
    let started = Instant::now();
    let d = client(&s.url).get_droplet(1).await.unwrap().unwrap();
    assert_eq!(d.name, "web-a");
    assert_eq!(s.count("GET"), 2);
    // The date has a one-second resolution: between one and two seconds were waited.
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "{:?}",
        started.elapsed()
    );
}

use std::time::SystemTime;

fn page_of(ids: std::ops::Range<u64>, total: u64, next: bool) -> String {
    let droplets: Vec<String> = ids.map(|i| droplet(i, &format!("d-{i}"))).collect();
    let links = if next {
        r#"{"pages":{"next":"http://127.0.0.1:1/v2/droplets?page=99"}}"#
    } else {
        "{}"
    };
    format!(
        r#"{{"droplets":[{}],"links":{links},"meta":{{"total":{total}}}}}"#,
        droplets.join(",")
    )
}

fn page_number(r: &Req) -> u64 {
    r.target
        .split(['?', '&'])
        .find_map(|p| p.strip_prefix("page="))
        .and_then(|p| p.parse().ok())
        .unwrap()
}

#[tokio::test]
async fn endless_next_links_stop_with_an_error() {
    // `meta.total` grows with every page and `next` never goes away: the cap set by the
    // first page's total (201: two pages, plus two) ends it.
    let s = Server::start(|r, _| {
        let p = page_number(r);
        json(200, &page_of(p * 1000..p * 1000 + 200, p * 200 + 1, true))
    })
    .await;
    let e = client(&s.url).list_by_tag("doproxy").await.unwrap_err();
    assert!(
        e.to_string()
            .contains("`links.pages.next` still set after 4 pages"),
        "{e}"
    );
    assert_eq!(s.count("GET"), 4);

    // A small total: `next` is not followed past what the total needs.
    let s = Server::start(|r, _| {
        let p = page_number(r);
        json(200, &page_of(p..p + 1, 5, true))
    })
    .await;
    let l = client(&s.url).list_by_tag("doproxy").await.unwrap();
    assert_eq!(l.len(), 1);
    assert_eq!(s.count("GET"), 1);

    // A huge total with one droplet a page: the absolute cap ends it.
    let s = Server::start(|r, _| {
        let p = page_number(r);
        json(200, &page_of(p..p + 1, 1_000_000_000, true))
    })
    .await;
    let e = client(&s.url).list_by_tag("doproxy").await.unwrap_err();
    assert!(
        e.to_string()
            .contains(&format!("still set after {MAX_LIST_PAGES} pages")),
        "{e}"
    );
    assert_eq!(s.count("GET"), MAX_LIST_PAGES as usize);
}

#[tokio::test]
async fn a_total_shrinking_below_what_was_received_is_refused() {
    let s = Server::start(|r, _| match page_number(r) {
        1 => json(200, &page_of(1..201, 400, true)),
        _ => json(200, &page_of(201..401, 250, false)),
    })
    .await;
    let e = client(&s.url).list_by_tag("doproxy").await.unwrap_err();
    let text = e.to_string();
    assert!(
        text.contains("`meta.total` is 250, below the 400 droplets received"),
        "{text}"
    );
    assert!(matches!(e, Error::Decode { .. }));
    // A single page claiming fewer than it holds.
    let s = Server::start(|_, _| json(200, &page_of(1..4, 2, false))).await;
    let e = client(&s.url).list_by_tag("doproxy").await.unwrap_err();
    assert!(
        e.to_string().contains("`meta.total` is 2, below the 3"),
        "{e}"
    );
}

#[tokio::test]
async fn impossible_values_are_rejected_naming_the_field() {
    let s = Server::start(|r, _| {
        if r.target.starts_with("/v2/droplets/5") {
            json(200, &format!(r#"{{"droplet":{}}}"#, droplet(0, "zero")))
        } else if r.target.starts_with("/v2/droplets/6") {
            json(200, &format!(r#"{{"droplet":{}}}"#, droplet(7, "seven")))
        } else if r.target.starts_with("/v2/droplets/8") {
            json(200, r#"{"droplet":{"id":8,"name":null,"status":"active"}}"#)
        } else if r.target.starts_with("/v2/actions/9") {
            json(200, r#"{"action":{"id":0,"status":"completed"}}"#)
        } else if r.method == "POST" {
            json(
                202,
                &format!(
                    r#"{{"droplet":{},"links":{{"actions":[{{"id":3}}]}}}}"#,
                    droplet(0, "web-a")
                ),
            )
        } else {
            json(200, &page_of(0..2, 2, false))
        }
    })
    .await;
    let c = client(&s.url);
    let e = c.get_droplet(5).await.unwrap_err().to_string();
    assert!(e.contains("droplet `id` is 0"), "{e}");
    let e = c.get_droplet(6).await.unwrap_err().to_string();
    assert!(e.contains("`droplet.id` is 7 instead of 6"), "{e}");
    let e = c.get_droplet(8).await.unwrap_err().to_string();
    assert!(e.contains("droplet 8: `name` is missing"), "{e}");
    let e = c.get_action(9).await.unwrap_err().to_string();
    assert!(e.contains("action `id` is 0"), "{e}");
    let e = c.list_by_tag("doproxy").await.unwrap_err().to_string();
    assert!(e.contains("droplet `id` is 0"), "{e}");
    let out = c.create(&names(&["web-a"]), &fields()).await;
    assert!(
        out.created.is_empty(),
        "nothing adopted from an impossible answer"
    );
    assert_eq!(out.unknown, names(&["web-a"]));
    assert!(out.error.unwrap().to_string().contains("`id` is 0"));
}

#[tokio::test]
async fn a_redirect_is_never_followed_and_a_303_on_create_adopts_nothing() {
    let s = Server::start(|r, _| {
        if r.method == "POST" {
            // What a confused proxy might do: point at a droplet, with it in the body.
            with_headers(
                303,
                &[("location", "http://127.0.0.1:1/v2/droplets/77")],
                &format!(r#"{{"droplet":{}}}"#, droplet(77, "web-a")),
            )
        } else {
            with_headers(301, &[("location", "http://127.0.0.1:1/elsewhere")], "")
        }
    })
    .await;
    let c = client(&s.url);
    let out = c.create(&names(&["web-a"]), &fields()).await;
    assert!(out.created.is_empty() && out.not_created.is_empty());
    assert_eq!(out.unknown, names(&["web-a"]));
    let e = out.error.unwrap();
    assert!(e.is_ambiguous());
    assert_eq!(e.status(), Some(303));
    let text = e.to_string();
    assert!(
        text.contains("redirect to http://127.0.0.1:1/v2/droplets/77 (redirects are not followed)"),
        "{text}"
    );
    let e = c.get_droplet(77).await.unwrap_err();
    assert_eq!(e.status(), Some(301));
    assert!(!e.is_retryable());
    // One POST and one GET: neither redirect was followed, the POST was not re-sent.
    assert_eq!(
        (s.count("POST"), s.count("GET")),
        (1, 1),
        "{:?}",
        s.requests()
    );
}

#[tokio::test]
async fn ambiguous_create_outcomes_are_never_sent_again() {
    let cloudflare = "<!DOCTYPE html><html><head><title>api.digitalocean.com | 524: A timeout occurred</title></head><body>...</body></html>";
    let cases: Vec<(&str, MakeReply)> = vec![
        (
            "500",
            Arc::new(|| {
                json(
                    500,
                    r#"{"id":"server_error","message":"Unexpected server-side error"}"#,
                )
            }),
        ),
        ("501", Arc::new(|| json(501, "{}"))),
        (
            "502 html",
            Arc::new(|| {
                with_headers(
                    502,
                    &[("content-type", "text/html")],
                    "<html>bad gateway</html>",
                )
            }),
        ),
        (
            "520",
            Arc::new(|| {
                with_headers(
                    520,
                    &[],
                    "<html><title>520: Web server is returning an unknown error</title></html>",
                )
            }),
        ),
        (
            "524",
            Arc::new(move || with_headers(524, &[("content-type", "text/html")], cloudflare)),
        ),
        ("reset", Arc::new(|| Reply::Close)),
        ("timeout", Arc::new(|| Reply::Stall(Duration::from_secs(3)))),
        ("truncated", Arc::new(|| json(202, r#"{"droplet":{"id":1"#))),
        (
            "200 instead of 202",
            Arc::new(|| json(200, &format!(r#"{{"droplet":{}}}"#, droplet(1, "web-a")))),
        ),
        ("204", Arc::new(|| with_headers(204, &[], ""))),
        (
            "another name",
            Arc::new(|| json(202, &format!(r#"{{"droplet":{}}}"#, droplet(1, "web-z")))),
        ),
        (
            "too many",
            Arc::new(|| {
                json(
                    202,
                    &format!(
                        r#"{{"droplets":[{},{}]}}"#,
                        droplet(1, "web-a"),
                        droplet(2, "web-a")
                    ),
                )
            }),
        ),
    ];
    for (what, reply) in cases {
        let s = Server::start(move |_, _| reply()).await;
        let c = client_with(&s.url, Duration::from_secs(1), fast_retry());
        let out = c.create(&names(&["web-a"]), &fields()).await;
        assert!(out.created.is_empty(), "[{what}] adopted {:?}", out.created);
        assert_eq!(out.unknown, names(&["web-a"]), "[{what}]");
        let e = out.error.unwrap();
        assert!(e.is_ambiguous(), "[{what}] {e}");
        assert_eq!(s.count("POST"), 1, "[{what}] re-sent");
        assert_eq!(s.requests().len(), 1, "[{what}] {:?}", s.requests());
        if what == "524" {
            assert!(
                e.to_string()
                    .contains("HTML page: api.digitalocean.com | 524: A timeout occurred"),
                "{e}"
            );
        }
    }
}

#[tokio::test]
async fn a_4xx_creates_nothing_and_a_429_is_waited_out() {
    let s = Server::start(|_, _| {
        json(
            422,
            r#"{"id":"unprocessable_entity","message":"creating this/these droplet(s) will exceed your droplet limit","request_id":"r-1"}"#,
        )
    })
    .await;
    let out = client(&s.url)
        .create(&names(&["web-a", "web-b"]), &fields())
        .await;
    assert_eq!(out.not_created, names(&["web-a", "web-b"]));
    assert!(out.unknown.is_empty());
    let (_, f) = out.split();
    let text = f.unwrap().to_string();
    assert!(
        text.contains("HTTP 422 unprocessable_entity")
            && text.contains("not created: web-a, web-b"),
        "{text}"
    );
    assert_eq!(s.count("POST"), 1);

    let s = Server::start(|r, n| {
        if n == 0 {
            with_headers(429, &[("retry-after", "0")], r#"{"id":"too_many_requests","message":"API rate limit exceeded."}"#)
        } else {
            let body: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
            assert_eq!(body["names"], serde_json::json!(["web-a", "web-b"]));
            json(
                202,
                &format!(
                    r#"{{"droplets":[{},{}],"links":{{"actions":[{{"id":12,"rel":"create"}},{{"id":11,"rel":"create"}}]}}}}"#,
                    droplet(1, "web-a"),
                    droplet(2, "web-b")
                ),
            )
        }
    })
    .await;
    let out = client(&s.url)
        .create(&names(&["web-a", "web-b"]), &fields())
        .await;
    assert!(out.error.is_none(), "{:?}", out.error);
    assert_eq!(out.created.len(), 2);
    assert!(out.created.iter().all(|c| c.actions == vec![12, 11]));
    assert_eq!(s.count("POST"), 2);
    assert!(s.requests()[0].head.contains(&format!("Bearer {TOKEN}")));
}

#[tokio::test]
async fn cloudflare_pages_are_retried_on_get_and_summarised() {
    let s = Server::start(|_, _| {
        with_headers(
            522,
            &[("content-type", "text/html"), ("server", "cloudflare")],
            "<!DOCTYPE html>\n<html>\n<head>\n<title>api.digitalocean.com | 522: Connection timed out</title>\n</head><body>lots of markup</body></html>",
        )
    })
    .await;
    let e = client(&s.url).get_droplet(1).await.unwrap_err();
    assert_eq!(s.count("GET"), 3, "retried up to max_attempts");
    assert_eq!(e.status(), Some(522));
    assert!(
        e.to_string()
            .ends_with("HTTP 522 HTML page: api.digitalocean.com | 522: Connection timed out"),
        "{e}"
    );
    // 501 is not retried.
    let s = Server::start(|_, _| json(501, "{}")).await;
    let _ = client(&s.url).delete_droplet(1).await.unwrap_err();
    assert_eq!(s.count("DELETE"), 1);
    // A reset is retried on GET.
    let s = Server::start(|_, n| {
        if n < 2 {
            Reply::Close
        } else {
            json(200, &page_of(1..2, 1, false))
        }
    })
    .await;
    assert_eq!(
        client(&s.url).list_by_tag("doproxy").await.unwrap().len(),
        1
    );
    assert_eq!(s.count("GET"), 3);
}

#[tokio::test]
async fn upstream_text_is_cut_stripped_and_redacted() {
    let s = Server::start(|r, _| {
        // An upstream that echoes the Authorization header back, with terminal escapes.
        let auth = r
            .head
            .lines()
            .find(|l| l.to_ascii_lowercase().starts_with("authorization:"))
            .unwrap_or_default()
            .to_string();
        let message = format!("bad\u{1b}[2J\r\nrequest {auth} {}", "x".repeat(5000));
        let body = serde_json::json!({ "id": "bad\nid", "message": message }).to_string();
        json(400, &body)
    })
    .await;
    let e = client(&s.url).get_droplet(1).await.unwrap_err();
    let text = e.to_string();
    assert!(!text.contains(TOKEN), "{text}");
    assert!(text.contains("[redacted]"), "{text}");
    assert!(!text.chars().any(char::is_control), "{text:?}");
    assert!(text.len() < 600, "{} characters", text.len());
    let Error::Api(a) = &e else { panic!("{e}") };
    assert_eq!(a.message.chars().count(), ECHO_LIMIT + 1);
    assert_eq!(a.id, "bad id");
    // A non-JSON body with a control-character flood.
    let s = Server::start(|_, _| with_headers(418, &[], &"\u{7}\u{1b}]0;pwned\u{7}".repeat(1000)))
        .await;
    let text = client(&s.url).get_droplet(1).await.unwrap_err().to_string();
    assert!(
        !text.chars().any(char::is_control) && text.len() < 400,
        "{text:?}"
    );
}

#[tokio::test]
async fn actions_are_matched_by_resource_id_and_a_403_is_told_apart() {
    let s = Server::start(|r, _| match r.target.as_str() {
        "/v2/actions/11" => json(
            200,
            r#"{"action":{"id":11,"status":"completed","resource_id":2}}"#,
        ),
        "/v2/actions/12" => json(
            200,
            r#"{"action":{"id":12,"status":"errored","resource_id":1}}"#,
        ),
        "/v2/actions/13" => json(
            200,
            r#"{"action":{"id":13,"status":"errored","resource_id":null}}"#,
        ),
        "/v2/actions/40" => json(
            403,
            r#"{"id":"forbidden","message":"You do not have permission to perform this action."}"#,
        ),
        _ => json(
            404,
            r#"{"id":"not_found","message":"The resource you requested could not be found."}"#,
        ),
    })
    .await;
    let c = client(&s.url);
    // The first candidate belongs to droplet 2: droplet 1's is the second.
    let ActionLookup::Found(a) = c.find_create_action(1, &[11, 12]).await.unwrap() else {
        panic!()
    };
    assert_eq!((a.id, a.status.as_str()), (12, "errored"));
    let ActionLookup::Found(a) = c.find_create_action(2, &[11, 12]).await.unwrap() else {
        panic!()
    };
    assert_eq!(a.id, 11);
    // A single candidate without a resource_id is the droplet's; among several it is not.
    assert!(matches!(
        c.find_create_action(1, &[13]).await.unwrap(),
        ActionLookup::Found(_)
    ));
    assert!(matches!(
        c.find_create_action(1, &[13, 11]).await.unwrap(),
        ActionLookup::NotFound
    ));
    assert!(matches!(
        c.find_create_action(1, &[40, 12]).await.unwrap(),
        ActionLookup::Forbidden
    ));
    assert!(matches!(
        c.get_action(40).await.unwrap(),
        ActionLookup::Forbidden
    ));
    assert!(matches!(
        c.get_action(41).await.unwrap(),
        ActionLookup::NotFound
    ));
    assert!(matches!(
        c.find_create_action(1, &[]).await.unwrap(),
        ActionLookup::NotFound
    ));
}

#[tokio::test]
async fn metadata_answers_are_checked() {
    let s = Server::start(|r, _| match r.target.as_str() {
        "/a/metadata/v1/interfaces/public/0/ipv4/address" => with_headers(200, &[], "127.0.0.1"),
        "/a/metadata/v1/interfaces/public/0/anchor_ipv4/address" => {
            with_headers(200, &[], "10.17.0.5\n")
        }
        "/a/metadata/v1/reserved_ip/ipv4/ip_address" => {
            with_headers(404, &[], "404 page not found\n")
        }
        "/b/metadata/v1/interfaces/public/0/ipv4/address" => with_headers(200, &[], "192.0.2.10"),
        "/b/metadata/v1/interfaces/public/0/anchor_ipv4/address" => {
            with_headers(200, &[], "169.254.1.1")
        }
        "/b/metadata/v1/reserved_ip/ipv4/ip_address" => with_headers(200, &[], ""),
        "/c/metadata/v1/interfaces/public/0/ipv4/address" => {
            with_headers(200, &[], &" ".repeat(5000))
        }
        "/c/metadata/v1/interfaces/public/0/anchor_ipv4/address" => {
            with_headers(301, &[("location", "/elsewhere")], "")
        }
        "/c/metadata/v1/reserved_ip/ipv4/ip_address" => with_headers(200, &[], "203.0.113.7"),
        _ => with_headers(200, &[], "not\u{1b}an address"),
    })
    .await;
    let (a, b, c) = (
        format!("{}/a", s.url),
        format!("{}/b", s.url),
        format!("{}/c", s.url),
    );
    let e = format!("{:#}", metadata::public_ipv4(&a).await.unwrap_err());
    assert!(e.contains("127.0.0.1 is a loopback address"), "{e}");
    assert_eq!(
        metadata::anchor_ipv4(&a).await.unwrap().to_string(),
        "10.17.0.5"
    );
    assert_eq!(metadata::reserved_ipv4(&a).await.unwrap(), None);
    assert_eq!(
        metadata::public_ipv4(&b).await.unwrap().to_string(),
        "192.0.2.10"
    );
    let e = format!("{:#}", metadata::anchor_ipv4(&b).await.unwrap_err());
    assert!(e.contains("169.254.1.1 is a link-local address"), "{e}");
    assert_eq!(metadata::reserved_ipv4(&b).await.unwrap(), None);
    let e = format!("{:#}", metadata::public_ipv4(&c).await.unwrap_err());
    assert!(e.contains("exceeds 4096 bytes"), "{e}");
    let e = format!("{:#}", metadata::anchor_ipv4(&c).await.unwrap_err());
    assert!(e.contains("HTTP 301"), "{e}");
    assert_eq!(
        metadata::reserved_ipv4(&c)
            .await
            .unwrap()
            .map(|ip| ip.to_string()),
        Some("203.0.113.7".to_string())
    );
    let e = format!(
        "{:#}",
        metadata::public_ipv4(&format!("{}/d", s.url))
            .await
            .unwrap_err()
    );
    assert!(
        e.contains("\"notan address\" is not an IPv4 address"),
        "{e}"
    );
    // The redirect was not followed.
    assert!(s.requests().iter().all(|r| !r.target.contains("elsewhere")));
}

/// The environment variable that makes [`proxy_child`] run: `<api url> <metadata url>`.
const CHILD: &str = "DOPROXY_TEST_PROXY_CHILD";

#[tokio::test]
async fn a_proxy_from_the_environment_never_sees_loopback_or_metadata_requests() {
    let proxy = Server::start(|r, _| {
        if r.target.starts_with("http://api.example.invalid/") {
            json(
                200,
                &format!(r#"{{"droplet":{}}}"#, droplet(1, "via-proxy")),
            )
        } else {
            with_headers(502, &[], "proxied")
        }
    })
    .await;
    let api =
        Server::start(|_, _| json(200, &format!(r#"{{"droplet":{}}}"#, droplet(1, "direct"))))
            .await;
    let meta = Server::start(|_, _| with_headers(200, &[], "192.0.2.10")).await;
    let exe = std::env::current_exe().unwrap();
    let mut cmd = tokio::process::Command::new(exe);
    cmd.args([
        "--exact",
        "digitalocean::hostile_tests::proxy_child",
        "--test-threads=1",
        "--nocapture",
    ]);
    for k in ["NO_PROXY", "no_proxy", "REQUEST_METHOD"] {
        cmd.env_remove(k);
    }
    for k in [
        "HTTP_PROXY",
        "http_proxy",
        "HTTPS_PROXY",
        "https_proxy",
        "ALL_PROXY",
        "all_proxy",
    ] {
        cmd.env(k, &proxy.url);
    }
    cmd.env(CHILD, format!("{} {}", api.url, meta.url));
    let out = tokio::time::timeout(Duration::from_secs(60), cmd.output())
        .await
        .expect("the child test finishes")
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(
        stdout.contains("1 passed"),
        "the child ran the test: {stdout}"
    );
    let seen: Vec<String> = proxy.requests().into_iter().map(|r| r.target).collect();
    // The control requests prove the proxy variables were in force in the child...
    assert!(
        seen.iter().any(|t| t == &format!("{}/control", api.url)),
        "{seen:?}"
    );
    assert!(
        seen.iter()
            .any(|t| t == "http://api.example.invalid/v2/droplets/1"),
        "{seen:?}"
    );
    // ...and nothing else reached the proxy.
    assert_eq!(seen.len(), 2, "{seen:?}");
    assert_eq!(api.count("GET"), 1, "the loopback API was reached directly");
    assert_eq!(
        meta.count("GET"),
        1,
        "the metadata service was reached directly"
    );
}

/// Runs only in the child process of the test above (where the proxy variables are set);
/// elsewhere it returns at once.
#[tokio::test]
async fn proxy_child() {
    let Ok(urls) = std::env::var(CHILD) else {
        return;
    };
    let (api, meta) = urls.split_once(' ').unwrap();
    // Control: reqwest's default client does send a loopback request through the proxy.
    let plain = reqwest::Client::new();
    let r = plain.get(format!("{api}/control")).send().await.unwrap();
    assert_eq!(
        r.status().as_u16(),
        502,
        "the control request went through the proxy"
    );
    // The API client for a loopback URL goes direct.
    let d = client(api).get_droplet(1).await.unwrap().unwrap();
    assert_eq!(d.name, "direct");
    // So does the metadata client.
    assert_eq!(
        metadata::public_ipv4(meta).await.unwrap().to_string(),
        "192.0.2.10"
    );
    // A non-loopback API URL keeps reqwest's default: through the proxy (which answers;
    // the name is never resolved).
    let d = client("http://api.example.invalid")
        .get_droplet(1)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(d.name, "via-proxy");
}
