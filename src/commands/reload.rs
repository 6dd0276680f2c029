//! `doproxy reload`: render, validate, install into haproxy_cfg_path, reload HAProxy.

use super::{note, prepare, render, say, sync_haproxy, Ctx, Fleet};
use crate::haproxy::{self, Applied, Server};
use anyhow::Result;

/// Runs `reload`.
pub async fn run(ctx: &Ctx, force: bool, dry_run: bool) -> Result<()> {
    let (applied, servers) = ctx
        .locked(async || {
            let inv = ctx.store.load().await?;
            let fleet = Fleet::fetch(ctx, &inv).await?;
            let servers = fleet.servers(&inv, None);
            if dry_run {
                preview(ctx, &servers, "reload").await?;
                return Ok((None, servers));
            }
            Ok((Some(sync_haproxy(ctx, &servers, force).await?), servers))
        })
        .await?;
    let Some(applied) = applied else {
        return Ok(());
    };
    match applied {
        Applied::Unchanged => note(&format!(
            "{} is up to date; HAProxy not reloaded (use --force to reload anyway)",
            ctx.cfg.installed_cfg.display()
        )),
        Applied::Reloaded => note(&format!(
            "HAProxy reloaded with {} backend(s)",
            servers.len()
        )),
    }
    crate::output::json(&serde_json::json!({
        "action": "reload",
        "reloaded": applied == Applied::Reloaded,
        "config": ctx.cfg.installed_cfg,
        "backends": servers,
    }));
    Ok(())
}

/// `--dry-run`: renders for `servers`, shows the diff against the installed config, runs
/// the check command on it, and changes nothing.
pub async fn preview(ctx: &Ctx, servers: &[Server], action: &str) -> Result<()> {
    let p = prepare(ctx).await?;
    let rendered = render(ctx, &p, servers)?;
    let installed = haproxy::installed_text(&ctx.cfg)?.unwrap_or_default();
    let path = ctx.cfg.installed_cfg.display().to_string();
    let diff = crate::diff::unified(&installed, &rendered, &path, &format!("{path} (new)"), 3);
    haproxy::validate(&ctx.cfg, &rendered).await?;
    if diff.is_empty() {
        say(&format!(
            "dry run: {path} is up to date; nothing would be reloaded"
        ));
    } else {
        say(&format!("dry run: {path} would change ({} backend(s)); the new config passes the check command:", servers.len()));
        say(diff.trim_end());
    }
    crate::output::json(&serde_json::json!({
        "action": action,
        "dry_run": true,
        "config": ctx.cfg.installed_cfg,
        "changed": !diff.is_empty(),
        "diff": diff,
        "backends": servers,
    }));
    Ok(())
}
