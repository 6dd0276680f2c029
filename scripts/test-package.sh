#!/usr/bin/env bash
# Builds the Debian package (scripts/package.sh), installs it with dpkg -i on this machine,
# checks what it installed, then purges it and checks that nothing of it is left but the
# "operator" files the test wrote in /etc/doproxy. Runs as root (CI is root); installs
# haproxy, man-db and systemd (for systemd-analyze) when they are missing; refuses to run
# where doproxy is installed or /etc/doproxy exists, since it would purge them. It cleans up
# after itself, even on failure, and exits non-zero when any check fails.
#
# doproxy itself only runs here without a usable config: --version, --help, completions,
# and `print` with no config or with one that fails to load (loopback URLs in it all the
# same), so it never makes a request.
set -euo pipefail
cd "$(dirname "$0")/.."
start=$SECONDS

say() { echo "test-package: $*"; }
passed=0
failed=0
ok() {
  passed=$((passed + 1))
  echo "ok   - $*"
}
not_ok() {
  failed=$((failed + 1))
  echo "FAIL - $*"
}
# check DESCRIPTION COMMAND...: runs COMMAND, counts it, shows its output when it fails.
# (set -e does not apply inside COMMAND: each check function returns 1 itself.)
check() {
  local desc=$1 out
  shift
  if out=$("$@" 2>&1); then
    ok "$desc"
  else
    not_ok "$desc"
    [ -z "$out" ] || printf '%s\n' "$out" | sed 's/^/       /'
  fi
}

if [ "$(id -u)" -ne 0 ]; then
  say "must run as root (it installs and purges a package)" >&2
  exit 1
fi
status=$(dpkg-query -W -f='${db:Status-Status}' doproxy 2>/dev/null || true)
if [ -n "$status" ] && [ "$status" != "not-installed" ]; then
  say "refusing: the doproxy package is on this machine ($status); the test would purge it." >&2
  say "remove it first: dpkg --purge doproxy" >&2
  exit 1
fi
if [ -e /etc/doproxy ]; then
  say "refusing: /etc/doproxy exists; the test writes files there and purges the package." >&2
  exit 1
fi

export DEBIAN_FRONTEND=noninteractive
apt_install() {
  apt-get install -y --no-install-recommends "$@" >/dev/null 2>&1 || {
    apt-get update >/dev/null 2>&1 && apt-get install -y --no-install-recommends "$@" >/dev/null
  }
}
units=(doproxy-watch.service doproxy-reload.service doproxy-reload.timer doproxy-autoscale.service)
unitdir=/usr/lib/systemd/system

