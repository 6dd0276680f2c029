//! The API client's limits at their edges, against raw answers from a small server on
//! 127.0.0.1 (what do-sim never answers): a body of exactly the size limit is read, one
//! byte more is refused — before reading when its length is declared; a listing without a
//! `next` link stops, whatever `meta.total` says; an unexpected 2xx is named as such.

use doproxy::digitalocean::{Client, Error, RetryPolicy, Settings, BODY_LIMIT};
use doproxy::secret::Secret;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What the server sends for one request.
pub(crate) enum Raw {
    /// These bytes, then it closes the connection.
    Bytes(Vec<u8>),
    /// This head (no body), then it holds the connection open for this long.
    HeadThenStall(String, Duration),
}

/// A one-request-per-connection server answering request `n` with `answer(n)`; stops by
/// itself after 30 s. Returns its URL and the request counter.
pub(crate) fn raw_server(
    answer: impl Fn(usize) -> Raw + Send + Sync + 'static,
) -> (String, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    listener.set_nonblocking(true).unwrap();
    let count = Arc::new(AtomicUsize::new(0));
    let (answer, seen) = (Arc::new(answer), count.clone());
    std::thread::spawn(move || {
        let until = Instant::now() + Duration::from_secs(30);
        while Instant::now() < until {
            let Ok((mut s, _)) = listener.accept() else {
                std::thread::sleep(Duration::from_millis(2));
                continue;
            };
            let n = seen.fetch_add(1, Ordering::SeqCst);
            let answer = answer.clone();
            std::thread::spawn(move || {
                let _ = s.set_nonblocking(false);
                let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
                let mut head = Vec::new();
                let mut b = [0u8; 1024];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut b) {
                        Ok(0) | Err(_) => return,
                        Ok(k) => head.extend_from_slice(&b[..k]),
                    }
                }
                match answer(n) {
                    Raw::Bytes(bytes) => {
                        let _ = s.write_all(&bytes);
                    }
                    Raw::HeadThenStall(h, d) => {
                        let _ = s.write_all(h.as_bytes());
                        std::thread::sleep(d);
                    }
                }
            });
        }
    });
    (url, count)
}

/// A client with one attempt per request (nothing retried) and a 5 s timeout.
pub(crate) fn client(url: &str) -> Client {
    Client::new(&Settings {
        api_url: url.to_string(),
        token: Secret::new("client-test-token-3e4f".into()),
        timeout: Duration::from_secs(5),
        retry: RetryPolicy {
            max_attempts: 1,
            min_delay: Duration::from_millis(1),
            max_delay: Duration::from_millis(1),
            budget: Duration::from_millis(1),
        },
    })
    .unwrap()
}

pub(crate) fn block_on<T>(f: impl std::future::Future<Output = T>) -> T {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(f)
}

/// An empty listing padded with spaces to exactly `len` bytes (valid JSON).
fn padded_empty_page(len: usize) -> Vec<u8> {
    let mut body = br#"{"droplets":[],"links":{},"meta":{"total":0}}"#.to_vec();
    body.resize(len, b' ');
    body
}

pub(crate) fn head(status: &str, extra: &str) -> String {
    format!(
        "HTTP/1.1 {status}\r\ncontent-type: application/json\r\nconnection: close\r\n{extra}\r\n"
    )
}

#[test]
fn a_body_of_exactly_the_limit_is_read_declared_or_chunked() {
    // Declared by content-length.
    let (url, _) = raw_server(|_| {
        let body = padded_empty_page(BODY_LIMIT);
        let mut bytes = head("200 OK", &format!("content-length: {}\r\n", body.len())).into_bytes();
        bytes.extend_from_slice(&body);
        Raw::Bytes(bytes)
    });
    let listed = block_on(client(&url).list_by_tag("doproxy"));
    assert!(listed.as_ref().is_ok_and(Vec::is_empty), "{listed:?}");
    // Chunked, no length: the limit applies to what is read.
    let (url, _) = raw_server(|_| {
        let body = padded_empty_page(BODY_LIMIT);
        let mut bytes = head("200 OK", "transfer-encoding: chunked\r\n").into_bytes();
        for chunk in body.chunks(64 << 10) {
            bytes.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
            bytes.extend_from_slice(chunk);
            bytes.extend_from_slice(b"\r\n");
        }
        bytes.extend_from_slice(b"0\r\n\r\n");
        Raw::Bytes(bytes)
    });
    let listed = block_on(client(&url).list_by_tag("doproxy"));
    assert!(listed.as_ref().is_ok_and(Vec::is_empty), "{listed:?}");
    // One byte more, chunked: refused.
    let (url, _) = raw_server(|_| {
        let body = padded_empty_page(BODY_LIMIT + 1);
        let mut bytes = head("200 OK", "transfer-encoding: chunked\r\n").into_bytes();
        for chunk in body.chunks(64 << 10) {
            bytes.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
            bytes.extend_from_slice(chunk);
            bytes.extend_from_slice(b"\r\n");
        }
        bytes.extend_from_slice(b"0\r\n\r\n");
        Raw::Bytes(bytes)
    });
    let e = block_on(client(&url).list_by_tag("doproxy")).unwrap_err();
    assert!(matches!(e, Error::BodyTooLarge { .. }), "{e}");
}

#[test]
fn a_declared_length_over_the_limit_is_refused_before_reading() {
    // The head announces 100 MB, then nothing comes: a client that started reading would
    // wait for its 5 s timeout.
    let (url, _) = raw_server(|_| {
        Raw::HeadThenStall(
            head("200 OK", "content-length: 100000000\r\n"),
            Duration::from_secs(8),
        )
    });
    let started = Instant::now();
    let e = block_on(client(&url).list_by_tag("doproxy")).unwrap_err();
    assert!(matches!(e, Error::BodyTooLarge { .. }), "{e}");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "refused only after {:?}",
        started.elapsed()
    );
}

#[test]
fn a_listing_without_a_next_link_stops_whatever_the_total_says() {
    // One droplet, no `links.pages.next`, and a `meta.total` of 5 (the API's count was
    // stale): one request, not a second page.
    let page = r#"{"droplets":[{"id":7,"name":"web-1","status":"active","locked":false,"networks":{"v4":[{"ip_address":"10.0.0.7","type":"private"}]},"tags":["doproxy"]}],"links":{},"meta":{"total":5}}"#;
    let (url, count) = raw_server(move |_| {
        let mut bytes = head("200 OK", &format!("content-length: {}\r\n", page.len())).into_bytes();
        bytes.extend_from_slice(page.as_bytes());
        Raw::Bytes(bytes)
    });
    let listed = block_on(client(&url).list_by_tag("doproxy")).unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(count.load(Ordering::SeqCst), 1, "requests for one page");
}

#[test]
fn an_unexpected_2xx_is_named_as_such() {
    let (url, _) = raw_server(|_| Raw::Bytes(head("204 No Content", "").into_bytes()));
    let e = block_on(client(&url).list_by_tag("doproxy")).unwrap_err();
    assert!(e.to_string().contains("unexpected status"), "{e}");
}
