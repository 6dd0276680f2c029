//! The parts of the API's Droplet, Action and list-page objects doproxy reads, and what a
//! new droplet looks like (the create request's fields).

use serde::{Deserialize, Deserializer, Serialize};
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

/// `null` read as the type's default, for every field whose JSON type is an array, an
/// object or a string: the real API has sent `null` where the spec promises an array
/// (`networks: null` in a create answer), and `#[serde(default)]` alone only covers a
/// missing field. Use as `#[serde(default, deserialize_with = "null_default")]`.
pub(crate) fn null_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// A droplet as the API returns it (only the fields doproxy uses; the rest is ignored).
/// Decoding accepts `null` or a missing field for everything but `id`; [`Droplet::check`]
/// then rejects what cannot be a real droplet.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
pub struct Droplet {
    /// Droplet ID.
    pub id: u64,
    /// Name (the hostname).
    #[serde(default, deserialize_with = "null_default")]
    pub name: String,
    /// `new`, `active`, `off`, `archive`, or anything newer the API invents.
    #[serde(default, deserialize_with = "null_default")]
    pub status: String,
    /// True while the droplet is locked (an action or an administrative lock).
    #[serde(default, deserialize_with = "null_default")]
    pub locked: bool,
    /// Addresses; empty until the droplet is active.
    #[serde(default, deserialize_with = "null_default")]
    pub networks: Networks,
    /// Tags.
    #[serde(default, deserialize_with = "null_default")]
    pub tags: Vec<String>,
}

/// `networks` of a droplet.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
pub struct Networks {
    /// IPv4 interfaces, in no specified order.
    #[serde(default, deserialize_with = "null_default")]
    pub v4: Vec<NetworkV4>,
    /// IPv6 interfaces (read, never used for a backend address).
    #[serde(default, deserialize_with = "null_default")]
    pub v6: Vec<NetworkV6>,
}

/// One IPv4 interface.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
pub struct NetworkV4 {
    /// The address as text; parsed before use.
    #[serde(default, deserialize_with = "null_default")]
    pub ip_address: String,
    /// `public` or `private`.
    #[serde(rename = "type", default, deserialize_with = "null_default")]
    pub kind: String,
}

/// One IPv6 interface.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
pub struct NetworkV6 {
    /// The address as text.
    #[serde(default, deserialize_with = "null_default")]
    pub ip_address: String,
    /// `public` (private IPv6 does not exist).
    #[serde(rename = "type", default, deserialize_with = "null_default")]
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

    /// Rejects what no real droplet looks like, naming the field: an `id` of 0, a missing
    /// or empty `name` or `status`. (A name with characters no hostname has is not
    /// rejected here: [`Droplet::has_safe_name`] keeps it out of the config, and the
    /// droplet stays visible.)
    pub fn check(&self) -> Result<(), String> {
        if self.id == 0 {
            return Err("droplet `id` is 0".into());
        }
        for (field, value) in [("name", &self.name), ("status", &self.status)] {
            if value.is_empty() {
                return Err(format!(
                    "droplet {}: `{field}` is missing, null or empty",
                    self.id
                ));
            }
        }
        Ok(())
    }
}

/// `links.actions[]` entry of a create response.
#[derive(Debug, Clone, Deserialize)]
pub struct ActionLink {
    /// Action ID.
    pub id: u64,
    /// `create` for a droplet create.
    #[serde(default, deserialize_with = "null_default")]
    pub rel: String,
    /// The action's URL (never followed: the ID is asked for under the configured base).
    #[serde(default, deserialize_with = "null_default")]
    pub href: String,
}

