//! `doproxy autoscale record`: samples a live load balancer's stats socket (`show stat`)
//! every interval and writes the requests that arrived in each one — the delta of the
//! frontends' cumulative `req_tot` — as a `seconds,requests` trace, one flushed row per
//! interval, until the duration is over or SIGINT/SIGTERM arrives.

use crate::haproxy::runtime;
use crate::output::{note, warn};
use anyhow::{bail, Context, Result};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use tokio::signal::unix::{signal, SignalKind};

/// What to record.
#[derive(Debug, Clone)]
pub struct Options {
    /// HAProxy's admin stats socket.
    pub socket: PathBuf,
    /// The trace file to write.
    pub out: PathBuf,
    /// Time between two samples.
    pub interval: Duration,
    /// Stop after this long (`None`: until a signal).
    pub duration: Option<Duration>,
}

/// Σ `req_tot` over the FRONTEND rows of a `show stat` answer (`None` when it has no such
/// column or row).
pub fn frontend_requests(show_stat: &str) -> Option<u64> {
    let mut lines = show_stat.lines();
    let header = lines.find(|l| l.starts_with("# "))?;
    let cols: Vec<&str> = header.trim_start_matches("# ").split(',').collect();
    let svname = cols.iter().position(|c| *c == "svname")?;
    let req_tot = cols.iter().position(|c| *c == "req_tot")?;
    let mut sum = None;
    for l in lines {
        let f: Vec<&str> = l.split(',').collect();
        if f.get(svname) == Some(&"FRONTEND") {
            let v = f
                .get(req_tot)
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0);
            sum = Some(sum.unwrap_or(0) + v);
        }
    }
    sum
}

async fn sample(socket: &Path) -> Result<u64> {
    let out = runtime::command(socket, "show stat").await?;
    frontend_requests(&out)
        .with_context(|| format!("{}: `show stat` has no FRONTEND req_tot", socket.display()))
}

/// Records until the duration is over or a signal arrives; returns the rows written.
pub async fn run(opts: &Options) -> Result<u64> {
    if opts.interval < Duration::from_millis(100) {
        bail!("--interval must be at least 100ms");
    }
    let mut last = sample(&opts.socket).await?;
    let file = std::fs::File::create(&opts.out)
        .with_context(|| format!("cannot create {}", opts.out.display()))?;
    let mut w = std::io::BufWriter::new(file);
    writeln!(w, "seconds,requests")?;
    w.flush()?;
    note(&format!(
        "recording {} every {:?} into {}",
        opts.socket.display(),
        opts.interval,
        opts.out.display()
    ));
    let start = Instant::now();
    let mut row_start = 0.0f64;
    let mut rows = 0u64;
    let mut ticker = tokio::time::interval(opts.interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticker.tick().await;
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = term.recv() => break,
            _ = int.recv() => break,
        }
        let now = start.elapsed().as_secs_f64();
        match sample(&opts.socket).await {
            Ok(v) => {
                // A reload starts the new worker's counters at 0.
                let delta = if v >= last { v - last } else { v };
                last = v;
                writeln!(w, "{},{delta}", format_secs(row_start))?;
                w.flush()?;
                rows += 1;
                row_start = now;
            }
            // The next good sample's row covers the gap.
            Err(e) => warn(&format!("{e:#}")),
        }
        if opts.duration.is_some_and(|d| start.elapsed() >= d) {
            break;
        }
    }
    Ok(rows)
}

fn format_secs(s: f64) -> String {
    let ms = (s * 1000.0).round() / 1000.0;
    if ms.fract() == 0.0 {
        format!("{}", ms as u64)
    } else {
        format!("{ms}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    const STAT: &str = "# pxname,svname,qcur,qmax,scur,smax,slim,stot,bin,bout,dreq,dresp,ereq,econ,eresp,wretr,wredis,status,weight,act,bck,chkfail,chkdown,lastchg,downtime,qlimit,pid,iid,sid,throttle,lbtot,tracked,type,rate,rate_lim,rate_max,check_status,check_code,check_duration,hrsp_1xx,hrsp_2xx,hrsp_3xx,hrsp_4xx,hrsp_5xx,hrsp_other,hanafail,req_rate,req_rate_max,req_tot\n\
www-http,FRONTEND,,,3,10,2048,500,0,0,0,0,0,,,,,OPEN,,,,,,,,,1,2,0,,,,0,5,0,20,,,,0,490,0,0,10,0,,5,20,REQ\n\
www-backend,www-1,0,0,3,10,,500,0,0,,0,,0,0,0,0,UP,1,1,0,0,0,10,0,,1,3,1,,500,,2,5,,20,L7OK,200,1,0,490,0,0,10,0,0,,,,\n";

    #[test]
    fn sums_frontend_req_tot() {
        assert_eq!(frontend_requests(&STAT.replace("REQ", "1234")), Some(1234));
        assert_eq!(frontend_requests("no header\n"), None);
    }

    #[tokio::test(flavor = "current_thread")]
    async fn records_deltas_from_a_stats_socket() {
        let dir = tempfile::tempdir().unwrap();
        let sock = dir.path().join("admin.sock");
        let listener = tokio::net::UnixListener::bind(&sock).unwrap();
        // A fake HAProxy whose req_tot grows by 100 per `show stat`.
        tokio::spawn(async move {
            let mut total = 1000u64;
            while let Ok((mut s, _)) = listener.accept().await {
                let mut buf = [0u8; 64];
                let _ = s.read(&mut buf).await;
                let _ = s
                    .write_all(STAT.replace("REQ", &total.to_string()).as_bytes())
                    .await;
                total += 100;
            }
        });
        let out = dir.path().join("trace.csv");
        let rows = run(&Options {
            socket: sock,
            out: out.clone(),
            interval: Duration::from_millis(100),
            // Room for a loaded machine: three 100 ms samples need only 300 ms of it.
            duration: Some(Duration::from_millis(1000)),
        })
        .await
        .unwrap();
        let text = std::fs::read_to_string(&out).unwrap();
        assert!(rows >= 3, "{text}");
        let t = crate::autoscale::simulate::trace::Trace::parse("r", text.as_bytes()).unwrap();
        assert!(t.segments.iter().all(|s| s.count == 100), "{text}");
    }
}
