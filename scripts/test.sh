#!/usr/bin/env bash
# test.sh — the whole test suite against real services: starts Elasticsearch and PostgreSQL
# (scripts/services.sh up), then go vet and go test -race. Under CI=true a missing service fails
# the run instead of skipping tests. Extra arguments go to `go test` (e.g. -run TestIngest).
# SPILLWAY_FULL=1 runs the long forms of the fault and load suites.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/services.sh up
eval "$(scripts/services.sh env)"

command -v go >/dev/null || { echo "test.sh: Go is required (https://go.dev/dl)" >&2; exit 1; }
echo "[test] $(go version)"
go vet ./...
scripts/compose-check.sh
pkgs=./...
if [ $# -gt 0 ] && [[ "$1" != -* ]]; then pkgs="$1"; shift; fi
go test -race -count=1 -timeout 30m "$@" $pkgs
[ "$pkgs" != ./... ] || scripts/contract.sh # the whole suite: also the API contract (docs/api-contract.md)
echo "[test] passed"
