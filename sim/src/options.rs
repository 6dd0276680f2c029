//! The public configuration types: [`SimOptions`] (fixed at start, or the starting value
//! of a run-time knob), [`Faults`] (run-time changes), [`MetadataIdentity`],
//! [`Placement`] and [`ScopedToken`]; and their validation.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Everything a simulator can be configured with. See the field comments and
/// `README.md` for what each knob does. Every "rough edge" knob is off by default.
#[derive(Clone, Debug)]
pub struct SimOptions {
    /// The bearer token every `/v2` request must carry; it has every scope. Default
    /// `sim-token`.
    pub token: String,
    /// Where to listen; must be an address in 127.0.0.0/8. Default `127.0.0.1:0`.
    pub listen: SocketAddr,
    /// Delay from create to `active`. Default 3 s.
    pub active_after: Duration,
    /// A new droplet is 404 on `GET /v2/droplets/{id}` (and missing from lists) for this
    /// long. Default 0.
    pub not_found_after_create: Duration,
    /// A new droplet is missing from `GET /v2/droplets` for this long, while GET by id
    /// may already answer. Lists omit it for the longer of this and
    /// `not_found_after_create`. Default 0.
    pub list_lag_after_create: Duration,
    /// A deleted droplet is still returned (status unchanged) by GET and lists for this
    /// long. Default 0.
    pub delete_linger: Duration,
    /// Up to this much extra delay, drawn per droplet from a seeded PRNG, is added to
    /// each of the three windows above that is not zero. Default 0.
    pub lag_jitter: Duration,
    /// Fraction of API-created droplets whose create action ends `errored`. Default 0.
    pub create_failure_rate: f64,
    /// Added to every API request. Default 0.
    pub latency: Duration,
    /// Per-minute request limit; `None` turns it off. Default `Some(250)`.
    pub rate_limit_per_minute: Option<u32>,
    /// Per-hour request limit (also the `ratelimit-limit` header). Default 5000.
    pub rate_limit_per_hour: u32,
    /// A 429 from the hourly limit carries no `retry-after` (only `ratelimit-reset` and
    /// `ratelimit-remaining: 0`); the per-minute one keeps it. Default false.
    pub omit_hourly_retry_after: bool,
    /// Fraction of API requests answered 500/502/503. Default 0.
    pub error_rate: f64,
    /// Where those 500/502/503 happen. Default [`Placement::Before`] (no side effects).
    pub error_placement: Placement,
    /// Fraction of API requests whose connection is dropped without a response. Default 0.
    pub reset_rate: f64,
    /// Where those resets happen. Default [`Placement::CreatesAfter`].
    pub reset_placement: Placement,
    /// Fraction of API requests answered by a Cloudflare-style 520..=524 HTML page before
    /// the request reaches the API (nothing happens). Default 0.
    pub cloudflare_rate: f64,
    /// Fraction of API requests answered by a Cloudflare-style 520 or 524 HTML page after
    /// the request took effect (e.g. the droplet is created). Default 0.
    pub cloudflare_after_rate: f64,
    /// Send `null` instead of empty arrays, objects and strings in droplet, action, list
    /// and create bodies (`networks: null`, `tags: null`, `links: null`...). Default false.
    pub nulls_for_empty: bool,
    /// Extra bearer tokens, each limited to its scopes. Default none.
    pub tokens: Vec<ScopedToken>,
    /// New droplet and action ids start above 2^32. Default false.
    pub big_ids: bool,
    /// Multi-create answers list `links.actions` in a shuffled order. Default false.
    pub shuffle_actions: bool,
    /// Report `locked: true` while a droplet is `new` (the old "booting" reading of
    /// `locked`). Default false: `locked` is only the administrative lock
    /// ([`crate::Sim::lock_direct`]), as the real API uses it today.
    pub locked_while_new: bool,
    /// Seed of the fault, jitter, shuffle and id PRNGs. Default 1.
    pub seed: u64,
    /// The account's `droplet_limit`. Default 25.
    pub droplet_limit: u32,
    /// Start an HTTP app per active droplet on `private_ip:backend_port`. Default false.
    pub serve_apps: bool,
    /// Port of the per-droplet apps. Default 8080.
    pub backend_port: u16,
    /// Extra delay after `active` before the app accepts connections. Default 0.
    pub app_boot_delay: Duration,
    /// How long each app request takes (an async sleep before the answer, health checks
    /// included; after waiting for a worker under `app_concurrency`). Changeable at run
    /// time ([`Faults::app_service_time_ms`]) and per droplet
    /// ([`crate::Sim::set_app_service_time_direct`]). Default 0.
    pub app_service_time: Duration,
    /// At most this many requests served at once per droplet app; the excess waits in
    /// the app (a worker pool). `None`: unlimited; `Some(0)` is refused. Changeable at
    /// run time ([`Faults::app_concurrency`]). Default `None`.
    pub app_concurrency: Option<usize>,
    /// The droplet the metadata service describes (the load balancer).
    pub metadata: MetadataIdentity,
}

