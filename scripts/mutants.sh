#!/usr/bin/env bash
# Mutation testing of the modules that carry the README's guarantees ("How it stays safe"):
# cargo-mutants changes one thing at a time in them (a condition negated, a function made to
# return a default, an operator swapped), runs the tests that cover that file against each
# change, and lists the changes no test noticed ("missed"): each is a guarantee that can
# break silently, or an equivalent mutant (see README, "Tests").
#
# Not part of CI: on 2 cores every mutant costs an incremental build plus a test run, and
# the full set is well over a thousand mutants. It works in a copy of the tree (under /tmp),
# never in this one, one mutant at a time, each test run bounded.
#
#   scripts/mutants.sh                                  # every file in the plan below
#   scripts/mutants.sh src/haproxy/guard.rs             # the plan's entries for these files
#   scripts/mutants.sh --list                           # the plan, without running it
#   scripts/mutants.sh src/commands/create.rs -- --re 'in resolve_unknown'
#                                                       # more cargo-mutants arguments
#
# Each file is run with the tests that exercise it (the plan): pure modules with the unit
# tests alone (seconds a mutant), the others with the unit tests plus a filtered set of the
# integration tests (15-40 s a mutant instead of the whole suite's 4 minutes). A survivor of
# a filtered run can be re-checked against the whole suite with
#   cargo mutants --file F --re 'NAME' -- --lib --test integration
# Outcomes go to target/mutants/<file>/mutants.out/ (caught.txt, missed.txt, timeout.txt,
# unviable.txt, outcomes.json); the survivors are printed at the end.
set -euo pipefail
cd "$(dirname "$0")/.."

# file | the test binaries | test filters (to the unit tests and the integration tests alike;
# `--skip X` leaves out a slow test that does not exercise the file)
plan=(
  "src/haproxy/guard.rs|--lib|"
  "src/store/journal.rs|--lib|"
  "src/digitalocean/retry.rs|--lib|"
  "src/autoscale/policy.rs|--lib|"
  "src/autoscale/live.rs|--lib|"
  "src/commands/delete.rs|--lib --test integration|bite:: delet ordering:: untagged dry_run"
  "src/commands/create.rs|--lib --test integration|commands:: faults:: polling:: waiting:: blast:: bite:: cluster::two_nodes errors::droplet_limit autoscaler::an_intent --skip print_with_200 --skip kill_9_at_random --skip haproxy_keeps_serving"
  "src/digitalocean/create.rs|--lib --test integration|digitalocean:: client:: faults:: blast::a_lost commands::create waiting:: errors:: cluster::two_nodes hostile:: --skip kill_9 --skip haproxy_keeps_serving"
  "src/digitalocean/mod.rs|--lib --test integration|fleet:: client:: erb digitalocean:: haproxy:: shrink"
  "src/haproxy/mod.rs|--lib --test integration|fleet:: client:: erb digitalocean:: haproxy:: shrink"
  "src/fleet.rs|--lib --test integration|fleet:: client:: erb digitalocean:: haproxy:: shrink"
  "src/haproxy/exec.rs|--lib --test integration|bite:: blast:: secrets:: errors:: ordering:: haproxy:: autoscale::policy"
  "src/haproxy/runtime.rs|--lib --test integration|haproxy:: ordering:: blast:: status:: fleet:: faults::haproxy_keeps_serving autoscaler:: bite::"
  "src/store/file.rs|--lib --test integration|bite:: hygiene:: hostile:: errors:: store:: watch_with_the_file_backend"
  "src/store/mod.rs|--lib --test integration|store:: etcd:: cluster:: autoscaler_cluster:: commands::create commands::stale bite:: --skip print_with_200"
  "src/store/etcd/**|--lib --test integration|store:: etcd:: cluster:: autoscaler_cluster::"
)

list=0
files=()
while [ $# -gt 0 ]; do
  case "$1" in
    --list) list=1; shift ;;
    --) shift; break ;;
    -*) echo "mutants: unknown option $1 (cargo-mutants arguments go after --)" >&2; exit 2 ;;
    *) files+=("$1"); shift ;;
  esac
done

selected=()
for entry in "${plan[@]}"; do
  file="${entry%%|*}"
  if [ ${#files[@]} -eq 0 ]; then
    selected+=("$entry")
    continue
  fi
  for f in "${files[@]}"; do
    if [ "$f" = "$file" ]; then selected+=("$entry"); fi
  done
done
if [ ${#files[@]} -gt 0 ] && [ ${#selected[@]} -ne ${#files[@]} ]; then
  echo "mutants: not every file named is in the plan (see --list)" >&2
  exit 2
fi
if [ "$list" = 1 ]; then
  for entry in "${selected[@]}"; do
    IFS='|' read -r file bins filters <<<"$entry"
    echo "$file: $bins${filters:+ -- $filters}"
  done
  exit 0
fi

# A tool, not a dependency: installed for this user when missing.
if ! cargo mutants --version >/dev/null 2>&1; then
  echo "mutants: installing cargo-mutants" >&2
  cargo install cargo-mutants --locked
fi
# The integration tests drive a real HAProxy, etcd and socat: fail, never skip.
scripts/install-deps.sh
export CI="${CI:-true}"

status=0
summary=()
count() { if [ -f "$1" ]; then wc -l <"$1"; else echo 0; fi; }
for entry in "${selected[@]}"; do
  IFS='|' read -r file bins filters <<<"$entry"
  name="$(echo "$file" | tr '/*' '__')"
  out="target/mutants/$name"
  mkdir -p "$out"
  read -r -a bin_args <<<"$bins"
  read -r -a filter_args <<<"$filters"
  echo "==> $file: $bins${filters:+ -- $filters}"
  # --jobs 1: one build directory (2 cores are busy enough with one build or one test run).
  # --test-threads 6: the integration tests mostly wait on their children (about 5 s of
  # CPU in 16 s of a filtered run), so six at once are still far from the CPU's limit.
  # --timeout: a test run longer than this counts as a timeout (a mutant that makes
  # something wait forever); cargo-mutants counts a timeout as caught.
  rc=0
  nice -n 15 cargo mutants --package doproxy --jobs 1 --timeout 300 --build-timeout 900 \
    --file "$file" --output "$out" "$@" -- "${bin_args[@]}" -- --test-threads 6 \
    "${filter_args[@]}" || rc=$?
  # cargo-mutants exits 2 when mutants were missed, 3 on timeouts, 0 when all were caught.
  case "$rc" in 0 | 2 | 3) ;; *) status=$rc ;; esac
  if [ "$rc" = 2 ] && [ "$status" = 0 ]; then status=2; fi
  o="$out/mutants.out"
  for kind in missed timeout; do
    if [ -s "$o/$kind.txt" ]; then
      echo "==> $file: $kind ($(count "$o/$kind.txt")):"
      cat "$o/$kind.txt"
    fi
  done
  summary+=("$file: caught $(count "$o/caught.txt"), missed $(count "$o/missed.txt"), timeouts $(count "$o/timeout.txt"), unviable $(count "$o/unviable.txt")")
done
echo "==> summary"
printf '%s\n' "${summary[@]}"
exit "$status"