work=$(mktemp -d /tmp/doproxy-test-package.XXXXXX)
installed=""
made_files=()
enabled=""
# Symlinks in /etc/systemd/system to the package's units (as `systemctl enable` makes them:
# to /lib/systemd/system/ where /lib is /usr/lib, as on Debian).
unit_links() {
  find /etc/systemd/system \( -lname "$unitdir/doproxy-*" -o -lname "/lib/systemd/system/doproxy-*" \) \
    2>/dev/null
}
cleanup() {
  local rc=$?
  if [ -n "$installed" ]; then dpkg --purge doproxy >/dev/null 2>&1 || true; fi
  for f in "${made_files[@]}"; do rm -f "$f"; done
  # The symlink the test's `systemctl enable` made, if a failed purge left it.
  if [ -n "$enabled" ]; then unit_links | xargs -r rm -f; fi
  # /etc/doproxy did not exist before the test (checked above).
  if [ -d /etc/doproxy ]; then rmdir /etc/doproxy 2>/dev/null || say "left /etc/doproxy: not empty" >&2; fi
  rm -rf "$work"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- what the test needs -------------------------------------------------------------
if [ "$(dpkg-query -W -f='${db:Status-Status}' haproxy 2>/dev/null || true)" != installed ]; then
  say "installing haproxy (the package depends on it)"
  apt_install haproxy
fi
if ! command -v man >/dev/null 2>&1; then
  say "installing man-db"
  apt_install man-db
fi
analyze=yes
if ! command -v systemd-analyze >/dev/null 2>&1; then
  say "installing systemd (for systemd-analyze verify)"
  apt_install systemd || true
  if ! command -v systemd-analyze >/dev/null 2>&1; then
    analyze="no: systemd-analyze is missing and the systemd package could not be installed"
  fi
fi
# Minimal images (Debian's docker images among them) tell dpkg not to unpack man pages.
# The test re-includes doproxy's, so that it can check them, and says so.
dpkg_opts=()
excl=$(grep -Hs -E '^[[:space:]]*path-exclude[[:space:]=]+/usr/share/man' \
  /etc/dpkg/dpkg.cfg /etc/dpkg/dpkg.cfg.d/* || true)
if [ -n "$excl" ]; then
  say "dpkg excludes man pages on this machine ($(printf '%s' "$excl" | head -n1)); installing with --path-include=/usr/share/man/man1/doproxy*"
  dpkg_opts+=("--path-include=/usr/share/man/man1/doproxy*")
fi

# --- build -----------------------------------------------------------------------------
t0=$SECONDS
say "building the package (scripts/package.sh)"
deb=$(scripts/package.sh)
say "built $deb in $((SECONDS - t0)) s"
dpkg-deb -c "$deb" >"$work/contents"
# The package's paths, without the leading '.', and its files (not folders).
awk '{print $NF}' "$work/contents" | sed 's|^\./|/|' >"$work/paths"
grep -v '/$' "$work/paths" >"$work/files"
version=$(dpkg-deb -f "$deb" Version)
version=${version%-*}

bash_completion=/usr/share/bash-completion/completions/doproxy
zsh_completion=/usr/share/zsh/vendor-completions/_doproxy
fish_completion=/usr/share/fish/vendor_completions.d/doproxy.fish
in_package() {
  local p
  for p in /usr/bin/doproxy /etc/doproxy/doproxy.yml.example /etc/doproxy/user-data.yml.example \
    "$bash_completion" "$zsh_completion" "$fish_completion" /usr/share/man/man1/doproxy.1.gz \
    "${units[@]/#/$unitdir/}"; do
    grep -qxF "$p" "$work/files" || { echo "missing from the package: $p"; return 1; }
  done
}
check "the package holds the binary, the examples, the units, the completions, doproxy.1.gz" in_package
relations() {
  dpkg-deb -f "$deb" Depends | grep -qw haproxy || return 1
  [ "$(dpkg-deb -f "$deb" Recommends)" = etcd-client ] || return 1
}
check "Depends: haproxy, Recommends: etcd-client" relations

# --- install ---------------------------------------------------------------------------
say "installing: dpkg -i ${dpkg_opts[*]} $deb"
installed=yes
dpkg -i "${dpkg_opts[@]}" "$deb" >"$work/dpkg-i.log" 2>&1 || {
  cat "$work/dpkg-i.log"
  not_ok "dpkg -i"
  exit 1
}
ok "dpkg -i"

version_ok() {
  local v
  v=$(/usr/bin/doproxy --version) || return 1
  [ "$v" = "doproxy $version" ] || { echo "got: $v"; return 1; }
}
check "/usr/bin/doproxy --version prints 'doproxy $version'" version_ok
help_ok() { /usr/bin/doproxy --help | grep -q /etc/doproxy/doproxy.yml; }
check "doproxy --help names /etc/doproxy/doproxy.yml" help_ok

man_pages() {
  local page n=0
  for page in $(sed -n 's|^/usr/share/man/man1/\(.*\)\.1\.gz$|\1|p' "$work/files"); do
    [ "$(man -w "$page" 2>&1)" = "/usr/share/man/man1/$page.1.gz" ] ||
      { echo "man -w $page: $(man -w "$page" 2>&1)"; return 1; }
    gzip -t "/usr/share/man/man1/$page.1.gz" || return 1
    n=$((n + 1))
  done
  for page in doproxy doproxy-print doproxy-create doproxy-delete doproxy-reload doproxy-generate \
    doproxy-inventory doproxy-inventory-import doproxy-inventory-export doproxy-completions; do
    [ -f "/usr/share/man/man1/$page.1.gz" ] || { echo "no man page $page"; return 1; }
  done
  echo "$n pages"
}
check "man -w finds doproxy.1.gz and every page of the package (gzip -t)" man_pages
man_renders() {
  MANPAGER=cat MANWIDTH=100 man doproxy-create >"$work/man.txt" 2>/dev/null || return 1
  grep -q -- '--dry-run' "$work/man.txt" || return 1
  grep -q 'doproxy create --count 5' "$work/man.txt" || return 1
}
check "man doproxy-create renders, with --dry-run and its examples" man_renders

completion() { # SHELL FILE: the installed script is what `doproxy completions SHELL` prints
  /usr/bin/doproxy completions "$1" >"$work/completion.$1" || return 1
  cmp "$work/completion.$1" "$2" || return 1
  case "$1" in
  bash) bash -n "$2" || return 1 ;;
  *) if command -v "$1" >/dev/null 2>&1; then "$1" -n "$2" || return 1; fi ;;
  esac
}
check "bash completion: $bash_completion, as doproxy completions bash prints it; bash -n" \
  completion bash "$bash_completion"
check "zsh completion: $zsh_completion, as doproxy completions zsh prints it" \
  completion zsh "$zsh_completion"
check "fish completion: $fish_completion, as doproxy completions fish prints it" \
  completion fish "$fish_completion"

mode_of() { # PATH MODE: PATH's mode and owner are MODE
  local got
  got=$(stat -c "%a %U:%G" "$1") || return 1
  [ "$got" = "$2" ] || { echo "$1: $got"; return 1; }
}
check "/etc/doproxy is 0750 root:root" mode_of /etc/doproxy "750 root:root"
conffiles() {
  local f
  for f in doproxy.yml.example user-data.yml.example; do
    mode_of "/etc/doproxy/$f" "644 root:root" || return 1
    dpkg-query -W -f='${Conffiles}\n' doproxy | grep -q " /etc/doproxy/$f " ||
      { echo "/etc/doproxy/$f is not a conffile"; return 1; }
  done
}
check "the examples are 0644 root:root conffiles" conffiles

no_unit_links() {
  local links
  links=$(unit_links)
  [ -z "$links" ] || { echo "left: $links"; return 1; }
}
not_enabled() {
  no_unit_links || return 1
  if command -v systemctl >/dev/null 2>&1; then
    local u state
    for u in "${units[@]}"; do
      state=$(systemctl is-enabled "$u" 2>&1 || true)
      case "$state" in disabled | static) ;; *) echo "$u: $state"; return 1 ;; esac
    done
  fi
}
check "no unit is enabled (systemctl is-enabled: disabled, or static for doproxy-reload.service)" not_enabled

if [ "$analyze" = yes ]; then
  verify() { # silent and 0: no warning either
    local out
    out=$(systemd-analyze verify "${units[@]/#/$unitdir/}" 2>&1) || { echo "$out"; return 1; }
    [ -z "$out" ] || { echo "$out"; return 1; }
  }
  check "systemd-analyze verify ${units[*]} (no error, no warning)" verify
  for u in doproxy-watch.service doproxy-reload.service doproxy-autoscale.service; do
    say "$(systemd-analyze security --offline=yes "$unitdir/$u" 2>/dev/null | grep -o 'Overall exposure level.*' || echo "systemd-analyze security: no score for $u")"
  done
else
  say "SKIPPED systemd-analyze verify ($analyze)"
fi

# The config search reaches /etc/doproxy/doproxy.yml. No request can leave: the first run
# has no config at all, the second one a config that fails to load (an unknown key), whose
# URLs are loopback ones anyway, as are those in the environment.
run_doproxy() {
  (cd "$work" && env -i PATH=/usr/bin:/bin HOME="$work" \
    DIGITALOCEAN_API_URL=http://127.0.0.1:9 DOPROXY_METADATA_URL=http://127.0.0.1:9 \
    /usr/bin/doproxy "$@")
}
no_config() {
  local err rc=0
  err=$(run_doproxy print 2>&1 >/dev/null) || rc=$?
  [ "$rc" = 2 ] && grep -qF "tried ./doproxy.yml, /etc/doproxy/doproxy.yml" <<<"$err" || { echo "exit $rc: $err"; return 1; }
}
check "without a config, doproxy print exits 2 and lists ./doproxy.yml and /etc/doproxy/doproxy.yml" no_config

# "Operator" files: purge must leave them.
cat >/etc/doproxy/doproxy.yml <<'YAML'
# Written by scripts/test-package.sh: an operator's file, which purge must leave. Not a
# usable config: loading it stops at the unknown key below, before any request.
api_url: http://127.0.0.1:9
metadata_url: http://127.0.0.1:9
test_package_not_a_key: 1
YAML
made_files+=(/etc/doproxy/doproxy.yml)
chmod 600 /etc/doproxy/doproxy.yml
: >/etc/doproxy/inventory
made_files+=(/etc/doproxy/inventory)
sha256sum /etc/doproxy/doproxy.yml /etc/doproxy/inventory >"$work/operator.sha256"
etc_config() {
  local err rc=0
  err=$(run_doproxy print 2>&1 >/dev/null) || rc=$?
  [ "$rc" = 2 ] && grep -qF "/etc/doproxy/doproxy.yml: unknown field \`test_package_not_a_key\`" <<<"$err" || { echo "exit $rc: $err"; return 1; }
}
check "with no ./doproxy.yml, doproxy loads /etc/doproxy/doproxy.yml" etc_config

# A reinstall (as an upgrade would) keeps the operator's files and their folder's mode.
chmod 0700 /etc/doproxy
dpkg -i "${dpkg_opts[@]}" "$deb" >"$work/dpkg-i2.log" 2>&1 && ok "dpkg -i again (reinstall)" || {
  cat "$work/dpkg-i2.log"
  not_ok "dpkg -i again (reinstall)"
}
operator_files() { sha256sum --quiet -c "$work/operator.sha256"; }
check "the reinstall kept the operator's files" operator_files
check "the reinstall kept /etc/doproxy's mode (0700, set by the operator)" mode_of /etc/doproxy "700 root:root"
chmod 0750 /etc/doproxy
check "the reinstall enabled nothing" not_enabled

# The operator enables the timer; purge removes that symlink, which would point at nothing.
enabled=yes
if command -v systemctl >/dev/null 2>&1; then
  systemctl enable doproxy-reload.timer >/dev/null 2>&1 || true
fi
if [ -z "$(unit_links)" ]; then
  mkdir -p /etc/systemd/system/timers.target.wants
  ln -s "$unitdir/doproxy-reload.timer" /etc/systemd/system/timers.target.wants/doproxy-reload.timer
fi
say "enabled doproxy-reload.timer: $(unit_links)"

# --- purge -----------------------------------------------------------------------------
say "purging: dpkg --purge doproxy (with the operator's doproxy.yml and inventory in /etc/doproxy)"
dpkg --purge doproxy >"$work/purge.log" 2>&1 && ok "dpkg --purge" || {
  cat "$work/purge.log"
  not_ok "dpkg --purge"
}
installed=""
forgotten() {
  local s
  s=$(dpkg-query -W -f='${db:Status-Status}' doproxy 2>/dev/null || true)
  [ -z "$s" ] || [ "$s" = not-installed ] || { echo "status: $s"; return 1; }
}
check "dpkg no longer knows the package (not even its conffiles)" forgotten
gone() {
  local f left=""
  while read -r f; do [ ! -e "$f" ] && [ ! -L "$f" ] || left="$left $f"; done <"$work/files"
  for f in /usr/share/doc/doproxy /etc/doproxy/doproxy.yml.example.dpkg-dist; do
    [ ! -e "$f" ] || left="$left $f"
  done
  [ -z "$left" ] || { echo "left:$left"; return 1; }
}
check "none of the package's $(wc -l <"$work/files") files is left" gone
check "the enable symlink of doproxy-reload.timer is gone" no_unit_links
check "the operator's doproxy.yml and inventory survive, unchanged" operator_files
only_operator_files() {
  local left
  left=$(ls -A /etc/doproxy | tr '\n' ' ')
  [ "$left" = "doproxy.yml inventory " ] || { echo "in /etc/doproxy: $left"; return 1; }
}
check "they are all that is left in /etc/doproxy" only_operator_files

# Without operator files, purge leaves no /etc/doproxy at all.
for f in "${made_files[@]}"; do rm -f "$f"; done
made_files=()
rmdir /etc/doproxy
installed=yes
dpkg -i "${dpkg_opts[@]}" "$deb" >"$work/dpkg-i3.log" 2>&1 && dpkg --purge doproxy >"$work/purge2.log" 2>&1 &&
  ok "install, then purge with no operator files" || {
  cat "$work/dpkg-i3.log" "$work/purge2.log"
  not_ok "install, then purge with no operator files"
}
installed=""
all_gone() {
  [ ! -e /etc/doproxy ] || { echo "/etc/doproxy is left: $(ls -A /etc/doproxy)"; return 1; }
  gone
}
check "that purge left no /etc/doproxy and none of the package's files" all_gone

say "took $((SECONDS - start)) s"
echo "test-package: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
