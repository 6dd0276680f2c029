//! `do-sim`: a local DigitalOcean API v2 + droplet metadata simulator.
//!
//! It serves the few endpoints doproxy uses (`/v2/droplets`, `/v2/actions`,
//! `/v2/account`), the droplet metadata service (`/metadata/v1/...`) and a
//! control API (`/_sim/...`) on one loopback HTTP/1.1 listener. With
//! [`SimOptions::serve_apps`] every active droplet also gets a tiny web app on
//! `private_ip:backend_port`, where the private IP is a 127.0.0.0/8 address.
//!
//! It never opens an outgoing connection and binds only 127.0.0.0/8
//! addresses. See `README.md` in this crate for the full semantics.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

mod api;
mod apps;
mod control;
mod http;
mod metadata;
mod options;
mod router;
pub mod sandbox;
mod state;
mod util;

pub use options::{Faults, MetadataIdentity, Placement, ScopedToken, SimOptions};
use state::{Inner, Knobs, StaticOpts};

/// One API (`/v2/...`) request as the simulator saw it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestRecord {
    /// HTTP method, e.g. `GET`.
    pub method: String,
    /// Request path without the query string, e.g. `/v2/droplets`.
    pub path: String,
    /// The raw query string, as sent (not decoded).
    pub query: Option<String>,
    /// The status sent; 0 when the connection was reset instead.
    pub status: u16,
    /// Arrival time, in milliseconds since the simulator started.
    pub at_ms: u64,
}

/// A live droplet as the simulator holds it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SimDroplet {
    /// Droplet id, as the API reports it.
    pub id: u64,
    /// Droplet name, as given at create.
    pub name: String,
    /// `new` or `active`.
    pub status: String,
    /// Tags, as given at create.
    pub tags: Vec<String>,
    /// Set once the droplet is active.
    pub private_ipv4: Option<String>,
    /// Set once the droplet is active.
    pub public_ipv4: Option<String>,
    /// The `user_data` given at create; `None` if there was none.
    pub user_data: Option<String>,
    /// Creation time, in milliseconds since the simulator started.
    pub created_at_ms: u64,
    /// The `locked` the API reports: the administrative lock ([`Sim::lock_direct`]),
    /// or `new` under [`SimOptions::locked_while_new`].
    #[serde(default)]
    pub locked: bool,
}

/// True for addresses the simulator may bind: IPv4 127.0.0.0/8 only.
pub fn is_allowed_listen(addr: &SocketAddr) -> bool {
    matches!(addr.ip(), IpAddr::V4(v4) if v4.is_loopback())
}

/// A running simulator. Dropping it stops the server, every app listener and
/// the runtime thread.
pub struct Sim {
    inner: Arc<Inner>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Sim {
    /// Binds the listener and starts serving on a runtime of its own, on its
    /// own thread. Works from plain threads and from inside another tokio
    /// runtime.
    pub fn start(opts: SimOptions) -> anyhow::Result<Sim> {
        if !is_allowed_listen(&opts.listen) {
            anyhow::bail!(
                "refusing to listen on {}: only 127.0.0.0/8 addresses are allowed",
                opts.listen
            );
        }
        opts.validate()?;

        let std_listener = std::net::TcpListener::bind(opts.listen)?;
        std_listener.set_nonblocking(true)?;
        let addr = std_listener.local_addr()?;

        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("do-sim-worker")
            .enable_all()
            .build()?;
        let listener = {
            let _guard = rt.enter();
            tokio::net::TcpListener::from_std(std_listener)?
        };

        let knobs = Knobs::from_options(&opts);
        let statics = StaticOpts {
            token: opts.token,
            droplet_limit: opts.droplet_limit,
            serve_apps: opts.serve_apps,
            backend_port: opts.backend_port,
            app_boot_delay: opts.app_boot_delay,
            seed: opts.seed,
        };
        let app_load = apps::AppLoad::new(opts.app_service_time, opts.app_concurrency);
        let inner = Arc::new(Inner::new(
            statics,
            knobs,
            app_load,
            addr,
            rt.handle().clone(),
            Instant::now(),
        ));

        rt.spawn(router::serve(listener, inner.clone()));

        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("do-sim".to_string())
            .spawn(move || {
                rt.block_on(async {
                    let _ = rx.await;
                });
                rt.shutdown_timeout(Duration::from_secs(2));
            })?;

        Ok(Sim {
            inner,
            shutdown: Some(tx),
            thread: Some(thread),
        })
    }

    /// `http://127.0.0.1:PORT`, without a trailing slash.
    pub fn url(&self) -> String {
        self.inner.url.clone()
    }

    /// The address the listener is bound to (with the real port when `listen` used port 0).
    pub fn addr(&self) -> SocketAddr {
        self.inner.addr
    }

    /// The log of `/v2` requests (not `/_sim` or `/metadata`), oldest first.
    pub fn requests(&self) -> Vec<RequestRecord> {
        self.inner.requests()
    }

    /// Empties the request log that [`Sim::requests`] returns.
    pub fn clear_requests(&self) {
        self.inner.clear_requests()
    }

    /// Live droplets (deleted ones are excluded even while they linger).
    pub fn droplets(&self) -> Vec<SimDroplet> {
        self.inner.sim_droplets()
    }

    /// Changes knobs at run time; a field left `None` keeps its value. Rates outside 0..=1
    /// are clamped; an invalid `tokens` or `metadata` (see `README.md`) is ignored with a
    /// warning on stderr.
    pub fn set_faults(&self, f: Faults) {
        self.inner.set_faults(&f)
    }

    /// Creates a droplet without the API ("outside doproxy"): no validation,
    /// no droplet limit, never fails; it follows `active_after` and
    /// `serve_apps` like any other droplet. Returns its id.
    pub fn create_droplet_direct(&self, name: &str, tags: &[&str]) -> u64 {
        let tags: Vec<String> = tags.iter().map(|t| t.to_string()).collect();
        self.inner.create_direct(name, tags)
    }

    /// Powers a droplet off without the API (status `off`; a droplet still `new` never
    /// becomes active; its app stops). False if it is unknown or deleted.
    pub fn power_off_direct(&self, id: u64) -> bool {
        self.inner.power_off_direct(id)
    }

    /// Sets or lifts the administrative lock of a droplet ("outside doproxy"): the API
    /// reports `locked: true` while it is set, whatever the status. Nothing else
    /// changes. False if the droplet is unknown or deleted.
    pub fn lock_direct(&self, id: u64, locked: bool) -> bool {
        self.inner.lock_direct(id, locked)
    }

    /// Sets (`Some`) or clears (`None`) the app service time of one droplet, overriding
    /// [`SimOptions::app_service_time`] for that droplet's app only, from its next
    /// request on (`POST /_sim/droplets/{id}/app`). It can be set while the droplet is
    /// still `new` and survives a power-off. False if the droplet is unknown or deleted.
    pub fn set_app_service_time_direct(&self, id: u64, service_time: Option<Duration>) -> bool {
        self.inner.set_app_service_time_direct(id, service_time)
    }

    /// Deletes a droplet without the API. False if it is unknown or already
    /// deleted.
    pub fn delete_droplet_direct(&self, id: u64) -> bool {
        self.inner.delete_direct(id)
    }
}

impl Drop for Sim {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl std::fmt::Debug for Sim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sim").field("url", &self.inner.url).finish()
    }
}
