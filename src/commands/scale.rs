//! `doproxy scale --to N`: the declarative actuator. Up: admit hot spares (standbys UP in
//! HAProxy) over the runtime API, then create the rest through `create`'s orphan-proof
//! path. Down: delete the newest serving droplets through `delete`'s two-phase path, one at
//! a time. A person, a cron line or the autoscaler says how many should serve; this makes
//! it so.

use super::{create, delete, note, say, Ctx};
use crate::autoscale::live::{Role, Roster};
use crate::haproxy::runtime;
use crate::output;
use anyhow::{Context, Result};
use std::time::Duration;

/// Runs `scale --to N`.
pub async fn run(ctx: &Ctx, to: u32, dry_run: bool) -> Result<()> {
    let inv = ctx.store.load().await?;
    let journal = ctx.store.journal().await?;
    // HAProxy says which standbys pass their checks; without a socket none can be admitted
    // (they are then counted as serving-to-be only once created).
    let stats = runtime::sample(&ctx.cfg.haproxy.values, Duration::from_secs(2))
        .await
        .map(|s| s.servers)
        .unwrap_or_default();
    let roster = Roster::new(&inv.ids, &journal, &stats);
    // Serving, or on its way to serving: every inventory droplet that is neither leaving,
    // nor held out by hand, nor a standby.
    let serving: Vec<&crate::autoscale::live::Member> = roster
        .members
        .iter()
        .filter(|m| m.role != Role::Draining && !m.standby)
        .collect();
    let have = u32::try_from(serving.len()).unwrap_or(u32::MAX);
    output::json_results_off();
    let prefix = if dry_run { "would " } else { "" };
    let mut admitted = Vec::new();
    let mut created = 0;
    let mut deleted = Vec::new();
    if to > have {
        let admit = roster.to_admit(to - have);
        for id in &admit {
            say(&format!(
                "{prefix}admit standby {}",
                crate::haproxy::server_name(*id)
            ));
            if !dry_run {
                runtime::set_weight(&ctx.cfg.haproxy.values, *id, 1).await?;
                ctx.locked(async || {
                    ctx.store
                        .update_journal(|j| j.standby.retain(|s| s != id))
                        .await
                        .map(|_| ())
                })
                .await
                .with_context(|| {
                    format!(
                        "admitted {} in HAProxy, but cannot record it",
                        crate::haproxy::server_name(*id)
                    )
                })?;
            }
            admitted.push(*id);
        }
        let more = to - have - u32::try_from(admit.len()).unwrap_or(0);
        if more > 0 {
            say(&format!("{prefix}create {more} droplet(s)"));
            if !dry_run {
                create::run(ctx, more, false).await?;
            }
            created = more;
        }
    } else if to < have {
        // The newest first: the oldest have proven themselves.
        let mut victims: Vec<_> = serving.iter().map(|m| (m.line, m.id)).collect();
        victims.sort_by_key(|(line, _)| std::cmp::Reverse(*line));
        for (line, id) in victims.into_iter().take((have - to) as usize) {
            say(&format!("{prefix}delete droplet {id} (line {line})"));
            if !dry_run {
                let opts = delete::Options {
                    which: delete::Which::Id(id),
                    dry_run: false,
                    force: false,
                };
                delete::run(ctx, opts).await?;
            }
            deleted.push(id);
        }
    } else {
        note(&format!("{have} droplet(s) serve already; nothing to do"));
    }
    say(&format!(
        "{}{have} -> {to} serving",
        if dry_run { "dry run: " } else { "" }
    ));
    // The result object is printed here, not by the create and delete run inside.
    output::json_results_on();
    output::json(&serde_json::json!({
        "action": "scale",
        "dry_run": dry_run,
        "from": have,
        "to": to,
        "admitted": admitted,
        "created": created,
        "deleted": deleted,
    }));
    Ok(())
}
