//! `doproxy autoscale simulate|record|traces`: the subcommands' arguments and what runs
//! them. None needs the API or a token: they read only the config's `autoscale:` section
//! (and `haproxy.stats_socket` for `record`) when a config file is found, defaults otherwise.

use crate::autoscale::simulate::{self, dist::Dist, engine::Model, synth, trace::Trace};
use crate::autoscale::{record, Settings};
use crate::config::AutoscaleSection;
use crate::error::usage_error;
use crate::output::{self, note, say, warn};
use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// `doproxy autoscale ...`
#[derive(Debug, Subcommand)]
pub enum AutoscaleCommand {
    /// Replay a trace against doproxy's policy and the baselines; score and plot them
    #[command(after_help = SIMULATE_HELP)]
    Simulate(Box<SimulateArgs>),
    /// Record a live load balancer's request rate into a trace (from its stats socket)
    #[command(
        after_help = "The socket is the config's haproxy.stats_socket (default /run/haproxy/admin.sock) unless --socket is given. Each row holds the requests of one interval (the delta of the frontends' req_tot). Stops after --duration, or on Ctrl-C/SIGTERM.\n\nExamples:\n  doproxy autoscale record --out today.csv --interval 1s --duration 24h\n  doproxy autoscale simulate --trace today.csv"
    )]
    Record(RecordArgs),
    /// Write the shipped traces (generated deterministically from a seed)
    #[command(
        after_help = "Writes diurnal-day.csv (per second, 24 h), flash-crowd.csv, slow-ramp.csv and square-wave.csv (per minute). The repository's traces/ holds the last three for --seed 1; the day is 1.2 MB and is generated when needed.\n\nExample:\n  doproxy autoscale traces --out /tmp/traces"
    )]
    Traces(TracesArgs),
}

const SIMULATE_HELP: &str = "Settings: the config's autoscale: section when a config is found (--config, $DOPROXY_CONFIG, ./doproxy.yml), else the defaults; no token or API is needed. --min/--max override both for every policy.

Policies: doproxy, do-pool, hpa, aws-target, knative (all five by default), each with optional parameters, e.g. hpa:target=0.7,window=300 or doproxy:standby=2.

Trace formats (detected): `seconds,requests` CSV (each row's requests arrive from its time until the next row's), World Cup 98 binary logs (uncompressed wc_dayN_M files), Azure Functions 2019 invocations_per_function_md.anon.dNN.csv (summed over functions).

Examples:
  doproxy autoscale simulate --trace traces/flash-crowd.csv --max 200
  doproxy autoscale simulate --trace day.csv --policy doproxy --policy hpa:target=0.6 -o json
  doproxy autoscale simulate --trace traces/square-wave.csv --max 200 --plot square.svg";

/// `doproxy autoscale simulate`.
#[derive(Debug, Args)]
pub struct SimulateArgs {
    /// The trace file
    #[arg(long, value_name = "FILE")]
    pub trace: PathBuf,
    /// A policy, NAME[:key=value,...]; repeat for several [default: all five]
    #[arg(long = "policy", value_name = "SPEC")]
    pub policies: Vec<String>,
    /// Also draw load, capacity by role and violations per policy into this SVG file
    #[arg(long, value_name = "FILE.svg")]
    pub plot: Option<PathBuf>,
    /// Also write each policy's minutes (load, fleet by role, p99, 503s) into this CSV file
    #[arg(long, value_name = "FILE.csv")]
    pub timeline: Option<PathBuf>,
    /// Random seed (arrivals, boot times)
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// A minute whose p99 queue time is over this many ms (or with a 503) violates the SLO
    #[arg(long, default_value_t = 100.0, value_name = "MS")]
    pub slo_queue_ms: f64,
    /// Print the table as Markdown (text mode)
    #[arg(long)]
    pub markdown: bool,
    /// Fewest serving droplets, for every policy [default: autoscale.min]
    #[arg(long)]
    pub min: Option<u32>,
    /// Most serving droplets, for every policy [default: autoscale.max]
    #[arg(long)]
    pub max: Option<u32>,
    /// Multiply every count of the trace by this
    #[arg(long, default_value_t = 1.0, value_name = "FACTOR")]
    pub scale: f64,
    /// Serving droplets at the start [default: what the first row needs at 70 %]
    #[arg(long, value_name = "N")]
    pub initial: Option<u32>,
    /// Concurrent requests per server (HAProxy server maxconn)
    #[arg(long, default_value_t = 20)]
    pub maxconn: u32,
    /// Service time per request, seconds (const:X, uniform:A,B, lognormal:MEDIAN,SIGMA[,MIN,MAX])
    #[arg(long, default_value = "lognormal:0.0882,0.5", value_name = "DIST")]
    pub service: String,
    /// From create to `active`, seconds
    #[arg(long, default_value = "lognormal:35,0.25,30,71", value_name = "DIST")]
    pub active_after: String,
    /// From `active` to the app answering, seconds
    #[arg(long, default_value = "uniform:30,90", value_name = "DIST")]
    pub app_ready_after: String,
    /// HAProxy timeout queue: a request queued longer is answered 503
    #[arg(long, default_value = "5s", value_parser = crate::duration::parse)]
    pub timeout_queue: Duration,
    /// The model's step
    #[arg(long, default_value = "100ms", value_parser = crate::duration::parse)]
    pub step: Duration,
    /// The droplet's price, $/h (s-1vcpu-1gb: $6/month)
    #[arg(long, default_value_t = 0.00893, value_name = "USD")]
    pub price: f64,
    /// The account's droplet limit
    #[arg(long, value_name = "N")]
    pub droplet_limit: Option<u32>,
    /// A metrics blackout, START+SECONDS (repeatable): no stats, no metrics
    #[arg(long, value_name = "START+SECS", value_parser = window)]
    pub blackout: Vec<(f64, f64)>,
    /// An API outage (5xx), START+SECONDS (repeatable)
    #[arg(long, value_name = "START+SECS", value_parser = window)]
    pub api_outage: Vec<(f64, f64)>,
}

