//! Error paths: bad input gets one clear line naming the file, line or field, a non-zero
//! exit, and changes nothing (inventory, installed config, droplets).

use crate::support::*;

/// Runs `args` after `setup`, and checks exit code, message, and that nothing changed.
fn case(name: &str, args: &[&str], code: i32, needle: &str, setup: impl FnOnce(&TestEnv)) {
    let env = TestEnv::new();
    env.sim
        .create_droplet_direct("auto-nginx-keep", &["doproxy"]);
    let keep = env.sim.droplets()[0].id;
    env.write("inventory", &format!("{keep}\n"));
    env.write("etc/haproxy.cfg", "# live config\n");
    setup(&env);
    let inv_before = env.read("inventory");
    let live_before = env.installed();
    let r = env.run(args);
    assert_eq!(r.code, code, "[{name}] exit code; stderr: {}", r.stderr);
    assert!(
        r.stderr.contains(needle),
        "[{name}] expected {needle:?} in stderr: {}",
        r.stderr
    );
    if !r.stderr.starts_with("error:") {
        // (clap's own usage errors carry a usage hint on the lines after the error.)
        let error_lines: Vec<_> = r
            .stderr
            .lines()
            .filter(|l| l.starts_with("doproxy: error:"))
            .collect();
        assert_eq!(
            error_lines.len(),
            1,
            "[{name}] one error line: {}",
            r.stderr
        );
    }
    assert!(
        r.stdout.is_empty(),
        "[{name}] nothing on stdout: {}",
        r.stdout
    );
    assert_eq!(
        env.read("inventory"),
        inv_before,
        "[{name}] inventory changed"
    );
    assert_eq!(env.installed(), live_before, "[{name}] live config changed");
    let writes: Vec<_> = env
        .sim
        .requests()
        .into_iter()
        .filter(|r| r.method != "GET")
        .collect();
    assert!(writes.is_empty(), "[{name}] API writes made: {writes:?}");
    assert!(
        env.sim.droplets().iter().any(|d| d.id == keep),
        "[{name}] droplet lost"
    );
}

#[test]
fn missing_config_file() {
    case(
        "missing config",
        &["--config", "nope.yml", "print"],
        2,
        "nope.yml",
        |_| {},
    );
}

#[test]
fn malformed_yaml_names_the_file_and_line() {
    case("malformed yaml", &["print"], 2, "doproxy.yml", |e| {
        e.write("doproxy.yml", "token: [unclosed\n")
    });
}

#[test]
fn unknown_key_is_named() {
    case("unknown key", &["print"], 2, "bogus_key", |e| {
        e.write_config("bogus_key: 1\n")
    });
}

#[test]
fn wrong_type_is_named() {
    case("wrong type", &["print"], 2, "backend_port", |e| {
        let t = e.config_text("").replace(
            &format!("backend_port: {}", e.backend_port),
            "backend_port: eighty",
        );
        e.write("doproxy.yml", &t);
    });
}

#[test]
fn token_problems() {
    case("missing token", &["print"], 2, "token", |e| {
        e.write(
            "doproxy.yml",
            &e.config_text("").replace(&format!("token: {TOKEN}\n"), ""),
        );
    });
    case("token whitespace", &["print"], 2, "whitespace", |e| {
        e.write(
            "doproxy.yml",
            &e.config_text("")
                .replace(&format!("token: {TOKEN}"), &format!("token: \"{TOKEN} \"")),
        );
    });
    case("wrong token", &["print"], 1, "401", |e| {
        e.write(
            "doproxy.yml",
            &e.config_text("")
                .replace(&format!("token: {TOKEN}"), "token: wrong-token"),
        );
    });
}

#[test]
fn bad_inventory_line_is_named() {
    case(
        "bad inventory",
        &["print"],
        1,
        "inventory:2: invalid droplet id \"abc\"",
        |e| {
            let keep = e.read("inventory");
            e.write("inventory", &format!("{keep}abc\n"));
        },
    );
}

#[test]
fn delete_line_number_problems() {
    case(
        "out of range",
        &["delete", "5"],
        2,
        "line 5 does not exist",
        |_| {},
    );
    case("negative", &["delete", "-1"], 2, "-1", |_| {});
    case("not a number", &["delete", "two"], 2, "two", |_| {});
    case("missing number", &["delete"], 2, "LINE_NUMBER", |_| {});
}

#[test]
fn userdata_over_64k() {
    case("user-data too big", &["create"], 2, "64 KiB", |e| {
        e.write("user-data.yml", &"x".repeat(65_537))
    });
}

#[test]
fn invalid_hostname_prefix() {
    case(
        "bad prefix",
        &["create"],
        2,
        "droplet_options.hostname_prefix",
        |e| {
            e.write(
                "doproxy.yml",
                &e.config_text("").replace(
                    "hostname_prefix: auto-nginx",
                    "hostname_prefix: \"bad name!\"",
                ),
            );
        },
    );
}

#[test]
fn template_errors_stop_before_anything_changes() {
    case("template syntax", &["reload"], 1, "my.tera", |e| {
        e.write("my.tera", "global\n{% if %}\n");
        e.write_config("haproxy_template_file: my.tera\n");
    });
    case(
        "template unknown variable",
        &["create"],
        1,
        "no_such_var",
        |e| {
            e.write("my.tera", "global\n  maxconn {{ no_such_var }}\n");
            e.write_config("haproxy_template_file: my.tera\n");
        },
    );
}

#[test]
fn failing_check_leaves_live_config() {
    case("check fails", &["reload"], 1, "config check", |e| {
        e.write(
            "doproxy.yml",
            &e.config_text("").replace(
                "check_command: 'true'",
                "check_command: 'echo \"[ALERT] bad\" >&2; exit 1'",
            ),
        );
    });
}

#[test]
fn failing_reload_restores_the_previous_config() {
    case("reload fails", &["reload"], 1, "exit code 3", |e| {
        e.write(
            "doproxy.yml",
            &e.config_text("")
                .replace("reload_command: 'true'", "reload_command: 'exit 3'"),
        );
    });
}

#[test]
fn plain_http_api_url_off_loopback_is_refused() {
    case("http api", &["print"], 2, "api_url", |e| {
        e.write(
            "doproxy.yml",
            &e.config_text("").replace(
                &format!("api_url: {}", e.sim.url()),
                "api_url: http://203.0.113.5",
            ),
        );
    });
}
