//! HTTP/1.1 plumbing on hyper: accept loops, per-connection tasks, the
//! connection wrapper used for simulated resets, response helpers. It knows no
//! handler: whoever serves passes one in.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;

pub(crate) type Resp = Response<Full<Bytes>>;

/// What a request handler decided.
pub(crate) enum Outcome {
    Respond(Resp),
    /// Drop the connection without answering.
    Reset,
}

/// Returned to hyper to make it abandon the connection.
#[derive(Debug)]
struct SimulatedReset;

impl std::fmt::Display for SimulatedReset {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("simulated connection reset")
    }
}

impl std::error::Error for SimulatedReset {}

/// A TCP stream that, when its connection is abandoned for a simulated
/// reset, sets SO_LINGER 0 before closing so the peer gets a real RST.
struct ResetIo {
    io: TokioIo<TcpStream>,
    reset: Arc<AtomicBool>,
}

impl Drop for ResetIo {
    fn drop(&mut self) {
        if self.reset.load(Ordering::SeqCst) {
            let _ = self.io.inner().set_zero_linger();
        }
    }
}

impl hyper::rt::Read for ResetIo {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: hyper::rt::ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_read(cx, buf)
    }
}

impl hyper::rt::Write for ResetIo {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let me = self.get_mut();
        if me.reset.load(Ordering::SeqCst) {
            // No FIN: the drop right after sends the RST.
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut me.io).poll_shutdown(cx)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write_vectored(cx, bufs)
    }
}

fn http1() -> hyper::server::conn::http1::Builder {
    let mut b = hyper::server::conn::http1::Builder::new();
    b.timer(TokioTimer::new());
    b
}

/// Accepts until the task is dropped; connection tasks live in a `JoinSet`
/// so dropping this future also closes every open connection.
async fn accept_loop<F, Fut>(listener: TcpListener, mut on_conn: F)
where
    F: FnMut(TcpStream) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let mut conns = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _peer)) => {
                    let _ = stream.set_nodelay(true);
                    conns.spawn(on_conn(stream));
                }
                // E.g. too many open files: back off a little.
                Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
            },
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
        }
    }
}

/// Serves `handler` on `listener` until dropped; an [`Outcome::Reset`] drops
/// the connection with a TCP RST instead of answering.
pub(crate) async fn serve<H, Fut>(listener: TcpListener, handler: H)
where
    H: Fn(Request<Incoming>) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Outcome> + Send + 'static,
{
    accept_loop(listener, move |stream| {
        let handler = handler.clone();
        async move {
            let reset = Arc::new(AtomicBool::new(false));
            let io = ResetIo {
                io: TokioIo::new(stream),
                reset: reset.clone(),
            };
            let svc = service_fn(move |req: Request<Incoming>| {
                let reset = reset.clone();
                let answer = handler(req);
                async move {
                    match answer.await {
                        Outcome::Respond(r) => Ok(r),
                        Outcome::Reset => {
                            reset.store(true, Ordering::SeqCst);
                            Err(SimulatedReset)
                        }
                    }
                }
            });
            let _ = http1().serve_connection(io, svc).await;
        }
    })
    .await
}

/// Serves a simple handler (the droplet apps); an `Err` drops the connection.
pub(crate) async fn serve_plain<H, Fut, E>(listener: TcpListener, handler: H)
where
    H: Fn(Request<Incoming>) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Result<Resp, E>> + Send + 'static,
    E: std::error::Error + Send + Sync + 'static,
{
    accept_loop(listener, move |stream| {
        let handler = handler.clone();
        async move {
            let svc = service_fn(handler);
            let _ = http1().serve_connection(TokioIo::new(stream), svc).await;
        }
    })
    .await
}

pub(crate) fn json(status: StatusCode, body: &serde_json::Value) -> Resp {
    let bytes = serde_json::to_vec(body).unwrap_or_default();
    let mut r = Response::new(Full::new(Bytes::from(bytes)));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r
}

/// A response with this body and `content-type`.
pub(crate) fn typed(
    status: StatusCode,
    content_type: &'static str,
    body: impl Into<Bytes>,
) -> Resp {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    r
}

pub(crate) fn text(status: StatusCode, body: impl Into<String>) -> Resp {
    let mut r = Response::new(Full::new(Bytes::from(body.into())));
    *r.status_mut() = status;
    r.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

pub(crate) fn empty(status: StatusCode) -> Resp {
    let mut r = Response::new(Full::new(Bytes::new()));
    *r.status_mut() = status;
    r
}

/// Reads a request body up to `limit` bytes. `None` when it is larger or
/// the read fails.
pub(crate) async fn read_body(req: Request<Incoming>, limit: usize) -> Option<Bytes> {
    use http_body_util::{BodyExt, Limited};
    let body = Limited::new(req.into_body(), limit);
    body.collect().await.ok().map(|c| c.to_bytes())
}
