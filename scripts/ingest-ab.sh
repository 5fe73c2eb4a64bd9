#!/usr/bin/env bash
# ingest-ab.sh: acknowledgement latency of ingest at two revisions, in one run, against the
# running development services (scripts/services.sh up). A quick A/B for changes to ingest's
# write path on a shared machine, where only figures of the same run compare; the full
# benchmark (scripts/bench.sh, private stores) is what BENCHMARKS.md quotes.
#
#   scripts/ingest-ab.sh [--old REV] [--rates "500 1000 2000"] [--rtts "0 5ms"] [--duration 10s] [--rounds 2]
#                        [--events 1] [--size 5120]
#
# For every round, round trip and rate (requests/s), the old and the new ingest (order
# alternating) each get a fresh process and index prefix, an unrecorded warm-up, then an
# open-loop load of requests of --events events of --size bytes (loadgen run). It prints one
# line per run: p50/p99/max of all answers, p99 of the 201s and of the refusals, statuses, and
# from ingest's /metrics the events per bulk request and the concurrency limit.
# The new ingest is the work tree's; the old one is REV (default: main) built from git archive.
set -euo pipefail
cd "$(dirname "$0")/.."
old=main rates="500 1000 2000" rtts="0 5ms" duration=10s rounds=2 events=1 size=5120
while [ $# -gt 0 ]; do
  case "$1" in
    --old) old=$2; shift 2 ;;
    --rates) rates=$2; shift 2 ;;
    --rtts) rtts=$2; shift 2 ;;
    --duration) duration=$2; shift 2 ;;
    --rounds) rounds=$2; shift 2 ;;
    --events) events=$2; shift 2 ;;
    --size) size=$2; shift 2 ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
  esac
done
eval "$(scripts/services.sh env)"
es=${SPILLWAY_ES_URL:-http://127.0.0.1:9200}
work=$(mktemp -d /tmp/ingest-ab.XXXXXX)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  curl -s -XDELETE "$es/ingestab*?expand_wildcards=all" >/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

mkdir -p "$work/old"
git archive "$old" | tar -x -C "$work/old"
(cd "$work/old" && go build -o "$work/ingest-old" ./cmd/ingest)
go build -o "$work/ingest-new" ./cmd/ingest
go build -o "$work/loadgen" ./cmd/loadgen

freeport() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
waitfor() { # url what: until it answers 2xx, at most 60 s
  for _ in $(seq 600); do
    curl -sf -m 1 "$1" >/dev/null && return 0
    sleep 0.1
  done
  echo "$2 did not come up" >&2
  return 1
}

declare -A esurl
for rtt in $rtts; do
  if [ "$rtt" = 0 ]; then esurl[$rtt]=$es; continue; fi
  port=$(freeport)
  "$work/loadgen" proxy --listen "127.0.0.1:$port" --target "${es#http://}" --rtt "$rtt" >"$work/proxy-$rtt.log" 2>&1 &
  pids+=($!)
  esurl[$rtt]="http://127.0.0.1:$port"
  waitfor "${esurl[$rtt]}/_cluster/health" "the $rtt proxy"
done

metric() { # name label-filter file: sum of the series of that name whose labels contain the filter
  awk -v n="$1" -v f="$2" '{ c = substr($1, length(n) + 1, 1) }
    substr($1, 1, length(n)) == n && (c == "" || c == "{") && (f == "" || index($1, f)) { s += $2 }
    END { printf "%.0f", s }' "$3"
}

run=0
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)"
for r in $(seq "$rounds"); do
  for rtt in $rtts; do
    for rate in $rates; do
      order="old new"
      [ $(( (r + run) % 2 )) -eq 0 ] && order="new old"
      for which in $order; do
        run=$((run + 1))
        port=$(freeport) admin=$(freeport)
        prefix=$(printf 'ingestab%03d' "$run")
        SPILLWAY_HTTP_ADDR="127.0.0.1:$port" SPILLWAY_HTTP_ADMIN_ADDR="127.0.0.1:$admin" \
          SPILLWAY_ELASTICSEARCH_URLS="${esurl[$rtt]}" SPILLWAY_ELASTICSEARCH_INDEX_PREFIX="$prefix" \
          SPILLWAY_RATELIMIT_INGEST_EVENTS_PER_SECOND=0 SPILLWAY_LOG_LEVEL=warn \
          "$work/ingest-$which" >"$work/$prefix.log" 2>&1 &
        pid=$!
        pids+=($pid)
        waitfor "http://127.0.0.1:$port/readyz" "ingest-$which" || { tail -3 "$work/$prefix.log" >&2; exit 1; }
        "$work/loadgen" run --ingest "http://127.0.0.1:$port" --duration 3s --rate "$rate" --event-size "$size" \
          --events-per-request "$events" --concurrency 1000 >/dev/null
        curl -s "http://127.0.0.1:$admin/metrics" >"$work/m0"
        "$work/loadgen" run --ingest "http://127.0.0.1:$port" --duration "$duration" --rate "$rate" --event-size "$size" \
          --events-per-request "$events" --concurrency 1000 --json >"$work/res.json"
        curl -s "http://127.0.0.1:$admin/metrics" >"$work/m1"
        kill "$pid"; wait "$pid" 2>/dev/null || true
        ev=$(( $(metric spillway_ingest_events_total accepted "$work/m1") - $(metric spillway_ingest_events_total accepted "$work/m0") ))
        bulks=$(( $(metric spillway_ingest_bulk_requests_total "" "$work/m1") - $(metric spillway_ingest_bulk_requests_total "" "$work/m0") ))
        limit=$(metric spillway_ingest_bulk_concurrency_limit "" "$work/m1")
        python3 - "$work/res.json" "$which" "$rtt" "$rate" "$r" "$ev" "$bulks" "$limit" <<'EOF'
import json, sys
res, which, rtt, rate, rnd, ev, bulks, limit = sys.argv[1:]
d = json.load(open(res))
l = d["latency_ms"]
per = int(ev) / int(bulks) if int(bulks) else 0
lim = limit if which == "new" else "-"
by = {k: f"{v['p99']:.1f}" for k, v in (d.get("latency_by_status_ms") or {}).items()}
print(f"round {rnd} rtt {rtt:>4} rate {rate:>5}/s {which}: p50 {l['p50']:6.1f} p90 {l['p90']:6.1f} p99 {l['p99']:7.1f} max {l['max']:7.1f} ms  "
      f"p99 by status {by}  statuses {d['status_counts']} unsent {d.get('unsent', 0)}  events/bulk {per:5.1f} (bulks {bulks})  limit {lim}")
EOF
        curl -s -XDELETE "$es/$prefix-*?expand_wildcards=all" >/dev/null || true
        curl -s -XDELETE "$es/_index_template/$prefix-template" >/dev/null || true
      done
    done
  done
done
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)"
