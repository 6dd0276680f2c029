//! `doproxy create [--count N]`: create droplets (ten names per API request), record each
//! ID in the inventory before waiting, poll all pending droplets with one list request per
//! round, optionally wait until each answers HTTP, and add each group that becomes ready to
//! HAProxy with one reload.

use super::{note, say, warn, Ctx};
use crate::digitalocean::{ActionLookup, Created, Droplet, MAX_NAMES_PER_CREATE};
use crate::fleet::{DropletInfo, Fleet};
use crate::haproxy::{Change, Haproxy};
use crate::output;
use crate::store::journal::{self, Intent};
use anyhow::{anyhow, bail, Context, Result};
use std::time::{Duration, Instant};

/// Runs `create`.
pub async fn run(ctx: &Ctx, count: u32, dry_run: bool) -> Result<()> {
    create(ctx, count, dry_run, false, None).await
}

/// Creates `count` droplets for the autoscaler's standby pool: the same orphan-proof path,
/// and each ID is marked a standby in the journal in the same step that records it, so its
/// server is rendered parked (`weight 0`) from the first reload that routes to it.
/// `reserved` is set once the names are in the journal (or the create stopped before):
/// from then on the journal shows the droplets on their way.
pub async fn run_standby(ctx: &Ctx, count: u32, reserved: &std::cell::Cell<bool>) -> Result<()> {
    let r = create(ctx, count, false, true, Some(reserved)).await;
    reserved.set(true);
    r
}

async fn create(
    ctx: &Ctx,
    count: u32,
    dry_run: bool,
    standby: bool,
    reserved: Option<&std::cell::Cell<bool>>,
) -> Result<()> {
    let cfg = &ctx.cfg;
    // Everything that can be checked without spending money is checked first.
    let user_data = cfg.user_data()?;
    let haproxy = ctx.haproxy().await?;
    haproxy
        .render(&[])
        .context("the template must render before any droplet is created")?;
    ctx.store.load().await?;

    let names: Vec<String> = (0..count)
        .map(|_| unique_name(&cfg.droplet.hostname_prefix))
        .collect();
    let mut fields = cfg.droplet.request_fields();
    if let Some(u) = &user_data {
        fields.insert("user_data".into(), u.clone().into());
    }
    if dry_run {
        return preview(ctx, &haproxy, &names, &fields, user_data.as_deref()).await;
    }

    // Reserve before spending: the names go into the store's journal under the lock
    // first, which also proves the store can be written (a read-only or full file system,
    // an unreachable etcd fails here, before any droplet is billed).
    let reserving = reserve(ctx, &names).await;
    if let Some(r) = reserved {
        r.set(true);
    }
    reserving.with_context(|| {
        format!(
            "cannot record the droplets about to be created in {}; nothing was created",
            ctx.store.describe()
        )
    })?;

    let mut pending: Vec<Pending> = Vec::new();
    let mut create_error = None;
    for chunk in names.chunks(MAX_NAMES_PER_CREATE) {
        // Names whose outcome is unknown are never sent again: they stay journaled until a
        // listing shows them (adopted) or they stay absent for not_found_grace.
        let (mut created, failure) = ctx.client.create(chunk, &fields).await.split();
        if let Some(f) = &failure {
            settle_names(ctx, &f.not_created, &f.unknown).await?;
            created.extend(resolve_unknown(ctx, &f.unknown).await?);
        }
        if !created.is_empty() {
            record(ctx, &created, standby).await?;
        }
        for c in created {
            note(&format!(
                "created droplet {} ({}); waiting for it to become active",
                c.droplet.id, c.droplet.name
            ));
            pending.push(Pending {
                id: c.droplet.id,
                name: c.droplet.name,
                status: c.droplet.status,
                actions: c.actions,
                since: Instant::now(),
                activated: None,
            });
        }
        if let Some(f) = failure {
            let adopted_all = !f.unknown.is_empty()
                && f.not_created.is_empty()
                && pending_has_all(&pending, &f.unknown);
            if !adopted_all {
                create_error = Some(anyhow!(f).context("creating droplets"));
                break;
            }
        }
    }

    let mut added = Vec::new();
    let outcome = wait_and_add(ctx, pending, &mut added).await;
    output::progress_done();
    let result = match (create_error, outcome) {
        (None, Ok(())) => Ok(()),
        (Some(e), Ok(())) => Err(e),
        (None, Err(e)) => Err(e),
        (Some(e), Err(w)) => Err(e.context(format!("{w:#}"))),
    };
    match &result {
        Ok(()) => output::json(&serde_json::json!({ "action": "create", "droplets": added })),
        // A partial create loses no fact: the droplets created and the error, in one object.
        Err(e) => output::json(&serde_json::json!({
            "action": "create",
            "droplets": added,
            "error": { "message": format!("{e:#}"), "exit_code": crate::error::exit_code(e) },
        })),
    }
    result
}

