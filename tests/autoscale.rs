//! `doproxy autoscale` through the real binary: `simulate` on a short trace with every
//! policy (text, `-o json`, `--plot`), with no config file and with one that has only an
//! `autoscale:` section (no token), its usage errors, and `traces`.

use std::path::Path;
use std::process::{Command, Output};

fn doproxy(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_doproxy"))
        .current_dir(dir)
        .env_remove("DOPROXY_CONFIG")
        .env_remove("DIGITALOCEAN_ACCESS_TOKEN")
        .env_remove("DIGITALOCEAN_TOKEN")
        .args(args)
        .output()
        .unwrap()
}

/// 12 minutes per minute: 4 at 1,000 requests/s, 4 at 3,000, 4 at 1,000.
fn write_trace(dir: &Path) -> String {
    let mut text = String::from("seconds,requests\n");
    for m in 0..12u64 {
        let rate = if (4..8).contains(&m) { 3000 } else { 1000 };
        text.push_str(&format!("{},{}\n", m * 60, rate * 60));
    }
    let p = dir.join("step.csv");
    std::fs::write(&p, text).unwrap();
    p.display().to_string()
}

#[test]
fn simulate_scores_every_policy_without_a_config() {
    let dir = tempfile::tempdir().unwrap();
    let trace = write_trace(dir.path());
    let svg = dir.path().join("step.svg");
    let out = doproxy(
        dir.path(),
        &[
            "-o",
            "json",
            "autoscale",
            "simulate",
            "--trace",
            &trace,
            "--max",
            "50",
            "--plot",
            svg.to_str().unwrap(),
        ],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("defaults (no config file)"), "{stderr}");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let policies = v["policies"].as_array().unwrap();
    let names: Vec<&str> = policies
        .iter()
        .map(|p| p["policy"].as_str().unwrap())
        .collect();
    assert_eq!(names.len(), 5, "{names:?}");
    assert!(
        names[0] == "doproxy" && names[2].starts_with("hpa"),
        "{names:?}"
    );
    for p in policies {
        assert!(p["slo_violation_minutes"].as_u64().is_some(), "{p}");
        assert!(p["droplet_seconds"].as_f64().unwrap() > 0.0, "{p}");
        assert!(p["actions"].as_u64().is_some(), "{p}");
        assert_eq!(p["actions_in_blackout"], 0, "{p}");
    }
    assert_eq!(v["trace"]["requests"], 12 * 60 * 1000 + 4 * 60 * 2000);
    let svg = std::fs::read_to_string(svg).unwrap();
    assert!(
        svg.starts_with("<svg") && svg.contains("doproxy"),
        "{}",
        &svg[..200]
    );
}

#[test]
fn simulate_reads_only_the_autoscale_section() {
    let dir = tempfile::tempdir().unwrap();
    let trace = write_trace(dir.path());
    // A config with no token and no droplet_options: enough for simulate.
    std::fs::write(
        dir.path().join("doproxy.yml"),
        "autoscale:\n  max: 30\n  standby: 1\n",
    )
    .unwrap();
    let out = doproxy(
        dir.path(),
        &[
            "autoscale",
            "simulate",
            "--trace",
            &trace,
            "--policy",
            "doproxy",
            "--policy",
            "hpa:target=0.6",
            "--markdown",
        ],
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("autoscale: section of doproxy.yml"),
        "{stderr}"
    );
    assert!(
        stdout.contains("| policy |") && stdout.contains("| hpa:target=0.6"),
        "{stdout}"
    );

    // An invalid value is a usage error naming the key.
    std::fs::write(
        dir.path().join("doproxy.yml"),
        "autoscale:\n  min: 5\n  max: 2\n",
    )
    .unwrap();
    let out = doproxy(dir.path(), &["autoscale", "simulate", "--trace", &trace]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("autoscale.min: must be ≤ max"), "{stderr}");
}

#[test]
fn simulate_usage_errors() {
    let dir = tempfile::tempdir().unwrap();
    let trace = write_trace(dir.path());
    for (args, want) in [
        (
            vec!["autoscale", "simulate", "--trace", "nope.csv"],
            "--trace",
        ),
        (
            vec![
                "autoscale",
                "simulate",
                "--trace",
                &trace,
                "--policy",
                "hpa:bogus=1",
            ],
            "bogus",
        ),
        (
            vec![
                "autoscale",
                "simulate",
                "--trace",
                &trace,
                "--policy",
                "magic",
            ],
            "unknown policy",
        ),
        // The daemon needs a config (and its autoscale: section): none here.
        (vec!["autoscale"], "no config file"),
    ] {
        let out = doproxy(dir.path(), &args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(want), "{args:?}: {stderr}");
    }
}

#[test]
fn traces_are_written_deterministically() {
    let dir = tempfile::tempdir().unwrap();
    let out = doproxy(
        dir.path(),
        &["autoscale", "traces", "--out", "t", "--seed", "7"],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let first = std::fs::read(dir.path().join("t/flash-crowd.csv")).unwrap();
    let out = doproxy(
        dir.path(),
        &["autoscale", "traces", "--out", "u", "--seed", "7"],
    );
    assert!(out.status.success());
    assert_eq!(
        first,
        std::fs::read(dir.path().join("u/flash-crowd.csv")).unwrap()
    );
    let day = std::fs::read_to_string(dir.path().join("t/diurnal-day.csv")).unwrap();
    assert_eq!(day.lines().count(), 86_401);
}
