//! `doproxy.yml`: the schema (the Ruby DOProxy's keys plus optional new ones), environment
//! overrides, path resolution against the config file's folder, and validation into one
//! [`Config`]. Every YAML call in the crate lives here.

use crate::digitalocean::{self, DropletSpec, IntOrString, RetryPolicy};
use crate::duration;
use crate::error::usage_error;
use crate::haproxy::{self, TemplateValues};
use crate::secret::Secret;
use crate::store::{self, etcd};
use anyhow::Result;
use serde::Deserialize;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The DigitalOcean API base URL used when neither the config nor the environment name one.
pub const DEFAULT_API_URL: &str = "https://api.digitalocean.com";
/// The droplet metadata service (link-local, reachable only on a droplet).
pub const DEFAULT_METADATA_URL: &str = "http://169.254.169.254";
/// The default deployment tag (`droplet_options.deployment_tag`): the first tag of every
/// droplet doproxy creates, by which it lists its droplets and finds orphans.
pub const DEFAULT_TAG: &str = "doproxy";

/// The smallest value each duration key accepts, and why: below it the key cannot do its
/// job (a zero `poll_interval` polls in a busy loop, a zero `api_timeout` fails every
/// request). `drain_timeout` may be 0: `delete` then does not wait for connections to end.
pub const MIN_DURATIONS: &[(&str, Duration, &str)] = &[
    (
        "wait_timeout",
        Duration::from_secs(1),
        "droplets take tens of seconds to boot",
    ),
    (
        "poll_interval",
        Duration::from_millis(10),
        "a shorter pause polls in a busy loop",
    ),
    (
        "not_found_grace",
        Duration::from_secs(1),
        "the missing log counts whole seconds",
    ),
    (
        "api_timeout",
        Duration::from_secs(1),
        "a shorter timeout fails every request",
    ),
    (
        "lock_timeout",
        Duration::from_millis(100),
        "a shorter wait fails whenever another run holds the lock",
    ),
    (
        "drain_timeout",
        Duration::ZERO,
        "0 does not wait for connections to end",
    ),
    (
        "reload_verify_timeout",
        Duration::from_millis(500),
        "HAProxy needs a moment to show a reload",
    ),
    (
        "command_timeout",
        Duration::from_secs(1),
        "a shorter limit kills a sound check or reload",
    ),
    (
        "watch_debounce",
        Duration::from_millis(10),
        "a shorter wait reloads once per change",
    ),
    (
        "retry.min_delay",
        Duration::from_millis(1),
        "a zero delay retries in a busy loop",
    ),
    (
        "retry.max_delay",
        Duration::from_millis(1),
        "a zero delay retries in a busy loop",
    ),
    (
        "retry.budget",
        Duration::from_millis(100),
        "a smaller budget leaves no room for a retry",
    ),
    (
        "inventory.lock_ttl",
        Duration::from_secs(2),
        "the lease is kept alive at a third of it",
    ),
    (
        "inventory.timeout",
        Duration::from_millis(100),
        "a shorter timeout fails every etcd request",
    ),
    (
        "haproxy.check_inter",
        Duration::from_millis(100),
        "shorter health checks load every backend",
    ),
];

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
    command_timeout: Option<RawDuration>,
    max_unplanned_shrink: Option<f64>,
    readiness_check: Option<bool>,
    readiness_path: Option<String>,
    watch_debounce: Option<RawDuration>,
    retry: Option<RawRetry>,
    haproxy: Option<RawHaproxy>,
    // autoscale (issue #16): the policy's settings.
    autoscale: Option<RawAutoscale>,
}

// --- autoscale: section (issue #16) -------------------------------------------------------

/// The `autoscale:` section; every key optional (defaults in `autoscale::Settings`).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAutoscale {
    min: Option<u32>,
    max: Option<u32>,
    targets: Option<RawTargets>,
    tolerance: Option<f64>,
    standby: Option<u32>,
    step_up: Option<u32>,
    step_down: Option<u32>,
    step_interval: Option<RawDuration>,
    stabilization_up: Option<RawDuration>,
    stabilization_down: Option<RawDuration>,
    tick: Option<RawDuration>,
    stale_after: Option<RawDuration>,
    max_actions: Option<u32>,
    action_window: Option<RawDuration>,
    max_hourly_cost: Option<f64>,
    hourly_price: Option<f64>,
    scale_in_error_ratio: Option<f64>,
    reconcile_interval: Option<RawDuration>,
    metrics_listen: Option<String>,
}

/// `autoscale.targets`: when given, only the targets it names are used.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTargets {
    sessions_per_server: Option<f64>,
    requests_per_second_per_server: Option<f64>,
    queue_time_ms: Option<f64>,
}

/// What `doproxy autoscale simulate|record|traces` read from a config file, without the
/// rest of it (no token is needed for them).
#[derive(Debug, Clone, Default)]
pub struct AutoscaleSection {
    /// The resolved `autoscale:` section, if the file has one.
    pub settings: Option<crate::autoscale::Settings>,
    /// `haproxy.stats_socket` as configured (`None` when not set; `Some(None)` when null).
    pub stats_socket: Option<Option<String>>,
}

