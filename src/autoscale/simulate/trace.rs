//! Traces: what arrives when. The native format is CSV with the header `seconds,requests`;
//! each row gives the requests that arrive from `seconds` until the next row's time (the last
//! row lasts as long as the one before it), so per-second and per-minute traces share it.
//! Two public formats are read as well, from files the user provides: the 1998 World Cup web
//! site's binary access logs (one 20-byte big-endian record per request, the first field
//! the request's Unix time; counted per second) and the Azure Functions 2019
//! `invocations_per_function_md.anon.dNN.csv` files (one row per function, columns
//! `HashOwner,HashApp,HashFunction,Trigger,1..1440` with the invocations of each minute;
//! summed over the rows). Within a row, arrivals are spread uniformly at random — a Poisson
//! process given its count — by the simulator.

use anyhow::{bail, Context, Result};
use std::path::Path;

/// One row: `count` requests arrive uniformly over [`start`, `end`) seconds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Segment {
    /// Start, seconds from the trace's start.
    pub start: f64,
    /// End, seconds.
    pub end: f64,
    /// Requests arriving in between.
    pub count: u64,
}

/// A trace: segments in time order, without gaps.
#[derive(Debug, Clone, PartialEq)]
pub struct Trace {
    /// Where it came from (a file name), for reports.
    pub name: String,
    /// The rows.
    pub segments: Vec<Segment>,
}

/// The formats [`Trace::load`] understands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// `seconds,requests` CSV.
    Csv,
    /// World Cup 98 binary access log (uncompressed `wc_dayN_M`).
    WorldCup98,
    /// Azure Functions 2019 per-minute invocation counts.
    AzureFunctions2019,
}

impl Trace {
    /// Reads a trace file, detecting its format from its content.
    pub fn load(path: &Path) -> Result<Trace> {
        let bytes = std::fs::read(path).with_context(|| format!("{}", path.display()))?;
        let name = path.file_name().map_or_else(
            || path.display().to_string(),
            |n| n.to_string_lossy().into(),
        );
        if bytes.starts_with(&[0x1f, 0x8b]) {
            bail!(
                "{}: gzip-compressed; uncompress it first (gzip -dk)",
                path.display()
            );
        }
        let trace = Trace::parse(&name, &bytes).with_context(|| format!("{}", path.display()))?;
        if trace.segments.is_empty() {
            bail!("{}: no rows", path.display());
        }
        Ok(trace)
    }

    /// Parses trace bytes in any known format.
    pub fn parse(name: &str, bytes: &[u8]) -> Result<Trace> {
        let segments = match detect(bytes) {
            Format::Csv => parse_csv(std::str::from_utf8(bytes).context("not UTF-8 text")?)?,
            Format::AzureFunctions2019 => {
                parse_azure(std::str::from_utf8(bytes).context("not UTF-8 text")?)?
            }
            Format::WorldCup98 => parse_worldcup98(bytes)?,
        };
        Ok(Trace {
            name: name.to_string(),
            segments,
        })
    }

    /// Seconds from the start to the end of the last row.
    pub fn duration(&self) -> f64 {
        self.segments.last().map_or(0.0, |s| s.end)
    }

    /// Every request in the trace.
    pub fn total(&self) -> u64 {
        self.segments.iter().map(|s| s.count).sum()
    }

    /// The highest rate of any row, requests per second.
    pub fn peak_rate(&self) -> f64 {
        self.segments
            .iter()
            .map(|s| s.count as f64 / (s.end - s.start).max(1e-9))
            .fold(0.0, f64::max)
    }

    /// The rate of the first row, requests per second.
    pub fn initial_rate(&self) -> f64 {
        self.segments
            .first()
            .map_or(0.0, |s| s.count as f64 / (s.end - s.start).max(1e-9))
    }

    /// The same trace with every count multiplied by `factor` (rounded).
    pub fn scaled(mut self, factor: f64) -> Trace {
        for s in &mut self.segments {
            s.count = (s.count as f64 * factor).round().max(0.0) as u64;
        }
        self
    }

