//! The shell commands doproxy runs on the load balancer: the check command on a candidate
//! config and the reload command after an install, with their output captured for the
//! one-line error. Each runs in a process group of its own with a clean environment (no
//! token, no doproxy secret) and a deadline: on expiry the whole group is killed.

use super::Settings;
use anyhow::{anyhow, bail, Context, Result};
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

/// The environment a child command gets: only these variables, whatever doproxy's own
/// environment holds (the API token may be in it).
pub fn child_env(config_path: &Path) -> Vec<(String, String)> {
    let mut env = vec![(
        "PATH".to_string(),
        std::env::var("PATH").unwrap_or_else(|_| "/usr/sbin:/usr/bin:/sbin:/bin".into()),
    )];
    for k in ["LANG", "LC_ALL"] {
        if let Ok(v) = std::env::var(k) {
            env.push((k.to_string(), v));
        }
    }
    env.push((
        "DOPROXY_CONFIG".to_string(),
        config_path.display().to_string(),
    ));
    env
}

async fn run_shell(settings: &Settings, command: &str) -> Result<CommandOutput> {
    let timeout = settings.command_timeout;
    let child = tokio::process::Command::new("sh")
        .arg("-c")
        .arg(command)
        .current_dir(&settings.workdir)
        .env_clear()
        .envs(settings.command_env.iter().map(|(k, v)| (k, v)))
        .process_group(0)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("cannot run `{command}`"))?;
    let group = child
        .id()
        .and_then(|id| rustix::process::Pid::from_raw(id as i32));
    let out = match tokio::time::timeout(timeout, child.wait_with_output()).await {
        Ok(out) => out.with_context(|| format!("cannot run `{command}`"))?,
        Err(_) => {
            // The shell and everything it started (a hung `haproxy -c`, a queued
            // `systemctl`): the group is ours alone.
            if let Some(pid) = group {
                let _ = rustix::process::kill_process_group(pid, rustix::process::Signal::KILL);
            }
            return Err(anyhow!(
                "`{command}` did not finish within {timeout:.0?} (command_timeout); it was killed"
            ));
        }
    };
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
    let out = run_shell(settings, &cmd)
        .await
        .with_context(|| format!("{what} failed"))?;
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