impl AutoscaleSection {
    /// Reads only the `autoscale:` section and `haproxy.stats_socket` of the config at
    /// `path`; the section is validated as strictly as by [`Config::load`].
    pub fn load(path: &Path) -> Result<AutoscaleSection> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| usage_error(format!("cannot read config file {}: {e}", path.display())))?;
        let env = |_: &str| None;
        let r = Resolver {
            shown: path.display().to_string(),
            base: crate::fsutil::parent_dir(path),
            env: &env,
        };
        let doc: serde_yaml::Value =
            serde_yaml::from_str(&text).map_err(|e| usage_error(format!("{}: {e}", r.shown)))?;
        let settings = match doc.get("autoscale") {
            None | Some(serde_yaml::Value::Null) => None,
            Some(v) => {
                let raw: RawAutoscale = serde_yaml::from_value(v.clone())
                    .map_err(|e| r.bad("autoscale", e.to_string()))?;
                Some(r.autoscale(raw)?)
            }
        };
        let stats_socket = doc
            .get("haproxy")
            .and_then(|h| h.get("stats_socket"))
            .map(|v| v.as_str().map(str::to_string));
        Ok(AutoscaleSection {
            settings,
            stats_socket,
        })
    }
}

impl Resolver<'_> {
    fn autoscale(&self, a: RawAutoscale) -> Result<crate::autoscale::Settings> {
        use crate::autoscale::{Settings, Targets};
        let d = Settings::default();
        let targets = match a.targets {
            None => d.targets,
            Some(t) => Targets {
                sessions_per_server: t.sessions_per_server,
                requests_per_second_per_server: t.requests_per_second_per_server,
                queue_time_ms: t.queue_time_ms,
            },
        };
        let k = |key: &str| format!("autoscale.{key}");
        let s = Settings {
            min: a.min.unwrap_or(d.min),
            max: a.max.unwrap_or(d.max),
            targets,
            tolerance: a.tolerance.unwrap_or(d.tolerance),
            standby: a.standby.unwrap_or(d.standby),
            step_up: a.step_up.unwrap_or(d.step_up),
            step_down: a.step_down.unwrap_or(d.step_down),
            step_interval: self.dur(&k("step_interval"), a.step_interval, d.step_interval)?,
            stabilization_up: self.dur(
                &k("stabilization_up"),
                a.stabilization_up,
                d.stabilization_up,
            )?,
            stabilization_down: self.dur(
                &k("stabilization_down"),
                a.stabilization_down,
                d.stabilization_down,
            )?,
            tick: self.dur(&k("tick"), a.tick, d.tick)?,
            stale_after: self.dur(&k("stale_after"), a.stale_after, d.stale_after)?,
            max_actions: a.max_actions.unwrap_or(d.max_actions),
            action_window: self.dur(&k("action_window"), a.action_window, d.action_window)?,
            max_hourly_cost: a.max_hourly_cost,
            hourly_price: a.hourly_price,
            scale_in_error_ratio: a.scale_in_error_ratio.unwrap_or(d.scale_in_error_ratio),
            reconcile_interval: self.dur(
                &k("reconcile_interval"),
                a.reconcile_interval,
                d.reconcile_interval,
            )?,
            metrics_listen: match a.metrics_listen.as_deref() {
                None => None,
                Some(text) => Some(text.parse::<std::net::SocketAddr>().map_err(|_| {
                    self.bad(
                        &k("metrics_listen"),
                        format!("{text:?} is not an IP:PORT address (e.g. 127.0.0.1:9150)"),
                    )
                })?),
            },
        };
        s.validate().map_err(|(key, msg)| self.bad(&k(key), msg))?;
        Ok(s)
    }
}

// --- end of the autoscale: section --------------------------------------------------------

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
    deployment_tag: Option<String>,
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
    // `None`: the key is absent (the default applies); `Some(None)`: `null` (the line is
    // left out). serde reads a present `null` as an absent `Option<Option<_>>` unless told.
    #[serde(default, deserialize_with = "present_nullable")]
    chroot: Option<Option<String>>,
    #[serde(default, deserialize_with = "present_nullable")]
    user: Option<Option<String>>,
    #[serde(default, deserialize_with = "present_nullable")]
    group: Option<Option<String>>,
    #[serde(default, deserialize_with = "present_nullable")]
    log: Option<Option<String>>,
    #[serde(default, deserialize_with = "present_nullable")]
    stats_socket: Option<Option<String>>,
    stats_user: Option<String>,
    stats_password: Option<String>,
    errorfiles_dir: Option<String>,
    maxconn: Option<u32>,
    noreuseport: Option<bool>,
    check_inter: Option<String>,
}

/// A key that is present: `Some(None)` for `null`, `Some(Some(v))` for a value (an absent
/// key is `None` through `#[serde(default)]`).
fn present_nullable<'de, D>(d: D) -> Result<Option<Option<String>>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    Option::<String>::deserialize(d).map(Some)
}

