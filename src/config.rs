//! `doproxy.yml`: the schema (the Ruby DOProxy's keys plus optional new ones), environment
//! overrides, path resolution against the config file's folder, and validation into one
//! [`Config`]. Every YAML call in the crate lives here.

use crate::duration;
use crate::usage_error;
use anyhow::Result;
use serde::Deserialize;
use std::fmt;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The DigitalOcean API base URL used when neither the config nor the environment name one.
pub const DEFAULT_API_URL: &str = "https://api.digitalocean.com";
/// The droplet metadata service (link-local, reachable only on a droplet).
pub const DEFAULT_METADATA_URL: &str = "http://169.254.169.254";
/// The tag every droplet doproxy creates carries, so that orphans can be found.
pub const DEFAULT_TAG: &str = "doproxy";

/// The API token. It has no `Display`, and its `Debug` never shows the value.
#[derive(Clone)]
pub struct Token(String);

impl Token {
    /// Wraps a token value.
    pub fn new(value: String) -> Self {
        Token(value)
    }
    /// The secret value, for building the `Authorization` header only.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Token(redacted)")
    }
}

/// A number or a string in YAML (SSH key IDs/fingerprints, image slug or ID).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(untagged)]
pub enum IntOrString {
    /// A numeric ID.
    Int(u64),
    /// A slug or fingerprint.
    Str(String),
}

impl IntOrString {
    fn to_json(&self) -> serde_json::Value {
        match self {
            IntOrString::Int(n) => serde_json::Value::from(*n),
            IntOrString::Str(s) => serde_json::Value::from(s.clone()),
        }
    }
}

