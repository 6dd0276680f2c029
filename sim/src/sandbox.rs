//! The loopback world: a `doproxy.yml` that points doproxy at a running
//! simulator, with the files beside it (`etc/`, an empty `inventory`,
//! `user-data.yml`). doproxy's integration tests, its benchmark and
//! `do-sim sandbox` (hence `scripts/sandbox.sh`) all build it from here.
//!
//! [`DoproxyConfig`] is a typed model of the `doproxy.yml` keys they write;
//! a field left `None` leaves its key out. For the bad-input tests,
//! [`DoproxyConfig::set_raw`] and [`DoproxyConfig::remove`] edit the
//! serialized tree, so any YAML value (of the wrong type, or under an unknown
//! key) can be written without editing YAML text.

mod config;
pub mod load;

use std::io;
use std::net::{Ipv4Addr, TcpListener};
use std::path::{Path, PathBuf};

pub use config::{
    DoproxyConfig, DropletOptions, HaproxyOptions, IdOrName, InventoryOptions, RawEdit,
    RetryOptions,
};

/// The config's file name in the world's directory.
pub const CONFIG_FILE: &str = "doproxy.yml";
/// The inventory's file name (created empty by [`prepare_dir`]).
pub const INVENTORY_FILE: &str = "inventory";
/// The user data's file name.
pub const USER_DATA_FILE: &str = "user-data.yml";
/// The folder the rendered HAProxy config is installed into.
pub const HAPROXY_CFG_PATH: &str = "etc";
/// The user data doproxy's tests send: a three-line cloud-config.
pub const TEST_USER_DATA: &str = "#cloud-config\nruncmd:\n  - echo hi\n";

impl DoproxyConfig {
    /// The config doproxy's integration tests use: everything in `dir`, the API
    /// and the metadata service at `sim_url`, apps on `backend_port`, HAProxy's
    /// frontend on `127.0.0.1:frontend_port`, short timeouts and retries, no
    /// chroot/user/group/log, the stats socket at `{dir}/admin.sock`. With
    /// `haproxy`, check and reload run a real HAProxy ([`haproxy_commands`]),
    /// else both are `true` ([`stand_in_commands`]).
    pub fn loopback(
        dir: &Path,
        sim_url: &str,
        token: &str,
        backend_port: u16,
        frontend_port: u16,
        haproxy: bool,
    ) -> DoproxyConfig {
        let (check, reload) = if haproxy {
            haproxy_commands(dir)
        } else {
            stand_in_commands()
        };
        let s = |v: &str| Some(v.to_string());
        DoproxyConfig {
            token: s(token),
            ssh_key_ids: Some(vec![IdOrName::Id(163420)]),
            userdata_file: s(USER_DATA_FILE),
            haproxy_cfg_file: s("haproxy.cfg"),
            haproxy_cfg_path: s(HAPROXY_CFG_PATH),
            inventory_file: s(INVENTORY_FILE),
            droplet_options: DropletOptions {
                hostname_prefix: s("auto-nginx"),
                region: s("nyc3"),
                size: s("s-1vcpu-1gb"),
                image: Some(IdOrName::from("ubuntu-24-04-x64")),
                ..DropletOptions::default()
            },
            api_url: s(sim_url),
            metadata_url: s(sim_url),
            backend_port: Some(backend_port),
            frontend_bind: Some(format!("127.0.0.1:{frontend_port}")),
            check_command: Some(check),
            reload_command: Some(reload),
            wait_timeout: s("20s"),
            poll_interval: s("50ms"),
            not_found_grace: s("2s"),
            api_timeout: s("5s"),
            lock_timeout: s("30s"),
            drain_timeout: s("2s"),
            reload_verify_timeout: s("5s"),
            retry: RetryOptions {
                max_attempts: Some(6),
                min_delay: s("10ms"),
                max_delay: s("200ms"),
                budget: s("5s"),
            },
            haproxy: HaproxyOptions {
                chroot: Some(None),
                user: Some(None),
                group: Some(None),
                log: Some(None),
                stats_socket: Some(Some(format!("{}/admin.sock", dir.display()))),
                noreuseport: Some(true),
                check_inter: s("500ms"),
                ..HaproxyOptions::default()
            },
            ..DoproxyConfig::default()
        }
    }
}

/// The check command and the reload one-liner for a real HAProxy in
/// master-worker mode, its pidfile `{dir}/haproxy.pid` and master socket
/// `{dir}/master.sock`: the first reload starts HAProxy, later ones send the
/// master `USR2`. The check runs in zero-warning mode (`-dW`).
pub fn haproxy_commands(dir: &Path) -> (String, String) {
    haproxy_commands_with(&dir.join("haproxy.pid"), &dir.join("master.sock"))
}

