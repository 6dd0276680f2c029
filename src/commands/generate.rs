//! `doproxy generate`: render haproxy_cfg_file from the inventory, without installing it.

use super::Ctx;
use anyhow::{Context, Result};

/// Runs `generate`.
pub async fn run(ctx: &Ctx) -> Result<()> {
    let haproxy = ctx.haproxy().await?;
    let out = &ctx.cfg.haproxy.rendered_cfg;
    let servers = ctx
        .locked(async || {
            let inv = ctx.store.load().await?;
            let fleet = ctx.fleet(&inv).await?;
            let servers = ctx.servers(&inv, &fleet, &[], true).await?;
            let rendered = haproxy.render(&servers)?;
            haproxy
                .write(out, rendered.as_bytes())
                .with_context(|| format!("cannot write {}", out.display()))?;
            Ok(servers)
        })
        .await?;
    crate::output::json(&serde_json::json!({
        "action": "generate",
        "config": out,
        "backends": servers,
    }));
    Ok(())
}
