#!/usr/bin/env bash
# Builds the Debian package: the release binary, the man pages and shell completions
# (generated from the clap definitions by the doproxy-pkg crate), then the .deb with
# cargo-deb, which this script installs (cargo install cargo-deb --locked) when it is
# missing. Prints the path of the .deb on stdout (everything else goes to stderr).
#   scripts/package.sh && apt-get install ./target/debian/doproxy_*.deb
set -euo pipefail
cd "$(dirname "$0")/.."

if ! cargo deb --version >/dev/null 2>&1; then
  echo "package: installing cargo-deb (cargo install cargo-deb --locked)" >&2
  cargo install cargo-deb --locked >&2
fi

# The man pages' date and cargo-deb's file times: $SOURCE_DATE_EPOCH, else the last
# commit's time, so that a rebuild of the same commit gives the same pages. Only those two
# steps see it: cc-based build scripts (ring's) rebuild whenever it changes.
epoch=${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct 2>/dev/null || date +%s)}

echo "package: building doproxy and doproxy-pkg (release)" >&2
cargo build --release --locked -p doproxy -p doproxy-pkg >&2

# cargo-deb reads the generated files from <target dir>/release/pkg-assets (the
# target/release/ prefix of the assets in Cargo.toml), wherever the target folder is.
target_dir=$(cargo metadata --format-version 1 --no-deps --locked |
  sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')
[ -n "$target_dir" ] || { echo "package: cannot tell the target folder" >&2; exit 1; }
assets="$target_dir/release/pkg-assets"
SOURCE_DATE_EPOCH=$epoch "$target_dir/release/doproxy-pkg" "$assets" >/dev/null
# Debian ships man pages gzipped with -9n (no name or time stamp: the same bytes each build).
# cargo-deb would gzip them, but not files from the target folder.
gzip -9nf "$assets"/man/*.1

# --no-build: the binary was just built above, with --locked.
deb=$(SOURCE_DATE_EPOCH=$epoch cargo deb -p doproxy --no-build --locked)
deb=$(printf '%s\n' "$deb" | tail -n 1)
[ -f "$deb" ] || { echo "package: cargo deb did not report a .deb (got: $deb)" >&2; exit 1; }
echo "$deb"
