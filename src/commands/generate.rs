//! `doproxy generate`: render haproxy_cfg_file from the inventory, without installing it.

use super::{prepare, render, Ctx, Fleet};
use crate::fsutil;
use crate::inventory::Inventory;
use anyhow::{Context, Result};

/// Runs `generate`.
pub async fn run(ctx: &Ctx) -> Result<()> {
    let p = prepare(ctx).await?;
    let _lock = ctx.lock()?;
    let inv = Inventory::load(&ctx.cfg.inventory_file)?;
    let fleet = Fleet::fetch(ctx, &inv).await?;
    let servers = fleet.servers(&inv, None);
    let rendered = render(ctx, &p, &servers)?;
    let out = &ctx.cfg.rendered_cfg;
    fsutil::write_atomic(out, rendered.as_bytes())
        .with_context(|| format!("cannot write {}", out.display()))?;
    crate::output::json(&serde_json::json!({
        "action": "generate",
        "config": out,
        "backends": servers,
    }));
    Ok(())
}