/// An action (`GET /v2/actions/{id}`).
#[derive(Debug, Clone, Deserialize)]
pub struct Action {
    /// Action ID.
    pub id: u64,
    /// `in-progress`, `completed` or `errored`.
    #[serde(default, deserialize_with = "null_default")]
    pub status: String,
    /// `create` for a droplet create.
    #[serde(rename = "type", default, deserialize_with = "null_default")]
    pub kind: String,
    /// The droplet it acts on (nullable in the spec). Match actions to droplets by this,
    /// never by their position in a create answer's `links.actions`.
    #[serde(default, deserialize_with = "null_default")]
    pub resource_id: Option<u64>,
    /// `droplet` for a droplet action.
    #[serde(default, deserialize_with = "null_default")]
    pub resource_type: String,
}

impl Action {
    /// Rejects an `id` of 0, a `resource_id` of 0 and a missing `status`.
    pub fn check(&self) -> Result<(), String> {
        if self.id == 0 {
            return Err("action `id` is 0".into());
        }
        if self.resource_id == Some(0) {
            return Err(format!("action {}: `resource_id` is 0", self.id));
        }
        if self.status.is_empty() {
            return Err(format!(
                "action {}: `status` is missing, null or empty",
                self.id
            ));
        }
        Ok(())
    }
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct ActionLinks {
    #[serde(default, deserialize_with = "null_default")]
    pub actions: Vec<ActionLink>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct CreateResponse {
    #[serde(default, deserialize_with = "null_default")]
    pub droplet: Option<Droplet>,
    #[serde(default, deserialize_with = "null_default")]
    pub droplets: Option<Vec<Droplet>>,
    #[serde(default, deserialize_with = "null_default")]
    pub links: ActionLinks,
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
    #[serde(default, deserialize_with = "null_default")]
    pub droplets: Vec<Droplet>,
    // `links` may be missing, `null`, `{}`, or `{"pages": {}}`.
    #[serde(default, deserialize_with = "null_default")]
    pub links: PageLinks,
    // Required by the spec: missing is a decode error ("missing field `meta`"); `null`, or
    // a `null` or missing `total`, is refused by `total()`, naming `meta.total`.
    #[serde(deserialize_with = "null_default")]
    pub meta: Option<Meta>,
}

#[derive(Debug, Deserialize, Default)]
pub(crate) struct PageLinks {
    #[serde(default, deserialize_with = "null_default")]
    pub pages: Pages,
}

#[derive(Debug, Deserialize, Default)]
pub(crate) struct Pages {
    #[serde(default, deserialize_with = "null_default")]
    pub next: Option<String>,
}

#[derive(Debug, Deserialize, Default)]
pub(crate) struct Meta {
    #[serde(default, deserialize_with = "null_default")]
    pub total: Option<u64>,
}

impl ListPage {
    /// `meta.total`, or the complaint naming it.
    pub fn total(&self) -> Result<u64, String> {
        self.meta
            .as_ref()
            .and_then(|m| m.total)
            .ok_or_else(|| "`meta.total` is missing or null".to_string())
    }

    /// True when the page links to a next one.
    pub fn has_next(&self) -> bool {
        self.links.pages.next.is_some()
    }
}

/// An error body (`{"id", "message", "request_id"?}`); every field may be missing or null.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct ErrorBody {
    #[serde(default, deserialize_with = "null_default")]
    pub id: Option<String>,
    #[serde(default, deserialize_with = "null_default")]
    pub message: Option<String>,
    #[serde(default, deserialize_with = "null_default")]
    pub request_id: Option<String>,
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
        assert_eq!(d.droplet.check(), Ok(()));
        assert_eq!(d.droplet.networks.v6[0].kind, "public");
        let c: CreateResponse =
            serde_json::from_str(&example("droplet_create_response.json")).unwrap();
        let created = c.droplet.unwrap();
        assert_eq!(created.status, "new");
        assert!(!created.is_ready());
        assert_eq!(c.links.actions[0].id, 7515);
        let m: CreateResponse =
            serde_json::from_str(&example("droplets_create_multiple_response.json")).unwrap();
        assert_eq!(m.droplets.unwrap().len(), 2);
        let p: ListPage = serde_json::from_str(&example("droplets_page.json")).unwrap();
        assert_eq!(p.total(), Ok(3));
        assert!(!p.has_next());
        let a: ActionBody = serde_json::from_str(&example("action.json")).unwrap();
        assert_eq!(a.action.status, "completed");
        assert_eq!(a.action.resource_id, Some(3164444));
        assert_eq!(a.action.check(), Ok(()));
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

    fn droplet(json: &str) -> Droplet {
        serde_json::from_str(json).unwrap_or_else(|e| panic!("{json}: {e}"))
    }

    const FULL: &str = r#"{"id":7,"name":"web-1","status":"active","locked":false,
        "networks":{"v4":[{"ip_address":"10.0.0.7","type":"private"}],"v6":[]},"tags":["doproxy"]}"#;

