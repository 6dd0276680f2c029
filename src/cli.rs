//! Command-line interface: the clap definitions (one Args struct per command), finding the
//! config file, dispatch to the commands, and the one exit path (0 success, 1 failure,
//! 2 usage or configuration error).

use crate::commands;
use crate::config::Config;
use crate::error::{exit_code, usage_error, EXIT_FAILURE, EXIT_OK, EXIT_USAGE};
use crate::output::{self, Format};
use clap::{Args, CommandFactory, Parser, Subcommand};
use std::path::{Path, PathBuf};
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
    /// Config file [default: $DOPROXY_CONFIG, else ./doproxy.yml, else /etc/doproxy/doproxy.yml]
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
    /// Create an empty inventory (the file, or the etcd key) where there is none yet
    #[command(after_help = "Example:\n  doproxy inventory init")]
    Init,
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
    /// Destroy the droplet even though it does not carry the deployment's tag
    #[arg(long)]
    pub force: bool,
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

/// The config files looked for, in order, without `--config` or `$DOPROXY_CONFIG`.
pub const DEFAULT_CONFIGS: [&str; 2] = ["doproxy.yml", "/etc/doproxy/doproxy.yml"];

/// How a config file was named: explicitly (`--config`, `$DOPROXY_CONFIG`), or found by the
/// default search.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// `-c/--config PATH`.
    Flag,
    /// `$DOPROXY_CONFIG`.
    Env,
    /// One of [`DEFAULT_CONFIGS`].
    Default,
}

/// The config files to try, in order: `--config` alone if given, else `$DOPROXY_CONFIG`
/// alone if set, else [`DEFAULT_CONFIGS`]. An explicit path never falls back to another.
pub fn config_candidates(flag: Option<PathBuf>, env: Option<PathBuf>) -> Vec<(PathBuf, Source)> {
    match (flag, env) {
        (Some(p), _) => vec![(p, Source::Flag)],
        (None, Some(p)) => vec![(p, Source::Env)],
        (None, None) => DEFAULT_CONFIGS
            .iter()
            .map(|p| (PathBuf::from(p), Source::Default))
            .collect(),
    }
}

