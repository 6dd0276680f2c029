//! HAProxy's runtime API on the admin stats socket: which servers it serves (to verify a
//! reload), and draining a server before it is removed.

use super::{Server, TemplateValues, BACKEND};
use anyhow::{anyhow, bail, Context, Result};
use std::collections::BTreeSet;
use std::path::Path;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The stats socket to ask HAProxy through, when one is configured and exists.
pub(super) fn stats_socket(values: &TemplateValues) -> Option<&Path> {
    values
        .stats_socket
        .as_deref()
        .map(Path::new)
        .filter(|p| p.exists())
}

/// Sends one command to the HAProxy runtime API on a UNIX socket and returns the answer.
pub async fn command(socket: &Path, command: &str) -> Result<String> {
    let fut = async {
        let mut s = tokio::net::UnixStream::connect(socket)
            .await
            .with_context(|| format!("cannot connect to {}", socket.display()))?;
        s.write_all(format!("{command}\n").as_bytes()).await?;
        let mut out = String::new();
        s.read_to_string(&mut out).await?;
        Ok::<_, anyhow::Error>(out)
    };
    tokio::time::timeout(Duration::from_secs(5), fut)
        .await
        .map_err(|_| anyhow!("{}: no answer within 5s", socket.display()))?
}

/// The names of the servers HAProxy serves in the backend, from its runtime API.
async fn served(sock: &Path) -> Result<BTreeSet<String>> {
    let out = command(sock, &format!("show servers state {BACKEND}")).await?;
    Ok(parse_server_names(&out))
}

fn server_names(servers: &[Server]) -> BTreeSet<String> {
    servers.iter().map(Server::server_name).collect()
}