/// [`haproxy_commands`] with a pidfile and master socket of the caller's
/// choosing (a second HAProxy beside the first, say).
pub fn haproxy_commands_with(pidfile: &Path, master_socket: &Path) -> (String, String) {
    let (p, m) = (pidfile.display(), master_socket.display());
    (
        "haproxy -dW -c -f {config}".to_string(),
        format!(
            "if [ -s {p} ] && kill -0 $(cat {p}) 2>/dev/null; then kill -USR2 $(cat {p}); else haproxy -W -D -p {p} -S {m} -f {{config}}; fi"
        ),
    )
}

/// The check and reload commands when no HAProxy is used: both `true`.
pub fn stand_in_commands() -> (String, String) {
    ("true".to_string(), "true".to_string())
}

/// A free TCP port on 127.0.0.1 (bound, then released).
pub fn free_port() -> io::Result<u16> {
    Ok(TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?
        .local_addr()?
        .port())
}

/// Lays the world out in `dir` (created if missing): `etc/`, an empty
/// `inventory`, `user-data.yml` holding `user_data` (doproxy's tests use
/// [`TEST_USER_DATA`]) and `doproxy.yml` from `config` (see [`write_config`]).
/// Returns the config's path.
pub fn prepare_dir(dir: &Path, config: &DoproxyConfig, user_data: &str) -> io::Result<PathBuf> {
    std::fs::create_dir_all(dir.join(HAPROXY_CFG_PATH))?;
    std::fs::write(dir.join(INVENTORY_FILE), "")?;
    std::fs::write(dir.join(USER_DATA_FILE), user_data)?;
    write_config(dir, &config.to_yaml())
}

