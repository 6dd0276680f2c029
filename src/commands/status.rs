//! `doproxy status [--watch [--interval 2s]]`: one line per backend — inventory line,
//! droplet, API status, role, and HAProxy's view from the stats socket (state, last check,
//! sessions, rate, queue) — with totals and what is wrong. One API listing per refresh (as
//! `print`), one `show stat`; nothing is changed.

use super::Ctx;
use crate::digitalocean::Droplet;
use crate::fleet::{DropletInfo, Fleet};
use crate::haproxy::runtime::{self, ServerStat, StatsUnavailable};
use crate::haproxy::BACKEND;
use crate::inventory::Inventory;
use crate::output::{self, paint, Paint};
use crate::store::journal::Journal;
use anyhow::{Context, Result};
use serde::Serialize;
use std::time::{Duration, SystemTime};
use tokio::signal::unix::{signal, SignalKind};

/// A droplet's part in the deployment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Ready: doproxy routes to it.
    Serving,
    /// A delete is in progress (the journal's `leaving`): no node routes to it any more.
    Draining,
    /// Exists but is not ready yet (`new`, or active without a private address).
    Booting,
}

impl Role {
    fn as_str(self) -> &'static str {
        match self {
            Role::Serving => "serving",
            Role::Draining => "draining",
            Role::Booting => "booting",
        }
    }
}

/// One line of the table: an inventory droplet, an orphan (tagged, not in the inventory),
/// or a server HAProxy has that is neither.
#[derive(Debug, Clone, Serialize)]
pub struct Backend {
    /// The droplet as `print -o json` shows it (`status` is `missing` for an inventory
    /// droplet the API does not know, `unknown` for a HAProxy server outside both).
    #[serde(flatten)]
    pub droplet: DropletInfo,
    /// `serving`, `draining` or `booting`; `null` when none applies (missing, off, not in
    /// the inventory).
    pub role: Option<Role>,
    /// True for an inventory line.
    pub in_inventory: bool,
    /// Carries the deployment's tag (`null` when the API does not know the droplet).
    pub tagged: Option<bool>,
    /// HAProxy's view of its server, `null` when HAProxy has no such server or cannot be
    /// asked.
    pub haproxy: Option<ServerStat>,
}

/// Something wrong, with what to do about it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    /// `drained`, `maint`, `down`, `not_in_inventory`, `untagged`, `missing`, `orphan`,
    /// `not_active`, `not_served` or `stats_unavailable`.
    pub kind: &'static str,
    /// The droplet it is about, if any.
    pub id: Option<u64>,
    /// One sentence: what is wrong and what to run.
    pub message: String,
}

/// HAProxy's totals over the backend's servers.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct HaproxyTotals {
    /// Servers HAProxy has in the backend.
    pub servers: usize,
    /// `UP` (including `UP 1/3`, going down).
    pub up: usize,
    /// `DOWN` (including `DOWN 1/2`, coming up).
    pub down: usize,
    /// `DRAIN`.
    pub drain: usize,
    /// `MAINT`.
    pub maint: usize,
    /// Anything else (`NOLB`, `no check`).
    pub other: usize,
    /// Current sessions, summed.
    pub sessions: u64,
    /// Sessions per second, summed.
    pub rate: u64,
    /// Queued requests, summed.
    pub queued: u64,
}

/// The totals line.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Totals {
    /// Inventory lines.
    pub backends: usize,
    /// Inventory droplets by role.
    pub serving: usize,
    /// See [`Role::Draining`].
    pub draining: usize,
    /// See [`Role::Booting`].
    pub booting: usize,
    /// Inventory droplets the API does not know.
    pub missing: usize,
    /// Tagged droplets not in the inventory.
    pub orphans: usize,
    /// Creates not settled yet (the journal's `creating`).
    pub creating: usize,
    /// HAProxy's side; `null` when the stats socket cannot be asked.
    pub haproxy: Option<HaproxyTotals>,
}

