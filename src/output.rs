//! How doproxy talks, and the only place that writes to stdout and stderr: results on
//! stdout (the original's text lines, or JSON objects for scripts), warnings and progress on
//! stderr (a live status line on a terminal, timestamped lines otherwise, nothing with
//! `--quiet`), logs with `--verbose`. Lower modules log through the `log` facade; the
//! logger installed by [`init`] writes those records here.
#![allow(clippy::disallowed_macros)]

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle, TermLike};
use serde::Serialize;
use std::borrow::Cow;
use std::io::{IsTerminal, Write};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, SystemTime};

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
    /// Nothing (`--quiet`, `DOPROXY_PROGRESS=off`).
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

/// Reads a `DOPROXY_PROGRESS` value: `live`, `plain` or `off` force that display; unset or
/// empty leaves the choice to the terminal test; anything else is an error naming it.
pub fn parse_progress(value: Option<&str>) -> Result<Option<Progress>, String> {
    match value {
        None | Some("") => Ok(None),
        Some("live") => Ok(Some(Progress::Live)),
        Some("plain") => Ok(Some(Progress::Plain)),
        Some("off") => Ok(Some(Progress::Off)),
        Some(other) => Err(format!(
            "DOPROXY_PROGRESS={other:?} is not one of live, plain, off (or unset)"
        )),
    }
}

