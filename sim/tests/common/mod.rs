//! The integration tests' HTTP/1.1 client over `std::net::TcpStream` (every read, write
//! and wait is bounded) and the helpers the test files share.

// Each test file uses a different part of this module.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use do_sim::{Sim, SimOptions};
use serde_json::{json, Value};

pub const IO_TIMEOUT: Duration = Duration::from_secs(10);
pub const TOKEN: &str = "sim-token";

#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Resp {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "status {} body is not JSON ({e}): {:?}",
                self.status,
                String::from_utf8_lossy(&self.body)
            )
        })
    }
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

pub fn connect(addr: SocketAddr) -> std::io::Result<TcpStream> {
    let s = TcpStream::connect_timeout(&addr, IO_TIMEOUT)?;
    s.set_read_timeout(Some(IO_TIMEOUT))?;
    s.set_write_timeout(Some(IO_TIMEOUT))?;
    Ok(s)
}

pub fn write_request(
    s: &mut TcpStream,
    method: &str,
    target: &str,
    headers: &[(&str, &str)],
    body: Option<&[u8]>,
    close: bool,
) -> std::io::Result<()> {
    let mut req = format!("{method} {target} HTTP/1.1\r\nHost: sim\r\n");
    if close {
        req.push_str("Connection: close\r\n");
    }
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    if let Some(b) = body {
        req.push_str(&format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n",
            b.len()
        ));
    }
    req.push_str("\r\n");
    let mut bytes = req.into_bytes();
    if let Some(b) = body {
        bytes.extend_from_slice(b);
    }
    s.write_all(&bytes)
}

/// Reads one response (Content-Length framed, as hyper sends `Full` bodies).
pub fn read_response<R: BufRead>(r: &mut R) -> std::io::Result<Resp> {
    let mut line = String::new();
    if r.read_line(&mut line)? == 0 {
        return Err(std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            "connection closed before a response",
        ));
    }
    let status: u16 = line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("bad status line {line:?}")))?;
    let mut headers = Vec::new();
    loop {
        let mut h = String::new();
        r.read_line(&mut h)?;
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        let (k, v) = h.split_once(':').unwrap_or((h, ""));
        headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
    }
    let len = headers
        .iter()
        .find(|(k, _)| k == "content-length")
        .and_then(|(_, v)| v.parse::<usize>().ok())
        .unwrap_or(0);
    let mut body = vec![0; len];
    r.read_exact(&mut body)?;
    Ok(Resp {
        status,
        headers,
        body,
    })
}

pub fn raw(
    addr: SocketAddr,
    method: &str,
    target: &str,
    headers: &[(&str, &str)],
    body: Option<&[u8]>,
) -> std::io::Result<Resp> {
    let mut s = connect(addr)?;
    write_request(&mut s, method, target, headers, body, true)?;
    read_response(&mut BufReader::new(s))
}

pub fn call(sim: &Sim, method: &str, target: &str, body: Option<&Value>) -> Resp {
    let auth = format!("Bearer {TOKEN}");
    let body = body.map(|b| serde_json::to_vec(b).unwrap());
    raw(
        sim.addr(),
        method,
        target,
        &[("Authorization", auth.as_str())],
        body.as_deref(),
    )
    .unwrap_or_else(|e| panic!("{method} {target}: {e}"))
}

pub fn get(sim: &Sim, target: &str) -> Resp {
    call(sim, "GET", target, None)
}

/// Target path+query of a full link URL of this simulator.
pub fn target_of<'a>(sim: &Sim, link: &'a str) -> &'a str {
    let base = sim.url();
    assert!(link.starts_with(&base), "{link} does not start with {base}");
    &link[base.len()..]
}

pub fn wait_until(limit: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if f() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

pub fn opts() -> SimOptions {
    SimOptions {
        active_after: Duration::from_millis(50),
        ..SimOptions::default()
    }
}

pub fn create_body(name: &str) -> Value {
    json!({ "name": name, "size": "s-1vcpu-1gb", "image": "ubuntu-24-04-x64", "region": "nyc3", "tags": ["doproxy"] })
}

pub fn ipv4s(droplet: &Value) -> Vec<(String, String)> {
    droplet["networks"]["v4"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| {
            (
                n["type"].as_str().unwrap().to_string(),
                n["ip_address"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

pub fn assert_common_headers(r: &Resp, limit: u32) {
    assert_eq!(
        r.header("ratelimit-limit"),
        Some(limit.to_string().as_str())
    );
    let remaining: u32 = r.header("ratelimit-remaining").unwrap().parse().unwrap();
    assert!(remaining <= limit);
    let reset: u64 = r.header("ratelimit-reset").unwrap().parse().unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    assert!(
        reset + 5 >= now && reset <= now + 3601,
        "reset {reset} now {now}"
    );
    let rid = r.header("x-request-id").unwrap();
    let parts: Vec<usize> = rid.split('-').map(str::len).collect();
    assert_eq!(parts, vec![8, 4, 4, 4, 12], "{rid}");
    if !r.body.is_empty() {
        assert_eq!(r.header("content-type"), Some("application/json"));
    }
}

pub fn assert_error(r: &Resp, status: u16, id: &str) -> Value {
    assert_eq!(r.status, status, "{}", r.text());
    let v = r.json();
    assert_eq!(v["id"], id, "{v}");
    assert!(v["message"].as_str().is_some_and(|m| !m.is_empty()));
    v
}

pub fn assert_422(r: &Resp) -> String {
    let v = assert_error(r, 422, "unprocessable_entity");
    assert_eq!(
        v["request_id"].as_str(),
        r.header("x-request-id"),
        "422 body request_id must equal the header"
    );
    v["message"].as_str().unwrap().to_string()
}

// ------------------------------------------------------------------ apps

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub fn wait_active(sim: &Sim, id: u64) -> Value {
    let mut out = Value::Null;
    assert!(
        wait_until(Duration::from_secs(10), || {
            let d = get(sim, &format!("/v2/droplets/{id}")).json()["droplet"].clone();
            let ok = d["status"] == "active" && !ipv4s(&d).is_empty();
            if ok {
                out = d;
            }
            ok
        }),
        "droplet {id} never became active"
    );
    out
}

/// A simulator serving apps on a free port.
pub fn app_sim() -> (Sim, u16) {
    let port = free_port();
    let sim = Sim::start(SimOptions {
        serve_apps: true,
        backend_port: port,
        ..opts()
    })
    .unwrap();
    (sim, port)
}

/// Creates a droplet through the API and returns its id.
pub fn create_id(sim: &Sim, name: &str) -> u64 {
    call(sim, "POST", "/v2/droplets", Some(&create_body(name))).json()["droplet"]["id"]
        .as_u64()
        .unwrap()
}
