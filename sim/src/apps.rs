//! The per-droplet web app (the tutorial's identity page), with an optional service
//! time and a bounded worker pool so that it can be loaded like a real backend.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response};
use tokio::sync::Semaphore;

/// Longest service time a request can ask for with `?ms=N` (60 s).
const MAX_QUERY_MS: u64 = 60_000;

/// `u64::MAX` in a per-droplet override: no override.
const NO_OVERRIDE: u64 = u64::MAX;

/// The global load knobs every app reads on each request (`app_service_time`,
/// `app_concurrency`); shared with the control API, which changes them live.
#[derive(Debug)]
pub(crate) struct AppLoad {
    /// Service time of every request, in milliseconds.
    service_time_ms: AtomicU64,
    /// Requests served at once per droplet; 0 = unlimited.
    concurrency: AtomicUsize,
}

impl AppLoad {
    pub(crate) fn new(service_time: Duration, concurrency: Option<usize>) -> Self {
        let load = AppLoad {
            service_time_ms: AtomicU64::new(0),
            concurrency: AtomicUsize::new(0),
        };
        load.set_service_time(service_time);
        load.set_concurrency(concurrency);
        load
    }

    pub(crate) fn service_time(&self) -> Duration {
        Duration::from_millis(self.service_time_ms.load(Ordering::SeqCst))
    }

    pub(crate) fn set_service_time(&self, d: Duration) {
        let ms = u64::try_from(d.as_millis()).unwrap_or(NO_OVERRIDE - 1);
        self.service_time_ms.store(ms, Ordering::SeqCst);
    }

    /// `None`: unlimited.
    pub(crate) fn concurrency(&self) -> Option<usize> {
        match self.concurrency.load(Ordering::SeqCst) {
            0 => None,
            n => Some(n),
        }
    }

    /// `None` (or 0): unlimited.
    pub(crate) fn set_concurrency(&self, n: Option<usize>) {
        self.concurrency.store(n.unwrap_or(0), Ordering::SeqCst);
    }
}

/// One droplet's service-time override, set through the control API; it outlives
/// the droplet's app (it is kept across a power-off) and can be set before the app runs.
#[derive(Debug)]
pub(crate) struct AppOverride(AtomicU64);

impl Default for AppOverride {
    fn default() -> Self {
        AppOverride(AtomicU64::new(NO_OVERRIDE))
    }
}

impl AppOverride {
    pub(crate) fn get(&self) -> Option<Duration> {
        match self.0.load(Ordering::SeqCst) {
            NO_OVERRIDE => None,
            ms => Some(Duration::from_millis(ms)),
        }
    }

    /// `None` clears the override: the global service time applies again.
    pub(crate) fn set(&self, d: Option<Duration>) {
        let v = match d {
            Some(d) => u64::try_from(d.as_millis()).unwrap_or(NO_OVERRIDE - 1),
            None => NO_OVERRIDE,
        };
        self.0.store(v, Ordering::SeqCst);
    }
}

/// What one app needs to serve: its page, whether it is alive, the load knobs and its
/// worker pool.
struct App {
    page: Bytes,
    alive: Arc<AtomicBool>,
    load: Arc<AppLoad>,
    own: Arc<AppOverride>,
    /// The pool for the current `app_concurrency` (and that limit). When the limit
    /// changes, the next request builds a new pool; requests already holding or
    /// awaiting a permit of the old one finish under the old limit.
    pool: Mutex<Option<(usize, Arc<Semaphore>)>>,
}

impl App {
    /// The pool to queue in for the current limit; `None` when unlimited.
    fn pool(&self) -> Option<Arc<Semaphore>> {
        let limit = self.load.concurrency()?;
        let mut pool = self.pool.lock().unwrap_or_else(|e| e.into_inner());
        match &*pool {
            Some((n, s)) if *n == limit => Some(s.clone()),
            _ => {
                let s = Arc::new(Semaphore::new(limit));
                *pool = Some((limit, s.clone()));
                Some(s)
            }
        }
    }

    /// The service time of `req`: its `ms` query parameter (capped at 60 s), else the
    /// droplet's override, else the global knob.
    fn service_time(&self, req: &Request<Incoming>) -> Duration {
        let query_ms = req.uri().query().and_then(|q| {
            form_urlencoded::parse(q.as_bytes())
                .find(|(k, _)| k == "ms")
                .and_then(|(_, v)| v.parse::<u64>().ok())
        });
        match query_ms {
            Some(ms) => Duration::from_millis(ms.min(MAX_QUERY_MS)),
            None => self.own.get().unwrap_or_else(|| self.load.service_time()),
        }
    }

