//! A scripted stand-in for the API in front of do-sim, on 127.0.0.1: each request is
//! handed to a rule, which may answer it (a 429 with `retry-after`, a 500 for every
//! DELETE, ...) or pass it on but hold the simulator's answer back for a while (a create
//! carried out whose answer has not arrived yet); the rest are passed to the simulator
//! unchanged. Every request's arrival
//! is logged with an `Instant`, so a test can measure the gap between a request and its
//! retry. One request per connection (`connection: close` on every answer). It stops when
//! dropped, or by itself after 5 minutes.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// One request as the proxy saw it.
#[derive(Debug, Clone)]
pub struct Seen {
    /// `GET`, `POST`, `DELETE`...
    pub method: String,
    /// Path and query, as sent.
    pub target: String,
    /// When its head had arrived.
    pub at: Instant,
    /// The status of the rule's answer, or `None` when passed to the simulator.
    pub scripted: Option<u16>,
}

/// What a rule does with a request.
#[derive(Debug, Clone)]
pub enum Act {
    /// Pass it to the simulator and its answer back.
    Pass,
    /// Answer it instead of the simulator.
    Answer(Reply),
    /// Pass it to the simulator (which carries it out), then hold the answer back for
    /// this long before passing it on.
    PassSlowly(Duration),
    /// Pass it to the simulator (which carries it out), then close the connection without
    /// answering: the client cannot know whether it was done.
    PassThenDrop,
}

/// A rule's answer.
#[derive(Debug, Clone)]
pub struct Reply {
    /// Status code.
    pub status: u16,
    /// Extra headers.
    pub headers: Vec<(String, String)>,
    /// JSON body.
    pub body: String,
}

impl Reply {
    /// An API-shaped error answer (`{"id": ..., "message": ...}`).
    pub fn error(status: u16, id: &str, headers: &[(&str, &str)]) -> Reply {
        Reply {
            status,
            headers: headers
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            body: format!("{{\"id\":\"{id}\",\"message\":\"scripted by the test\"}}"),
        }
    }

    /// A 429 with the rate limit spent, asking to wait `retry_after` seconds.
    pub fn too_many_requests(retry_after: &str) -> Reply {
        Reply::error(
            429,
            "too_many_requests",
            &[("retry-after", retry_after), ("ratelimit-remaining", "0")],
        )
    }
}

/// Decides about one request: `(method, target, requests seen before it)`.
pub type Rule = Box<dyn Fn(&str, &str, usize) -> Act + Send + Sync>;

/// A running proxy.
pub struct ApiProxy {
    url: String,
    log: Arc<Mutex<Vec<Seen>>>,
    stop: Arc<AtomicBool>,
}

impl ApiProxy {
    /// Starts a proxy to the simulator at `upstream` (`http://127.0.0.1:PORT`) with `rule`.
    pub fn start(upstream: &str, rule: Rule) -> ApiProxy {
        let upstream: SocketAddr = upstream
            .trim_start_matches("http://")
            .parse()
            .expect("the simulator's address");
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        listener.set_nonblocking(true).unwrap();
        let log = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let rule = Arc::new(rule);
        let (log2, stop2) = (log.clone(), stop.clone());
        std::thread::spawn(move || {
            let until = Instant::now() + Duration::from_secs(300);
            while !stop2.load(Ordering::Relaxed) && Instant::now() < until {
                match listener.accept() {
                    Ok((s, _)) => {
                        let (log, rule) = (log2.clone(), rule.clone());
                        std::thread::spawn(move || serve(s, upstream, &log, &rule));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(2)),
                }
            }
        });
        ApiProxy { url, log, stop }
    }

    /// The base URL to put in `api_url`.
    pub fn url(&self) -> String {
        self.url.clone()
    }

    /// Every request so far, in arrival order.
    pub fn seen(&self) -> Vec<Seen> {
        self.log.lock().unwrap().clone()
    }
}

impl Drop for ApiProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Reads one HTTP/1.1 request (head and `content-length` body); `None` on EOF or garbage.
fn read_request(s: &mut TcpStream) -> Option<(Vec<u8>, Vec<u8>)> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let n = s.read(&mut chunk).ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = buf[..head_end].to_vec();
    let text = String::from_utf8_lossy(&head).to_ascii_lowercase();
    let len: usize = text
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    let mut body = buf[head_end..].to_vec();
    while body.len() < len {
        let n = s.read(&mut chunk).ok()?;
        if n == 0 {
            return None;
        }
        body.extend_from_slice(&chunk[..n]);
    }
    Some((head, body))
}

/// `head` without its `connection` header, with `connection: close` added.
fn closing(head: &[u8]) -> Vec<u8> {
    let text = String::from_utf8_lossy(head);
    let mut out = String::new();
    for line in text.trim_end_matches("\r\n").split("\r\n") {
        if !line.to_ascii_lowercase().starts_with("connection:") {
            out.push_str(line);
            out.push_str("\r\n");
        }
    }
    out.push_str("connection: close\r\n\r\n");
    out.into_bytes()
}

fn serve(mut s: TcpStream, upstream: SocketAddr, log: &Mutex<Vec<Seen>>, rule: &Rule) {
    let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
    let Some((head, body)) = read_request(&mut s) else {
        return;
    };
    let at = Instant::now();
    let first = String::from_utf8_lossy(&head)
        .lines()
        .next()
        .unwrap_or_default()
        .to_string();
    let mut words = first.split_whitespace();
    let method = words.next().unwrap_or_default().to_string();
    let target = words.next().unwrap_or_default().to_string();
    // Decide and log under one lock: the count a rule sees is the request's place.
    let act = {
        let mut log = log.lock().unwrap();
        let act = rule(&method, &target, log.len());
        log.push(Seen {
            method: method.clone(),
            target,
            at,
            scripted: match &act {
                Act::Answer(r) => Some(r.status),
                _ => None,
            },
        });
        act
    };
    let hold = match act {
        Act::Pass | Act::PassThenDrop => Duration::ZERO,
        Act::PassSlowly(d) => d,
        Act::Answer(r) => {
            answer(&mut s, &r);
            return;
        }
    };
    let drop_answer = matches!(act, Act::PassThenDrop);
    pass(&mut s, upstream, &head, &body, hold, drop_answer);
}

fn answer(s: &mut TcpStream, r: &Reply) {
    {
        let mut text = format!(
            "HTTP/1.1 {} Scripted\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n",
            r.status,
            r.body.len()
        );
        for (k, v) in &r.headers {
            text.push_str(&format!("{k}: {v}\r\n"));
        }
        text.push_str("\r\n");
        text.push_str(&r.body);
        let _ = s.write_all(text.as_bytes());
    }
}

fn pass(
    s: &mut TcpStream,
    upstream: SocketAddr,
    head: &[u8],
    body: &[u8],
    hold: Duration,
    drop_answer: bool,
) {
    let Ok(mut up) = TcpStream::connect_timeout(&upstream, Duration::from_secs(5)) else {
        return; // the client sees a reset
    };
    let _ = up.set_read_timeout(Some(Duration::from_secs(30)));
    if up.write_all(&closing(head)).is_err() || up.write_all(body).is_err() {
        return;
    }
    let mut answer = Vec::new();
    let _ = up.read_to_end(&mut answer);
    std::thread::sleep(hold);
    if drop_answer {
        return;
    }
    let Some(i) = answer.windows(4).position(|w| w == b"\r\n\r\n") else {
        return;
    };
    let _ = s.write_all(&closing(&answer[..i + 4]));
    let _ = s.write_all(&answer[i + 4..]);
}
