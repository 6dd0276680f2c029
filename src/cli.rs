//! Command-line interface: the clap definitions (one Args struct per command), finding the
//! config file, dispatch to the commands, and the one exit path (0 success, 1 failure,
//! 2 usage or configuration error).

use crate::commands;
use crate::config::Config;
use crate::error::{exit_code, usage_error, EXIT_FAILURE, EXIT_OK, EXIT_USAGE};
use crate::output::{self, Format};
use clap::{Args, CommandFactory, Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

/// Scale an HTTP application tier on DigitalOcean behind HAProxy.
#[derive(Debug, Parser)]
#[command(
    name = "doproxy",
    version,
    about,
    after_help = "Examples:\n  doproxy create                 # add one backend droplet\n  doproxy print                  # list the inventory\n  doproxy delete 2               # remove the droplet on line 2\n  doproxy -o json print          # the same, for scripts\n  doproxy -c /etc/doproxy/doproxy.yml reload --dry-run"
)]
pub struct Cli {
    /// Config file [default: $DOPROXY_CONFIG, else ./doproxy.yml]
    #[arg(short, long, global = true, value_name = "PATH")]
    pub config: Option<PathBuf>,

    /// Result format on stdout: the original's text lines, or JSON for scripts
    #[arg(short, long, global = true, value_enum, default_value_t = Format::Text)]
    pub output: Format,

    /// Print only results and errors (no progress, no warnings)
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    pub quiet: bool,

    /// Log every API request (method, path, status, request id, rate limit), retry and wait
    #[arg(short, long, global = true)]
    pub verbose: bool,

    /// The command to run.
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// doproxy's commands (the Ruby DOProxy's five, plus shell completions).
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Print backend droplets in the inventory file
    #[command(
        after_help = "Examples:\n  doproxy print\n  0) auto-nginx-k3x9q2  (pvt ip: 10.132.0.5, status: active, id: 7384013)\n  doproxy -o json print | jq '.droplets[].id'"
    )]
    Print,
    /// Create new backend droplet(s), wait until active, add to HAProxy and reload
    #[command(
        after_help = "Examples:\n  doproxy create\n  doproxy create --count 5\n  doproxy create --dry-run"
    )]
    Create(CreateArgs),
    /// Delete a droplet (by inventory LINE_NUMBER as `print` numbers them, or --id/--name) and reload
    #[command(
        after_help = "Examples:\n  doproxy delete 0\n  doproxy delete --id 7384013\n  doproxy delete --name auto-nginx-k3x9q2 --dry-run"
    )]
    Delete(DeleteArgs),
    /// Generate the HAProxy config, install it and reload HAProxy
    #[command(
        after_help = "Examples:\n  doproxy reload\n  doproxy reload --dry-run\n  doproxy reload --force\n  doproxy reload --watch   # keep this node in step with the inventory"
    )]
    Reload(ReloadArgs),
    /// Generate the HAProxy config (haproxy_cfg_file) from the inventory, without installing it
    #[command(after_help = "Example:\n  doproxy generate && cat haproxy.cfg")]
    Generate,
    /// Move the inventory between a line file and the configured store (e.g. etcd)
    #[command(
        subcommand,
        after_help = "Examples:\n  doproxy inventory import /etc/doproxy/inventory   # file -> etcd\n  doproxy inventory export > inventory.backup       # etcd -> file"
    )]
    Inventory(InventoryCommand),
    /// Print a shell completion script
    #[command(
        after_help = "Examples:\n  doproxy completions bash > /etc/bash_completion.d/doproxy\n  doproxy completions zsh > \"${fpath[1]}/_doproxy\"\n  doproxy completions fish > ~/.config/fish/completions/doproxy.fish"
    )]
    Completions(CompletionsArgs),
    // --- autoscale (issue #16) ---
    /// Autoscaling: simulate policies on a trace, record a trace, write the shipped traces
    #[command(
        subcommand,
        after_help = "Examples:\n  doproxy autoscale simulate --trace traces/flash-crowd.csv --max 200 --plot flash.svg\n  doproxy autoscale record --out today.csv --duration 1h\n  doproxy autoscale traces --out /tmp/traces"
    )]
    Autoscale(crate::autoscale::command::AutoscaleCommand),
    // --- end autoscale ---
}

/// `doproxy create`.
#[derive(Debug, Args)]
pub struct CreateArgs {
    /// How many droplets to create (one API request per ten)
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=100))]
    pub count: u32,
    /// Show what would be created and validate the config; change nothing
    #[arg(long)]
    pub dry_run: bool,
}

/// `doproxy reload`.
#[derive(Debug, Args)]
pub struct ReloadArgs {
    /// Reload even when the installed config is already up to date
    #[arg(long)]
    pub force: bool,
    /// Show the diff against the installed config and validate it; change nothing
    #[arg(long, conflicts_with = "force")]
    pub dry_run: bool,
    /// Keep running: re-render, validate and reload whenever the inventory changes
    #[arg(long, conflicts_with_all = ["force", "dry_run"])]
    pub watch: bool,
}

/// `doproxy completions`.
#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