/// The validated configuration: each section resolved into the settings type of the module
/// that uses it. After `load` every field is final.
#[derive(Debug, Clone)]
pub struct Config {
    /// The config file this was loaded from.
    pub path: PathBuf,
    /// True when the token was read from the config file (not the environment).
    pub token_in_file: bool,
    /// How to reach the API (`api_url`, `token`, `api_timeout`, `retry`).
    pub api: digitalocean::Settings,
    /// Metadata service base URL without a trailing slash.
    pub metadata_url: String,
    /// What new droplets look like (`droplet_options`, `ssh_key_ids`).
    pub droplet: DropletSpec,
    /// cloud-init user data file, if any.
    pub userdata_file: Option<PathBuf>,
    /// Everything the HAProxy side needs.
    pub haproxy: haproxy::Settings,
    /// Where the inventory lives, and how long to wait for its lock.
    pub store: store::Settings,
    /// How `create` waits for new droplets.
    pub create: CreateSettings,
    /// `reload --watch` waits this long after a change for more changes before reloading.
    pub watch_debounce: Duration,
    /// The autoscaler's settings (`autoscale:`), when the section is present.
    pub autoscale: Option<crate::autoscale::Settings>,
}

/// How `create` waits for new droplets (`wait_timeout`, `poll_interval`, `not_found_grace`,
/// `readiness_check`, `readiness_path`).
#[derive(Debug, Clone)]
pub struct CreateSettings {
    /// How long `create` waits for droplets to become ready.
    pub wait_timeout: Duration,
    /// The longest interval between two polls while waiting.
    pub poll_interval: Duration,
    /// How long a droplet may be missing from the API right after its create was accepted.
    pub not_found_grace: Duration,
    /// `create` waits until a new backend answers HTTP on its private address.
    pub readiness_check: bool,
    /// The path the readiness check requests.
    pub readiness_path: String,
}

/// What every section's resolver needs: the file's name for errors, its folder for
/// relative paths, and the environment.
struct Resolver<'a> {
    shown: String,
    base: PathBuf,
    env: &'a dyn Fn(&str) -> Option<String>,
}

