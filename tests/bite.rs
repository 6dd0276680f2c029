//! Tests that bite (issue #17): each pins a guarantee that mutation testing
//! (`scripts/mutants.sh`) found no test noticing when broken.

use crate::support::TestEnv;
use doproxy::store::journal::{self, Intent, Journal};

/// The create journal beside the inventory.
fn journal(env: &TestEnv) -> Journal {
    Journal::parse("inventory.journal", &env.read("inventory.journal")).unwrap()
}

/// Journals `name` as a create in flight (an interrupted `create`), written now.
fn journal_intent(env: &TestEnv, name: &str) {
    let j = Journal {
        creating: vec![Intent {
            name: name.into(),
            since: journal::now(),
            ambiguous: false,
        }],
        leaving: Vec::new(),
    };
    env.write("inventory.journal", &j.render());
}

#[test]
fn a_delete_adopts_an_interrupted_create_first_and_a_dry_run_does_not() {
    // One droplet in the inventory; a second, of the deployment, made by a create that was
    // interrupted before it recorded the ID: only its name is in the journal.
    let env = TestEnv::new();
    env.run(&["create"]).ok();
    let mine = env.inventory()[0];
    let interrupted = env.create_direct("auto-nginx-interrupted", &["doproxy"]);
    journal_intent(&env, "auto-nginx-interrupted");

    // A dry run changes nothing: not the inventory, not the journal.
    let journal_text = env.read("inventory.journal");
    env.run(&["delete", "0", "--dry-run"]).ok();
    assert_eq!(env.inventory(), vec![mine]);
    assert_eq!(env.read("inventory.journal"), journal_text);

    // The delete adopts it before deleting line 0: it stays, in the inventory.
    env.run(&["delete", "0"]).ok();
    assert_eq!(env.inventory(), vec![interrupted]);
    assert!(journal(&env).creating.is_empty(), "{:?}", journal(&env));
    let left: Vec<u64> = env.sim.droplets().iter().map(|d| d.id).collect();
    assert_eq!(left, vec![interrupted]);
}
