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
        let scur = stat.lines().find_map(|l| {
            let cols: Vec<&str> = l.split(',').collect();
            (cols.len() > 4 && cols[0] == BACKEND && cols[1] == server)
                .then(|| cols[4].parse::<u64>().unwrap_or(0))
        });
        match scur {
            None | Some(0) => return Ok(true),
            Some(_) if Instant::now() >= deadline => return Ok(true),
            Some(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}

/// Puts server `id` back in ready state (after a drain whose reload failed).
pub(super) async fn undrain(values: &TemplateValues, id: u64) {
    if let Some(sock) = stats_socket(values) {
        let server = super::server_name(id);
        let _ = command(sock, &format!("set server {BACKEND}/{server} state ready")).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn parses_show_servers_state() {
        let out = "1\n# be_id be_name srv_id srv_name srv_addr\n3 www-backend 1 www-7 127.0.0.2 2 0\n3 www-backend 2 www-9 127.0.0.3 2 0\n";
        let names = parse_server_names(out);
        assert_eq!(
            names.into_iter().collect::<Vec<_>>(),
            vec!["www-7", "www-9"]
        );
    }
}
