#!/usr/bin/env bash
# faults.sh — the fault-injection suite (faults/) in its full form, then RELIABILITY.md.
#
# Starts the shared services like test.sh (the faults that stop or break a store start private
# ones), runs `go test ./faults` with SPILLWAY_FULL=1 (longer outages, more kills, more load)
# and renders what every fault recorded — sent, acknowledged, stored in Elasticsearch and
# PostgreSQL, lost, duplicated — into RELIABILITY.md, with the date, machine and versions.
# The file is written even when a fault fails (it then says so); the exit status is the tests'.
#
#   scripts/faults.sh                      # everything, about 9 minutes on 2 cores
#   scripts/faults.sh -run TestFaultIngest # a subset (RELIABILITY.md then lists only that)
#   SPILLWAY_FULL= scripts/faults.sh       # the short form, as test.sh runs it
#   FAULTS_OUT=/tmp/r.md scripts/faults.sh # write the report elsewhere
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/services.sh up
eval "$(scripts/services.sh env)"
command -v go >/dev/null || { echo "faults.sh: Go is required (https://go.dev/dl)" >&2; exit 1; }

export SPILLWAY_FULL="${SPILLWAY_FULL-1}"
out="${FAULTS_OUT:-RELIABILITY.md}"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
export SPILLWAY_FAULTS_REPORT="$work/results.jsonl"
: >"$SPILLWAY_FAULTS_REPORT"

# What runs is what the report names: the commit (and whether the tree differs) as the run starts.
commit=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
dirty=""
[ -n "$(git status --porcelain --untracked-files=no -- . ':!RELIABILITY.md' 2>/dev/null)" ] && dirty=" (with uncommitted changes)"

args=(go test -count=1 -v -timeout 90m "$@" ./faults)
cmd="${args[*]}"
[ -n "$SPILLWAY_FULL" ] && form="full" || form="short"
echo "[faults] $form form: CI=true $cmd"
start=$(date +%s)
set +e
# -v: each fault's counts line and notes are in the log; the JSON lines carry them to the report.
CI=true "${args[@]}" 2>&1 | tee "$work/test.log" | grep --line-buffered -E '^(=== RUN|--- |    --- |PASS|FAIL|ok )|counts:'
status=${PIPESTATUS[0]}
set -e
elapsed=$(( $(date +%s) - start ))

outcome="passed"
[ "$status" -ne 0 ] && outcome="FAILED (exit $status; see the table)"
outcome="$outcome in ${elapsed} s, $form form"

cpu=$(sed -nE 's/^model name\s*:\s*//p' /proc/cpuinfo | head -1 || true)
mem=$(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo)
machine="$(nproc) × ${cpu:-unknown CPU}, $mem RAM, $(uname -sr) (shared with other work while it ran; no timing is asserted)"
es_version=$(curl -fsS "$SPILLWAY_ES_URL/_cat/nodes?h=version" 2>/dev/null | head -1 || true)
pg_version=$("${SPILLWAY_PG_BINDIR:-/usr/lib/postgresql/15/bin}/postgres" --version 2>/dev/null || echo unknown)
java_version=$("${SPILLWAY_ES_JAVA_HOME:-/usr/lib/jvm/java-17-openjdk-amd64}/bin/java" -version 2>&1 | head -1 || true)
go run ./faults/report -in "$SPILLWAY_FAULTS_REPORT" -out "$out" \
  -command "scripts/faults.sh  (CI=true SPILLWAY_FULL=$SPILLWAY_FULL $cmd)" \
  -date "$(date -u '+%Y-%m-%d %H:%M UTC')" \
  -machine "$machine" \
  -outcome "$outcome" \
  -version "Spillway commit $commit$dirty" \
  -version "$(go version)" \
  -version "Elasticsearch ${es_version:-unknown} (private nodes: the same distribution, 512 MiB heap each), $java_version" \
  -version "PostgreSQL: $pg_version"
echo "[faults] wrote $out ($outcome)"
exit "$status"
