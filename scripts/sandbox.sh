#!/usr/bin/env bash
# The tutorial's walkthrough on this machine, with no DigitalOcean account: starts do-sim
# (a local DigitalOcean API whose droplets serve their identity page on 127.0.0.0/8; its
# `sandbox` mode also writes the doproxy.yml pointing at it), runs `doproxy create` three
# times, `print`, sends requests through a real HAProxy on 127.0.0.1 (when it is
# installed), `delete 2`, and cleans up after itself.
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
frontend_port=$(free_port)
# `do-sim sandbox` also writes the loopback world into $work: doproxy.yml pointing at the
# simulator, etc/, an empty inventory and user-data.yml. The demo polls less often than the
# tests, keeps doproxy's default timeouts and checks without HAProxy's zero-warning mode.
world=(--dir "$work" --frontend-port "$frontend_port" --poll-interval 1s --default-timeouts
  --user-data user-data.yml.example)
if command -v haproxy >/dev/null 2>&1; then
  world+=(--haproxy --check-command "haproxy -c -f {config}")
fi
"$root/target/debug/do-sim" sandbox "${world[@]}" --listen 127.0.0.1:0 --token "$token" \
  --active-after-ms 1500 --backend-port "$backend_port" >"$work/sim.out" 2>"$work/sim.log" &
sim_pid=$!
for _ in $(seq 1 100); do grep -q "listening on" "$work/sim.out" 2>/dev/null && break; sleep 0.05; done
api=$(sed -n 's/.*listening on \(http[^ ]*\).*/\1/p' "$work/sim.out" | head -n1)
[ -n "$api" ] || { echo "sandbox: do-sim did not start:" >&2; cat "$work/sim.log" >&2; exit 1; }
echo "==> do-sim (simulated DigitalOcean API) at $api"

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