/// One refresh: what `-o json status` prints.
#[derive(Debug, Clone, Serialize)]
pub struct Snapshot {
    /// When it was taken (RFC 3339, UTC).
    pub at: String,
    /// Where the inventory lives.
    pub inventory: String,
    /// The stats socket asked, `null` when none is configured.
    pub stats_socket: Option<String>,
    /// Inventory lines in order, then orphans, then HAProxy's other servers.
    pub backends: Vec<Backend>,
    /// Counts.
    pub totals: Totals,
    /// What is wrong; empty when nothing is.
    pub problems: Vec<Problem>,
}

/// Runs `status`; with `watch`, redraws every `watch` until SIGINT or SIGTERM.
pub async fn run(ctx: &Ctx, watch: Option<Duration>) -> Result<()> {
    let Some(every) = watch else {
        let snap = gather(ctx).await?;
        show_once(&snap);
        return Ok(());
    };
    let mut int = signal(SignalKind::interrupt()).context("cannot handle SIGINT")?;
    let mut term = signal(SignalKind::terminate()).context("cannot handle SIGTERM")?;
    loop {
        let taken = tokio::select! {
            s = gather(ctx) => s,
            _ = int.recv() => break,
            _ = term.recv() => break,
        };
        let footer = format!(
            "every {}; Ctrl-C to quit",
            humantime::format_duration(every)
        );
        match taken {
            Ok(snap) => {
                output::json_line(&snap);
                if !output::is_json() {
                    let look = Look::now();
                    let frame = fit_height(&render(&snap, &look), look.height, &footer);
                    output::redraw(&frame);
                }
            }
            Err(e) => {
                let message = format!("{e:#}");
                output::json_line(&serde_json::json!({ "error": { "message": message } }));
                if !output::is_json() {
                    let at = output::timestamp(SystemTime::now());
                    output::redraw(&format!(
                        "doproxy status  {at}\nrefresh failed: {message}\n{footer}\n"
                    ));
                }
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = int.recv() => break,
            _ = term.recv() => break,
        }
    }
    Ok(())
}

/// Prints one snapshot: JSON, or the table.
fn show_once(snap: &Snapshot) {
    output::json(snap);
    if !output::is_json() {
        output::write_stdout(&render(snap, &Look::now()));
    }
}

/// Takes one snapshot: the inventory, the journal, one API listing, one `show stat`.
async fn gather(ctx: &Ctx) -> Result<Snapshot> {
    let inv = ctx.store.load().await?;
    let journal = ctx.store.journal().await?;
    let fleet = ctx.fleet(&inv).await?;
    let values = &ctx.cfg.haproxy.values;
    let stats = runtime::server_stats(values).await;
    Ok(build(&Inputs {
        inventory: &inv,
        journal: &journal,
        fleet: &fleet,
        stats: &stats,
        tag: ctx.tag(),
        store: ctx.store.describe(),
        stats_socket: values.stats_socket.clone(),
        backend_port: ctx.cfg.haproxy.backend_port,
        at: SystemTime::now(),
    }))
}

/// Everything a snapshot is made of.
struct Inputs<'a> {
    inventory: &'a Inventory,
    journal: &'a Journal,
    fleet: &'a Fleet,
    stats: &'a std::result::Result<Vec<ServerStat>, StatsUnavailable>,
    tag: &'a str,
    store: String,
    stats_socket: Option<String>,
    backend_port: u16,
    at: SystemTime,
}

/// The role of the existing inventory droplet `d`.
fn role_of(d: &Droplet, leaving: bool) -> Option<Role> {
    if leaving {
        Some(Role::Draining)
    } else if d.is_ready() {
        Some(Role::Serving)
    } else if d.status == "new" || d.status == "active" {
        Some(Role::Booting)
    } else {
        None
    }
}

/// `1m05s`-style age of a state.
fn age(secs: u64) -> String {
    match secs {
        s if s < 60 => format!("{s}s"),
        s if s < 3600 => format!("{}m{:02}s", s / 60, s % 60),
        s if s < 86_400 => format!("{}h{:02}m", s / 3600, s % 3600 / 60),
        s => format!("{}d{:02}h", s / 86_400, s % 86_400 / 3600),
    }
}

