//! `doproxy reload`: render, validate, install into haproxy_cfg_path, reload HAProxy.

use super::{note, show_preview, Ctx};
use crate::haproxy::{Applied, Change};
use anyhow::Result;

/// What `reload` was asked to do.
#[derive(Debug, Clone, Copy, Default)]
pub struct Options {
    /// Reload even when the installed config is already up to date.
    pub force: bool,
    /// Show the diff and validate; change nothing.
    pub dry_run: bool,
}

/// Runs `reload`.
pub async fn run(ctx: &Ctx, opts: Options) -> Result<()> {
    let (applied, servers) = ctx
        .locked(async || {
            let mut inv = ctx.store.load().await?;
            let mut fleet = ctx.fleet(&inv).await?;
            if !opts.dry_run {
                ctx.settle_journal(&mut inv, &mut fleet).await?;
            }
            let servers = ctx.servers(&inv, &fleet, &[], !opts.dry_run).await?;
            if opts.dry_run {
                show_preview(ctx, &servers, "reload").await?;
                return Ok((None, servers));
            }
            let change = Change {
                servers: &servers,
                removing: &[],
                force: opts.force,
            };
            Ok((Some(ctx.apply(change).await?), servers))
        })
        .await?;
    let Some(applied) = applied else {
        return Ok(());
    };
    match applied {
        Applied::Unchanged => note(&format!(
            "{} is up to date; HAProxy not reloaded (use --force to reload anyway)",
            ctx.cfg.haproxy.installed_cfg.display()
        )),
        Applied::Reloaded => note(&format!(
            "HAProxy reloaded with {} backend(s)",
            servers.len()
        )),
    }
    crate::output::json(&serde_json::json!({
        "action": "reload",
        "reloaded": applied == Applied::Reloaded,
        "config": ctx.cfg.haproxy.installed_cfg,
        "backends": servers,
    }));
    Ok(())
}
