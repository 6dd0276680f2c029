//! The five commands, and what they share: the context (config + API client), fetching the
//! fleet in O(pages) requests, rendering, and installing the HAProxy config.

pub mod create;
pub mod delete;
pub mod generate;
pub mod inventory;
pub mod print;
pub mod reload;
pub mod watch;

use crate::config::Config;
use crate::digitalocean::{Client, Droplet, Event};
use crate::haproxy::{self, Applied, RenderContext, Server};
use crate::inventory::Inventory;
use crate::store::Store;
use anyhow::Result;
use serde::Serialize;
use std::collections::HashMap;

/// Everything a command needs.
#[derive(Debug)]
pub struct Ctx {
    /// The validated config.
    pub cfg: Config,
    /// The API client.
    pub client: Client,
    /// Where the inventory lives.
    pub store: Store,
    /// The frontend's bind address, looked up once per process (a `reload --watch` would
    /// otherwise ask the metadata service at every pass).
    bind: tokio::sync::OnceCell<String>,
}

impl Ctx {
    /// Builds the API client for `cfg`.
    pub fn new(cfg: Config) -> Result<Ctx> {
        let mut client = Client::new(&cfg.api_url, &cfg.token, cfg.api_timeout, cfg.retry.clone())?;
        if crate::output::settings().verbose {
            client = client.with_observer(Box::new(log_api_event));
        }
        let store = Store::new(&cfg)?;
        Ok(Ctx {
            cfg,
            client,
            store,
            bind: tokio::sync::OnceCell::new(),
        })
    }

    /// Runs `f` holding the lock over the inventory and the HAProxy config, and releases it
    /// (a lock that cannot be released is only warned about: it lapses by itself).
    pub async fn locked<T>(&self, f: impl AsyncFnOnce() -> Result<T>) -> Result<T> {
        let guard = self.store.lock().await?;
        let result = f().await;
        if let Err(e) = guard.release().await {
            warn(&format!("{e:#}"));
        }
        result
    }

    /// The frontend's `ip:port`: configured, or the droplet's public IPv4 on port 80.
    pub async fn frontend_bind(&self) -> Result<String> {
        self.bind
            .get_or_try_init(|| async {
                match &self.cfg.frontend_bind {
                    Some(b) => Ok(b.clone()),
                    None => Ok(format!(
                        "{}:80",
                        crate::metadata::public_ipv4(&self.cfg.metadata_url).await?
                    )),
                }
            })
            .await
            .cloned()
    }
}

pub use crate::output::{note, say, warn};

/// `--verbose`: one line per API request and per retry (never the token: it is a header).
fn log_api_event(e: &Event) {
    match e {
        Event::Request(r) => crate::output::debug(&format!(
            "api {} {} -> {} in {:.0?} (request id {}, ratelimit-remaining {})",
            r.method,
            r.path,
            r.status
                .map_or_else(|| "no answer".to_string(), |s| s.to_string()),
            r.elapsed,
            r.request_id.as_deref().unwrap_or("-"),
            r.ratelimit_remaining
                .map_or_else(|| "-".to_string(), |n| n.to_string()),
        )),
        Event::Retry {
            method,
            path,
            attempt,
            delay,
            error,
        } => crate::output::debug(&format!(
            "api {method} {path}: attempt {attempt} failed ({error}); retrying in {delay:.1?}"
        )),
    }
}

/// A droplet as the JSON output shows it.
#[derive(Debug, Clone, Serialize)]
pub struct DropletInfo {
    /// Inventory line (as `print` numbers them); `null` for droplets not in the inventory.
    pub line: Option<usize>,
    /// Droplet ID.
    pub id: u64,
    /// Name; `null` when the droplet does not exist.
    pub name: Option<String>,
    /// API status, or `missing` when the droplet does not exist.
    pub status: String,
    /// Private IPv4 address, once known.
    pub private_ip: Option<String>,
    /// Public IPv4 address, once known.
    pub public_ip: Option<String>,
}

impl DropletInfo {
    /// Describes inventory entry `line` (`d` is `None` when the droplet does not exist).
    pub fn new(line: Option<usize>, id: u64, d: Option<&Droplet>) -> DropletInfo {
        DropletInfo {
            line,
            id,
            name: d.map(|d| d.name.clone()),
            status: d.map_or_else(|| "missing".to_string(), |d| d.status.clone()),
            private_ip: d.and_then(Droplet::private_ipv4).map(|ip| ip.to_string()),
            public_ip: d.and_then(Droplet::public_ipv4).map(|ip| ip.to_string()),
        }
    }
}

