//! The fleet: the inventory held against one API listing of the deployment's tagged
//! droplets — which inventory droplets exist and are ready, which tagged droplets are
//! orphans — and the HAProxy server list that follows from it.

use crate::digitalocean::{Client, Droplet};
use crate::haproxy::Server;
use crate::inventory::Inventory;
use crate::output::warn;
use anyhow::Result;
use serde::Serialize;
use std::borrow::Cow;
use std::collections::HashMap;

/// A value from the API (a droplet's name, tag or status) made safe for a text line: a
/// control character or a character that reorders or breaks lines on a terminal is written
/// as an escape (`\n`, `\r`, `\t`, `\x1b`, `\u{202e}`), and a backslash as `\\`, so a
/// name can neither start a forged line nor send escape sequences to the terminal. JSON
/// output needs none of this (serde escapes it).
pub fn escape(value: &str) -> Cow<'_, str> {
    fn unsafe_char(c: char) -> bool {
        c == '\\'
            || c.is_control()
            || matches!(
                c,
                '\u{2028}' | '\u{2029}' | '\u{200e}' | '\u{200f}' | '\u{061c}'
            )
            || ('\u{202a}'..='\u{202e}').contains(&c)
            || ('\u{2066}'..='\u{2069}').contains(&c)
    }
    if !value.chars().any(unsafe_char) {
        return Cow::Borrowed(value);
    }
    let mut out = String::with_capacity(value.len() + 8);
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if unsafe_char(c) && (c as u32) < 0x80 => {
                out.push_str(&format!("\\x{:02x}", c as u32));
            }
            c if unsafe_char(c) => out.push_str(&format!("\\u{{{:x}}}", c as u32)),
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

/// A droplet as the JSON output shows it.
#[derive(Debug, Clone, Serialize)]
pub struct DropletInfo {
    /// Inventory line (as `print` numbers them); `null` for droplets not in the inventory.
    pub line: Option<usize>,
    /// Droplet ID.
    pub id: u64,
    /// Name; `null` when the droplet does not exist.
    pub name: Option<String>,
    /// API status, or `missing` when the droplet does not exist.
    pub status: String,
    /// Private IPv4 address, once known.
    pub private_ip: Option<String>,
    /// Public IPv4 address, once known.
    pub public_ip: Option<String>,
}

impl DropletInfo {
    /// Describes inventory entry `line` (`d` is `None` when the droplet does not exist).
    pub fn new(line: Option<usize>, id: u64, d: Option<&Droplet>) -> DropletInfo {
        DropletInfo {
            line,
            id,
            name: d.map(|d| d.name.clone()),
            status: d.map_or_else(|| "missing".to_string(), |d| d.status.clone()),
            private_ip: d.and_then(Droplet::private_ipv4).map(|ip| ip.to_string()),
            public_ip: d.and_then(Droplet::public_ipv4).map(|ip| ip.to_string()),
        }
    }
}

/// The HAProxy server for a ready droplet; `None` when it has no usable private address.
pub fn server(d: &Droplet) -> Option<Server> {
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

/// What the API says about the inventory's droplets.
#[derive(Debug, Default)]
pub struct Fleet {
    /// Droplets found, by ID.
    pub by_id: HashMap<u64, Droplet>,
    /// Droplets carrying the doproxy tag that are not in the inventory.
    pub orphans: Vec<Droplet>,
}

impl Fleet {
    /// Lists the droplets tagged `tag` (ceil(N/200) requests) and looks up individually
    /// only the inventory IDs the listing did not return (e.g. droplets made by the Ruby
    /// DOProxy, which carry no tag).
    pub async fn fetch(client: &Client, tag: &str, inv: &Inventory) -> Result<Fleet> {
        let tagged = client.list_by_tag(tag).await?;
        Self::from_listed(client, inv, tagged).await
    }

    /// Like [`Fleet::fetch`], from a tag listing the caller already has.
    pub async fn from_listed(
        client: &Client,
        inv: &Inventory,
        tagged: Vec<Droplet>,
    ) -> Result<Fleet> {
        let mut by_id: HashMap<u64, Droplet> = HashMap::new();
        let mut orphans = Vec::new();
        for d in tagged {
            if inv.ids.contains(&d.id) {
                by_id.insert(d.id, d);
            } else {
                orphans.push(d);
            }
        }
        for id in &inv.ids {
            if !by_id.contains_key(id) {
                if let Some(d) = client.get_droplet(*id).await? {
                    by_id.insert(*id, d);
                }
            }
        }
        Ok(Fleet { by_id, orphans })
    }

    /// The servers for the config: ready droplets in inventory order, minus `exclude`.
    /// Entries left out are reported on stderr (they stay in the inventory).
    pub fn servers(&self, inv: &Inventory, exclude: Option<u64>) -> Vec<Server> {
        let mut out = Vec::new();
        for (n, id) in inv.ids.iter().enumerate() {
            if Some(*id) == exclude {
                continue;
            }
            match self.by_id.get(id) {
                None => warn(&format!(
                    "inventory line {n}: droplet {id} does not exist (deleted outside doproxy?); left out of the config"
                )),
                Some(d) if !d.is_ready() => warn(&format!(
                    "inventory line {n}: droplet {id} ({}) is {}{}; left out of the config until it is ready",
                    escape(&d.name),
                    escape(&d.status),
                    if d.status == "active" { " without a private IPv4 address yet" } else { "" }
                )),
                Some(d) => match server(d) {
                    Some(s) => out.push(s),
                    None => warn(&format!("inventory line {n}: droplet {id} has no usable private address")),
                },
            }
        }
        out
    }

    /// True when some inventory droplet exists but is not ready yet.
    pub fn has_pending(&self, inv: &Inventory) -> bool {
        inv.ids
            .iter()
            .any(|id| self.by_id.get(id).is_some_and(|d| !d.is_ready()))
    }

    /// Warns about droplets tagged `tag` missing from the inventory (`where_` names it).
    pub fn warn_orphans(&self, tag: &str, where_: &str) {
        for d in &self.orphans {
            warn(&format!(
                "droplet {} ({}) carries the tag {tag:?} but is not in {where_}; add its ID to the inventory to manage it, or delete it",
                d.id,
                escape(&d.name),
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::escape;

    #[test]
    fn escape_keeps_plain_values_and_escapes_the_rest() {
        assert!(matches!(
            escape("auto-nginx-k3x9q2"),
            std::borrow::Cow::Borrowed(_)
        ));
        assert_eq!(escape("naïve ünïcode"), "naïve ünïcode");
        assert_eq!(
            escape("evil\n7) forged  (pvt ip: 1.2.3.4, status: active, id: 9)\x1b[2J"),
            "evil\\n7) forged  (pvt ip: 1.2.3.4, status: active, id: 9)\\x1b[2J"
        );
        assert_eq!(escape("a\rb\tc\0d\x7f"), "a\\rb\\tc\\x00d\\x7f");
        assert_eq!(escape("back\\slash"), "back\\\\slash");
        // C1 controls (a one-character CSI), bidi overrides, line separators.
        assert_eq!(escape("x\u{9b}2J"), "x\\u{9b}2J");
        assert_eq!(escape("abc\u{202e}fed"), "abc\\u{202e}fed");
        assert_eq!(escape("a\u{2028}b"), "a\\u{2028}b");
        for s in ["\n", "\x1b", "\u{85}", "\u{2066}"] {
            assert!(!escape(s).chars().any(char::is_control), "{s:?}");
        }
    }
}
