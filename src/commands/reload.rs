//! `doproxy reload`: render, validate, install into haproxy_cfg_path, reload HAProxy.

use super::{note, show_preview, Ctx};
use crate::haproxy::{Applied, Change};
use anyhow::Result;

/// Drops leaving marks: under the lock no delete is in progress, so a mark is what an
/// interrupted delete left. A droplet it already destroyed loses its line (the delete is
/// finished); one still there goes back into service.
async fn clear_stale_leaving(
    ctx: &Ctx,
    inv: &mut crate::inventory::Inventory,
    fleet: &crate::fleet::Fleet,
) -> Result<()> {
    let j = ctx.store.journal().await?;
    if j.leaving.is_empty() {
        return Ok(());
    }
    if fleet.listed == 0 {
        // An empty listing may be an API incident: a missing droplet proves nothing now.
        return Ok(());
    }
    let mut destroyed = Vec::new();
    for l in &j.leaving {
        if fleet.by_id.contains_key(&l.id) {
            note(&format!(
                "droplet {} was left marked as leaving by an interrupted delete; it goes back into service (run `doproxy delete --id {}` to delete it)",
                l.id, l.id
            ));
        } else {
            note(&format!(
                "droplet {} was destroyed by an interrupted delete; its inventory line is removed",
                l.id
            ));
            destroyed.push(l.id);
        }
    }
    if !destroyed.is_empty() {
        *inv = ctx
            .store
            .update(|i| i.ids.retain(|id| !destroyed.contains(id)))
            .await?;
    }
    ctx.store
        .update_journal(|j| j.leaving.clear())
        .await
        .map(|_| ())
}

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
                clear_stale_leaving(ctx, &mut inv, &fleet).await?;
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
            let haproxy = ctx.haproxy().await?;
            let applied = haproxy.apply(change).await?;
            // A server an interrupted delete left drained (or put in maintenance) gets its
            // traffic back: no delete is in progress while this holds the lock.
            for name in haproxy.ready_forced(&servers, &[]).await? {
                note(&format!(
                    "{name} was left drained by an interrupted delete; it is back in service"
                ));
            }
            Ok((Some(applied), servers))
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
