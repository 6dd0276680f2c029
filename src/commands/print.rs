//! `doproxy print`: the inventory, numbered from 0, in the original's line format.

use super::{say, warn, Ctx, Fleet};
use crate::inventory::Inventory;
use anyhow::Result;

/// Runs `print`.
pub async fn run(ctx: &Ctx) -> Result<()> {
    let inv = Inventory::load(&ctx.cfg.inventory_file)?;
    let fleet = Fleet::fetch(ctx, &inv).await?;
    if inv.ids.is_empty() {
        say("The inventory file is empty. Use the create command.");
    }
    for (n, id) in inv.ids.iter().enumerate() {
        match fleet.by_id.get(id) {
            Some(d) => {
                let ip = d
                    .private_ipv4()
                    .map(|ip| ip.to_string())
                    .unwrap_or_default();
                say(&format!(
                    "{n}) {}  (pvt ip: {ip}, status: {}, id: {id})",
                    d.name, d.status
                ));
            }
            None => {
                // Reported, never dropped: the operator decides (`doproxy delete N`).
                say(&format!(
                    "{n}) (missing)  (pvt ip: , status: missing, id: {id})"
                ));
                warn(&format!("inventory line {n}: droplet {id} does not exist (deleted outside doproxy?); `doproxy delete {n}` removes the line"));
            }
        }
    }
    fleet.warn_orphans(&ctx.cfg);
    Ok(())
}