/// After a reload, waits until HAProxy's runtime API lists exactly the rendered servers: a
/// reload signal can "succeed" while HAProxy keeps the old config. Skipped (with no error)
/// when there is no stats socket to ask.
pub(super) async fn verify(
    values: &TemplateValues,
    servers: &[Server],
    timeout: Duration,
) -> Result<()> {
    let Some(sock) = stats_socket(values) else {
        return Ok(());
    };
    let want = server_names(servers);
    let deadline = Instant::now() + timeout;
    loop {
        let last = match served(sock).await {
            Ok(have) if have == want => return Ok(()),
            Ok(have) => format!(
                "HAProxy serves {} server(s), the new config has {}",
                have.len(),
                want.len()
            ),
            Err(e) => format!("{e:#}"),
        };
        if Instant::now() >= deadline {
            bail!("the reload did not take effect within {timeout:.1?} ({last})");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The server names HAProxy serves, or `None` when there is no stats socket to ask or it
/// does not answer.
pub(super) async fn served_names(values: &TemplateValues) -> Option<BTreeSet<String>> {
    served(stats_socket(values)?).await.ok()
}

/// True when HAProxy's runtime API lists exactly `servers`, or when there is no stats
/// socket to ask (nothing better to go on than the installed file).
pub(super) async fn serves(values: &TemplateValues, servers: &[Server]) -> bool {
    match stats_socket(values) {
        None => true,
        Some(sock) => served(sock)
            .await
            .is_ok_and(|have| have == server_names(servers)),
    }
}

/// `srv_admin_state` bits set by the runtime API (`set server … state maint|drain`):
/// forced maintenance and forced drain.
const FORCED_MAINT: u32 = 0x01;
const FORCED_DRAIN: u32 = 0x08;

/// Servers of the backend whose admin state was forced to drain or maintenance through the
/// runtime API, from `show servers state`.
fn parse_forced(show_servers_state: &str) -> BTreeSet<String> {
    show_servers_state
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(|l| {
            let cols: Vec<&str> = l.split_whitespace().collect();
            let admin: u32 = cols.get(6)?.parse().ok()?;
            (cols[1] == BACKEND && admin & (FORCED_MAINT | FORCED_DRAIN) != 0)
                .then(|| cols[3].to_string())
        })
        .collect()
}

/// Puts back to ready every server of `servers` that HAProxy holds in a forced drain or
/// maintenance (an interrupted delete leaves one so) unless it is in `keep` (a delete in
/// progress). Returns the servers it set ready; nothing without a stats socket.
pub(super) async fn ready_forced(
    values: &TemplateValues,
    servers: &[Server],
    keep: &[u64],
) -> Result<Vec<String>> {
    let Some(sock) = stats_socket(values) else {
        return Ok(Vec::new());
    };
    let forced = parse_forced(&command(sock, &format!("show servers state {BACKEND}")).await?);
    let mut readied = Vec::new();
    for s in servers {
        let name = s.server_name();
        if forced.contains(&name) && !keep.contains(&s.id) {
            command(sock, &format!("set server {BACKEND}/{name} state ready")).await?;
            readied.push(name);
        }
    }
    Ok(readied)
}

fn parse_server_names(show_servers_state: &str) -> BTreeSet<String> {
    show_servers_state
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(|l| {
            let cols: Vec<&str> = l.split_whitespace().collect();
            (cols.len() > 3 && cols[1] == BACKEND).then(|| cols[3].to_string())
        })
        .collect()
}

/// Puts server `id` in drain state and waits (up to `timeout`) until it has no connection
/// left. Returns `Ok(false)` when there is no stats socket or HAProxy does not know the
/// server, so the caller can go on: the reload still finishes in-flight requests.
pub(super) async fn drain(values: &TemplateValues, id: u64, timeout: Duration) -> Result<bool> {
    let Some(sock) = stats_socket(values) else {
        return Ok(false);
    };
    let server = super::server_name(id);
    let answer = command(sock, &format!("set server {BACKEND}/{server} state drain")).await?;
    if !answer.trim().is_empty() {
        // e.g. "No such server." — nothing to drain.
        return Ok(false);
    }
    let deadline = Instant::now() + timeout;
    loop {
        let stat = command(sock, "show stat").await?;
        match current_sessions(&stat, &server) {
            None | Some(0) => return Ok(true),
            Some(_) if Instant::now() >= deadline => return Ok(true),
            Some(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}

/// Server `server`'s current sessions (`scur`, the fifth field) in a `show stat` answer;
/// `None` when no line of the backend names it. A field that is not a number reads 0.
fn current_sessions(show_stat: &str, server: &str) -> Option<u64> {
    show_stat.lines().find_map(|l| {
        let cols: Vec<&str> = l.split(',').collect();
        (cols.len() > 4 && cols[0] == BACKEND && cols[1] == server)
            .then(|| cols[4].parse::<u64>().unwrap_or(0))
    })
}

/// Puts server `id` back in ready state (after a drain whose reload failed).
pub(super) async fn undrain(values: &TemplateValues, id: u64) {
    if let Some(sock) = stats_socket(values) {
        let server = super::server_name(id);
        let _ = command(sock, &format!("set server {BACKEND}/{server} state ready")).await;
    }
}

/// One server of the backend as HAProxy's `show stat` reports it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ServerStat {
    /// The server's name (`www-<id>`).
    pub server: String,
    /// The droplet ID from the name, when it is doproxy's `www-<id>`.
    pub id: Option<u64>,
    /// HAProxy's status as shown: `UP`, `DOWN`, `DRAIN`, `MAINT`, `NOLB`, `no check`, or a
    /// transition such as `UP 1/3` (going down) or `DOWN 1/2` (coming up).
    pub status: String,
    /// Seconds since the last UP/DOWN change (`lastchg`).
    pub last_change_secs: Option<u64>,
    /// The last health check's result (`check_status`: `L7OK`, `L4CON`, `L7STS`, …; a
    /// check in progress is marked `* `).
    pub check_status: Option<String>,
    /// The last check's HTTP code (`check_code`), for layer-7 checks.
    pub check_code: Option<u16>,
    /// How long the last check took, in milliseconds (`check_duration`).
    pub check_duration_ms: Option<u64>,
    /// Current sessions (`scur`).
    pub scur: u64,
    /// Sessions per second over the last second (`rate`).
    pub rate: u64,
    /// Requests waiting in the server's queue (`qcur`).
    pub qcur: u64,
    /// The server's effective weight (`weight`): 0 for a server parked in the standby
    /// pool.
    pub weight: Option<u64>,
}

impl ServerStat {
    /// The status's first word in capitals: `UP`, `DOWN`, `DRAIN`, `MAINT`, `NOLB` or
    /// `NO` (for `no check`).
    pub fn state(&self) -> String {
        self.status
            .split_whitespace()
            .next()
            .unwrap_or("")
            .to_ascii_uppercase()
    }
}

/// The servers of `backend` in a `show stat` answer (CSV with a `# pxname,svname,…` header;
/// columns are found by name, so a newer HAProxy's extra columns do not matter). The
/// `BACKEND` and `FRONTEND` summary lines are left out.
pub fn parse_show_stat(text: &str, backend: &str) -> Vec<ServerStat> {
    let mut lines = text.lines();
    let Some(header) = lines.find(|l| l.starts_with("# ")) else {
        return Vec::new();
    };
    let names: Vec<&str> = header.trim_start_matches("# ").split(',').collect();
    let col = |name: &str| names.iter().position(|n| *n == name);
    let (Some(px), Some(sv)) = (col("pxname"), col("svname")) else {
        return Vec::new();
    };
    let at = |cols: &[&str], name: &str| -> Option<String> {
        let v = cols.get(col(name)?)?.trim();
        (!v.is_empty()).then(|| v.to_string())
    };
    let num = |cols: &[&str], name: &str| at(cols, name).and_then(|v| v.parse::<u64>().ok());
    lines
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(|l| {
            let cols: Vec<&str> = l.split(',').collect();
            let server = cols.get(sv)?.to_string();
            if cols.get(px) != Some(&backend) || server == "BACKEND" || server == "FRONTEND" {
                return None;
            }
            Some(ServerStat {
                id: server.strip_prefix("www-").and_then(|n| n.parse().ok()),
                status: at(&cols, "status").unwrap_or_default(),
                last_change_secs: num(&cols, "lastchg"),
                check_status: at(&cols, "check_status"),
                check_code: num(&cols, "check_code").and_then(|c| u16::try_from(c).ok()),
                check_duration_ms: num(&cols, "check_duration"),
                scur: num(&cols, "scur").unwrap_or(0),
                rate: num(&cols, "rate").unwrap_or(0),
                qcur: num(&cols, "qcur").unwrap_or(0),
                weight: num(&cols, "weight"),
                server,
            })
        })
        .collect()
}

/// A proxy's summary line of `show stat` (the backend's `BACKEND` row, the frontend's
/// `FRONTEND` row): the autoscaler's signals. A field is `None` when HAProxy left it empty.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct ProxyTotals {
    /// Current sessions (`scur`).
    pub scur: Option<u64>,
    /// Requests queued with no server yet (`qcur`, backend).
    pub qcur: Option<u64>,
    /// Average queue time over a sliding window of recent requests, ms (`qtime`, backend).
    pub qtime: Option<u64>,
    /// Average response time over a sliding window of recent requests, ms (`rtime`, backend).
    pub rtime: Option<u64>,
    /// 5xx answers since HAProxy started (`hrsp_5xx`, cumulative).
    pub hrsp_5xx: Option<u64>,
    /// HTTP requests since HAProxy started (`req_tot`, cumulative).
    pub req_tot: Option<u64>,
    /// HTTP requests over the last second (`req_rate`, frontend).
    pub req_rate: Option<u64>,
}

/// One `show stat` answer: the backend's servers and the two summary lines.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct StatSample {
    /// The backend's servers.
    pub servers: Vec<ServerStat>,
    /// The backend's `BACKEND` line.
    pub backend: ProxyTotals,
    /// The frontend's `FRONTEND` line.
    pub frontend: ProxyTotals,
}

/// The summary line (`svname` = `row`) of proxy `proxy` in a `show stat` answer.
pub fn parse_totals(text: &str, proxy: &str, row: &str) -> Option<ProxyTotals> {
    let mut lines = text.lines();
    let header = lines.find(|l| l.starts_with("# "))?;
    let names: Vec<&str> = header.trim_start_matches("# ").split(',').collect();
    let col = |name: &str| names.iter().position(|n| *n == name);
    let (px, sv) = (col("pxname")?, col("svname")?);
    let cols: Vec<&str> = lines
        .map(|l| l.split(',').collect::<Vec<&str>>())
        .find(|c| c.get(px) == Some(&proxy) && c.get(sv) == Some(&row))?;
    let num = |name: &str| -> Option<u64> { cols.get(col(name)?)?.trim().parse().ok() };
    Some(ProxyTotals {
        scur: num("scur"),
        qcur: num("qcur"),
        qtime: num("qtime"),
        rtime: num("rtime"),
        hrsp_5xx: num("hrsp_5xx"),
        req_tot: num("req_tot"),
        req_rate: num("req_rate"),
    })
}

/// The frontend doproxy's template defines.
pub const FRONTEND: &str = "www-http";

/// One `show stat` of the backend and the frontend, within `timeout`.
pub async fn sample(
    values: &TemplateValues,
    timeout: Duration,
) -> std::result::Result<StatSample, StatsUnavailable> {
    let Some(configured) = values.stats_socket.as_deref() else {
        return Err(StatsUnavailable::NotConfigured);
    };
    let Some(sock) = stats_socket(values) else {
        return Err(StatsUnavailable::Unreachable(format!(
            "{configured} does not exist (is HAProxy running?)"
        )));
    };
    let text = match tokio::time::timeout(timeout, command(sock, "show stat")).await {
        Ok(Ok(text)) => text,
        Ok(Err(e)) => return Err(StatsUnavailable::Unreachable(format!("{e:#}"))),
        Err(_) => {
            return Err(StatsUnavailable::Unreachable(format!(
                "{configured}: no answer within {timeout:?}"
            )))
        }
    };
    let Some(backend) = parse_totals(&text, BACKEND, "BACKEND") else {
        return Err(StatsUnavailable::Unreachable(format!(
            "{configured}: `show stat` has no {BACKEND} line"
        )));
    };
    Ok(StatSample {
        servers: parse_show_stat(&text, BACKEND),
        backend,
        frontend: parse_totals(&text, FRONTEND, "FRONTEND").unwrap_or_default(),
    })
}

/// Sets server `id`'s weight over the runtime API (no reload): 0 parks it (health checks
/// go on, no new request reaches it; the ones it has finish), 1 puts it into service.
/// Putting it into service also clears a forced drain or maintenance (`state ready`).
pub async fn set_weight(values: &TemplateValues, id: u64, weight: u32) -> Result<()> {
    let Some(sock) = stats_socket(values) else {
        bail!("no stats socket to set server weights through (haproxy.stats_socket)");
    };
    let server = super::server_name(id);
    let mut commands = vec![format!("set server {BACKEND}/{server} weight {weight}")];
    if weight > 0 {
        commands.push(format!("set server {BACKEND}/{server} state ready"));
    }
    for c in commands {
        let answer = command(sock, &c).await?;
        if !answer.trim().is_empty() {
            bail!("HAProxy refused `{c}`: {}", answer.trim());
        }
    }
    Ok(())
}

/// Why the stats socket could not be asked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StatsUnavailable {
    /// `haproxy.stats_socket` is null: there is no socket to ask.
    NotConfigured,
    /// The socket is configured but cannot be asked (HAProxy not running, not the socket
    /// path of the running HAProxy, or no answer); the text says why.
    Unreachable(String),
}

/// HAProxy's view of the backend's servers (`show stat` on the stats socket).
pub async fn server_stats(
    values: &TemplateValues,
) -> std::result::Result<Vec<ServerStat>, StatsUnavailable> {
    let Some(configured) = values.stats_socket.as_deref() else {
        return Err(StatsUnavailable::NotConfigured);
    };
    let Some(sock) = stats_socket(values) else {
        return Err(StatsUnavailable::Unreachable(format!(
            "{configured} does not exist (is HAProxy running?)"
        )));
    };
    match command(sock, "show stat").await {
        Ok(text) => Ok(parse_show_stat(&text, BACKEND)),
        Err(e) => Err(StatsUnavailable::Unreachable(format!("{e:#}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_show_stat_by_column_name() {
        let out = "# pxname,svname,qcur,qmax,scur,smax,slim,stot,bin,bout,dreq,dresp,ereq,econ,eresp,wretr,wredis,status,weight,act,bck,chkfail,chkdown,lastchg,downtime,qlimit,pid,iid,sid,throttle,lbtot,tracked,type,rate,rate_lim,rate_max,check_status,check_code,check_duration,\n\
www-http,FRONTEND,,,0,1,2048,3,,,,,,,,,,OPEN,,,,,,,,,1,2,0,,,,0,0,0,1,,,,\n\
www-backend,www-7,2,0,5,6,,9,,,,,,,,,,DRAIN,1,1,0,0,0,41,0,,1,3,1,,9,,2,3,,4,L7OK,200,1,\n\
www-backend,www-9,0,0,0,0,,0,,,,,,,,,,DOWN,1,1,0,3,1,12,12,,1,3,2,,0,,2,0,,0,L4CON,,0,\n\
www-backend,web-x,0,0,0,0,,0,,,,,,,,,,MAINT,1,1,0,0,0,7,0,,1,3,3,,0,,2,0,,0,,,,\n\
www-backend,www-11,0,0,0,0,,0,,,,,,,,,,UP 1/3,1,1,0,0,0,7,0,,1,3,4,,0,,2,0,,0,* L7STS,503,2,\n\
www-backend,BACKEND,2,0,5,6,205,9,,,,,,,,,,UP,1,1,0,,0,41,0,,1,3,0,,9,,1,3,,4,,,,\n\
other,www-1,0,0,0,0,,0,,,,,,,,,,UP,1,1,0,0,0,7,0,,1,3,4,,0,,2,0,,0,L7OK,200,1,\n";
        let stats = parse_show_stat(out, "www-backend");
        assert_eq!(stats.len(), 4, "{stats:?}");
        let s = &stats[0];
        assert_eq!(
            (
                s.server.as_str(),
                s.id,
                s.status.as_str(),
                s.state().as_str()
            ),
            ("www-7", Some(7), "DRAIN", "DRAIN")
        );
        assert_eq!((s.qcur, s.scur, s.rate), (2, 5, 3));
        assert_eq!(s.last_change_secs, Some(41));
        assert_eq!(
            (s.check_status.as_deref(), s.check_code, s.check_duration_ms),
            (Some("L7OK"), Some(200), Some(1))
        );
        assert_eq!(stats[1].check_status.as_deref(), Some("L4CON"));
        assert_eq!(stats[1].check_code, None);
        assert_eq!((stats[2].id, stats[2].check_status.clone()), (None, None));
        assert_eq!(stats[3].state(), "UP");
        assert_eq!(stats[3].status, "UP 1/3");
        assert!(parse_show_stat("garbage\n", "www-backend").is_empty());
    }

    #[test]
    fn finds_servers_forced_to_drain_or_maint() {
        let out = "1\n# be_id be_name srv_id srv_name srv_addr srv_op_state srv_admin_state\n3 www-backend 1 www-7 127.0.0.2 2 8 1 1\n3 www-backend 2 www-9 127.0.0.3 2 0 1 1\n3 www-backend 3 www-11 127.0.0.4 0 1 1 1\n3 www-backend 4 www-12 127.0.0.5 2 32 1 1\n";
        let forced = parse_forced(out);
        assert_eq!(
            forced.into_iter().collect::<Vec<_>>(),
            vec!["www-11", "www-7"]
        );
    }

    #[test]
    fn reads_a_servers_current_sessions_and_survives_short_lines() {
        let stat = "# pxname,svname,qcur,qmax,scur,smax\nwww-backend,www-7,0,0,3,5\nwww-backend,www-9,0,0,x,1\nwww-backend,BACKEND,0,0,3,9\nwww-backend,www-11,0,0\n";
        assert_eq!(current_sessions(stat, "www-7"), Some(3));
        assert_eq!(current_sessions(stat, "www-9"), Some(0));
        assert_eq!(current_sessions(stat, "www-8"), None);
        // A line cut short (a hostile or truncated answer) names no count and panics nothing.
        assert_eq!(current_sessions(stat, "www-11"), None);
        assert_eq!(current_sessions("www-backend,www-7\n", "www-7"), None);
    }

    #[test]
    fn short_server_state_lines_name_no_server() {
        // Fewer than four fields: no name to read, and no panic.
        let out = "1\n3 www-backend 1\n3 www-backend\n\n3 www-backend 2 www-9 127.0.0.3 2 0\n";
        let names = parse_server_names(out);
        assert_eq!(names.into_iter().collect::<Vec<_>>(), vec!["www-9"]);
        assert!(parse_forced(out).is_empty());
    }

    #[test]
    fn reads_the_backend_and_frontend_summary_lines_by_column_name() {
        let stat = "# pxname,svname,qcur,scur,rtime,qtime,req_tot,hrsp_5xx,req_rate\n\
www-http,FRONTEND,,7,,,120,2,9\n\
www-backend,www-7,0,3,40,0,60,1,\n\
www-backend,BACKEND,4,6,52,11,118,2,\n\
other,BACKEND,9,9,9,9,9,9,\n";
        let b = parse_totals(stat, "www-backend", "BACKEND").unwrap();
        assert_eq!(
            (b.qcur, b.scur, b.rtime, b.qtime, b.req_tot, b.hrsp_5xx, b.req_rate),
            (
                Some(4),
                Some(6),
                Some(52),
                Some(11),
                Some(118),
                Some(2),
                None
            )
        );
        let f = parse_totals(stat, "www-http", "FRONTEND").unwrap();
        assert_eq!(
            (f.scur, f.req_tot, f.req_rate, f.qcur),
            (Some(7), Some(120), Some(9), None)
        );
        // The proxy and the row must both match.
        assert_eq!(parse_totals(stat, "www-http", "BACKEND"), None);
        assert_eq!(parse_totals(stat, "nope", "FRONTEND"), None);
        assert_eq!(parse_totals("garbage\n", "www-backend", "BACKEND"), None);
    }

    #[test]
    fn parses_show_servers_state() {
        let out = "1\n# be_id be_name srv_id srv_name srv_addr\n3 www-backend 1 www-7 127.0.0.2 2 0\n3 www-backend 2 www-9 127.0.0.3 2 0\n";
        let names = parse_server_names(out);
        assert_eq!(
            names.into_iter().collect::<Vec<_>>(),
            vec!["www-7", "www-9"]
        );
    }
}
