//! `doproxy create [--count N]`: create droplets (ten names per API request), record each
//! ID in the inventory before waiting, poll all pending droplets with one list request per
//! round, and add each group that becomes ready to HAProxy with one reload.

use super::{note, say, sync_haproxy, warn, Ctx, Fleet};
use crate::digitalocean::{Created, Droplet, MAX_NAMES_PER_CREATE};
use crate::inventory::Inventory;
use anyhow::{anyhow, bail, Context, Result};
use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::time::{Duration, Instant};

/// Runs `create`.
pub async fn run(ctx: &Ctx, count: u32) -> Result<()> {
    let cfg = &ctx.cfg;
    // Everything that can be checked without spending money is checked first.
    let user_data = cfg.user_data()?;
    let prepared = super::prepare(ctx).await?;
    super::render(ctx, &prepared, &[])
        .context("the template must render before any droplet is created")?;
    Inventory::load(&cfg.inventory_file)?;

    let names: Vec<String> = (0..count)
        .map(|_| unique_name(&cfg.droplet.hostname_prefix))
        .collect();
    let mut fields = cfg.droplet.request_fields(&cfg.ssh_keys);
    if let Some(u) = user_data {
        fields.insert("user_data".into(), u.into());
    }
    let tag = cfg.droplet.doproxy_tag();
    let settle = cfg.poll_interval.min(Duration::from_secs(10)) * 2;

    let mut pending: Vec<Pending> = Vec::new();
    let mut create_error = None;
    for chunk in names.chunks(MAX_NAMES_PER_CREATE) {
        match ctx.client.create(chunk, tag, &fields, settle).await {
            Ok(created) => {
                record(ctx, &created)?;
                for c in created {
                    note(&format!(
                        "created droplet {} ({}); waiting for it to become active",
                        c.droplet.id, c.droplet.name
                    ));
                    pending.push(Pending {
                        id: c.droplet.id,
                        name: c.droplet.name,
                        action_id: c.action_id,
                        since: Instant::now(),
                    });
                }
            }
            Err(e) => {
                create_error = Some(anyhow!(e).context("creating droplets"));
                break;
            }
        }
    }

    let outcome = wait_and_add(ctx, pending).await;
    match (create_error, outcome) {
        (None, Ok(())) => Ok(()),
        (Some(e), Ok(())) => Err(e),
        (None, Err(e)) => Err(e),
        (Some(e), Err(w)) => Err(e.context(format!("{w:#}"))),
    }
}

struct Pending {
    id: u64,
    name: String,
    action_id: Option<u64>,
    since: Instant,
}

/// Appends the new IDs to the inventory under the lock, before any waiting: whatever
/// happens next (Ctrl-C, kill -9, deadline), the droplets are accounted for.
fn record(ctx: &Ctx, created: &[Created]) -> Result<()> {
    let _lock = ctx.lock()?;
    let mut inv = Inventory::load(&ctx.cfg.inventory_file)?;
    for c in created {
        if !inv.ids.contains(&c.droplet.id) {
            inv.ids.push(c.droplet.id);
        }
    }
    inv.save(&ctx.cfg.inventory_file)
}

