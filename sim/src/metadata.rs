//! The droplet metadata service (`/metadata/v1/...`), describing the droplet
//! doproxy runs on ([`crate::MetadataIdentity`]). Plain text, no auth, not
//! rate limited, not logged.

use hyper::header::{HeaderValue, LOCATION};
use hyper::StatusCode;
use serde_json::json;

use crate::http::{self, Resp};
use crate::state::Inner;
use crate::{util, MetadataIdentity};

const PRIVATE_NETMASK: &str = "255.255.0.0";
const PRIVATE_GATEWAY: &str = "0.0.0.0";
const PUBLIC_NETMASK: &str = "255.255.255.0";
/// Anchor IPs live in a /16 (the metadata spec's example: 10.17.0.160, 255.255.0.0).
const ANCHOR_NETMASK: &str = "255.255.0.0";
/// The only IPv6 allowed is `::1`, a /128.
const IPV6_CIDR: &str = "128";

enum Node {
    Leaf(String),
    /// Entries, one per line; sub-directories end in '/'.
    Dir(Vec<&'static str>),
}

/// `a.b.c.1` for a dotted quad, else empty.
fn gateway_of(ip: &str) -> String {
    match ip.parse::<std::net::Ipv4Addr>() {
        Ok(a) => {
            let o = a.octets();
            format!("{}.{}.{}.1", o[0], o[1], o[2])
        }
        Err(_) => String::new(),
    }
}

fn mac(id: u64, salt: u64) -> String {
    let h = util::mix64(id ^ salt);
    format!(
        "02:00:{:02x}:{:02x}:{:02x}:{:02x}",
        (h >> 24) & 0xff,
        (h >> 16) & 0xff,
        (h >> 8) & 0xff,
        h & 0xff
    )
}

fn lines(items: &[String]) -> String {
    items.iter().map(|t| format!("{t}\n")).collect()
}

/// `a.b.0.1` for a dotted quad (the gateway of a /16, as for anchor IPs), else empty.
fn gateway16_of(ip: &str) -> String {
    match ip.parse::<std::net::Ipv4Addr>() {
        Ok(a) => {
            let o = a.octets();
            format!("{}.{}.0.1", o[0], o[1])
        }
        Err(_) => String::new(),
    }
}

/// The public/0 attribute index: `mac`, `type`, `ipv4/`, then `anchor_ipv4/` and `ipv6/`
/// when the droplet has them.
fn public_index(m: &MetadataIdentity) -> Vec<&'static str> {
    let mut v = vec!["mac", "type", "ipv4/"];
    if m.anchor_ipv4.is_some() {
        v.push("anchor_ipv4/");
    }
    if m.public_ipv6.is_some() {
        v.push("ipv6/");
    }
    v
}

fn lookup(m: &MetadataIdentity, rel: &str) -> Option<Node> {
    let leaf = |s: String| Some(Node::Leaf(s));
    let iface = |kind: &str| -> Option<(String, String, String, String)> {
        match kind {
            "public" => Some((
                m.public_ipv4.clone(),
                PUBLIC_NETMASK.to_string(),
                gateway_of(&m.public_ipv4),
                mac(m.id, 1),
            )),
            "private" => Some((
                m.private_ipv4.clone(),
                PRIVATE_NETMASK.to_string(),
                PRIVATE_GATEWAY.to_string(),
                mac(m.id, 2),
            )),
            _ => None,
        }
    };
    let reserved = m.reserved_ipv4.clone().unwrap_or_default();
    let parts: Vec<&str> = rel.split('/').collect();
    match parts.as_slice() {
        [""] => Some(Node::Dir(vec![
            "id",
            "hostname",
            "user-data",
            "vendor-data",
            "public-keys",
            "region",
            "interfaces/",
            "dns/",
            "floating_ip/",
            "reserved_ip/",
            "tags/",
            "features/",
        ])),
        ["id"] => leaf(m.id.to_string()),
        ["hostname"] => leaf(m.hostname.clone()),
        ["user-data"] => leaf(m.user_data.clone()),
        ["vendor-data"] | ["public-keys"] => leaf(String::new()),
        ["region"] => leaf(m.region.clone()),
        // Served as a file and as a directory listing: one tag per line.
        ["tags"] => leaf(lines(&m.tags)),
        ["interfaces"] => Some(Node::Dir(vec!["public/", "private/"])),
        ["interfaces", kind] => iface(kind).map(|_| Node::Dir(vec!["0/"])),
        ["interfaces", "public", "0"] => Some(Node::Dir(public_index(m))),
        ["interfaces", kind, "0"] => iface(kind).map(|_| Node::Dir(vec!["mac", "type", "ipv4/"])),
        ["interfaces", kind, "0", "mac"] => iface(kind).map(|i| Node::Leaf(i.3)),
        ["interfaces", kind, "0", "type"] => iface(kind).map(|_| Node::Leaf(kind.to_string())),
        ["interfaces", kind, "0", "ipv4"] => {
            iface(kind).map(|_| Node::Dir(vec!["address", "netmask", "gateway"]))
        }
        ["interfaces", kind, "0", "ipv4", field] => {
            let i = iface(kind)?;
            match *field {
                "address" => leaf(i.0),
                "netmask" => leaf(i.1),
                "gateway" => leaf(i.2),
                _ => None,
            }
        }
        ["interfaces", "public", "0", "anchor_ipv4"] => m
            .anchor_ipv4
            .as_ref()
            .map(|_| Node::Dir(vec!["address", "netmask", "gateway"])),
        ["interfaces", "public", "0", "anchor_ipv4", field] => {
            let a = m.anchor_ipv4.as_ref()?;
            match *field {
                "address" => leaf(a.clone()),
                "netmask" => leaf(ANCHOR_NETMASK.to_string()),
                "gateway" => leaf(gateway16_of(a)),
                _ => None,
            }
        }
        ["interfaces", "public", "0", "ipv6"] => m
            .public_ipv6
            .as_ref()
            .map(|_| Node::Dir(vec!["address", "cidr", "gateway"])),
        ["interfaces", "public", "0", "ipv6", field] => {
            let a = m.public_ipv6.as_ref()?;
            match *field {
                "address" => leaf(a.clone()),
                "cidr" => leaf(IPV6_CIDR.to_string()),
                "gateway" => leaf(a.clone()),
                _ => None,
            }
        }
        ["dns"] => Some(Node::Dir(vec!["nameservers"])),
        ["dns", "nameservers"] => leaf(String::new()),
        ["floating_ip"] => Some(Node::Dir(vec!["ipv4/"])),
        ["reserved_ip"] => Some(Node::Dir(vec!["ipv4/", "ipv6/"])),
        ["floating_ip", "ipv4"] | ["reserved_ip", "ipv4"] | ["reserved_ip", "ipv6"] => {
            Some(Node::Dir(vec!["active", "ip_address"]))
        }
        ["floating_ip", "ipv4", "active"] | ["reserved_ip", "ipv4", "active"] => {
            leaf(m.reserved_ipv4.is_some().to_string())
        }
        ["floating_ip", "ipv4", "ip_address"] | ["reserved_ip", "ipv4", "ip_address"] => {
            leaf(reserved)
        }
        ["reserved_ip", "ipv6", "active"] => leaf("false".to_string()),
        ["reserved_ip", "ipv6", "ip_address"] => leaf(String::new()),
        ["features"] => Some(Node::Dir(vec!["dhcp_enabled"])),
        ["features", "dhcp_enabled"] => leaf("false".to_string()),
        _ => None,
    }
}