impl Resolver<'_> {
    fn bad(&self, field: &str, msg: String) -> anyhow::Error {
        usage_error(format!("{}: {field}: {msg}", self.shown))
    }

    fn path(&self, p: &Path) -> PathBuf {
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            self.base.join(p)
        }
    }

    /// The duration at `field` (`default` when absent), at least its [`MIN_DURATIONS`]
    /// bound.
    fn dur(&self, field: &str, v: Option<RawDuration>, default: Duration) -> Result<Duration> {
        let d = match v {
            None => return Ok(default),
            Some(RawDuration::Secs(s)) => duration::from_secs(s)
                .ok_or_else(|| self.bad(field, format!("invalid duration {s}")))?,
            Some(RawDuration::Text(t)) => duration::parse(&t).map_err(|m| self.bad(field, m))?,
        };
        self.at_least(field, d)
    }

    /// Refuses a duration below the key's [`MIN_DURATIONS`] bound, naming key and bound.
    fn at_least(&self, field: &str, d: Duration) -> Result<Duration> {
        if let Some((_, min, why)) = MIN_DURATIONS.iter().find(|(k, _, _)| *k == field) {
            if d < *min {
                return Err(self.bad(
                    field,
                    format!("{d:?} is below the minimum of {min:?} ({why})"),
                ));
            }
        }
        Ok(d)
    }

    /// Two keys that make sense only as a pair (`what`) are both set or both unset.
    fn together(&self, field: &str, what: &str, a: bool, b: bool) -> Result<()> {
        if a != b {
            return Err(self.bad(field, format!("{what} must be set together")));
        }
        Ok(())
    }

    /// An environment variable that is set and not empty.
    fn var(&self, name: &str) -> Option<String> {
        (self.env)(name).filter(|s| !s.is_empty())
    }

    fn api(
        &self,
        token: Option<String>,
        api_url: Option<String>,
        api_timeout: Option<RawDuration>,
        retry: Option<RawRetry>,
    ) -> Result<(digitalocean::Settings, bool)> {
        let (token, token_in_file) =
            pick_token(&token, self.env).map_err(|m| self.bad("token", m))?;
        let api_url = self
            .var("DIGITALOCEAN_API_URL")
            .or(api_url)
            .unwrap_or_else(|| DEFAULT_API_URL.to_string());
        let api_url = validate_url(&api_url, true).map_err(|m| self.bad("api_url", m))?;
        let retry = match retry {
            None => RetryPolicy::default(),
            Some(r) => {
                let d = RetryPolicy::default();
                let policy = RetryPolicy {
                    max_attempts: r.max_attempts.unwrap_or(d.max_attempts).max(1),
                    min_delay: self.dur("retry.min_delay", r.min_delay, d.min_delay)?,
                    max_delay: self.dur("retry.max_delay", r.max_delay, d.max_delay)?,
                    budget: self.dur("retry.budget", r.budget, d.budget)?,
                };
                if policy.max_delay < policy.min_delay {
                    return Err(self.bad(
                        "retry.max_delay",
                        format!(
                            "{:?} is below retry.min_delay ({:?})",
                            policy.max_delay, policy.min_delay
                        ),
                    ));
                }
                policy
            }
        };
        let settings = digitalocean::Settings {
            api_url,
            token,
            timeout: self.dur("api_timeout", api_timeout, Duration::from_secs(60))?,
            retry,
        };
        Ok((settings, token_in_file))
    }

    fn droplet(
        &self,
        d: RawDropletOptions,
        ssh_key_ids: Option<Vec<IntOrString>>,
    ) -> Result<DropletSpec> {
        validate_prefix(&d.hostname_prefix)
            .map_err(|m| self.bad("droplet_options.hostname_prefix", m))?;
        if d.size.trim().is_empty() {
            return Err(self.bad("droplet_options.size", "must not be empty".into()));
        }
        // The deployment's tag comes first: it is what this deployment lists, adopts and
        // reports orphans by (DropletSpec::doproxy_tag), so two deployments on one account
        // with different tags never see each other's droplets.
        let deployment = d.deployment_tag.unwrap_or_else(|| DEFAULT_TAG.to_string());
        validate_tag(&deployment).map_err(|m| self.bad("droplet_options.deployment_tag", m))?;
        let mut tags = vec![deployment];
        for t in d.tags.unwrap_or_default() {
            validate_tag(&t).map_err(|m| self.bad("droplet_options.tags", m))?;
            if !tags.contains(&t) {
                tags.push(t);
            }
        }
        Ok(DropletSpec {
            hostname_prefix: d.hostname_prefix,
            region: d.region,
            size: d.size,
            image: d.image,
            tags,
            vpc_uuid: d.vpc_uuid,
            ipv6: d.ipv6.unwrap_or(false),
            monitoring: d.monitoring.unwrap_or(false),
            ssh_keys: ssh_key_ids.unwrap_or_default(),
        })
    }

    fn template_values(&self, h: RawHaproxy) -> Result<TemplateValues> {
        let or = |v: Option<Option<String>>, d: &str| match v {
            None => Some(d.to_string()),
            Some(x) => x.filter(|s| !s.is_empty()),
        };
        let values = TemplateValues {
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
            ("haproxy.chroot", &values.chroot),
            ("haproxy.user", &values.user),
            ("haproxy.group", &values.group),
            ("haproxy.stats_socket", &values.stats_socket),
            ("haproxy.stats_user", &values.stats_user),
            ("haproxy.stats_password", &values.stats_password),
            ("haproxy.errorfiles_dir", &values.errorfiles_dir),
        ] {
            if let Some(v) = v {
                validate_cfg_word(v).map_err(|m| self.bad(field, m))?;
            }
        }
        if let Some(l) = &values.log {
            if l.contains(['\n', '\r', '#']) {
                return Err(self.bad("haproxy.log", "must be one line without '#'".into()));
            }
        }
        if let Some(s) = &values.stats_socket {
            if !s.starts_with('/') {
                return Err(self.bad(
                    "haproxy.stats_socket",
                    format!("{s:?} must be an absolute path"),
                ));
            }
        }
        self.together(
            "haproxy.stats_user",
            "stats_user and stats_password",
            values.stats_user.is_some(),
            values.stats_password.is_some(),
        )?;
        let inter =
            duration::parse(&values.check_inter).map_err(|m| self.bad("haproxy.check_inter", m))?;
        self.at_least("haproxy.check_inter", inter)?;
        Ok(values)
    }

    fn inventory(
        &self,
        inventory: Option<RawInventory>,
        inventory_file: Option<PathBuf>,
    ) -> Result<store::Backend> {
        let etcd = match inventory {
            None => None,
            Some(i) => match i.backend.as_deref().unwrap_or("file") {
                "file" => {
                    if i.endpoints.is_some()
                        || i.prefix.is_some()
                        || i.username.is_some()
                        || i.password.is_some()
                    {
                        return Err(self.bad(
                            "inventory",
                            "endpoints, prefix, username and password need `backend: etcd`".into(),
                        ));
                    }
                    None
                }
                "etcd" => Some(self.etcd(i)?),
                other => {
                    return Err(self.bad(
                        "inventory.backend",
                        format!("{other:?} is not `file` or `etcd`"),
                    ))
                }
            },
        };
        match (etcd, &inventory_file) {
            (Some(etcd), _) => Ok(store::Backend::Etcd(etcd)),
            (None, Some(f)) => Ok(store::Backend::File(self.path(f))),
            (None, None) => Err(self.bad(
                "inventory_file",
                "missing (or configure `inventory: {backend: etcd, ...}`)".into(),
            )),
        }
    }

    fn etcd(&self, i: RawInventory) -> Result<etcd::Settings> {
        let endpoints = i.endpoints.unwrap_or_default();
        if endpoints.is_empty() {
            return Err(self.bad(
                "inventory.endpoints",
                "at least one etcd URL is needed".into(),
            ));
        }
        for e in &endpoints {
            // As for api_url: plain http only on loopback. Elsewhere it would carry the
            // inventory (which droplets doproxy deletes) and any password in clear text.
            validate_url(e, true).map_err(|m| {
                let why = match (e.starts_with("http://"), i.password.is_some()) {
                    (false, _) => "",
                    (true, true) => {
                        " (it would send the etcd password in clear text; ca_file names a private CA)"
                    }
                    (true, false) => " (ca_file names a private CA)",
                };
                self.bad("inventory.endpoints", format!("{m}{why}"))
            })?;
        }
        let prefix = i.prefix.unwrap_or_else(|| "/doproxy/".into());
        if prefix.is_empty() || prefix.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(self.bad(
                "inventory.prefix",
                format!("{prefix:?} is not a usable key prefix"),
            ));
        }
        self.together(
            "inventory.cert_file",
            "cert_file and key_file",
            i.cert_file.is_some(),
            i.key_file.is_some(),
        )?;
        self.together(
            "inventory.username",
            "username and password",
            i.username.is_some(),
            i.password.is_some(),
        )?;
        let lock_ttl = self.dur("inventory.lock_ttl", i.lock_ttl, Duration::from_secs(10))?;
        Ok(etcd::Settings {
            endpoints: endpoints
                .into_iter()
                .map(|e| e.trim_end_matches('/').to_string())
                .collect(),
            prefix,
            username: i.username,
            password: i.password.map(Secret::new),
            lock_ttl,
            timeout: self.dur("inventory.timeout", i.timeout, Duration::from_secs(5))?,
            ca_file: i.ca_file.as_deref().map(|p| self.path(p)),
            cert_file: i.cert_file.as_deref().map(|p| self.path(p)),
            key_file: i.key_file.as_deref().map(|p| self.path(p)),
        })
    }
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
        if cfg.droplet.region.is_none() {
            crate::output::warn(&format!(
                "{}: droplet_options.region is not set: the API may place backends in any region, where their private addresses are unreachable from this load balancer; set it to this droplet's region",
                path.display()
            ));
        }
        // The other files doproxy takes orders from follow the config file's trust rule
        // (checked by the caller before the config was read): before any request leaves.
        if let Some(p) = &cfg.userdata_file {
            crate::trust::check_if_present(p, "userdata_file")?;
        }
        if let Some(p) = &cfg.haproxy.template_file {
            crate::trust::check_if_present(p, "haproxy_template_file")?;
        }
        crate::trust::check_folder(
            &cfg.haproxy.workdir,
            "working folder of check_command and reload_command",
        )?;
        if cfg.token_in_file {
            use std::os::unix::fs::PermissionsExt;
            if let Ok(meta) = std::fs::metadata(path) {
                let mode = meta.permissions().mode();
                if mode & 0o077 != 0 {
                    crate::output::warn(&format!(
                        "{} holds the API token and is readable by group or others (mode {:o}); run: chmod 600 {}",
                        path.display(),
                        mode & 0o777,
                        path.display()
                    ));
                }
            }
        }
        Ok(cfg)
    }

    /// Parses config text; `path` names the file in errors and anchors relative paths.
    pub fn parse(path: &Path, text: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<Config> {
        let r = Resolver {
            shown: path.display().to_string(),
            base: crate::fsutil::parent_dir(path),
            env,
        };
        let raw: RawConfig =
            serde_yaml::from_str(text).map_err(|e| usage_error(format!("{}: {e}", r.shown)))?;

        let (api, token_in_file) = r.api(raw.token, raw.api_url, raw.api_timeout, raw.retry)?;
        let droplet = r.droplet(raw.droplet_options, raw.ssh_key_ids)?;
        let metadata_url = r
            .var("DOPROXY_METADATA_URL")
            .or(raw.metadata_url)
            .unwrap_or_else(|| DEFAULT_METADATA_URL.to_string());
        let metadata_url =
            validate_url(&metadata_url, false).map_err(|m| r.bad("metadata_url", m))?;
        let values = r.template_values(raw.haproxy.unwrap_or_default())?;

        if let Some(b) = &raw.frontend_bind {
            validate_bind(b).map_err(|m| r.bad("frontend_bind", m))?;
        }
        let backend_port = raw.backend_port.unwrap_or(80);
        if backend_port == 0 {
            return Err(r.bad("backend_port", "must be 1-65535".into()));
        }
        let readiness_path = raw.readiness_path.unwrap_or_else(|| "/".into());
        if !readiness_path.starts_with('/')
            || readiness_path
                .chars()
                .any(|c| c.is_whitespace() || c.is_control())
        {
            return Err(r.bad(
                "readiness_path",
                format!("{readiness_path:?} must be a path starting with '/'"),
            ));
        }
        let inventory = r.inventory(raw.inventory, raw.inventory_file)?;
        let cfg_name = raw
            .haproxy_cfg_file
            .file_name()
            .ok_or_else(|| r.bad("haproxy_cfg_file", "must name a file".into()))?
            .to_owned();
        let lock_timeout = r.dur("lock_timeout", raw.lock_timeout, Duration::from_secs(300))?;
        let haproxy = haproxy::Settings {
            template_file: raw.haproxy_template_file.as_deref().map(|p| r.path(p)),
            rendered_cfg: r.path(&raw.haproxy_cfg_file),
            installed_cfg: r.path(&raw.haproxy_cfg_path).join(cfg_name),
            check_command: raw
                .check_command
                .unwrap_or_else(|| "haproxy -c -f {config}".into()),
            reload_command: raw
                .reload_command
                .unwrap_or_else(|| "systemctl reload haproxy".into()),
            workdir: r.base.clone(),
            command_env: haproxy::exec::child_env(path),
            max_unplanned_shrink: match raw.max_unplanned_shrink {
                None => 0.5,
                Some(f) if (0.0..=1.0).contains(&f) => f,
                Some(f) => {
                    return Err(r.bad(
                        "max_unplanned_shrink",
                        format!("{f} is not a fraction between 0 and 1 (e.g. 0.5)"),
                    ))
                }
            },
            command_timeout: r.dur(
                "command_timeout",
                raw.command_timeout,
                Duration::from_secs(60),
            )?,
            backend_port,
            frontend_bind: raw.frontend_bind,
            lock_timeout,
            drain_timeout: r.dur("drain_timeout", raw.drain_timeout, Duration::from_secs(30))?,
            reload_verify_timeout: r.dur(
                "reload_verify_timeout",
                raw.reload_verify_timeout,
                Duration::from_secs(10),
            )?,
            values,
        };
        let autoscale = raw.autoscale.map(|a| r.autoscale(a)).transpose()?;
        let create = CreateSettings {
            wait_timeout: r.dur("wait_timeout", raw.wait_timeout, Duration::from_secs(600))?,
            poll_interval: r.dur("poll_interval", raw.poll_interval, Duration::from_secs(5))?,
            not_found_grace: r.dur(
                "not_found_grace",
                raw.not_found_grace,
                Duration::from_secs(120),
            )?,
            readiness_check: raw.readiness_check.unwrap_or(false),
            readiness_path,
        };
        Ok(Config {
            path: path.to_path_buf(),
            token_in_file,
            api,
            metadata_url,
            droplet,
            userdata_file: raw.userdata_file.as_deref().map(|p| r.path(p)),
            haproxy,
            store: store::Settings {
                backend: inventory,
                lock_timeout,
            },
            create,
            watch_debounce: r.dur(
                "watch_debounce",
                raw.watch_debounce,
                Duration::from_millis(500),
            )?,
            autoscale,
        })
    }

    /// Reads the user-data file (at most 64 KiB, the API's limit).
    pub fn user_data(&self) -> Result<Option<String>> {
        let Some(p) = &self.userdata_file else {
            return Ok(None);
        };
        crate::trust::check_if_present(p, "userdata_file")?;
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
) -> Result<(Secret, bool), String> {
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
    Ok((Secret::new(value), source == "value"))
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
    if b == "anchor" {
        // The droplet's anchor IP, for a load balancer behind a reserved IP.
        return Ok(());
    }
    let err = || format!("{b:?} is not ip:port (e.g. 203.0.113.10:80 or [::1]:8080) or `anchor`");
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
            matches!(&c.store.backend, store::Backend::File(p) if p == Path::new("/opt/dp/inventory"))
        );
        assert_eq!(
            c.haproxy.installed_cfg,
            Path::new("/etc/haproxy/haproxy.cfg")
        );
        assert_eq!(c.haproxy.rendered_cfg, Path::new("/opt/dp/haproxy.cfg"));
        assert_eq!(c.api.api_url, DEFAULT_API_URL);
        assert_eq!(c.droplet.tags, vec!["doproxy".to_string()]);
        assert_eq!(c.droplet.ssh_keys, vec![IntOrString::Int(163420)]);
        assert_eq!(c.haproxy.backend_port, 80);
    }

    #[test]
    fn env_token_and_api_url_override() {
        let env = |k: &str| match k {
            "DIGITALOCEAN_TOKEN" => Some("envtok".to_string()),
            "DIGITALOCEAN_API_URL" => Some("http://127.0.0.1:9/".to_string()),
            _ => None,
        };
        let c = Config::parse(Path::new("d.yml"), ORIGINAL, &env).unwrap();
        assert_eq!(c.api.token.expose(), "envtok");
        assert_eq!(c.api.api_url, "http://127.0.0.1:9");
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
        match c.store.backend {
            store::Backend::Etcd(e) => {
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

    /// `haproxy:` with `key` written as `value` (a YAML scalar; `None` leaves it out).
    fn haproxy_with(key: &str, value: Option<&str>) -> TemplateValues {
        let section = match value {
            Some(v) => format!("haproxy:\n  {key}: {v}\n"),
            None => "haproxy:\n  maxconn: 100\n".to_string(),
        };
        Config::parse(Path::new("d.yml"), &format!("{ORIGINAL}{section}"), &no_env)
            .unwrap()
            .haproxy
            .values
    }

    #[test]
    fn haproxy_null_and_empty_leave_the_line_out_absent_keeps_the_default() {
        type Get = fn(&TemplateValues) -> Option<String>;
        let keys: [(&str, &str, Get); 5] = [
            ("chroot", "/var/lib/haproxy", |v| v.chroot.clone()),
            ("user", "haproxy", |v| v.user.clone()),
            ("group", "haproxy", |v| v.group.clone()),
            ("log", "/dev/log local0", |v| v.log.clone()),
            ("stats_socket", "/run/haproxy/admin.sock", |v| {
                v.stats_socket.clone()
            }),
        ];
        for (key, default, get) in keys {
            assert_eq!(get(&haproxy_with(key, Some("null"))), None, "{key}: null");
            assert_eq!(get(&haproxy_with(key, Some("~"))), None, "{key}: ~");
            assert_eq!(get(&haproxy_with(key, Some("''"))), None, "{key}: ''");
            assert_eq!(get(&haproxy_with(key, Some(""))), None, "{key}: (nothing)");
            assert_eq!(
                get(&haproxy_with(key, None)).as_deref(),
                Some(default),
                "{key}: absent"
            );
        }
        assert_eq!(
            haproxy_with("chroot", Some("/srv/jail")).chroot.as_deref(),
            Some("/srv/jail")
        );
        // No `haproxy:` section at all: every default.
        let c = Config::parse(Path::new("d.yml"), ORIGINAL, &no_env).unwrap();
        assert_eq!(c.haproxy.values.chroot.as_deref(), Some("/var/lib/haproxy"));
        // The flow form the issue reported.
        let c = Config::parse(
            Path::new("d.yml"),
            &format!("{ORIGINAL}haproxy: {{chroot: null, log: null}}\n"),
            &no_env,
        )
        .unwrap();
        assert_eq!(
            (c.haproxy.values.chroot, c.haproxy.values.log),
            (None, None)
        );
        assert_eq!(c.haproxy.values.user.as_deref(), Some("haproxy"));
    }

    #[test]
    fn durations_below_their_minimum_are_refused_naming_the_key() {
        for (key, min, _) in MIN_DURATIONS {
            let (section, leaf) = match key.split_once('.') {
                Some((s, l)) => (Some(s), l),
                None => (None, *key),
            };
            if min.is_zero() {
                continue;
            }
            let below = "0";
            let set = |v: &str| {
                match section {
                None => format!("{ORIGINAL}{leaf}: {v}\n"),
                Some("inventory") => ORIGINAL.replace(
                    "inventory_file: inventory\n",
                    &format!(
                        "inventory:\n  backend: etcd\n  endpoints: [http://127.0.0.1:2379]\n  {leaf}: {v}\n"
                    ),
                ),
                Some(s) => format!("{ORIGINAL}{s}:\n  {leaf}: {v}\n"),
            }
            };
            let e = Config::parse(Path::new("d.yml"), &set(below), &no_env)
                .unwrap_err()
                .to_string();
            assert!(
                e.contains(&format!("d.yml: {key}: ")) && e.contains("below the minimum"),
                "{key}: {e}"
            );
            let at = format!("{}ms", min.as_millis());
            let at = if *key == "retry.max_delay" {
                // max_delay must also be at least min_delay (default 1s).
                "1s".to_string()
            } else {
                at
            };
            Config::parse(Path::new("d.yml"), &set(&at), &no_env)
                .unwrap_or_else(|e| panic!("{key}: {at} is allowed: {e}"));
        }
        let c = Config::parse(
            Path::new("d.yml"),
            &format!("{ORIGINAL}drain_timeout: 0\n"),
            &no_env,
        )
        .unwrap();
        assert_eq!(c.haproxy.drain_timeout, Duration::ZERO);
        let e = Config::parse(
            Path::new("d.yml"),
            &format!("{ORIGINAL}retry:\n  min_delay: 2s\n  max_delay: 1s\n"),
            &no_env,
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("retry.max_delay") && e.contains("min_delay"),
            "{e}"
        );
    }

    #[test]
    fn deployment_tag_comes_first_and_is_validated() {
        let c = Config::parse(Path::new("d.yml"), ORIGINAL, &no_env).unwrap();
        assert_eq!(c.droplet.doproxy_tag(), DEFAULT_TAG);
        let text = ORIGINAL.replace(
            "  hostname_prefix: auto-nginx\n",
            "  hostname_prefix: auto-nginx\n  deployment_tag: shop-blue\n  tags: [web, doproxy, shop-blue]\n",
        );
        let c = Config::parse(Path::new("d.yml"), &text, &no_env).unwrap();
        assert_eq!(c.droplet.doproxy_tag(), "shop-blue");
        assert_eq!(c.droplet.tags, ["shop-blue", "web", "doproxy"]);
        for bad in ["''", "'has space'", "'a/b'", "'x\\ny'"] {
            let text = ORIGINAL.replace(
                "  hostname_prefix: auto-nginx\n",
                &format!("  hostname_prefix: auto-nginx\n  deployment_tag: {bad}\n"),
            );
            let e = Config::parse(Path::new("d.yml"), &text, &no_env)
                .unwrap_err()
                .to_string();
            assert!(e.contains("droplet_options.deployment_tag"), "{bad}: {e}");
        }
    }

    #[test]
    fn etcd_needs_https_off_loopback() {
        let etcd = |endpoints: &str, auth: &str| {
            let endpoints: Vec<String> = endpoints.split(", ").map(|e| format!("'{e}'")).collect();
            let endpoints = endpoints.join(", ");
            let text = ORIGINAL.replace(
                "inventory_file: inventory\n",
                &format!("inventory:\n  backend: etcd\n  endpoints: [{endpoints}]\n{auth}"),
            );
            Config::parse(Path::new("d.yml"), &text, &no_env).map_err(|e| e.to_string())
        };
        let auth = "  username: doproxy\n  password: s3cret-pw\n";
        for ok in [
            "http://127.0.0.1:2379",
            "http://127.9.8.7:2379",
            "http://localhost:2379",
            "http://[::1]:2379",
            "https://10.10.0.2:2379",
            "https://etcd.internal:2379",
        ] {
            etcd(ok, "").unwrap();
            etcd(ok, auth).unwrap();
        }
        for bad in [
            "http://10.10.0.2:2379",
            "http://etcd.internal:2379",
            "http://[fd00::2]:2379",
            "https://10.0.0.1:2379, http://10.0.0.2:2379",
        ] {
            let e = etcd(bad, "").unwrap_err();
            assert!(
                e.contains("inventory.endpoints") && e.contains("https://"),
                "{bad}: {e}"
            );
            let e = etcd(bad, auth).unwrap_err();
            assert!(
                e.contains("password in clear text") && !e.contains("s3cret-pw"),
                "{bad}: {e}"
            );
        }
        let e = etcd("ftp://127.0.0.1:2379", "").unwrap_err();
        assert!(e.contains("not an http(s) URL"), "{e}");
    }

    #[test]
    fn autoscale_section_resolves_with_defaults() {
        let c = Config::parse(Path::new("d.yml"), ORIGINAL, &no_env).unwrap();
        assert!(c.autoscale.is_none());
        let text = format!("{ORIGINAL}autoscale:\n  max: 40\n  standby: 2\n  stabilization_down: 10m\n  targets:\n    requests_per_second_per_server: 150\n");
        let a = Config::parse(Path::new("d.yml"), &text, &no_env)
            .unwrap()
            .autoscale
            .unwrap();
        assert_eq!((a.min, a.max, a.standby), (1, 40, 2));
        assert_eq!(a.stabilization_down, Duration::from_secs(600));
        // Naming targets replaces the default one.
        assert_eq!(a.targets.sessions_per_server, None);
        assert_eq!(a.targets.requests_per_second_per_server, Some(150.0));
        let text = format!("{ORIGINAL}autoscale: {{}}\n");
        let a = Config::parse(Path::new("d.yml"), &text, &no_env).unwrap();
        assert_eq!(a.autoscale, Some(crate::autoscale::Settings::default()));
    }

    #[test]
    fn autoscale_errors_name_the_key() {
        for (yaml, key) in [
            (
                "autoscale:\n  min: 5\n  max: 2\n",
                "doproxy.yml: autoscale.min: must be ≤ max",
            ),
            ("autoscale:\n  mim: 5\n", "mim"),
            ("autoscale:\n  tolerance: 1.5\n", "autoscale.tolerance"),
            ("autoscale:\n  tick: 0s\n", "autoscale.tick"),
            (
                "autoscale:\n  stabilization_down: soon\n",
                "autoscale.stabilization_down",
            ),
            ("autoscale:\n  targets: {}\n", "autoscale.targets"),
            (
                "autoscale:\n  targets:\n    queue_time_ms: 0\n",
                "autoscale.targets.queue_time_ms",
            ),
            (
                "autoscale:\n  max_hourly_cost: -1\n",
                "autoscale.max_hourly_cost",
            ),
        ] {
            let e = Config::parse(
                Path::new("doproxy.yml"),
                &format!("{ORIGINAL}{yaml}"),
                &no_env,
            )
            .unwrap_err()
            .to_string();
            assert!(e.contains(key), "{yaml}: {e}");
        }
    }

    #[test]
    fn autoscale_section_alone_needs_no_token() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("doproxy.yml");
        std::fs::write(
            &p,
            "autoscale:\n  max: 7\nhaproxy:\n  stats_socket: /tmp/x.sock\n",
        )
        .unwrap();
        let a = AutoscaleSection::load(&p).unwrap();
        assert_eq!(a.settings.map(|s| s.max), Some(7));
        assert_eq!(a.stats_socket, Some(Some("/tmp/x.sock".to_string())));
        std::fs::write(&p, "autoscale:\n  min: 11\n").unwrap();
        let e = AutoscaleSection::load(&p).unwrap_err().to_string();
        assert!(e.contains("autoscale.min: must be ≤ max"), "{e}");
    }

    #[test]
    fn example_autoscale_section_is_the_defaults() {
        // The example's commented-out autoscale: section, uncommented, is the defaults.
        let text = include_str!("../doproxy.yml.example");
        let section: String = text
            .lines()
            .skip_while(|l| !l.starts_with("# autoscale:"))
            .filter_map(|l| l.strip_prefix("# "))
            .filter(|l| !l.trim_start().starts_with('#'))
            .map(|l| format!("{}\n", l.split(" #").next().unwrap_or(l).trim_end()))
            .collect();
        let mut yaml = format!("{ORIGINAL}{section}");
        // Uncommented, the cost cap would be set; the default has none.
        yaml = yaml.replace("  max_hourly_cost: 5.0\n", "");
        yaml = yaml.replace("  hourly_price: 0.00893\n", "");
        // Likewise the metrics listener (the default has none).
        yaml = yaml.replace("  metrics_listen: 127.0.0.1:9150\n", "");
        let c = Config::parse(Path::new("d.yml"), &yaml, &no_env).unwrap();
        assert_eq!(
            c.autoscale,
            Some(crate::autoscale::Settings::default()),
            "{yaml}"
        );
    }

    #[test]
    fn example_config_loads() {
        let text = include_str!("../doproxy.yml.example");
        let c = Config::parse(Path::new("/etc/doproxy/doproxy.yml"), text, &no_env).unwrap();
        assert_eq!(
            c.haproxy.installed_cfg,
            Path::new("/etc/haproxy/haproxy.cfg")
        );
        assert_eq!(c.create.wait_timeout, Duration::from_secs(600));
        assert_eq!(
            c.haproxy.values.stats_socket.as_deref(),
            Some("/run/haproxy/admin.sock")
        );
    }
}
