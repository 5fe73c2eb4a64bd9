#!/usr/bin/env bash
# compose-check.sh — validates docker-compose.yml with the Compose CLI itself (`config -q`:
# schema, interpolation, merge keys, depends_on targets, durations). It needs no Docker engine,
# only the CLI: the `docker compose` plugin, a standalone `docker-compose` (v2), or the binary
# named by $COMPOSE.
#
# Without one, under CI=true (or SPILLWAY_COMPOSE_INSTALL=1) it builds Compose v2 from its Go
# module (pinned below) into a cache directory and uses that; if that fails, the check fails.
# Debian 12 packages only Compose v1, which predates the Compose Specification this file uses,
# and `go install github.com/docker/compose/v2/cmd@VERSION` is refused because Compose's go.mod
# has exclude directives, so the module is downloaded and built in a copy of itself (its own
# go.mod and go.sum then apply). The first build takes a few minutes; later runs reuse it.
# Outside CI, without a CLI, it says how to get one and exits 0 (the Go test in deploy/ checks
# the file's structure either way).
set -euo pipefail
cd "$(dirname "$0")/.."

compose_version=v2.40.3
cache="${SPILLWAY_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/spillway}/docker-compose-$compose_version"

# install_compose builds Compose v2 into $cache/docker-compose.
install_compose() {
  command -v go >/dev/null || { echo "[compose] Go is required to build Compose" >&2; return 1; }
  echo "[compose] building Compose $compose_version into $cache (once; a few minutes)"
  local work dir
  work=$(mktemp -d)
  trap 'rm -rf "$work"' RETURN
  dir=$(go mod download -json "github.com/docker/compose/v2@$compose_version" |
    sed -nE 's/^[[:space:]]*"Dir": "(.*)",?$/\1/p')
  [ -n "$dir" ] && [ -d "$dir" ] || { echo "[compose] go mod download gave no module directory" >&2; return 1; }
  cp -r "$dir" "$work/src"
  chmod -R u+w "$work/src"
  mkdir -p "$cache"
  (cd "$work/src" && GOFLAGS=-mod=mod go build -trimpath \
    -ldflags "-w -X github.com/docker/compose/v2/internal.Version=$compose_version" \
    -o "$cache/docker-compose.tmp" ./cmd)
  mv "$cache/docker-compose.tmp" "$cache/docker-compose"
}

compose=()
if [ -n "${COMPOSE:-}" ]; then
  compose=("$COMPOSE")
elif command -v docker >/dev/null && docker compose version >/dev/null 2>&1; then
  compose=(docker compose)
elif command -v docker-compose >/dev/null && ! docker-compose version 2>/dev/null | grep -q 'version 1\.'; then
  # Compose v1 (Python) predates the Compose Specification this file uses.
  compose=(docker-compose)
elif [ -x "$cache/docker-compose" ]; then
  compose=("$cache/docker-compose")
elif [ "${CI:-}" = true ] || [ -n "${SPILLWAY_COMPOSE_INSTALL:-}" ]; then
  if ! install_compose; then
    echo "[compose] FAIL: no Compose v2 CLI, and building one failed" >&2
    exit 1
  fi
  compose=("$cache/docker-compose")
fi
if [ ${#compose[@]} -eq 0 ]; then
  echo "[compose] no Compose v2 CLI here; skipped \`docker compose config\` (deploy/ tests still check the file;" \
    "SPILLWAY_COMPOSE_INSTALL=1 $0 builds one)"
  exit 0
fi
echo "[compose] $("${compose[@]}" version 2>&1 | head -n1)"
"${compose[@]}" -f docker-compose.yml config -q
echo "[compose] docker-compose.yml is valid"
