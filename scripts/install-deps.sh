#!/usr/bin/env bash
# Installs what doproxy's tests and sandbox demo need on a Debian/Ubuntu machine: HAProxy
# (the integration tests drive a real one on 127.0.0.1), etcd (the etcd inventory backend's
# tests start their own on loopback ports; etcdctl sets up authentication in one, openssl
# makes a private CA for the TLS one), socat (the ordering tests read HAProxy's stats socket
# with it from inside the reload command) and curl.
# Idempotent.
set -euo pipefail
missing=()
command -v haproxy >/dev/null 2>&1 || missing+=(haproxy)
command -v curl >/dev/null 2>&1 || missing+=(curl)
command -v etcd >/dev/null 2>&1 || missing+=(etcd-server)
command -v etcdctl >/dev/null 2>&1 || missing+=(etcd-client)
command -v openssl >/dev/null 2>&1 || missing+=(openssl)
command -v socat >/dev/null 2>&1 || missing+=(socat)
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
# Debian's packages try to start a system HAProxy and etcd; the tests start their own on
# free loopback ports and never use the system ones.
command -v haproxy >/dev/null
command -v etcd >/dev/null
command -v etcdctl >/dev/null
command -v socat >/dev/null