/// Builds the snapshot (pure: the unit tests drive it).
fn build(i: &Inputs<'_>) -> Snapshot {
    let stats: &[ServerStat] = i.stats.as_deref().unwrap_or(&[]);
    let stat_of = |id: u64| stats.iter().find(|s| s.id == Some(id)).cloned();
    let socket = i.stats_socket.as_deref().unwrap_or("");
    let mut backends = Vec::new();
    let mut problems = Vec::new();
    let mut totals = Totals {
        backends: i.inventory.ids.len(),
        orphans: i.fleet.orphans.len(),
        creating: i.journal.creating.len(),
        ..Totals::default()
    };
    for (n, id) in i.inventory.ids.iter().enumerate() {
        let d = i.fleet.by_id.get(id);
        let leaving = i.journal.is_leaving(*id);
        let role = match d {
            Some(d) => role_of(d, leaving),
            None if leaving => Some(Role::Draining),
            None => None,
        };
        match role {
            Some(Role::Serving) => totals.serving += 1,
            Some(Role::Draining) => totals.draining += 1,
            Some(Role::Booting) => totals.booting += 1,
            None => {}
        }
        let haproxy = stat_of(*id);
        match d {
            None => {
                totals.missing += 1;
                if !leaving {
                    problems.push(Problem {
                        kind: "missing",
                        id: Some(*id),
                        message: format!(
                            "droplet {id} (line {n}) is missing from the API (deleted outside doproxy?): `doproxy inventory prune` drops its line once it has been gone for not_found_grace, `doproxy inventory forget {id}` at once"
                        ),
                    });
                }
            }
            Some(d) => {
                if !d.tags.iter().any(|t| t == i.tag) {
                    problems.push(Problem {
                        kind: "untagged",
                        id: Some(*id),
                        message: format!(
                            "droplet {id} ({}, line {n}) does not carry the tag {:?}: doproxy looks it up alone on every run and could not find it again if its line were lost; tag it: `doctl compute droplet tag {id} --tag-name {}`",
                            d.name, i.tag, i.tag
                        ),
                    });
                }
                if role.is_none() {
                    problems.push(Problem {
                        kind: "not_active",
                        id: Some(*id),
                        message: format!(
                            "droplet {id} ({}, line {n}) is {:?} in the API: it is left out of the config until it is active again; `doproxy delete --id {id}` removes it",
                            d.name, d.status
                        ),
                    });
                }
                if role == Some(Role::Serving) && haproxy.is_none() && i.stats.is_ok() {
                    problems.push(Problem {
                        kind: "not_served",
                        id: Some(*id),
                        message: format!(
                            "droplet {id} ({}, line {n}) is ready but HAProxy does not serve it: run `doproxy reload`",
                            d.name
                        ),
                    });
                }
            }
        }
        if let Some(s) = &haproxy {
            server_problems(s, leaving, socket, i.backend_port, &mut problems);
        }
        backends.push(Backend {
            droplet: DropletInfo::new(Some(n), *id, d),
            role,
            in_inventory: true,
            tagged: d.map(|d| d.tags.iter().any(|t| t == i.tag)),
            haproxy,
        });
    }
    for d in &i.fleet.orphans {
        problems.push(Problem {
            kind: "orphan",
            id: Some(d.id),
            message: format!(
                "droplet {} ({}) carries the tag {:?} but is not in {}: `doproxy inventory adopt {}` adds it; or destroy it (it is billed)",
                d.id, d.name, i.tag, i.store, d.id
            ),
        });
        let haproxy = stat_of(d.id);
        if let Some(s) = &haproxy {
            server_problems(s, false, socket, i.backend_port, &mut problems);
        }
        backends.push(Backend {
            droplet: DropletInfo::new(None, d.id, Some(d)),
            role: None,
            in_inventory: false,
            tagged: Some(true),
            haproxy,
        });
    }
    for s in stats {
        let known = s.id.is_some_and(|id| {
            i.inventory.ids.contains(&id) || i.fleet.orphans.iter().any(|d| d.id == id)
        });
        if known {
            continue;
        }
        problems.push(Problem {
            kind: "not_in_inventory",
            id: s.id,
            message: format!(
                "HAProxy serves {} but it is not in {}: `doproxy reload` takes it out",
                s.server, i.store
            ),
        });
        backends.push(Backend {
            droplet: DropletInfo {
                line: None,
                id: s.id.unwrap_or(0),
                name: None,
                status: "unknown".into(),
                private_ip: None,
                public_ip: None,
            },
            role: None,
            in_inventory: false,
            tagged: None,
            haproxy: Some(s.clone()),
        });
    }
    match i.stats {
        Ok(stats) => {
            let mut h = HaproxyTotals {
                servers: stats.len(),
                ..HaproxyTotals::default()
            };
            for s in stats {
                match s.state().as_str() {
                    "UP" => h.up += 1,
                    "DOWN" => h.down += 1,
                    "DRAIN" => h.drain += 1,
                    "MAINT" => h.maint += 1,
                    _ => h.other += 1,
                }
                h.sessions += s.scur;
                h.rate += s.rate;
                h.queued += s.qcur;
            }
            totals.haproxy = Some(h);
        }
        Err(StatsUnavailable::NotConfigured) => {}
        Err(StatsUnavailable::Unreachable(why)) => problems.push(Problem {
            kind: "stats_unavailable",
            id: None,
            message: format!(
                "HAProxy's stats socket cannot be asked: {why}; HAProxy's columns are empty"
            ),
        }),
    }
    Snapshot {
        at: output::timestamp(i.at),
        inventory: i.store.clone(),
        stats_socket: i.stats_socket.clone(),
        backends,
        totals,
        problems,
    }
}

