#!/usr/bin/env bash
# contract.sh — the API contract checked by an independent tool: Schemathesis (pinned, from PyPI,
# in a cached virtual environment) runs every operation of api/openapi.yaml, with all its checks and
# a stateful phase, against ingest and search built from this tree and started on free loopback
# ports, on the real Elasticsearch (scripts/services.sh) with an index prefix of their own. Any
# failure fails the script. See docs/api-contract.md.
#
# The services run keyed (an admin API key; the auth checks also send none and wrong ones). The
# loopback mode without keys is deliberately not fuzzed: the document requires a key on every API
# operation, which that development mode waives.
#
# Environment: SPILLWAY_CONTRACT_EXAMPLES (max examples per operation and phase, default 25),
# SPILLWAY_CONTRACT_SEED (default 1). Extra arguments go to `schemathesis run`.
set -euo pipefail
cd "$(dirname "$0")/.."

# The one place the Schemathesis version is pinned; requirements.txt pins everything it needs.
ST_VERSION=4.32.5
REQS=scripts/contract/requirements.txt
grep -qx "schemathesis==$ST_VERSION" "$REQS" || { echo "[contract] $REQS does not pin schemathesis==$ST_VERSION" >&2; exit 1; }

log() { printf '[contract] %s\n' "$*" >&2; }

# The virtual environment is keyed by the requirements, so a version change builds a new one and a
# re-run reuses it. A marker written last tells a complete install from an interrupted one.
CACHE="${XDG_CACHE_HOME:-$HOME/.cache}/spillway"
VENV="$CACHE/venv-schemathesis-$(sha256sum "$REQS" | cut -c1-12)"
if [ ! -f "$VENV/.complete" ]; then
  command -v python3 >/dev/null || { log "python3 (3.10 or newer) is required"; exit 1; }
  python3 -c 'import sys; sys.exit(sys.version_info < (3, 10))' || { log "python3 3.10 or newer is required, found $(python3 --version)"; exit 1; }
  rm -rf "$VENV"
  mkdir -p "$CACHE"
  if ! python3 -m venv "$VENV" 2>/dev/null; then
    # Debian's python3 ships venv separately.
    [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null || { log "python3 -m venv failed: install python3-venv"; exit 1; }
    log "python3 -m venv failed; installing python3-venv"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null
    rm -rf "$VENV"
    python3 -m venv "$VENV"
  fi
  log "installing Schemathesis $ST_VERSION into $VENV"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check --no-input -r "$REQS"
  touch "$VENV/.complete"
fi
"$VENV/bin/schemathesis" --version >/dev/null

scripts/services.sh up
eval "$(scripts/services.sh env)"
command -v go >/dev/null || { log "Go is required (https://go.dev/dl)"; exit 1; }

work="$(mktemp -d)"
prefix="contract$(head -c 4 /dev/urandom | od -An -tx1 | tr -d ' \n')"
pids=()
cleanup() {
  local status=$?
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  # The run's indices and template, as every test removes its own.
  curl -sS -o /dev/null -X DELETE "$SPILLWAY_ES_URL/$prefix-*?expand_wildcards=all&allow_no_indices=true" || true
  curl -sS -o /dev/null -X DELETE "$SPILLWAY_ES_URL/_index_template/$prefix-template,$prefix.retention-template" || true
  if [ "$status" != 0 ]; then
    for f in "$work"/*.log; do [ -f "$f" ] && { echo "--- $(basename "$f") (last 40 lines)"; tail -n 40 "$f"; }; done >&2
  fi
  rm -rf "$work"
}
trap cleanup EXIT

log "building ingest and search"
go build -o "$work/" ./cmd/ingest ./cmd/search

key="spw_$(head -c 32 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=\n')"
hash="sha256:$(printf '%s' "$key" | sha256sum | cut -d' ' -f1)"
cursor_key="$(head -c 24 /dev/urandom | base64 | tr -d '=\n')"

# start NAME VAR: runs the binary on a free loopback port and sets VAR to its base URL once it is
# ready. (Not in a $(...) subshell: pids must reach cleanup.)
start() {
  local name="$1" url=""
  env SPILLWAY_HTTP_ADDR=127.0.0.1:0 \
    SPILLWAY_ELASTICSEARCH_URLS="$SPILLWAY_ES_URL" SPILLWAY_ELASTICSEARCH_INDEX_PREFIX="$prefix" \
    SPILLWAY_AUTH_KEYS="contract:admin:$hash" SPILLWAY_SEARCH_CURSOR_KEY="$cursor_key" \
    "$work/$name" >"$work/$name.log" 2>&1 &
  pids+=($!)
  for _ in $(seq 1 300); do
    url="$(sed -n 's/.*"msg":"listening".*"addr":"\([0-9.:]*\)".*/http:\/\/\1/p' "$work/$name.log" | head -n 1)"
    if [ -n "$url" ] && curl -fsS -o /dev/null "$url/readyz" 2>/dev/null; then
      printf -v "$2" '%s' "$url"
      return 0
    fi
    kill -0 "${pids[-1]}" 2>/dev/null || break
    sleep 0.1
  done
  log "$name did not become ready"
  return 1
}
start ingest ingest_url
start search search_url
log "ingest $ingest_url, search $search_url, index prefix $prefix"

export SPILLWAY_CONTRACT_INGEST="$ingest_url" SPILLWAY_CONTRACT_SEARCH="$search_url" SPILLWAY_CONTRACT_KEY="$key"
export SCHEMATHESIS_HOOKS=hooks PYTHONPATH="$PWD/scripts/contract"
# The document as ingest serves it; each operation goes to its own service (servers variables).
# Run in the work directory, where Schemathesis and Hypothesis leave their caches. timeout: a
# guard against a hang, far above a normal run (about a minute).
start_s=$SECONDS
(cd "$work" && timeout --signal=INT 900 "$VENV/bin/schemathesis" --config-file "$OLDPWD/scripts/contract/schemathesis.toml" \
  run "$ingest_url/openapi.yaml" --checks all --max-examples "${SPILLWAY_CONTRACT_EXAMPLES:-25}" \
  --seed "${SPILLWAY_CONTRACT_SEED:-1}" --request-timeout 10 --workers 1 --no-color "$@")
log "passed in $((SECONDS - start_s)) s"