impl Default for SimOptions {
    fn default() -> Self {
        SimOptions {
            token: "sim-token".to_string(),
            listen: SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 0),
            active_after: Duration::from_secs(3),
            not_found_after_create: Duration::ZERO,
            list_lag_after_create: Duration::ZERO,
            delete_linger: Duration::ZERO,
            lag_jitter: Duration::ZERO,
            create_failure_rate: 0.0,
            latency: Duration::ZERO,
            rate_limit_per_minute: Some(250),
            rate_limit_per_hour: 5000,
            omit_hourly_retry_after: false,
            error_rate: 0.0,
            error_placement: Placement::Before,
            reset_rate: 0.0,
            reset_placement: Placement::CreatesAfter,
            cloudflare_rate: 0.0,
            cloudflare_after_rate: 0.0,
            nulls_for_empty: false,
            tokens: Vec::new(),
            big_ids: false,
            shuffle_actions: false,
            locked_while_new: false,
            seed: 1,
            droplet_limit: 25,
            serve_apps: false,
            backend_port: 8080,
            app_boot_delay: Duration::ZERO,
            app_service_time: Duration::ZERO,
            app_concurrency: None,
            metadata: MetadataIdentity::default(),
        }
    }
}

impl SimOptions {
    pub(crate) fn validate(&self) -> anyhow::Result<()> {
        for (name, v) in [
            ("error_rate", self.error_rate),
            ("reset_rate", self.reset_rate),
            ("create_failure_rate", self.create_failure_rate),
            ("cloudflare_rate", self.cloudflare_rate),
            ("cloudflare_after_rate", self.cloudflare_after_rate),
        ] {
            check_rate(name, v)?;
        }
        check_tokens(&self.tokens)?;
        check_concurrency(self.app_concurrency)?;
        self.metadata.validate()
    }
}

/// Where an injected failure (a 5xx or a reset) happens, relative to the request's
/// effect. As a string: `before`, `after` or `creates-after`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Placement {
    /// The request never reaches the handler: nothing happens.
    Before,
    /// The request is fully processed (droplets created or deleted, a 422 decided), then
    /// the client gets the failure instead of the answer.
    After,
    /// `After` for `POST /v2/droplets`, `Before` for every other request.
    CreatesAfter,
}

impl Placement {
    /// Whether the failure comes after the handler ran, for a create or another request.
    pub(crate) fn after(self, is_create: bool) -> bool {
        match self {
            Placement::Before => false,
            Placement::After => true,
            Placement::CreatesAfter => is_create,
        }
    }
}

impl FromStr for Placement {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "before" => Ok(Placement::Before),
            "after" => Ok(Placement::After),
            "creates-after" => Ok(Placement::CreatesAfter),
            _ => Err(format!(
                "expected before, after or creates-after, got {s:?}"
            )),
        }
    }
}

impl std::fmt::Display for Placement {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Placement::Before => "before",
            Placement::After => "after",
            Placement::CreatesAfter => "creates-after",
        })
    }
}

