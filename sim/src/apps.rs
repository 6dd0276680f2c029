//! The per-droplet web app (the tutorial's identity page).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response};

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
    pub(crate) fn spawn(
        handle: &tokio::runtime::Handle,
        socket: tokio::net::TcpSocket,
        boot_delay: Duration,
        page: String,
    ) -> Self {
        let alive = Arc::new(AtomicBool::new(true));
        let page = Bytes::from(page);
        let task = if boot_delay.is_zero() {
            let _rt = handle.enter();
            match socket.listen(1024) {
                Ok(listener) => handle.spawn(serve(listener, page, alive.clone())),
                Err(e) => {
                    eprintln!("do-sim: app listen failed: {e}");
                    handle.spawn(async {})
                }
            }
        } else {
            let alive = alive.clone();
            handle.spawn(async move {
                tokio::time::sleep(boot_delay).await;
                match socket.listen(1024) {
                    Ok(listener) => serve(listener, page, alive).await,
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

/// Answers every request with `page` while `alive`.
async fn serve(listener: tokio::net::TcpListener, page: Bytes, alive: Arc<AtomicBool>) {
    crate::http::serve_plain(listener, move |req: Request<Incoming>| {
        let page = page.clone();
        let alive = alive.clone();
        async move {
            if alive.load(Ordering::SeqCst) {
                Ok(app_response(&req, page))
            } else {
                Err(Gone)
            }
        }
    })
    .await;
}

fn app_response(_req: &Request<Incoming>, page: Bytes) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(page));
    resp.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("text/html"),
    );
    resp
}
