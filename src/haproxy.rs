//! HAProxy: render the config from the Tera template, validate it with the check command,
//! install it atomically keeping the last known good one, run the reload command, verify the
//! reload took effect, and drain a server through the runtime API before it is removed.

use crate::config::{Config, HaproxySettings};
use crate::digitalocean::Droplet;
use crate::fsutil;
use anyhow::{anyhow, bail, Context, Result};
use serde::Serialize;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The built-in template, used when `haproxy_template_file` is not set.
pub const DEFAULT_TEMPLATE: &str = include_str!("../templates/haproxy.cfg.tera");
/// The backend every server line goes into (the runtime API names servers through it).
pub const BACKEND: &str = "www-backend";

/// One backend server as the template sees it.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Server {
    /// Droplet ID (the server is named `www-<id>`).
    pub id: u64,
    /// Droplet name, for the comment.
    pub name: String,
    /// Private IPv4 address.
    pub private_ip: String,
    /// Public IPv4 address, if any.
    pub public_ip: Option<String>,
}

impl Server {
    /// A server for a ready droplet; `None` when it has no usable private address.
    pub fn from_droplet(d: &Droplet) -> Option<Server> {
        let private_ip = d.private_ipv4()?.to_string();
        Some(Server {
            id: d.id,
            // The name only goes into a comment, but a name from the API must not be able to
            // break the line it sits on.
            name: if d.has_safe_name() {
                d.name.clone()
            } else {
                "(invalid-name)".into()
            },
            private_ip,
            public_ip: d.public_ipv4().map(|ip| ip.to_string()),
        })
    }

    /// The HAProxy server name.
    pub fn server_name(&self) -> String {
        format!("www-{}", self.id)
    }
}

/// Everything the template can use.
#[derive(Debug, Serialize)]
pub struct RenderContext<'a> {
    /// Ready backends, in inventory order.
    pub droplets: &'a [Server],
    /// Port the app listens on.
    pub backend_port: u16,
    /// `ip:port` the frontend binds.
    pub frontend_bind: &'a str,
    /// Global/stats settings.
    pub haproxy: &'a HaproxySettings,
}

/// The template source and a name for errors.
pub fn load_template(cfg: &Config) -> Result<(String, String)> {
    match &cfg.template_file {
        None => Ok((
            DEFAULT_TEMPLATE.to_string(),
            "built-in haproxy.cfg.tera".to_string(),
        )),
        Some(p) => {
            let src = std::fs::read_to_string(p).map_err(|e| {
                crate::usage_error(format!("haproxy_template_file {}: {e}", p.display()))
            })?;
            if p.extension().is_some_and(|e| e == "erb") || src.contains("<%") {
                return Err(crate::usage_error(format!(
                    "haproxy_template_file {}: this is an ERB template from the Ruby DOProxy; doproxy uses Tera templates — remove the key to use the built-in template, or port it (see README, \"Migrating\")",
                    p.display()
                )));
            }
            Ok((src, p.display().to_string()))
        }
    }
}

/// Renders the template. Tera's top-level error hides the cause, so the whole chain is
/// joined into the one line.
pub fn render(template: &str, name: &str, ctx: &RenderContext<'_>) -> Result<String> {
    let mut tera = tera::Tera::default();
    // No autoescaping: this is not HTML (the name does not end in .html).
    tera.add_raw_template("haproxy.cfg", template)
        .map_err(|e| anyhow!("template {name}: {}", chain(&e)))?;
    let context = tera::Context::from_serialize(ctx)
        .map_err(|e| anyhow!("template {name}: {}", chain(&e)))?;
    tera.render("haproxy.cfg", &context)
        .map_err(|e| anyhow!("template {name}: {}", chain(&e)))
}

fn chain(e: &dyn std::error::Error) -> String {
    let mut parts = vec![e.to_string()];
    let mut src = e.source();
    while let Some(s) = src {
        parts.push(s.to_string());
        src = s.source();
    }
    parts.join(": ").replace('\n', " ")
}

/// Quotes a path for `sh -c`.
fn shell_quote(p: &Path) -> String {
    format!("'{}'", p.display().to_string().replace('\'', r"'\''"))
}

/// The outcome of running a shell command.
struct CommandOutput {
    ok: bool,
    status: String,
    output: String,
}

async fn run_shell(command: &str, dir: &Path) -> Result<CommandOutput> {
    let out = tokio::process::Command::new("sh")
        .arg("-c")
        .arg(command)
        .current_dir(dir)
        .stdin(Stdio::null())
        .output()
        .await
        .with_context(|| format!("cannot run `{command}`"))?;
    let status = match (
        out.status.code(),
        std::os::unix::process::ExitStatusExt::signal(&out.status),
    ) {
        (Some(c), _) => format!("exit code {c}"),
        (None, Some(s)) => format!("signal {s}"),
        _ => "unknown status".into(),
    };
    let mut output = String::from_utf8_lossy(&out.stderr).into_owned();
    output.push_str(&String::from_utf8_lossy(&out.stdout));
    Ok(CommandOutput {
        ok: out.status.success(),
        status,
        output,
    })
}