/// An extra bearer token limited to DigitalOcean custom scopes (`droplet:read`,
/// `droplet:create`, `tag:create`, ...). A request that needs a scope it lacks gets a
/// 403 `forbidden`. As a string (the `--scoped-token` flag): `TOKEN=scope,scope`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScopedToken {
    /// The bearer token.
    pub token: String,
    /// Its scopes, matched exactly.
    pub scopes: Vec<String>,
}

impl ScopedToken {
    /// A token with these scopes.
    pub fn new(token: &str, scopes: &[&str]) -> Self {
        ScopedToken {
            token: token.to_string(),
            scopes: scopes.iter().map(|s| s.to_string()).collect(),
        }
    }
}

impl FromStr for ScopedToken {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (token, scopes) = s
            .split_once('=')
            .ok_or_else(|| "expected TOKEN=scope,scope".to_string())?;
        let t = ScopedToken {
            token: token.to_string(),
            scopes: scopes
                .split(',')
                .filter(|x| !x.is_empty())
                .map(str::to_string)
                .collect(),
        };
        check_tokens(std::slice::from_ref(&t)).map_err(|e| e.to_string())?;
        Ok(t)
    }
}

fn check_tokens(tokens: &[ScopedToken]) -> anyhow::Result<()> {
    for t in tokens {
        if t.token.is_empty() || t.token.chars().any(|c| c.is_whitespace()) {
            anyhow::bail!("a scoped token must be non-empty, without spaces");
        }
    }
    Ok(())
}

/// What `/metadata/v1/...` reports: the droplet doproxy itself runs on. The addresses
/// added with the reserved-IP support (`anchor_ipv4`, `reserved_ipv4`, `public_ipv6`)
/// must be loopback: IPv4 in 127.0.0.0/8, IPv6 `::1`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MetadataIdentity {
    /// Droplet id, served at `/metadata/v1/id`.
    pub id: u64,
    /// Droplet name, served at `/metadata/v1/hostname`.
    pub hostname: String,
    /// Public IPv4 address (dotted quad) of the `public` interface.
    pub public_ipv4: String,
    /// Private IPv4 address (dotted quad) of the `private` interface.
    pub private_ipv4: String,
    /// User data, served verbatim at `/metadata/v1/user-data` (empty = none).
    pub user_data: String,
    /// Region slug, e.g. `nyc3`; also used for droplets from
    /// [`crate::Sim::create_droplet_direct`].
    pub region: String,
    /// Droplet tags, served one per line at `/metadata/v1/tags`.
    pub tags: Vec<String>,
    /// The anchor IPv4 of the public interface (`interfaces/public/0/anchor_ipv4/`,
    /// netmask 255.255.0.0, gateway `a.b.0.1`); `None`: no anchor interface (a droplet
    /// from a custom image). Default `Some("127.0.0.1")`.
    #[serde(default = "default_anchor")]
    pub anchor_ipv4: Option<String>,
    /// The reserved IPv4 assigned to the droplet (`reserved_ip/ipv4/ip_address`, and
    /// `active` true); `None`: none (`ip_address` empty, `active` false). Default `None`.
    #[serde(default)]
    pub reserved_ipv4: Option<String>,
    /// The public IPv6 (`interfaces/public/0/ipv6/`); only `::1` is allowed. `None`: no
    /// IPv6. Default `None`.
    #[serde(default)]
    pub public_ipv6: Option<String>,
}

fn default_anchor() -> Option<String> {
    Some("127.0.0.1".to_string())
}

impl Default for MetadataIdentity {
    fn default() -> Self {
        MetadataIdentity {
            id: 1000,
            hostname: "sim-lb".to_string(),
            public_ipv4: "127.0.0.1".to_string(),
            private_ipv4: "127.0.0.1".to_string(),
            user_data: String::new(),
            region: "nyc3".to_string(),
            tags: Vec::new(),
            anchor_ipv4: default_anchor(),
            reserved_ipv4: None,
            public_ipv6: None,
        }
    }
}

