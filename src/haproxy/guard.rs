//! The shrink guard: a pure decision over the servers HAProxy serves now, the servers a new
//! config would have, and the servers the running command itself decided to remove. A
//! config that would drop servers nobody asked to drop — a truncated inventory, an API
//! answering an empty listing, a deleted etcd key — and leave the backend empty or much
//! smaller is refused before it reaches HAProxy.

use std::collections::BTreeSet;

/// Why a config was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("refusing to install a config with {new} of the {current} server(s) HAProxy serves now: {} server(s) would go that this command did not decide to remove ({}); the inventory or the API's answer may be incomplete — check `doproxy print`, then run `doproxy reload --force` to install it anyway", unplanned.len(), unplanned.iter().cloned().collect::<Vec<_>>().join(", "))]
pub struct Refused {
    /// Servers served now.
    pub current: usize,
    /// Servers in the new config.
    pub new: usize,
    /// The servers that would go without anyone asking.
    pub unplanned: BTreeSet<String>,
}

/// May a config serving `new` replace one serving `current`? `planned` are the servers the
/// running command removes on purpose (a delete). Refused when servers would go unplanned
/// and the result is empty or more than `max_unplanned_shrink` (a fraction, 0–1) of the
/// current servers would go unplanned.
pub fn check(
    current: &BTreeSet<String>,
    new: &BTreeSet<String>,
    planned: &BTreeSet<String>,
    max_unplanned_shrink: f64,
) -> Result<(), Refused> {
    let unplanned: BTreeSet<String> = current
        .iter()
        .filter(|s| !new.contains(*s) && !planned.contains(*s))
        .cloned()
        .collect();
    if unplanned.is_empty() {
        return Ok(());
    }
    let too_many = unplanned.len() as f64 > max_unplanned_shrink * current.len() as f64;
    if new.is_empty() || too_many {
        return Err(Refused {
            current: current.len(),
            new: new.len(),
            unplanned,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(names: &[&str]) -> BTreeSet<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn table() {
        // (current, new, planned, allowed?)
        type Case<'a> = (&'a [&'a str], &'a [&'a str], &'a [&'a str], bool);
        let cases: &[Case] = &[
            // Growing or unchanged is always fine.
            (&[], &[], &[], true),
            (&["a"], &["a", "b"], &[], true),
            (&["a", "b"], &["a", "b"], &[], true),
            // A planned delete may empty the backend.
            (&["a"], &[], &["a"], true),
            (&["a", "b", "c", "d"], &["a"], &["b", "c", "d"], true),
            // Losing everything unplanned: refused, whatever the size.
            (&["a"], &[], &[], false),
            (&["a", "b", "c", "d"], &[], &[], false),
            // One of four (25 %) unplanned: allowed; three of four (75 %): refused.
            (&["a", "b", "c", "d"], &["a", "b", "c"], &[], true),
            (&["a", "b", "c", "d"], &["a"], &[], false),
            // Exactly half unplanned is not more than half: allowed.
            (&["a", "b", "c", "d"], &["a", "b"], &[], true),
            // Planned removals do not count against the fraction.
            (&["a", "b", "c", "d"], &["a"], &["b", "c"], true),
            // Replaced servers count as gone.
            (&["a", "b"], &["c", "d"], &[], false),
        ];
        for (cur, new, planned, ok) in cases {
            let r = check(&set(cur), &set(new), &set(planned), 0.5);
            assert_eq!(
                r.is_ok(),
                *ok,
                "{cur:?} -> {new:?} (planned {planned:?}): {r:?}"
            );
        }
    }

    #[test]
    fn the_message_names_the_count_and_the_way_out() {
        let e = check(&set(&["www-1", "www-2"]), &set(&[]), &set(&[]), 0.5).unwrap_err();
        let m = e.to_string();
        assert!(m.contains("0 of the 2 server(s)"), "{m}");
        assert!(m.contains("www-1, www-2") && m.contains("--force"), "{m}");
    }
}
