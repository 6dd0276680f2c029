//! The commands, and what they share: the context (config, API client, inventory store,
//! the frontend's bind address), the lock, and showing a dry run's config diff.

pub mod autoscale;
pub mod autoscaler;
pub mod create;
pub mod delete;
pub mod generate;
pub mod inventory;
pub mod print;
pub mod reload;
pub mod scale;
pub mod status;
pub mod watch;

use crate::config::Config;
use crate::digitalocean::{Client, Event};
use crate::fleet::{Fleet, MissingLog};
use crate::haproxy::{self, Change, Haproxy, Server};
use crate::inventory::Inventory;
use crate::store::journal;
use crate::store::Store;
use anyhow::Result;

pub use crate::output::{note, say, warn};

/// What to put right when a command is interrupted in the middle of a change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cleanup {
    /// A delete of droplet `id` began: give its server back its traffic and drop the
    /// leaving mark (it stays in the inventory).
    Delete {
        /// The droplet.
        id: u64,
    },
}

/// A registered [`Cleanup`] (see [`Ctx::on_interrupt`]). It stays registered until
/// [`CleanupGuard::done`]: an interrupted command's future is dropped before the cleanup
/// runs, so dropping the guard must not unregister it.
#[derive(Debug)]
#[must_use = "call done() when the step is over"]
pub struct CleanupGuard<'a> {
    ctx: &'a Ctx,
    cleanup: Cleanup,
}

impl CleanupGuard<'_> {
    /// The guarded step is over (finished, or undone by the command itself).
    pub fn done(self) {
        let mut list = self.ctx.cleanups.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(i) = list.iter().position(|c| *c == self.cleanup) {
            list.remove(i);
        }
    }
}

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
    /// What to put right if the command is interrupted now.
    cleanups: std::sync::Mutex<Vec<Cleanup>>,
}

impl Ctx {
    /// Builds the API client and the store for `cfg`.
    pub fn new(cfg: Config) -> Result<Ctx> {
        // Requests are logged with -v; retries and rate-limit waits are said at normal
        // verbosity (waiting is never invisible).
        let client = Client::new(&cfg.api)?.with_observer(Box::new(log_api_event));
        let store = Store::new(&cfg.store, &cfg.path)?;
        Ok(Ctx {
            cfg,
            client,
            store,
            bind: tokio::sync::OnceCell::new(),
            cleanups: std::sync::Mutex::new(Vec::new()),
        })
    }