/// `--dry-run`: what would be created; no API call that changes anything, no file written.
async fn preview(
    ctx: &Ctx,
    haproxy: &Haproxy<'_>,
    names: &[String],
    fields: &serde_json::Map<String, serde_json::Value>,
    user_data: Option<&str>,
) -> Result<()> {
    let d = &ctx.cfg.droplet;
    let requests = names.len().div_ceil(MAX_NAMES_PER_CREATE);
    say(&format!(
        "dry run: would create {} droplet(s) in {requests} API request(s): {}",
        names.len(),
        names.join(", ")
    ));
    say(&format!(
        "  size {}, image {}, region {}, tags {}, user data {}",
        d.size,
        fields
            .get("image")
            .map(|v| v.to_string())
            .unwrap_or_default(),
        d.region.as_deref().unwrap_or("(any)"),
        d.tags.join(","),
        user_data.map_or_else(|| "none".to_string(), |u| format!("{} bytes", u.len()))
    ));
    // The config as it stands must validate: new droplets are added to it.
    let inv = ctx.store.load().await?;
    let fleet = ctx.fleet(&inv).await?;
    let servers = ctx.servers(&inv, &fleet, &[], false).await?;
    let rendered = haproxy.render(&servers)?;
    haproxy.validate(&rendered).await?;
    say("  the current config renders and passes the check command");
    let mut request = fields.clone();
    request.remove("user_data");
    output::json(&serde_json::json!({
        "action": "create",
        "dry_run": true,
        "names": names,
        "api_requests": requests,
        "request": request,
        "user_data_bytes": user_data.map(str::len),
    }));
    Ok(())
}

struct Pending {
    id: u64,
    name: String,
    status: String,
    actions: Vec<u64>,
    since: Instant,
    /// How long it took to turn `active`, once it did.
    activated: Option<Duration>,
}

/// The usual time from a create to `active`: the 10th and 90th percentiles of the recent
/// activations (`None` with fewer than 3 on record).
fn usual_activation(ms: &[u64]) -> Option<(Duration, Duration)> {
    if ms.len() < 3 {
        return None;
    }
    let mut v = ms.to_vec();
    v.sort_unstable();
    let at = |q: f64| Duration::from_millis(v[((v.len() - 1) as f64 * q).round() as usize]);
    Some((at(0.1), at(0.9)))
}

/// The longest stretch of dense polling, whatever the recent activations say (an hour-long
/// outlier must not turn into an hour of polls every second).
const MAX_DENSE: Duration = Duration::from_secs(60);

/// How long to wait before the next poll, `elapsed` after the POST. With no history, the
/// backoff `interval` (it doubles up to `poll_interval`). With one: sparse until shortly
/// before the fastest usual activation (one poll per four `poll_interval`s at most, to see
/// a failure), then every `dense` (at most 1 s: a droplet is seen within a second of
/// turning active) until `poll_interval` after the slowest usual one, then the backoff.
fn next_poll(
    elapsed: Duration,
    usual: Option<(Duration, Duration)>,
    interval: Duration,
    poll_interval: Duration,
) -> Duration {
    let dense = poll_interval.min(Duration::from_secs(1));
    let Some((lo, hi)) = usual else {
        return interval;
    };
    let open = lo.saturating_sub(dense);
    let close = (hi + poll_interval).min(open + MAX_DENSE);
    if elapsed < open {
        (open - elapsed).min(poll_interval * 4)
    } else if elapsed < close {
        dense
    } else {
        interval
    }
}

