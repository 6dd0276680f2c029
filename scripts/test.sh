#!/usr/bin/env bash
# The whole test suite: installs HAProxy when missing, then runs every test of the
# workspace (doproxy's unit and integration tests, do-sim's tests).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
cargo test --workspace --locked "$@"
