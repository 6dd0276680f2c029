//! How doproxy talks: results on stdout (the original's text lines, or JSON objects for
//! scripts), warnings and progress on stderr (a live status line on a terminal, timestamped
//! lines otherwise, nothing with `--quiet`), API request logs with `--verbose`.

use serde::Serialize;
use std::io::{IsTerminal, Write};
use std::sync::OnceLock;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Result format (`-o/--output`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Format {
    /// The original DOProxy's lines.
    #[default]
    Text,
    /// One JSON object per command on stdout.
    Json,
}

/// How progress is shown on stderr.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Progress {
    /// A status line redrawn in place (stderr is a terminal).
    Live,
    /// Timestamped lines when something changes (stderr is a file or pipe).
    Plain,
    /// Nothing (`--quiet`).
    Off,
}

/// Output settings for the process.
#[derive(Debug, Clone, Copy)]
pub struct Settings {
    /// Result format.
    pub format: Format,
    /// Silence everything but results and errors.
    pub quiet: bool,
    /// Log every API request.
    pub verbose: bool,
    /// Progress display.
    pub progress: Progress,
}

static SETTINGS: OnceLock<Settings> = OnceLock::new();

/// Sets the process's output settings (once, from the CLI). `DOPROXY_PROGRESS=live|plain|off`
/// forces the progress display, e.g. to test the terminal display without a terminal.
pub fn init(format: Format, quiet: bool, verbose: bool) {
    let forced = std::env::var("DOPROXY_PROGRESS").ok();
    let progress = if quiet {
        Progress::Off
    } else {
        match forced.as_deref() {
            Some("live") => Progress::Live,
            Some("plain") => Progress::Plain,
            Some("off") => Progress::Off,
            _ if std::io::stderr().is_terminal() => Progress::Live,
            _ => Progress::Plain,
        }
    };
    let _ = SETTINGS.set(Settings {
        format,
        quiet,
        verbose,
        progress,
    });
}

/// The current settings (defaults before `init`).
pub fn settings() -> Settings {
    SETTINGS.get().copied().unwrap_or(Settings {
        format: Format::Text,
        quiet: false,
        verbose: false,
        progress: Progress::Plain,
    })
}

/// True in JSON mode.
pub fn is_json() -> bool {
    settings().format == Format::Json
}

/// Prints a result line on stdout in text mode; a closed pipe is not an error.
pub fn say(line: &str) {
    if is_json() {
        return;
    }
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

/// Prints a JSON result on stdout in JSON mode.
pub fn json<T: Serialize>(value: &T) {
    if !is_json() {
        return;
    }
    let mut out = std::io::stdout().lock();
    if let Ok(text) = serde_json::to_string_pretty(value) {
        let _ = writeln!(out, "{text}");
    }
    let _ = out.flush();
}

/// Prints a JSON result as one line (JSON Lines) on stdout in JSON mode, for long-running
/// commands that report many events (`reload --watch`).
pub fn json_line<T: Serialize>(value: &T) {
    if !is_json() {
        return;
    }
    let mut out = std::io::stdout().lock();
    if let Ok(text) = serde_json::to_string(value) {
        let _ = writeln!(out, "{text}");
    }
    let _ = out.flush();
}

/// A warning on stderr (silenced by `--quiet`).
pub fn warn(line: &str) {
    if !settings().quiet {
        clear_live();
        eprintln!("doproxy: warning: {line}");
    }
}

/// Progress talk on stderr (silenced by `--quiet`).
pub fn note(line: &str) {
    if !settings().quiet {
        clear_live();
        eprintln!("doproxy: {line}");
    }
}

/// A `--verbose` log line on stderr.
pub fn debug(line: &str) {
    if settings().verbose {
        clear_live();
        eprintln!("doproxy: [{}] {line}", timestamp(SystemTime::now()));
    }
}

static LIVE_DRAWN: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

fn clear_live() {
    if LIVE_DRAWN.swap(false, std::sync::atomic::Ordering::Relaxed) {
        eprint!("\r\x1b[2K");
    }
}

const SPINNER: [char; 10] = ['⠋', '⠙', '⠹', '⠸', '⠼', '⠴', '⠦', '⠧', '⠇', '⠏'];

/// Shows the waiting state of pending droplets: `(id, status)` pairs and the elapsed time.
/// Live mode redraws one line; plain mode prints a timestamped line when `changed`.
pub fn progress(tick: usize, pending: &[(u64, String)], elapsed: Duration, changed: bool) {
    let s = settings();
    let list: Vec<String> = pending
        .iter()
        .map(|(id, st)| format!("{id} {st}"))
        .collect();
    match s.progress {
        Progress::Off => {}
        Progress::Live => {
            let mut err = std::io::stderr().lock();
            let _ = write!(
                err,
                "\r\x1b[2K{} waiting for {} droplet(s): {} ({:.1}s)",
                SPINNER[tick % SPINNER.len()],
                pending.len(),
                list.join(", "),
                elapsed.as_secs_f64()
            );
            let _ = err.flush();
            LIVE_DRAWN.store(true, std::sync::atomic::Ordering::Relaxed);
        }
        Progress::Plain if changed => {
            eprintln!(
                "doproxy: [{}] waiting for {} droplet(s): {} ({:.1}s)",
                timestamp(SystemTime::now()),
                pending.len(),
                list.join(", "),
                elapsed.as_secs_f64()
            );
        }
        Progress::Plain => {}
    }
}

/// Ends a live progress line.
pub fn progress_done() {
    clear_live();
}

/// RFC 3339 UTC timestamp with seconds, e.g. `2026-11-27T21:55:01Z`.
pub fn timestamp(t: SystemTime) -> String {
    let secs = t.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_rfc3339_utc() {
        assert_eq!(timestamp(UNIX_EPOCH), "1970-01-01T00:00:00Z");
        assert_eq!(
            timestamp(UNIX_EPOCH + Duration::from_secs(1_795_816_501)),
            "2026-11-27T21:55:01Z"
        );
        assert_eq!(
            timestamp(UNIX_EPOCH + Duration::from_secs(951_782_400)),
            "2000-02-29T00:00:00Z"
        );
    }
}
