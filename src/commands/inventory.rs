//! `doproxy inventory import FILE` / `export`: move an inventory between a line file and the
//! configured store (the migration path to and from etcd). `prune`, `adopt` and `forget`
//! keep it honest, in Terraform's and doctl's habits: drop lines whose droplets are
//! confirmed gone, add droplets that carry the deployment's tag, drop lines without
//! destroying anything. Each changes the inventory under the store's lock; a dry run
//! changes nothing. None of them reloads HAProxy: it follows at the next `reload` (or at
//! once on nodes running `reload --watch`).

use super::{note, say, warn, Ctx};
use crate::digitalocean::Droplet;
use crate::error::usage_error;
use crate::fleet::{confirmed_gone, missing_log_path, DropletInfo, Fleet, MissingLog};
use crate::inventory::Inventory;
use crate::store::journal;
use anyhow::{bail, Context, Result};
use std::path::Path;
use std::time::Duration;

/// Creates an empty inventory where there is none (a missing etcd key or inventory file
/// is an error for every other command: it is never read as "no droplets").
pub async fn init(ctx: &Ctx) -> Result<()> {
    let created = ctx.locked(async || ctx.store.init().await).await?;
    if created {
        note(&format!(
            "created an empty inventory in {}",
            ctx.store.describe()
        ));
    } else {
        note(&format!(
            "{} already exists; left as it is",
            ctx.store.describe()
        ));
    }
    crate::output::json(&serde_json::json!({ "action": "init", "created": created }));
    Ok(())
}

/// Appends the IDs of the inventory file `from` that the store does not have yet, in the
/// file's order. Running it twice changes nothing the second time.
pub async fn import(ctx: &Ctx, from: &Path) -> Result<()> {
    let file = crate::store::file::read(from)?;
    let (inv, added) = ctx
        .locked(async || {
            // Importing is how an etcd inventory starts: create the key if it is missing.
            ctx.store.init().await?;
            let mut added = 0;
            let inv = ctx
                .store
                .update(|inv| {
                    added = 0;
                    for id in &file.ids {
                        if !inv.ids.contains(id) {
                            inv.ids.push(*id);
                            added += 1;
                        }
                    }
                })
                .await?;
            Ok((inv, added))
        })
        .await?;
    note(&format!(
        "imported {added} droplet ID(s) from {} into {}; it now has {}",
        from.display(),
        ctx.store.describe(),
        inv.ids.len()
    ));
    crate::output::json(&serde_json::json!({ "action": "import", "added": added, "ids": inv.ids }));
    Ok(())
}

/// Prints the inventory in the line format, or writes it atomically to `to`.
pub async fn export(ctx: &Ctx, to: Option<&Path>) -> Result<()> {
    let inv = ctx.store.load().await?;
    match to {
        Some(p) => {
            crate::fsutil::write_atomic(p, inv.render().as_bytes())
                .with_context(|| format!("cannot write {}", p.display()))?;
            note(&format!(
                "exported {} droplet ID(s) to {}",
                inv.ids.len(),
                p.display()
            ));
        }
        None => {
            let text = inv.render();
            if !text.is_empty() {
                say(text.trim_end());
            }
        }
    }
    crate::output::json(&serde_json::json!({ "action": "export", "ids": inv.ids }));
    Ok(())
}

/// An empty answer for a non-empty inventory is an API incident, not proof that every
/// droplet is gone (as for `reload`): nothing is pruned.
fn refuse_empty_answer(inv: &Inventory, fleet: &Fleet) -> Result<()> {
    if fleet.listed == 0 && !inv.ids.is_empty() && fleet.by_id.is_empty() {
        bail!(
            "the API knows none of the {} inventory droplet(s) (an incident on its side, or every droplet was deleted outside doproxy); nothing was pruned: try again later, or drop the lines with `doproxy inventory forget ID…`",
            inv.ids.len()
        );
    }
    Ok(())
}

/// Inventory droplets the API does not know (missing from the listing and 404 on GET),
/// except those a delete in progress is removing.
fn missing(inv: &Inventory, fleet: &Fleet, j: &journal::Journal) -> Vec<u64> {
    inv.ids
        .iter()
        .filter(|id| !fleet.by_id.contains_key(id) && !j.is_leaving(**id))
        .copied()
        .collect()
}

