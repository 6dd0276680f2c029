//! `do-sim` command: runs the simulator until SIGTERM or SIGINT; `do-sim
//! sandbox` also writes a loopback doproxy world pointing at it.

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use do_sim::sandbox::{self, DoproxyConfig, RetryOptions};
use do_sim::{is_allowed_listen, Placement, ScopedToken, Sim, SimOptions};

/// A local DigitalOcean API v2 + droplet metadata simulator, on loopback only.
#[derive(Parser, Debug)]
#[command(
    name = "do-sim",
    after_help = "Prints `do-sim listening on http://ADDR` once ready; exits on SIGTERM/SIGINT.",
    args_conflicts_with_subcommands = true
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    sim: SimArgs,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Runs the simulator (always with --serve-apps) and writes a loopback doproxy world
    /// into DIR: doproxy.yml pointing at it, etc/, an empty inventory and user-data.yml
    Sandbox(SandboxArgs),
}

/// `do-sim sandbox`: where the world goes and how its doproxy.yml differs from the
/// config of doproxy's tests (`do_sim::sandbox::DoproxyConfig::loopback`).
#[derive(Args, Debug)]
#[command(
    after_help = "Prints `do-sim listening on http://ADDR` once DIR is written; exits on SIGTERM/SIGINT."
)]
struct SandboxArgs {
    /// Where to write the world (created if missing)
    #[arg(long, value_name = "DIR")]
    dir: PathBuf,
    /// Check and reload with a real HAProxy (master-worker; pidfile and sockets in DIR);
    /// without it both commands are `true`
    #[arg(long)]
    haproxy: bool,
    /// Port of HAProxy's frontend on 127.0.0.1 [default: a free port]
    #[arg(long, value_name = "N")]
    frontend_port: Option<u16>,
    /// doproxy's poll_interval [default: the tests' 50ms]
    #[arg(long, value_name = "DURATION")]
    poll_interval: Option<String>,
    /// doproxy's check_command, instead of the one --haproxy picks
    #[arg(long, value_name = "CMD")]
    check_command: Option<String>,
    /// Leave doproxy's own defaults for its timeouts, retry policy and haproxy.check_inter
    /// (the tests shorten them)
    #[arg(long)]
    default_timeouts: bool,
    /// Copy this file as user-data.yml [default: a three-line cloud-config]
    #[arg(long, value_name = "FILE")]
    user_data: Option<PathBuf>,
    #[command(flatten)]
    sim: SimArgs,
}

