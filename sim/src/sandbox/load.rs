//! A bounded closed-loop HTTP load for the loopback world: worker threads, of which the
//! first `active` send one `GET /` after another (a fresh connection each, so one worker
//! keeps one request in flight) to HAProxy's frontend, and every answer is counted with the
//! droplet that served it. doproxy's live autoscaler tests and its autoscaler benchmark
//! share it.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// One answer: when it ended (since the load's start), its status (0: the connection
/// failed) and the droplet ID on the page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Answer {
    /// When the request ended, since [`Load::start`].
    pub at: Duration,
    /// The HTTP status; 0 when the connection failed.
    pub status: u16,
    /// The droplet ID on a do-sim app's page.
    pub id: Option<u64>,
}

/// The running load. It stops by itself after its limit, on [`Load::stop`], or when dropped.
pub struct Load {
    /// When it started.
    pub started: Instant,
    active: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    answers: Arc<Mutex<Vec<Answer>>>,
    threads: Vec<JoinHandle<()>>,
}

impl Load {
    /// Starts `workers` threads against `addr`, the first `active` of them sending.
    pub fn start(addr: SocketAddr, workers: usize, active: usize, limit: Duration) -> Load {
        let started = Instant::now();
        let active = Arc::new(AtomicUsize::new(active));
        let stop = Arc::new(AtomicBool::new(false));
        let answers = Arc::new(Mutex::new(Vec::new()));
        let threads = (0..workers)
            .map(|i| {
                let (active, stop, answers) = (active.clone(), stop.clone(), answers.clone());
                std::thread::spawn(move || {
                    while !stop.load(Ordering::Relaxed) && started.elapsed() < limit {
                        if i >= active.load(Ordering::Relaxed) {
                            std::thread::sleep(Duration::from_millis(5));
                            continue;
                        }
                        let (status, id) = match http_get(addr, "/", Duration::from_secs(10)) {
                            Some((status, body)) => (status, page_id(&body)),
                            None => (0, None),
                        };
                        let at = started.elapsed();
                        answers
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .push(Answer { at, status, id });
                    }
                })
            })
            .collect();
        Load {
            started,
            active,
            stop,
            answers,
            threads,
        }
    }

    /// Sets how many workers send; returns the moment, since the start.
    pub fn set_active(&self, n: usize) -> Duration {
        self.active.store(n, Ordering::Relaxed);
        self.started.elapsed()
    }

    /// The answers so far.
    pub fn answers(&self) -> Vec<Answer> {
        self.answers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Stops every worker and returns every answer.
    pub fn stop(&mut self) -> Vec<Answer> {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
        self.answers()
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        let _ = self.stop();
    }
}

/// `GET path` on a fresh connection with `Connection: close`, reading for at most
/// `read_timeout`: the status and the body, `None` on any socket error. The load's workers
/// and doproxy's test harness use it.
pub fn http_get(addr: SocketAddr, path: &str, read_timeout: Duration) -> Option<(u16, String)> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
    s.set_read_timeout(Some(read_timeout)).ok()?;
    s.set_nodelay(true).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: load\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut buf = String::new();
    s.read_to_string(&mut buf).ok()?;
    let status: u16 = buf.split_whitespace().nth(1)?.parse().ok()?;
    let body = buf
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Some((status, body))
}

/// The droplet ID on a do-sim app's page (`Droplet: NAME, ID: 123, IP Address: …`).
pub fn page_id(body: &str) -> Option<u64> {
    body.split("ID: ")
        .nth(1)?
        .split(',')
        .next()?
        .trim()
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    #[test]
    fn reads_the_droplet_id_of_a_page() {
        assert_eq!(
            super::page_id("Droplet: auto-nginx-a, ID: 3164445, IP Address: 127.0.0.5\n"),
            Some(3164445)
        );
        assert_eq!(super::page_id("<html>503</html>"), None);
    }
}
