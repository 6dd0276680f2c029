//! The typed model of `doproxy.yml` ([`DoproxyConfig`] and its sections) and
//! its YAML, raw edits included.

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;

/// A numeric id or a name: an SSH key id or fingerprint, an image id or slug.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum IdOrName {
    /// A numeric id, written as a YAML number.
    Id(u64),
    /// A slug or fingerprint, written as a YAML string.
    Name(String),
}

impl From<u64> for IdOrName {
    fn from(id: u64) -> Self {
        IdOrName::Id(id)
    }
}

impl From<&str> for IdOrName {
    fn from(name: &str) -> Self {
        IdOrName::Name(name.to_string())
    }
}

/// `doproxy.yml`, key by key, in the order [`DoproxyConfig::to_yaml`] writes
/// them. `None` leaves a key out; durations are strings as written in YAML
/// (`"50ms"`, `"20s"`); a section whose fields are all `None` is left out.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DoproxyConfig {
    /// `token`: the API token.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    /// `ssh_key_ids`: SSH key ids or fingerprints for new droplets.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ssh_key_ids: Option<Vec<IdOrName>>,
    /// `userdata_file`: cloud-init user data for new droplets.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub userdata_file: Option<String>,
    /// `haproxy_cfg_file`: where `generate` writes the rendered config.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub haproxy_cfg_file: Option<String>,
    /// `haproxy_cfg_path`: the folder `reload` installs the config into.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub haproxy_cfg_path: Option<String>,
    /// `haproxy_template_file`: a Tera template instead of the built-in one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub haproxy_template_file: Option<String>,
    /// `inventory_file`: one droplet id a line.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub inventory_file: Option<String>,
    /// `inventory`: the inventory in etcd instead of a file.
    #[serde(skip_serializing_if = "is_default")]
    pub inventory: InventoryOptions,
    /// `droplet_options`: what new droplets are created with.
    #[serde(skip_serializing_if = "is_default")]
    pub droplet_options: DropletOptions,
    /// `api_url`: the API's base URL (the simulator's URL).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub api_url: Option<String>,
    /// `metadata_url`: the metadata service's base URL (the simulator's URL).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metadata_url: Option<String>,
    /// `backend_port`: the app's port on each droplet's private address.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backend_port: Option<u16>,
    /// `frontend_bind`: HAProxy's `bind` address, `IP:PORT`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub frontend_bind: Option<String>,
    /// `check_command`: validates a candidate config (`{config}` is its path).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub check_command: Option<String>,
    /// `reload_command`: reloads HAProxy after the config is installed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reload_command: Option<String>,
    /// `wait_timeout`: how long `create` waits for droplets to become active.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub wait_timeout: Option<String>,
    /// `poll_interval`: the longest pause between two polls.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub poll_interval: Option<String>,
    /// `not_found_grace`: how long a new droplet may answer 404.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub not_found_grace: Option<String>,
    /// `api_timeout`: per API request.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub api_timeout: Option<String>,
    /// `lock_timeout`: waiting for another doproxy run to finish.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lock_timeout: Option<String>,
    /// `drain_timeout`: how long `delete` waits for a drained backend.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub drain_timeout: Option<String>,
    /// `reload_verify_timeout`: waiting for the stats socket to show the new servers.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reload_verify_timeout: Option<String>,
    /// `readiness_check`: `create` also waits until the app answers HTTP.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub readiness_check: Option<bool>,
    /// `readiness_path`: the path that readiness check asks for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub readiness_path: Option<String>,
    /// `watch_debounce`: `reload --watch` waits for a burst of changes to end.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub watch_debounce: Option<String>,
    /// `retry`: the retry policy for GET and DELETE.
    #[serde(skip_serializing_if = "is_default")]
    pub retry: RetryOptions,
    /// `haproxy`: values for the template's global section.
    #[serde(skip_serializing_if = "is_default")]
    pub haproxy: HaproxyOptions,
    /// Raw edits of the serialized tree, applied in order by [`DoproxyConfig::to_yaml`]
    /// after the typed fields; see [`DoproxyConfig::set_raw`] and [`DoproxyConfig::remove`].
    #[serde(skip)]
    pub raw: Vec<RawEdit>,
}

/// `droplet_options` in `doproxy.yml`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DropletOptions {
    /// `hostname_prefix`: names are `<prefix>-<6 random characters>`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hostname_prefix: Option<String>,
    /// `region`: a region slug such as `nyc3`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// `size`: a size slug such as `s-1vcpu-1gb`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub size: Option<String>,
    /// `image`: an image slug or numeric id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image: Option<IdOrName>,
    /// `tags`: extra tags for new droplets.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tags: Option<Vec<String>>,
    /// `vpc_uuid`: the VPC new droplets join.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vpc_uuid: Option<String>,
    /// `ipv6`: give new droplets an IPv6 address.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ipv6: Option<bool>,
    /// `monitoring`: install the monitoring agent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub monitoring: Option<bool>,
}

/// `retry` in `doproxy.yml`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RetryOptions {
    /// `max_attempts`: attempts per request, the first included.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_attempts: Option<u32>,
    /// `min_delay`: the first back-off delay.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub min_delay: Option<String>,
    /// `max_delay`: the longest back-off delay.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_delay: Option<String>,
    /// `budget`: the total time retries may take.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub budget: Option<String>,
}

