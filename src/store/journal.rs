//! The store's journal, kept beside the inventory (never in it: the inventory file keeps
//! the original one-ID-a-line format): the names of droplets about to be created (written
//! before any money is spent, so an interrupted or ambiguous create is adopted later
//! instead of lost) and the droplets being deleted (marked before HAProxy drops them, so no
//! node puts them back while they are destroyed).

use serde::{Deserialize, Serialize};

/// A create that was asked for and not yet settled.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Intent {
    /// The droplet's unique name.
    pub name: String,
    /// Unix time (seconds) the intent was written.
    pub since: u64,
    /// True once the create's answer was ambiguous (timeout, reset, 5xx): the droplet may
    /// exist; only a listing can tell.
    #[serde(default)]
    pub ambiguous: bool,
}

/// A droplet on its way out: no node routes to it any more; it is destroyed next.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Leaving {
    /// The droplet's ID.
    pub id: u64,
    /// Unix time (seconds) the delete began.
    pub since: u64,
}

/// The journal.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Journal {
    /// Creates not settled yet.
    #[serde(default)]
    pub creating: Vec<Intent>,
    /// Deletes in progress.
    #[serde(default)]
    pub leaving: Vec<Leaving>,
    /// Hot spares (the autoscaler's standby pool): inventory droplets whose servers are
    /// parked in HAProxy (`weight 0`: health-checked, given no new request) until admitted.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub standby: Vec<u64>,
    /// How long recent creates took from the POST to `active`, in ms, oldest first (at most
    /// [`ACTIVATIONS_KEPT`]): `create` polls sparsely before the usual time and densely
    /// around it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub activations_ms: Vec<u64>,
}

/// How many recent activation times the journal keeps.
pub const ACTIVATIONS_KEPT: usize = 20;

impl Journal {
    /// Parses the journal's JSON (`name` names it in errors); empty text is an empty
    /// journal.
    pub fn parse(name: &str, text: &str) -> anyhow::Result<Journal> {
        if text.trim().is_empty() {
            return Ok(Journal::default());
        }
        serde_json::from_str(text).map_err(|e| anyhow::anyhow!("{name}: {e}"))
    }

    /// The journal's JSON.
    pub fn render(&self) -> String {
        let mut s = serde_json::to_string_pretty(self).unwrap_or_else(|_| "{}".into());
        s.push('\n');
        s
    }

    /// True when `id` is being deleted.
    pub fn is_leaving(&self, id: u64) -> bool {
        self.leaving.iter().any(|l| l.id == id)
    }

    /// True when `id` is parked in the standby pool.
    pub fn is_standby(&self, id: u64) -> bool {
        self.standby.contains(&id)
    }

    /// The IDs being deleted.
    pub fn leaving_ids(&self) -> Vec<u64> {
        self.leaving.iter().map(|l| l.id).collect()
    }
}

/// The current Unix time in seconds.
pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_tolerates_empty_text() {
        let j = Journal {
            creating: vec![Intent {
                name: "web-a1b2c3".into(),
                since: 5,
                ambiguous: true,
            }],
            leaving: vec![Leaving { id: 7, since: 9 }],
            standby: vec![7],
            activations_ms: vec![35_000],
        };
        assert_eq!(Journal::parse("j", &j.render()).unwrap(), j);
        assert_eq!(Journal::parse("j", "").unwrap(), Journal::default());
        assert!(j.is_leaving(7) && !j.is_leaving(8));
        let e = Journal::parse("inventory.journal", "{oops").unwrap_err();
        assert!(e.to_string().starts_with("inventory.journal:"), "{e}");
    }

    #[test]
    fn leaving_ids_are_every_leaving_droplet_in_order() {
        let j = Journal {
            creating: Vec::new(),
            leaving: vec![Leaving { id: 9, since: 1 }, Leaving { id: 3, since: 2 }],
            ..Journal::default()
        };
        assert_eq!(j.leaving_ids(), vec![9, 3]);
        assert_eq!(Journal::default().leaving_ids(), Vec::<u64>::new());
    }

    #[test]
    fn now_is_the_unix_time() {
        let want = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let got = now();
        assert!(got.abs_diff(want) <= 2, "{got} vs {want}");
    }
}