impl MetadataIdentity {
    pub(crate) fn validate(&self) -> anyhow::Result<()> {
        for (name, v) in [
            ("anchor_ipv4", &self.anchor_ipv4),
            ("reserved_ipv4", &self.reserved_ipv4),
        ] {
            if let Some(v) = v {
                match v.parse::<Ipv4Addr>() {
                    Ok(a) if a.is_loopback() => {}
                    _ => anyhow::bail!(
                        "metadata {name} must be an IPv4 address in 127.0.0.0/8, got {v:?}"
                    ),
                }
            }
        }
        if let Some(v) = &self.public_ipv6 {
            if v.parse::<Ipv6Addr>().ok() != Some(Ipv6Addr::LOCALHOST) {
                anyhow::bail!("metadata public_ipv6 must be ::1, got {v:?}");
            }
        }
        Ok(())
    }
}

/// Run-time changes to the knobs; `None` (absent in JSON) leaves a knob unchanged.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Faults {
    /// New `latency`: delay added to every `/v2` request, in milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency_ms: Option<u64>,
    /// New `error_rate`: fraction (0..=1) of `/v2` requests answered 500/502/503.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_rate: Option<f64>,
    /// New `reset_rate`: fraction (0..=1) of `/v2` requests reset without a response.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reset_rate: Option<f64>,
    /// `Some(None)` (JSON `null`) turns the per-minute limit off; absent leaves it.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "present_nullable"
    )]
    pub rate_limit_per_minute: Option<Option<u32>>,
    /// New `rate_limit_per_hour`: requests allowed per sliding hour (also `ratelimit-limit`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limit_per_hour: Option<u32>,
    /// New `create_failure_rate`: fraction (0..=1) of API creates whose action ends `errored`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub create_failure_rate: Option<f64>,
    /// New `active_after`, in milliseconds; applies to droplets created after the change.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub active_after_ms: Option<u64>,
    /// New `locked_while_new`; applies to droplets created after the change.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub locked_while_new: Option<bool>,
    /// New `not_found_after_create`, in ms; applies to droplets created after the change.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_found_after_create_ms: Option<u64>,
    /// New `list_lag_after_create`, in ms; applies to droplets created after the change.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub list_lag_after_create_ms: Option<u64>,
    /// New `delete_linger`, in ms; applies to droplets deleted after the change.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delete_linger_ms: Option<u64>,
    /// New `lag_jitter`, in ms; applies to windows started after the change.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lag_jitter_ms: Option<u64>,
    /// New `omit_hourly_retry_after`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub omit_hourly_retry_after: Option<bool>,
    /// New `error_placement`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_placement: Option<Placement>,
    /// New `reset_placement`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reset_placement: Option<Placement>,
    /// New `cloudflare_rate` (0..=1): 52x pages before the request reaches the API.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cloudflare_rate: Option<f64>,
    /// New `cloudflare_after_rate` (0..=1): 520/524 pages after the request took effect.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cloudflare_after_rate: Option<f64>,
    /// New `nulls_for_empty`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nulls_for_empty: Option<bool>,
    /// Replaces the extra scoped tokens (`[]` removes them all).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tokens: Option<Vec<ScopedToken>>,
    /// New `big_ids`: true makes the next ids jump above 2^32; false keeps counting from
    /// where the ids are (ids are never reused).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub big_ids: Option<bool>,
    /// New `shuffle_actions`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shuffle_actions: Option<bool>,
    /// Replaces the metadata identity (e.g. to assign or move a reserved IP).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<MetadataIdentity>,
    /// New `app_service_time`, in ms: applies to the next request of every app, running
    /// ones included (a droplet's own override still wins).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app_service_time_ms: Option<u64>,
    /// New `app_concurrency`: `Some(Some(n))` (n >= 1) limits every app to n requests at
    /// once, `Some(None)` (JSON `null`) lifts the limit; absent leaves it. Applies to
    /// requests arriving after the change, in running apps too; requests already queued
    /// or served keep the old limit.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "present_nullable"
    )]
    pub app_concurrency: Option<Option<usize>>,
}

/// Distinguishes "present and null" (`Some(None)`) from "absent" (`None`,
/// via `#[serde(default)]`).
fn present_nullable<'de, D, T>(d: D) -> Result<Option<Option<T>>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(d).map(Some)
}