    /// Registers `cleanup` until the returned guard is dropped: if SIGINT or SIGTERM comes
    /// meanwhile, [`Ctx::interrupted`] carries it out.
    pub fn on_interrupt(&self, cleanup: Cleanup) -> CleanupGuard<'_> {
        self.cleanups
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(cleanup.clone());
        CleanupGuard { ctx: self, cleanup }
    }

    /// After `--timeout` stopped the command: like [`Ctx::interrupted`], with exit code 1.
    pub async fn timed_out(&self, after: std::time::Duration) -> anyhow::Error {
        let what = self.put_right().await;
        anyhow::anyhow!("stopped after --timeout {after:.0?}").context(what)
    }

    /// After a signal stopped the command: puts right what the interrupted step left
    /// (best effort, bounded) and returns one line saying what state things are in.
    pub async fn interrupted(&self, signal: &'static str) -> anyhow::Error {
        let what = self.put_right().await;
        anyhow::Error::new(crate::error::Interrupted(signal)).context(what)
    }

    /// Carries out the registered cleanups and says what state things are in.
    async fn put_right(&self) -> String {
        let cleanups: Vec<Cleanup> =
            std::mem::take(&mut *self.cleanups.lock().unwrap_or_else(|p| p.into_inner()));
        let mut said = Vec::new();
        for c in cleanups {
            match c {
                Cleanup::Delete { id } => {
                    let undo = async {
                        if let Ok(h) = self.haproxy().await {
                            h.undrain(id).await;
                        }
                        self.store
                            .update_journal(|j| j.leaving.retain(|l| l.id != id))
                            .await
                    };
                    let done = tokio::time::timeout(std::time::Duration::from_secs(5), undo).await;
                    said.push(match done {
                        Ok(Ok(_)) => format!(
                            "the delete of droplet {id} was stopped: it stays in the inventory and is back in service (or will be at the next `doproxy reload`); run `doproxy delete --id {id}` to try again"
                        ),
                        _ => format!(
                            "the delete of droplet {id} was stopped and could not be undone: run `doproxy reload` to put it back in service, or `doproxy delete --id {id}` to finish it"
                        ),
                    });
                }
            }
        }
        if said.is_empty() {
            "nothing was left half done (the inventory records every droplet created so far)"
                .to_string()
        } else {
            said.join("; ")
        }
    }

    /// Runs `f` holding the lock over the inventory and the HAProxy config, and releases it
    /// (a lock that cannot be released is only warned about: it lapses by itself).
    pub async fn locked<T>(&self, f: impl AsyncFnOnce() -> Result<T>) -> Result<T> {
        let guard = self.store.lock().await?;
        let result = f().await;
        if let Err(e) = self.store.release(guard).await {
            warn(&format!("{e:#}"));
        }
        result
    }

    /// The deployment's tag (the first of `droplet_options.tags`).
    pub fn tag(&self) -> &str {
        self.cfg.droplet.doproxy_tag()
    }

    /// The fleet behind `inv`: one tag listing plus a GET per untagged inventory droplet.
    pub async fn fleet(&self, inv: &Inventory) -> Result<Fleet> {
        Fleet::fetch(&self.client, self.tag(), inv).await
    }

    /// The HAProxy side, with the template loaded afresh (so a `reload --watch` sees an
    /// edited template) before the frontend's bind address is looked up: a local mistake
    /// is reported before any network lookup.
    pub async fn haproxy(&self) -> Result<Haproxy<'_>> {
        let template = haproxy::load_template(&self.cfg.haproxy)?;
        let bind = self
            .bind
            .get_or_try_init(|| async {
                match self.cfg.haproxy.frontend_bind.as_deref() {
                    // Behind a reserved IP, traffic arrives on the anchor IP.
                    Some("anchor") => Ok::<_, anyhow::Error>(format!(
                        "{}:80",
                        crate::metadata::anchor_ipv4(&self.cfg.metadata_url).await?
                    )),
                    Some(b) => Ok(b.to_string()),
                    None => Ok(format!(
                        "{}:80",
                        crate::metadata::public_ipv4(&self.cfg.metadata_url).await?
                    )),
                }
            })
            .await?
            .clone();
        Ok(Haproxy::new(&self.cfg.haproxy, template, bind))
    }

    /// Adopts droplets of interrupted or ambiguous creates: a journaled name found among the
    /// deployment's tagged droplets goes into the inventory (and out of the orphans); an
    /// intent absent for longer than `not_found_grace` is dropped (never created). The
    /// caller holds the lock; `inv` and `fleet` are updated in place.
    pub async fn settle_journal(&self, inv: &mut Inventory, fleet: &mut Fleet) -> Result<()> {
        let j = self.store.journal().await?;
        if j.creating.is_empty() {
            return Ok(());
        }
        let grace = self.cfg.create.not_found_grace.as_secs();
        let now = journal::now();
        let mut adopt: Vec<u64> = Vec::new();
        let mut settled: Vec<String> = Vec::new();
        for intent in &j.creating {
            if let Some(d) = fleet
                .orphans
                .iter()
                .find(|d| d.name.eq_ignore_ascii_case(&intent.name))
            {
                note(&format!(
                    "droplet {} ({}) of an interrupted create is adopted into {}",
                    d.id,
                    d.name,
                    self.store.describe()
                ));
                adopt.push(d.id);
                settled.push(intent.name.clone());
            } else if fleet
                .by_id
                .values()
                .any(|d| d.name.eq_ignore_ascii_case(&intent.name))
            {
                // Recorded already (a create stopped between recording the ID and
                // settling its intent): nothing to adopt.
                settled.push(intent.name.clone());
            } else if now.saturating_sub(intent.since) > grace.max(1) {
                settled.push(intent.name.clone());
            }
        }
        if settled.is_empty() {
            return Ok(());
        }
        if !adopt.is_empty() {
            *inv = self
                .store
                .update(|i| {
                    for id in &adopt {
                        if !i.ids.contains(id) {
                            i.ids.push(*id);
                        }
                    }
                })
                .await?;
            let (moved, kept): (Vec<_>, Vec<_>) = std::mem::take(&mut fleet.orphans)
                .into_iter()
                .partition(|d| adopt.contains(&d.id));
            fleet.orphans = kept;
            for d in moved {
                fleet.by_id.insert(d.id, d);
            }
        }
        self.store
            .update_journal(|j| j.creating.retain(|i| !settled.contains(&i.name)))
            .await?;
        Ok(())
    }

    /// The servers to route to for `inv` (minus `exclude`): ready droplets, plus droplets
    /// missing from the API's answer that are not confirmed gone yet (their servers come
    /// from the installed config). `record` keeps this pass in the node's missing log
    /// (dry runs do not).
    pub async fn servers(
        &self,
        inv: &Inventory,
        fleet: &Fleet,
        exclude: &[u64],
        record: bool,
    ) -> Result<Vec<Server>> {
        let h = &self.cfg.haproxy;
        let previous = haproxy::installed_text(h)?
            .map(|t| haproxy::parse_servers(&t))
            .unwrap_or_default();
        // A droplet being deleted is routed to by no node (two-phase delete).
        let journal = self.store.journal().await?;
        let mut exclude = exclude.to_vec();
        exclude.extend(journal.leaving_ids());
        let exclude = exclude.as_slice();
        let path = missing_log_path(&h.installed_cfg);
        let mut log = MissingLog::load(&path);
        let before = log.clone();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs();
        let mut servers = fleet.servers_confirmed(
            inv,
            exclude,
            &previous,
            &mut log,
            now,
            self.cfg.create.not_found_grace,
        )?;
        // The autoscaler's hot spares are rendered parked (`weight 0`).
        for s in &mut servers {
            s.standby = journal.is_standby(s.id);
        }
        if record && log != before {
            log.save(&path)?;
        }
        Ok(servers)
    }

    /// This node's name among the load balancers sharing an inventory: the host name and
    /// the installed config's path (two HAProxies on one host are two nodes).
    pub fn node_name(&self) -> String {
        let host = rustix::system::uname()
            .nodename()
            .to_string_lossy()
            .into_owned();
        format!("{host}:{}", self.cfg.haproxy.installed_cfg.display())
    }

    /// Renders, checks, installs and reloads `change` (only when changed, unless forced).
    /// The caller holds the lock.
    pub async fn apply(&self, change: Change<'_>) -> Result<haproxy::Applied> {
        self.haproxy().await?.apply(change).await
    }
}