/// The first candidate that exists (anything at the path counts, so that an unusable
/// `./doproxy.yml` is refused rather than skipped), or the "no config file" error naming
/// every path tried.
pub fn find_config(
    candidates: &[(PathBuf, Source)],
    exists: impl Fn(&Path) -> bool,
) -> anyhow::Result<PathBuf> {
    if let Some((p, _)) = candidates.iter().find(|(p, _)| exists(p)) {
        return Ok(p.clone());
    }
    let shown = |p: &Path| {
        if p.is_relative() && p.components().count() == 1 {
            format!("./{}", p.display())
        } else {
            p.display().to_string()
        }
    };
    let tried = match candidates {
        [(p, Source::Flag)] => format!("--config {}", p.display()),
        [(p, Source::Env)] => format!("$DOPROXY_CONFIG={}", p.display()),
        all => format!(
            "{} (no --config given, DOPROXY_CONFIG unset)",
            all.iter()
                .map(|(p, _)| shown(p))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    Err(usage_error(format!(
        "no config file: tried {tried}; start from doproxy.yml.example (cp doproxy.yml.example doproxy.yml, then set token and droplet_options)"
    )))
}

/// Finds the config (`--config`, then `$DOPROXY_CONFIG`, then `./doproxy.yml`, then
/// `/etc/doproxy/doproxy.yml`), refuses it unless only trusted users can change it (see
/// [`crate::trust`]; nothing else is read from it before), and loads it.
fn load_config(flag: Option<PathBuf>) -> anyhow::Result<Config> {
    let env_path = std::env::var_os("DOPROXY_CONFIG")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from);
    let candidates = config_candidates(flag, env_path);
    // symlink_metadata: a dangling link at ./doproxy.yml is refused, not skipped.
    let path = find_config(&candidates, |p| std::fs::symlink_metadata(p).is_ok())?;
    crate::trust::check_file(&path, "config file")?;
    Config::load(&path, &|k| std::env::var(k).ok())
}

async fn run(config: Option<PathBuf>, command: Command) -> anyhow::Result<()> {
    // autoscale (issue #16): needs neither the API nor a token, only the autoscale: section.
    if let Command::Autoscale(cmd) = command {
        return crate::autoscale::command::run(config, cmd).await;
    }
    let cfg = load_config(config)?;
    let ctx = commands::Ctx::new(cfg)?;
    if matches!(command, Command::Reload(ReloadArgs { watch: true, .. })) {
        // The watch handles its signals itself (it finishes its pass and exits 0).
        return dispatch(&ctx, command).await;
    }
    use tokio::signal::unix::{signal, SignalKind};
    let mut int = signal(SignalKind::interrupt())?;
    let mut term = signal(SignalKind::terminate())?;
    // On SIGINT/SIGTERM the command stops where it is (its temp files and locks are
    // dropped with it), then whatever it left half done is put right.
    tokio::select! {
        r = dispatch(&ctx, command) => r,
        _ = int.recv() => Err(ctx.interrupted("SIGINT").await),
        _ = term.recv() => Err(ctx.interrupted("SIGTERM").await),
    }
}

async fn dispatch(ctx: &commands::Ctx, command: Command) -> anyhow::Result<()> {
    match command {
        Command::Print => commands::print::run(ctx).await,
        Command::Create(a) => commands::create::run(ctx, a.count, a.dry_run).await,
        Command::Delete(args) => {
            let which = match (args.line_number, args.id, args.name) {
                (Some(n), _, _) => commands::delete::Which::Line(n),
                (_, Some(id), _) => commands::delete::Which::Id(id),
                (_, _, Some(name)) => commands::delete::Which::Name(name),
                _ => return Err(usage_error("delete needs a LINE_NUMBER, --id or --name")),
            };
            let opts = commands::delete::Options {
                which,
                dry_run: args.dry_run,
                force: args.force,
            };
            commands::delete::run(ctx, opts).await
        }
        Command::Reload(ReloadArgs { watch: true, .. }) => commands::watch::run(ctx).await,
        Command::Reload(a) => {
            let opts = commands::reload::Options {
                force: a.force,
                dry_run: a.dry_run,
            };
            commands::reload::run(ctx, opts).await
        }
        Command::Inventory(InventoryCommand::Init) => commands::inventory::init(ctx).await,
        Command::Inventory(InventoryCommand::Import { file }) => {
            commands::inventory::import(ctx, &file).await
        }
        Command::Inventory(InventoryCommand::Export { file }) => {
            commands::inventory::export(ctx, file.as_deref()).await
        }
        Command::Generate => commands::generate::run(ctx).await,
        Command::Completions(_) | Command::Autoscale(_) => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn paths(c: &[(PathBuf, Source)]) -> Vec<String> {
        c.iter().map(|(p, _)| p.display().to_string()).collect()
    }

    #[test]
    fn the_search_order() {
        let flag = Some(PathBuf::from("a.yml"));
        let env = Some(PathBuf::from("b.yml"));
        assert_eq!(
            config_candidates(flag.clone(), env.clone()),
            vec![(PathBuf::from("a.yml"), Source::Flag)]
        );
        assert_eq!(
            config_candidates(None, env),
            vec![(PathBuf::from("b.yml"), Source::Env)]
        );
        let defaults = config_candidates(None, None);
        assert_eq!(
            paths(&defaults),
            ["doproxy.yml", "/etc/doproxy/doproxy.yml"]
        );
        // ./doproxy.yml wins over /etc/doproxy/doproxy.yml; the latter is the fallback.
        assert_eq!(
            find_config(&defaults, |_| true).unwrap(),
            PathBuf::from("doproxy.yml")
        );
        assert_eq!(
            find_config(&defaults, |p| p.is_absolute()).unwrap(),
            PathBuf::from("/etc/doproxy/doproxy.yml")
        );
    }

    #[test]
    fn no_config_names_every_path_tried() {
        let e = find_config(&config_candidates(None, None), |_| false)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("tried ./doproxy.yml, /etc/doproxy/doproxy.yml (no --config given"),
            "{e}"
        );
        let e = find_config(&config_candidates(Some("x.yml".into()), None), |_| false)
            .unwrap_err()
            .to_string();
        assert!(e.contains("tried --config x.yml;"), "{e}");
        let e = find_config(&config_candidates(None, Some("y.yml".into())), |_| false)
            .unwrap_err()
            .to_string();
        assert!(e.contains("tried $DOPROXY_CONFIG=y.yml;"), "{e}");
    }
}