/// A duration in YAML: a number of seconds or a string such as `500ms`, `30s`, `10m`.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
enum RawDuration {
    Secs(f64),
    Text(String),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    token: Option<String>,
    #[serde(default)]
    ssh_key_ids: Option<Vec<IntOrString>>,
    userdata_file: Option<PathBuf>,
    haproxy_cfg_file: PathBuf,
    haproxy_cfg_path: PathBuf,
    haproxy_template_file: Option<PathBuf>,
    inventory_file: Option<PathBuf>,
    inventory: Option<RawInventory>,
    droplet_options: RawDropletOptions,
    api_url: Option<String>,
    metadata_url: Option<String>,
    reload_command: Option<String>,
    check_command: Option<String>,
    backend_port: Option<u16>,
    frontend_bind: Option<String>,
    wait_timeout: Option<RawDuration>,
    poll_interval: Option<RawDuration>,
    not_found_grace: Option<RawDuration>,
    api_timeout: Option<RawDuration>,
    lock_timeout: Option<RawDuration>,
    drain_timeout: Option<RawDuration>,
    reload_verify_timeout: Option<RawDuration>,
    readiness_check: Option<bool>,
    readiness_path: Option<String>,
    watch_debounce: Option<RawDuration>,
    retry: Option<RawRetry>,
    haproxy: Option<RawHaproxy>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawInventory {
    backend: Option<String>,
    endpoints: Option<Vec<String>>,
    prefix: Option<String>,
    username: Option<String>,
    password: Option<String>,
    lock_ttl: Option<RawDuration>,
    timeout: Option<RawDuration>,
    ca_file: Option<PathBuf>,
    cert_file: Option<PathBuf>,
    key_file: Option<PathBuf>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDropletOptions {
    hostname_prefix: String,
    region: Option<String>,
    size: String,
    image: IntOrString,
    tags: Option<Vec<String>>,
    vpc_uuid: Option<String>,
    ipv6: Option<bool>,
    monitoring: Option<bool>,
    // The original sent `private_networking: true`; the API deprecated it (every droplet now
    // gets a private address in its VPC). Accepted (type-checked) and ignored for old configs.
    #[allow(dead_code)]
    private_networking: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRetry {
    max_attempts: Option<u32>,
    min_delay: Option<RawDuration>,
    max_delay: Option<RawDuration>,
    budget: Option<RawDuration>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHaproxy {
    chroot: Option<Option<String>>,
    user: Option<Option<String>>,
    group: Option<Option<String>>,
    log: Option<Option<String>>,
    stats_socket: Option<Option<String>>,
    stats_user: Option<String>,
    stats_password: Option<String>,
    errorfiles_dir: Option<String>,
    maxconn: Option<u32>,
    noreuseport: Option<bool>,
    check_inter: Option<String>,
}

/// Where a setting came from is not kept: after `load` every field is final.
#[derive(Debug, Clone)]
pub struct Config {
    /// The config file this was loaded from.
    pub path: PathBuf,
    /// API token (config `token`, or `DIGITALOCEAN_ACCESS_TOKEN` / `DIGITALOCEAN_TOKEN`).
    pub token: Token,
    /// SSH keys (IDs or fingerprints) put on new droplets.
    pub ssh_keys: Vec<IntOrString>,
    /// cloud-init user data file, if any.
    pub userdata_file: Option<PathBuf>,
    /// Where `generate` writes the rendered config (`haproxy_cfg_file`).
    pub rendered_cfg: PathBuf,
    /// Where `reload` installs it (`haproxy_cfg_path` / file name of `haproxy_cfg_file`).
    pub installed_cfg: PathBuf,
    /// A Tera template overriding the built-in one.
    pub template_file: Option<PathBuf>,
    /// Where the inventory lives.
    pub inventory: InventoryBackend,
    /// What new droplets look like.
    pub droplet: DropletOptions,
    /// API base URL without a trailing slash.
    pub api_url: String,
    /// Metadata service base URL without a trailing slash.
    pub metadata_url: String,
    /// Shell command that reloads HAProxy (`{config}` is replaced by the installed path).
    pub reload_command: String,
    /// Shell command that validates a config (`{config}` is replaced by the candidate path).
    pub check_command: String,
    /// Port the application listens on, on each backend's private address.
    pub backend_port: u16,
    /// `ip:port` for the frontend; `None` means "public IPv4 from the metadata service, :80".
    pub frontend_bind: Option<String>,
    /// How long `create` waits for droplets to become ready.
    pub wait_timeout: Duration,
    /// The longest interval between two polls while waiting.
    pub poll_interval: Duration,
    /// How long a droplet may be missing from the API right after its create was accepted.
    pub not_found_grace: Duration,
    /// Per-request timeout for API calls.
    pub api_timeout: Duration,
    /// How long to wait for another doproxy process to release the lock.
    pub lock_timeout: Duration,
    /// How long `delete` waits for a drained backend's connections to finish.
    pub drain_timeout: Duration,
    /// How long to wait for HAProxy's runtime API to show the reloaded server list.
    pub reload_verify_timeout: Duration,
    /// `create` waits until a new backend answers HTTP on its private address.
    pub readiness_check: bool,
    /// The path the readiness check requests.
    pub readiness_path: String,
    /// `reload --watch` waits this long after a change for more changes before reloading.
    pub watch_debounce: Duration,
    /// Retry policy for idempotent API requests.
    pub retry: RetryPolicy,
    /// True when the token was read from the config file (not the environment).
    pub token_in_file: bool,
    /// Values for the HAProxy template.
    pub haproxy: HaproxySettings,
}

/// Where the inventory lives.
#[derive(Debug, Clone)]
pub enum InventoryBackend {
    /// The original's line file (`inventory_file`).
    File(PathBuf),
    /// An etcd v3 cluster shared by several load balancers.
    Etcd(EtcdSettings),
}

/// The etcd inventory backend's settings (`inventory:` section).
#[derive(Debug, Clone)]
pub struct EtcdSettings {
    /// Client URLs, e.g. `http://10.0.0.5:2379`.
    pub endpoints: Vec<String>,
    /// Key prefix; the inventory is `<prefix>inventory`, the lock `<prefix>lock/`.
    pub prefix: String,
    /// etcd user, if authentication is on.
    pub username: Option<String>,
    /// etcd password (never printed).
    pub password: Option<Token>,
    /// Lease TTL of the lock: how long a dead holder keeps others waiting.
    pub lock_ttl: Duration,
    /// Per-request timeout.
    pub timeout: Duration,
    /// A PEM CA certificate for etcd's TLS certificates (private CA).
    pub ca_file: Option<PathBuf>,
    /// A PEM client certificate for etcd's `--client-cert-auth` (with `key_file`).
    pub cert_file: Option<PathBuf>,
    /// The client certificate's PEM private key.
    pub key_file: Option<PathBuf>,
}

/// Options for new droplets.
#[derive(Debug, Clone)]
pub struct DropletOptions {
    /// Hostnames are `<prefix>-<unique suffix>`.
    pub hostname_prefix: String,
    /// Region slug (the API picks one when absent).
    pub region: Option<String>,
    /// Size slug.
    pub size: String,
    /// Image slug or ID.
    pub image: IntOrString,
    /// Extra tags (the doproxy tag is always added).
    pub tags: Vec<String>,
    /// VPC to place droplets in.
    pub vpc_uuid: Option<String>,
    /// Enable IPv6.
    pub ipv6: bool,
    /// Install the monitoring agent.
    pub monitoring: bool,
}

impl DropletOptions {
    /// The tag that marks droplets created by doproxy (always the first tag).
    pub fn doproxy_tag(&self) -> &str {
        &self.tags[0]
    }

    /// The JSON fields of a create request other than the names and user data.
    pub fn request_fields(
        &self,
        ssh_keys: &[IntOrString],
    ) -> serde_json::Map<String, serde_json::Value> {
        let mut m = serde_json::Map::new();
        if let Some(r) = &self.region {
            m.insert("region".into(), r.clone().into());
        }
        m.insert("size".into(), self.size.clone().into());
        m.insert("image".into(), self.image.to_json());
        m.insert(
            "ssh_keys".into(),
            ssh_keys
                .iter()
                .map(IntOrString::to_json)
                .collect::<Vec<_>>()
                .into(),
        );
        m.insert("tags".into(), self.tags.clone().into());
        m.insert("ipv6".into(), self.ipv6.into());
        m.insert("monitoring".into(), self.monitoring.into());
        if let Some(v) = &self.vpc_uuid {
            m.insert("vpc_uuid".into(), v.clone().into());
        }
        m
    }
}

/// Retry policy for GET and DELETE (POST is never blindly retried).
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    /// Attempts in all, the first included.
    pub max_attempts: u32,
    /// First backoff delay.
    pub min_delay: Duration,
    /// Longest single backoff delay.
    pub max_delay: Duration,
    /// Total time all retries of one request may spend waiting.
    pub budget: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 5,
            min_delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(30),
            budget: Duration::from_secs(120),
        }
    }
}

/// Values for the HAProxy template's global section and stats.
#[derive(Debug, Clone, serde::Serialize)]
pub struct HaproxySettings {
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

impl Config {
    /// Loads and validates the config at `path`, applying environment overrides from `env`.
    pub fn load(path: &Path, env: &dyn Fn(&str) -> Option<String>) -> Result<Config> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            usage_error(format!(
                "cannot read config file {}: {e} (start from doproxy.yml.example)",
                path.display()
            ))
        })?;
        let cfg = Self::parse(path, &text, env)?;
        if cfg.token_in_file {
            use std::os::unix::fs::PermissionsExt;
            if let Ok(meta) = std::fs::metadata(path) {
                let mode = meta.permissions().mode();
                if mode & 0o077 != 0 {
                    eprintln!(
                        "doproxy: warning: {} holds the API token and is readable by group or others (mode {:o}); run: chmod 600 {}",
                        path.display(),
                        mode & 0o777,
                        path.display()
                    );
                }
            }
        }
        Ok(cfg)
    }

    /// Parses config text; `path` names the file in errors and anchors relative paths.
    pub fn parse(path: &Path, text: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<Config> {
        let shown = path.display();
        let raw: RawConfig =
            serde_yaml::from_str(text).map_err(|e| usage_error(format!("{shown}: {e}")))?;
        let base = crate::fsutil::parent_dir(path);
        let resolve = |p: &Path| {
            if p.is_absolute() {
                p.to_path_buf()
            } else {
                base.join(p)
            }
        };
        let bad = |field: &str, msg: String| usage_error(format!("{shown}: {field}: {msg}"));

        let (token, token_in_file) = pick_token(&raw.token, env).map_err(|m| bad("token", m))?;

        let d = raw.droplet_options;
        validate_prefix(&d.hostname_prefix)
            .map_err(|m| bad("droplet_options.hostname_prefix", m))?;
        if d.size.trim().is_empty() {
            return Err(bad("droplet_options.size", "must not be empty".into()));
        }
        let mut tags = vec![DEFAULT_TAG.to_string()];
        for t in d.tags.unwrap_or_default() {
            validate_tag(&t).map_err(|m| bad("droplet_options.tags", m))?;
            if !tags.contains(&t) {
                tags.push(t);
            }
        }
        let api_url = env("DIGITALOCEAN_API_URL")
            .filter(|s| !s.is_empty())
            .or(raw.api_url)
            .unwrap_or_else(|| DEFAULT_API_URL.to_string());
        let api_url = validate_url(&api_url, true).map_err(|m| bad("api_url", m))?;
        let metadata_url = env("DOPROXY_METADATA_URL")
            .filter(|s| !s.is_empty())
            .or(raw.metadata_url)
            .unwrap_or_else(|| DEFAULT_METADATA_URL.to_string());
        let metadata_url =
            validate_url(&metadata_url, false).map_err(|m| bad("metadata_url", m))?;

        let dur = |field: &str, v: Option<RawDuration>, default: Duration| -> Result<Duration> {
            match v {
                None => Ok(default),
                Some(RawDuration::Secs(s)) => duration::from_secs(s)
                    .ok_or_else(|| bad(field, format!("invalid duration {s}"))),
                Some(RawDuration::Text(t)) => duration::parse(&t).map_err(|m| bad(field, m)),
            }
        };
        let retry = match raw.retry {
            None => RetryPolicy::default(),
            Some(r) => {
                let d = RetryPolicy::default();
                RetryPolicy {
                    max_attempts: r.max_attempts.unwrap_or(d.max_attempts).max(1),
                    min_delay: dur("retry.min_delay", r.min_delay, d.min_delay)?,
                    max_delay: dur("retry.max_delay", r.max_delay, d.max_delay)?,
                    budget: dur("retry.budget", r.budget, d.budget)?,
                }
            }
        };

        let h = raw.haproxy.unwrap_or_default();
        let or = |v: Option<Option<String>>, d: &str| match v {
            None => Some(d.to_string()),
            Some(x) => x.filter(|s| !s.is_empty()),
        };
        let haproxy = HaproxySettings {
            chroot: or(h.chroot, "/var/lib/haproxy"),
            user: or(h.user, "haproxy"),
            group: or(h.group, "haproxy"),
            log: or(h.log, "/dev/log local0"),
            stats_socket: or(h.stats_socket, "/run/haproxy/admin.sock"),
            stats_user: h.stats_user,
            stats_password: h.stats_password,
            errorfiles_dir: h.errorfiles_dir,
            maxconn: h.maxconn.unwrap_or(2048),
            noreuseport: h.noreuseport.unwrap_or(false),
            check_inter: h.check_inter.unwrap_or_else(|| "2s".into()),
        };
        for (field, v) in [
            ("haproxy.chroot", &haproxy.chroot),
            ("haproxy.user", &haproxy.user),
            ("haproxy.group", &haproxy.group),
            ("haproxy.stats_socket", &haproxy.stats_socket),
            ("haproxy.stats_user", &haproxy.stats_user),
            ("haproxy.stats_password", &haproxy.stats_password),
            ("haproxy.errorfiles_dir", &haproxy.errorfiles_dir),
        ] {
            if let Some(v) = v {
                validate_cfg_word(v).map_err(|m| bad(field, m))?;
            }
        }
        if let Some(l) = &haproxy.log {
            if l.contains(['\n', '\r', '#']) {
                return Err(bad("haproxy.log", "must be one line without '#'".into()));
            }
        }
        if let Some(s) = &haproxy.stats_socket {
            if !s.starts_with('/') {
                return Err(bad(
                    "haproxy.stats_socket",
                    format!("{s:?} must be an absolute path"),
                ));
            }
        }
        if haproxy.stats_user.is_some() != haproxy.stats_password.is_some() {
            return Err(bad(
                "haproxy.stats_user",
                "stats_user and stats_password must be set together".into(),
            ));
        }
        crate::duration::parse(&haproxy.check_inter).map_err(|m| bad("haproxy.check_inter", m))?;

        if let Some(b) = &raw.frontend_bind {
            validate_bind(b).map_err(|m| bad("frontend_bind", m))?;
        }
        let backend_port = raw.backend_port.unwrap_or(80);
        if backend_port == 0 {
            return Err(bad("backend_port", "must be 1-65535".into()));
        }

        let readiness_path = raw.readiness_path.unwrap_or_else(|| "/".into());
        if !readiness_path.starts_with('/')
            || readiness_path
                .chars()
                .any(|c| c.is_whitespace() || c.is_control())
        {
            return Err(bad(
                "readiness_path",
                format!("{readiness_path:?} must be a path starting with '/'"),
            ));
        }
        let inventory = match raw.inventory {
            None => None,
            Some(i) => match i.backend.as_deref().unwrap_or("file") {
                "file" => {
                    if i.endpoints.is_some()
                        || i.prefix.is_some()
                        || i.username.is_some()
                        || i.password.is_some()
                    {
                        return Err(bad(
                            "inventory",
                            "endpoints, prefix, username and password need `backend: etcd`".into(),
                        ));
                    }
                    None
                }
                "etcd" => {
                    let endpoints = i.endpoints.unwrap_or_default();
                    if endpoints.is_empty() {
                        return Err(bad(
                            "inventory.endpoints",
                            "at least one etcd URL is needed".into(),
                        ));
                    }
                    for e in &endpoints {
                        if !(e.starts_with("http://") || e.starts_with("https://")) {
                            return Err(bad(
                                "inventory.endpoints",
                                format!("{e:?} is not an http(s) URL"),
                            ));
                        }
                    }
                    let prefix = i.prefix.unwrap_or_else(|| "/doproxy/".into());
                    if prefix.is_empty()
                        || prefix.chars().any(|c| c.is_whitespace() || c.is_control())
                    {
                        return Err(bad(
                            "inventory.prefix",
                            format!("{prefix:?} is not a usable key prefix"),
                        ));
                    }
                    if i.cert_file.is_some() != i.key_file.is_some() {
                        return Err(bad(
                            "inventory.cert_file",
                            "cert_file and key_file must be set together".into(),
                        ));
                    }
                    if i.username.is_some() != i.password.is_some() {
                        return Err(bad(
                            "inventory.username",
                            "username and password must be set together".into(),
                        ));
                    }
                    let lock_ttl = dur("inventory.lock_ttl", i.lock_ttl, Duration::from_secs(10))?;
                    if lock_ttl < Duration::from_secs(2) {
                        return Err(bad("inventory.lock_ttl", "must be at least 2s".into()));
                    }
                    Some(InventoryBackend::Etcd(EtcdSettings {
                        endpoints: endpoints
                            .into_iter()
                            .map(|e| e.trim_end_matches('/').to_string())
                            .collect(),
                        prefix,
                        username: i.username,
                        password: i.password.map(Token::new),
                        lock_ttl,
                        timeout: dur("inventory.timeout", i.timeout, Duration::from_secs(5))?,
                        ca_file: i.ca_file.as_deref().map(resolve),
                        cert_file: i.cert_file.as_deref().map(resolve),
                        key_file: i.key_file.as_deref().map(resolve),
                    }))
                }
                other => {
                    return Err(bad(
                        "inventory.backend",
                        format!("{other:?} is not `file` or `etcd`"),
                    ))
                }
            },
        };
        let inventory = match (inventory, &raw.inventory_file) {
            (Some(etcd), _) => etcd,
            (None, Some(f)) => InventoryBackend::File(resolve(f)),
            (None, None) => {
                return Err(bad(
                    "inventory_file",
                    "missing (or configure `inventory: {backend: etcd, ...}`)".into(),
                ))
            }
        };
        let cfg_name = raw
            .haproxy_cfg_file
            .file_name()
            .ok_or_else(|| bad("haproxy_cfg_file", "must name a file".into()))?
            .to_owned();
        Ok(Config {
            path: path.to_path_buf(),
            token,
            ssh_keys: raw.ssh_key_ids.unwrap_or_default(),
            userdata_file: raw.userdata_file.as_deref().map(resolve),
            rendered_cfg: resolve(&raw.haproxy_cfg_file),
            installed_cfg: resolve(&raw.haproxy_cfg_path).join(cfg_name),
            template_file: raw.haproxy_template_file.as_deref().map(resolve),
            inventory,
            droplet: DropletOptions {
                hostname_prefix: d.hostname_prefix,
                region: d.region,
                size: d.size,
                image: d.image,
                tags,
                vpc_uuid: d.vpc_uuid,
                ipv6: d.ipv6.unwrap_or(false),
                monitoring: d.monitoring.unwrap_or(false),
            },
            api_url,
            metadata_url,
            reload_command: raw
                .reload_command
                .unwrap_or_else(|| "systemctl reload haproxy".into()),
            check_command: raw
                .check_command
                .unwrap_or_else(|| "haproxy -c -f {config}".into()),
            backend_port,
            frontend_bind: raw.frontend_bind,
            wait_timeout: dur("wait_timeout", raw.wait_timeout, Duration::from_secs(600))?,
            poll_interval: dur("poll_interval", raw.poll_interval, Duration::from_secs(5))?,
            not_found_grace: dur(
                "not_found_grace",
                raw.not_found_grace,
                Duration::from_secs(120),
            )?,
            api_timeout: dur("api_timeout", raw.api_timeout, Duration::from_secs(60))?,
            lock_timeout: dur("lock_timeout", raw.lock_timeout, Duration::from_secs(300))?,
            drain_timeout: dur("drain_timeout", raw.drain_timeout, Duration::from_secs(30))?,
            reload_verify_timeout: dur(
                "reload_verify_timeout",
                raw.reload_verify_timeout,
                Duration::from_secs(10),
            )?,
            readiness_check: raw.readiness_check.unwrap_or(false),
            readiness_path,
            watch_debounce: dur(
                "watch_debounce",
                raw.watch_debounce,
                Duration::from_millis(500),
            )?,
            retry,
            token_in_file,
            haproxy,
        })
    }

    /// Reads the user-data file (at most 64 KiB, the API's limit).
    pub fn user_data(&self) -> Result<Option<String>> {
        let Some(p) = &self.userdata_file else {
            return Ok(None);
        };
        let data = std::fs::read(p)
            .map_err(|e| usage_error(format!("userdata_file {}: {e}", p.display())))?;
        if data.len() > 65_536 {
            return Err(usage_error(format!(
                "userdata_file {}: {} bytes is over the API's 64 KiB limit",
                p.display(),
                data.len()
            )));
        }
        let text = String::from_utf8(data)
            .map_err(|_| usage_error(format!("userdata_file {}: not UTF-8 text", p.display())))?;
        Ok(Some(text))
    }
}

