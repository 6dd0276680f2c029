//! `doproxy-pkg OUT_DIR`: writes doproxy's man pages and shell completion scripts, generated
//! from the clap definitions in `doproxy::cli::Cli`, for the Debian package
//! (`scripts/package.sh` runs it; `[package.metadata.deb]` in the root `Cargo.toml` picks the
//! files up):
//!
//! - `OUT_DIR/man/doproxy.1`, plus `doproxy-<command>.1` for every command and
//!   `doproxy-inventory-<command>.1` for the inventory commands (uncompressed:
//!   `scripts/package.sh` gzips them);
//! - `OUT_DIR/completions/doproxy.bash`, `_doproxy` (zsh) and `doproxy.fish`, the same
//!   scripts `doproxy completions SHELL` prints.
//!
//! The pages are dated by `$SOURCE_DATE_EPOCH` when it is set (the reproducible-builds
//! convention; `scripts/package.sh` sets it to the last commit's time), else today.
//!
//! It lives in its own crate so that clap_mangen is not a dependency of the doproxy binary.
#![allow(clippy::disallowed_macros)] // a build tool's own messages, not doproxy's output

use clap::CommandFactory;
use clap_complete::Shell;
use doproxy::cli::Cli;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// Parses `OUT_DIR`, writes the files and lists them on stdout; exit 2 on a usage error.
fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [out] = args.as_slice() else {
        eprintln!(
            "usage: doproxy-pkg OUT_DIR   (writes OUT_DIR/man/*.1 and OUT_DIR/completions/*)"
        );
        return ExitCode::from(2);
    };
    match generate(Path::new(out), &man_date()) {
        Ok(files) => {
            for f in files {
                println!("{}", f.display());
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("doproxy-pkg: error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The completion scripts: shell and file name (the name each shell's completion folder
/// expects, except bash's, which the package installs as `doproxy`).
const COMPLETIONS: [(Shell, &str); 3] = [
    (Shell::Bash, "doproxy.bash"),
    (Shell::Zsh, "_doproxy"),
    (Shell::Fish, "doproxy.fish"),
];

/// Writes the man pages into `out/man` and the completion scripts into `out/completions`,
/// after removing whatever those two folders held (so that a removed command leaves no stale
/// page behind). Returns the files written.
fn generate(out: &Path, date: &str) -> std::io::Result<Vec<PathBuf>> {
    let man = out.join("man");
    let completions = out.join("completions");
    for dir in [&man, &completions] {
        match std::fs::remove_dir_all(dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(with_path(e, dir)),
        }
        std::fs::create_dir_all(dir).map_err(|e| with_path(e, dir))?;
    }
    // One page for doproxy and one for each (sub)command, named like git's: doproxy-create.1.
    let mut cli = Cli::command().disable_help_subcommand(true);
    cli.build();
    let source = format!("doproxy {}", cli.get_version().unwrap_or_default());
    write_pages(cli, &man, &source, date)?;
    for (shell, name) in COMPLETIONS {
        let path = completions.join(name);
        let mut script = Vec::new();
        clap_complete::generate(shell, &mut Cli::command(), "doproxy", &mut script);
        std::fs::write(&path, script).map_err(|e| with_path(e, &path))?;
    }
    let mut files = Vec::new();
    for dir in [&man, &completions] {
        for entry in std::fs::read_dir(dir).map_err(|e| with_path(e, dir))? {
            files.push(entry?.path());
        }
    }
    files.sort();
    Ok(files)
}

/// Writes the page of `cmd` and of each of its subcommands, recursively (as
/// `clap_mangen::generate_to` does), each with doproxy's name and version as its source: a
/// subcommand has no version of its own.
fn write_pages(cmd: clap::Command, dir: &Path, source: &str, date: &str) -> std::io::Result<()> {
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        write_pages(sub.clone(), dir, source, date)?;
    }
    // Every field of the title line is set: clap_mangen leaves an empty one out, which
    // shifts the others (the source would show as the date).
    clap_mangen::Man::new(cmd)
        .date(date)
        .source(source)
        .manual("doproxy manual")
        .generate_to(dir)
        .map_err(|e| with_path(e, dir))?;
    Ok(())
}

/// The pages' date, `YYYY-MM-DD` in UTC: `$SOURCE_DATE_EPOCH` (seconds since 1970) when it
/// is set and valid, else now.
fn man_date() -> String {
    let secs = std::env::var("SOURCE_DATE_EPOCH")
        .ok()
        .and_then(|v| v.trim().parse::<u64>().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs())
        });
    civil_date(secs / 86_400)
}

/// `YYYY-MM-DD` of a day counted from 1970-01-01 (Howard Hinnant's `civil_from_days`,
/// for days on or after the epoch).
fn civil_date(days: u64) -> String {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}")
}

/// Names the file or folder in an I/O error.
fn with_path(e: std::io::Error, path: &Path) -> std::io::Error {
    std::io::Error::new(e.kind(), format!("{}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(files: &[PathBuf], dir: &Path) -> Vec<String> {
        files
            .iter()
            .filter(|f| f.parent() == Some(dir))
            .filter_map(|f| f.file_name()?.to_str().map(str::to_owned))
            .collect()
    }

    #[test]
    fn civil_dates() {
        for (days, date) in [
            (0, "1970-01-01"),
            (59, "1970-03-01"),
            (11_016, "2000-02-29"),
            (11_017, "2000-03-01"),
            (19_782, "2024-02-29"),
            (20_788, "2026-12-01"),
            (2_932_896, "9999-12-31"),
        ] {
            assert_eq!(civil_date(days), date, "day {days}");
        }
    }

    #[test]
    fn writes_a_page_per_command_and_three_completion_scripts() {
        let tmp = tempfile::tempdir().unwrap();
        // A stale page from an earlier run is removed.
        std::fs::create_dir_all(tmp.path().join("man")).unwrap();
        std::fs::write(tmp.path().join("man/doproxy-gone.1"), "stale").unwrap();
        let files = generate(tmp.path(), "2026-12-01").unwrap();

        let mut expected = vec!["doproxy.1".to_owned()];
        for sub in Cli::command().get_subcommands() {
            expected.push(format!("doproxy-{}.1", sub.get_name()));
            for inner in sub.get_subcommands() {
                expected.push(format!("doproxy-{}-{}.1", sub.get_name(), inner.get_name()));
            }
        }
        expected.sort();
        assert_eq!(names(&files, &tmp.path().join("man")), expected);
        for page in [
            "doproxy-create.1",
            "doproxy-inventory-import.1",
            "doproxy.1",
        ] {
            assert!(expected.iter().any(|e| e == page), "{page} missing");
        }

        let create = std::fs::read_to_string(tmp.path().join("man/doproxy-create.1")).unwrap();
        let version = Cli::command().get_version().unwrap().to_owned();
        // All five fields of the title line, in their places.
        let title =
            format!(".TH doproxy-create 1 2026-12-01 \"doproxy {version}\" \"doproxy manual\"");
        assert!(create.contains(&title), "{create}");
        assert!(create.contains("dry\\-run"), "{create}");
        assert!(create.contains("doproxy create \\-\\-count 5"), "{create}");

        assert_eq!(
            names(&files, &tmp.path().join("completions")),
            ["_doproxy", "doproxy.bash", "doproxy.fish"]
        );
        let bash = std::fs::read_to_string(tmp.path().join("completions/doproxy.bash")).unwrap();
        assert!(bash.contains("complete -F _doproxy"), "{bash}");
    }
}