/// `haproxy` in `doproxy.yml`. For `chroot`, `user`, `group`, `log` and
/// `stats_socket`, `Some(None)` writes YAML `null` (which leaves the line out
/// of haproxy.cfg); `None` leaves the key out (doproxy's default applies).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HaproxyOptions {
    /// `chroot`.
    #[serde(
        skip_serializing_if = "Option::is_none",
        deserialize_with = "present_nullable"
    )]
    pub chroot: Option<Option<String>>,
    /// `user`.
    #[serde(
        skip_serializing_if = "Option::is_none",
        deserialize_with = "present_nullable"
    )]
    pub user: Option<Option<String>>,
    /// `group`.
    #[serde(
        skip_serializing_if = "Option::is_none",
        deserialize_with = "present_nullable"
    )]
    pub group: Option<Option<String>>,
    /// `log`.
    #[serde(
        skip_serializing_if = "Option::is_none",
        deserialize_with = "present_nullable"
    )]
    pub log: Option<Option<String>>,
    /// `stats_socket`: the runtime API socket doproxy drains and verifies through.
    #[serde(
        skip_serializing_if = "Option::is_none",
        deserialize_with = "present_nullable"
    )]
    pub stats_socket: Option<Option<String>>,
    /// `noreuseport`: `true` lets two HAProxy processes not share a port.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub noreuseport: Option<bool>,
    /// `check_inter`: the health-check interval.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub check_inter: Option<String>,
    /// `stats_user`: with `stats_password`, renders the stats page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stats_user: Option<String>,
    /// `stats_password`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stats_password: Option<String>,
    /// `maxconn`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub maxconn: Option<u32>,
    /// `errorfiles_dir`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub errorfiles_dir: Option<String>,
}

/// `inventory` in `doproxy.yml`: the inventory kept in etcd.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct InventoryOptions {
    /// `backend`: `file` or `etcd`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backend: Option<String>,
    /// `endpoints`: etcd's client URLs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub endpoints: Option<Vec<String>>,
    /// `prefix`: the key prefix.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
    /// `username`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    /// `password`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
    /// `lock_ttl`: the lease of the inventory lock.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lock_ttl: Option<String>,
    /// `timeout`: per etcd request.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timeout: Option<String>,
    /// `ca_file`: the CA for an https endpoint.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<String>,
    /// `cert_file`: the client certificate.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cert_file: Option<String>,
    /// `key_file`: the client key.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key_file: Option<String>,
}

/// One raw edit of the serialized tree. A dotted path names a key inside
/// nested mappings: `"droplet_options.size"`.
#[derive(Clone, Debug, PartialEq)]
pub enum RawEdit {
    /// Sets the key to the value: in place when the key is there, else appended
    /// to its mapping (missing mappings on the way are created).
    Set(String, Value),
    /// Removes the key, if it is there.
    Remove(String),
}

fn is_default<T: Default + PartialEq>(v: &T) -> bool {
    *v == T::default()
}

/// Tells "present and null" (`Some(None)`) from "absent" (`None`, through `#[serde(default)]`).
fn present_nullable<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Option<String>>, D::Error> {
    Option::<String>::deserialize(d).map(Some)
}

impl DoproxyConfig {
    /// Sets the key at `dotted_path` to `value` in the written YAML, whatever
    /// the typed fields say: a wrong type (`droplet_options.size: [1]`), an
    /// unknown key (`bogus: 1`), a bad value (`wait_timeout: -5`).
    pub fn set_raw(&mut self, dotted_path: &str, value: Value) {
        self.raw.push(RawEdit::Set(dotted_path.to_string(), value));
    }

    /// Leaves the key at `dotted_path` out of the written YAML (`token`,
    /// `droplet_options.image`). A path that is not there changes nothing.
    pub fn remove(&mut self, dotted_path: &str) {
        self.raw.push(RawEdit::Remove(dotted_path.to_string()));
    }

    /// The config as block-style YAML: the typed fields in declaration order,
    /// then the raw edits applied in order.
    pub fn to_yaml(&self) -> String {
        // Strings, numbers, booleans, lists and maps: neither step can fail.
        let mut tree = serde_yaml::to_value(self).expect("a DoproxyConfig is plain data");
        for edit in &self.raw {
            match edit {
                RawEdit::Set(path, value) => {
                    let value = serde_yaml::to_value(value).expect("JSON is plain data");
                    set_path(&mut tree, path, value);
                }
                RawEdit::Remove(path) => remove_path(&mut tree, path),
            }
        }
        serde_yaml::to_string(&tree).expect("a YAML tree can be written")
    }
}

fn key(k: &str) -> serde_yaml::Value {
    serde_yaml::Value::String(k.to_string())
}

/// Sets `path` (dotted) below `node`, turning whatever is in the way into mappings.
fn set_path(node: &mut serde_yaml::Value, path: &str, value: serde_yaml::Value) {
    if !node.is_mapping() {
        *node = serde_yaml::Mapping::new().into();
    }
    let Some(map) = node.as_mapping_mut() else {
        return;
    };
    match path.split_once('.') {
        None => {
            map.insert(key(path), value);
        }
        Some((first, rest)) => {
            let child = map
                .entry(key(first))
                .or_insert_with(|| serde_yaml::Mapping::new().into());
            set_path(child, rest, value);
        }
    }
}

/// Removes `path` (dotted) below `node`, keeping the order of the other keys.
fn remove_path(node: &mut serde_yaml::Value, path: &str) {
    match path.split_once('.') {
        None => {
            if let Some(map) = node.as_mapping_mut() {
                map.shift_remove(path);
            }
        }
        Some((first, rest)) => {
            if let Some(child) = node.get_mut(first) {
                remove_path(child, rest);
            }
        }
    }
}
