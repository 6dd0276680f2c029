//! The README is executable: every `doproxy …` command line in README.md and
//! doproxy.yml.example must parse with the real command line parser, every config key the
//! README's configuration section names must be one the real config parser knows, every
//! key the parser knows must be documented in the README's table and in the example, the
//! example must load (as it is, and with every commented-out key switched on), and the
//! table of duration bounds must say what the parser enforces. The docs cannot drift.

use clap::Parser;
use doproxy::cli::Cli;
use doproxy::config::{Config, MIN_DURATIONS};
use serde_yaml::{Mapping, Value};
use std::collections::BTreeSet;
use std::path::Path;

const README: &str = include_str!("../README.md");
const EXAMPLE: &str = include_str!("../doproxy.yml.example");

/// A key the parser accepts but the README's table and the example need not list, and why.
const UNDOCUMENTED_ON_PURPOSE: [(&str, &str); 1] = [(
    "droplet_options.private_networking",
    "the Ruby DOProxy's key, accepted and ignored (README, \"Migrating\")",
)];

/// The text outside fenced code blocks, and the lines of each fenced block.
fn split_fences(text: &str) -> (String, Vec<(String, Vec<String>)>) {
    let mut prose = String::new();
    let mut blocks = Vec::new();
    let mut current: Option<(String, Vec<String>)> = None;
    for line in text.lines() {
        if let Some(lang) = line.trim_start().strip_prefix("```") {
            match current.take() {
                Some(b) => blocks.push(b),
                None => current = Some((lang.trim().to_string(), Vec::new())),
            }
            continue;
        }
        match &mut current {
            Some((_, lines)) => lines.push(line.to_string()),
            None => {
                prose.push_str(line);
                prose.push('\n');
            }
        }
    }
    (prose, blocks)
}

/// The inline code spans of `prose` (text between single backticks).
fn spans(prose: &str) -> Vec<String> {
    prose
        .split('`')
        .enumerate()
        .filter(|(n, _)| n % 2 == 1)
        .map(|(_, s)| s.to_string())
        .collect()
}

/// Every `doproxy …` command in `text` (a span or a shell line): the word `doproxy` at the
/// start, after `$(`, `&& `, `| ` or `or: `, or as `…/bin/doproxy`, up to a shell separator
/// or comment (prose such as "another doproxy is still holding" is not a command).
fn commands_in(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut from = 0;
    while let Some(pos) = text[from..].find("doproxy") {
        let at = from + pos;
        from = at + "doproxy".len();
        let before = text[..at].trim_start();
        let starts = before.is_empty()
            || ["$(", "&& ", "| ", "bin/", "or: "]
                .iter()
                .any(|p| before.ends_with(p));
        let after = &text[from..];
        let ends = after.is_empty() || after.starts_with(' ');
        if !starts || !ends {
            continue;
        }
        let mut cmd = &text[at..];
        for sep in [" #", " | ", " > ", " >> ", ")", " && ", ";", " 2>"] {
            if let Some(i) = cmd.find(sep) {
                cmd = &cmd[..i];
            }
        }
        out.push(cmd.trim().to_string());
    }
    out
}

/// The argument lists a documented command line stands for: the line without its
/// `[optional]` parts, then with each of them alone (`reload [--force] [--dry-run]` does
/// not mean both at once); a nested part goes with its outer one.
fn variants(cmd: &str) -> Vec<Vec<String>> {
    let mut base = Vec::new();
    let mut groups: Vec<Vec<&str>> = Vec::new();
    let mut depth = 0usize;
    for w in cmd.split_whitespace().skip(1) {
        let opens = w.chars().take_while(|c| *c == '[').count();
        let closes = w.chars().rev().take_while(|c| *c == ']').count();
        if depth == 0 && opens > 0 {
            groups.push(Vec::new());
        }
        depth += opens;
        match groups.last_mut() {
            Some(g) if depth > 0 => g.push(w),
            _ => base.push(w),
        }
        depth = depth.saturating_sub(closes);
    }
    let mut out = vec![arguments(&base)];
    for g in &groups {
        let mut v = base.clone();
        v.extend(g);
        out.push(arguments(&v));
    }
    out
}

