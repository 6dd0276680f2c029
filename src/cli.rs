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
use std::time::Duration;

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

    /// Stop the command after this long (e.g. 90s, 10m): exit 1, saying what was done
    #[arg(long, global = true, value_name = "DURATION", value_parser = parse_timeout)]
    pub timeout: Option<Duration>,

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
    /// Show every backend: API status, role, HAProxy's state, last check, sessions, rate and queue, with totals and what is wrong
    #[command(
        after_help = "Examples:\n  doproxy status\n  doproxy status --watch               # redraw every 2 s until Ctrl-C\n  doproxy status --watch --interval 5s\n  doproxy -o json status | jq '.problems[].message'"
    )]
    Status(StatusArgs),
    /// Keep the inventory honest: import/export, prune gone droplets, adopt tagged ones, forget lines
    #[command(
        subcommand,
        after_help = "Examples:\n  doproxy inventory import /etc/doproxy/inventory   # file -> etcd\n  doproxy inventory export > inventory.backup       # etcd -> file\n  doproxy inventory prune --dry-run                # which lines would go\n  doproxy inventory adopt --orphans                # add every tagged droplet\n  doproxy inventory forget 7384013                 # drop a line, keep the droplet"
    )]
    Inventory(InventoryCommand),
    /// Print a shell completion script
    #[command(
        after_help = "Examples:\n  doproxy completions bash > /etc/bash_completion.d/doproxy\n  doproxy completions zsh > \"${fpath[1]}/_doproxy\"\n  doproxy completions fish > ~/.config/fish/completions/doproxy.fish"
    )]
    Completions(CompletionsArgs),
    /// Create or delete droplets until N serve (standbys are admitted first)
    #[command(
        after_help = "Admits hot spares (the autoscaler's standby pool) first, then creates through create's path; scaling down deletes the newest serving droplets through delete's drain-reload-destroy path, one at a time.\n\nExamples:\n  doproxy scale --to 5\n  doproxy scale --to 2 --dry-run\n  0 8 * * 1-5  doproxy scale --to 6   # a crontab line: six backends on weekday mornings"
    )]
    Scale(ScaleArgs),
    /// Scale by itself on HAProxy's signals (no subcommand), or simulate, record, write traces
    #[command(
        args_conflicts_with_subcommands = true,
        after_help = "With no subcommand: the autoscaler. It reads the stats socket every autoscale.tick, admits hot spares over the runtime API, creates and deletes through the orphan-proof paths, and prints one line per decision worth telling (-o json: one object a line). Run it under systemd like reload --watch; SIGTERM stops it (exit 0).\n\nExamples:\n  doproxy autoscale                  # the daemon\n  doproxy autoscale --once           # one decision (cron)\n  doproxy autoscale --dry-run -o json\n  doproxy autoscale simulate --trace traces/flash-crowd.csv --max 200 --plot flash.svg\n  doproxy autoscale record --out today.csv --duration 1h\n  doproxy autoscale traces --out /tmp/traces"
    )]
    Autoscale(AutoscaleArgs),
}

/// `doproxy autoscale`.
#[derive(Debug, Args)]
pub struct AutoscaleArgs {
    /// One evaluation (two stats samples a tick apart), carry it out, exit
    #[arg(long)]
    pub once: bool,
    /// Decide and print; change nothing (no weight, no journal, no API call that changes anything)
    #[arg(long)]
    pub dry_run: bool,
    /// A subcommand instead of the autoscaler.
    #[command(subcommand)]
    pub command: Option<crate::commands::autoscale::AutoscaleCommand>,
}

/// `doproxy scale`.
#[derive(Debug, Args)]
pub struct ScaleArgs {
    /// How many droplets should serve
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(0..=1000))]
    pub to: u32,
    /// Show what would be done; change nothing
    #[arg(long)]
    pub dry_run: bool,
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

/// `doproxy status`.
#[derive(Debug, Args)]
pub struct StatusArgs {
    /// Keep running: redraw every --interval until Ctrl-C (JSON Lines with -o json)
    #[arg(long)]
    pub watch: bool,
    /// How often --watch redraws (at least 100ms)
    #[arg(long, value_name = "DURATION", default_value = "2s", value_parser = parse_interval, requires = "watch")]
    pub interval: Duration,
}

