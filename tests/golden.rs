//! Golden files for the rendered haproxy.cfg (production and loopback variants), each of
//! which must pass `haproxy -dW -c` (warnings fatal). `UPDATE_GOLDEN=1` rewrites them.

use crate::support::haproxy_check;
use doproxy::config::Config;
use doproxy::haproxy::{render, RenderContext, Server, DEFAULT_TEMPLATE};
use std::path::Path;

const BASE: &str = "token: t\nhaproxy_cfg_file: haproxy.cfg\nhaproxy_cfg_path: /etc/haproxy\ninventory_file: inventory\ndroplet_options:\n  hostname_prefix: web\n  size: s-1vcpu-1gb\n  image: ubuntu-24-04-x64\n";

fn servers(base: [u8; 3]) -> Vec<Server> {
    (1..=3u8)
        .map(|i| Server {
            id: 7384010 + u64::from(i),
            name: format!("web-{i}abcde"),
            private_ip: format!("{}.{}.{}.{}", base[0], base[1], base[2], 10 + i),
            public_ip: None,
            standby: false,
        })
        .collect()
}

fn golden(file: &str, yaml: &str, bind: &str, servers: &[Server]) {
    let cfg = Config::parse(Path::new("/opt/doproxy/doproxy.yml"), yaml, &|_| None).unwrap();
    let ctx = RenderContext {
        droplets: servers,
        backend_port: cfg.haproxy.backend_port,
        frontend_bind: bind,
        haproxy: &cfg.haproxy.values,
    };
    let out = render(DEFAULT_TEMPLATE, "built-in", &ctx).unwrap();
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(file);
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, &out).unwrap();
    }
    let want = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (UPDATE_GOLDEN=1 creates it)", path.display()));
    assert_eq!(out, want, "{file} differs from the golden file");
    if crate::support::haproxy_available() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join(file);
        std::fs::write(&f, &out).unwrap();
        let (ok, text) = haproxy_check(&f);
        assert!(ok, "{file} fails haproxy -dW -c:\n{text}");
    }
}

#[test]
fn production_variant() {
    // Defaults: chroot, user/group haproxy, syslog, admin socket in /run, port 80.
    golden(
        "haproxy.production.cfg",
        BASE,
        "203.0.113.10:80",
        &servers([10, 132, 0]),
    );
}

#[test]
fn production_variant_with_stats_and_errorfiles() {
    let yaml = format!("{BASE}haproxy:\n  stats_user: admin\n  stats_password: s3cret-pass\n  errorfiles_dir: /etc/haproxy/errors\n");
    // /etc/haproxy/errors ships with Debian's haproxy package, which the tests install.
    golden(
        "haproxy.production-stats.cfg",
        &yaml,
        "203.0.113.10:80",
        &servers([10, 132, 0]),
    );
}

#[test]
fn loopback_variant() {
    let yaml = format!("{BASE}backend_port: 8080\nhaproxy:\n  chroot: null\n  user: null\n  group: null\n  log: null\n  stats_socket: /tmp/doproxy-test/admin.sock\n  noreuseport: true\n  check_inter: 500ms\n");
    golden(
        "haproxy.loopback.cfg",
        &yaml,
        "127.0.0.1:18080",
        &servers([127, 128, 0]),
    );
}

#[test]
fn empty_backend_is_valid() {
    golden("haproxy.empty.cfg", BASE, "203.0.113.10:80", &[]);
}
