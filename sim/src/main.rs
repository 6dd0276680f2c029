//! `do-sim` command: runs the simulator until SIGTERM or SIGINT.

use std::io::Write;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser};
use do_sim::{is_allowed_listen, Sim, SimOptions};

/// A local DigitalOcean API v2 + droplet metadata simulator, on loopback only.
#[derive(Parser, Debug)]
#[command(
    name = "do-sim",
    after_help = "Prints `do-sim listening on http://ADDR` once ready; exits on SIGTERM/SIGINT."
)]
struct Cli {
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
    /// A deleted droplet stays visible this long, in ms
    #[arg(long, value_name = "N", default_value_t = ms(defaults().delete_linger))]
    delete_linger_ms: u64,
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
    /// Fraction (0..=1) of API requests answered 500/502/503
    #[arg(long, value_name = "F", value_parser = parse_rate, default_value_t = defaults().error_rate)]
    error_rate: f64,
    /// Fraction (0..=1) of API requests whose connection is reset
    #[arg(long, value_name = "F", value_parser = parse_rate, default_value_t = defaults().reset_rate)]
    reset_rate: f64,
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

fn parse_per_minute(v: &str) -> Result<PerMinute, String> {
    if v.eq_ignore_ascii_case("off") {
        return Ok(PerMinute(None));
    }
    v.parse()
        .map(|n| PerMinute(Some(n)))
        .map_err(|_| "expected a number or `off`".to_string())
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
            delete_linger: Duration::from_millis(self.delete_linger_ms),
            create_failure_rate: self.create_failure_rate,
            latency: Duration::from_millis(self.latency_ms),
            rate_limit_per_minute: self.rate_limit_per_minute.0,
            rate_limit_per_hour: self.rate_limit_per_hour,
            error_rate: self.error_rate,
            reset_rate: self.reset_rate,
            seed: self.seed,
            droplet_limit: self.droplet_limit,
            serve_apps: self.serve_apps,
            backend_port: self.backend_port,
            app_boot_delay: Duration::from_millis(self.app_boot_delay_ms),
            metadata: do_sim::MetadataIdentity {
                id: self.metadata_id,
                hostname: self.metadata_hostname,
                public_ipv4: self.metadata_public_ipv4,
                private_ipv4: self.metadata_private_ipv4,
                user_data: self.metadata_user_data.unwrap_or(d.metadata.user_data),
                region: self.metadata_region,
                tags: self.metadata_tags.map_or(d.metadata.tags, |t| t.0),
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
    let opts = Cli::parse().sim.options();
    let wait = match signal_waiter() {
        Ok(w) => w,
        Err(e) => {
            eprintln!("do-sim: {e:#}");
            return ExitCode::FAILURE;
        }
    };
    let sim = match Sim::start(opts) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("do-sim: {e:#}");
            return ExitCode::FAILURE;
        }
    };
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "do-sim listening on {}", sim.url());
    let _ = out.flush();
    drop(out);
    let res = wait();
    drop(sim);
    match res {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("do-sim: {e:#}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    /// The options the command line gives; `Ok(None)` means `--help`.
    fn parse_args(args: &[String]) -> Result<Option<SimOptions>, String> {
        let argv = std::iter::once("do-sim".to_string()).chain(args.iter().cloned());
        match Cli::try_parse_from(argv) {
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
             --metadata-hostname lb --metadata-tags a,b",
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
    }

    #[test]
    fn rejects_bad_input() {
        assert!(parse_args(&args("--listen 0.0.0.0:80")).is_err());
        assert!(parse_args(&args("--listen 10.0.0.1:80")).is_err());
        assert!(parse_args(&args("--listen [::1]:80")).is_err());
        assert!(parse_args(&args("--error-rate 2")).is_err());
        assert!(parse_args(&args("--seed")).is_err());
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