/// `doproxy autoscale record`.
#[derive(Debug, Args)]
pub struct RecordArgs {
    /// The trace file to write
    #[arg(long, value_name = "FILE")]
    pub out: PathBuf,
    /// Time between samples
    #[arg(long, default_value = "1s", value_parser = crate::duration::parse)]
    pub interval: Duration,
    /// Stop after this long [default: until Ctrl-C or SIGTERM]
    #[arg(long, value_parser = crate::duration::parse)]
    pub duration: Option<Duration>,
    /// The stats socket [default: the config's haproxy.stats_socket]
    #[arg(long, value_name = "PATH")]
    pub socket: Option<PathBuf>,
}

/// `doproxy autoscale traces`.
#[derive(Debug, Args)]
pub struct TracesArgs {
    /// The folder to write into (created if missing)
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// Random seed
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
}

fn window(text: &str) -> Result<(f64, f64), String> {
    let (a, b) = text
        .split_once('+')
        .ok_or_else(|| format!("{text:?} is not START+SECONDS"))?;
    let a = crate::duration::parse(a)?.as_secs_f64();
    let b = crate::duration::parse(b)?.as_secs_f64();
    Ok((a, b))
}

/// The config file to read, if any: `--config` (must exist), `$DOPROXY_CONFIG` (must
/// exist), else `./doproxy.yml` when it exists.
fn find_config(flag: Option<PathBuf>) -> Result<Option<PathBuf>> {
    let env = std::env::var_os("DOPROXY_CONFIG")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from);
    match (flag, env) {
        (Some(p), _) | (None, Some(p)) => {
            if p.exists() {
                Ok(Some(p))
            } else {
                Err(usage_error(format!("no config file at {}", p.display())))
            }
        }
        (None, None) => Ok(Some(PathBuf::from("doproxy.yml")).filter(|p| p.exists())),
    }
}

fn section(config: Option<PathBuf>) -> Result<(AutoscaleSection, Option<PathBuf>)> {
    match find_config(config)? {
        Some(p) => Ok((AutoscaleSection::load(&p)?, Some(p))),
        None => Ok((AutoscaleSection::default(), None)),
    }
}

/// Runs an `autoscale` subcommand; `config` is `--config`.
pub async fn run(config: Option<PathBuf>, cmd: AutoscaleCommand) -> Result<()> {
    match cmd {
        AutoscaleCommand::Simulate(a) => {
            let (sec, path) = section(config)?;
            simulate_cmd(sec.settings, path.as_deref(), *a)
        }
        AutoscaleCommand::Record(a) => {
            let socket = match a.socket {
                Some(s) => s,
                None => {
                    let (sec, _) = section(config)?;
                    match sec.stats_socket {
                        Some(Some(s)) => PathBuf::from(s),
                        Some(None) => {
                            return Err(usage_error(
                                "haproxy.stats_socket is null in the config: give --socket",
                            ))
                        }
                        None => PathBuf::from("/run/haproxy/admin.sock"),
                    }
                }
            };
            let rows = record::run(&record::Options {
                socket,
                out: a.out.clone(),
                interval: a.interval,
                duration: a.duration,
            })
            .await?;
            say(&format!("{rows} rows written to {}", a.out.display()));
            output::json(&serde_json::json!({"action": "record", "out": a.out, "rows": rows}));
            Ok(())
        }
        AutoscaleCommand::Traces(a) => traces_cmd(&a.out, a.seed),
    }
}

fn dist(flag: &str, text: &str) -> Result<Dist> {
    Dist::parse(text).map_err(|e| usage_error(format!("--{flag}: {e:#}")))
}