/// The node's missing log, beside the installed config.
fn missing_log_path(installed: &std::path::Path) -> std::path::PathBuf {
    let mut name = installed.file_name().unwrap_or_default().to_os_string();
    name.push(".missing.json");
    crate::fsutil::parent_dir(installed).join(name)
}

/// `--dry-run` of a config change: shows the diff against the installed config (already
/// validated by [`Haproxy::preview`]) and its JSON object.
pub async fn show_preview(ctx: &Ctx, servers: &[Server], action: &str) -> Result<()> {
    let preview = ctx.haproxy().await?.preview(servers).await?;
    let path = ctx.cfg.haproxy.installed_cfg.display().to_string();
    if preview.diff.is_empty() {
        say(&format!(
            "dry run: {path} is up to date; nothing would be reloaded"
        ));
    } else {
        say(&format!("dry run: {path} would change ({} backend(s)); the new config passes the check command:", servers.len()));
        say(preview.diff.trim_end());
    }
    crate::output::json(&serde_json::json!({
        "action": action,
        "dry_run": true,
        "config": ctx.cfg.haproxy.installed_cfg,
        "changed": !preview.diff.is_empty(),
        "diff": preview.diff,
        "backends": servers,
    }));
    Ok(())
}

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
        } => crate::output::note(&format!(
            "api {method} {path}: attempt {attempt} failed ({error}); retrying in {delay:.1?}"
        )),
    }
}
