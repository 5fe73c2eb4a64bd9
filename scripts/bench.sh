#!/usr/bin/env bash
# bench.sh [--quick | --tune | --render-docs] [--out DIR] [-- extra cmd/bench flags] — Spillway's
# benchmark (issue 6).
#
# Builds ingest, search, archiver, loadgen and the orchestrator (cmd/bench), which starts a
# PRIVATE Elasticsearch node and PostgreSQL cluster with scripts/services.sh (own state
# directory, free ports: the shared services and other developers' data are never touched),
# runs the raw baselines and the scenarios S1–S9 in this one invocation, writes
# DIR/results.json, DIR/results.md and the plots, and stops and removes everything it started.
# A full run (no --quick) also writes the table into BENCHMARKS.md, the plots and results.json
# into docs/benchmarks/, and stores results.json under docs/benchmarks/runs/ (the table of stored
# runs in BENCHMARKS.md is generated from them). --quick is scaled down (under 5 minutes) and
# says so in its output. --tune compares ingest settings (about 12 minutes) and stores the
# comparison in docs/benchmarks/tuning.json, from which BENCHMARKS.md's tuning table is
# generated. --render-docs regenerates those two tables from the stored files without running.
set -euo pipefail
cd "$(dirname "$0")/.."

cmdline="scripts/bench.sh $*"
quick=0
out=""
extra=()
while [ $# -gt 0 ]; do
  case "$1" in
    --quick) quick=1 ;;
    --tune) extra+=(--only tune) ;;
    --render-docs)
      go run ./cmd/bench --render-docs --repo .
      exit ;;
    --out) out="${2:?--out needs a directory}"; shift ;;
    --out=*) out="${1#--out=}" ;;
    --) shift; extra+=("$@"); break ;;
    *) extra+=("$1") ;;
  esac
  shift
done
if [ -z "$out" ]; then
  suffix=""
  [ "$quick" = 1 ] && suffix="-quick"
  out="bench-out/$(date -u +%Y%m%d-%H%M%S)$suffix"
fi
mkdir -p "$out/bin"

echo "[bench] building"
go build -o "$out/bin/" ./cmd/ingest ./cmd/search ./cmd/archiver ./cmd/loadgen ./cmd/bench

args=(--repo . --bin "$out/bin" --out "$out" --command "$cmdline")
if [ "$quick" = 1 ]; then
  args+=(--quick)
else
  args+=(--update-doc)
fi
start=$(date +%s)
# cmd/bench stops what it started on any exit, SIGINT and SIGTERM included.
"$out/bin/bench" "${args[@]}" ${extra[@]+"${extra[@]}"}
echo "[bench] done in $(( $(date +%s) - start ))s; results in $out"