/// Writes the intents for `names` into the journal, under the lock.
async fn reserve(ctx: &Ctx, names: &[String]) -> Result<()> {
    let since = journal::now();
    ctx.locked(async || {
        ctx.store
            .update_journal(|j| {
                for n in names {
                    if !j.creating.iter().any(|i| &i.name == n) {
                        j.creating.push(Intent {
                            name: n.clone(),
                            since,
                            ambiguous: false,
                        });
                    }
                }
            })
            .await
            .map(|_| ())
    })
    .await
}

/// After a failed create: names the API refused are dropped from the journal; names whose
/// outcome is unknown are marked ambiguous (a later run adopts them if they appear).
async fn settle_names(ctx: &Ctx, not_created: &[String], unknown: &[String]) -> Result<()> {
    let since = journal::now();
    ctx.locked(async || {
        ctx.store
            .update_journal(|j| {
                j.creating.retain(|i| !not_created.contains(&i.name));
                for i in &mut j.creating {
                    if unknown.contains(&i.name) && !i.ambiguous {
                        i.ambiguous = true;
                        i.since = since;
                    }
                }
            })
            .await
            .map(|_| ())
    })
    .await
}

/// Looks for droplets whose create answer was lost, by name and tag, for up to
/// `not_found_grace` (lists lag behind creates). Those found are returned to be recorded;
/// those still absent after the whole grace are confirmed never created and leave the
/// journal. Nothing is ever POSTed again for them.
async fn resolve_unknown(ctx: &Ctx, unknown: &[String]) -> Result<Vec<Created>> {
    if unknown.is_empty() {
        return Ok(Vec::new());
    }
    let grace = ctx.cfg.create.not_found_grace;
    let deadline = Instant::now() + grace;
    let mut wait = (ctx.cfg.create.poll_interval / 8).max(Duration::from_millis(10));
    let mut found: Vec<Droplet> = Vec::new();
    note(&format!(
        "the answer to the create of {} was lost; looking for them by name (up to {grace:.0?})",
        unknown.join(", ")
    ));
    // Absent means "a listing that succeeded did not show them"; a failed listing proves
    // nothing.
    let mut listed_ok;
    loop {
        match ctx.client.find_by_names(unknown, ctx.tag()).await {
            Ok(ds) => {
                found = ds;
                listed_ok = true;
            }
            Err(e) => {
                listed_ok = false;
                warn(&format!(
                    "looking for {}: {e}; will retry",
                    unknown.join(", ")
                ));
            }
        }
        if found.len() == unknown.len() || Instant::now() >= deadline {
            break;
        }
        tokio::time::sleep(wait.min(deadline.saturating_duration_since(Instant::now()))).await;
        wait = (wait * 2).min(ctx.cfg.create.poll_interval);
    }
    let absent: Vec<String> = unknown
        .iter()
        .filter(|n| !found.iter().any(|d| d.name.eq_ignore_ascii_case(n)))
        .cloned()
        .collect();
    if !absent.is_empty() && listed_ok && Instant::now() >= deadline {
        // Absent for the whole grace: confirmed never created.
        settle_names(ctx, &absent, &[]).await?;
    }
    Ok(found
        .into_iter()
        .map(|droplet| Created {
            droplet,
            actions: Vec::new(),
        })
        .collect())
}

fn pending_has_all(pending: &[Pending], names: &[String]) -> bool {
    names
        .iter()
        .all(|n| pending.iter().any(|p| p.name.eq_ignore_ascii_case(n)))
}

/// Appends the new IDs to the inventory and settles their intents, under the lock, before
/// any waiting: whatever happens next (Ctrl-C, kill -9, deadline), the droplets are
/// accounted for.
async fn record(ctx: &Ctx, created: &[Created], standby: bool) -> Result<()> {
    ctx.locked(async || {
        if standby {
            // Marked before they join the inventory: a kill between the writes leaves a
            // mark on a droplet not in the inventory yet (its intent is settled later, the
            // droplet adopted as the standby it is), never a spare in the inventory that
            // every node serves and the autoscaler counts as serving.
            ctx.store
                .update_journal(|j| {
                    for c in created {
                        if !j.standby.contains(&c.droplet.id) {
                            j.standby.push(c.droplet.id);
                        }
                    }
                })
                .await?;
        }
        ctx.store
            .update(|inv| {
                for c in created {
                    if !inv.ids.contains(&c.droplet.id) {
                        inv.ids.push(c.droplet.id);
                    }
                }
            })
            .await?;
        ctx.store
            .update_journal(|j| {
                j.creating.retain(|i| {
                    !created
                        .iter()
                        .any(|c| c.droplet.name.eq_ignore_ascii_case(&i.name))
                });
            })
            .await
            .map(|_| ())
    })
    .await
}

