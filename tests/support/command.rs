//! The doproxy command a test or the fleet bench runs: the binary cargo built, in the
//! world's directory, with no DigitalOcean variables from the outside and the metadata
//! service pointed at the simulator. `benches/fleet.rs` includes this file (`#[path]`):
//! one copy of the list of variables a run must not inherit.

use std::path::Path;
use std::process::Command;

/// What doproxy reads from its environment that a test or bench run must not inherit.
const OUTSIDE_VARIABLES: [&str; 4] = [
    "DIGITALOCEAN_ACCESS_TOKEN",
    "DIGITALOCEAN_TOKEN",
    "DIGITALOCEAN_API_URL",
    "DOPROXY_CONFIG",
];

/// `doproxy ARGS` in `dir`, isolated from the outside environment, its metadata service
/// at `sim_url`.
pub fn doproxy_command(dir: &Path, sim_url: &str, args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_doproxy"));
    cmd.args(args).current_dir(dir);
    for k in OUTSIDE_VARIABLES {
        cmd.env_remove(k);
    }
    // Defence in depth: even a config without metadata_url never reaches the real
    // metadata address from a test.
    cmd.env("DOPROXY_METADATA_URL", sim_url);
    cmd
}
