//! `do-sim` command: runs the simulator until SIGTERM or SIGINT.

use std::io::Write;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use do_sim::{is_allowed_listen, Sim, SimOptions};

const USAGE: &str = "\
usage: do-sim [options]

  --listen ADDR                    127.0.0.0/8 address:port to listen on (default 127.0.0.1:0)
  --token T                        bearer token the API accepts (default sim-token)
  --active-after-ms N              new -> active delay (default 3000)
  --not-found-after-create-ms N    a new droplet is 404 / unlisted this long (default 0)
  --delete-linger-ms N             a deleted droplet stays visible this long (default 0)
  --create-failure-rate F          fraction of creates whose action ends errored (default 0)
  --latency-ms N                   added to every API request (default 0)
  --rate-limit-per-minute N|off    per-minute request limit (default 250)
  --rate-limit-per-hour N          per-hour request limit (default 5000)
  --error-rate F                   fraction of API requests answered 500/502/503 (default 0)
  --reset-rate F                   fraction of API requests whose connection is reset (default 0)
  --seed N                         PRNG seed (default 1)
  --droplet-limit N                account droplet limit (default 25)
  --serve-apps                     run an HTTP app per active droplet on private_ip:backend_port
  --backend-port N                 port of those apps (default 8080)
  --app-boot-delay-ms N            delay after active before an app accepts (default 0)
  --metadata-id N                  metadata droplet id (default 1000)
  --metadata-hostname H            metadata hostname (default sim-lb)
  --metadata-public-ipv4 IP        metadata public address (default 127.0.0.1)
  --metadata-private-ipv4 IP       metadata private address (default 127.0.0.1)
  --metadata-region R              metadata region (default nyc3)
  --metadata-user-data S           metadata user-data (default empty)
  --metadata-tags A,B              metadata tags (default none)
  -h, --help                       this text

Prints `do-sim listening on http://ADDR` once ready; exits on SIGTERM/SIGINT.
";

fn parse_num<T: std::str::FromStr>(flag: &str, v: &str) -> Result<T, String> {
    v.parse::<T>()
        .map_err(|_| format!("{flag}: invalid value {v:?}"))
}

fn parse_rate(flag: &str, v: &str) -> Result<f64, String> {
    let f: f64 = parse_num(flag, v)?;
    if !(0.0..=1.0).contains(&f) {
        return Err(format!("{flag}: must be between 0 and 1, got {v}"));
    }
    Ok(f)
}

fn ms(flag: &str, v: &str) -> Result<Duration, String> {
    parse_num::<u64>(flag, v).map(Duration::from_millis)
}

/// `Ok(None)` means `--help`.
fn parse_args(args: &[String]) -> Result<Option<SimOptions>, String> {
    let mut o = SimOptions::default();
    let mut i = 0;
    while i < args.len() {
        let arg = args[i].as_str();
        // Accept both `--flag value` and `--flag=value`.
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f, Some(v.to_string())),
            _ => (arg, None),
        };
        if flag == "-h" || flag == "--help" {
            return Ok(None);
        }
        if flag == "--serve-apps" {
            o.serve_apps = true;
            i += 1;
            continue;
        }
        let value = match inline {
            Some(v) => v,
            None => {
                i += 1;
                args.get(i)
                    .cloned()
                    .ok_or_else(|| format!("{flag} needs a value"))?
            }
        };
        let v = value.as_str();
        match flag {
            "--listen" => {
                let addr: SocketAddr = parse_num(flag, v)?;
                if !is_allowed_listen(&addr) {
                    return Err(format!(
                        "--listen {addr}: only 127.0.0.0/8 addresses are allowed"
                    ));
                }
                o.listen = addr;
            }
            "--token" => o.token = value.clone(),
            "--active-after-ms" => o.active_after = ms(flag, v)?,
            "--not-found-after-create-ms" => o.not_found_after_create = ms(flag, v)?,
            "--delete-linger-ms" => o.delete_linger = ms(flag, v)?,
            "--create-failure-rate" => o.create_failure_rate = parse_rate(flag, v)?,
            "--latency-ms" => o.latency = ms(flag, v)?,
            "--rate-limit-per-minute" => {
                o.rate_limit_per_minute = if v.eq_ignore_ascii_case("off") {
                    None
                } else {
                    Some(parse_num(flag, v)?)
                }
            }
            "--rate-limit-per-hour" => o.rate_limit_per_hour = parse_num(flag, v)?,
            "--error-rate" => o.error_rate = parse_rate(flag, v)?,
            "--reset-rate" => o.reset_rate = parse_rate(flag, v)?,
            "--seed" => o.seed = parse_num(flag, v)?,
            "--droplet-limit" => o.droplet_limit = parse_num(flag, v)?,
            "--backend-port" => o.backend_port = parse_num(flag, v)?,
            "--app-boot-delay-ms" => o.app_boot_delay = ms(flag, v)?,
            "--metadata-id" => o.metadata.id = parse_num(flag, v)?,
            "--metadata-hostname" => o.metadata.hostname = value.clone(),
            "--metadata-public-ipv4" => o.metadata.public_ipv4 = value.clone(),
            "--metadata-private-ipv4" => o.metadata.private_ipv4 = value.clone(),
            "--metadata-region" => o.metadata.region = value.clone(),
            "--metadata-user-data" => o.metadata.user_data = value.clone(),
            "--metadata-tags" => {
                o.metadata.tags = v
                    .split(',')
                    .filter(|t| !t.is_empty())
                    .map(str::to_string)
                    .collect()
            }
            other => return Err(format!("unknown option {other:?} (see --help)")),
        }
        i += 1;
    }
    Ok(Some(o))
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
    let args: Vec<String> = std::env::args().skip(1).collect();
    let opts = match parse_args(&args) {
        Ok(Some(o)) => o,
        Ok(None) => {
            print!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("do-sim: {e}");
            return ExitCode::from(2);
        }
    };
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
