#!/usr/bin/env bash
# compose-check.sh — validates docker-compose.yml with the Compose CLI itself (`config -q`:
# schema, interpolation, merge keys, depends_on targets, durations). It needs no Docker engine,
# only the CLI: the `docker compose` plugin, a standalone `docker-compose` (v2), or the binary
# named by $COMPOSE. Without any of them it says so and exits 0; the Go test in deploy/ checks
# the file's structure either way.
set -euo pipefail
cd "$(dirname "$0")/.."

compose=()
if [ -n "${COMPOSE:-}" ]; then
  compose=("$COMPOSE")
elif command -v docker >/dev/null && docker compose version >/dev/null 2>&1; then
  compose=(docker compose)
elif command -v docker-compose >/dev/null && ! docker-compose version 2>/dev/null | grep -q 'version 1\.'; then
  # Compose v1 (Python) predates the Compose Specification this file uses.
  compose=(docker-compose)
fi
if [ ${#compose[@]} -eq 0 ]; then
  echo "[compose] no Compose v2 CLI here; skipped \`docker compose config\` (deploy/ tests still check the file)"
  exit 0
fi
echo "[compose] $("${compose[@]}" version 2>&1 | head -n1)"
"${compose[@]}" -f docker-compose.yml config -q
echo "[compose] docker-compose.yml is valid"