/// What the API says about the inventory's droplets.
#[derive(Debug, Default)]
pub struct Fleet {
    /// Droplets found, by ID.
    pub by_id: HashMap<u64, Droplet>,
    /// Droplets carrying the doproxy tag that are not in the inventory.
    pub orphans: Vec<Droplet>,
}

impl Fleet {
    /// Lists the tagged droplets (ceil(N/200) requests) and looks up individually only the
    /// inventory IDs the listing did not return (e.g. droplets made by the Ruby DOProxy,
    /// which carry no tag).
    pub async fn fetch(ctx: &Ctx, inv: &Inventory) -> Result<Fleet> {
        let tagged = ctx
            .client
            .list_by_tag(ctx.cfg.droplet.doproxy_tag())
            .await?;
        Self::from_listed(ctx, inv, tagged).await
    }

    /// Like [`Fleet::fetch`], from a tag listing the caller already has.
    pub async fn from_listed(ctx: &Ctx, inv: &Inventory, tagged: Vec<Droplet>) -> Result<Fleet> {
        let mut by_id: HashMap<u64, Droplet> = HashMap::new();
        let mut orphans = Vec::new();
        for d in tagged {
            if inv.ids.contains(&d.id) {
                by_id.insert(d.id, d);
            } else {
                orphans.push(d);
            }
        }
        for id in &inv.ids {
            if !by_id.contains_key(id) {
                if let Some(d) = ctx.client.get_droplet(*id).await? {
                    by_id.insert(*id, d);
                }
            }
        }
        Ok(Fleet { by_id, orphans })
    }

    /// The servers for the config: ready droplets in inventory order, minus `exclude`.
    /// Entries left out are reported on stderr (they stay in the inventory).
    pub fn servers(&self, inv: &Inventory, exclude: Option<u64>) -> Vec<Server> {
        let mut out = Vec::new();
        for (n, id) in inv.ids.iter().enumerate() {
            if Some(*id) == exclude {
                continue;
            }
            match self.by_id.get(id) {
                None => warn(&format!(
                    "inventory line {n}: droplet {id} does not exist (deleted outside doproxy?); left out of the config"
                )),
                Some(d) if !d.is_ready() => warn(&format!(
                    "inventory line {n}: droplet {id} ({}) is {}{}; left out of the config until it is ready",
                    d.name,
                    d.status,
                    if d.status == "active" { " without a private IPv4 address yet" } else { "" }
                )),
                Some(d) => match Server::from_droplet(d) {
                    Some(s) => out.push(s),
                    None => warn(&format!("inventory line {n}: droplet {id} has no usable private address")),
                },
            }
        }
        out
    }

    /// Warns about tagged droplets missing from the inventory.
    pub fn warn_orphans(&self, ctx: &Ctx) {
        for d in &self.orphans {
            warn(&format!(
                "droplet {} ({}) carries the tag {:?} but is not in {}; add its ID to the inventory to manage it, or delete it",
                d.id,
                d.name,
                ctx.cfg.droplet.doproxy_tag(),
                ctx.store.describe()
            ));
        }
    }
}

/// The template source and its name, plus the frontend's bind address. The template is
/// loaded first: a local mistake is reported before any network lookup.
pub async fn prepare(ctx: &Ctx) -> Result<Prepared> {
    let (template, name) = haproxy::load_template(&ctx.cfg)?;
    let bind = ctx.frontend_bind().await?;
    Ok(Prepared {
        template,
        name,
        bind,
    })
}

/// What [`prepare`] returns.
#[derive(Debug)]
pub struct Prepared {
    template: String,
    name: String,
    bind: String,
}

/// Renders the config for `servers`.
pub fn render(ctx: &Ctx, p: &Prepared, servers: &[Server]) -> Result<String> {
    haproxy::render(
        &p.template,
        &p.name,
        &RenderContext {
            droplets: servers,
            backend_port: ctx.cfg.backend_port,
            frontend_bind: &p.bind,
            haproxy: &ctx.cfg.haproxy,
        },
    )
}

/// Renders, validates, installs and reloads (only when changed, unless `force`). The
/// caller holds the lock.
pub async fn sync_haproxy(ctx: &Ctx, servers: &[Server], force: bool) -> Result<Applied> {
    let p = prepare(ctx).await?;
    let rendered = render(ctx, &p, servers)?;
    haproxy::apply(&ctx.cfg, &rendered, servers, force).await
}
