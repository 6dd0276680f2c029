//! `doproxy delete N`: drain the backend, take it out of the config and reload, destroy
//! the droplet, and only then drop its inventory line — the order measured to drop no
//! request (the original reloaded, then destroyed, and lost the line if the API failed).

use super::{note, say, sync_haproxy, Ctx, Fleet};
use crate::haproxy;
use crate::inventory::Inventory;
use crate::usage_error;
use anyhow::{Context, Result};

/// Runs `delete`.
pub async fn run(ctx: &Ctx, line: usize) -> Result<()> {
    let _lock = ctx.lock()?;
    let mut inv = Inventory::load(&ctx.cfg.inventory_file)?;
    let Some(id) = inv.get(line) else {
        return Err(usage_error(match inv.ids.len() {
            0 => format!(
                "line {line} does not exist: the inventory {} is empty",
                ctx.cfg.inventory_file.display()
            ),
            n => format!(
                "line {line} does not exist in the inventory (valid: 0 to {})",
                n - 1
            ),
        }));
    };
    let fleet = Fleet::fetch(ctx, &inv).await?;
    let servers = fleet.servers(&inv, Some(id));
    let drained = haproxy::drain(&ctx.cfg, id, ctx.cfg.drain_timeout)
        .await
        .unwrap_or(false);
    if drained {
        note(&format!("drained www-{id}"));
    }
    if let Err(e) = sync_haproxy(ctx, &servers, false).await {
        if drained {
            // HAProxy still runs the old config: give the server its traffic back.
            haproxy::undrain(&ctx.cfg, id).await;
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
    inv.ids.remove(line);
    inv.save(&ctx.cfg.inventory_file)?;
    say(&format!("Success: {id} deleted and removed from backend."));
    Ok(())
}