/// The simulator's flags; every default is [`SimOptions::default`]'s.
#[derive(Args, Debug)]
struct SimArgs {
    /// 127.0.0.0/8 address:port to listen on
    #[arg(long, value_name = "ADDR", value_parser = parse_listen, default_value_t = defaults().listen)]
    listen: SocketAddr,
    /// Bearer token the API accepts
    #[arg(long, value_name = "T", default_value_t = defaults().token)]
    token: String,
    /// New -> active delay, in ms
    #[arg(long, value_name = "N", default_value_t = ms(defaults().active_after))]
    active_after_ms: u64,
    /// A new droplet is 404 / unlisted this long, in ms
    #[arg(long, value_name = "N", default_value_t = ms(defaults().not_found_after_create))]
    not_found_after_create_ms: u64,
    /// A new droplet is missing from lists this long (GET may answer), in ms
    #[arg(long, value_name = "N", default_value_t = ms(defaults().list_lag_after_create))]
    list_lag_after_create_ms: u64,
    /// A deleted droplet stays visible this long, in ms
    #[arg(long, value_name = "N", default_value_t = ms(defaults().delete_linger))]
    delete_linger_ms: u64,
    /// Up to this much random extra per droplet on each non-zero window above, in ms
    #[arg(long, value_name = "N", default_value_t = ms(defaults().lag_jitter))]
    lag_jitter_ms: u64,
    /// Fraction (0..=1) of creates whose action ends errored
    #[arg(long, value_name = "F", value_parser = parse_rate, default_value_t = defaults().create_failure_rate)]
    create_failure_rate: f64,
    /// Added to every API request, in ms
    #[arg(long, value_name = "N", default_value_t = ms(defaults().latency))]
    latency_ms: u64,
    /// Per-minute request limit, or `off`
    #[arg(long, value_name = "N|off", value_parser = parse_per_minute, default_value_t = PerMinute(defaults().rate_limit_per_minute))]
    rate_limit_per_minute: PerMinute,
    /// Per-hour request limit
    #[arg(long, value_name = "N", default_value_t = defaults().rate_limit_per_hour)]
    rate_limit_per_hour: u32,
    /// An hourly-limit 429 has no retry-after (only ratelimit-reset)
    #[arg(long)]
    omit_hourly_retry_after: bool,
    /// Fraction (0..=1) of API requests answered 500/502/503
    #[arg(long, value_name = "F", value_parser = parse_rate, default_value_t = defaults().error_rate)]
    error_rate: f64,
    /// Where those 5xx happen: before (no effect), after (the request took effect) or
    /// creates-after
    #[arg(long, value_name = "P", default_value_t = defaults().error_placement)]
    error_placement: Placement,
    /// Fraction (0..=1) of API requests whose connection is reset
    #[arg(long, value_name = "F", value_parser = parse_rate, default_value_t = defaults().reset_rate)]
    reset_rate: f64,
    /// Where those resets happen: before, after or creates-after
    #[arg(long, value_name = "P", default_value_t = defaults().reset_placement)]
    reset_placement: Placement,
    /// Fraction (0..=1) of API requests answered by a Cloudflare 52x page, no effect
    #[arg(long, value_name = "F", value_parser = parse_rate, default_value_t = defaults().cloudflare_rate)]
    cloudflare_rate: f64,
    /// Fraction (0..=1) of API requests answered by a Cloudflare 520/524 page after the
    /// request took effect
    #[arg(long, value_name = "F", value_parser = parse_rate, default_value_t = defaults().cloudflare_after_rate)]
    cloudflare_after_rate: f64,
    /// Send null for empty arrays, objects and strings in droplet, action, list and
    /// create bodies
    #[arg(long)]
    nulls_for_empty: bool,
    /// An extra token limited to these scopes (repeatable)
    #[arg(long, value_name = "TOKEN=SCOPE,SCOPE")]
    scoped_token: Vec<ScopedToken>,
    /// New droplet and action ids start above 2^32
    #[arg(long)]
    big_ids: bool,
    /// Shuffle links.actions in multi-create answers
    #[arg(long)]
    shuffle_actions: bool,
    /// PRNG seed
    #[arg(long, value_name = "N", default_value_t = defaults().seed)]
    seed: u64,
    /// Account droplet limit
    #[arg(long, value_name = "N", default_value_t = defaults().droplet_limit)]
    droplet_limit: u32,
    /// Run an HTTP app per active droplet on private_ip:backend_port
    #[arg(long)]
    serve_apps: bool,
    /// Port of those apps
    #[arg(long, value_name = "N", default_value_t = defaults().backend_port)]
    backend_port: u16,
    /// Delay after active before an app accepts, in ms
    #[arg(long, value_name = "N", default_value_t = ms(defaults().app_boot_delay))]
    app_boot_delay_ms: u64,
    /// Each app request (health checks too) takes this long, in ms
    #[arg(long, value_name = "N", default_value_t = ms(defaults().app_service_time))]
    app_service_time_ms: u64,
    /// At most N requests served at once per app; the rest wait [default: unlimited]
    #[arg(long, value_name = "N", value_parser = parse_concurrency)]
    app_concurrency: Option<usize>,
    /// Report `locked: true` while a droplet is `new` (the old reading of `locked`)
    #[arg(long)]
    locked_while_new: bool,
    /// Metadata droplet id
    #[arg(long, value_name = "N", default_value_t = defaults().metadata.id)]
    metadata_id: u64,
    /// Metadata hostname
    #[arg(long, value_name = "H", default_value_t = defaults().metadata.hostname)]
    metadata_hostname: String,
    /// Metadata public address
    #[arg(long, value_name = "IP", default_value_t = defaults().metadata.public_ipv4)]
    metadata_public_ipv4: String,
    /// Metadata private address
    #[arg(long, value_name = "IP", default_value_t = defaults().metadata.private_ipv4)]
    metadata_private_ipv4: String,
    /// Metadata region
    #[arg(long, value_name = "R", default_value_t = defaults().metadata.region)]
    metadata_region: String,
    /// Metadata user-data [default: empty]
    #[arg(long, value_name = "S")]
    metadata_user_data: Option<String>,
    /// Metadata tags, comma-separated [default: none]
    #[arg(long, value_name = "A,B", value_parser = parse_tags)]
    metadata_tags: Option<Tags>,
    /// Metadata anchor IPv4 (127.0.0.0/8), or `none` for no anchor interface
    /// [default: 127.0.0.1]
    #[arg(long, value_name = "IP|none", value_parser = parse_anchor)]
    metadata_anchor_ipv4: Option<Anchor>,
    /// Metadata reserved IPv4 (127.0.0.0/8) [default: none]
    #[arg(long, value_name = "IP", value_parser = parse_loopback_v4)]
    metadata_reserved_ipv4: Option<String>,
    /// Metadata public IPv6 (only ::1) [default: none]
    #[arg(long, value_name = "::1", value_parser = parse_ipv6)]
    metadata_public_ipv6: Option<String>,
}