fn pick_token(
    config: &Option<String>,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<(Token, bool), String> {
    // doctl's and Terraform's variables win over the file, so a token need not sit in it.
    let (value, source) =
        if let Some(v) = env("DIGITALOCEAN_ACCESS_TOKEN").filter(|v| !v.is_empty()) {
            (v, "environment variable DIGITALOCEAN_ACCESS_TOKEN")
        } else if let Some(v) = env("DIGITALOCEAN_TOKEN").filter(|v| !v.is_empty()) {
            (v, "environment variable DIGITALOCEAN_TOKEN")
        } else if let Some(v) = config.clone() {
            (v, "value")
        } else {
            return Err("missing: set `token` or DIGITALOCEAN_ACCESS_TOKEN".into());
        };
    if value.trim().is_empty() {
        return Err(format!("{source} is empty"));
    }
    if value.trim() != value {
        return Err(format!("{source} has leading or trailing whitespace"));
    }
    if value.starts_with('<') && value.ends_with('>') {
        return Err(format!("{source} is still the sample placeholder"));
    }
    if !value.chars().all(|c| c.is_ascii_graphic()) {
        return Err(format!("{source} contains characters a token cannot have"));
    }
    Ok((Token::new(value), source == "value"))
}

/// Hostname prefixes must leave room for `-<suffix>` inside one 63-character DNS label.
pub fn validate_prefix(p: &str) -> Result<(), String> {
    let ok_chars = p
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.');
    if p.is_empty() || p.len() > 50 || !ok_chars || p.starts_with(['-', '.']) || p.ends_with('.') {
        return Err(format!(
            "{p:?} is not a valid hostname prefix (letters, digits, '-' and '.'; at most 50 characters; not starting with '-' or '.')"
        ));
    }
    Ok(())
}

/// Tags follow the API's rule `^[a-zA-Z0-9_\-:]+$`, at most 255 characters.
pub fn validate_tag(t: &str) -> Result<(), String> {
    if t.is_empty()
        || t.len() > 255
        || !t
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_-:".contains(c))
    {
        return Err(format!(
            "{t:?} is not a valid tag (letters, digits, '_', '-', ':')"
        ));
    }
    Ok(())
}

/// A single word that may go into haproxy.cfg without changing its structure.
fn validate_cfg_word(v: &str) -> Result<(), String> {
    if v.is_empty()
        || v.chars()
            .any(|c| c.is_whitespace() || c.is_control() || c == '#' || c == '"' || c == '\\')
    {
        return Err(format!(
            "{v:?} must be one word without spaces, quotes or '#'"
        ));
    }
    Ok(())
}

fn validate_bind(b: &str) -> Result<(), String> {
    let err = || format!("{b:?} is not ip:port (e.g. 203.0.113.10:80 or [::1]:8080)");
    let (host, port) = b.rsplit_once(':').ok_or_else(err)?;
    let port: u16 = port.parse().map_err(|_| err())?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if port == 0 || (host != "*" && !host.is_empty() && host.parse::<IpAddr>().is_err()) {
        return Err(err());
    }
    Ok(())
}

/// Accepts `https://…` anywhere and `http://…` only on loopback (or, for the metadata
/// service, link-local) so that the token never travels in clear text.
fn validate_url(url: &str, is_api: bool) -> Result<String, String> {
    let url = url.trim_end_matches('/').to_string();
    let (scheme, rest) = url
        .split_once("://")
        .ok_or_else(|| format!("{url:?} is not an http(s) URL"))?;
    let authority = rest.split('/').next().unwrap_or("");
    let host = if let Some(h) = authority.strip_prefix('[') {
        h.split(']').next().unwrap_or("")
    } else {
        authority.rsplit_once(':').map_or(authority, |(h, _)| h)
    };
    if host.is_empty() {
        return Err(format!("{url:?} has no host"));
    }
    match scheme {
        "https" => Ok(url),
        "http" => {
            let ip = if host == "localhost" {
                Some(IpAddr::from([127, 0, 0, 1]))
            } else {
                host.parse::<IpAddr>().ok()
            };
            let allowed = match ip {
                Some(IpAddr::V4(v4)) => v4.is_loopback() || (!is_api && v4.is_link_local()),
                Some(IpAddr::V6(v6)) => v6.is_loopback(),
                None => false,
            };
            if allowed {
                Ok(url)
            } else if is_api {
                Err(format!(
                    "{url:?}: plain http:// is allowed only on loopback; use https://"
                ))
            } else {
                Err(format!(
                    "{url:?}: plain http:// is allowed only on loopback or link-local addresses"
                ))
            }
        }
        _ => Err(format!("{url:?} is not an http(s) URL")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_env(_: &str) -> Option<String> {
        None
    }

    const ORIGINAL: &str = "---\ntoken: abc123\nssh_key_ids:\n  - 163420\nuserdata_file: user-data.yml\n\nhaproxy_cfg_file: haproxy.cfg\nhaproxy_cfg_path: /etc/haproxy\nhaproxy_template_file: haproxy.cfg.erb\n\n\ninventory_file: inventory\n\ndroplet_options:\n  hostname_prefix: auto-nginx\n  region: nyc3\n  size: 1gb\n  image: ubuntu-16-04-x64\n";

    #[test]
    fn loads_original_shape() {
        let c = Config::parse(Path::new("/opt/dp/doproxy.yml"), ORIGINAL, &no_env).unwrap();
        assert!(
            matches!(&c.inventory, InventoryBackend::File(p) if p == Path::new("/opt/dp/inventory"))
        );
        assert_eq!(c.installed_cfg, Path::new("/etc/haproxy/haproxy.cfg"));
        assert_eq!(c.rendered_cfg, Path::new("/opt/dp/haproxy.cfg"));
        assert_eq!(c.api_url, DEFAULT_API_URL);
        assert_eq!(c.droplet.tags, vec!["doproxy".to_string()]);
        assert_eq!(c.ssh_keys, vec![IntOrString::Int(163420)]);
        assert_eq!(c.backend_port, 80);
    }

    #[test]
    fn env_token_and_api_url_override() {
        let env = |k: &str| match k {
            "DIGITALOCEAN_TOKEN" => Some("envtok".to_string()),
            "DIGITALOCEAN_API_URL" => Some("http://127.0.0.1:9/".to_string()),
            _ => None,
        };
        let c = Config::parse(Path::new("d.yml"), ORIGINAL, &env).unwrap();
        assert_eq!(c.token.expose(), "envtok");
        assert_eq!(c.api_url, "http://127.0.0.1:9");
    }

    #[test]
    fn errors_name_the_field() {
        let e = Config::parse(
            Path::new("d.yml"),
            &ORIGINAL.replace("size: 1gb", "size: [1]"),
            &no_env,
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("droplet_options.size"), "{e}");
        let e = Config::parse(
            Path::new("d.yml"),
            &format!("{ORIGINAL}bogus: 1\n"),
            &no_env,
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("bogus"), "{e}");
        let e = Config::parse(
            Path::new("d.yml"),
            &ORIGINAL.replace("abc123", "\" abc\""),
            &no_env,
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("token") && e.contains("whitespace") && !e.contains("abc"),
            "{e}"
        );
    }

    #[test]
    fn refuses_plain_http_off_loopback() {
        let text = format!("{ORIGINAL}api_url: http://api.example.com\n");
        let e = Config::parse(Path::new("d.yml"), &text, &no_env)
            .unwrap_err()
            .to_string();
        assert!(e.contains("api_url"), "{e}");
        let text = format!("{ORIGINAL}api_url: http://[::1]:8080\n");
        assert!(Config::parse(Path::new("d.yml"), &text, &no_env).is_ok());
    }

    #[test]
    fn etcd_inventory_settings() {
        let text = ORIGINAL.replace(
            "inventory_file: inventory\n",
            "inventory:\n  backend: etcd\n  endpoints: [http://127.0.0.1:2379/]\n  lock_ttl: 5s\n",
        );
        let c = Config::parse(Path::new("d.yml"), &text, &no_env).unwrap();
        match c.inventory {
            InventoryBackend::Etcd(e) => {
                assert_eq!(e.endpoints, vec!["http://127.0.0.1:2379".to_string()]);
                assert_eq!(e.prefix, "/doproxy/");
                assert_eq!(e.lock_ttl, Duration::from_secs(5));
            }
            other => panic!("{other:?}"),
        }
        let text = ORIGINAL.replace(
            "inventory_file: inventory\n",
            "inventory:\n  backend: etcd\n",
        );
        let e = Config::parse(Path::new("d.yml"), &text, &no_env)
            .unwrap_err()
            .to_string();
        assert!(e.contains("inventory.endpoints"), "{e}");
        let text = ORIGINAL.replace("inventory_file: inventory\n", "");
        let e = Config::parse(Path::new("d.yml"), &text, &no_env)
            .unwrap_err()
            .to_string();
        assert!(e.contains("inventory_file"), "{e}");
    }

    #[test]
    fn example_config_loads() {
        let text = include_str!("../doproxy.yml.example");
        let c = Config::parse(Path::new("/etc/doproxy/doproxy.yml"), text, &no_env).unwrap();
        assert_eq!(c.installed_cfg, Path::new("/etc/haproxy/haproxy.cfg"));
        assert_eq!(c.wait_timeout, Duration::from_secs(600));
        assert_eq!(
            c.haproxy.stats_socket.as_deref(),
            Some("/run/haproxy/admin.sock")
        );
    }

    #[test]
    fn token_debug_is_redacted() {
        let t = Token::new("secret-value".into());
        assert!(!format!("{t:?}").contains("secret"));
    }
}
