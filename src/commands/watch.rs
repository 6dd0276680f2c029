//! `doproxy reload --watch`: the consul-template pattern. A long-running process on each
//! HAProxy node re-renders, validates and reloads whenever the inventory changes
//! (debounced), re-polls while some droplet is not ready yet, survives API and etcd outages
//! by retrying, and exits cleanly on SIGTERM or SIGINT.

use super::{note, warn, Ctx};
use crate::haproxy::Applied;
use crate::haproxy::Change;
use anyhow::{Context, Result};
use std::time::{Duration, Instant};
use tokio::signal::unix::{signal, SignalKind};

/// How often the watch re-syncs even when nothing seems to change (a missed notice, a
/// droplet deleted outside doproxy).
const RESYNC: Duration = Duration::from_secs(60);

/// Runs the watch loop until SIGTERM/SIGINT.
pub async fn run(ctx: &Ctx) -> Result<()> {
    let mut term = signal(SignalKind::terminate()).context("cannot handle SIGTERM")?;
    let mut int = signal(SignalKind::interrupt()).context("cannot handle SIGINT")?;
    let cfg = &ctx.cfg;
    // A store that cannot be read at start is a configuration problem: fail fast.
    let mut changes = ctx.store.watch(cfg.create.poll_interval).await?;
    // Deletes wait for every announced node to stop routing to a droplet before it is
    // destroyed (etcd; a single file-backed node needs no announcement).
    let presence = ctx.store.announce(&ctx.node_name()).await?;
    note(&format!(
        "watching {} (debounce {:.1?})",
        ctx.store.describe(),
        cfg.watch_debounce
    ));
    let mut waiting_for_ready = sync(ctx, presence.as_ref()).await;
    loop {
        let pause = if waiting_for_ready {
            cfg.create.poll_interval
        } else {
            RESYNC
        };
        tokio::select! {
            _ = term.recv() => break,
            _ = int.recv() => break,
            changed = changes.next() => {
                if let Err(e) = changed {
                    warn(&format!("watching the inventory: {e:#}; still trying"));
                    continue;
                }
                // Debounce: a burst of changes (e.g. `create --count 10`) is one reload.
                let started = Instant::now();
                while let Ok(Ok(())) = tokio::time::timeout(cfg.watch_debounce, changes.next()).await {
                    if started.elapsed() > cfg.watch_debounce * 10 {
                        break;
                    }
                }
                waiting_for_ready = sync(ctx, presence.as_ref()).await;
            }
            _ = tokio::time::sleep(pause) => {
                waiting_for_ready = sync(ctx, presence.as_ref()).await;
            }
        }
    }
    note("watch stopped");
    Ok(())
}

/// One render/validate/install/reload pass. Returns true when some inventory droplet is
/// not ready yet (or the pass failed), so the caller polls again soon.
async fn sync(ctx: &Ctx, presence: Option<&crate::store::etcd::Presence>) -> bool {
    let pass = async {
        // Read what to render under the node's install lock, so this pass can never
        // install a list older than the one another command on this node just installed.
        let haproxy = ctx.haproxy().await?;
        let lock = haproxy.lock().await?;
        let inv = ctx.store.load().await?;
        let fleet = ctx.fleet(&inv).await?;
        let servers = ctx.servers(&inv, &fleet, &[], true).await?;
        let applied = haproxy.apply_locked(&lock, Change::to(&servers)).await?;
        if let Some(p) = presence {
            // HAProxy no longer routes to the droplets being deleted: say so.
            let leaving = ctx.store.journal().await?.leaving_ids();
            p.ack(&leaving).await?;
        }
        let pending = fleet.has_pending(&inv);
        Ok::<_, anyhow::Error>((applied, servers.len(), pending))
    };
    match pass.await {
        Ok((Applied::Reloaded, n, pending)) => {
            note(&format!("reloaded HAProxy with {n} backend(s)"));
            crate::output::json_line(
                &serde_json::json!({ "action": "reload", "reloaded": true, "backends": n }),
            );
            pending
        }
        Ok((Applied::Unchanged, _, pending)) => pending,
        Err(e) => {
            warn(&format!("{e:#}; will try again"));
            true
        }
    }
}