fn defaults() -> SimOptions {
    SimOptions::default()
}

fn ms(d: Duration) -> u64 {
    d.as_millis() as u64
}

/// `--rate-limit-per-minute`: a number, or `off` (`None`).
#[derive(Clone, Copy, Debug)]
struct PerMinute(Option<u32>);

impl std::fmt::Display for PerMinute {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            Some(n) => write!(f, "{n}"),
            None => f.write_str("off"),
        }
    }
}

/// `--metadata-tags`: comma-separated, empty parts dropped.
#[derive(Clone, Debug)]
struct Tags(Vec<String>);

fn parse_listen(v: &str) -> Result<SocketAddr, String> {
    let addr: SocketAddr = v
        .parse()
        .map_err(|_| "expected an IPv4 address:port".to_string())?;
    if !is_allowed_listen(&addr) {
        return Err(format!("{addr}: only 127.0.0.0/8 addresses are allowed"));
    }
    Ok(addr)
}

fn parse_rate(v: &str) -> Result<f64, String> {
    let f: f64 = v
        .parse()
        .map_err(|_| "expected a number between 0 and 1".to_string())?;
    if !(0.0..=1.0).contains(&f) {
        return Err(format!("must be between 0 and 1, got {v}"));
    }
    Ok(f)
}

fn parse_concurrency(v: &str) -> Result<usize, String> {
    match v.parse::<usize>() {
        Ok(n) if n >= 1 => Ok(n),
        _ => Err("expected a number of at least 1".to_string()),
    }
}

fn parse_per_minute(v: &str) -> Result<PerMinute, String> {
    if v.eq_ignore_ascii_case("off") {
        return Ok(PerMinute(None));
    }
    v.parse()
        .map(|n| PerMinute(Some(n)))
        .map_err(|_| "expected a number or `off`".to_string())
}

/// `--metadata-anchor-ipv4`: an address, or `none` (`None`).
#[derive(Clone, Debug)]
struct Anchor(Option<String>);

fn parse_loopback_v4(v: &str) -> Result<String, String> {
    match v.parse::<std::net::Ipv4Addr>() {
        Ok(a) if a.is_loopback() => Ok(v.to_string()),
        _ => Err("expected an IPv4 address in 127.0.0.0/8".to_string()),
    }
}

fn parse_anchor(v: &str) -> Result<Anchor, String> {
    if v.eq_ignore_ascii_case("none") {
        return Ok(Anchor(None));
    }
    parse_loopback_v4(v).map(|a| Anchor(Some(a)))
}

fn parse_ipv6(v: &str) -> Result<String, String> {
    match v.parse::<std::net::Ipv6Addr>() {
        Ok(a) if a.is_loopback() => Ok(v.to_string()),
        _ => Err("only ::1 is allowed".to_string()),
    }
}

fn parse_tags(v: &str) -> Result<Tags, String> {
    Ok(Tags(
        v.split(',')
            .filter(|t| !t.is_empty())
            .map(str::to_string)
            .collect(),
    ))
}

