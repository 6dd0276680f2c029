#!/usr/bin/env bash
# The autoscaler's proving ground, end to end: builds doproxy in release, writes the traces
# (the per-second diurnal day is generated here; the other three are the shipped traces/),
# runs every policy on every trace with the default settings (max 400) and writes into
# docs/autoscale/: report.md (one Markdown table per trace, a verdict line, the wall time),
# <trace>.svg (the plots) and <trace>.json (`simulate -o json`). Needs jq.
set -euo pipefail
cd "$(dirname "$0")/.."
out=docs/autoscale
max=400
cargo build --release -p doproxy --locked
bin=target/release/doproxy
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
# Defaults, whatever config the caller's environment points at.
unset DOPROXY_CONFIG
"$bin" -q autoscale traces --out "$tmp" --seed 1 >/dev/null
for t in flash-crowd slow-ramp square-wave; do
  cmp -s "traces/$t.csv" "$tmp/$t.csv" || { echo "traces/$t.csv is not what --seed 1 generates" >&2; exit 1; }
done
mkdir -p "$out"
{
  echo "# Autoscaling: every policy on every trace"
  echo
  echo "Written by \`scripts/autoscale-report.sh\`: default settings, \`--max $max\`, seed 1;"
  echo "the model's defaults (20 slots per droplet, 100 ms mean service time, boot"
  echo "35 s to active + 30–90 s to the app + 2 health checks, \`timeout queue\` 5 s)."
  echo "SLO: a minute violates when its p99 queue time is over 100 ms or it had a 503."
  echo "\"best baseline\": the one with the fewest SLO-violation minutes (then the fewest"
  echo "droplet-seconds). The target: doproxy at most as many droplet-seconds, at most a fifth"
  echo "of the SLO-violation minutes and no more actions than it."
  for t in diurnal-day flash-crowd slow-ramp square-wave; do
    start=$(date +%s.%N)
    "$bin" -q -o json autoscale simulate --trace "$tmp/$t.csv" --max "$max" \
      --plot "$out/$t.svg" > "$out/$t.json"
    end=$(date +%s.%N)
    echo
    echo "## $t"
    echo
    "$bin" -q autoscale simulate --trace "$tmp/$t.csv" --max "$max" --markdown | tail -n +2
    echo
    jq -r --arg wall "$(echo "$end - $start" | bc)" '
      .policies as $p
      | ($p[0]) as $d
      | ($p[1:] | sort_by(.slo_violation_minutes, .droplet_seconds) | .[0]) as $b
      | "Best baseline: \($b.policy). doproxy vs it: droplet-seconds \($d.droplet_seconds) vs \($b.droplet_seconds) (\(if $d.droplet_seconds <= $b.droplet_seconds then "met" else "not met" end)), SLO-violation minutes \($d.slo_violation_minutes) vs \($b.slo_violation_minutes) (\(if $d.slo_violation_minutes * 5 <= $b.slo_violation_minutes then "met" else "not met" end)), actions \($d.actions) vs \($b.actions) (\(if $d.actions <= $b.actions then "met" else "not met" end)). Simulated in \([$p[].elapsed_ms] | add | . * 10 | round / 10) ms for the five policies (\($wall | tonumber * 100 | round / 100) s wall for the whole command)."
    ' "$out/$t.json"
  done
} > "$out/report.md"
echo "wrote $out/report.md and $out/*.svg"