/// What is wrong with a server HAProxy has, by its state.
fn server_problems(
    s: &ServerStat,
    leaving: bool,
    socket: &str,
    port: u16,
    problems: &mut Vec<Problem>,
) {
    let since = s
        .last_change_secs
        .map_or_else(String::new, |t| format!(" for {}", age(t)));
    match s.state().as_str() {
        state @ ("DRAIN" | "MAINT") if !leaving => problems.push(Problem {
            kind: if state == "DRAIN" { "drained" } else { "maint" },
            id: s.id,
            message: format!(
                "{} is in {state} in HAProxy but no delete is in progress: it gets no new requests; put it back with `echo 'set server {BACKEND}/{} state ready' | socat stdio {socket}`",
                s.server, s.server
            ),
        }),
        "DOWN" => problems.push(Problem {
            kind: "down",
            id: s.id,
            message: format!(
                "{} is DOWN in HAProxy{since} (last check {}): its app does not answer on port {port}",
                s.server,
                s.check_status.as_deref().unwrap_or("none")
            ),
        }),
        _ => {}
    }
}

/// How the table is drawn: colours and the size to fit in (a terminal), or plain columns.
#[derive(Debug, Clone, Copy)]
struct Look {
    colour: bool,
    width: Option<usize>,
    height: Option<usize>,
}

impl Look {
    /// Colour and size when stdout is a terminal, plain columns otherwise.
    fn now() -> Look {
        let size = output::stdout_size();
        Look {
            colour: output::colour_enabled(),
            width: size.map(|(_, w)| w),
            height: size.map(|(h, _)| h),
        }
    }
}

/// A `--watch` frame: `text` and `footer`, cut to `rows` lines like `top` (the table comes
/// first; what does not fit is counted on the last line).
fn fit_height(text: &str, rows: Option<usize>, footer: &str) -> String {
    let lines: Vec<&str> = text.lines().collect();
    match rows {
        Some(rows) if rows >= 4 && lines.len() + 2 > rows => {
            let keep = rows - 3;
            format!(
                "{}\n… {} more line(s): a taller terminal, or `doproxy status`, shows them\n{footer}",
                lines[..keep].join("\n"),
                lines.len() - keep
            )
        }
        _ => format!("{text}\n{footer}"),
    }
}

