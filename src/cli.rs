//! Command-line interface: clap definitions, the one exit path, and exit codes
//! (0 success, 1 failure, 2 usage or configuration error).

use crate::commands;
use crate::config::Config;
use crate::UsageError;
use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

/// Exit code for success.
pub const EXIT_OK: u8 = 0;
/// Exit code for a failure (API, HAProxy, files).
pub const EXIT_FAILURE: u8 = 1;
/// Exit code for a usage or configuration error.
pub const EXIT_USAGE: u8 = 2;

/// Scale an HTTP application tier on DigitalOcean behind HAProxy.
#[derive(Debug, Parser)]
#[command(
    name = "doproxy",
    version,
    about,
    after_help = "Examples:\n  doproxy create            # add one backend droplet\n  doproxy print             # list the inventory\n  doproxy delete 2          # remove the droplet on line 2\n  doproxy -c /etc/doproxy/doproxy.yml reload"
)]
pub struct Cli {
    /// Config file [default: $DOPROXY_CONFIG, else ./doproxy.yml]
    #[arg(short, long, global = true, value_name = "PATH")]
    pub config: Option<PathBuf>,

    /// The command to run.
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// doproxy's commands (the Ruby DOProxy's five).
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Print backend droplets in the inventory file
    #[command(
        after_help = "Example:\n  doproxy print\n  0) auto-nginx-k3x9q2  (pvt ip: 10.132.0.5, status: active, id: 7384013)"
    )]
    Print,
    /// Create new backend droplet(s), wait until active, add to HAProxy and reload
    #[command(after_help = "Examples:\n  doproxy create\n  doproxy create --count 5")]
    Create {
        /// How many droplets to create (one API request per ten)
        #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=100))]
        count: u32,
    },
    /// Delete the droplet on LINE_NUMBER of the inventory (as `print` numbers them) and reload
    #[command(after_help = "Example:\n  doproxy delete 0")]
    Delete {
        /// Inventory line number, from 0 as `print` shows
        #[arg(value_name = "LINE_NUMBER")]
        line_number: usize,
    },
    /// Generate the HAProxy config, install it and reload HAProxy
    #[command(after_help = "Examples:\n  doproxy reload\n  doproxy reload --force")]
    Reload {
        /// Reload even when the installed config is already up to date
        #[arg(long)]
        force: bool,
    },
    /// Generate the HAProxy config (haproxy_cfg_file) from the inventory, without installing it
    #[command(after_help = "Example:\n  doproxy generate && cat haproxy.cfg")]
    Generate,
}

/// The original's usage text, printed when doproxy runs with no arguments.
pub const USAGE: &str = "Commands:
doproxy print                   # Print backend droplets in inventory file
doproxy create                  # Create a new backend droplet and reload
doproxy delete <LINE_NUMBER>    # Delete a droplet and reload
doproxy reload                  # Generate HAProxy config and reload HAProxy
doproxy generate                # Generate HAProxy config based on inventory
";

/// Parses the process's arguments, runs, and maps the outcome to an exit code.
pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            // --help and --version are successes; every parse error is a usage error.
            return ExitCode::from(if e.use_stderr() { EXIT_USAGE } else { EXIT_OK });
        }
    };
    let Some(command) = cli.command else {
        commands::say(USAGE.trim_end());
        return ExitCode::from(EXIT_OK);
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("doproxy: error: cannot start the async runtime: {e}");
            return ExitCode::from(EXIT_FAILURE);
        }
    };
    let config_path = config_path(cli.config);
    match runtime.block_on(run(&config_path, command)) {
        Ok(()) => ExitCode::from(EXIT_OK),
        Err(e) => {
            eprintln!("doproxy: error: {e:#}");
            let usage = e.chain().any(|c| c.downcast_ref::<UsageError>().is_some());
            ExitCode::from(if usage { EXIT_USAGE } else { EXIT_FAILURE })
        }
    }
}

fn config_path(flag: Option<PathBuf>) -> PathBuf {
    flag.or_else(|| {
        std::env::var_os("DOPROXY_CONFIG")
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    })
    .unwrap_or_else(|| PathBuf::from("doproxy.yml"))
}

async fn run(config_path: &std::path::Path, command: Command) -> anyhow::Result<()> {
    let cfg = Config::load(config_path, &|k| std::env::var(k).ok())?;
    let ctx = commands::Ctx::new(cfg)?;
    match command {
        Command::Print => commands::print::run(&ctx).await,
        Command::Create { count } => commands::create::run(&ctx, count).await,
        Command::Delete { line_number } => commands::delete::run(&ctx, line_number).await,
        Command::Reload { force } => commands::reload::run(&ctx, force).await,
        Command::Generate => commands::generate::run(&ctx).await,
    }
}