    fn alive(&self) -> bool {
        self.alive.load(Ordering::SeqCst)
    }

    /// Waits for a worker, takes the service time, then answers; `Gone` once deleted.
    async fn answer(&self, req: Request<Incoming>) -> Result<Response<Full<Bytes>>, Gone> {
        if !self.alive() {
            return Err(Gone);
        }
        let _permit = match self.pool() {
            Some(pool) => Some(pool.acquire_owned().await.map_err(|_| Gone)?),
            None => None,
        };
        let t = self.service_time(&req);
        if !t.is_zero() {
            tokio::time::sleep(t).await;
        }
        if !self.alive() {
            return Err(Gone);
        }
        Ok(app_response(&req, self.page.clone()))
    }
}

/// A running app: `stop` closes it synchronously for new requests (each
/// request checks `alive`) and then aborts the task, which closes the
/// listener and every open connection.
pub(crate) struct AppHandle {
    alive: Arc<AtomicBool>,
    task: tokio::task::AbortHandle,
}

impl AppHandle {
    /// Starts the app. With no boot delay the socket starts listening before
    /// this returns, so the app accepts as soon as its address is visible in
    /// the API; otherwise connections are refused until the delay is over.
    /// Every request reads `load` and `own` (the droplet's override) when it runs.
    pub(crate) fn spawn(
        handle: &tokio::runtime::Handle,
        socket: tokio::net::TcpSocket,
        boot_delay: Duration,
        page: String,
        load: Arc<AppLoad>,
        own: Arc<AppOverride>,
    ) -> Self {
        let alive = Arc::new(AtomicBool::new(true));
        let app = Arc::new(App {
            page: Bytes::from(page),
            alive: alive.clone(),
            load,
            own,
            pool: Mutex::new(None),
        });
        let task = if boot_delay.is_zero() {
            let _rt = handle.enter();
            match socket.listen(1024) {
                Ok(listener) => handle.spawn(serve(listener, app)),
                Err(e) => {
                    eprintln!("do-sim: app listen failed: {e}");
                    handle.spawn(async {})
                }
            }
        } else {
            handle.spawn(async move {
                tokio::time::sleep(boot_delay).await;
                match socket.listen(1024) {
                    Ok(listener) => serve(listener, app).await,
                    Err(e) => eprintln!("do-sim: app listen failed: {e}"),
                }
            })
        };
        AppHandle {
            alive,
            task: task.abort_handle(),
        }
    }

    pub(crate) fn stop(&self) {
        self.alive.store(false, Ordering::SeqCst);
        self.task.abort();
    }
}

/// The droplet is gone: drop the connection without answering.
#[derive(Debug)]
struct Gone;

impl std::fmt::Display for Gone {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("droplet deleted")
    }
}

impl std::error::Error for Gone {}

/// Answers every request with the app's page while it is alive.
async fn serve(listener: tokio::net::TcpListener, app: Arc<App>) {
    crate::http::serve_plain(listener, move |req: Request<Incoming>| {
        let app = app.clone();
        async move { app.answer(req).await }
    })
    .await;
}

/// The status a request asks for with `?status=N` (an app that answers 500, or 404),
/// when N is a valid HTTP status; otherwise 200.
fn asked_status(req: &Request<Incoming>) -> hyper::StatusCode {
    req.uri()
        .query()
        .and_then(|q| {
            form_urlencoded::parse(q.as_bytes())
                .find(|(k, _)| k == "status")
                .and_then(|(_, v)| v.parse::<u16>().ok())
        })
        .and_then(|n| hyper::StatusCode::from_u16(n).ok())
        .unwrap_or(hyper::StatusCode::OK)
}

fn app_response(req: &Request<Incoming>, page: Bytes) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(page));
    *resp.status_mut() = asked_status(req);
    resp.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("text/html"),
    );
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn load_knobs_round_trip() {
        let load = AppLoad::new(Duration::from_millis(7), Some(3));
        assert_eq!(load.service_time(), Duration::from_millis(7));
        assert_eq!(load.concurrency(), Some(3));
        load.set_concurrency(None);
        assert_eq!(load.concurrency(), None);
        load.set_concurrency(Some(0));
        assert_eq!(load.concurrency(), None);
        let own = AppOverride::default();
        assert_eq!(own.get(), None);
        own.set(Some(Duration::from_millis(250)));
        assert_eq!(own.get(), Some(Duration::from_millis(250)));
        own.set(None);
        assert_eq!(own.get(), None);
    }
}
