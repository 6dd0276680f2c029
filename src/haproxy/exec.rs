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

/// Runs `template` (`{config}` replaced by `path`) in the settings' folder; a failure
/// names the `what` (e.g. "config check") and shows the command's output.
async fn run_checked(settings: &Settings, what: &str, template: &str, path: &Path) -> Result<()> {
    let cmd = template.replace("{config}", &shell_quote(path));
    let out = run_shell(&cmd, &settings.workdir).await?;
    if !out.ok {
        bail!(
            "{what} `{template}` failed ({}): {}",
            out.status,
            summarize(&out.output)
        );
    }
    Ok(())
}

/// Runs the check command on `candidate`; its output is captured and reported on failure.
pub async fn check(settings: &Settings, candidate: &Path) -> Result<()> {
    run_checked(settings, "config check", &settings.check_command, candidate).await
}

/// Runs the reload command (`{config}` is the installed path); its exit status is checked.
pub async fn reload(settings: &Settings) -> Result<()> {
    run_checked(
        settings,
        "reload command",
        &settings.reload_command,
        &settings.installed_cfg,
    )
    .await
}