/// Words as arguments: placeholders get sample values, brackets go, `a|b` alternatives
/// take the first, `…` goes.
fn arguments(words: &[&str]) -> Vec<String> {
    words
        .iter()
        .map(|w| w.replace("\\|", "|"))
        .map(|w| w.trim_matches(['[', ']']).trim_end_matches(',').to_string())
        .map(|w| w.trim_end_matches('…').trim_end_matches("...").to_string())
        .filter(|w| !w.is_empty())
        .map(|w| {
            let w = w.split('|').next().unwrap_or(&w);
            match w {
                "N" | "LINE_NUMBER" => "1".to_string(),
                "ID" => "7384013".to_string(),
                "FILE" | "PATH" => "some-file".to_string(),
                "NAME" => "auto-nginx-k3x9q2".to_string(),
                other => other.to_string(),
            }
        })
        .collect()
}

fn documented_commands() -> Vec<(String, String)> {
    let mut found = Vec::new();
    for (file, text) in [("README.md", README), ("doproxy.yml.example", EXAMPLE)] {
        let (prose, blocks) = split_fences(text);
        for span in spans(&prose) {
            for c in commands_in(&span) {
                found.push((file.to_string(), c));
            }
        }
        for (_, lines) in &blocks {
            for line in lines {
                for c in commands_in(line) {
                    found.push((file.to_string(), c));
                }
            }
        }
        // The example's comments are prose too.
        if file == "doproxy.yml.example" {
            for line in text.lines() {
                if let Some((_, comment)) = line.split_once('#') {
                    for span in spans(comment) {
                        for c in commands_in(&span) {
                            found.push((file.to_string(), c));
                        }
                    }
                }
            }
        }
    }
    found
}