/// Sets the process's output settings (once, from the CLI) and installs the logger.
/// `DOPROXY_PROGRESS=live|plain|off` forces the progress display, e.g. to test the terminal
/// display without a terminal; `off` silences progress (the waiting display and the notes
/// on what is being done) but not warnings or errors. An invalid value is an error (the
/// settings are still set, so the error can be shown in the asked-for format).
pub fn init(format: Format, quiet: bool, verbose: bool) -> Result<(), String> {
    let forced = parse_progress(std::env::var("DOPROXY_PROGRESS").ok().as_deref());
    let progress = if quiet {
        Progress::Off
    } else {
        match forced {
            Ok(Some(p)) => p,
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
    if log::set_logger(&LOGGER).is_ok() {
        log::set_max_level(if verbose {
            log::LevelFilter::Debug
        } else {
            log::LevelFilter::Info
        });
    }
    forced.map(|_| ())
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

/// A value from the API (a droplet's name, tag or status) made safe for a text line: a
/// control character or a character that reorders or breaks lines on a terminal is written
/// as an escape (`\n`, `\r`, `\t`, `\x1b`, `\u{202e}`), and a backslash as `\\`, so a
/// name can neither start a forged line nor send escape sequences to the terminal. JSON
/// output needs none of this (serde escapes it).
pub fn escape(value: &str) -> Cow<'_, str> {
    fn unsafe_char(c: char) -> bool {
        c == '\\'
            || c.is_control()
            || matches!(
                c,
                '\u{2028}' | '\u{2029}' | '\u{200e}' | '\u{200f}' | '\u{061c}'
            )
            || ('\u{202a}'..='\u{202e}').contains(&c)
            || ('\u{2066}'..='\u{2069}').contains(&c)
    }
    if !value.chars().any(unsafe_char) {
        return Cow::Borrowed(value);
    }
    let mut out = String::with_capacity(value.len() + 8);
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if unsafe_char(c) && (c as u32) < 0x80 => {
                out.push_str(&format!("\\x{:02x}", c as u32));
            }
            c if unsafe_char(c) => out.push_str(&format!("\\u{{{:x}}}", c as u32)),
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

/// Prints a result line on stdout in text mode; a closed pipe is not an error.
pub fn say(line: &str) {
    if is_json() {
        return;
    }
    write_stdout(&format!("{line}\n"));
}

/// The first failure to write stdout other than a closed pipe, for the exit path.
static STDOUT_ERROR: Mutex<Option<String>> = Mutex::new(None);

/// Writes raw bytes to stdout whatever the format (the usage text, a completion script);
/// a closed pipe (`doproxy | head -1`) is not an error. Any other write error (a full
/// disk, an I/O error) is kept for [`stdout_error`]: the command then exits 1.
pub fn write_stdout(text: &str) {
    let mut out = std::io::stdout().lock();
    let written = out.write_all(text.as_bytes()).and_then(|()| out.flush());
    if let Err(e) = written {
        if e.kind() != std::io::ErrorKind::BrokenPipe {
            let mut first = STDOUT_ERROR.lock().unwrap_or_else(|p| p.into_inner());
            first.get_or_insert_with(|| e.to_string());
        }
    }
}

/// The first error writing stdout other than a closed pipe, if any (the result did not
/// reach its reader: the exit code must say so).
pub fn stdout_error() -> Option<String> {
    STDOUT_ERROR
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone()
}

/// True when stdout is a terminal (a person is reading).
pub fn stdout_is_terminal() -> bool {
    std::io::stdout().is_terminal()
}

/// True when results on stdout may be coloured: stdout is a terminal, `NO_COLOR` is unset
/// or empty (<https://no-color.org>) and `TERM` is not `dumb`.
pub fn colour_enabled() -> bool {
    let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
    let dumb = std::env::var("TERM").is_ok_and(|t| t == "dumb");
    stdout_is_terminal() && !no_color && !dumb
}

/// The terminal's size as (rows, columns), when stdout is a terminal.
pub fn stdout_size() -> Option<(usize, usize)> {
    if !stdout_is_terminal() {
        return None;
    }
    console::Term::stdout()
        .size_checked()
        .map(|(rows, cols)| (usize::from(rows), usize::from(cols)))
}

/// A colour or weight for [`paint`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Paint {
    /// Bold (headers).
    Bold,
    /// Dim (what needs no attention).
    Dim,
    /// Green (healthy).
    Green,
    /// Yellow (attention).
    Yellow,
    /// Red (wrong).
    Red,
}

/// `text` wrapped in the ANSI sequence for `paint` when `on`, else unchanged.
pub fn paint(text: &str, paint: Paint, on: bool) -> String {
    if !on {
        return text.to_string();
    }
    let code = match paint {
        Paint::Bold => "1",
        Paint::Dim => "2",
        Paint::Green => "32",
        Paint::Yellow => "33",
        Paint::Red => "31",
    };
    format!("\x1b[{code}m{text}\x1b[0m")
}

/// Redraws a full-screen frame on stdout, like `top`: on a terminal, home the cursor and
/// clear the screen first; otherwise frames follow each other, separated by a blank line.
pub fn redraw(frame: &str) {
    let text = if stdout_is_terminal() {
        format!("\x1b[H\x1b[2J{frame}")
    } else {
        format!("{frame}\n")
    };
    write_stdout(&text);
}

/// Set once a JSON result was written (see [`json_written`]).
static JSON_WRITTEN: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// True once this run wrote its JSON result object.
pub fn json_written() -> bool {
    JSON_WRITTEN.load(std::sync::atomic::Ordering::Relaxed)
}

/// Set by a long-running command that prints its own JSON lines (`doproxy autoscale`): the
/// result objects of the commands it runs inside (`create`, `delete`) are not printed, so
/// stdout stays one JSON object a line.
static JSON_RESULTS_OFF: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Stops [`json`] from printing for the rest of the process (see `JSON_RESULTS_OFF`).
pub fn json_results_off() {
    JSON_RESULTS_OFF.store(true, std::sync::atomic::Ordering::Relaxed);
}

/// Lets [`json`] print again (after a command ran others inside it).
pub fn json_results_on() {
    JSON_RESULTS_OFF.store(false, std::sync::atomic::Ordering::Relaxed);
}

/// Prints a JSON result on stdout in JSON mode.
pub fn json<T: Serialize>(value: &T) {
    if !is_json() || JSON_RESULTS_OFF.load(std::sync::atomic::Ordering::Relaxed) {
        return;
    }
    JSON_WRITTEN.store(true, std::sync::atomic::Ordering::Relaxed);
    if let Ok(text) = serde_json::to_string_pretty(value) {
        write_stdout(&format!("{text}\n"));
    }
}

/// Prints a JSON result as one line (JSON Lines) on stdout in JSON mode, for long-running
/// commands that report many events (`reload --watch`).
pub fn json_line<T: Serialize>(value: &T) {
    if !is_json() {
        return;
    }
    if let Ok(text) = serde_json::to_string(value) {
        write_stdout(&format!("{text}\n"));
    }
}

/// Writes one line on stderr, around the live progress line when one is drawn.
fn stderr_line(line: &str) {
    let live = LIVE.lock().unwrap_or_else(|p| p.into_inner());
    match live.as_ref() {
        Some(bar) => bar.suspend(|| eprintln!("{line}")),
        None => eprintln!("{line}"),
    }
}

/// The error line of a failed command (`doproxy: error: ...`), never silenced.
pub fn error(message: &str) {
    progress_done();
    eprintln!("doproxy: error: {message}");
}

/// A warning on stderr (silenced by `--quiet`).
pub fn warn(line: &str) {
    if !settings().quiet {
        stderr_line(&format!("doproxy: warning: {line}"));
    }
}

/// Progress talk on stderr (silenced by `--quiet` and `DOPROXY_PROGRESS=off`).
pub fn note(line: &str) {
    let s = settings();
    if !s.quiet && s.progress != Progress::Off {
        stderr_line(&format!("doproxy: {line}"));
    }
}

/// A `--verbose` log line on stderr.
pub fn debug(line: &str) {
    if settings().verbose {
        stderr_line(&format!(
            "doproxy: [{}] {line}",
            timestamp(SystemTime::now())
        ));
    }
}

/// The `log` facade's backend: doproxy's own records, in doproxy's line formats.
struct Logger;

static LOGGER: Logger = Logger;

impl log::Log for Logger {
    fn enabled(&self, metadata: &log::Metadata<'_>) -> bool {
        // Only doproxy's records: libraries' own logs (reqwest, hyper) are not for operators.
        metadata.target().starts_with("doproxy")
    }

    fn log(&self, record: &log::Record<'_>) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let text = record.args().to_string();
        match record.level() {
            log::Level::Error | log::Level::Warn => warn(&text),
            log::Level::Info => note(&text),
            log::Level::Debug | log::Level::Trace => debug(&text),
        }
    }

    fn flush(&self) {}
}

/// The live progress line, while one is drawn.
static LIVE: Mutex<Option<ProgressBar>> = Mutex::new(None);

/// stderr as indicatif's terminal: used whenever the live display is on, including when it
/// is forced with `DOPROXY_PROGRESS=live` and stderr is not a terminal.
#[derive(Debug)]
struct Stderr;

impl Stderr {
    fn write(&self, s: &str) -> std::io::Result<()> {
        let mut err = std::io::stderr().lock();
        err.write_all(s.as_bytes())
    }

    /// Moves the cursor `n` cells with the ANSI sequence `CSI n <direction>`.
    fn cursor(&self, n: usize, direction: char) -> std::io::Result<()> {
        if n == 0 {
            return Ok(());
        }
        self.write(&format!("\x1b[{n}{direction}"))
    }
}

impl TermLike for Stderr {
    fn width(&self) -> u16 {
        console::Term::stderr()
            .size_checked()
            .map_or(100, |(_, w)| w)
    }
    fn move_cursor_up(&self, n: usize) -> std::io::Result<()> {
        self.cursor(n, 'A')
    }
    fn move_cursor_down(&self, n: usize) -> std::io::Result<()> {
        self.cursor(n, 'B')
    }
    fn move_cursor_right(&self, n: usize) -> std::io::Result<()> {
        self.cursor(n, 'C')
    }
    fn move_cursor_left(&self, n: usize) -> std::io::Result<()> {
        self.cursor(n, 'D')
    }
    fn write_line(&self, s: &str) -> std::io::Result<()> {
        self.write(&format!("{s}\n"))
    }
    fn write_str(&self, s: &str) -> std::io::Result<()> {
        self.write(s)
    }
    fn clear_line(&self) -> std::io::Result<()> {
        self.write("\r\x1b[2K")
    }
    fn flush(&self) -> std::io::Result<()> {
        std::io::stderr().lock().flush()
    }
}

/// The spinner's frames (braille dots).
const SPINNER: &str = "⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏";

/// Shows the waiting state of pending droplets: `(id, status)` pairs and the elapsed time.
/// Live mode redraws one status line; plain mode prints a timestamped line when `changed`.
pub fn progress(pending: &[(u64, String)], elapsed: Duration, changed: bool) {
    let list: Vec<String> = pending
        .iter()
        .map(|(id, st)| format!("{id} {st}"))
        .collect();
    let text = format!(
        "waiting for {} droplet(s): {} ({:.1}s)",
        pending.len(),
        list.join(", "),
        elapsed.as_secs_f64()
    );
    match settings().progress {
        Progress::Off => {}
        Progress::Live => {
            let mut live = LIVE.lock().unwrap_or_else(|p| p.into_inner());
            let bar = live.get_or_insert_with(|| {
                let bar = ProgressBar::with_draw_target(
                    None,
                    ProgressDrawTarget::term_like(Box::new(Stderr)),
                );
                if let Ok(style) = ProgressStyle::with_template("{spinner} {wide_msg}") {
                    bar.set_style(style.tick_chars(&format!("{SPINNER} ")));
                }
                bar
            });
            bar.set_message(text);
            bar.tick();
        }
        Progress::Plain if changed => {
            stderr_line(&format!(
                "doproxy: [{}] {text}",
                timestamp(SystemTime::now())
            ));
        }
        Progress::Plain => {}
    }
}

/// Ends a live progress line.
pub fn progress_done() {
    let mut live = LIVE.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(bar) = live.take() {
        bar.finish_and_clear();
    }
}

/// RFC 3339 UTC timestamp with seconds, e.g. `2026-11-27T21:55:01Z`.
pub fn timestamp(t: SystemTime) -> String {
    humantime::format_rfc3339_seconds(t).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::UNIX_EPOCH;

    #[test]
    fn escape_keeps_plain_values_and_escapes_the_rest() {
        assert!(matches!(
            escape("auto-nginx-k3x9q2"),
            std::borrow::Cow::Borrowed(_)
        ));
        assert_eq!(escape("naïve ünïcode"), "naïve ünïcode");
        assert_eq!(
            escape("evil\n7) forged  (pvt ip: 1.2.3.4, status: active, id: 9)\x1b[2J"),
            "evil\\n7) forged  (pvt ip: 1.2.3.4, status: active, id: 9)\\x1b[2J"
        );
        assert_eq!(escape("a\rb\tc\0d\x7f"), "a\\rb\\tc\\x00d\\x7f");
        assert_eq!(escape("back\\slash"), "back\\\\slash");
        // C1 controls (a one-character CSI), bidi overrides, line separators.
        assert_eq!(escape("x\u{9b}2J"), "x\\u{9b}2J");
        assert_eq!(escape("abc\u{202e}fed"), "abc\\u{202e}fed");
        assert_eq!(escape("a\u{2028}b"), "a\\u{2028}b");
        for s in ["\n", "\x1b", "\u{85}", "\u{2066}"] {
            assert!(!escape(s).chars().any(char::is_control), "{s:?}");
        }
    }

    #[test]
    fn progress_values() {
        assert_eq!(parse_progress(None), Ok(None));
        assert_eq!(parse_progress(Some("")), Ok(None));
        assert_eq!(parse_progress(Some("off")), Ok(Some(Progress::Off)));
        assert_eq!(parse_progress(Some("live")), Ok(Some(Progress::Live)));
        assert_eq!(parse_progress(Some("plain")), Ok(Some(Progress::Plain)));
        let e = parse_progress(Some("quiet")).unwrap_err();
        assert!(e.contains("DOPROXY_PROGRESS") && e.contains("quiet"), "{e}");
    }

    #[test]
    fn paint_only_when_on() {
        assert_eq!(paint("UP", Paint::Green, false), "UP");
        assert_eq!(paint("UP", Paint::Green, true), "\x1b[32mUP\x1b[0m");
    }

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
