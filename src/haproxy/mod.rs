//! HAProxy: render the config from the Tera template, validate it with the check command,
//! install it atomically keeping the last known good one, run the reload command, verify the
//! reload took effect, and drain a server through the runtime API before it is removed.
//!
//! This module knows neither the config file nor the API's types: it takes [`Settings`] and
//! the [`Server`]s to route to.

pub mod exec;
pub mod guard;
pub mod runtime;

use crate::fsutil;
use crate::lock::{self, FileLock};
use anyhow::{anyhow, Context, Result};
use serde::Serialize;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The built-in template, used when `haproxy_template_file` is not set.
pub const DEFAULT_TEMPLATE: &str = include_str!("../../templates/haproxy.cfg.tera");
/// The backend every server line goes into (the runtime API names servers through it).
pub const BACKEND: &str = "www-backend";

/// The HAProxy server name of droplet `id` (the one place that spells it).
pub fn server_name(id: u64) -> String {
    format!("www-{id}")
}

/// Everything the HAProxy side needs (the `haproxy_*`, `check_command`, `reload_command`,
/// `backend_port`, `frontend_bind` keys and the `haproxy:` section).
#[derive(Debug, Clone)]
pub struct Settings {
    /// A Tera template overriding the built-in one.
    pub template_file: Option<PathBuf>,
    /// Where `generate` writes the rendered config (`haproxy_cfg_file`).
    pub rendered_cfg: PathBuf,
    /// Where `reload` installs it (`haproxy_cfg_path` / file name of `haproxy_cfg_file`).
    pub installed_cfg: PathBuf,
    /// Shell command that validates a config (`{config}` is replaced by the candidate path).
    pub check_command: String,
    /// Shell command that reloads HAProxy (`{config}` is replaced by the installed path).
    pub reload_command: String,
    /// The folder the commands run in (the config file's).
    pub workdir: PathBuf,
    /// The whole environment of the commands (see [`exec::child_env`]).
    pub command_env: Vec<(String, String)>,
    /// How long a check or reload command may run before its process group is killed.
    pub command_timeout: Duration,
    /// The largest fraction (0–1) of the served servers a config may drop that the running
    /// command did not decide to remove (the shrink guard); an empty result is refused
    /// whatever this says.
    pub max_unplanned_shrink: f64,
    /// Port the application listens on, on each backend's private address.
    pub backend_port: u16,
    /// `ip:port` for the frontend; `None` means "public IPv4 from the metadata service, :80".
    pub frontend_bind: Option<String>,
    /// How long to wait for another process installing a config on this node.
    pub lock_timeout: Duration,
    /// How long a drained backend may keep its connections.
    pub drain_timeout: Duration,
    /// How long to wait for HAProxy's runtime API to show the reloaded server list.
    pub reload_verify_timeout: Duration,
    /// Values for the template's global section and stats.
    pub values: TemplateValues,
}

/// Values for the HAProxy template's global section and stats (`haproxy.*` in templates).
#[derive(Debug, Clone, Serialize)]
pub struct TemplateValues {
    /// `chroot` directive (none to leave it out).
    pub chroot: Option<String>,
    /// `user` directive.
    pub user: Option<String>,
    /// `group` directive.
    pub group: Option<String>,
    /// `log` target, e.g. `/dev/log local0` (none: no logging).
    pub log: Option<String>,
    /// Absolute path of the admin stats socket (none: no socket, no drain).
    pub stats_socket: Option<String>,
    /// Stats page user; the stats page is rendered only with both user and password.
    pub stats_user: Option<String>,
    /// Stats page password.
    pub stats_password: Option<String>,
    /// Folder with `400.http` … `504.http` error pages.
    pub errorfiles_dir: Option<String>,
    /// Global `maxconn`.
    pub maxconn: u32,
    /// Render `noreuseport` in global (a second HAProxy on the same port then fails loudly).
    pub noreuseport: bool,
    /// Health-check interval.
    pub check_inter: String,
}

