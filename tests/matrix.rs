//! The fault matrix of the real API's rough edges: for each fault class do-sim can produce
//! (Cloudflare 52x with HTML before and after the effect, resets after a create took
//! effect, list lag of seconds, linger after delete, `null` for empty values, a token
//! without `actions:read`, the hourly 429 without `retry-after`, shuffled multi-create
//! actions) × each command, after the command and one later `print`: no droplet at the
//! simulator that is neither in the inventory nor journaled, no duplicate name, and the
//! live config valid. The table is printed (`FIGURES matrix`).

use crate::support::{fast_sim_options, haproxy_available, haproxy_check, TestEnv, TOKEN};
use do_sim::{Placement, ScopedToken, SimOptions};
use std::collections::HashMap;
use std::time::Duration;

/// One fault class: its name and how the simulator is set up for it.
fn classes() -> Vec<(&'static str, SimOptions)> {
    let base = fast_sim_options;
    vec![
        (
            "52x HTML, before effect",
            SimOptions {
                cloudflare_rate: 0.3,
                ..base()
            },
        ),
        (
            "52x HTML, after effect",
            SimOptions {
                cloudflare_after_rate: 0.3,
                ..base()
            },
        ),
        (
            "reset after create",
            SimOptions {
                reset_rate: 0.5,
                reset_placement: Placement::CreatesAfter,
                ..base()
            },
        ),
        (
            "reset after create + list lag 1.5 s",
            SimOptions {
                reset_rate: 0.5,
                reset_placement: Placement::CreatesAfter,
                list_lag_after_create: Duration::from_millis(1500),
                ..base()
            },
        ),
        (
            "list lag 2.5 s",
            SimOptions {
                list_lag_after_create: Duration::from_millis(2500),
                ..base()
            },
        ),
        (
            "linger 2.5 s",
            SimOptions {
                delete_linger: Duration::from_millis(2500),
                ..base()
            },
        ),
        (
            "nulls for empty",
            SimOptions {
                nulls_for_empty: true,
                ..base()
            },
        ),
        (
            "no actions:read scope",
            SimOptions {
                tokens: vec![ScopedToken {
                    token: format!("{TOKEN}-scoped"),
                    scopes: [
                        "droplet:create",
                        "droplet:read",
                        "droplet:delete",
                        "tag:read",
                        "tag:create",
                        "ssh_key:read",
                        "account:read",
                    ]
                    .iter()
                    .map(|s| s.to_string())
                    .collect(),
                }],
                ..base()
            },
        ),
        (
            "hourly 429, no retry-after",
            SimOptions {
                rate_limit_per_hour: 25,
                omit_hourly_retry_after: true,
                ..base()
            },
        ),
        (
            "shuffled actions",
            SimOptions {
                shuffle_actions: true,
                ..base()
            },
        ),
    ]
}

const COMMANDS: [&[&str]; 5] = [
    &["create"],
    &["create", "--count", "3"],
    &["print"],
    &["delete", "0"],
    &["reload"],
];

/// The invariants after a command: every droplet at the simulator is in the inventory or
/// journaled, no name twice, the installed config valid. `Err` says which failed.
fn check(env: &TestEnv) -> Result<(), String> {
    let inv = env.inventory();
    let journal = env.read("inventory.journal");
    let droplets = env.sim.droplets();
    let mut names: HashMap<String, usize> = HashMap::new();
    for d in &droplets {
        *names.entry(d.name.clone()).or_default() += 1;
        if !inv.contains(&d.id) && !journal.contains(&format!("\"{}\"", d.name)) {
            return Err(format!("droplet {} ({}) untracked", d.id, d.name));
        }
    }
    if let Some((n, _)) = names.iter().find(|(_, c)| **c > 1) {
        return Err(format!("name {n} twice"));
    }
    let cfg = env.path("etc/haproxy.cfg");
    if cfg.exists() {
        let (ok, text) = haproxy_check(&cfg);
        if !ok {
            return Err(format!("installed config invalid: {text}"));
        }
    }
    Ok(())
}

#[test]
fn every_command_stays_orphan_proof_under_every_fault() {
    if !haproxy_available() {
        return;
    }
    let mut table = Vec::new();
    let mut failures = Vec::new();
    for (class, opts) in classes() {
        let scoped = opts.tokens.first().map(|t| t.token.clone());
        let env = TestEnv::with_options(opts, true);
        env.configure(|c| {
            if let Some(t) = &scoped {
                c.token = Some(t.clone());
            }
        });
        env.run(&["reload"]);
        let mut row = vec![class.to_string()];
        for args in COMMANDS {
            let r = env.run(args);
            // One later `print` (it also adopts journaled droplets it can see).
            env.run(&["print"]);
            let verdict = match check(&env) {
                Ok(()) => format!("ok (exit {})", r.code),
                Err(e) => {
                    failures.push(format!("[{class}] {args:?}: {e}\n{}", r.stderr));
                    format!("FAIL (exit {})", r.code)
                }
            };
            row.push(verdict);
        }
        table.push(row);
    }
    println!(
        "FIGURES matrix | fault | {} |",
        COMMANDS
            .iter()
            .map(|a| a.join(" "))
            .collect::<Vec<_>>()
            .join(" | ")
    );
    for row in &table {
        println!("FIGURES matrix | {} |", row.join(" | "));
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