/// `--timeout`: a duration such as `90s` or `10m`, at least 1 s.
fn parse_timeout(text: &str) -> Result<Duration, String> {
    let d = crate::duration::parse(text)?;
    if d < Duration::from_secs(1) {
        return Err(format!("{text:?} is less than 1s"));
    }
    Ok(d)
}

/// `--interval`: a duration such as `2s` or `500ms`, at least 100 ms.
fn parse_interval(text: &str) -> Result<Duration, String> {
    let d = crate::duration::parse(text)?;
    if d < Duration::from_millis(100) {
        return Err(format!("{d:?} is below the minimum of 100ms"));
    }
    Ok(d)
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
    /// Drop the lines of droplets confirmed gone: 404 now and missing for not_found_grace
    #[command(
        after_help = "Droplets missing for less than not_found_grace are waited for (the API is eventually\nconsistent), then looked up again. Nothing is destroyed; HAProxy follows at the next reload.\n\nExamples:\n  doproxy inventory prune --dry-run\n  doproxy inventory prune && doproxy reload"
    )]
    Prune {
        /// Show what would be dropped; change nothing (and do not wait)
        #[arg(long)]
        dry_run: bool,
    },
    /// Add droplets that carry the deployment's tag to the inventory (by ID, or every orphan)
    #[command(
        after_help = "Only tagged droplets are adopted: tag one first with\n`doctl compute droplet tag ID --tag-name TAG`. HAProxy follows at the next reload.\n\nExamples:\n  doproxy inventory adopt 7384013\n  doproxy inventory adopt --orphans --dry-run"
    )]
    Adopt {
        /// Droplet IDs
        #[arg(
            value_name = "ID",
            required_unless_present = "orphans",
            conflicts_with = "orphans"
        )]
        ids: Vec<u64>,
        /// Every droplet carrying the tag that is not in the inventory
        #[arg(long)]
        orphans: bool,
        /// Show what would be added; change nothing
        #[arg(long)]
        dry_run: bool,
    },
    /// Drop inventory lines without destroying their droplets (they keep running and billing)
    #[command(
        after_help = "To remove a backend for good, use `doproxy delete --id ID` instead (it drains,\nreloads and destroys). HAProxy follows at the next reload.\n\nExample:\n  doproxy inventory forget 7384013"
    )]
    Forget {
        /// Droplet IDs (each must be in the inventory)
        #[arg(value_name = "ID", required = true)]
        ids: Vec<u64>,
        /// Show what would be dropped; change nothing
        #[arg(long)]
        dry_run: bool,
    },
}