/// One backend server as the template sees it.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Server {
    /// Droplet ID (the server is named `www-<id>`).
    pub id: u64,
    /// Droplet name, for the comment (hostname characters only).
    pub name: String,
    /// Private IPv4 address.
    pub private_ip: String,
    /// Public IPv4 address, if any.
    pub public_ip: Option<String>,
    /// Parked in the standby pool: rendered with `weight 0` (health-checked, no new
    /// requests) until the autoscaler admits it.
    pub standby: bool,
}

impl Server {
    /// The HAProxy server name.
    pub fn server_name(&self) -> String {
        server_name(self.id)
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
    pub haproxy: &'a TemplateValues,
}

/// A template's source and a name for errors.
#[derive(Debug, Clone)]
pub struct Template {
    /// The Tera source.
    pub source: String,
    /// The file it came from, or "built-in haproxy.cfg.tera".
    pub name: String,
}

/// Loads the template `settings` names (the built-in one by default).
pub fn load_template(settings: &Settings) -> Result<Template> {
    match &settings.template_file {
        None => Ok(Template {
            source: DEFAULT_TEMPLATE.to_string(),
            name: "built-in haproxy.cfg.tera".to_string(),
        }),
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
            Ok(Template {
                source: src,
                name: p.display().to_string(),
            })
        }
    }
}

/// Renders the template. Tera's top-level error hides the cause, so the whole chain goes
/// into the message, its drawing of the place kept on indented lines. A template that
/// does not parse or render is a configuration error (exit 2).
pub fn render(template: &str, name: &str, ctx: &RenderContext<'_>) -> Result<String> {
    let mut tera = tera::Tera::default();
    let bad = |e: tera::Error| {
        crate::usage_error(format!(
            "template {name}: {}",
            crate::error::chain_lines(&e)
        ))
    };
    // No autoescaping: this is not HTML (the name does not end in .html).
    tera.add_raw_template("haproxy.cfg", template)
        .map_err(bad)?;
    let context = tera::Context::from_serialize(ctx)
        .map_err(|e| anyhow!("template {name}: {}", crate::error::chain(&e)))?;
    tera.render("haproxy.cfg", &context).map_err(bad)
}

/// The installed config's text, `None` when there is none yet.
pub fn installed_text(settings: &Settings) -> Result<Option<String>> {
    let path = &settings.installed_cfg;
    match std::fs::read_to_string(path) {
        Ok(s) => Ok(Some(s)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
}

/// What [`Haproxy::apply`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    /// The installed config already equals the rendered one; nothing was reloaded.
    Unchanged,
    /// Installed and reloaded.
    Reloaded,
}

/// A config change: the servers to route to, and why some go.
#[derive(Debug, Clone, Copy)]
pub struct Change<'a> {
    /// The servers of the new config.
    pub servers: &'a [Server],
    /// Droplets the running command removes on purpose (a delete); the shrink guard lets
    /// them go.
    pub removing: &'a [u64],
    /// Reload even when the installed config is up to date, and install even when the
    /// shrink guard would refuse (`--force`).
    pub force: bool,
}

