#!/usr/bin/env bash
# run.sh — everything, locally: Elasticsearch and PostgreSQL (scripts/services.sh up), then the
# three binaries with development defaults. Ctrl-C stops the binaries gracefully; the services
# keep running (scripts/services.sh down stops them).
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/services.sh up
eval "$(scripts/services.sh env)"

mkdir -p bin
echo "[run] building"
go build -o bin/ ./cmd/ingest ./cmd/search ./cmd/archiver

# Development defaults: ingest :8080, search :8081, archiver metrics :8082, logs as text. Local
# development runs without API keys on loopback (the services warn about it).
export SPILLWAY_LOG_FORMAT="${SPILLWAY_LOG_FORMAT:-text}"
export SPILLWAY_ELASTICSEARCH_URLS="${SPILLWAY_ES_URL}"
export SPILLWAY_POSTGRES_URL="${SPILLWAY_PG_URL}"
# One development node: one primary per daily index (the default, 8, is sized for the users'
# volume on a cluster; see SCALING.md).
export SPILLWAY_ELASTICSEARCH_SHARDS="${SPILLWAY_ELASTICSEARCH_SHARDS:-1}"
pids=()
start() {
  local name="$1" addr="$2"; shift 2
  SPILLWAY_HTTP_ADDR="$addr" "bin/$name" "$@" > >(sed -u "s/^/[$name] /") 2>&1 &
  pids+=($!)
}
stop() {
  trap - INT TERM
  echo "[run] stopping (SIGTERM, graceful)"
  kill -TERM "${pids[@]}" 2>/dev/null || true
  wait "${pids[@]}" 2>/dev/null || true
  echo "[run] stopped; services keep running (scripts/services.sh down stops them)"
  exit 0
}
trap stop INT TERM

start ingest 127.0.0.1:8080
start search 127.0.0.1:8081
start archiver 127.0.0.1:8082 run

for port in 8080 8081 8082; do
  for _ in $(seq 1 100); do curl -fsS -o /dev/null "http://127.0.0.1:$port/healthz" 2>/dev/null && break; sleep 0.1; done
done

cat <<MSG
[run] Spillway is up:
  ingest    http://127.0.0.1:8080   POST /api/v1/events      (metrics: /metrics)
  search    http://127.0.0.1:8081   GET  /api/v1/events      (stream: /api/v1/events/stream)
  archiver  http://127.0.0.1:8082   /metrics /healthz /readyz
  elasticsearch ${SPILLWAY_ES_URL}    postgresql ${SPILLWAY_PG_URL//:spillway@/:***@}

Try:
  curl -s -XPOST 'http://127.0.0.1:8080/api/v1/events?wait=searchable' -H 'Content-Type: application/json' \\
       -d '{"clientId":"tour-alice","type":"click","payload":{"button":"buy"}}'
  curl -s 'http://127.0.0.1:8081/api/v1/events?clientId=tour-alice'

Ctrl-C stops the three binaries.
MSG
wait "${pids[@]}"
