#!/usr/bin/env bash
# Mutation testing of the modules that carry the README's guarantees ("How it stays safe"):
# cargo-mutants changes one thing at a time in them (a condition negated, a function made to
# return a default, an operator swapped), runs doproxy's unit tests and the integration
# suite against each change, and lists the changes no test noticed ("missed"): each is a
# guarantee that can break silently, or an equivalent mutant (see README, "Tests").
#
# Not part of CI: on 2 cores every mutant costs an incremental build plus a test run (about
# 1.5 to 3 minutes), and the full set is several hundred mutants. It works in a copy of the
# tree (under /tmp), never in this one, one mutant at a time, each test run bounded.
#
#   scripts/mutants.sh                                   # every guarantee-carrying file
#   scripts/mutants.sh --file src/haproxy/guard.rs       # one file (repeatable)
#   scripts/mutants.sh --in-diff <(git diff main)        # only what a change touched
#   scripts/mutants.sh --list                            # the mutants, without running them
#
# Any argument is passed to cargo-mutants; with a --file argument only those files are
# mutated. The outcomes are in target/mutants.out/ (caught.txt, missed.txt, timeout.txt,
# unviable.txt, outcomes.json); the survivors are printed at the end.
set -euo pipefail
cd "$(dirname "$0")/.."

# A tool, not a dependency: installed for this user when missing.
if ! cargo mutants --version >/dev/null 2>&1; then
  echo "mutants: installing cargo-mutants" >&2
  cargo install cargo-mutants --locked
fi
# The integration tests drive a real HAProxy, etcd and socat: fail, never skip.
scripts/install-deps.sh
export CI="${CI:-true}"

# The files whose mutants are examined (.cargo/mutants.toml has the same list as
# examine_globs); a --file argument replaces it.
files=(
  src/commands/create.rs
  src/commands/delete.rs
  "src/store/**"
  src/haproxy/mod.rs
  src/haproxy/guard.rs
  src/haproxy/runtime.rs
  src/haproxy/exec.rs
  src/digitalocean/mod.rs
  src/digitalocean/retry.rs
  src/digitalocean/create.rs
  src/fleet.rs
)
args=()
case " $* " in
  *" --file "* | *" -f "* | *" --in-diff "* | *" -D "*) ;;
  *) for f in "${files[@]}"; do args+=(--file "$f"); done ;;
esac

status=0
# --jobs 1: one build directory (2 cores are busy enough with one build or one test run);
# MUTANTS_JOBS=2 runs two at once (the suite mostly waits: about 10 s of CPU in 50 s).
# --timeout: a test run (unit tests, then the integration suite, about 50-100 s) longer
# than this counts as a timeout (a mutant that makes something wait forever).
out=target/mutants.out
cargo mutants --package doproxy --jobs "${MUTANTS_JOBS:-1}" --timeout 300 --build-timeout 900 --output target \
  "${args[@]}" "$@" -- --lib --test integration || status=$?

# cargo-mutants exits 2 when mutants were missed, 3 on timeouts, 0 when all were caught.
count() { if [ -f "$out/$1.txt" ]; then wc -l <"$out/$1.txt"; else echo 0; fi; }
if [ -d "$out" ] && [ -f "$out/caught.txt" ]; then
  for kind in missed timeout; do
    if [ -s "$out/$kind.txt" ]; then
      echo "==> $kind ($(count "$kind")):"
      cat "$out/$kind.txt"
    fi
  done
  echo "==> caught $(count caught), missed $(count missed), timeouts $(count timeout)," \
    "unviable $(count unviable)"
fi
exit "$status"