impl<'a> Change<'a> {
    /// A plain re-render for `servers`: nothing removed on purpose, not forced.
    pub fn to(servers: &'a [Server]) -> Change<'a> {
        Change {
            servers,
            removing: &[],
            force: false,
        }
    }
}

/// The servers a config file routes to, read back from its `server www-<id> <ip>:<port>`
/// lines (the `# id:…, hostname:…` comment gives the name when present).
pub fn parse_servers(config: &str) -> Vec<Server> {
    config
        .lines()
        .filter_map(|line| {
            let mut words = line.split_whitespace();
            if words.next() != Some("server") {
                return None;
            }
            let id: u64 = words.next()?.strip_prefix("www-")?.parse().ok()?;
            let (ip, _port) = words.next()?.rsplit_once(':')?;
            let private_ip = ip.parse::<std::net::Ipv4Addr>().ok()?.to_string();
            let name = line
                .split_once("hostname:")
                .map(|(_, n)| n.trim().to_string())
                .unwrap_or_default();
            // `weight 0` parks a server (the standby pool's mark in the rendered config).
            let standby = line
                .split('#')
                .next()
                .unwrap_or("")
                .split_whitespace()
                .collect::<Vec<_>>()
                .windows(2)
                .any(|w| w == ["weight", "0"]);
            Some(Server {
                id,
                name,
                private_ip,
                public_ip: None,
                standby,
            })
        })
        .collect()
}

/// The node's install lock (`<installed config>.lock`), held while a config is rendered
/// from a fresh read, checked, installed and reloaded.
#[derive(Debug)]
pub struct InstallLock(#[allow(dead_code)] FileLock);

/// What [`Haproxy::preview`] found: the change a dry run would make.
#[derive(Debug, Clone)]
pub struct Preview {
    /// A unified diff from the installed config to the rendered one; empty when equal.
    pub diff: String,
}

/// The last-known-good copy kept beside the installed config.
pub fn last_good_path(installed: &Path) -> PathBuf {
    let mut name = installed.file_name().unwrap_or_default().to_os_string();
    name.push(".last-good");
    fsutil::parent_dir(installed).join(name)
}

/// A loaded template with the frontend's bind address: what renders, previews and applies
/// configs for a list of servers.
#[derive(Debug)]
pub struct Haproxy<'a> {
    settings: &'a Settings,
    template: Template,
    bind: String,
}

impl<'a> Haproxy<'a> {
    /// Ties `settings` to a loaded `template` and the frontend's `bind` address.
    pub fn new(settings: &'a Settings, template: Template, bind: String) -> Haproxy<'a> {
        Haproxy {
            settings,
            template,
            bind,
        }
    }

    /// The settings.
    pub fn settings(&self) -> &Settings {
        self.settings
    }

    /// Renders the config for `servers`.
    pub fn render(&self, servers: &[Server]) -> Result<String> {
        render(
            &self.template.source,
            &self.template.name,
            &RenderContext {
                droplets: servers,
                backend_port: self.settings.backend_port,
                frontend_bind: &self.bind,
                haproxy: &self.settings.values,
            },
        )
    }

    /// Runs the check command on `rendered`, written to a temp file beside the installed
    /// config (so relative paths in it resolve the same way) and removed afterwards.
    pub async fn validate(&self, rendered: &str) -> Result<()> {
        let candidate =
            fsutil::TempFile::with_contents(&self.settings.installed_cfg, rendered.as_bytes())
                .context("cannot write the candidate config")?;
        // Dropping `candidate` removes it, whatever the check says.
        exec::check(self.settings, candidate.path()).await
    }

    /// `--dry-run`: renders for `servers`, diffs against the installed config, runs the
    /// check command on it, and changes nothing.
    pub async fn preview(&self, servers: &[Server]) -> Result<Preview> {
        let rendered = self.render(servers)?;
        let installed = installed_text(self.settings)?.unwrap_or_default();
        let path = self.settings.installed_cfg.display().to_string();
        let diff = if installed == rendered {
            String::new()
        } else {
            similar::TextDiff::from_lines(&installed, &rendered)
                .unified_diff()
                .context_radius(3)
                .header(&path, &format!("{path} (new)"))
                .to_string()
        };
        self.validate(&rendered).await?;
        Ok(Preview { diff })
    }

    /// Takes the node's install lock. Several doproxy processes on one node (a command and
    /// a `reload --watch`) may install at once even when the inventory lock is cluster-wide:
    /// this lock is the node's own. Read what to render after taking it.
    pub async fn lock(&self) -> Result<InstallLock> {
        let path = lock::beside(&self.settings.installed_cfg);
        Ok(InstallLock(
            FileLock::acquire(&path, self.settings.lock_timeout).await?,
        ))
    }

    /// The servers HAProxy routes to now: from its stats socket, or when that cannot be
    /// asked, from the installed config.
    pub async fn current_servers(&self) -> Result<BTreeSet<String>> {
        if let Some(names) = runtime::served_names(&self.settings.values).await {
            return Ok(names);
        }
        Ok(installed_text(self.settings)?
            .map(|t| parse_servers(&t).iter().map(Server::server_name).collect())
            .unwrap_or_default())
    }

    /// [`Haproxy::apply_locked`] under the node's install lock.
    pub async fn apply(&self, change: Change<'_>) -> Result<Applied> {
        let lock = self.lock().await?;
        self.apply_locked(&lock, change).await
    }

    /// Renders for `change.servers`, writes the rendered copy (`haproxy_cfg_file`), and
    /// unless the installed config already says the same and HAProxy serves it (or
    /// `force`), checks the shrink guard, validates, installs and reloads — putting the
    /// previous config back if the reload fails or does not take effect. The caller holds
    /// the inventory lock and the install lock.
    pub async fn apply_locked(&self, _lock: &InstallLock, change: Change<'_>) -> Result<Applied> {
        let servers = change.servers;
        let force = change.force;
        let rendered = self.render(servers)?;
        let s = self.settings;
        let installed = &s.installed_cfg;
        let current = installed_text(s)?;
        if !force
            && current.as_deref() == Some(rendered.as_str())
            && runtime::serves(&s.values, servers).await
        {
            return Ok(Applied::Unchanged);
        }
        if !force {
            let planned: BTreeSet<String> =
                change.removing.iter().map(|id| server_name(*id)).collect();
            let new: BTreeSet<String> = servers.iter().map(Server::server_name).collect();
            guard::check(
                &self.current_servers().await?,
                &new,
                &planned,
                s.max_unplanned_shrink,
            )?;
        }
        if s.rendered_cfg != s.installed_cfg {
            self.write(&s.rendered_cfg, rendered.as_bytes())
                .with_context(|| format!("cannot write {}", s.rendered_cfg.display()))?;
        }
        // Otherwise reload even if the file is already right: a run killed between its
        // install and its reload leaves HAProxy on the old config, and re-running must
        // converge.
        self.validate(&rendered)
            .await
            .map_err(|e| e.context(format!("{} left unchanged", installed.display())))?;
        let last_good = last_good_path(installed);
        if let Some(cur) = &current {
            self.write(&last_good, cur.as_bytes())
                .with_context(|| format!("cannot keep last good config {}", last_good.display()))?;
        }
        self.write(installed, rendered.as_bytes())
            .with_context(|| format!("cannot install {}", installed.display()))?;

        let failure = match exec::reload(s).await {
            Err(e) => Some(e),
            Ok(()) => runtime::verify(&s.values, servers, s.reload_verify_timeout)
                .await
                .err(),
        };
        if let Some(e) = failure {
            let restored = match &current {
                Some(cur) => match self.write(installed, cur.as_bytes()) {
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

    /// Writes a config file: never group- or world-readable when it holds the stats
    /// password.
    pub fn write(&self, path: &Path, contents: &[u8]) -> Result<()> {
        if self.settings.values.stats_password.is_some() {
            fsutil::write_secret(path, contents)
        } else {
            fsutil::write_atomic(path, contents)
        }
    }

    /// Drains server `id` (see [`runtime`]): `Ok(false)` when there is nothing to drain.
    pub async fn drain(&self, id: u64) -> Result<bool> {
        runtime::drain(&self.settings.values, id, self.settings.drain_timeout).await
    }

    /// Sets back to ready the `servers` left in a forced drain or maintenance, except those
    /// in `keep`; returns their names.
    pub async fn ready_forced(&self, servers: &[Server], keep: &[u64]) -> Result<Vec<String>> {
        runtime::ready_forced(&self.settings.values, servers, keep).await
    }

    /// Gives a drained server its traffic back.
    pub async fn undrain(&self, id: u64) {
        runtime::undrain(&self.settings.values, id).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values() -> TemplateValues {
        TemplateValues {
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
            standby: false,
        }];
        let h = values();
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
        let h = values();
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
        let e = render("{% for %}", "my.tera", &ctx).unwrap_err();
        assert_eq!(crate::error::exit_code(&e), crate::error::EXIT_USAGE);
        let e = e.to_string();
        assert!(e.contains("my.tera"), "{e}");
        // Tera's drawing of the place keeps its lines, indented.
        assert!(e.lines().count() > 2, "{e}");
        assert!(e.lines().skip(1).all(|l| l.starts_with("  ")), "{e}");
    }
}
