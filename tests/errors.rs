//! Error paths: bad input gets one clear line naming the file, line or field, a non-zero
//! exit, and changes nothing (inventory, installed config, droplets).

use crate::support::*;
use serde_json::json;

/// Runs `args` after `setup`, and checks exit code, message, and that nothing changed.
fn case(name: &str, args: &[&str], code: i32, needle: &str, setup: impl FnOnce(&TestEnv)) {
    let env = TestEnv::new();
    env.create_direct("auto-nginx-keep", &["doproxy"]);
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
    let writes = env.api_writes();
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
        sandbox::write_config(e.dir.path(), "token: [unclosed\n").unwrap();
    });
}

#[test]
fn unknown_key_is_named() {
    case("unknown key", &["print"], 2, "bogus_key", |e| {
        e.configure(|c| c.set_raw("bogus_key", json!(1)))
    });
}

#[test]
fn wrong_type_is_named() {
    case("wrong type", &["print"], 2, "backend_port", |e| {
        e.configure(|c| c.set_raw("backend_port", json!("eighty")));
    });
}

#[test]
fn token_problems() {
    case("missing token", &["print"], 2, "token", |e| {
        e.configure(|c| c.remove("token"));
    });
    case("token whitespace", &["print"], 2, "whitespace", |e| {
        e.configure(|c| c.token = Some(format!("{TOKEN} ")));
    });
    case("wrong token", &["print"], 1, "401", |e| {
        e.configure(|c| c.token = Some("wrong-token".into()));
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
    // The first line past the end (the inventory has one line, 0).
    case(
        "one past the end",
        &["delete", "1"],
        2,
        "line 1 does not exist in the inventory (valid: 0 to 0)",
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
            e.configure(|c| c.droplet_options.hostname_prefix = Some("bad name!".into()));
        },
    );
}

#[test]
fn template_errors_stop_before_anything_changes() {
    // An invalid template is a configuration error: exit 2.
    case("template syntax", &["reload"], 2, "my.tera", |e| {
        e.write("my.tera", "global\n{% if %}\n");
        e.configure(|c| c.haproxy_template_file = Some("my.tera".into()));
    });
    case(
        "template unknown variable",
        &["create"],
        2,
        "no_such_var",
        |e| {
            e.write("my.tera", "global\n  maxconn {{ no_such_var }}\n");
            e.configure(|c| c.haproxy_template_file = Some("my.tera".into()));
        },
    );
}

#[test]
fn failing_check_leaves_live_config() {
    case("check fails", &["reload"], 1, "config check", |e| {
        e.configure(|c| c.check_command = Some("echo \"[ALERT] bad\" >&2; exit 1".into()));
    });
}

#[test]
fn failing_reload_restores_the_previous_config() {
    case("reload fails", &["reload"], 1, "exit code 3", |e| {
        e.configure(|c| c.reload_command = Some("exit 3".into()));
    });
}

#[test]
fn plain_http_api_url_off_loopback_is_refused() {
    case("http api", &["print"], 2, "api_url", |e| {
        e.configure(|c| c.api_url = Some("http://203.0.113.5".into()));
    });
}

fn point_api_at(e: &TestEnv, url: &str) {
    e.configure(|c| c.api_url = Some(url.into()));
}

#[test]
fn api_answers_that_are_not_what_the_api_documents() {
    case("non-JSON 200", &["print"], 1, "unexpected body", |e| {
        point_api_at(e, &fake_api(200, "<html>gateway</html>"))
    });
    case("truncated JSON", &["print"], 1, "unexpected body", |e| {
        point_api_at(e, &fake_api(200, "{\"droplets\": [{\"id\": 1"))
    });
    case(
        "missing fields",
        &["print"],
        1,
        "missing field `meta`",
        |e| point_api_at(e, &fake_api(200, "{\"droplets\": []}")),
    );
    case("403", &["print"], 1, "HTTP 403 forbidden", |e| {
        point_api_at(e, &fake_api(403, "{\"id\":\"forbidden\",\"message\":\"You do not have permission to perform this action.\"}"))
    });
    case("non-JSON 502", &["reload"], 1, "HTTP 502", |e| {
        point_api_at(e, &fake_api(502, "<html>bad gateway</html>"))
    });
}

#[test]
fn api_errors_from_the_simulator() {
    case("5xx always", &["print"], 1, "HTTP 50", |e| {
        e.sim.set_faults(do_sim::Faults {
            error_rate: Some(1.0),
            ..Default::default()
        })
    });
    case(
        "429 beyond the retry budget",
        &["print"],
        1,
        "HTTP 429 too_many_requests",
        |e| {
            e.sim.set_faults(do_sim::Faults {
                rate_limit_per_minute: Some(Some(1)),
                ..Default::default()
            });
            // Spend the one request of this minute.
            let _ = e.run(&["print"]);
        },
    );
}

#[test]
fn droplet_limit_422_creates_nothing() {
    let env = TestEnv::with_options(
        do_sim::SimOptions {
            droplet_limit: 2,
            ..fast_sim_options()
        },
        false,
    );
    env.create_direct("existing", &["doproxy"]);
    let r = env.run(&["create", "--count", "2"]).code(1);
    assert!(
        r.stderr.contains("HTTP 422 unprocessable_entity") && r.stderr.contains("droplet limit"),
        "{}",
        r.stderr
    );
    assert!(r.stderr.contains("request id "), "{}", r.stderr);
    assert_eq!(env.read("inventory"), "");
    assert_eq!(env.sim.droplets().len(), 1);
    // Refused, so certainly not created: the names leave the journal at once.
    let journal = doproxy::store::journal::Journal::parse(
        "inventory.journal",
        &env.read("inventory.journal"),
    )
    .unwrap();
    assert!(journal.creating.is_empty(), "{journal:?}");
}

#[test]
fn more_config_mistakes() {
    case(
        "nested unknown key",
        &["print"],
        2,
        "droplet_options: unknown field `colour`",
        |e| {
            e.configure(|c| c.set_raw("droplet_options.colour", json!("blue")));
        },
    );
    case("placeholder token", &["print"], 2, "placeholder", |e| {
        e.configure(|c| c.token = Some("<YOUR_DO_API_TOKEN>".into()));
    });
    case("negative duration", &["print"], 2, "wait_timeout", |e| {
        e.configure(|c| c.set_raw("wait_timeout", json!(-5)));
    });
    case("bad frontend_bind", &["print"], 2, "frontend_bind", |e| {
        e.configure(|c| c.frontend_bind = Some(format!("nowhere:{}", e.frontend_port)));
    });
    case(
        "stats user without password",
        &["print"],
        2,
        "stats_user and stats_password",
        |e| {
            e.configure(|c| c.haproxy.stats_user = Some("admin".into()));
        },
    );
}

#[test]
fn missing_files() {
    case("missing user data", &["create"], 2, "userdata_file", |e| {
        std::fs::remove_file(e.path("user-data.yml")).unwrap();
    });
    case(
        "missing template",
        &["reload"],
        2,
        "haproxy_template_file",
        |e| e.configure(|c| c.haproxy_template_file = Some("nope.tera".into())),
    );
    case("missing inventory", &["print"], 1, "doesn't exist", |e| {
        std::fs::remove_file(e.path("inventory")).unwrap();
    });
    // An installed config that exists but cannot be read is an error, not "none yet".
    case(
        "unreadable installed config",
        &["reload"],
        1,
        "cannot read ./etc/haproxy.cfg",
        |e| {
            std::fs::remove_file(e.path("etc/haproxy.cfg")).unwrap();
            std::fs::create_dir(e.path("etc/haproxy.cfg")).unwrap();
        },
    );
}

#[test]
fn erb_templates_are_refused_by_name_or_by_markup() {
    // A Ruby DOProxy template is recognised by its .erb name alone, or by its <% markup
    // alone.
    case("erb by name", &["reload"], 2, "ERB template", |e| {
        e.write("haproxy.cfg.erb", "global\n");
        e.configure(|c| c.haproxy_template_file = Some("haproxy.cfg.erb".into()));
    });
    case("erb by markup", &["reload"], 2, "ERB template", |e| {
        e.write("old.tera", "global\n    maxconn <%= maxconn %>\n");
        e.configure(|c| c.haproxy_template_file = Some("old.tera".into()));
    });
}

#[test]
fn inventory_problems() {
    case(
        "duplicate id",
        &["reload"],
        1,
        "already listed at line 1",
        |e| {
            let keep = e.read("inventory");
            e.write("inventory", &format!("{keep}{keep}"));
        },
    );
    case("invalid tag", &["create"], 2, "droplet_options.tags", |e| {
        e.configure(|c| c.droplet_options.tags = Some(vec!["bad tag".into()]));
    });
}

#[test]
fn more_argument_mistakes() {
    case(
        "huge line number",
        &["delete", "99999999999999999999999"],
        2,
        "99999999999999999999999",
        |_| {},
    );
    case("count 0", &["create", "--count", "0"], 2, "--count", |_| {});
    case(
        "count not a number",
        &["create", "--count", "abc"],
        2,
        "abc",
        |_| {},
    );
    case(
        "unknown output format",
        &["-o", "yaml", "print"],
        2,
        "yaml",
        |_| {},
    );
}

#[test]
fn more_value_mistakes() {
    // The harness's config after `edit`, which must change it.
    let edited = |what: &'static str, edit: fn(&mut DoproxyConfig)| {
        move |e: &TestEnv| {
            let mut c = e.config();
            edit(&mut c);
            assert_ne!(c, e.config(), "{what}");
            e.write_config(&c);
        }
    };
    case(
        "port 0",
        &["print"],
        2,
        "backend_port",
        edited("backend_port: 0", |c| c.backend_port = Some(0)),
    );
    case(
        "port out of range",
        &["print"],
        2,
        "backend_port",
        edited("backend_port: 70000", |c| {
            c.set_raw("backend_port", json!(70000))
        }),
    );
    case("ftp api url", &["print"], 2, "api_url", |e| {
        e.configure(|c| c.api_url = Some("ftp://127.0.0.1/".into()));
    });
    case(
        "relative stats socket",
        &["print"],
        2,
        "haproxy.stats_socket",
        |e| {
            e.configure(|c| c.haproxy.stats_socket = Some(Some("run/admin.sock".into())));
        },
    );
    case(
        "bad check interval",
        &["print"],
        2,
        "haproxy.check_inter",
        edited("check_inter: 2x", |c| {
            c.haproxy.check_inter = Some("2x".into())
        }),
    );
    case(
        "image missing",
        &["print"],
        2,
        "missing field `image`",
        edited("no image", |c| c.droplet_options.image = None),
    );
}