/// `reserved_ip`/`floating_ip` in `v1.json`: `{"ipv4": {"active": false}}` without a
/// reserved IP (the metadata spec's example), with `ip_address` when there is one.
fn reserved_json(m: &MetadataIdentity) -> serde_json::Value {
    match &m.reserved_ipv4 {
        Some(ip) => json!({ "ipv4": { "active": true, "ip_address": ip } }),
        None => json!({ "ipv4": { "active": false } }),
    }
}

fn all_json(m: &MetadataIdentity) -> serde_json::Value {
    let mut public = json!({
        "ipv4": {
            "ip_address": m.public_ipv4,
            "netmask": PUBLIC_NETMASK,
            "gateway": gateway_of(&m.public_ipv4),
        },
        "mac": mac(m.id, 1),
        "type": "public",
    });
    if let Some(a) = &m.anchor_ipv4 {
        public["anchor_ipv4"] = json!({
            "ip_address": a,
            "netmask": ANCHOR_NETMASK,
            "gateway": gateway16_of(a),
        });
    }
    if let Some(a) = &m.public_ipv6 {
        public["ipv6"] = json!({ "ip_address": a, "cidr": 128, "gateway": a });
    }
    json!({
        "droplet_id": m.id,
        "hostname": m.hostname,
        "user_data": m.user_data,
        "vendor_data": "",
        "public_keys": [],
        "auth_key": "",
        "region": m.region,
        "interfaces": {
            "public": [public],
            "private": [{
                "ipv4": {
                    "ip_address": m.private_ipv4,
                    "netmask": PRIVATE_NETMASK,
                    "gateway": PRIVATE_GATEWAY,
                },
                "mac": mac(m.id, 2),
                "type": "private",
            }],
        },
        "floating_ip": reserved_json(m),
        "reserved_ip": reserved_json(m),
        "dns": { "nameservers": [] },
        "features": { "dhcp_enabled": false },
        "tags": m.tags,
    })
}

fn not_found() -> Resp {
    http::text(StatusCode::NOT_FOUND, "404 page not found\n")
}

fn redirect(to: &str) -> Resp {
    let mut r = http::text(StatusCode::MOVED_PERMANENTLY, "");
    if let Ok(v) = HeaderValue::from_str(to) {
        r.headers_mut().insert(LOCATION, v);
    }
    r
}

pub(crate) fn handle(inner: &Inner, path: &str) -> Resp {
    let m = inner.lock().knobs.metadata.clone();
    if path == "/metadata/v1.json" {
        return http::json(StatusCode::OK, &all_json(&m));
    }
    if path == "/metadata/v1" {
        return redirect("/metadata/v1/");
    }
    let Some(rel) = path.strip_prefix("/metadata/v1/") else {
        return not_found();
    };
    let (rel, slash) = match rel.strip_suffix('/') {
        Some(r) => (r, true),
        None => (rel, false),
    };
    match lookup(&m, rel) {
        Some(Node::Dir(entries)) if slash || rel.is_empty() => http::text(
            StatusCode::OK,
            entries.iter().map(|e| format!("{e}\n")).collect::<String>(),
        ),
        Some(Node::Dir(_)) => redirect(&format!("{path}/")),
        Some(Node::Leaf(v)) if rel == "tags" || !slash => http::text(StatusCode::OK, v),
        _ => not_found(),
    }
}