/// The lines of a command's output worth showing in a one-line error.
fn summarize(output: &str) -> String {
    let lines: Vec<&str> = output
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    let alerts: Vec<&str> = lines
        .iter()
        .copied()
        .filter(|l| l.contains("ALERT"))
        .collect();
    let chosen = if alerts.is_empty() { lines } else { alerts };
    let text = chosen
        .iter()
        .take(5)
        .copied()
        .collect::<Vec<_>>()
        .join(" | ");
    if text.is_empty() {
        "(no output)".into()
    } else {
        text
    }
}

/// Runs the check command on `candidate`; its output is captured and reported on failure.
pub async fn check(cfg: &Config, candidate: &Path) -> Result<()> {
    let cmd = cfg
        .check_command
        .replace("{config}", &shell_quote(candidate));
    let out = run_shell(&cmd, &fsutil::parent_dir(&cfg.path)).await?;
    if !out.ok {
        bail!(
            "config check `{}` failed ({}): {}",
            cfg.check_command,
            out.status,
            summarize(&out.output)
        );
    }
    Ok(())
}

/// Runs the check command on `rendered`, written to a temp file beside the installed
/// config (so relative paths in it resolve the same way) and removed afterwards.
pub async fn validate(cfg: &Config, rendered: &str) -> Result<()> {
    let candidate = fsutil::temp_path(&cfg.installed_cfg);
    std::fs::write(&candidate, rendered)
        .with_context(|| format!("cannot write candidate config {}", candidate.display()))?;
    let checked = check(cfg, &candidate).await;
    let _ = std::fs::remove_file(&candidate);
    checked
}

/// The installed config's text, `None` when there is none yet.
pub fn installed_text(cfg: &Config) -> Result<Option<String>> {
    match std::fs::read_to_string(&cfg.installed_cfg) {
        Ok(s) => Ok(Some(s)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("cannot read {}", cfg.installed_cfg.display())),
    }
}

/// What [`apply`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    /// The installed config already equals the rendered one; nothing was reloaded.
    Unchanged,
    /// Installed and reloaded.
    Reloaded,
}

/// The last-known-good copy kept beside the installed config.
pub fn last_good_path(installed: &Path) -> PathBuf {
    let mut name = installed.file_name().unwrap_or_default().to_os_string();
    name.push(".last-good");
    fsutil::parent_dir(installed).join(name)
}

/// Writes the rendered copy (`haproxy_cfg_file`), and unless the installed config already
/// says the same (or `force`), validates, installs and reloads — putting the previous
/// config back if the reload fails or does not take effect.
pub async fn apply(
    cfg: &Config,
    rendered: &str,
    servers: &[Server],
    force: bool,
) -> Result<Applied> {
    if cfg.rendered_cfg != cfg.installed_cfg {
        fsutil::write_atomic(&cfg.rendered_cfg, rendered.as_bytes())
            .with_context(|| format!("cannot write {}", cfg.rendered_cfg.display()))?;
    }
    let installed = &cfg.installed_cfg;
    // Several doproxy processes on one node (a command and a `reload --watch`) may install
    // at once even when the inventory lock is cluster-wide: this lock is the node's own.
    let _install_lock = crate::inventory::Lock::acquire(installed, cfg.lock_timeout)?;
    let current = installed_text(cfg)?;
    if !force && current.as_deref() == Some(rendered) && serves(cfg, servers).await {
        return Ok(Applied::Unchanged);
    }
    // Otherwise reload even if the file is already right: a run killed between its install
    // and its reload leaves HAProxy on the old config, and re-running must converge.
    validate(cfg, rendered)
        .await
        .map_err(|e| e.context(format!("{} left unchanged", installed.display())))?;
    let last_good = last_good_path(installed);
    if let Some(cur) = &current {
        fsutil::write_atomic(&last_good, cur.as_bytes())
            .with_context(|| format!("cannot keep last good config {}", last_good.display()))?;
    }
    fsutil::write_atomic(installed, rendered.as_bytes())
        .with_context(|| format!("cannot install {}", installed.display()))?;

    let failure = match reload(cfg).await {
        Err(e) => Some(e),
        Ok(()) => verify(cfg, servers).await.err(),
    };
    if let Some(e) = failure {
        let restored = match &current {
            Some(cur) => match fsutil::write_atomic(installed, cur.as_bytes()) {
                Ok(()) => format!("put the previous config back in {}", installed.display()),
                Err(re) => format!(
                    "could NOT put the previous config back ({re:#}); it is in {}",
                    last_good.display()
                ),
            },
            None => {
                let _ = std::fs::remove_file(installed);
                format!("removed the new {}", installed.display())
            }
        };
        return Err(e.context(restored));
    }
    Ok(Applied::Reloaded)
}

