#!/bin/sh
# heroku-web.sh — the `web` process of a Heroku app. A Heroku app has one web process type, and
# Spillway has two HTTP services, so each runs in its own app built from this one repository;
# SPILLWAY_ROLE picks the binary (docs/heroku.md). exec: the service itself receives Heroku's
# SIGTERM and drains within http.shutdown_grace (25 s) before Heroku's SIGKILL at 30 s. It
# listens on $PORT (the configuration loader reads it).
set -eu
case "${SPILLWAY_ROLE:-}" in
  ingest | search)
    exec "$SPILLWAY_ROLE" "$@"
    ;;
  *)
    echo "heroku-web: SPILLWAY_ROLE is '${SPILLWAY_ROLE:-}'; set it to ingest or search (heroku config:set SPILLWAY_ROLE=ingest)" >&2
    exit 2
    ;;
esac
