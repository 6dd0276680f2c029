//! `doproxy reload`: render, validate, install into haproxy_cfg_path, reload HAProxy.

use super::{note, sync_haproxy, Ctx, Fleet};
use crate::haproxy::Applied;
use crate::inventory::Inventory;
use anyhow::Result;

/// Runs `reload`.
pub async fn run(ctx: &Ctx, force: bool) -> Result<()> {
    let _lock = ctx.lock()?;
    let inv = Inventory::load(&ctx.cfg.inventory_file)?;
    let fleet = Fleet::fetch(ctx, &inv).await?;
    let servers = fleet.servers(&inv, None);
    match sync_haproxy(ctx, &servers, force).await? {
        Applied::Unchanged => note(&format!(
            "{} is up to date; HAProxy not reloaded (use --force to reload anyway)",
            ctx.cfg.installed_cfg.display()
        )),
        Applied::Reloaded => note(&format!(
            "HAProxy reloaded with {} backend(s)",
            servers.len()
        )),
    }
    Ok(())
}