/// Writes `yaml` to `{dir}/doproxy.yml` with mode 0600 (it holds the token:
/// doproxy warns unless only the owner can read it). Returns its path.
pub fn write_config(dir: &Path, yaml: &str) -> io::Result<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let path = dir.join(CONFIG_FILE);
    std::fs::write(&path, yaml)?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const DIR: &str = "/tmp/world";
    const URL: &str = "http://127.0.0.1:4100";
    const TOKEN: &str = "sim-token-7f3a9c";

    /// The config text doproxy's test harness writes by hand today (its `config_text`).
    fn todays_text(check: &str, reload: &str) -> String {
        let (d, api, bp, fp) = (DIR, URL, 8081, 8082);
        format!(
            r#"token: {TOKEN}
ssh_key_ids:
  - 163420
userdata_file: user-data.yml
haproxy_cfg_file: haproxy.cfg
haproxy_cfg_path: etc
inventory_file: inventory
droplet_options:
  hostname_prefix: auto-nginx
  region: nyc3
  size: s-1vcpu-1gb
  image: ubuntu-24-04-x64
api_url: {api}
metadata_url: {api}
backend_port: {bp}
frontend_bind: 127.0.0.1:{fp}
check_command: '{check}'
reload_command: '{reload}'
wait_timeout: 20s
poll_interval: 50ms
not_found_grace: 2s
api_timeout: 5s
lock_timeout: 30s
drain_timeout: 2s
reload_verify_timeout: 5s
retry:
  max_attempts: 6
  min_delay: 10ms
  max_delay: 200ms
  budget: 5s
haproxy:
  chroot: null
  user: null
  group: null
  log: null
  stats_socket: {d}/admin.sock
  noreuseport: true
  check_inter: 500ms
"#
        )
    }

    fn loopback(haproxy: bool) -> DoproxyConfig {
        DoproxyConfig::loopback(Path::new(DIR), URL, TOKEN, 8081, 8082, haproxy)
    }

    fn parse(yaml: &str) -> serde_yaml::Mapping {
        match serde_yaml::from_str(yaml) {
            Ok(serde_yaml::Value::Mapping(m)) => m,
            other => panic!("not a YAML mapping: {other:?}\n{yaml}"),
        }
    }

    fn keys(m: &serde_yaml::Mapping) -> Vec<String> {
        m.keys()
            .map(|k| k.as_str().unwrap_or("?").to_string())
            .collect()
    }

    #[test]
    fn loopback_is_todays_test_config_key_by_key() {
        let d = DIR;
        let reload = format!(
            "if [ -s {d}/haproxy.pid ] && kill -0 $(cat {d}/haproxy.pid) 2>/dev/null; then kill -USR2 $(cat {d}/haproxy.pid); else haproxy -W -D -p {d}/haproxy.pid -S {d}/master.sock -f {{config}}; fi"
        );
        for (haproxy, check, reload) in [
            (true, "haproxy -dW -c -f {config}", reload.as_str()),
            (false, "true", "true"),
        ] {
            let want = parse(&todays_text(check, reload));
            let got = parse(&loopback(haproxy).to_yaml());
            assert_eq!(keys(&got), keys(&want), "key order");
            for (k, v) in &want {
                assert_eq!(got.get(k), Some(v), "{k:?}");
            }
        }
    }

    #[test]
    fn yaml_is_block_style_and_round_trips() {
        let mut c = loopback(true);
        c.inventory = InventoryOptions {
            backend: Some("etcd".into()),
            endpoints: Some(vec!["http://127.0.0.1:2379".into()]),
            lock_ttl: Some("3s".into()),
            ..InventoryOptions::default()
        };
        c.haproxy.stats_user = Some("admin".into());
        c.droplet_options.tags = Some(vec!["env:test".into()]);
        c.ssh_key_ids = Some(vec![163420.into(), "3b:16:bf".into()]);
        let yaml = c.to_yaml();
        // Block style: no value is a flow collection (`[...]`, `{...}`).
        for line in yaml.lines() {
            let value = line.split_once(": ").map_or("", |(_, v)| v);
            assert!(!value.starts_with(['[', '{']), "{line}");
        }
        assert!(yaml.contains("\nhaproxy:\n  chroot: null\n"), "{yaml}");
        let back: DoproxyConfig =
            serde_yaml::from_str(&yaml).unwrap_or_else(|e| panic!("{e}\n{yaml}"));
        assert_eq!(back, c);
    }

    #[test]
    fn raw_edits_write_any_value() {
        let mut c = loopback(false);
        c.set_raw("droplet_options.size", json!([1]));
        c.set_raw("bogus", json!(1));
        c.set_raw("wait_timeout", json!(-5));
        c.set_raw("haproxy.stats_user", json!("admin"));
        c.set_raw("new.section.key", json!({"a": true}));
        let got = parse(&c.to_yaml());
        let v = |yaml: &str| serde_yaml::from_str::<serde_yaml::Value>(yaml).unwrap_or_default();
        assert_eq!(got["droplet_options"]["size"], v("[1]"));
        assert_eq!(got["droplet_options"]["image"], v("ubuntu-24-04-x64"));
        assert_eq!(got["bogus"], v("1"));
        assert_eq!(got["wait_timeout"], v("-5"));
        assert_eq!(got["haproxy"]["stats_user"], v("admin"));
        assert_eq!(got["new"]["section"]["key"]["a"], v("true"));
        // A key that was there keeps its place; a new one comes last.
        let order = keys(&got);
        let pos = |k: &str| order.iter().position(|x| x == k);
        assert_eq!(pos("wait_timeout"), pos("reload_command").map(|p| p + 1));
        assert_eq!(order.last().map(String::as_str), Some("new"));
        assert_eq!(pos("bogus").map(|p| p + 2), Some(order.len()));
    }

    #[test]
    fn removing_a_key_leaves_it_out() {
        let mut c = loopback(false);
        c.remove("token");
        c.remove("droplet_options.image");
        c.remove("no.such.key");
        c.remove("haproxy.nothing");
        let got = parse(&c.to_yaml());
        let mut want = parse(&loopback(false).to_yaml());
        want.shift_remove("token");
        if let Some(d) = want
            .get_mut("droplet_options")
            .and_then(|d| d.as_mapping_mut())
        {
            d.shift_remove("image");
        }
        assert_eq!(keys(&got), keys(&want));
        assert_eq!(got, want);
        assert!(!got.contains_key("token"));
        // The typed way: a field set to None.
        let mut c = loopback(false);
        c.token = None;
        assert!(!parse(&c.to_yaml()).contains_key("token"));
    }

    #[test]
    fn haproxy_command_pair() {
        let (check, reload) = haproxy_commands(Path::new("/w"));
        assert_eq!(check, "haproxy -dW -c -f {config}");
        assert_eq!(
            reload,
            "if [ -s /w/haproxy.pid ] && kill -0 $(cat /w/haproxy.pid) 2>/dev/null; then kill -USR2 $(cat /w/haproxy.pid); else haproxy -W -D -p /w/haproxy.pid -S /w/master.sock -f {config}; fi"
        );
        let (_, b) = haproxy_commands_with(Path::new("/w/b.pid"), Path::new("/w/b.sock"));
        assert!(b.contains("-p /w/b.pid -S /w/b.sock") && !b.contains("haproxy.pid"));
        assert_eq!(
            stand_in_commands(),
            ("true".to_string(), "true".to_string())
        );
    }

    #[test]
    fn prepare_dir_lays_the_world_out() {
        use std::os::unix::fs::PermissionsExt;
        let tmp = tempfile::tempdir().expect("temp dir");
        let dir = tmp.path().join("world");
        let c = DoproxyConfig::loopback(&dir, URL, TOKEN, 8081, free_port().expect("port"), true);
        let path = prepare_dir(&dir, &c, TEST_USER_DATA).expect("prepare");
        assert_eq!(path, dir.join("doproxy.yml"));
        assert!(dir.join("etc").is_dir());
        assert_eq!(
            std::fs::read_to_string(dir.join("inventory"))
                .ok()
                .as_deref(),
            Some("")
        );
        assert_eq!(
            std::fs::read_to_string(dir.join("user-data.yml"))
                .ok()
                .as_deref(),
            Some(TEST_USER_DATA)
        );
        assert_eq!(std::fs::read_to_string(&path).ok(), Some(c.to_yaml()));
        let mode = std::fs::metadata(&path).map(|m| m.permissions().mode() & 0o777);
        assert_eq!(mode.ok(), Some(0o600));
    }
}