    /// The trace in the native CSV format.
    pub fn to_csv(&self) -> String {
        let mut out = String::from("seconds,requests\n");
        for s in &self.segments {
            out.push_str(&format!("{},{}\n", fmt_secs(s.start), s.count));
        }
        out
    }
}

/// Seconds without a needless fraction (`60`, `0.5`).
fn fmt_secs(s: f64) -> String {
    if s.fract() == 0.0 {
        format!("{}", s as u64)
    } else {
        format!("{s}")
    }
}

/// Which format `bytes` are in.
pub fn detect(bytes: &[u8]) -> Format {
    let head = String::from_utf8_lossy(&bytes[..bytes.len().min(64)]);
    if head.starts_with("HashOwner,") {
        Format::AzureFunctions2019
    } else if head.trim_start().starts_with("seconds")
        || head.trim_start().starts_with('#')
        || std::str::from_utf8(bytes).is_ok_and(|t| {
            t.bytes()
                .all(|b| b.is_ascii_digit() || b", .\n\r\t".contains(&b))
        })
    {
        Format::Csv
    } else {
        Format::WorldCup98
    }
}

/// `seconds,requests` rows (header required, `#` comments and blank lines skipped).
fn parse_csv(text: &str) -> Result<Vec<Segment>> {
    let mut rows: Vec<(f64, u64)> = Vec::new();
    let mut header = false;
    for (i, line) in text.lines().enumerate() {
        let n = i + 1;
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if !header {
            if line.replace(' ', "") != "seconds,requests" {
                bail!("line {n}: expected the header `seconds,requests`, found {line:?}");
            }
            header = true;
            continue;
        }
        let (a, b) = line
            .split_once(',')
            .with_context(|| format!("line {n}: expected `seconds,requests`, found {line:?}"))?;
        let t: f64 = a
            .trim()
            .parse()
            .ok()
            .filter(|t: &f64| t.is_finite() && *t >= 0.0)
            .with_context(|| format!("line {n}: bad seconds {a:?}"))?;
        let c: u64 = b
            .trim()
            .parse()
            .with_context(|| format!("line {n}: bad request count {b:?}"))?;
        if let Some((prev, _)) = rows.last() {
            if t <= *prev {
                bail!("line {n}: seconds must increase ({t} after {prev})");
            }
        }
        rows.push((t, c));
    }
    if !header {
        bail!("no `seconds,requests` header");
    }
    Ok(segments_from_rows(&rows))
}

/// Rows of (start, count) into segments; the last lasts as long as the one before it (1 s
/// for a single row).
fn segments_from_rows(rows: &[(f64, u64)]) -> Vec<Segment> {
    let t0 = rows.first().map_or(0.0, |r| r.0);
    let mut out = Vec::with_capacity(rows.len());
    for (i, (t, c)) in rows.iter().enumerate() {
        let end = match rows.get(i + 1) {
            Some(next) => next.0,
            None if i > 0 => t + (t - rows[i - 1].0),
            None => t + 1.0,
        };
        out.push(Segment {
            start: t - t0,
            end: end - t0,
            count: *c,
        });
    }
    out
}

/// Azure Functions 2019: minute columns `1..1440` summed over all function rows.
fn parse_azure(text: &str) -> Result<Vec<Segment>> {
    let mut lines = text.lines();
    let header = lines.next().unwrap_or_default();
    let cols: Vec<&str> = header.split(',').collect();
    let first = cols
        .iter()
        .position(|c| c.trim() == "1")
        .context("Azure Functions header without a minute column `1`")?;
    let minutes = cols.len() - first;
    let mut sums = vec![0u64; minutes];
    for (i, line) in lines.enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let fields: Vec<&str> = line.split(',').collect();
        if fields.len() != cols.len() {
            bail!(
                "line {}: {} fields, the header has {}",
                i + 2,
                fields.len(),
                cols.len()
            );
        }
        for (m, f) in fields[first..].iter().enumerate() {
            let v: u64 = f
                .trim()
                .parse()
                .with_context(|| format!("line {}: bad count {f:?}", i + 2))?;
            sums[m] += v;
        }
    }
    let rows: Vec<(f64, u64)> = sums
        .iter()
        .enumerate()
        .map(|(m, c)| (m as f64 * 60.0, *c))
        .collect();
    Ok(segments_from_rows(&rows))
}

