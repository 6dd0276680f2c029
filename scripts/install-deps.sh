#!/usr/bin/env bash
# Installs what doproxy's tests and sandbox demo need on a Debian/Ubuntu machine: HAProxy
# (the integration tests drive a real one on 127.0.0.1) and curl. Idempotent.
set -euo pipefail
missing=()
command -v haproxy >/dev/null 2>&1 || missing+=(haproxy)
command -v curl >/dev/null 2>&1 || missing+=(curl)
if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "install-deps: missing ${missing[*]}; run as root or: sudo apt-get install -y ${missing[*]}" >&2
  exit 1
fi
echo "install-deps: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get install -y --no-install-recommends "${missing[@]}" >/dev/null 2>&1 || {
  apt-get update >/dev/null
  apt-get install -y --no-install-recommends "${missing[@]}" >/dev/null
}
# Debian's package tries to start a system HAProxy; the tests start their own and never
# use the system one, so whether it runs does not matter to them.
command -v haproxy >/dev/null