#[test]
fn every_documented_command_line_parses() {
    let found = documented_commands();
    let mut failures = Vec::new();
    for (file, cmd) in &found {
        for args in variants(cmd) {
            let argv = std::iter::once("doproxy".to_string()).chain(args.iter().cloned());
            match Cli::try_parse_from(argv) {
                Ok(_) => {}
                // `--help` and `--version` are fine.
                Err(e) if !e.use_stderr() => {}
                Err(e) => failures.push(format!(
                    "{file}: `{cmd}` (as {args:?}): {}",
                    e.render().to_string().lines().next().unwrap_or("")
                )),
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    // The extraction itself works: the commands every reader meets are among them.
    let all: BTreeSet<&str> = found.iter().map(|(_, c)| c.as_str()).collect();
    for want in [
        "doproxy print",
        "doproxy delete N",
        "doproxy reload --watch",
        "doproxy -q reload",
        "doproxy -q -o json create --count 1",
        "doproxy inventory import /etc/doproxy/inventory",
        "doproxy inventory export FILE",
        "doproxy status [--watch [--interval 2s]]",
        "doproxy inventory prune [--dry-run]",
        "doproxy inventory forget ID",
        "doproxy completions bash\\|zsh\\|fish",
    ] {
        assert!(all.contains(want), "{want:?} not found among {all:#?}");
    }
    assert!(found.len() > 30, "only {} commands found", found.len());
}

#[test]
fn the_extraction_refuses_what_does_not_parse() {
    // The test above would catch a wrong example: these are such examples.
    for cmd in [
        "doproxy delete",
        "doproxy print --bogus",
        "doproxy inventory adopt",
        "doproxy status --interval 2s",
        "doproxy status --watch --interval 5ms",
    ] {
        let failed = variants(cmd).into_iter().any(|args| {
            let argv = std::iter::once("doproxy".to_string()).chain(args);
            Cli::try_parse_from(argv).is_err()
        });
        assert!(failed, "{cmd} parsed");
    }
    assert_eq!(
        commands_in("n=$(doproxy -o json print | jq '.droplets | length')"),
        vec!["doproxy -o json print"]
    );
    assert_eq!(
        commands_in(
            "doproxy inventory export > inventory.backup       # or: doproxy inventory export FILE"
        ),
        vec!["doproxy inventory export", "doproxy inventory export FILE"]
    );
    assert_eq!(
        commands_in("cd /etc/doproxy && doproxy reload"),
        vec!["doproxy reload"]
    );
    assert!(commands_in("doproxy.yml doproxy: error: doproxy-watch").is_empty());
    assert!(commands_in("another doproxy is still holding").is_empty());
    assert!(commands_in("cargo test -p doproxy --test integration").is_empty());
    assert_eq!(
        variants("doproxy reload [--force] [--dry-run]"),
        vec![
            vec!["reload"],
            vec!["reload", "--force"],
            vec!["reload", "--dry-run"]
        ]
    );
    assert_eq!(
        variants("doproxy status [--watch [--interval 2s]]")[1],
        vec!["status", "--watch", "--interval", "2s"]
    );
    assert_eq!(
        variants("doproxy inventory adopt ID… [--dry-run]")[0],
        vec!["inventory", "adopt", "7384013"]
    );
}

/// The example with every commented-out `key: value` line switched on.
fn example_with_comments_on(text: &str) -> String {
    let mut out = String::new();
    for line in text.lines() {
        let indent = &line[..line.len() - line.trim_start().len()];
        let uncommented = line
            .trim_start()
            .strip_prefix('#')
            .map(|rest| rest.strip_prefix(' ').unwrap_or(rest))
            .filter(|rest| {
                let t = rest.trim_start();
                let key: String = t
                    .chars()
                    .take_while(|c| c.is_ascii_lowercase() || *c == '_')
                    .collect();
                !key.is_empty() && {
                    let after = &t[key.len()..];
                    after == ":" || after.starts_with(": ")
                }
            });
        match uncommented {
            Some(rest) => out.push_str(&format!("{indent}{rest}\n")),
            None => out.push_str(&format!("{line}\n")),
        }
    }
    out
}

fn parse(text: &str) -> anyhow::Result<Config> {
    Config::parse(Path::new("/etc/doproxy/doproxy.yml"), text, &|_| None)
}

fn yaml(text: &str) -> Mapping {
    match serde_yaml::from_str(text).unwrap() {
        Value::Mapping(m) => m,
        other => panic!("not a mapping: {other:?}"),
    }
}

/// `section.key` paths of a config mapping (one level of sections).
fn key_paths(m: &Mapping) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for (k, v) in m {
        let k = k.as_str().unwrap().to_string();
        if let Value::Mapping(inner) = v {
            for ik in inner.keys() {
                out.insert(format!("{k}.{}", ik.as_str().unwrap()));
            }
        }
        out.insert(k);
    }
    out
}

/// `base` with `path` (`key` or `section.key`) set to `value`.
fn with_key(base: &Mapping, path: &str, value: Value) -> String {
    let mut m = base.clone();
    match path.split_once('.') {
        None => {
            m.insert(path.into(), value);
        }
        Some((section, key)) => {
            let mut inner = match m.get(section) {
                Some(Value::Mapping(i)) => i.clone(),
                _ => Mapping::new(),
            };
            inner.insert(key.into(), value);
            m.insert(section.into(), Value::Mapping(inner));
        }
    }
    serde_yaml::to_string(&m).unwrap()
}

/// True when the config parser knows `path`: set to a value of no config type at all (a
/// list of lists), it is refused for its type, not as an unknown field.
fn known(base: &Mapping, path: &str) -> bool {
    let probe: Value = serde_yaml::from_str("[[probe]]").unwrap();
    let e = parse(&with_key(base, path, probe))
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    !e.contains("unknown field")
}

/// Every key the parser knows, from its own "unknown field …, expected one of …" message.
fn parser_keys(base: &Mapping) -> BTreeSet<String> {
    let expected = |text: &str| -> Vec<String> {
        let e = parse(text).unwrap_err().to_string();
        let list = e
            .split_once("expected one of ")
            .unwrap_or_else(|| panic!("{e}"))
            .1;
        list.split(", ")
            .map(|k| k.trim_matches(|c: char| c == '`' || c.is_whitespace()))
            .map(|k| k.split('`').next().unwrap_or(k).to_string())
            .collect()
    };
    let mut out = BTreeSet::new();
    for k in expected(&with_key(base, "zz_probe", Value::from(1))) {
        out.insert(k);
    }
    for section in [
        "inventory",
        "droplet_options",
        "retry",
        "haproxy",
        "autoscale",
    ] {
        for k in expected(&with_key(
            base,
            &format!("{section}.zz_probe"),
            Value::from(1),
        )) {
            out.insert(format!("{section}.{k}"));
        }
    }
    out
}

/// The README's configuration section.
fn config_section() -> &'static str {
    let start = README.find("## Configuration").unwrap();
    let rest = &README[start + 3..];
    &README[start..start + 3 + rest.find("\n## ").unwrap()]
}

/// The config keys of the table rows (`| `key`, `more` | …`) of the configuration
/// section: a dotless name after a dotted first one is in the first one's section.
fn table_keys() -> Vec<String> {
    let mut keys = Vec::new();
    for line in config_section().lines() {
        let Some(cell) = line.strip_prefix("| `") else {
            continue;
        };
        let first_cell = format!("`{}", cell.split(" | ").next().unwrap_or(""));
        let names = spans(&first_cell);
        let section = names
            .first()
            .and_then(|n| n.split_once('.'))
            .map(|(s, _)| s.to_string());
        for (n, name) in names.iter().enumerate() {
            keys.push(match (&section, name.contains('.'), n) {
                (Some(s), false, n) if n > 0 => format!("{s}.{name}"),
                _ => name.clone(),
            });
        }
    }
    keys
}

#[test]
fn the_example_loads_as_it_is_and_with_every_key_switched_on() {
    parse(EXAMPLE).unwrap_or_else(|e| panic!("doproxy.yml.example: {e}"));
    let on = example_with_comments_on(EXAMPLE);
    parse(&on).unwrap_or_else(|e| panic!("doproxy.yml.example, comments on: {e}\n{on}"));
    assert!(on.contains("\nstats_user: admin") || on.contains("  stats_user: admin"));
    assert!(on.contains("\ninventory:\n  backend: etcd"), "{on}");
}

#[test]
fn every_config_key_the_readme_names_is_known_and_every_known_key_is_documented() {
    let base = yaml(EXAMPLE);
    let documented_in_example = key_paths(&yaml(&example_with_comments_on(EXAMPLE)));
    let table = table_keys();
    assert!(
        table.len() > 40,
        "only {} keys in the table: {table:?}",
        table.len()
    );
    let mut failures = Vec::new();
    for k in &table {
        if !known(&base, k) {
            failures.push(format!("README table: {k} is not a config key"));
        }
        if !documented_in_example.contains(k) {
            failures.push(format!("README table: {k} is not in doproxy.yml.example"));
        }
    }
    // Key-shaped spans anywhere in the configuration section name real keys.
    let leaves: BTreeSet<String> = parser_keys(&base)
        .iter()
        .map(|k| k.rsplit('.').next().unwrap_or(k).to_string())
        .collect();
    let (prose, blocks) = split_fences(config_section());
    let sections = [
        "inventory",
        "droplet_options",
        "retry",
        "haproxy",
        "autoscale",
    ];
    for s in spans(&prose) {
        let word = |w: &str| !w.is_empty() && w.chars().all(|c| c.is_ascii_lowercase() || c == '_');
        // `key` with an underscore, or `section.key`.
        let shaped = match s.split_once('.') {
            None => word(&s) && s.contains('_'),
            Some((section, key)) => sections.contains(&section) && word(key),
        };
        // The keys of the `autoscale.targets` map, a nested section the probes above do not
        // reach (config.rs's unit tests parse each of them).
        let target = [
            "sessions_per_server",
            "requests_per_second_per_server",
            "queue_time_ms",
        ]
        .contains(&s.as_str());
        if shaped && !known(&base, &s) && !leaves.contains(&s) && !target {
            failures.push(format!(
                "README configuration section: `{s}` is not a config key"
            ));
        }
    }
    // And so do the README's YAML examples (the etcd section).
    for (lang, lines) in split_fences(README).1.iter().chain(blocks.iter()) {
        if lang != "yaml" {
            continue;
        }
        let text = example_with_comments_on(&lines.join("\n"));
        for k in key_paths(&yaml(&text)) {
            if !known(&base, &k) {
                failures.push(format!("README yaml block: {k} is not a config key"));
            }
        }
    }
    // Every key the parser knows is in the table and in the example.
    let keys = parser_keys(&base);
    assert!(keys.contains("poll_interval") && keys.contains("haproxy.chroot"));
    let table: BTreeSet<&str> = table.iter().map(String::as_str).collect();
    let sections: BTreeSet<&str> = keys
        .iter()
        .filter_map(|k| k.split_once('.'))
        .map(|(s, _)| s)
        .collect();
    for k in &keys {
        if UNDOCUMENTED_ON_PURPOSE.iter().any(|(u, _)| u == k) || sections.contains(k.as_str()) {
            continue;
        }
        if !table.contains(k.as_str()) {
            failures.push(format!(
                "{k}: known to the parser, missing from the README's table"
            ));
        }
        if !documented_in_example.contains(k) {
            failures.push(format!(
                "{k}: known to the parser, missing from doproxy.yml.example"
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn the_readme_states_the_duration_bounds_the_parser_enforces() {
    let section = config_section();
    let start = section.find("| key | at least | why |").unwrap();
    let mut stated = Vec::new();
    for line in section[start..].lines().skip(2) {
        if !line.starts_with('|') {
            break;
        }
        let cells: Vec<&str> = line.split(" | ").collect();
        let bound = cells[1].split_whitespace().next().unwrap_or("");
        let bound = doproxy::duration::parse(bound).unwrap_or_else(|e| panic!("{line}: {e}"));
        for key in spans(cells[0]) {
            stated.push((key, bound));
        }
    }
    let mut want: Vec<(String, std::time::Duration)> = MIN_DURATIONS
        .iter()
        .map(|(k, d, _)| (k.to_string(), *d))
        .collect();
    stated.sort();
    want.sort();
    assert_eq!(stated, want);
}

/// Every `scripts/…` path the README names is a file in the repository that can be run.
#[test]
fn every_script_the_readme_names_exists_and_is_executable() {
    use std::os::unix::fs::PermissionsExt;
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut named = BTreeSet::new();
    for (i, _) in README.match_indices("scripts/") {
        let rest = &README[i..];
        let end = rest
            .find(|c: char| !(c.is_ascii_alphanumeric() || "/._-".contains(c)))
            .unwrap_or(rest.len());
        named.insert(rest[..end].trim_end_matches('.').to_string());
    }
    assert!(named.contains("scripts/mutants.sh"), "{named:?}");
    let mut failures = Vec::new();
    for script in &named {
        match std::fs::metadata(root.join(script)) {
            Ok(m) if m.is_file() && m.permissions().mode() & 0o111 != 0 => {}
            Ok(_) => failures.push(format!("{script}: not an executable file")),
            Err(e) => failures.push(format!("{script}: {e}")),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// The mutation script's plan names files that exist, so it cannot rot silently as code
/// moves (`scripts/mutants.sh --list` runs nothing).
#[test]
fn the_mutation_plan_names_files_that_exist() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = std::process::Command::new("bash")
        .arg(root.join("scripts/mutants.sh"))
        .arg("--list")
        .output()
        .expect("bash runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let files: Vec<&str> = text.lines().map(|l| l.split(':').next().unwrap()).collect();
    assert!(files.len() >= 10, "{text}");
    for f in files {
        let path = root.join(f.trim_end_matches("/**"));
        assert!(
            path.exists(),
            "scripts/mutants.sh names {f}, which does not exist"
        );
    }
}
