//! The parts of the API's Droplet, Action and list-page objects doproxy reads, and what a
//! new droplet looks like (the create request's fields).

use serde::{Deserialize, Serialize};
use std::net::Ipv4Addr;

/// A number or a string (SSH key IDs or fingerprints, an image slug or ID).
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

/// What new droplets look like (`droplet_options` and `ssh_key_ids`).
#[derive(Debug, Clone)]
pub struct DropletSpec {
    /// Hostnames are `<prefix>-<unique suffix>`.
    pub hostname_prefix: String,
    /// Region slug (the API picks one when absent).
    pub region: Option<String>,
    /// Size slug.
    pub size: String,
    /// Image slug or ID.
    pub image: IntOrString,
    /// Tags; the first is the deployment's tag, which marks droplets created by doproxy.
    pub tags: Vec<String>,
    /// VPC to place droplets in.
    pub vpc_uuid: Option<String>,
    /// Enable IPv6.
    pub ipv6: bool,
    /// Install the monitoring agent.
    pub monitoring: bool,
    /// SSH keys (IDs or fingerprints) put on new droplets.
    pub ssh_keys: Vec<IntOrString>,
}

impl DropletSpec {
    /// The tag that marks droplets created by doproxy (always the first tag).
    pub fn doproxy_tag(&self) -> &str {
        &self.tags[0]
    }

    /// The JSON fields of a create request other than the names and user data.
    pub fn request_fields(&self) -> serde_json::Map<String, serde_json::Value> {
        let mut m = serde_json::Map::new();
        if let Some(r) = &self.region {
            m.insert("region".into(), r.clone().into());
        }
        m.insert("size".into(), self.size.clone().into());
        m.insert("image".into(), self.image.to_json());
        m.insert(
            "ssh_keys".into(),
            self.ssh_keys
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

/// A droplet as the API returns it (only the fields doproxy uses; the rest is ignored).
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
pub struct Droplet {
    /// Droplet ID.
    pub id: u64,
    /// Name (the hostname).
    pub name: String,
    /// `new`, `active`, `off`, `archive`, or anything newer the API invents.
    pub status: String,
    /// True while an action runs on the droplet.
    #[serde(default)]
    pub locked: bool,
    /// Addresses; empty until the droplet is active.
    #[serde(default)]
    pub networks: Networks,
    /// Tags.
    #[serde(default)]
    pub tags: Vec<String>,
}

/// `networks` of a droplet.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
pub struct Networks {
    /// IPv4 interfaces, in no specified order.
    #[serde(default)]
    pub v4: Vec<NetworkV4>,
}

/// One IPv4 interface.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
pub struct NetworkV4 {
    /// The address as text; parsed before use.
    pub ip_address: String,
    /// `public` or `private`.
    #[serde(rename = "type")]
    pub kind: String,
}

impl Droplet {
    fn ipv4(&self, kind: &str) -> Option<Ipv4Addr> {
        // Pick by type, never by position (the API does not specify the order). An address
        // that does not parse is treated as absent so that it can never reach haproxy.cfg.
        self.networks
            .v4
            .iter()
            .find(|n| n.kind == kind)
            .and_then(|n| n.ip_address.parse().ok())
    }

    /// The private IPv4 address, once networking is up.
    pub fn private_ipv4(&self) -> Option<Ipv4Addr> {
        self.ipv4("private")
    }

    /// The public IPv4 address, if any.
    pub fn public_ipv4(&self) -> Option<Ipv4Addr> {
        self.ipv4("public")
    }

    /// Active, unlocked, and with a private address: ready to be a backend.
    pub fn is_ready(&self) -> bool {
        self.status == "active" && !self.locked && self.private_ipv4().is_some()
    }

    /// A name safe to print into haproxy.cfg (hostname characters only).
    pub fn has_safe_name(&self) -> bool {
        !self.name.is_empty()
            && self.name.len() <= 255
            && self
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')
    }
}

/// `links.actions[]` entry of a create response.
#[derive(Debug, Clone, Deserialize)]
pub struct ActionLink {
    /// Action ID.
    pub id: u64,
    /// `create` for a droplet create.
    #[serde(default)]
    pub rel: String,
}

/// An action (`GET /v2/actions/{id}`).
#[derive(Debug, Clone, Deserialize)]
pub struct Action {
    /// Action ID.
    pub id: u64,
    /// `in-progress`, `completed` or `errored`.
    pub status: String,
    /// The droplet it acts on.
    #[serde(default)]
    pub resource_id: Option<u64>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct ActionLinks {
    #[serde(default)]
    pub actions: Vec<ActionLink>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct CreateResponse {
    pub droplet: Option<Droplet>,
    pub droplets: Option<Vec<Droplet>>,
    pub links: Option<ActionLinks>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct DropletBody {
    pub droplet: Droplet,
}

#[derive(Debug, Deserialize)]
pub(crate) struct ActionBody {
    pub action: Action,
}

#[derive(Debug, Deserialize)]
pub(crate) struct ListPage {
    pub droplets: Vec<Droplet>,
    // `links` may be missing, `{}`, or `{"pages": {}}`.
    #[serde(default)]
    pub links: Option<PageLinks>,
    pub meta: Meta,
}

#[derive(Debug, Deserialize, Default)]
pub(crate) struct PageLinks {
    #[serde(default)]
    pub pages: Option<Pages>,
}

#[derive(Debug, Deserialize, Default)]
pub(crate) struct Pages {
    pub next: Option<String>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct Meta {
    pub total: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn example(name: &str) -> String {
        let p = format!(
            "{}/tests/data/digitalocean/{name}",
            env!("CARGO_MANIFEST_DIR")
        );
        std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{p}: {e}"))
    }

    #[test]
    fn decodes_spec_examples() {
        let d: DropletBody = serde_json::from_str(&example("droplet.json")).unwrap();
        assert_eq!(
            d.droplet.private_ipv4(),
            Some("10.128.192.124".parse().unwrap())
        );
        assert_eq!(
            d.droplet.public_ipv4(),
            Some("192.241.165.154".parse().unwrap())
        );
        assert!(d.droplet.is_ready());
        let c: CreateResponse =
            serde_json::from_str(&example("droplet_create_response.json")).unwrap();
        let created = c.droplet.unwrap();
        assert_eq!(created.status, "new");
        assert!(!created.is_ready());
        assert_eq!(c.links.unwrap().actions[0].id, 7515);
        let m: CreateResponse =
            serde_json::from_str(&example("droplets_create_multiple_response.json")).unwrap();
        assert_eq!(m.droplets.unwrap().len(), 2);
        let p: ListPage = serde_json::from_str(&example("droplets_page.json")).unwrap();
        assert_eq!(p.meta.total, 3);
        assert!(p.links.unwrap().pages.unwrap().next.is_none());
        let a: ActionBody = serde_json::from_str(&example("action.json")).unwrap();
        assert_eq!(a.action.status, "completed");
    }

    #[test]
    fn unparsable_address_counts_as_absent() {
        let d: Droplet = serde_json::from_str(
            r#"{"id":1,"name":"a","status":"active","networks":{"v4":[{"ip_address":"1.2.3.4\nserver x","type":"private"}]}}"#,
        )
        .unwrap();
        assert_eq!(d.private_ipv4(), None);
        assert!(!d.is_ready());
    }
}