/// `inventory prune`: drops the lines of droplets confirmed gone — 404 now, and missing for
/// at least `not_found_grace` (the API is eventually consistent: a droplet can 404 just
/// after its create, and the API has had incidents answering 404s). How long each has been
/// missing comes from this node's missing log (beside the installed config, kept by
/// `reload`); one not missing long enough yet is waited for, then looked up again.
pub async fn prune(ctx: &Ctx, dry_run: bool) -> Result<()> {
    let grace = ctx.cfg.create.not_found_grace;
    let log = MissingLog::load(&missing_log_path(&ctx.cfg.haproxy.installed_cfg));
    let inv = ctx.store.load().await?;
    let fleet = ctx.fleet(&inv).await?;
    refuse_empty_answer(&inv, &fleet)?;
    let now = journal::now();
    let candidates = missing(&inv, &fleet, &ctx.store.journal().await?);
    // When each was first seen missing: the log's time, or now.
    let first: Vec<(u64, u64)> = candidates
        .iter()
        .map(|id| {
            (
                *id,
                log.first_missing.get(id).copied().unwrap_or(now).min(now),
            )
        })
        .collect();
    let wait = first
        .iter()
        .map(|(_, since)| grace.saturating_sub(Duration::from_secs(now - since)))
        .max()
        .unwrap_or_default();
    let line_of = |id: u64| inv.ids.iter().position(|x| *x == id).unwrap_or(0);
    if dry_run {
        for (id, since) in &first {
            if confirmed_gone(*since, now, grace) {
                say(&format!(
                    "dry run: would drop droplet {id} (line {}): 404, missing for {}s (not_found_grace {grace:.0?})",
                    line_of(*id),
                    now - since
                ));
            } else {
                say(&format!(
                    "dry run: droplet {id} (line {}) is missing (404) for {}s only; prune would wait out not_found_grace ({grace:.0?}) and look it up again",
                    line_of(*id),
                    now - since
                ));
            }
        }
        if first.is_empty() {
            say("dry run: nothing to prune: the API knows every inventory droplet");
        }
        crate::output::json(&serde_json::json!({
            "action": "prune",
            "dry_run": true,
            "confirmed": first.iter().filter(|(_, s)| confirmed_gone(*s, now, grace)).map(|(id, _)| id).collect::<Vec<_>>(),
            "missing": candidates,
        }));
        return Ok(());
    }
    if candidates.is_empty() {
        say("Nothing to prune: the API knows every inventory droplet.");
        crate::output::json(
            &serde_json::json!({ "action": "prune", "removed": [], "kept": [], "size": inv.ids.len() }),
        );
        return Ok(());
    }
    if !wait.is_zero() {
        note(&format!(
            "{} droplet(s) missing from the API ({}); waiting {wait:.0?} for not_found_grace before looking again",
            candidates.len(),
            candidates.iter().map(u64::to_string).collect::<Vec<_>>().join(", ")
        ));
        tokio::time::sleep(wait).await;
    }
    let (removed, kept, size) = ctx
        .locked(async || {
            // Looked up again under the lock: only what is still unknown goes.
            let inv = ctx.store.load().await?;
            let fleet = ctx.fleet(&inv).await?;
            refuse_empty_answer(&inv, &fleet)?;
            let still = missing(&inv, &fleet, &ctx.store.journal().await?);
            let gone: Vec<u64> = candidates
                .iter()
                .filter(|id| still.contains(id))
                .copied()
                .collect();
            let kept: Vec<u64> = candidates
                .iter()
                .filter(|id| !gone.contains(id))
                .copied()
                .collect();
            let inv = if gone.is_empty() {
                inv
            } else {
                ctx.store
                    .update(|i| i.ids.retain(|id| !gone.contains(id)))
                    .await?
            };
            Ok((gone, kept, inv.ids.len()))
        })
        .await?;
    for id in &removed {
        say(&format!(
            "Pruned: droplet {id} is gone (404 for at least {grace:.0?}); removed from the inventory."
        ));
    }
    for id in &kept {
        note(&format!(
            "droplet {id} is known to the API again (or is being deleted); its line stays"
        ));
    }
    if !removed.is_empty() {
        note("HAProxy follows at the next `doproxy reload`");
    }
    crate::output::json(&serde_json::json!({
        "action": "prune",
        "removed": removed,
        "kept": kept,
        "size": size,
    }));
    Ok(())
}

/// Which droplets `inventory adopt` adds.
#[derive(Debug, Clone)]
pub enum Adopt {
    /// These IDs: each must exist and carry the deployment's tag.
    Ids(Vec<u64>),
    /// Every droplet carrying the tag that is not in the inventory.
    Orphans,
}

