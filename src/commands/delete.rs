//! `doproxy delete N` (or `--id`, `--name`): drain the backend, take it out of the config
//! and reload, destroy the droplet, and only then drop its inventory line — the order
//! measured to drop no request (the original reloaded, then destroyed, and lost the line if
//! the API call failed).

use super::{note, say, show_preview, Ctx};
use crate::error::usage_error;
use crate::fleet::DropletInfo;
use crate::haproxy::{server_name, Change};
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

/// Runs `delete`.
pub async fn run(ctx: &Ctx, which: Which, dry_run: bool) -> Result<()> {
    ctx.locked(async || delete_locked(ctx, which, dry_run).await)
        .await
}

async fn delete_locked(ctx: &Ctx, which: Which, dry_run: bool) -> Result<()> {
    let mut inv = ctx.store.load().await?;
    let inv_path = ctx.store.describe();
    let mut fleet = ctx.fleet(&inv).await?;
    if !dry_run {
        ctx.settle_journal(&mut inv, &mut fleet).await?;
    }
    let line = match &which {
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
        Which::Id(id) => inv.ids.iter().position(|x| x == id).ok_or_else(|| {
            usage_error(format!("droplet {id} is not in the inventory {inv_path}"))
        })?,
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
    let servers = ctx.servers(&inv, &fleet, &[id], !dry_run).await?;
    let server = server_name(id);
    if dry_run {
        say(&format!(
            "dry run: would drain {server}, reload without it, destroy droplet {id} ({}) and remove line {line} of the inventory",
            info.name.as_deref().unwrap_or("missing")
        ));
        return show_preview(ctx, &servers, "delete").await;
    }

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
        return Err(e.context(format!(
            "droplet {id} not deleted; it stays on line {line} of the inventory"
        )));
    }
    ctx.client.delete_droplet(id).await.with_context(|| {
        format!(
            "droplet {id} is out of the HAProxy config but could not be destroyed; it stays on line {line} of the inventory: run `doproxy delete {line}` again"
        )
    })?;
    ctx.store.update(|inv| inv.ids.retain(|x| *x != id)).await?;
    say(&format!("Success: {id} deleted and removed from backend."));
    crate::output::json(&serde_json::json!({ "action": "delete", "droplet": info }));
    Ok(())
}
