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

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

mod api;
mod apps;
mod control;
mod http;
mod metadata;
mod router;
pub mod sandbox;
mod state;
mod util;

use state::{Inner, Knobs, StaticOpts};

/// Everything a simulator can be configured with. See the field comments and
/// `README.md` for what each knob does.
#[derive(Clone, Debug)]
pub struct SimOptions {
    /// The bearer token every `/v2` request must carry. Default `sim-token`.
    pub token: String,
    /// Where to listen; must be an address in 127.0.0.0/8. Default `127.0.0.1:0`.
    pub listen: SocketAddr,
    /// Delay from create to `active`. Default 3 s.
    pub active_after: Duration,
    /// A new droplet is 404 on GET and missing from lists for this long. Default 0.
    pub not_found_after_create: Duration,
    /// A deleted droplet is still returned (status unchanged) for this long. Default 0.
    pub delete_linger: Duration,
    /// Fraction of API-created droplets whose create action ends `errored`. Default 0.
    pub create_failure_rate: f64,
    /// Added to every API request. Default 0.
    pub latency: Duration,
    /// Per-minute request limit; `None` turns it off. Default `Some(250)`.
    pub rate_limit_per_minute: Option<u32>,
    /// Per-hour request limit (also the `ratelimit-limit` header). Default 5000.
    pub rate_limit_per_hour: u32,
    /// Fraction of API requests answered 500/502/503 without side effects. Default 0.
    pub error_rate: f64,
    /// Fraction of API requests whose connection is dropped without a response. Default 0.
    pub reset_rate: f64,
    /// Seed of the fault and id PRNGs. Default 1.
    pub seed: u64,
    /// The account's `droplet_limit`. Default 25.
    pub droplet_limit: u32,
    /// Start an HTTP app per active droplet on `private_ip:backend_port`. Default false.
    pub serve_apps: bool,
    /// Port of the per-droplet apps. Default 8080.
    pub backend_port: u16,
    /// Extra delay after `active` before the app accepts connections. Default 0.
    pub app_boot_delay: Duration,
    /// The droplet the metadata service describes (the load balancer).
    pub metadata: MetadataIdentity,
    /// Report `locked: true` while a droplet is `new` (the old "booting" reading of
    /// `locked`). Default false: `locked` is only the administrative lock
    /// ([`Sim::lock_direct`]), as the real API uses it today.
    pub locked_while_new: bool,
}

impl Default for SimOptions {
    fn default() -> Self {
        SimOptions {
            token: "sim-token".to_string(),
            listen: SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 0),
            active_after: Duration::from_secs(3),
            not_found_after_create: Duration::ZERO,
            delete_linger: Duration::ZERO,
            create_failure_rate: 0.0,
            latency: Duration::ZERO,
            rate_limit_per_minute: Some(250),
            rate_limit_per_hour: 5000,
            error_rate: 0.0,
            reset_rate: 0.0,
            seed: 1,
            droplet_limit: 25,
            serve_apps: false,
            backend_port: 8080,
            app_boot_delay: Duration::ZERO,
            metadata: MetadataIdentity::default(),
            locked_while_new: false,
        }
    }
}

/// What `/metadata/v1/...` reports: the droplet doproxy itself runs on.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MetadataIdentity {
    /// Droplet id, served at `/metadata/v1/id`.
    pub id: u64,
    /// Droplet name, served at `/metadata/v1/hostname`.
    pub hostname: String,
    /// Public IPv4 address (dotted quad) of the `public` interface.
    pub public_ipv4: String,
    /// Private IPv4 address (dotted quad) of the `private` interface.
    pub private_ipv4: String,
    /// User data, served verbatim at `/metadata/v1/user-data` (empty = none).
    pub user_data: String,
    /// Region slug, e.g. `nyc3`; also used for droplets from [`Sim::create_droplet_direct`].
    pub region: String,
    /// Droplet tags, served one per line at `/metadata/v1/tags`.
    pub tags: Vec<String>,
}

impl Default for MetadataIdentity {
    fn default() -> Self {
        MetadataIdentity {
            id: 1000,
            hostname: "sim-lb".to_string(),
            public_ipv4: "127.0.0.1".to_string(),
            private_ipv4: "127.0.0.1".to_string(),
            user_data: String::new(),
            region: "nyc3".to_string(),
            tags: Vec::new(),
        }
    }
}

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

/// Run-time changes to the fault knobs; `None` leaves a knob unchanged.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Faults {
    /// New `latency`: delay added to every `/v2` request, in milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency_ms: Option<u64>,
    /// New `error_rate`: fraction (0..=1) of `/v2` requests answered 500/502/503.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_rate: Option<f64>,
    /// New `reset_rate`: fraction (0..=1) of `/v2` requests reset without a response.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reset_rate: Option<f64>,
    /// `Some(None)` (JSON `null`) turns the per-minute limit off; absent leaves it.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "present_nullable"
    )]
    pub rate_limit_per_minute: Option<Option<u32>>,
    /// New `rate_limit_per_hour`: requests allowed per sliding hour (also `ratelimit-limit`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limit_per_hour: Option<u32>,
    /// New `create_failure_rate`: fraction (0..=1) of API creates whose action ends `errored`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub create_failure_rate: Option<f64>,
    /// New `active_after`, in milliseconds; applies to droplets created after the change.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub active_after_ms: Option<u64>,
    /// New `locked_while_new`; applies to droplets created after the change.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub locked_while_new: Option<bool>,
}

/// Distinguishes "present and null" (`Some(None)`) from "absent" (`None`,
/// via `#[serde(default)]`).
fn present_nullable<'de, D>(d: D) -> Result<Option<Option<u32>>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    Option::<u32>::deserialize(d).map(Some)
}

fn check_rate(name: &str, v: f64) -> anyhow::Result<()> {
    if !(0.0..=1.0).contains(&v) {
        anyhow::bail!("{name} must be between 0 and 1, got {v}");
    }
    Ok(())
}

impl Faults {
    pub(crate) fn validate(&self) -> anyhow::Result<()> {
        for (name, v) in [
            ("error_rate", self.error_rate),
            ("reset_rate", self.reset_rate),
            ("create_failure_rate", self.create_failure_rate),
        ] {
            if let Some(v) = v {
                check_rate(name, v)?;
            }
        }
        Ok(())
    }
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
        check_rate("error_rate", opts.error_rate)?;
        check_rate("reset_rate", opts.reset_rate)?;
        check_rate("create_failure_rate", opts.create_failure_rate)?;

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

        let knobs = Knobs {
            latency: opts.latency,
            error_rate: opts.error_rate,
            reset_rate: opts.reset_rate,
            rate_limit_per_minute: opts.rate_limit_per_minute,
            rate_limit_per_hour: opts.rate_limit_per_hour,
            create_failure_rate: opts.create_failure_rate,
            active_after: opts.active_after,
            locked_while_new: opts.locked_while_new,
        };
        let statics = StaticOpts {
            token: opts.token,
            not_found_after_create: opts.not_found_after_create,
            delete_linger: opts.delete_linger,
            droplet_limit: opts.droplet_limit,
            serve_apps: opts.serve_apps,
            backend_port: opts.backend_port,
            app_boot_delay: opts.app_boot_delay,
            metadata: opts.metadata,
            seed: opts.seed,
        };
        let inner = Arc::new(Inner::new(
            statics,
            knobs,
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

    /// Changes fault knobs at run time. Rates outside 0..=1 are clamped.
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