fn simulate_cmd(settings: Option<Settings>, config: Option<&Path>, a: SimulateArgs) -> Result<()> {
    let mut settings = settings.unwrap_or_default();
    if let Some(m) = a.min {
        settings.min = m;
    }
    if let Some(m) = a.max {
        settings.max = m;
    }
    settings
        .validate()
        .map_err(|(k, m)| usage_error(format!("--min/--max: {k}: {m}")))?;
    if !(a.scale.is_finite() && a.scale > 0.0) {
        return Err(usage_error("--scale must be above 0"));
    }
    if a.maxconn == 0 {
        return Err(usage_error("--maxconn must be at least 1"));
    }
    let step = a.step.as_secs_f64();
    if !(0.001..=1.0).contains(&step) {
        return Err(usage_error("--step must be between 1ms and 1s"));
    }
    let trace = Trace::load(&a.trace)
        .map_err(|e| usage_error(format!("--trace: {e:#}")))?
        .scaled(a.scale);
    let model = Model {
        step,
        maxconn: a.maxconn,
        service: dist("service", &a.service)?,
        timeout_queue: a.timeout_queue.as_secs_f64(),
        active_after: dist("active-after", &a.active_after)?,
        app_ready_after: dist("app-ready-after", &a.app_ready_after)?,
        hourly_price: a.price,
        droplet_limit: a.droplet_limit,
        slo_queue_ms: a.slo_queue_ms,
        blackouts: a.blackout.clone(),
        api_outages: a.api_outage.clone(),
        initial: a.initial,
        seed: a.seed,
        ..Model::default()
    };
    let specs: Vec<String> = if a.policies.is_empty() {
        simulate::POLICIES.iter().map(|p| p.to_string()).collect()
    } else {
        a.policies.clone()
    };
    for s in &specs {
        simulate::policy(s, &settings).map_err(|e| usage_error(format!("--policy {s}: {e:#}")))?;
    }
    let need = trace.peak_rate() * model.service.mean() / (f64::from(model.maxconn) * 0.7);
    if need > f64::from(settings.max) {
        warn(&format!(
            "the trace's peak ({:.0} requests/s) needs about {need:.0} droplets at 70 % of their slots; max is {} (set autoscale.max or --max)",
            trace.peak_rate(),
            settings.max
        ));
    }
    note(&format!(
        "settings: {}; {} policies on {} ({:.1} h, {} requests)",
        config.map_or_else(
            || "defaults (no config file)".to_string(),
            |p| format!("autoscale: section of {}", p.display())
        ),
        specs.len(),
        trace.name,
        trace.duration() / 3600.0,
        trace.total()
    ));
    let runs = simulate::compare(&trace, &model, &settings, &specs)?;
    let scores: Vec<simulate::Score> = runs.iter().map(|r| r.0.clone()).collect();
    if let Some(p) = &a.plot {
        let title = format!(
            "{}: {:.1} h, peak {:.0} requests/s, SLO p99 queue ≤ {} ms",
            trace.name,
            trace.duration() / 3600.0,
            trace.peak_rate(),
            a.slo_queue_ms
        );
        simulate::plot::draw(p, &title, &runs, &model)?;
        note(&format!("plot written to {}", p.display()));
    }
    if let Some(p) = &a.timeline {
        let mut csv = String::from(
            "policy,minute,rate,serving,booting,standby,draining,p99_queue_ms,errors_503,violation\n",
        );
        for (s, o) in &runs {
            for (i, m) in o.minutes.iter().enumerate() {
                csv.push_str(&format!(
                    "\"{}\",{i},{:.1},{:.2},{:.2},{:.2},{:.2},{:.0},{:.0},{}\n",
                    s.policy,
                    m.rate,
                    m.serving,
                    m.booting,
                    m.standby,
                    m.draining,
                    m.p99_ms,
                    m.errors,
                    u8::from(m.violation)
                ));
            }
        }
        crate::fsutil::write_atomic(p, csv.as_bytes())?;
    }
    say(&format!(
        "trace {}: {:.1} h, {} requests, peak {:.0}/s; SLO: p99 queue time ≤ {} ms and no 503, per minute",
        trace.name,
        trace.duration() / 3600.0,
        trace.total(),
        trace.peak_rate(),
        a.slo_queue_ms
    ));
    say(simulate::table(&scores, a.markdown).trim_end());
    output::json(&serde_json::json!({
        "trace": {
            "name": trace.name,
            "seconds": trace.duration(),
            "requests": trace.total(),
            "peak_rate": trace.peak_rate(),
        },
        "settings": settings,
        "model": {
            "step_s": model.step,
            "maxconn": model.maxconn,
            "service": model.service.to_string(),
            "timeout_queue_s": model.timeout_queue,
            "active_after": model.active_after.to_string(),
            "app_ready_after": model.app_ready_after.to_string(),
            "hourly_price": model.hourly_price,
            "slo_queue_ms": model.slo_queue_ms,
            "seed": model.seed,
        },
        "policies": scores,
    }));
    Ok(())
}

fn traces_cmd(out: &Path, seed: u64) -> Result<()> {
    std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
    let mut written = Vec::new();
    for (name, t) in synth::all(seed) {
        let p = out.join(name);
        crate::fsutil::write_atomic(&p, t.to_csv().as_bytes())?;
        say(&format!(
            "{}: {:.1} h, {} rows, {} requests",
            p.display(),
            t.duration() / 3600.0,
            t.segments.len(),
            t.total()
        ));
        written.push(p);
    }
    output::json(&serde_json::json!({"action": "traces", "seed": seed, "files": written}));
    Ok(())
}
