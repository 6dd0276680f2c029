//! The live daemon's pure half: who does what in the fleet ([`Roster`], from the inventory,
//! the store's journal and HAProxy's `show stat`) and what HAProxy's counters say about the
//! load ([`signals`], from two consecutive samples). No I/O: `commands::autoscaler` reads
//! the socket and the store and carries the decisions out.

use super::{Fleet, Signals};
use crate::haproxy::runtime::{ServerStat, StatSample};
use crate::store::journal::Journal;
use serde::Serialize;
use std::time::Duration;

/// What a droplet of the inventory is doing, as the autoscaler counts it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// UP in HAProxy and taking requests.
    Serving,
    /// Created, not serving yet: not active, not in the config yet, or not passing its
    /// health checks (a standby that is not UP yet is booting too).
    Booting,
    /// A hot spare: UP, parked at weight 0.
    Standby,
    /// On its way out (a delete in progress), or held out of service by hand (forced
    /// drain or maintenance): not counted as capacity.
    Draining,
}

/// One droplet of the inventory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Member {
    /// The droplet ID.
    pub id: u64,
    /// Its inventory line (0-based): lower lines are older.
    pub line: usize,
    /// What it is doing.
    pub role: Role,
    /// Its current sessions in HAProxy.
    pub scur: u64,
    /// True when HAProxy's checks say UP.
    pub up: bool,
    /// Its weight in HAProxy, when HAProxy knows the server.
    pub weight: Option<u64>,
    /// Marked as a standby in the journal.
    pub standby: bool,
}

/// The fleet by role.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Roster {
    /// The inventory's droplets, in inventory order.
    pub members: Vec<Member>,
    /// Creates asked for and not yet in the inventory (the journal's intents).
    pub creating: u32,
}

/// True when a `show stat` status means the server takes requests if its weight allows:
/// `UP`, or `UP 1/3` (failing checks, not down yet) — and a health check has passed. Right
/// after a reload HAProxy shows a new server `UP` before its first check has run
/// (`check_status` `INI`): such a server is still booting, not a standby to admit. A server
/// without checks (no `check_status`) is taken at its word.
fn is_up(s: &ServerStat) -> bool {
    let checked = match s.check_status.as_deref() {
        None => true,
        Some(c) => {
            let c = c.trim_start_matches("* ");
            c.starts_with("L4OK") || c.starts_with("L6OK") || c.starts_with("L7OK")
        }
    };
    s.state() == "UP" && checked
}

impl Roster {
    /// The roles of `inventory`'s droplets: `journal` says which are leaving and which are
    /// standbys, `stats` (HAProxy's `show stat`, empty when unknown) which are UP.
    pub fn new(inventory: &[u64], journal: &Journal, stats: &[ServerStat]) -> Roster {
        let members = inventory
            .iter()
            .enumerate()
            .map(|(line, &id)| {
                let stat = stats.iter().find(|s| s.id == Some(id));
                let up = stat.is_some_and(is_up);
                let standby = journal.is_standby(id);
                let held = stat.is_some_and(|s| matches!(s.state().as_str(), "DRAIN" | "MAINT"));
                let role = if journal.is_leaving(id) || held {
                    Role::Draining
                } else if !up {
                    Role::Booting
                } else if standby {
                    Role::Standby
                } else {
                    Role::Serving
                };
                Member {
                    id,
                    line,
                    role,
                    scur: stat.map_or(0, |s| s.scur),
                    up,
                    weight: stat.and_then(|s| s.weight),
                    standby,
                }
            })
            .collect();
        Roster {
            members,
            creating: u32::try_from(journal.creating.len()).unwrap_or(u32::MAX),
        }
    }

    fn count(&self, role: Role) -> u32 {
        let n = self.members.iter().filter(|m| m.role == role).count();
        u32::try_from(n).unwrap_or(u32::MAX)
    }

    /// The counts the controller reads.
    pub fn fleet(&self) -> Fleet {
        Fleet {
            serving: self.count(Role::Serving),
            booting: self.count(Role::Booting).saturating_add(self.creating),
            standby: self.count(Role::Standby),
            draining: self.count(Role::Draining),
        }
    }

    /// Up to `n` standbys to admit: the ones parked longest (oldest line) first.
    pub fn to_admit(&self, n: u32) -> Vec<u64> {
        self.pick(n, |m| m.role == Role::Standby, |m| m.line)
    }