/// `doproxy inventory ...`
#[derive(Debug, Subcommand)]
pub enum InventoryCommand {
    /// Append the droplet IDs of an inventory file that the store does not have yet
    #[command(after_help = "Example:\n  doproxy inventory import /etc/doproxy/inventory")]
    Import {
        /// An inventory file in the original format
        file: PathBuf,
    },
    /// Print the inventory in the original line format (or write it to FILE)
    #[command(after_help = "Example:\n  doproxy inventory export inventory.backup")]
    Export {
        /// Write here (atomically) instead of stdout
        file: Option<PathBuf>,
    },
}

/// Which droplet `delete` removes.
#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("which").required(true).multiple(false).args(["line_number", "id", "name"])))]
pub struct DeleteArgs {
    /// Inventory line number, from 0 as `print` shows
    #[arg(value_name = "LINE_NUMBER")]
    pub line_number: Option<usize>,
    /// The droplet's ID (must be in the inventory)
    #[arg(long, value_name = "ID")]
    pub id: Option<u64>,
    /// The droplet's name (must match exactly one inventory droplet)
    #[arg(long, value_name = "NAME")]
    pub name: Option<String>,
    /// Show what would be destroyed and the config diff, validate it; change nothing
    #[arg(long)]
    pub dry_run: bool,
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
    output::init(cli.output, cli.quiet, cli.verbose);
    let Some(command) = cli.command else {
        // Like the original: no arguments lists the commands (in any output format).
        output::write_stdout(USAGE);
        return ExitCode::from(EXIT_OK);
    };
    if let Command::Completions(CompletionsArgs { shell }) = command {
        let mut cmd = Cli::command();
        let mut script = Vec::new();
        clap_complete::generate(shell, &mut cmd, "doproxy", &mut script);
        // A closed pipe is not an error (clap_complete would panic writing to it).
        output::write_stdout(&String::from_utf8_lossy(&script));
        return ExitCode::from(EXIT_OK);
    }
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            output::error(&format!("cannot start the async runtime: {e}"));
            return ExitCode::from(EXIT_FAILURE);
        }
    };
    match runtime.block_on(run(cli.config, command)) {
        Ok(()) => ExitCode::from(EXIT_OK),
        Err(e) => {
            let code = exit_code(&e);
            let message = format!("{e:#}");
            output::error(&message);
            output::json(
                &serde_json::json!({ "error": { "message": message, "exit_code": code } }),
            );
            ExitCode::from(code)
        }
    }
}

/// Finds the config: `--config`, then `$DOPROXY_CONFIG`, then `./doproxy.yml`.
fn load_config(flag: Option<PathBuf>) -> anyhow::Result<Config> {
    let env_path = std::env::var_os("DOPROXY_CONFIG")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from);
    let (path, how) = match (flag, env_path) {
        (Some(p), _) => (p, "--config"),
        (None, Some(p)) => (p, "$DOPROXY_CONFIG"),
        (None, None) => (PathBuf::from("doproxy.yml"), "the default"),
    };
    if !path.exists() {
        let tried = match how {
            "--config" => format!("--config {}", path.display()),
            "$DOPROXY_CONFIG" => format!("$DOPROXY_CONFIG={}", path.display()),
            _ => "./doproxy.yml (no --config given, DOPROXY_CONFIG unset)".to_string(),
        };
        return Err(usage_error(format!(
            "no config file: tried {tried}; start from doproxy.yml.example (cp doproxy.yml.example doproxy.yml, then set token and droplet_options)"
        )));
    }
    Config::load(&path, &|k| std::env::var(k).ok())
}

async fn run(config: Option<PathBuf>, command: Command) -> anyhow::Result<()> {
    // autoscale (issue #16): needs neither the API nor a token, only the autoscale: section.
    if let Command::Autoscale(cmd) = command {
        return crate::autoscale::command::run(config, cmd).await;
    }
    let cfg = load_config(config)?;
    let ctx = commands::Ctx::new(cfg)?;
    match command {
        Command::Print => commands::print::run(&ctx).await,
        Command::Create(a) => commands::create::run(&ctx, a.count, a.dry_run).await,
        Command::Delete(args) => {
            let which = match (args.line_number, args.id, args.name) {
                (Some(n), _, _) => commands::delete::Which::Line(n),
                (_, Some(id), _) => commands::delete::Which::Id(id),
                (_, _, Some(name)) => commands::delete::Which::Name(name),
                _ => return Err(usage_error("delete needs a LINE_NUMBER, --id or --name")),
            };
            commands::delete::run(&ctx, which, args.dry_run).await
        }
        Command::Reload(ReloadArgs { watch: true, .. }) => commands::watch::run(&ctx).await,
        Command::Reload(a) => {
            let opts = commands::reload::Options {
                force: a.force,
                dry_run: a.dry_run,
            };
            commands::reload::run(&ctx, opts).await
        }
        Command::Inventory(InventoryCommand::Import { file }) => {
            commands::inventory::import(&ctx, &file).await
        }
        Command::Inventory(InventoryCommand::Export { file }) => {
            commands::inventory::export(&ctx, file.as_deref()).await
        }
        Command::Generate => commands::generate::run(&ctx).await,
        Command::Completions(_) | Command::Autoscale(_) => Ok(()),
    }
}
