#!/usr/bin/env bash
# The tutorial's walkthrough on this machine, with no DigitalOcean account: starts do-sim
# (a local DigitalOcean API whose droplets serve their identity page on 127.0.0.0/8),
# runs `doproxy create` three times, `print`, sends requests through a real HAProxy on
# 127.0.0.1 (when it is installed), `delete 2`, and cleans up after itself.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

scripts/install-deps.sh || echo "sandbox: HAProxy could not be installed; continuing without it" >&2
echo "==> building doproxy and do-sim"
cargo build --quiet --workspace --bins --locked

work=$(mktemp -d /tmp/doproxy-sandbox.XXXXXX)
sim_pid=""
cleanup() {
  if [ -s "$work/haproxy.pid" ]; then kill "$(cat "$work/haproxy.pid")" 2>/dev/null || true; fi
  if [ -n "$sim_pid" ]; then kill "$sim_pid" 2>/dev/null || true; wait "$sim_pid" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT INT TERM

free_port() {
  local p
  for _ in $(seq 1 200); do
    p=$((20000 + RANDOM % 20000))
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then echo "$p"; return; fi
  done
  echo "sandbox: no free port found" >&2; exit 1
}

token=sandbox-token
backend_port=$(free_port)
"$root/target/debug/do-sim" --listen 127.0.0.1:0 --token "$token" --active-after-ms 1500 \
  --serve-apps --backend-port "$backend_port" >"$work/sim.out" 2>"$work/sim.log" &
sim_pid=$!
for _ in $(seq 1 100); do grep -q "listening on" "$work/sim.out" 2>/dev/null && break; sleep 0.05; done
api=$(sed -n 's/.*listening on \(http[^ ]*\).*/\1/p' "$work/sim.out" | head -n1)
[ -n "$api" ] || { echo "sandbox: do-sim did not start:" >&2; cat "$work/sim.log" >&2; exit 1; }
echo "==> do-sim (simulated DigitalOcean API) at $api"

frontend_port=$(free_port)
if command -v haproxy >/dev/null 2>&1; then
  check="haproxy -c -f {config}"
  reload="if [ -s $work/haproxy.pid ] && kill -0 \$(cat $work/haproxy.pid) 2>/dev/null; then kill -USR2 \$(cat $work/haproxy.pid); else haproxy -W -D -p $work/haproxy.pid -S $work/master.sock -f {config}; fi"
else
  check="true"
  reload="true"
fi
cp user-data.yml.example "$work/user-data.yml"
: >"$work/inventory"
mkdir -p "$work/etc"
cat >"$work/doproxy.yml" <<YAML
token: $token
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
api_url: $api
metadata_url: $api
backend_port: $backend_port
frontend_bind: 127.0.0.1:$frontend_port
check_command: '$check'
reload_command: '$reload'
poll_interval: 1s
haproxy:
  chroot: null
  user: null
  group: null
  log: null
  stats_socket: $work/admin.sock
  noreuseport: true
YAML

chmod 600 "$work/doproxy.yml"

doproxy() { echo "\$ doproxy $*"; (cd "$work" && "$root/target/debug/doproxy" "$@"); }

doproxy print
for _ in 1 2 3; do doproxy create; done
doproxy print
if [ -s "$work/haproxy.pid" ]; then
  echo "==> six requests through HAProxy at 127.0.0.1:$frontend_port"
  for _ in 1 2 3 4 5 6; do curl -s "http://127.0.0.1:$frontend_port/"; done
fi
doproxy delete 2
doproxy print
if [ -s "$work/haproxy.pid" ]; then
  echo "==> four requests through HAProxy after the delete"
  for _ in 1 2 3 4; do curl -s "http://127.0.0.1:$frontend_port/"; done
else
  echo "(HAProxy is not installed: the config doproxy rendered is in etc/haproxy.cfg)"
fi
echo "==> done; stopping HAProxy and do-sim"