/// HAProxy's status as one word (`UP 1/3` → `UP(1/3)`, `no check` → `no-check`).
fn status_word(status: &str) -> String {
    if status == "no check" {
        return "no-check".into();
    }
    match status.split_once(' ') {
        None => status.to_string(),
        Some((a, b)) => format!("{a}({})", b.trim_matches(['(', ')'])),
    }
}

/// The last check as one word: `L7OK/1ms` (`*` marks a check in progress).
fn check_word(s: &ServerStat) -> String {
    let Some(st) = &s.check_status else {
        return "-".into();
    };
    let st = st.replace("* ", "*");
    match s.check_duration_ms {
        Some(ms) => format!("{st}/{ms}ms"),
        None => st,
    }
}

const HEADER: [&str; 11] = [
    "LINE", "ID", "NAME", "API", "ROLE", "HAPROXY", "SINCE", "CHECK", "SCUR", "RATE", "QCUR",
];
/// The columns aligned right (numbers).
const RIGHT: [bool; 11] = [
    true, true, false, false, false, false, true, false, true, true, true,
];
const NAME: usize = 2;
/// The columns a narrow terminal loses, in order: SINCE, QCUR, RATE, CHECK.
const DROPPED_FIRST: [usize; 4] = [6, 10, 9, 7];

/// The colour of one cell (by column and value).
fn cell_paint(col: usize, value: &str) -> Option<Paint> {
    match (col, value) {
        (_, "-") => Some(Paint::Dim),
        (3, "active") => None,
        (3, "new") => Some(Paint::Yellow),
        (3, _) => Some(Paint::Red),
        (4, "serving") => Some(Paint::Green),
        (4, _) => Some(Paint::Yellow),
        (5, "UP") => Some(Paint::Green),
        (5, v) if v.starts_with("DOWN") => Some(Paint::Red),
        (5, _) => Some(Paint::Yellow),
        (7, v) if v.starts_with("L7OK") || v.starts_with("L4OK") || v.starts_with("L6OK") => {
            Some(Paint::Green)
        }
        (7, _) => Some(Paint::Red),
        _ => None,
    }
}

/// Cuts `text` to `width` characters, ending in `…` when cut.
fn fit(text: &str, width: usize) -> String {
    if text.chars().count() <= width {
        return text.to_string();
    }
    let mut s: String = text.chars().take(width.saturating_sub(1)).collect();
    s.push('…');
    s
}

/// `text` as lines of at most `width` characters, broken at spaces, the lines after the
/// first starting with `indent`; one line when `width` is `None` (not a terminal).
fn wrap(text: &str, width: Option<usize>, indent: &str) -> String {
    let Some(width) = width.filter(|w| *w > indent.len() + 20) else {
        return format!("{text}\n");
    };
    let mut out = String::new();
    let mut line = String::new();
    for word in text.split(' ') {
        let len = line.chars().count();
        if len > 0 && len + 1 + word.chars().count() > width {
            out.push_str(line.trim_end());
            out.push('\n');
            line = indent.to_string();
        } else if len > 0 && line != indent {
            line.push(' ');
        }
        line.push_str(word);
    }
    out.push_str(line.trim_end());
    out.push('\n');
    out
}