async fn reload(cfg: &Config) -> Result<()> {
    let cmd = cfg
        .reload_command
        .replace("{config}", &shell_quote(&cfg.installed_cfg));
    let out = run_shell(&cmd, &fsutil::parent_dir(&cfg.path)).await?;
    if !out.ok {
        bail!(
            "reload command `{}` failed ({}): {}",
            cfg.reload_command,
            out.status,
            summarize(&out.output)
        );
    }
    Ok(())
}

/// The stats socket to ask HAProxy through, when one is configured and exists.
fn stats_socket(cfg: &Config) -> Option<&Path> {
    cfg.haproxy
        .stats_socket
        .as_deref()
        .map(Path::new)
        .filter(|p| p.exists())
}

/// The names of the servers HAProxy serves in the backend, from its runtime API.
async fn served(sock: &Path) -> Result<BTreeSet<String>> {
    let out = runtime_command(sock, &format!("show servers state {BACKEND}")).await?;
    Ok(parse_server_names(&out))
}

fn server_names(servers: &[Server]) -> BTreeSet<String> {
    servers.iter().map(Server::server_name).collect()
}

/// After a reload, waits until HAProxy's runtime API lists exactly the rendered servers: a
/// reload signal can "succeed" while HAProxy keeps the old config. Skipped (with no error)
/// when there is no stats socket to ask.
async fn verify(cfg: &Config, servers: &[Server]) -> Result<()> {
    let Some(sock) = stats_socket(cfg) else {
        return Ok(());
    };
    let want = server_names(servers);
    let deadline = Instant::now() + cfg.reload_verify_timeout;
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
            bail!(
                "the reload did not take effect within {:.1?} ({last})",
                cfg.reload_verify_timeout
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// True when HAProxy's runtime API lists exactly `servers`, or when there is no stats
/// socket to ask (nothing better to go on than the installed file).
async fn serves(cfg: &Config, servers: &[Server]) -> bool {
    match stats_socket(cfg) {
        None => true,
        Some(sock) => served(sock)
            .await
            .is_ok_and(|have| have == server_names(servers)),
    }
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

/// Sends one command to the HAProxy runtime API on a UNIX socket and returns the answer.
pub async fn runtime_command(socket: &Path, command: &str) -> Result<String> {
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

/// Puts server `www-<id>` in drain state and waits (up to `timeout`) until it has no
/// connection left. Returns `Ok(false)` when there is no stats socket or HAProxy does not
/// know the server, so the caller can go on: the reload still finishes in-flight requests.
pub async fn drain(cfg: &Config, id: u64, timeout: Duration) -> Result<bool> {
    let Some(sock) = stats_socket(cfg) else {
        return Ok(false);
    };
    let server = format!("www-{id}");
    let answer =
        runtime_command(sock, &format!("set server {BACKEND}/{server} state drain")).await?;
    if !answer.trim().is_empty() {
        // e.g. "No such server." — nothing to drain.
        return Ok(false);
    }
    let deadline = Instant::now() + timeout;
    loop {
        let stat = runtime_command(sock, "show stat").await?;
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

/// Puts server `www-<id>` back in ready state (after a drain whose reload failed).
pub async fn undrain(cfg: &Config, id: u64) {
    if let Some(sock) = stats_socket(cfg) {
        let _ = runtime_command(sock, &format!("set server {BACKEND}/www-{id} state ready")).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> HaproxySettings {
        HaproxySettings {
            chroot: None,
            user: None,
            group: None,
            log: None,
            stats_socket: None,
            stats_user: None,
            stats_password: None,
            errorfiles_dir: None,
            maxconn: 2048,
            noreuseport: false,
            check_inter: "2s".into(),
        }
    }

    #[test]
    fn renders_server_lines_with_original_comment() {
        let servers = vec![Server {
            id: 42,
            name: "web-a".into(),
            private_ip: "10.0.0.5".into(),
            public_ip: None,
        }];
        let h = settings();
        let ctx = RenderContext {
            droplets: &servers,
            backend_port: 80,
            frontend_bind: "1.2.3.4:80",
            haproxy: &h,
        };
        let out = render(DEFAULT_TEMPLATE, "t", &ctx).unwrap();
        assert!(
            out.contains("\n    server www-42 10.0.0.5:80 check # id:42, hostname:web-a\n"),
            "{out}"
        );
        assert!(out.contains("bind 1.2.3.4:80"));
        assert!(!out.contains("stats auth"));
        assert!(!out.contains("chroot"));
    }

    #[test]
    fn template_errors_show_the_cause() {
        let h = settings();
        let ctx = RenderContext {
            droplets: &[],
            backend_port: 80,
            frontend_bind: "x:1",
            haproxy: &h,
        };
        let e = render("{{ nope }}", "my.tera", &ctx)
            .unwrap_err()
            .to_string();
        assert!(e.contains("my.tera") && e.contains("nope"), "{e}");
        let e = render("{% for %}", "my.tera", &ctx)
            .unwrap_err()
            .to_string();
        assert!(e.contains("my.tera"), "{e}");
        assert!(!e.contains('\n'));
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