    /// Up to `n` serving droplets to park: the least loaded first, the newest among equals.
    pub fn to_park(&self, n: u32) -> Vec<u64> {
        let mut v: Vec<&Member> = self
            .members
            .iter()
            .filter(|m| m.role == Role::Serving)
            .collect();
        v.sort_by_key(|m| (m.scur, std::cmp::Reverse(m.line)));
        v.into_iter().take(n as usize).map(|m| m.id).collect()
    }

    /// Up to `n` standbys to delete: the ones marked standby that never came UP first (a
    /// broken spare), then the newest; never one already leaving. `parked` are servers
    /// parked by this decision (not marked in the journal yet): they count as standbys.
    pub fn to_delete(&self, n: u32, parked: &[u64]) -> Vec<u64> {
        let mut v: Vec<&Member> = self
            .members
            .iter()
            .filter(|m| m.role != Role::Draining && (m.standby || parked.contains(&m.id)))
            .collect();
        v.sort_by_key(|m| (m.up, std::cmp::Reverse(m.line)));
        v.into_iter().take(n as usize).map(|m| m.id).collect()
    }

    fn pick(
        &self,
        n: u32,
        keep: impl Fn(&Member) -> bool,
        key: impl Fn(&Member) -> usize,
    ) -> Vec<u64> {
        let mut v: Vec<&Member> = self.members.iter().filter(|m| keep(m)).collect();
        v.sort_by_key(|m| key(m));
        v.into_iter().take(n as usize).map(|m| m.id).collect()
    }

    /// The weight each server should have in HAProxy now, where it differs from what
    /// HAProxy has: standbys 0, serving servers at weight 0 (admitted, the config not
    /// re-rendered yet, or admitted by another node) 1. Servers leaving or held by hand are
    /// left alone.
    pub fn weight_fixes(&self) -> Vec<(u64, u32)> {
        self.members
            .iter()
            .filter(|m| m.up && m.role != Role::Draining)
            .filter_map(|m| match (m.standby, m.weight) {
                (true, Some(w)) if w > 0 => Some((m.id, 0)),
                (false, Some(0)) => Some((m.id, 1)),
                _ => None,
            })
            .collect()
    }
}

/// One stats sample and when it was taken (the daemon's monotonic clock).
#[derive(Debug, Clone)]
pub struct Reading {
    /// When it was read.
    pub at: Duration,
    /// What `show stat` said.
    pub sample: StatSample,
}

/// The signals of `cur` (with `prev`, the sample before it, for the rates), seen at `now`.
/// A counter that went backwards (HAProxy restarted) gives no rate for this sample.
pub fn signals(prev: Option<&Reading>, cur: &Reading, roster: &Roster, now: Duration) -> Signals {
    let s = &cur.sample;
    let serving: Vec<u64> = roster
        .members
        .iter()
        .filter(|m| m.role == Role::Serving)
        .map(|m| m.id)
        .collect();
    let in_flight: u64 = s
        .servers
        .iter()
        .filter(|st| st.id.is_some_and(|id| serving.contains(&id)))
        .map(|st| st.scur)
        .sum();
    let server_queues: u64 = s.servers.iter().map(|st| st.qcur).sum();
    let queued = s.backend.qcur.map(|q| (q + server_queues) as f64);
    let rate_of = |f: fn(&StatSample) -> Option<u64>| -> Option<f64> {
        let p = prev?;
        let dt = cur.at.checked_sub(p.at)?.as_secs_f64();
        let (a, b) = (f(&p.sample)?, f(s)?);
        (dt >= 0.05 && b >= a).then(|| (b - a) as f64 / dt)
    };
    let request_rate = rate_of(|s| s.backend.req_tot).or_else(|| {
        prev.is_none()
            .then_some(s.frontend.req_rate.map(|r| r as f64))
            .flatten()
    });
    Signals {
        age: now.saturating_sub(cur.at),
        in_flight: Some(in_flight as f64),
        queued,
        request_rate,
        queue_time_ms: s.backend.qtime.map(|v| v as f64),
        response_time_ms: s.backend.rtime.map(|v| v as f64),
        error_rate: rate_of(|s| s.backend.hrsp_5xx),
    }
}

