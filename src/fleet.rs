//! The fleet: the inventory held against one API listing of the deployment's tagged
//! droplets — which inventory droplets exist and are ready, which tagged droplets are
//! orphans — and the HAProxy server list that follows from it.

use crate::digitalocean::{Client, Droplet};
use crate::haproxy::Server;
use crate::inventory::Inventory;
use crate::output::{escape, warn};
use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::time::Duration;

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

/// The HAProxy server for a ready droplet; `None` when it has no usable private address.
pub fn server(d: &Droplet) -> Option<Server> {
    let private_ip = d.private_ipv4()?.to_string();
    Some(Server {
        id: d.id,
        // The name only goes into a comment, but a name from the API must not be able to
        // break the line it sits on.
        name: if d.has_safe_name() {
            d.name.clone()
        } else {
            "(invalid-name)".into()
        },
        private_ip,
        public_ip: d.public_ipv4().map(|ip| ip.to_string()),
        standby: false,
    })
}

/// What the API says about the inventory's droplets.
#[derive(Debug, Default)]
pub struct Fleet {
    /// Droplets found, by ID.
    pub by_id: HashMap<u64, Droplet>,
    /// Droplets carrying the doproxy tag that are not in the inventory.
    pub orphans: Vec<Droplet>,
    /// How many droplets the tag listing returned.
    pub listed: usize,
}

/// When each inventory droplet was first seen missing from the API's answers (kept beside
/// the installed config, per node): a droplet is gone only once it has been missing on
/// passes at least `not_found_grace` apart.
#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
pub struct MissingLog {
    /// Droplet ID → Unix time (seconds) it was first seen missing.
    pub first_missing: BTreeMap<u64, u64>,
}

impl MissingLog {
    /// Reads the log (an absent or unreadable log is empty: at worst a droplet is kept
    /// for one more grace period).
    pub fn load(path: &Path) -> MissingLog {
        std::fs::read(path)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default()
    }

    /// Writes the log atomically.
    pub fn save(&self, path: &Path) -> Result<()> {
        let text = serde_json::to_vec(self)?;
        crate::fsutil::write_atomic(path, &text)
            .with_context(|| format!("cannot write {}", path.display()))
    }
}

/// The node's missing log for an installed config: `<installed config>.missing.json`.
pub fn missing_log_path(installed: &Path) -> std::path::PathBuf {
    let mut name = installed.file_name().unwrap_or_default().to_os_string();
    name.push(".missing.json");
    crate::fsutil::parent_dir(installed).join(name)
}

/// Is a droplet first seen missing at `first_missing` confirmed gone at `now` (Unix
/// seconds)? Only once it has stayed missing for the whole `grace`.
pub fn confirmed_gone(first_missing: u64, now: u64, grace: Duration) -> bool {
    now.saturating_sub(first_missing) >= grace.as_secs().max(1)
}

impl Fleet {
    /// Lists the droplets tagged `tag` (ceil(N/200) requests) and looks up individually
    /// only the inventory IDs the listing did not return (e.g. droplets made by the Ruby
    /// DOProxy, which carry no tag).
    pub async fn fetch(client: &Client, tag: &str, inv: &Inventory) -> Result<Fleet> {
        let tagged = client.list_by_tag(tag).await?;
        Self::from_listed(client, inv, tagged).await
    }

    /// Like [`Fleet::fetch`], from a tag listing the caller already has.
    pub async fn from_listed(
        client: &Client,
        inv: &Inventory,
        tagged: Vec<Droplet>,
    ) -> Result<Fleet> {
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
                if let Some(d) = client.get_droplet(*id).await? {
                    by_id.insert(*id, d);
                }
            }
        }
        let listed = by_id.len() + orphans.len();
        Ok(Fleet {
            by_id,
            orphans,
            listed,
        })
    }

    /// The servers for the config: ready droplets in inventory order, minus `exclude`.
    /// Entries left out are reported on stderr (they stay in the inventory). An inventory
    /// droplet missing from the API's answer keeps its server from the `previous` config
    /// until it is [`confirmed_gone`] (the API is eventually consistent, and has had
    /// incidents answering empty listings and 404s). `log` is updated for this pass.
    /// An empty answer for a non-empty inventory is an API incident: an error, and
    /// nothing is removed.
    pub fn servers_confirmed(
        &self,
        inv: &Inventory,
        exclude: &[u64],
        previous: &[Server],
        log: &mut MissingLog,
        now: u64,
        grace: Duration,
    ) -> Result<Vec<Server>> {
        // Droplets being deleted are expected to go: they do not count.
        let expected = inv.ids.iter().filter(|id| !exclude.contains(id)).count();
        if self.listed == 0 && expected > 0 && self.by_id.is_empty() {
            bail!(
                "the API listed none of the {expected} inventory droplet(s) (an incident on its side, or every droplet was deleted outside doproxy); nothing was changed: try again later, or see `doproxy print`"
            );
        }
        log.first_missing
            .retain(|id, _| inv.ids.contains(id) && !self.by_id.contains_key(id));
        let mut out = Vec::new();
        for (n, id) in inv.ids.iter().enumerate() {
            if exclude.contains(id) {
                continue;
            }
            if self.by_id.contains_key(id) {
                out.extend(self.server_of(n, *id));
                continue;
            }
            let since = *log.first_missing.entry(*id).or_insert(now);
            if confirmed_gone(since, now, grace) {
                warn(&format!(
                    "inventory line {n}: droplet {id} does not exist (deleted outside doproxy?); left out of the config"
                ));
            } else if let Some(s) = previous.iter().find(|s| s.id == *id) {
                warn(&format!(
                    "inventory line {n}: droplet {id} is missing from the API's answer; its server stays until it has been missing for {grace:.0?} (not_found_grace)"
                ));
                out.push(s.clone());
            } else {
                warn(&format!(
                    "inventory line {n}: droplet {id} is missing from the API's answer (just created, or deleted outside doproxy?); left out of the config"
                ));
            }
        }
        Ok(out)
    }

    /// The server of the existing inventory droplet `id` on line `n`, when it is ready;
    /// otherwise says why it is left out.
    fn server_of(&self, n: usize, id: u64) -> Option<Server> {
        let d = self.by_id.get(&id)?;
        if !d.is_ready() {
            warn(&format!(
                "inventory line {n}: droplet {id} ({}) is {}{}; left out of the config until it is ready",
                escape(&d.name),
                escape(&d.status),
                if d.status == "active" { " without a private IPv4 address yet" } else { "" }
            ));
            return None;
        }
        let s = server(d);
        if s.is_none() {
            warn(&format!(
                "inventory line {n}: droplet {id} has no usable private address"
            ));
        }
        s
    }

    /// True when some inventory droplet exists but is not ready yet.
    pub fn has_pending(&self, inv: &Inventory) -> bool {
        inv.ids
            .iter()
            .any(|id| self.by_id.get(id).is_some_and(|d| !d.is_ready()))
    }

    /// Warns about droplets tagged `tag` missing from the inventory (`where_` names it).
    pub fn warn_orphans(&self, tag: &str, where_: &str) {
        for d in &self.orphans {
            warn(&format!(
                "droplet {} ({}) carries the tag {tag:?} but is not in {where_}; `doproxy inventory adopt {}` adds it, or destroy it",
                d.id,
                escape(&d.name),
                d.id,
            ));
        }
    }
}
