//! `doproxy delete N` (or `--id`, `--name`): drain the backend, take it out of the config
//! and reload, destroy the droplet, and only then drop its inventory line — the order
//! measured to drop no request (the original reloaded, then destroyed, and lost the line if
//! the API call failed).

use super::{note, say, show_preview, warn, Cleanup, Ctx};
use crate::error::usage_error;
use crate::fleet::DropletInfo;
use crate::haproxy::{server_name, Change};
use crate::store::journal::{self, Leaving};
use anyhow::{Context, Result};

/// Which droplet to delete.
#[derive(Debug, Clone)]
pub enum Which {
    /// Inventory line, from 0.
    Line(usize),
    /// Droplet ID.
    Id(u64),
    /// Droplet name (must match exactly one inventory droplet).
    Name(String),
}

/// What `delete` was asked to do.
#[derive(Debug, Clone)]
pub struct Options {
    /// Which droplet.
    pub which: Which,
    /// Show what would happen; change nothing.
    pub dry_run: bool,
    /// Destroy a droplet that does not carry the deployment's tag.
    pub force: bool,
}

/// Runs `delete`.
pub async fn run(ctx: &Ctx, opts: Options) -> Result<()> {
    ctx.locked(async || delete_locked(ctx, &opts).await).await
}

async fn delete_locked(ctx: &Ctx, opts: &Options) -> Result<()> {
    let (which, dry_run) = (&opts.which, opts.dry_run);
    let mut inv = ctx.store.load().await?;
    let inv_path = ctx.store.describe();
    let mut fleet = ctx.fleet(&inv).await?;
    if !dry_run {
        ctx.settle_journal(&mut inv, &mut fleet).await?;
    }
    let line = match which {
        Which::Line(n) if *n < inv.ids.len() => *n,
        Which::Line(n) => {
            return Err(usage_error(match inv.ids.len() {
                0 => format!("line {n} does not exist: the inventory {inv_path} is empty"),
                len => format!(
                    "line {n} does not exist in the inventory (valid: 0 to {})",
                    len - 1
                ),
            }))
        }
        Which::Id(id) if !inv.ids.contains(id) => {
            return destroy_outside(ctx, &fleet, *id, opts).await;
        }
        Which::Id(id) => inv.ids.iter().position(|x| x == id).unwrap_or_default(),
        Which::Name(name) => {
            let lines: Vec<usize> = inv
                .ids
                .iter()
                .enumerate()
                .filter(|(_, id)| {
                    fleet
                        .by_id
                        .get(id)
                        .is_some_and(|d| d.name.eq_ignore_ascii_case(name))
                })
                .map(|(n, _)| n)
                .collect();
            match lines.as_slice() {
                [n] => *n,
                [] => return Err(usage_error(format!("no droplet named {name:?} in the inventory {inv_path}"))),
                _ => {
                    return Err(usage_error(format!(
                        "{} inventory droplets are named {name:?} (lines {lines:?}); delete by line number or --id"
                    , lines.len())))
                }
            }
        }
    };
    let id = inv.ids[line];
    let info = DropletInfo::new(Some(line), id, fleet.by_id.get(&id));
    if let Some(d) = fleet.by_id.get(&id) {
        // Someone else's server by a typo or a bad import, or a Ruby-era droplet: routed
        // to, but not destroyed by a line number.
        if !d.tags.iter().any(|t| t == ctx.tag()) && !opts.force {
            return Err(usage_error(format!(
                "droplet {id} ({}) does not carry the deployment's tag {:?}, so it may not be this deployment's; check it, then run `doproxy delete --id {id} --force` to destroy it anyway",
                crate::output::escape(&d.name),
                ctx.tag()
            )));
        }
    }
    let servers = ctx.servers(&inv, &fleet, &[id], !dry_run).await?;
    let server = server_name(id);
    if dry_run {
        say(&format!(
            "dry run: would drain {server}, reload without it, destroy droplet {id} ({}) and remove line {line} of the inventory",
            info.name.as_deref().map(crate::output::escape).unwrap_or("missing".into())
        ));
        return show_preview(ctx, &servers, "delete").await;
    }

    // Phase 1: mark the droplet as leaving. From now on no node renders it (every
    // `reload --watch` drops it), so nothing can put it back while it is destroyed.
    mark_leaving(ctx, id, true).await?;
    let cleanup = ctx.on_interrupt(Cleanup::Delete { id });
    let haproxy = ctx.haproxy().await?;
    let drained = haproxy.drain(id).await.unwrap_or(false);
    if drained {
        note(&format!("drained {server}"));
    }
    let change = Change {
        servers: &servers,
        removing: &[id],
        force: false,
    };
    if let Err(e) = haproxy.apply(change).await {
        if drained {
            // HAProxy still runs the old config: give the server its traffic back.
            haproxy.undrain(id).await;
        }
        let unmarked = mark_leaving(ctx, id, false).await;
        cleanup.done();
        let e = e.context(format!(
            "droplet {id} not deleted; it stays on line {line} of the inventory and in service"
        ));
        return Err(match unmarked {
            Ok(()) => e,
            Err(u) => e.context(format!("{u:#}")),
        });
    }
    // Every other node must stop routing to it before it is destroyed (etcd: each
    // `reload --watch` acknowledges; a node that does not is named).
    let timeout = ctx.cfg.haproxy.reload_verify_timeout;
    let silent = ctx.store.wait_acks(id, timeout).await?;
    if !silent.is_empty() {
        warn(&format!(
            "node(s) {} did not confirm within {timeout:.0?} that they stopped routing to droplet {id}; destroying it anyway",
            silent.join(", ")
        ));
    }
    // Phase 2: destroy, then drop the line and the mark.
    ctx.client.delete_droplet(id).await.with_context(|| {
        format!(
            "droplet {id} is out of the HAProxy config but could not be destroyed; it stays on line {line} of the inventory, marked as leaving: run `doproxy delete --id {id}` again"
        )
    })?;
    ctx.store.update(|inv| inv.ids.retain(|x| *x != id)).await?;
    ctx.store
        .update_journal(|j| {
            j.leaving.retain(|l| l.id != id);
            j.standby.retain(|s| *s != id);
        })
        .await
        .with_context(|| format!("cannot record the delete of droplet {id}"))?;
    cleanup.done();
    say(&format!("Success: {id} deleted and removed from backend."));
    crate::output::json(&serde_json::json!({ "action": "delete", "droplet": info }));
    Ok(())
}