/// The table, the totals line and the problems, as text.
fn render(snap: &Snapshot, look: &Look) -> String {
    let dash = || "-".to_string();
    let rows: Vec<[String; 11]> = snap
        .backends
        .iter()
        .map(|b| {
            let d = &b.droplet;
            let h = b.haproxy.as_ref();
            [
                d.line.map_or_else(dash, |n| n.to_string()),
                if d.id == 0 { dash() } else { d.id.to_string() },
                d.name.clone().unwrap_or_else(|| match (b.in_inventory, h) {
                    (true, _) => "(missing)".into(),
                    (false, Some(s)) => format!("({})", s.server),
                    (false, None) => dash(),
                }),
                d.status.clone(),
                b.role.map_or_else(dash, |r| r.as_str().to_string()),
                h.map_or_else(dash, |s| status_word(&s.status)),
                h.and_then(|s| s.last_change_secs).map_or_else(dash, age),
                h.map_or_else(dash, check_word),
                h.map_or_else(dash, |s| s.scur.to_string()),
                h.map_or_else(dash, |s| s.rate.to_string()),
                h.map_or_else(dash, |s| s.qcur.to_string()),
            ]
        })
        .collect();
    let mut widths: Vec<usize> = HEADER.iter().map(|h| h.len()).collect();
    for r in &rows {
        for (w, c) in widths.iter_mut().zip(r.iter()) {
            *w = (*w).max(c.chars().count());
        }
    }
    // A compact table on a terminal: the name column gives way first, then the gaps, then
    // the columns that matter least.
    let mut shown = [true; 11];
    let mut gap = 2;
    if let Some(total) = look.width {
        let used = |widths: &[usize], shown: &[bool; 11], gap: usize| {
            let cols: Vec<usize> = widths
                .iter()
                .zip(shown)
                .filter(|(_, s)| **s)
                .map(|(w, _)| *w)
                .collect();
            cols.iter().sum::<usize>() + gap * cols.len().saturating_sub(1)
        };
        let over = used(&widths, &shown, gap).saturating_sub(total);
        widths[NAME] = widths[NAME].saturating_sub(over).max(8);
        if used(&widths, &shown, gap) > total {
            gap = 1;
        }
        for col in DROPPED_FIRST {
            if used(&widths, &shown, gap) <= total {
                break;
            }
            shown[col] = false;
        }
    }
    let last_shown = shown.iter().rposition(|s| *s).unwrap_or(0);
    let line = |cells: &[String], header: bool| -> String {
        let mut out = Vec::new();
        for (col, (c, w)) in cells.iter().zip(&widths).enumerate() {
            if !shown[col] {
                continue;
            }
            let text = fit(c, *w);
            let pad = " ".repeat(w - text.chars().count());
            let last = col == last_shown;
            let painted = if header {
                paint(&text, Paint::Bold, look.colour)
            } else {
                match cell_paint(col, &text) {
                    Some(p) => paint(&text, p, look.colour),
                    None => text,
                }
            };
            out.push(if RIGHT[col] {
                format!("{pad}{painted}")
            } else if last {
                painted
            } else {
                format!("{painted}{pad}")
            });
        }
        format!("{}\n", out.join(&" ".repeat(gap)).trim_end())
    };
    let title = format!(
        "doproxy status  {}  inventory {}  stats {}",
        snap.at,
        snap.inventory,
        snap.stats_socket.as_deref().unwrap_or("(none)")
    );
    let mut text = wrap(&title, look.width, "  ");
    let header: Vec<String> = HEADER.iter().map(|h| h.to_string()).collect();
    text.push_str(&line(&header, true));
    for r in &rows {
        text.push_str(&line(r, false));
    }
    let t = &snap.totals;
    let mut summary = format!(
        "total: {} backend(s): {} serving, {} draining, {} booting, {} missing; {} orphan(s)",
        t.backends, t.serving, t.draining, t.booting, t.missing, t.orphans
    );
    if t.creating > 0 {
        summary.push_str(&format!("; {} create(s) in progress", t.creating));
    }
    let haproxy = match &t.haproxy {
        Some(h) => format!(
            "HAProxy: {} server(s): {} UP, {} DOWN, {} DRAIN, {} MAINT{}; {} session(s), {}/s, {} queued",
            h.servers,
            h.up,
            h.down,
            h.drain,
            h.maint,
            if h.other > 0 {
                format!(", {} other", h.other)
            } else {
                String::new()
            },
            h.sessions,
            h.rate,
            h.queued
        ),
        None => "HAProxy: not asked (no stats socket)".to_string(),
    };
    for l in [summary, haproxy] {
        text.push_str(&wrap(&l, look.width, ""));
    }
    if snap.problems.is_empty() {
        text.push_str(&paint("no problems", Paint::Green, look.colour));
        text.push('\n');
    } else {
        let mark = paint("problem:", Paint::Red, look.colour);
        for p in &snap.problems {
            // Wrapped at word boundaries with a hanging indent on a terminal.
            let body = wrap(&format!("problem: {}", p.message), look.width, "  ");
            text.push_str(&body.replacen("problem:", &mark, 1));
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::haproxy::server_name;
    use crate::store::journal::Leaving;

    fn droplet(id: u64, status: &str, tags: &[&str]) -> Droplet {
        serde_json::from_value(serde_json::json!({
            "id": id,
            "name": format!("web-{id}"),
            "status": status,
            "tags": tags,
            "networks": {"v4": if status == "active" {
                serde_json::json!([{"ip_address": format!("127.0.0.{}", id % 250), "type": "private"}])
            } else {
                serde_json::json!([])
            }},
        }))
        .unwrap()
    }

    fn stat(id: u64, status: &str) -> ServerStat {
        ServerStat {
            server: server_name(id),
            id: Some(id),
            status: status.into(),
            last_change_secs: Some(75),
            check_status: Some(if status == "DOWN" { "L4CON" } else { "L7OK" }.into()),
            check_code: None,
            check_duration_ms: Some(1),
            scur: 2,
            rate: 3,
            qcur: 0,
            weight: Some(1),
        }
    }

    fn snapshot(stats: Vec<ServerStat>) -> Snapshot {
        // Lines: 1 serving, 2 drained by hand, 3 DOWN, 4 missing, 5 untagged, 6 leaving,
        // 7 booting; 8 an orphan; HAProxy also has 9.
        let inv = Inventory {
            ids: vec![1, 2, 3, 4, 5, 6, 7],
        };
        let mut fleet = Fleet::default();
        for (id, st, tags) in [
            (1, "active", &["doproxy"][..]),
            (2, "active", &["doproxy"]),
            (3, "active", &["doproxy"]),
            (5, "active", &[]),
            (6, "active", &["doproxy"]),
            (7, "new", &["doproxy"]),
        ] {
            fleet.by_id.insert(id, droplet(id, st, tags));
        }
        fleet.orphans.push(droplet(8, "active", &["doproxy"]));
        fleet.listed = 7;
        let journal = Journal {
            creating: Vec::new(),
            leaving: vec![Leaving { id: 6, since: 0 }],
            standby: Vec::new(),
        };
        build(&Inputs {
            inventory: &inv,
            journal: &journal,
            fleet: &fleet,
            stats: &Ok(stats),
            tag: "doproxy",
            store: "inventory".into(),
            stats_socket: Some("/run/admin.sock".into()),
            backend_port: 80,
            at: SystemTime::UNIX_EPOCH,
        })
    }

    #[test]
    fn roles_totals_and_problems() {
        let snap = snapshot(vec![
            stat(1, "UP"),
            stat(2, "DRAIN"),
            stat(3, "DOWN"),
            stat(5, "UP"),
            stat(6, "DRAIN"),
            stat(9, "UP"),
        ]);
        let roles: Vec<Option<Role>> = snap.backends.iter().map(|b| b.role).collect();
        use Role::*;
        assert_eq!(
            roles,
            vec![
                Some(Serving),
                Some(Serving),
                Some(Serving),
                None,
                Some(Serving),
                Some(Draining),
                Some(Booting),
                None,
                None
            ]
        );
        let t = &snap.totals;
        assert_eq!(
            (t.backends, t.serving, t.draining, t.booting, t.missing, t.orphans),
            (7, 4, 1, 1, 1, 1)
        );
        let h = t.haproxy.clone().unwrap();
        assert_eq!((h.servers, h.up, h.down, h.drain), (6, 3, 1, 2));
        assert_eq!((h.sessions, h.rate), (12, 18));
        let kinds: Vec<(&str, Option<u64>)> =
            snap.problems.iter().map(|p| (p.kind, p.id)).collect();
        assert_eq!(
            kinds,
            vec![
                ("drained", Some(2)),
                ("down", Some(3)),
                ("missing", Some(4)),
                ("untagged", Some(5)),
                ("orphan", Some(8)),
                ("not_in_inventory", Some(9)),
            ],
            "{:#?}",
            snap.problems
        );
        assert!(snap.problems[1].message.contains("for 1m15s"));
        // Every hint names droplets by ID, never by line number alone.
        for p in &snap.problems {
            assert!(!p.message.contains("delete 4"), "{}", p.message);
        }
    }

    #[test]
    fn a_ready_droplet_haproxy_lacks_is_a_problem() {
        let snap = snapshot(vec![stat(2, "UP"), stat(3, "UP"), stat(5, "UP")]);
        assert!(snap
            .problems
            .iter()
            .any(|p| p.kind == "not_served" && p.id == Some(1)));
    }

    #[test]
    fn plain_columns_and_a_compact_coloured_table() {
        let snap = snapshot(vec![stat(1, "UP"), stat(2, "DRAIN"), stat(3, "DOWN")]);
        let plain = render(
            &snap,
            &Look {
                colour: false,
                width: None,
                height: None,
            },
        );
        assert!(!plain.contains('\x1b'), "{plain}");
        let lines: Vec<&str> = plain.lines().collect();
        assert!(lines[1].starts_with("LINE  ID"), "{plain}");
        let row = |id: &str| {
            lines
                .iter()
                .find(|l| l.split_whitespace().nth(1) == Some(id))
                .map(|l| l.split_whitespace().collect::<Vec<_>>())
                .unwrap()
        };
        assert_eq!(
            row("1"),
            vec!["0", "1", "web-1", "active", "serving", "UP", "1m15s", "L7OK/1ms", "2", "3", "0"]
        );
        assert_eq!(row("3")[5], "DOWN");
        assert_eq!(row("4")[3..6], ["missing", "-", "-"]);
        assert!(plain.contains("problem: www-2 is in DRAIN"), "{plain}");
        let tty = render(
            &snap,
            &Look {
                colour: true,
                width: Some(60),
                height: Some(20),
            },
        );
        // Fitted: no table line is wider than the terminal.
        let strip = |l: &str| {
            let mut out = String::new();
            let mut esc = false;
            for c in l.chars() {
                match (esc, c) {
                    (_, '\x1b') => esc = true,
                    (true, 'm') => esc = false,
                    (true, _) => {}
                    (false, c) => out.push(c),
                }
            }
            out
        };
        for l in tty.lines().skip(1).take(5) {
            assert!(
                strip(l).chars().count() <= 60,
                "{:?} is wider than 60",
                strip(l)
            );
        }
        assert!(!strip(&tty).contains("SINCE"), "{tty}");
        let frame = fit_height(&tty, Some(8), "footer");
        assert_eq!(frame.lines().count(), 7, "{frame}");
        assert!(frame.ends_with("footer"));
        assert!(frame.contains("more line(s)"));
        assert_eq!(fit_height("a\nb", Some(30), "f"), "a\nb\nf");
        assert!(tty.contains("\x1b[32mUP\x1b[0m"), "{tty}");
        assert!(tty.contains("\x1b[31mDOWN\x1b[0m"), "{tty}");
    }

    #[test]
    fn words() {
        assert_eq!(status_word("UP 1/3"), "UP(1/3)");
        assert_eq!(status_word("MAINT (via)"), "MAINT(via)");
        assert_eq!(status_word("no check"), "no-check");
        assert_eq!(age(5), "5s");
        assert_eq!(age(3725), "1h02m");
        assert_eq!(fit("auto-nginx-k3x9q2", 8), "auto-ng…");
        assert_eq!(
            wrap(
                "problem: one two three four five six seven eight nine",
                Some(30),
                "  "
            ),
            "problem: one two three four\n  five six seven eight nine\n"
        );
        assert_eq!(wrap("a b", None, "  "), "a b\n");
    }
}