/// World Cup 98 binary log: 20-byte records, the first 4 bytes a big-endian Unix time.
fn parse_worldcup98(bytes: &[u8]) -> Result<Vec<Segment>> {
    const RECORD: usize = 20;
    if !bytes.len().is_multiple_of(RECORD) {
        bail!(
            "not a trace: not `seconds,requests` CSV, not Azure Functions 2019 CSV, and {} bytes is not a whole number of 20-byte World Cup 98 records",
            bytes.len()
        );
    }
    let times: Vec<u32> = bytes
        .chunks_exact(RECORD)
        .map(|r| u32::from_be_bytes([r[0], r[1], r[2], r[3]]))
        .collect();
    let (Some(&lo), Some(&hi)) = (times.iter().min(), times.iter().max()) else {
        return Ok(Vec::new());
    };
    let mut counts = vec![0u64; (hi - lo) as usize + 1];
    for t in times {
        counts[(t - lo) as usize] += 1;
    }
    let rows: Vec<(f64, u64)> = counts
        .iter()
        .enumerate()
        .map(|(s, c)| (s as f64, *c))
        .collect();
    Ok(segments_from_rows(&rows))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_rows_last_until_the_next() {
        let t = Trace::parse("t", b"seconds,requests\n0,10\n1,20\n# note\n\n61,600\n").unwrap();
        assert_eq!(
            t.segments,
            vec![
                Segment {
                    start: 0.0,
                    end: 1.0,
                    count: 10
                },
                Segment {
                    start: 1.0,
                    end: 61.0,
                    count: 20
                },
                // The last row lasts as long as the one before it.
                Segment {
                    start: 61.0,
                    end: 121.0,
                    count: 600
                },
            ]
        );
        assert_eq!(t.total(), 630);
        assert_eq!(t.duration(), 121.0);
        assert_eq!(t.peak_rate(), 10.0);
    }

    #[test]
    fn csv_errors_name_the_line() {
        let e = Trace::parse("t", b"seconds,requests\n0,1\n0,2\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("line 3") && e.contains("increase"), "{e}");
        let e = Trace::parse("t", b"seconds,requests\n0,x\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("line 2"), "{e}");
        let e = Trace::parse("t", b"0,1\n").unwrap_err().to_string();
        assert!(e.contains("header"), "{e}");
    }

    #[test]
    fn round_trips_through_csv() {
        let t = Trace::parse("t", b"seconds,requests\n0,5\n60,7\n").unwrap();
        assert_eq!(t.to_csv(), "seconds,requests\n0,5\n60,7\n");
    }

    #[test]
    fn azure_functions_minutes_are_summed_over_functions() {
        let text = "HashOwner,HashApp,HashFunction,Trigger,1,2,3\n\
                    o1,a1,f1,http,1,0,5\n\
                    o1,a1,f2,timer,2,3,0\n";
        let t = Trace::parse("az", text.as_bytes()).unwrap();
        let counts: Vec<u64> = t.segments.iter().map(|s| s.count).collect();
        assert_eq!(counts, vec![3, 3, 5]);
        assert_eq!(t.segments[1].start, 60.0);
        assert_eq!(t.duration(), 180.0);
    }

    #[test]
    fn worldcup98_records_are_counted_per_second() {
        // Three requests at 898_000_000, none at +1, one at +2 (20-byte records).
        let mut bytes = Vec::new();
        for t in [898_000_000u32, 898_000_000, 898_000_000, 898_000_002] {
            bytes.extend_from_slice(&t.to_be_bytes());
            bytes.extend_from_slice(&[0u8; 16]);
        }
        assert_eq!(detect(&bytes), Format::WorldCup98);
        let t = Trace::parse("wc", &bytes).unwrap();
        let counts: Vec<u64> = t.segments.iter().map(|s| s.count).collect();
        assert_eq!(counts, vec![3, 0, 1]);
        assert!(Trace::parse("wc", &bytes[..19]).is_err());
    }
}