fn check_concurrency(n: Option<usize>) -> anyhow::Result<()> {
    if n == Some(0) {
        anyhow::bail!("app_concurrency must be at least 1 (or none for unlimited)");
    }
    Ok(())
}

pub(crate) fn check_rate(name: &str, v: f64) -> anyhow::Result<()> {
    if !(0.0..=1.0).contains(&v) {
        anyhow::bail!("{name} must be between 0 and 1, got {v}");
    }
    Ok(())
}

impl Faults {
    /// Errors for what `POST /_sim/faults` refuses with a 400 (a rate outside 0..=1, a
    /// bad token, a non-loopback metadata address, an `app_concurrency` of 0).
    /// [`crate::Sim::set_faults`] clamps rates (and an `app_concurrency` of 0 to 1)
    /// instead and ignores an invalid `tokens` or `metadata`.
    pub(crate) fn validate(&self) -> anyhow::Result<()> {
        for (name, v) in [
            ("error_rate", self.error_rate),
            ("reset_rate", self.reset_rate),
            ("create_failure_rate", self.create_failure_rate),
            ("cloudflare_rate", self.cloudflare_rate),
            ("cloudflare_after_rate", self.cloudflare_after_rate),
        ] {
            if let Some(v) = v {
                check_rate(name, v)?;
            }
        }
        if let Some(t) = &self.tokens {
            check_tokens(t)?;
        }
        if let Some(n) = self.app_concurrency {
            check_concurrency(n)?;
        }
        if let Some(m) = &self.metadata {
            m.validate()?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placements_and_tokens_parse() {
        for p in [Placement::Before, Placement::After, Placement::CreatesAfter] {
            assert_eq!(p.to_string().parse::<Placement>(), Ok(p));
            let j = serde_json::to_value(p).unwrap_or_default();
            assert_eq!(j, serde_json::json!(p.to_string()));
        }
        assert!("sometimes".parse::<Placement>().is_err());
        assert!(Placement::CreatesAfter.after(true) && !Placement::CreatesAfter.after(false));
        assert!(Placement::After.after(false) && !Placement::Before.after(true));
        let t: ScopedToken = "ro=droplet:read,,actions:read"
            .parse()
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(t, ScopedToken::new("ro", &["droplet:read", "actions:read"]));
        assert!("no-equals".parse::<ScopedToken>().is_err());
        assert!("=droplet:read".parse::<ScopedToken>().is_err());
        assert_eq!(
            "none=".parse::<ScopedToken>().map(|t| t.scopes.len()),
            Ok(0)
        );
    }

    #[test]
    fn metadata_addresses_must_be_loopback() {
        let ok = MetadataIdentity {
            anchor_ipv4: Some("127.0.5.9".into()),
            reserved_ipv4: Some("127.1.2.3".into()),
            public_ipv6: Some("::1".into()),
            ..MetadataIdentity::default()
        };
        assert!(ok.validate().is_ok());
        for bad in [
            MetadataIdentity {
                anchor_ipv4: Some("10.17.0.160".into()),
                ..ok.clone()
            },
            MetadataIdentity {
                reserved_ipv4: Some("45.55.96.17".into()),
                ..ok.clone()
            },
            MetadataIdentity {
                reserved_ipv4: Some("x".into()),
                ..ok.clone()
            },
            MetadataIdentity {
                public_ipv6: Some("2604:a880::1".into()),
                ..ok.clone()
            },
        ] {
            assert!(bad.validate().is_err(), "{bad:?}");
        }
        // Absent in JSON: the defaults (an anchor, no reserved IP, no IPv6).
        let j = serde_json::json!({"id": 1, "hostname": "h", "public_ipv4": "127.0.0.1",
            "private_ipv4": "127.0.0.1", "user_data": "", "region": "nyc3", "tags": []});
        let m: MetadataIdentity = serde_json::from_value(j).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(m.anchor_ipv4.as_deref(), Some("127.0.0.1"));
        assert_eq!((m.reserved_ipv4, m.public_ipv6), (None, None));
    }
}