/// `inventory adopt`: appends droplets that carry the deployment's tag (Terraform's
/// `import`). Named IDs are checked first, all or nothing: one that does not exist or is
/// not tagged is an error and nothing is added. doproxy does not tag droplets itself (the
/// API's `POST /v2/tags/{tag}/resources` is not in do-sim, against which it is tested):
/// tag an untagged one first with doctl or the control panel.
pub async fn adopt(ctx: &Ctx, which: Adopt, dry_run: bool) -> Result<()> {
    let tag = ctx.tag();
    let adopted = ctx
        .locked(async || {
            let inv = ctx.store.load().await?;
            let fleet = ctx.fleet(&inv).await?;
            let j = ctx.store.journal().await?;
            let mut picked: Vec<Droplet> = Vec::new();
            match &which {
                Adopt::Orphans => {
                    for d in &fleet.orphans {
                        if j.is_leaving(d.id) {
                            note(&format!("droplet {} is being deleted; not adopted", d.id));
                        } else {
                            picked.push(d.clone());
                        }
                    }
                    if picked.is_empty() {
                        say(&format!(
                            "No orphans: every droplet tagged {tag:?} is in {}.",
                            ctx.store.describe()
                        ));
                    }
                }
                Adopt::Ids(ids) => {
                    for id in ids {
                        if inv.ids.contains(id) {
                            note(&format!("droplet {id} is already in the inventory"));
                        } else if picked.iter().any(|d| d.id == *id) {
                        } else if let Some(d) = fleet.orphans.iter().find(|d| d.id == *id) {
                            picked.push(d.clone());
                        } else {
                            match ctx.client.get_droplet(*id).await? {
                                None => {
                                    return Err(usage_error(format!(
                                        "droplet {id} does not exist; nothing was adopted"
                                    )))
                                }
                                Some(d) => {
                                    return Err(usage_error(format!(
                                        "droplet {id} ({}) does not carry the tag {tag:?}; doproxy adopts only tagged droplets (it does not tag droplets itself): tag it first (`doctl compute droplet tag {id} --tag-name {tag}`), then run this again; nothing was adopted",
                                        d.name
                                    )))
                                }
                            }
                        }
                    }
                }
            }
            if dry_run || picked.is_empty() {
                return Ok((inv, picked));
            }
            let inv = ctx
                .store
                .update(|i| {
                    for d in &picked {
                        if !i.ids.contains(&d.id) {
                            i.ids.push(d.id);
                        }
                    }
                })
                .await?;
            // A journaled create whose droplet is adopted here is settled.
            if j.creating.iter().any(|c| picked.iter().any(|d| d.name.eq_ignore_ascii_case(&c.name))) {
                ctx.store
                    .update_journal(|j| {
                        j.creating.retain(|c| !picked.iter().any(|d| d.name.eq_ignore_ascii_case(&c.name)))
                    })
                    .await?;
            }
            Ok((inv, picked))
        })
        .await?;
    let (inv, picked) = adopted;
    let mut infos = Vec::new();
    for d in &picked {
        let line = inv.ids.iter().position(|x| *x == d.id);
        if dry_run {
            say(&format!(
                "dry run: would adopt droplet {} ({}, {}) into {}",
                d.id,
                d.name,
                d.status,
                ctx.store.describe()
            ));
        } else {
            say(&format!(
                "Adopted: droplet {} ({}) added to the inventory on line {}.",
                d.id,
                d.name,
                line.unwrap_or(0)
            ));
        }
        infos.push(DropletInfo::new(line, d.id, Some(d)));
    }
    if !dry_run && !picked.is_empty() {
        note(
            "HAProxy routes to adopted droplets at the next `doproxy reload`, once they are ready",
        );
    }
    crate::output::json(&serde_json::json!({
        "action": "adopt",
        "dry_run": dry_run,
        "droplets": infos,
    }));
    Ok(())
}

/// `inventory forget ID…`: drops inventory lines without destroying their droplets
/// (Terraform's `state rm`). Every ID must be in the inventory (all or nothing). A droplet
/// that still exists keeps running and billing: a warning says so, and how to destroy or
/// adopt it back.
pub async fn forget(ctx: &Ctx, ids: &[u64], dry_run: bool) -> Result<()> {
    let tag = ctx.tag();
    let (infos, size) = ctx
        .locked(async || {
            let inv = ctx.store.load().await?;
            if let Some(id) = ids.iter().find(|id| !inv.ids.contains(id)) {
                return Err(usage_error(format!(
                    "droplet {id} is not in the inventory {}; nothing was forgotten",
                    ctx.store.describe()
                )));
            }
            let fleet = ctx.fleet(&inv).await?;
            let infos: Vec<(DropletInfo, Option<Droplet>)> = ids
                .iter()
                .map(|id| {
                    let line = inv.ids.iter().position(|x| x == id);
                    let d = fleet.by_id.get(id);
                    (DropletInfo::new(line, *id, d), d.cloned())
                })
                .collect();
            if dry_run {
                return Ok((infos, inv.ids.len()));
            }
            let inv = ctx
                .store
                .update(|i| i.ids.retain(|id| !ids.contains(id)))
                .await?;
            Ok((infos, inv.ids.len()))
        })
        .await?;
    for (info, d) in &infos {
        let id = info.id;
        if dry_run {
            say(&format!(
                "dry run: would drop droplet {id} (line {}) from the inventory without destroying it",
                info.line.unwrap_or(0)
            ));
        } else {
            say(&format!(
                "Forgotten: droplet {id} removed from the inventory; it was not destroyed."
            ));
        }
        if let Some(d) = d {
            let tagged = if d.tags.iter().any(|t| t == tag) {
                format!("; `print` reports it as carrying the tag {tag:?} but not in the inventory")
            } else {
                String::new()
            };
            warn(&format!(
                "droplet {id} ({}) still exists and is billed{tagged}: destroy it with `doctl compute droplet delete {id}` (or in the control panel), or take it back with `doproxy inventory adopt {id}`",
                d.name
            ));
        }
    }
    if !dry_run {
        note("HAProxy keeps routing to forgotten droplets until the next `doproxy reload` (add --force if the shrink guard refuses)");
    }
    crate::output::json(&serde_json::json!({
        "action": "forget",
        "dry_run": dry_run,
        "droplets": infos.iter().map(|(i, _)| i).collect::<Vec<_>>(),
        "size": size,
    }));
    Ok(())
}