impl SimArgs {
    fn options(self) -> SimOptions {
        let d = defaults();
        SimOptions {
            token: self.token,
            listen: self.listen,
            active_after: Duration::from_millis(self.active_after_ms),
            not_found_after_create: Duration::from_millis(self.not_found_after_create_ms),
            list_lag_after_create: Duration::from_millis(self.list_lag_after_create_ms),
            delete_linger: Duration::from_millis(self.delete_linger_ms),
            lag_jitter: Duration::from_millis(self.lag_jitter_ms),
            create_failure_rate: self.create_failure_rate,
            latency: Duration::from_millis(self.latency_ms),
            rate_limit_per_minute: self.rate_limit_per_minute.0,
            rate_limit_per_hour: self.rate_limit_per_hour,
            omit_hourly_retry_after: self.omit_hourly_retry_after,
            error_rate: self.error_rate,
            error_placement: self.error_placement,
            reset_rate: self.reset_rate,
            reset_placement: self.reset_placement,
            cloudflare_rate: self.cloudflare_rate,
            cloudflare_after_rate: self.cloudflare_after_rate,
            nulls_for_empty: self.nulls_for_empty,
            tokens: self.scoped_token,
            big_ids: self.big_ids,
            shuffle_actions: self.shuffle_actions,
            seed: self.seed,
            droplet_limit: self.droplet_limit,
            serve_apps: self.serve_apps,
            backend_port: self.backend_port,
            app_boot_delay: Duration::from_millis(self.app_boot_delay_ms),
            app_service_time: Duration::from_millis(self.app_service_time_ms),
            app_concurrency: self.app_concurrency,
            locked_while_new: self.locked_while_new,
            metadata: do_sim::MetadataIdentity {
                id: self.metadata_id,
                hostname: self.metadata_hostname,
                public_ipv4: self.metadata_public_ipv4,
                private_ipv4: self.metadata_private_ipv4,
                user_data: self.metadata_user_data.unwrap_or(d.metadata.user_data),
                region: self.metadata_region,
                tags: self.metadata_tags.map_or(d.metadata.tags, |t| t.0),
                anchor_ipv4: self
                    .metadata_anchor_ipv4
                    .map_or(d.metadata.anchor_ipv4, |a| a.0),
                reserved_ipv4: self.metadata_reserved_ipv4,
                public_ipv6: self.metadata_public_ipv6,
            },
        }
    }
}

/// Installs the SIGTERM/SIGINT handlers (before the "listening" line is
/// printed, so a quick SIGTERM is never fatal) and returns a waiter.
fn signal_waiter() -> anyhow::Result<impl FnOnce() -> anyhow::Result<()>> {
    use tokio::signal::unix::{signal, SignalKind};
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let (mut term, mut int) = rt.block_on(async {
        Ok::<_, std::io::Error>((
            signal(SignalKind::terminate())?,
            signal(SignalKind::interrupt())?,
        ))
    })?;
    Ok(move || {
        rt.block_on(async {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
        });
        Ok(())
    })
}

fn main() -> ExitCode {
    // Usage errors exit with status 2, `--help` with 0.
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("do-sim: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    let wait = signal_waiter()?;
    let sim = match cli.command {
        None => Sim::start(cli.sim.options())?,
        Some(Command::Sandbox(args)) => start_sandbox(args)?,
    };
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "do-sim listening on {}", sim.url());
    let _ = out.flush();
    drop(out);
    let res = wait();
    drop(sim);
    res
}

/// Starts the simulator and writes the world into `--dir`.
fn start_sandbox(args: SandboxArgs) -> anyhow::Result<Sim> {
    let dir =
        std::path::absolute(&args.dir).with_context(|| format!("--dir {}", args.dir.display()))?;
    let user_data = match &args.user_data {
        Some(p) => {
            std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?
        }
        None => sandbox::TEST_USER_DATA.to_string(),
    };
    let frontend_port = match args.frontend_port {
        Some(p) => p,
        None => sandbox::free_port().context("finding a free frontend port")?,
    };
    let mut opts = args.sim.options();
    opts.serve_apps = true;
    let (token, backend_port) = (opts.token.clone(), opts.backend_port);
    let sim = Sim::start(opts)?;

    let mut config = DoproxyConfig::loopback(
        &dir,
        &sim.url(),
        &token,
        backend_port,
        frontend_port,
        args.haproxy,
    );
    if let Some(p) = args.poll_interval {
        config.poll_interval = Some(p);
    }
    if let Some(c) = args.check_command {
        config.check_command = Some(c);
    }
    if args.default_timeouts {
        use_default_timeouts(&mut config);
    }
    sandbox::prepare_dir(&dir, &config, &user_data)
        .with_context(|| format!("writing the sandbox into {}", dir.display()))?;
    Ok(sim)
}