/// `delete --id ID --force` of a droplet of the deployment that is not in the inventory (an
/// orphan): no HAProxy routes to it, so it is destroyed at once. Without `--force`, or for a
/// droplet without the deployment's tag, it is refused.
async fn destroy_outside(
    ctx: &Ctx,
    fleet: &crate::fleet::Fleet,
    id: u64,
    opts: &Options,
) -> Result<()> {
    let inv_path = ctx.store.describe();
    let Some(d) = fleet.orphans.iter().find(|d| d.id == id) else {
        return Err(usage_error(format!(
            "droplet {id} is not in the inventory {inv_path}, nor a droplet tagged {:?}",
            ctx.tag()
        )));
    };
    if !opts.force {
        return Err(usage_error(format!(
            "droplet {id} ({}) is not in the inventory {inv_path}; `doproxy delete --id {id} --force` destroys it, `doproxy inventory adopt {id}` adds it",
            crate::output::escape(&d.name)
        )));
    }
    let info = DropletInfo::new(None, id, Some(d));
    if opts.dry_run {
        say(&format!(
            "dry run: would destroy droplet {id} ({}), which is not in the inventory",
            crate::output::escape(&d.name)
        ));
        crate::output::json(
            &serde_json::json!({ "action": "delete", "dry_run": true, "droplet": info }),
        );
        return Ok(());
    }
    ctx.client
        .delete_droplet(id)
        .await
        .with_context(|| format!("droplet {id} could not be destroyed"))?;
    say(&format!("Success: {id} deleted."));
    crate::output::json(&serde_json::json!({ "action": "delete", "droplet": info }));
    Ok(())
}

/// Marks (or unmarks) droplet `id` as leaving in the store's journal.
async fn mark_leaving(ctx: &Ctx, id: u64, leaving: bool) -> Result<()> {
    let since = journal::now();
    ctx.store
        .update_journal(|j| {
            j.leaving.retain(|l| l.id != id);
            if leaving {
                j.leaving.push(Leaving { id, since });
            }
        })
        .await
        .map(|_| ())
        .with_context(|| format!("cannot record the delete of droplet {id}"))
}