/// Polls until every pending droplet is ready (then reloads HAProxy for each group that
/// became ready together), has failed, or the deadline passes.
async fn wait_and_add(
    ctx: &Ctx,
    mut pending: Vec<Pending>,
    added: &mut Vec<DropletInfo>,
) -> Result<()> {
    let cfg = &ctx.cfg.create;
    let tag = ctx.tag();
    let started = Instant::now();
    let deadline = started + cfg.wait_timeout;
    // First look soon after the create, then back off to poll_interval; or, knowing how long
    // recent creates took, sparsely before that and densely around it.
    let mut interval = (cfg.poll_interval / 8).max(Duration::from_millis(10));
    let usual = match ctx.store.journal().await {
        Ok(j) => usual_activation(&j.activations_ms),
        Err(_) => None,
    };
    let mut failures: Vec<String> = Vec::new();
    let mut shown: Vec<(u64, String)> = Vec::new();
    let mut told_to_wait: Option<Duration> = None;
    while !pending.is_empty() {
        let now = Instant::now();
        let state: Vec<(u64, String)> = pending.iter().map(|p| (p.id, p.status.clone())).collect();
        output::progress(&state, started.elapsed(), state != shown);
        shown = state;
        if now >= deadline {
            let ids: Vec<String> = pending.iter().map(|p| p.id.to_string()).collect();
            failures.push(format!(
                "droplet(s) {} not ready after {:.0?}; they stay in the inventory and join HAProxy at the next `doproxy reload` once active",
                ids.join(", "),
                cfg.wait_timeout
            ));
            break;
        }
        let oldest = pending.iter().map(|p| p.since).min().unwrap_or(started);
        let mut wait = next_poll(oldest.elapsed(), usual, interval, cfg.poll_interval)
            .max(told_to_wait.take().unwrap_or_default());
        if ctx.client.ratelimit_remaining().is_some_and(|r| r < 100) {
            // Leave the rest of the hourly budget to other commands.
            wait = wait.max(cfg.poll_interval * 2);
        }
        let wait = wait.min(deadline - now);
        output::debug(&format!("next poll in {wait:.1?}"));
        if output::settings().progress == output::Progress::Live {
            // Keep the spinner and the elapsed time moving between polls.
            let until = Instant::now() + wait;
            while Instant::now() < until {
                tokio::time::sleep((until - Instant::now()).min(Duration::from_millis(100))).await;
                output::progress(&shown, started.elapsed(), false);
            }
        } else {
            tokio::time::sleep(wait).await;
        }
        interval = (interval * 2).min(cfg.poll_interval);

        let listed: Vec<Droplet> = match ctx.client.list_by_tag(tag).await {
            Ok(l) => l,
            Err(e) => {
                // Out of retries for this poll: wait as long as the API asked (a 429's
                // `retry-after`) before the next one, rather than hammering it.
                told_to_wait = e.retry_after();
                warn(&format!("polling: {e}; will retry"));
                continue;
            }
        };
        let mut ready = Vec::new();
        let mut still = Vec::new();
        for mut p in pending {
            let d = listed.iter().find(|d| d.id == p.id);
            if p.activated.is_none() && d.is_some_and(|d| d.status == "active") {
                p.activated = Some(p.since.elapsed());
            }
            match d {
                Some(d) if d.is_ready() => {
                    if !cfg.readiness_check || answers_http(ctx, d).await {
                        ready.push(p);
                    } else {
                        p.status = "active, waiting for HTTP".into();
                        still.push(p);
                    }
                }
                Some(d) if d.status == "new" || d.status == "active" => {
                    p.status.clone_from(&d.status);
                    still.push(p);
                }
                Some(d) => {
                    failures.push(format!(
                        "droplet {} ({}) is {:?} instead of becoming active; it stays in the inventory",
                        d.id, d.name, d.status
                    ));
                }
                None => match gone(ctx, &p).await {
                    Ok(Some(reason)) => {
                        forget(ctx, p.id).await?;
                        failures.push(format!(
                            "droplet {} ({}) {reason}; removed from the inventory",
                            p.id, p.name
                        ));
                    }
                    Ok(None) => still.push(p),
                    Err(e) => {
                        warn(&format!("checking droplet {}: {e:#}; will retry", p.id));
                        still.push(p);
                    }
                },
            }
        }
        pending = still;
        if !ready.is_empty() {
            output::progress_done();
            add_to_backend(ctx, &ready, added).await?;
        }
    }
    if failures.is_empty() {
        Ok(())
    } else {
        bail!("{}", failures.join("; "))
    }
}

