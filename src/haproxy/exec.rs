//! The shell commands doproxy runs on the load balancer: the check command on a candidate
//! config and the reload command after an install, with their output captured for the
//! one-line error.

use super::Settings;
use anyhow::{bail, Context, Result};
use std::path::Path;
use std::process::Stdio;

/// Quotes a path for `sh -c`.
fn shell_quote(p: &Path) -> String {
    format!("'{}'", p.display().to_string().replace('\'', r"'\''"))
}

/// The outcome of running a shell command.
struct CommandOutput {
    ok: bool,
    status: String,
    output: String,
}

async fn run_shell(command: &str, dir: &Path) -> Result<CommandOutput> {
    let out = tokio::process::Command::new("sh")
        .arg("-c")
        .arg(command)
        .current_dir(dir)
        .stdin(Stdio::null())
        .output()
        .await
        .with_context(|| format!("cannot run `{command}`"))?;
    let status = match (
        out.status.code(),
        std::os::unix::process::ExitStatusExt::signal(&out.status),
    ) {
        (Some(c), _) => format!("exit code {c}"),
        (None, Some(s)) => format!("signal {s}"),
        _ => "unknown status".into(),
    };
    let mut output = String::from_utf8_lossy(&out.stderr).into_owned();
    output.push_str(&String::from_utf8_lossy(&out.stdout));
    Ok(CommandOutput {
        ok: out.status.success(),
        status,
        output,
    })
}

/// The lines of a command's output worth showing in a one-line error.
fn summarize(output: &str) -> String {
    let lines: Vec<&str> = output
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    let alerts: Vec<&str> = lines
        .iter()
        .copied()
        .filter(|l| l.contains("ALERT"))
        .collect();
    let chosen = if alerts.is_empty() { lines } else { alerts };
    let text = chosen
        .iter()
        .take(5)
        .copied()
        .collect::<Vec<_>>()
        .join(" | ");
    if text.is_empty() {
        "(no output)".into()
    } else {
        text
    }
}

/// Runs the check command on `candidate`; its output is captured and reported on failure.
pub async fn check(settings: &Settings, candidate: &Path) -> Result<()> {
    let cmd = settings
        .check_command
        .replace("{config}", &shell_quote(candidate));
    let out = run_shell(&cmd, &settings.workdir).await?;
    if !out.ok {
        bail!(
            "config check `{}` failed ({}): {}",
            settings.check_command,
            out.status,
            summarize(&out.output)
        );
    }
    Ok(())
}

/// Runs the reload command (`{config}` is the installed path); its exit status is checked.
pub async fn reload(settings: &Settings) -> Result<()> {
    let cmd = settings
        .reload_command
        .replace("{config}", &shell_quote(&settings.installed_cfg));
    let out = run_shell(&cmd, &settings.workdir).await?;
    if !out.ok {
        bail!(
            "reload command `{}` failed ({}): {}",
            settings.reload_command,
            out.status,
            summarize(&out.output)
        );
    }
    Ok(())
}