    #[test]
    fn droplet_fields_null_or_missing() {
        let full = droplet(FULL);
        assert!(full.is_ready());
        // Each optional field, as null and as missing: decodes to the default.
        for field in ["name", "status", "locked", "networks", "tags"] {
            let mut v: serde_json::Value = serde_json::from_str(FULL).unwrap();
            v[field] = serde_json::Value::Null;
            let with_null: Droplet = serde_json::from_value(v.clone()).unwrap();
            v.as_object_mut().unwrap().remove(field);
            let without: Droplet = serde_json::from_value(v).unwrap();
            assert_eq!(with_null, without, "{field}");
        }
        let d = droplet(
            r#"{"id":7,"name":"a","status":"new","networks":null,"tags":null,"locked":null}"#,
        );
        assert_eq!(d.networks, Networks::default());
        assert!(d.tags.is_empty() && !d.locked);
        let d = droplet(r#"{"id":7,"name":"a","status":"new","networks":{"v4":null,"v6":null}}"#);
        assert!(d.networks.v4.is_empty() && d.networks.v6.is_empty());
        let d = droplet(r#"{"id":7,"name":"a","status":"new","networks":{}}"#);
        assert!(d.networks.v4.is_empty());
        let d = droplet(
            r#"{"id":7,"name":"a","status":"active","networks":{"v4":[{"ip_address":null,"type":null,"netmask":null,"gateway":null}]}}"#,
        );
        assert_eq!(d.networks.v4[0], NetworkV4::default());
        assert_eq!(d.private_ipv4(), None);
        let d =
            droplet(r#"{"id":7,"name":"a","status":"active","networks":{"v4":[{}],"v6":[{}]}}"#);
        assert_eq!(d.networks.v6[0], NetworkV6::default());
        // `id` is required: missing or null is a decode error naming it.
        for bad in [
            r#"{"name":"a","status":"new"}"#,
            r#"{"id":null,"name":"a"}"#,
        ] {
            let e = serde_json::from_str::<Droplet>(bad)
                .unwrap_err()
                .to_string();
            assert!(e.contains("id") || e.contains("u64"), "{bad}: {e}");
        }
    }

    #[test]
    fn impossible_droplets_are_rejected_naming_the_field() {
        let check = |j: &str| droplet(j).check().unwrap_err();
        assert!(check(r#"{"id":0,"name":"a","status":"new"}"#).contains("`id` is 0"));
        assert!(check(r#"{"id":5,"name":null,"status":"new"}"#).contains("`name`"));
        assert!(check(r#"{"id":5,"status":"new"}"#).contains("`name`"));
        assert!(check(r#"{"id":5,"name":"","status":"new"}"#).contains("`name`"));
        assert!(check(r#"{"id":5,"name":"a"}"#).contains("`status`"));
        assert_eq!(droplet(FULL).check(), Ok(()));
    }

    #[test]
    fn a_page_without_meta_does_not_decode() {
        let e = serde_json::from_str::<ListPage>(r#"{"droplets":[]}"#).unwrap_err();
        assert!(e.to_string().contains("missing field `meta`"), "{e}");
    }

    #[test]
    fn action_fields_null_or_missing() {
        let a: Action = serde_json::from_str(
            r#"{"id":3,"status":"errored","type":null,"resource_id":null,"resource_type":null}"#,
        )
        .unwrap();
        assert_eq!(a.resource_id, None);
        assert!(a.kind.is_empty() && a.resource_type.is_empty());
        let a: Action = serde_json::from_str(r#"{"id":3,"status":"completed"}"#).unwrap();
        assert_eq!(a.resource_id, None);
        assert_eq!(a.check(), Ok(()));
        let a: Action = serde_json::from_str(r#"{"id":3,"resource_id":9}"#).unwrap();
        assert!(a.check().unwrap_err().contains("`status`"));
        let a: Action = serde_json::from_str(r#"{"id":0,"status":"completed"}"#).unwrap();
        assert!(a.check().unwrap_err().contains("`id` is 0"));
        let a: Action =
            serde_json::from_str(r#"{"id":3,"status":"completed","resource_id":0}"#).unwrap();
        assert!(a.check().unwrap_err().contains("`resource_id` is 0"));
        let l: ActionLink = serde_json::from_str(r#"{"id":3,"rel":null,"href":null}"#).unwrap();
        assert!(l.rel.is_empty() && l.href.is_empty());
        let l: ActionLink = serde_json::from_str(r#"{"id":3}"#).unwrap();
        assert!(l.rel.is_empty());
    }

    #[test]
    fn create_and_list_envelopes_null_or_missing() {
        for j in [
            r#"{"droplet":{"id":1,"name":"a","status":"new"}}"#,
            r#"{"droplet":{"id":1,"name":"a","status":"new"},"links":null}"#,
            r#"{"droplet":{"id":1,"name":"a","status":"new"},"links":{}}"#,
            r#"{"droplet":{"id":1,"name":"a","status":"new"},"links":{"actions":null}}"#,
            r#"{"droplet":{"id":1,"name":"a","status":"new"},"droplets":null}"#,
        ] {
            let c: CreateResponse = serde_json::from_str(j).unwrap_or_else(|e| panic!("{j}: {e}"));
            assert!(c.droplet.is_some() && c.droplets.is_none(), "{j}");
            assert!(c.links.actions.is_empty(), "{j}");
        }
        let c: CreateResponse =
            serde_json::from_str(r#"{"droplet":null,"droplets":null}"#).unwrap();
        assert!(c.droplet.is_none() && c.droplets.is_none());

        for (j, total, next) in [
            (r#"{"droplets":[],"meta":{"total":0}}"#, Ok(0), false),
            (
                r#"{"droplets":null,"links":null,"meta":{"total":0}}"#,
                Ok(0),
                false,
            ),
            (
                r#"{"droplets":[],"links":{"pages":null},"meta":{"total":0}}"#,
                Ok(0),
                false,
            ),
            (
                r#"{"droplets":[],"links":{"pages":{"next":null}},"meta":{"total":0}}"#,
                Ok(0),
                false,
            ),
            (
                r#"{"droplets":[],"links":{"pages":{"next":"x"}},"meta":{"total":9}}"#,
                Ok(9),
                true,
            ),
            (r#"{"droplets":[],"meta":null}"#, Err(()), false),
            (r#"{"droplets":[],"meta":{"total":null}}"#, Err(()), false),
            (r#"{"droplets":[],"meta":{}}"#, Err(()), false),
        ] {
            let p: ListPage = serde_json::from_str(j).unwrap_or_else(|e| panic!("{j}: {e}"));
            match total {
                Ok(t) => assert_eq!(p.total(), Ok(t), "{j}"),
                Err(()) => assert!(p.total().unwrap_err().contains("`meta.total`"), "{j}"),
            }
            assert_eq!(p.has_next(), next, "{j}");
        }

        for j in [r#"{}"#, r#"{"id":null,"message":null,"request_id":null}"#] {
            let e: ErrorBody = serde_json::from_str(j).unwrap();
            assert!(e.id.is_none() && e.message.is_none() && e.request_id.is_none());
        }
    }
}