impl Command {
    /// True for a `--dry-run`: such a run writes no file (not even a lock file).
    pub fn is_dry_run(&self) -> bool {
        match self {
            Command::Create(a) => a.dry_run,
            Command::Delete(a) => a.dry_run,
            Command::Reload(a) => a.dry_run,
            Command::Inventory(
                InventoryCommand::Prune { dry_run }
                | InventoryCommand::Adopt { dry_run, .. }
                | InventoryCommand::Forget { dry_run, .. },
            ) => *dry_run,
            _ => false,
        }
    }
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

/// The line after [`USAGE`] when doproxy runs with no arguments.
pub const HELP_HINT: &str =
    "\nMore commands (status, inventory, completions) and every option: doproxy --help\n";

/// True when `args` (the process's, program name first) ask for `-o json` in any spelling
/// clap accepts (`-o json`, `-ojson`, `-o=json`, `--output json`, `--output=json`, `-qo
/// json`): read by hand when clap itself refused the command line.
pub fn json_requested<I: IntoIterator<Item = std::ffi::OsString>>(args: I) -> bool {
    let args: Vec<String> = args
        .into_iter()
        .skip(1)
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    let mut json = false;
    let mut i = 0;
    while i < args.len() {
        let a = &args[i];
        i += 1;
        if a == "--" {
            break;
        }
        let value = if a == "--output" {
            args.get(i).cloned()
        } else if let Some(v) = a.strip_prefix("--output=") {
            Some(v.to_string())
        } else if a.starts_with('-') && !a.starts_with("--") {
            // A cluster of short flags: -q and -v take no value, -o takes the rest (or the
            // next argument), and any other flag (-c PATH) ends the cluster.
            let mut value = None;
            for (n, c) in a.char_indices().skip(1) {
                match c {
                    'q' | 'v' => continue,
                    'o' => {
                        let rest = a[n + 1..].trim_start_matches('=');
                        value = if rest.is_empty() {
                            args.get(i).cloned()
                        } else {
                            Some(rest.to_string())
                        };
                    }
                    _ => {}
                }
                break;
            }
            value
        } else {
            None
        };
        if let Some(v) = value {
            json = v == "json";
        }
    }
    json
}

/// The message of a clap error for the JSON error object: its `error: ` line and the
/// indented lines that complete it, on one line, without the usage hint after them.
fn usage_message(rendered: &str) -> String {
    let mut lines = rendered.lines().skip_while(|l| !l.starts_with("error: "));
    let Some(first) = lines.next() else {
        // clap showed the help instead (a subcommand is missing).
        return "a subcommand is missing; see --help".to_string();
    };
    let mut message = first.trim_start_matches("error: ").trim().to_string();
    for l in lines.take_while(|l| l.starts_with(' ')) {
        message.push(' ');
        message.push_str(l.trim());
    }
    message
}

/// The documented error object for `-o json`.
/// The documented error object of `-o json`.
pub fn error_object(message: &str, code: u8) -> serde_json::Value {
    serde_json::json!({ "error": { "message": message, "exit_code": code } })
}

/// Exits with `code`, or with 1 when a success could not write its result to stdout.
fn exit_with(code: u8) -> ExitCode {
    if code == EXIT_OK {
        if let Some(e) = output::stdout_error() {
            output::error(&format!("cannot write the result to stdout: {e}"));
            return ExitCode::from(EXIT_FAILURE);
        }
    }
    ExitCode::from(code)
}

/// Parses the process's arguments, runs, and maps the outcome to an exit code.
pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            // --help and --version are successes; every parse error is a usage error.
            if !e.use_stderr() {
                return exit_with(EXIT_OK);
            }
            if json_requested(std::env::args_os()) {
                let object = error_object(&usage_message(&e.render().to_string()), EXIT_USAGE);
                output::write_stdout(&format!("{object:#}\n"));
            }
            return ExitCode::from(EXIT_USAGE);
        }
    };
    if let Err(message) = output::init(cli.output, cli.quiet, cli.verbose) {
        output::error(&message);
        output::json(&error_object(&message, EXIT_USAGE));
        return ExitCode::from(EXIT_USAGE);
    }
    let Some(command) = cli.command else {
        // Like the original: no arguments lists the commands (in any output format).
        output::write_stdout(USAGE);
        output::write_stdout(HELP_HINT);
        return exit_with(EXIT_OK);
    };
    crate::lock::set_dry_run(command.is_dry_run());
    if let Command::Completions(CompletionsArgs { shell }) = command {
        let mut cmd = Cli::command();
        let mut script = Vec::new();
        clap_complete::generate(shell, &mut cmd, "doproxy", &mut script);
        // A closed pipe is not an error (clap_complete would panic writing to it).
        output::write_stdout(&String::from_utf8_lossy(&script));
        return exit_with(EXIT_OK);
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
    match runtime.block_on(run(cli.config, cli.timeout, command)) {
        Ok(()) => exit_with(EXIT_OK),
        Err(e) => {
            let code = exit_code(&e);
            let message = format!("{e:#}");
            output::error(&message);
            if !output::json_written() {
                // A command that already wrote its object (a partial create) put the error
                // in it: one object per run.
                output::json(&error_object(&message, code));
            }
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

async fn run(
    config: Option<PathBuf>,
    timeout: Option<Duration>,
    command: Command,
) -> anyhow::Result<()> {
    // autoscale (issue #16): needs neither the API nor a token, only the autoscale: section.
    let command = match command {
        Command::Autoscale(AutoscaleArgs {
            command: Some(cmd), ..
        }) => return crate::commands::autoscale::run(config, cmd).await,
        other => other,
    };
    let cfg = load_config(config)?;
    let ctx = commands::Ctx::new(cfg)?;
    if let Command::Autoscale(a) = command {
        // The autoscaler handles its signals itself (SIGTERM stops the daemon, exit 0).
        let opts = commands::autoscaler::Options {
            once: a.once,
            dry_run: a.dry_run,
        };
        let ctx = std::rc::Rc::new(ctx);
        return match timeout {
            Some(t) => {
                match tokio::time::timeout(t, commands::autoscaler::run(ctx.clone(), opts)).await {
                    Ok(r) => r,
                    Err(_) => Err(ctx.timed_out(t).await),
                }
            }
            None => commands::autoscaler::run(ctx, opts).await,
        };
    }
    if matches!(
        command,
        Command::Reload(ReloadArgs { watch: true, .. })
            | Command::Status(StatusArgs { watch: true, .. })
    ) {
        // The watch modes handle their signals themselves (they finish the pass and exit 0).
        return dispatch(&ctx, command).await;
    }
    use tokio::signal::unix::{signal, SignalKind};
    let mut int = signal(SignalKind::interrupt())?;
    let mut term = signal(SignalKind::terminate())?;
    // On SIGINT/SIGTERM the command stops where it is (its temp files and locks are
    // dropped with it), then whatever it left half done is put right.
    let deadline = async {
        match timeout {
            Some(t) => tokio::time::sleep(t).await,
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        r = dispatch(&ctx, command) => r,
        _ = int.recv() => Err(ctx.interrupted("SIGINT").await),
        _ = term.recv() => Err(ctx.interrupted("SIGTERM").await),
        _ = deadline => Err(ctx.timed_out(timeout.unwrap_or_default()).await),
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
        Command::Inventory(InventoryCommand::Prune { dry_run }) => {
            commands::inventory::prune(ctx, dry_run).await
        }
        Command::Inventory(InventoryCommand::Adopt {
            ids,
            orphans,
            dry_run,
        }) => {
            let which = if orphans {
                commands::inventory::Adopt::Orphans
            } else {
                commands::inventory::Adopt::Ids(ids)
            };
            commands::inventory::adopt(ctx, which, dry_run).await
        }
        Command::Inventory(InventoryCommand::Forget { ids, dry_run }) => {
            commands::inventory::forget(ctx, &ids, dry_run).await
        }
        Command::Status(a) => {
            let watch = a.watch.then_some(a.interval);
            commands::status::run(ctx, watch).await
        }
        Command::Generate => commands::generate::run(ctx).await,
        Command::Scale(a) => commands::scale::run(ctx, a.to, a.dry_run).await,
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

    fn asks_json(args: &[&str]) -> bool {
        json_requested(
            std::iter::once("doproxy")
                .chain(args.iter().copied())
                .map(std::ffi::OsString::from),
        )
    }

    #[test]
    fn finds_json_output_in_every_spelling() {
        for args in [
            &["-o", "json", "bogus"][..],
            &["-ojson", "bogus"],
            &["-o=json", "bogus"],
            &["--output", "json", "bogus"],
            &["--output=json", "bogus"],
            &["-qo", "json", "bogus"],
            &["-qojson", "bogus"],
            &["bogus", "-o", "json"],
            &["-o", "text", "-o", "json"],
        ] {
            assert!(asks_json(args), "{args:?}");
        }
        for args in [
            &["bogus"][..],
            &["-o", "text", "bogus"],
            &["-c", "json", "bogus"],
            &["-cojson", "bogus"],
            &["--", "-o", "json"],
            &["-o"],
        ] {
            assert!(!asks_json(args), "{args:?}");
        }
    }

    #[test]
    fn usage_messages_keep_their_detail_and_drop_the_usage() {
        assert_eq!(
            usage_message("error: the following required arguments were not provided:\n  <LINE_NUMBER|--id <ID>>\n\nUsage: doproxy delete\n"),
            "the following required arguments were not provided: <LINE_NUMBER|--id <ID>>"
        );
        assert_eq!(
            usage_message("error: unrecognized subcommand 'bogus'\n\nUsage: doproxy [OPTIONS]\n"),
            "unrecognized subcommand 'bogus'"
        );
        assert!(usage_message("Move the inventory\n\nUsage: ...").contains("--help"));
    }

    #[test]
    fn dry_runs_are_known() {
        let dry = |args: &[&str]| {
            Cli::try_parse_from(std::iter::once("doproxy").chain(args.iter().copied()))
                .unwrap()
                .command
                .is_some_and(|c| c.is_dry_run())
        };
        assert!(dry(&["create", "--dry-run"]));
        assert!(dry(&["reload", "--dry-run"]));
        assert!(dry(&["delete", "1", "--dry-run"]));
        assert!(dry(&["inventory", "prune", "--dry-run"]));
        assert!(!dry(&["reload"]));
        assert!(!dry(&["status"]));
    }
}
