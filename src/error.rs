//! Errors that decide the exit code, the exit codes themselves, and the one way an error
//! and its causes are written on one line.

/// Exit code for success.
pub const EXIT_OK: u8 = 0;
/// Exit code for a failure (API, HAProxy, files): nothing is lost, the message says what to
/// run next.
pub const EXIT_FAILURE: u8 = 1;
/// Exit code for a usage or configuration error: nothing was changed.
pub const EXIT_USAGE: u8 = 2;
/// Exit code after SIGINT or SIGTERM (128 + SIGINT, as shells report it).
pub const EXIT_INTERRUPTED: u8 = 130;

/// The run was interrupted by a signal (exit code 130).
#[derive(Debug, thiserror::Error)]
#[error("interrupted by {0}")]
pub struct Interrupted(pub &'static str);

/// An error that means "the invocation or the configuration is wrong" (exit code 2).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

/// Shorthand for returning a [`UsageError`] wrapped in `anyhow`.
pub fn usage_error(msg: impl Into<String>) -> anyhow::Error {
    anyhow::Error::new(UsageError(msg.into()))
}

/// The exit code an error maps to: 2 when a [`UsageError`] is anywhere in its chain, else 1.
pub fn exit_code(e: &anyhow::Error) -> u8 {
    if e.chain().any(|c| c.downcast_ref::<Interrupted>().is_some()) {
        EXIT_INTERRUPTED
    } else if e.chain().any(|c| c.downcast_ref::<UsageError>().is_some()) {
        EXIT_USAGE
    } else {
        EXIT_FAILURE
    }
}

/// An error and all its sources joined with `": "`, on one line (libraries such as Tera
/// and reqwest hide the useful part of a failure in the source chain).
pub fn chain(e: &dyn std::error::Error) -> String {
    parts(e).join(": ").replace('\n', " ")
}

/// The texts of an error and its sources, a source left out when an earlier text already
/// holds it (some libraries repeat their source's text in their own message).
fn parts(e: &dyn std::error::Error) -> Vec<String> {
    let mut parts = vec![e.to_string()];
    let mut src = e.source();
    while let Some(s) = src {
        let text = s.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        src = s.source();
    }
    parts
}

/// Like [`chain`], but a source whose text has several lines (Tera's parse errors point at
/// the line and column with a small drawing) keeps them, each indented by two spaces
/// under the first line, instead of being flattened into one unreadable line.
pub fn chain_lines(e: &dyn std::error::Error) -> String {
    let parts = parts(e);
    let mut out = String::new();
    for (n, part) in parts.iter().enumerate() {
        let lines: Vec<&str> = part
            .lines()
            .map(str::trim_end)
            .filter(|l| !l.trim().is_empty())
            .collect();
        if lines.len() > 1 {
            if n > 0 {
                out.push(':');
            }
            for l in lines {
                out.push_str("\n  ");
                out.push_str(l);
            }
        } else {
            if n > 0 {
                out.push_str(": ");
            }
            out.push_str(part.trim());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("outer")]
    struct Outer(#[source] std::io::Error);

    #[test]
    fn chain_joins_sources_on_one_line() {
        let e = Outer(std::io::Error::other("inner\nline"));
        assert_eq!(chain(&e), "outer: inner line");
    }

    #[test]
    fn chain_lines_keeps_a_drawing_indented() {
        let e = Outer(std::io::Error::other(
            " --> 2:7\n  |\n2 | {% if %}\n  |       ^---\n",
        ));
        assert_eq!(
            chain_lines(&e),
            "outer:\n   --> 2:7\n    |\n  2 | {% if %}\n    |       ^---"
        );
        let e = Outer(std::io::Error::other("inner"));
        assert_eq!(chain_lines(&e), "outer: inner");
    }

    #[test]
    fn usage_errors_map_to_exit_2() {
        assert_eq!(exit_code(&usage_error("x")), EXIT_USAGE);
        assert_eq!(
            exit_code(&usage_error("x").context("while doing y")),
            EXIT_USAGE
        );
        assert_eq!(exit_code(&anyhow::anyhow!("x")), EXIT_FAILURE);
    }
}