/// Leaves doproxy's own defaults for the timeouts, the retry policy and the
/// health-check interval (`poll_interval` has a flag of its own).
fn use_default_timeouts(c: &mut DoproxyConfig) {
    c.wait_timeout = None;
    c.not_found_grace = None;
    c.api_timeout = None;
    c.lock_timeout = None;
    c.drain_timeout = None;
    c.reload_verify_timeout = None;
    c.retry = RetryOptions::default();
    c.haproxy.check_inter = None;
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    /// The options the command line gives; `Ok(None)` means `--help`.
    fn parse_args(args: &[String]) -> Result<Option<SimOptions>, String> {
        let argv = std::iter::once("do-sim".to_string()).chain(args.iter().cloned());
        match Cli::try_parse_from(argv) {
            Ok(Cli {
                command: Some(Command::Sandbox(args)),
                ..
            }) => Ok(Some(args.sim.options())),
            Ok(cli) => Ok(Some(cli.sim.options())),
            Err(e) if e.kind() == clap::error::ErrorKind::DisplayHelp => Ok(None),
            Err(e) => Err(e.to_string()),
        }
    }

    #[test]
    fn the_command_line_is_well_formed() {
        Cli::command().debug_assert();
    }

    fn args(s: &str) -> Vec<String> {
        s.split_whitespace().map(str::to_string).collect()
    }

    #[test]
    fn parses_every_flag() {
        let o = parse_args(&args(
            "--listen 127.0.0.2:9999 --token T --active-after-ms 5 --not-found-after-create-ms 6 \
             --delete-linger-ms 7 --create-failure-rate 0.5 --latency-ms 8 --rate-limit-per-minute off \
             --rate-limit-per-hour 9 --error-rate 0.1 --reset-rate=0.2 --seed 10 --droplet-limit 11 \
             --serve-apps --backend-port 12 --app-boot-delay-ms 13 --metadata-public-ipv4 127.0.0.9 \
             --metadata-hostname lb --metadata-tags a,b --list-lag-after-create-ms 14 \
             --lag-jitter-ms 15 --omit-hourly-retry-after --error-placement after \
             --reset-placement before --cloudflare-rate 0.3 --cloudflare-after-rate=0.4 \
             --nulls-for-empty --scoped-token ro=droplet:read,actions:read \
             --scoped-token none= --big-ids --shuffle-actions --locked-while-new \
             --metadata-anchor-ipv4 127.0.9.9 --metadata-reserved-ipv4 127.1.0.1 \
             --metadata-public-ipv6 ::1 --app-service-time-ms 16 --app-concurrency 17",
        ))
        .unwrap()
        .unwrap();
        assert_eq!(o.listen, "127.0.0.2:9999".parse().unwrap());
        assert_eq!(o.token, "T");
        assert_eq!(o.active_after, Duration::from_millis(5));
        assert_eq!(o.not_found_after_create, Duration::from_millis(6));
        assert_eq!(o.delete_linger, Duration::from_millis(7));
        assert_eq!(o.create_failure_rate, 0.5);
        assert_eq!(o.latency, Duration::from_millis(8));
        assert_eq!(o.rate_limit_per_minute, None);
        assert_eq!(o.rate_limit_per_hour, 9);
        assert_eq!(o.error_rate, 0.1);
        assert_eq!(o.reset_rate, 0.2);
        assert_eq!(o.seed, 10);
        assert_eq!(o.droplet_limit, 11);
        assert!(o.serve_apps);
        assert_eq!(o.backend_port, 12);
        assert_eq!(o.app_boot_delay, Duration::from_millis(13));
        assert_eq!(o.metadata.public_ipv4, "127.0.0.9");
        assert_eq!(o.metadata.hostname, "lb");
        assert_eq!(o.metadata.tags, vec!["a", "b"]);
        assert_eq!(o.list_lag_after_create, Duration::from_millis(14));
        assert_eq!(o.lag_jitter, Duration::from_millis(15));
        assert!(o.omit_hourly_retry_after && o.nulls_for_empty && o.big_ids);
        assert!(o.shuffle_actions && o.locked_while_new);
        assert_eq!(o.error_placement, Placement::After);
        assert_eq!(o.reset_placement, Placement::Before);
        assert_eq!((o.cloudflare_rate, o.cloudflare_after_rate), (0.3, 0.4));
        assert_eq!(
            o.tokens,
            vec![
                ScopedToken::new("ro", &["droplet:read", "actions:read"]),
                ScopedToken::new("none", &[])
            ]
        );
        assert_eq!(o.metadata.anchor_ipv4.as_deref(), Some("127.0.9.9"));
        assert_eq!(o.metadata.reserved_ipv4.as_deref(), Some("127.1.0.1"));
        assert_eq!(o.metadata.public_ipv6.as_deref(), Some("::1"));
        assert_eq!(o.app_service_time, Duration::from_millis(16));
        assert_eq!(o.app_concurrency, Some(17));

        // Every default is SimOptions::default()'s.
        let d = parse_args(&[]).unwrap().unwrap();
        let e = SimOptions::default();
        assert_eq!(format!("{d:?}"), format!("{e:?}"));
        let none = parse_args(&args("--metadata-anchor-ipv4 none"))
            .unwrap()
            .unwrap();
        assert_eq!(none.metadata.anchor_ipv4, None);
    }

    #[test]
    fn parses_the_sandbox_mode() {
        let cli = Cli::try_parse_from([
            "do-sim",
            "sandbox",
            "--dir",
            "w",
            "--haproxy",
            "--frontend-port",
            "9",
            "--poll-interval=1s",
            "--check-command",
            "haproxy -c -f {config}",
            "--default-timeouts",
            "--user-data",
            "u.yml",
            "--token",
            "T",
            "--backend-port=12",
        ])
        .unwrap();
        let Some(Command::Sandbox(a)) = cli.command else {
            panic!("not the sandbox mode: {cli:?}");
        };
        assert_eq!(a.dir, PathBuf::from("w"));
        assert!(a.haproxy && a.default_timeouts);
        assert_eq!(a.frontend_port, Some(9));
        assert_eq!(a.poll_interval.as_deref(), Some("1s"));
        assert_eq!(a.check_command.as_deref(), Some("haproxy -c -f {config}"));
        assert_eq!(a.user_data, Some(PathBuf::from("u.yml")));
        let o = a.sim.options();
        assert_eq!((o.token.as_str(), o.backend_port), ("T", 12));
        // Simulator flags go after `sandbox`, and --dir is required.
        assert!(Cli::try_parse_from(["do-sim", "--seed", "2", "sandbox", "--dir", "w"]).is_err());
        assert!(Cli::try_parse_from(["do-sim", "sandbox"]).is_err());
    }

    #[test]
    fn rejects_bad_input() {
        assert!(parse_args(&args("--listen 0.0.0.0:80")).is_err());
        assert!(parse_args(&args("--listen 10.0.0.1:80")).is_err());
        assert!(parse_args(&args("--listen [::1]:80")).is_err());
        assert!(parse_args(&args("--error-rate 2")).is_err());
        assert!(parse_args(&args("--cloudflare-rate 1.5")).is_err());
        assert!(parse_args(&args("--error-placement sometimes")).is_err());
        assert!(parse_args(&args("--scoped-token no-scopes")).is_err());
        assert!(parse_args(&args("--metadata-anchor-ipv4 10.17.0.160")).is_err());
        assert!(parse_args(&args("--metadata-reserved-ipv4 45.55.96.17")).is_err());
        assert!(parse_args(&args("--metadata-public-ipv6 2604:a880::1")).is_err());
        assert!(parse_args(&args("--seed")).is_err());
        assert!(parse_args(&args("--app-concurrency 0")).is_err());
        assert!(parse_args(&args("--bogus 1")).is_err());
        assert_eq!(
            parse_args(&args("--rate-limit-per-minute 3"))
                .unwrap()
                .unwrap()
                .rate_limit_per_minute,
            Some(3)
        );
        assert!(parse_args(&args("--help")).unwrap().is_none());
    }
}