/// Several load balancers' signals as one: the counts and rates summed, the times the
/// worst of them, the oldest age. A field missing on any node is missing.
pub fn combine(all: &[Signals]) -> Option<Signals> {
    let first = all.first()?;
    let sum = |f: fn(&Signals) -> Option<f64>| all.iter().map(f).sum::<Option<f64>>();
    let max = |f: fn(&Signals) -> Option<f64>| {
        all.iter()
            .map(f)
            .try_fold(f64::MIN, |m, v| v.map(|v| m.max(v)))
    };
    Some(Signals {
        age: all.iter().map(|s| s.age).max().unwrap_or(first.age),
        in_flight: sum(|s| s.in_flight),
        queued: sum(|s| s.queued),
        request_rate: sum(|s| s.request_rate),
        queue_time_ms: max(|s| s.queue_time_ms),
        response_time_ms: max(|s| s.response_time_ms),
        error_rate: sum(|s| s.error_rate),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::haproxy::runtime::ProxyTotals;
    use crate::store::journal::{Intent, Leaving};

    fn stat(id: u64, status: &str, scur: u64, weight: u64) -> ServerStat {
        ServerStat {
            server: format!("www-{id}"),
            id: Some(id),
            status: status.into(),
            last_change_secs: Some(1),
            check_status: Some("L7OK".into()),
            check_code: Some(200),
            check_duration_ms: Some(1),
            scur,
            rate: 0,
            qcur: 0,
            weight: Some(weight),
        }
    }

    fn journal() -> Journal {
        Journal {
            creating: vec![Intent {
                name: "n".into(),
                since: 0,
                ambiguous: false,
            }],
            leaving: vec![Leaving { id: 5, since: 0 }],
            standby: vec![3, 4, 7],
            ..Journal::default()
        }
    }

    fn roster() -> Roster {
        // 1, 2 serve; 3 is a standby that is UP; 4 a standby still booting; 5 leaves;
        // 6 is not in HAProxy yet; 7 a standby at weight 1 (another node admitted it?);
        // 8 drained by hand.
        let stats = vec![
            stat(1, "UP", 4, 1),
            stat(2, "UP", 1, 1),
            stat(3, "UP", 0, 0),
            stat(4, "DOWN", 0, 0),
            stat(5, "UP", 0, 1),
            stat(7, "UP", 0, 1),
            stat(8, "DRAIN", 0, 1),
            stat(9, "UP", 9, 1),
        ];
        Roster::new(&[1, 2, 3, 4, 5, 6, 7, 8], &journal(), &stats)
    }

    #[test]
    fn counts_each_role_once() {
        let r = roster();
        let roles: Vec<Role> = r.members.iter().map(|m| m.role).collect();
        use Role::*;
        assert_eq!(
            roles,
            [Serving, Serving, Standby, Booting, Draining, Booting, Standby, Draining]
        );
        assert_eq!(
            r.fleet(),
            Fleet {
                serving: 2,
                booting: 3, // 4, 6 and the journal's intent
                standby: 2,
                draining: 2,
            }
        );
    }

    #[test]
    fn picks_whom_to_admit_park_and_delete() {
        let r = roster();
        assert_eq!(r.to_admit(5), [3, 7]);
        assert_eq!(r.to_admit(1), [3]);
        // Least loaded first.
        assert_eq!(r.to_park(1), [2]);
        assert_eq!(r.to_park(9), [2, 1]);
        // The spare that never came up goes first, then the newest; never 5 (leaving).
        assert_eq!(r.to_delete(9, &[]), [4, 7, 3]);
        assert_eq!(r.to_delete(9, &[2]), [4, 7, 3, 2]);
        assert!(r.to_delete(0, &[]).is_empty());
    }

    #[test]
    fn a_server_up_before_its_first_check_is_booting() {
        let mut fresh = stat(3, "UP", 0, 0);
        fresh.check_status = Some("INI".into());
        let mut checking = stat(4, "UP", 0, 0);
        checking.check_status = Some("* L7OK".into());
        let mut unchecked = stat(5, "UP", 0, 1);
        unchecked.check_status = None;
        let j = Journal {
            standby: vec![3, 4],
            ..Journal::default()
        };
        let r = Roster::new(&[3, 4, 5], &j, &[fresh, checking, unchecked]);
        let roles: Vec<Role> = r.members.iter().map(|m| m.role).collect();
        assert_eq!(roles, [Role::Booting, Role::Standby, Role::Serving]);
        assert_eq!(r.to_admit(5), [4]);
        // A TCP check (L4OK) or a layer-6 one (L6OK) passes as well as an HTTP one; a
        // failed one (L4CON) does not.
        for (status, up) in [
            ("L4OK", true),
            ("L6OK", true),
            ("L4CON", false),
            ("L7STS", false),
        ] {
            let mut s = stat(6, "UP", 0, 0);
            s.check_status = Some(status.into());
            let r = Roster::new(&[6], &Journal::default(), &[s]);
            assert_eq!(r.members[0].up, up, "{status}");
        }
    }

    #[test]
    fn weights_follow_the_journal() {
        // 7 is a standby at weight 1: park it. 3 is right. Leaving/held ones: untouched.
        assert_eq!(roster().weight_fixes(), [(7, 0)]);
        let stats = vec![stat(1, "UP", 0, 0), stat(2, "DOWN", 0, 0)];
        let r = Roster::new(&[1, 2], &Journal::default(), &stats);
        // 1 was admitted (no longer in the journal) but still has the parked weight.
        assert_eq!(r.weight_fixes(), [(1, 1)]);
    }

    fn reading(at_ms: u64, req_tot: u64, hrsp_5xx: u64) -> Reading {
        Reading {
            at: Duration::from_millis(at_ms),
            sample: StatSample {
                servers: vec![
                    ServerStat {
                        qcur: 1,
                        ..stat(1, "UP", 4, 1)
                    },
                    stat(2, "UP", 3, 1),
                    stat(3, "UP", 9, 0),
                ],
                backend: ProxyTotals {
                    scur: Some(16),
                    qcur: Some(2),
                    qtime: Some(12),
                    rtime: Some(80),
                    hrsp_5xx: Some(hrsp_5xx),
                    req_tot: Some(req_tot),
                    req_rate: None,
                },
                frontend: ProxyTotals {
                    req_rate: Some(33),
                    ..ProxyTotals::default()
                },
            },
        }
    }

    #[test]
    fn signals_from_two_samples() {
        let stats = reading(0, 0, 0).sample.servers;
        let r = Roster::new(
            &[1, 2, 3],
            &Journal {
                standby: vec![3],
                ..Journal::default()
            },
            &stats,
        );
        let a = reading(1000, 100, 10);
        let b = reading(1500, 150, 11);
        let s = signals(Some(&a), &b, &r, Duration::from_millis(1600));
        // Only serving servers' sessions count: 4 + 3, not the standby's 9.
        assert_eq!(s.in_flight, Some(7.0));
        // The backend's queue (2) and the servers' own (1).
        assert_eq!(s.queued, Some(3.0));
        assert_eq!(s.request_rate, Some(100.0));
        assert_eq!(s.error_rate, Some(2.0));
        assert_eq!(s.queue_time_ms, Some(12.0));
        assert_eq!(s.response_time_ms, Some(80.0));
        assert_eq!(s.age, Duration::from_millis(100));
        // The first sample: the frontend's own rate, no 5xx rate (fail static on it).
        let first = signals(None, &a, &r, Duration::from_millis(1000));
        assert_eq!(first.request_rate, Some(33.0));
        assert_eq!(first.error_rate, None);
        // HAProxy restarted: the counters went back; no rate from this pair.
        let restarted = signals(
            Some(&b),
            &reading(2000, 3, 0),
            &r,
            Duration::from_millis(2000),
        );
        assert_eq!(restarted.request_rate, None);
        assert_eq!(restarted.error_rate, None);
    }

    #[test]
    fn combines_nodes() {
        let a = Signals {
            age: Duration::from_millis(100),
            in_flight: Some(3.0),
            queued: Some(1.0),
            request_rate: Some(10.0),
            queue_time_ms: Some(5.0),
            response_time_ms: Some(50.0),
            error_rate: Some(0.0),
        };
        let b = Signals {
            age: Duration::from_millis(300),
            queue_time_ms: Some(9.0),
            response_time_ms: Some(20.0),
            ..a
        };
        let c = combine(&[a, b]).unwrap();
        assert_eq!(c.in_flight, Some(6.0));
        assert_eq!(c.request_rate, Some(20.0));
        assert_eq!(c.queue_time_ms, Some(9.0));
        assert_eq!(c.response_time_ms, Some(50.0));
        assert_eq!(c.age, Duration::from_millis(300));
        let missing = Signals { queued: None, ..a };
        assert_eq!(combine(&[a, missing]).unwrap().queued, None);
        assert_eq!(combine(&[]), None);
    }
}
