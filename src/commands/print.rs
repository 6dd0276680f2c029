//! `doproxy print`: the inventory, numbered from 0, in the original's line format (or JSON).

use super::{say, warn, Ctx};
use crate::fleet::DropletInfo;
use crate::output::escape;
use anyhow::Result;

/// Runs `print`.
pub async fn run(ctx: &Ctx) -> Result<()> {
    let mut inv = ctx.store.load().await?;
    let mut fleet = ctx.fleet(&inv).await?;
    if !ctx.store.journal().await?.creating.is_empty() {
        // An interrupted create left names behind: adopt what the listing shows.
        ctx.locked(async || {
            inv = ctx.store.load().await?;
            fleet = ctx.fleet(&inv).await?;
            ctx.settle_journal(&mut inv, &mut fleet).await
        })
        .await?;
    }
    if inv.ids.is_empty() {
        say("The inventory file is empty. Use the create command.");
    }
    let mut entries = Vec::new();
    for (n, id) in inv.ids.iter().enumerate() {
        let d = fleet.by_id.get(id);
        let info = DropletInfo::new(Some(n), *id, d);
        match d {
            // The name and status come from the API: escaped, so that they cannot forge a
            // line or reach the terminal as escape sequences.
            Some(d) => say(&format!(
                "{n}) {}  (pvt ip: {}, status: {}, id: {id})",
                escape(&d.name),
                info.private_ip.as_deref().unwrap_or(""),
                escape(&d.status)
            )),
            None => {
                // Reported, never dropped: the operator decides.
                say(&format!(
                    "{n}) (missing)  (pvt ip: , status: missing, id: {id})"
                ));
                warn(&format!(
                    "inventory line {n}: droplet {id} does not exist (deleted outside doproxy?); `doproxy inventory prune` drops the line once it is confirmed gone, `doproxy inventory forget {id}` at once"
                ));
            }
        }
        entries.push(info);
    }
    fleet.warn_orphans(ctx.tag(), &ctx.store.describe());
    let orphans: Vec<DropletInfo> = fleet
        .orphans
        .iter()
        .map(|d| DropletInfo::new(None, d.id, Some(d)))
        .collect();
    crate::output::json(&serde_json::json!({ "droplets": entries, "orphans": orphans }));
    Ok(())
}