/// The readiness gate: does the app answer HTTP on the droplet's private address yet?
async fn answers_http(ctx: &Ctx, d: &Droplet) -> bool {
    let Some(ip) = d.private_ipv4() else {
        return false;
    };
    let url = format!(
        "http://{ip}:{}{}",
        ctx.cfg.haproxy.backend_port, ctx.cfg.create.readiness_path
    );
    let Ok(client) = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()
    else {
        return false;
    };
    let answered = client
        .get(&url)
        .send()
        .await
        .is_ok_and(|r| r.status().as_u16() < 500);
    output::debug(&format!(
        "readiness check {url}: {}",
        if answered { "answered" } else { "not yet" }
    ));
    answered
}

/// For a droplet missing from the tag listing: `Some(reason)` when it is really gone (its
/// create action errored, or it 404s past the grace period), `None` while it may just not
/// be visible yet (the API is eventually consistent right after a create).
async fn gone(ctx: &Ctx, p: &Pending) -> Result<Option<String>> {
    // Matched by resource_id; a 403 (no `actions:read` scope) or no match leaves the
    // droplet's own status and the 404 grace to decide.
    if let ActionLookup::Found(a) = ctx.client.find_create_action(p.id, &p.actions).await? {
        if a.status == "errored" {
            return Ok(Some(format!("failed to create (action {} errored)", a.id)));
        }
    }
    if p.since.elapsed() < ctx.cfg.create.not_found_grace {
        return Ok(None);
    }
    match ctx.client.get_droplet(p.id).await? {
        None => Ok(Some(format!(
            "disappeared (404 for longer than {:.0?})",
            ctx.cfg.create.not_found_grace
        ))),
        Some(_) => Ok(None),
    }
}

/// Removes an ID of a droplet that no longer exists (nothing is billed for it).
async fn forget(ctx: &Ctx, id: u64) -> Result<()> {
    ctx.locked(async || {
        ctx.store
            .update(|inv| inv.ids.retain(|x| *x != id))
            .await
            .map(|_| ())
    })
    .await
}

/// Adds the droplets that became ready to HAProxy. The fleet is fetched again under the
/// lock: this round's listing was taken before it, and rendering from it could drop a
/// droplet that another `create` added meanwhile (the 8-concurrent-creates test caught it).
async fn add_to_backend(ctx: &Ctx, ready: &[Pending], added: &mut Vec<DropletInfo>) -> Result<()> {
    ctx.locked(async || {
        // What these took to turn active, for the next creates' poll cadence.
        let took: Vec<u64> = ready
            .iter()
            .filter_map(|p| p.activated)
            .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
            .collect();
        if !took.is_empty() {
            ctx.store
                .update_journal(|j| {
                    j.activations_ms.extend_from_slice(&took);
                    let extra = j
                        .activations_ms
                        .len()
                        .saturating_sub(journal::ACTIVATIONS_KEPT);
                    j.activations_ms.drain(..extra);
                })
                .await?;
        }
        let inv = ctx.store.load().await?;
        let fleet = ctx.fleet(&inv).await?;
        add_locked(ctx, &inv, &fleet, ready, added).await
    })
    .await
}