/// Polls until every pending droplet is ready (then reloads HAProxy for each group that
/// became ready together), has failed, or the deadline passes.
async fn wait_and_add(ctx: &Ctx, mut pending: Vec<Pending>) -> Result<()> {
    let cfg = &ctx.cfg;
    let tag = cfg.droplet.doproxy_tag();
    let deadline = Instant::now() + cfg.wait_timeout;
    // First look soon after the create, then back off to poll_interval.
    let mut interval = (cfg.poll_interval / 8).max(Duration::from_millis(10));
    let mut failures: Vec<String> = Vec::new();
    while !pending.is_empty() {
        let now = Instant::now();
        if now >= deadline {
            let ids: Vec<String> = pending.iter().map(|p| p.id.to_string()).collect();
            failures.push(format!(
                "droplet(s) {} not ready after {:.0?}; they stay in the inventory and join HAProxy at the next `doproxy reload` once active",
                ids.join(", "),
                cfg.wait_timeout
            ));
            break;
        }
        let mut wait = interval;
        if ctx.client.ratelimit_remaining().is_some_and(|r| r < 100) {
            // Leave the rest of the hourly budget to other commands.
            wait = wait.max(cfg.poll_interval * 2);
        }
        tokio::time::sleep(wait.min(deadline - now)).await;
        interval = (interval * 2).min(cfg.poll_interval);

        let listed = ctx.client.list_by_tag(tag).await;
        let listed: Vec<Droplet> = match listed {
            Ok(l) => l,
            Err(e) => {
                warn(&format!("polling: {e}; will retry"));
                continue;
            }
        };
        let mut ready = Vec::new();
        let mut still = Vec::new();
        for p in pending {
            match listed.iter().find(|d| d.id == p.id) {
                Some(d) if d.is_ready() => ready.push(p),
                Some(d) if d.status == "new" || d.status == "active" => still.push(p),
                Some(d) => {
                    failures.push(format!(
                        "droplet {} ({}) is {:?} instead of becoming active; it stays in the inventory",
                        d.id, d.name, d.status
                    ));
                }
                None => match gone(ctx, &p).await {
                    Ok(Some(reason)) => {
                        forget(ctx, p.id)?;
                        failures.push(format!(
                            "droplet {} ({}) {reason}; removed from the inventory",
                            p.id, p.name
                        ));
                    }
                    Ok(None) => still.push(p),
                    Err(e) => {
                        warn(&format!("checking droplet {}: {e:#}; will retry", p.id));
                        still.push(p);
                    }
                },
            }
        }
        pending = still;
        if !ready.is_empty() {
            add_to_backend(ctx, &ready).await?;
        }
    }
    if failures.is_empty() {
        Ok(())
    } else {
        bail!("{}", failures.join("; "))
    }
}

/// For a droplet missing from the tag listing: `Some(reason)` when it is really gone (its
/// create action errored, or it 404s past the grace period), `None` while it may just not
/// be visible yet (the API is eventually consistent right after a create).
async fn gone(ctx: &Ctx, p: &Pending) -> Result<Option<String>> {
    if let Some(action) = p.action_id {
        let a = ctx.client.get_action(action).await?;
        if a.status == "errored" {
            return Ok(Some(format!("failed to create (action {action} errored)")));
        }
    }
    if p.since.elapsed() < ctx.cfg.not_found_grace {
        return Ok(None);
    }
    match ctx.client.get_droplet(p.id).await? {
        None => Ok(Some(format!(
            "disappeared (404 for longer than {:.0?})",
            ctx.cfg.not_found_grace
        ))),
        Some(_) => Ok(None),
    }
}

/// Removes an ID of a droplet that no longer exists (nothing is billed for it).
fn forget(ctx: &Ctx, id: u64) -> Result<()> {
    let _lock = ctx.lock()?;
    let mut inv = Inventory::load(&ctx.cfg.inventory_file)?;
    inv.ids.retain(|x| *x != id);
    inv.save(&ctx.cfg.inventory_file)
}

async fn add_to_backend(ctx: &Ctx, ready: &[Pending]) -> Result<()> {
    let _lock = ctx.lock()?;
    let inv = Inventory::load(&ctx.cfg.inventory_file)?;
    let fleet = Fleet::fetch(ctx, &inv).await?;
    let servers = fleet.servers(&inv, None);
    let ids: Vec<String> = ready.iter().map(|p| p.id.to_string()).collect();
    sync_haproxy(ctx, &servers, false).await.with_context(|| {
        format!(
            "droplet(s) {} are active and in the inventory, but HAProxy was not updated",
            ids.join(", ")
        )
    })?;
    for p in ready {
        say(&format!("Success: {} created and added to backend.", p.id));
    }
    Ok(())
}

/// `<prefix>-<6 random base-36 characters>`: unlike the original's `<prefix>-<count>`, a
/// name is never reused after a delete.
fn unique_name(prefix: &str) -> String {
    let mut h = RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos(),
    );
    h.write_u32(std::process::id());
    let mut n = h.finish();
    let mut suffix = String::new();
    for _ in 0..6 {
        let d = (n % 36) as u32;
        suffix.push(char::from_digit(d, 36).unwrap_or('0'));
        n /= 36;
    }
    format!("{prefix}-{suffix}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_valid() {
        let a = unique_name("web");
        let b = unique_name("web");
        assert_ne!(a, b);
        assert!(a.starts_with("web-") && a.len() == 10);
        assert!(a.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'));
    }
}