async fn add_locked(
    ctx: &Ctx,
    inv: &crate::inventory::Inventory,
    fleet: &Fleet,
    ready: &[Pending],
    added: &mut Vec<DropletInfo>,
) -> Result<()> {
    let servers = ctx.servers(inv, fleet, &[], true).await?;
    let ids: Vec<String> = ready.iter().map(|p| p.id.to_string()).collect();
    ctx.apply(Change::to(&servers)).await.with_context(|| {
        format!(
            "droplet(s) {} are active and in the inventory, but HAProxy was not updated",
            ids.join(", ")
        )
    })?;
    for p in ready {
        say(&format!("Success: {} created and added to backend.", p.id));
        let line = inv.ids.iter().position(|x| *x == p.id);
        added.push(DropletInfo::new(line, p.id, fleet.by_id.get(&p.id)));
    }
    Ok(())
}

/// `<prefix>-<6 random base-36 characters>`: unlike the original's `<prefix>-<count>`, a
/// name is never reused after a delete.
fn unique_name(prefix: &str) -> String {
    let mut n = crate::fsutil::random_u64();
    let mut suffix = String::new();
    for _ in 0..6 {
        let d = (n % 36) as u32;
        suffix.push(char::from_digit(d, 36).unwrap_or('0'));
        n /= 36;
    }
    format!("{prefix}-{suffix}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_usual_activation_needs_three_on_record() {
        let ms = Duration::from_millis;
        assert_eq!(usual_activation(&[]), None);
        assert_eq!(usual_activation(&[1000, 2000]), None);
        assert_eq!(
            usual_activation(&[3000, 1000, 2000]),
            Some((ms(1000), ms(3000)))
        );
        // The 10th and 90th percentiles of eleven: the 2nd smallest and the 2nd largest.
        let eleven: Vec<u64> = (1..=11).map(|i| i * 100).collect();
        assert_eq!(usual_activation(&eleven), Some((ms(200), ms(1000))));
    }

    #[test]
    fn unique_names_are_the_prefix_and_six_random_base_36_characters() {
        let names: Vec<String> = (0..20).map(|_| unique_name("web")).collect();
        for n in &names {
            let suffix = n.strip_prefix("web-").unwrap_or_else(|| panic!("{n}"));
            assert_eq!(suffix.len(), 6, "{n}");
            assert!(suffix
                .chars()
                .all(|c| c.is_ascii_digit() || c.is_ascii_lowercase()));
        }
        let distinct: std::collections::BTreeSet<&String> = names.iter().collect();
        assert_eq!(distinct.len(), names.len(), "{names:?}");
        // 120 random characters use nearly all 36; one character repeated per name (the
        // same digit six times) could use 20 at most.
        let chars: std::collections::BTreeSet<char> =
            names.iter().flat_map(|n| n[4..].chars()).collect();
        assert!(chars.len() > 20, "{names:?}");
    }

    #[test]
    fn polls_sparsely_before_the_usual_activation_and_densely_around_it() {
        let s = Duration::from_secs;
        let ms = Duration::from_millis;
        assert_eq!(usual_activation(&[30_000, 40_000]), None);
        let usual = usual_activation(&[30_000, 35_000, 40_000, 32_000, 71_000]);
        assert_eq!(usual, Some((ms(30_000), ms(71_000))));
        let poll = s(5);
        // No history: the backoff as it was.
        assert_eq!(next_poll(s(3), None, ms(625), poll), ms(625));
        // Before the usual time: one wait, at most 4 poll intervals, up to 1 s before it.
        assert_eq!(next_poll(s(0), usual, ms(625), poll), s(20));
        assert_eq!(next_poll(s(20), usual, ms(625), poll), s(9));
        // Around it: every second (never more than poll_interval).
        assert_eq!(next_poll(s(29), usual, poll, poll), s(1));
        assert_eq!(next_poll(s(75), usual, poll, poll), s(1));
        assert_eq!(next_poll(s(30), usual, ms(200), ms(200)), ms(200));
        // Past the slowest usual one (+ poll_interval): the backoff again.
        assert_eq!(next_poll(s(77), usual, poll, poll), poll);
        // An outlier does not make an hour of dense polls.
        let slow = usual_activation(&[30_000, 30_000, 3_600_000]);
        assert_eq!(next_poll(s(100), slow, poll, poll), poll);
    }

    #[test]
    fn names_are_unique_and_valid() {
        let a = unique_name("web");
        let b = unique_name("web");
        assert_ne!(a, b);
        assert!(a.starts_with("web-") && a.len() == 10);
        assert!(a.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'));
    }
}
