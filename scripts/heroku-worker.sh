#!/bin/sh
# heroku-worker.sh — the `worker` process of the ingest app: the archiver. Heroku config vars
# belong to the app, so web (ingest) and worker (archiver) dynos see the same ones; to give each
# its own Elasticsearch user (docs/elasticsearch.md: spillway_ingest cannot delete indices,
# spillway_archiver can), set ARCHIVER_ELASTICSEARCH_URL (credentials in the URL) or
# ARCHIVER_ELASTICSEARCH_API_KEY, and this launcher hands them to the archiver alone. exec: the
# archiver itself receives Heroku's SIGTERM and finishes its batch within http.shutdown_grace.
set -eu
if [ -n "${ARCHIVER_ELASTICSEARCH_URL:-}" ]; then
  export SPILLWAY_ELASTICSEARCH_URLS="$ARCHIVER_ELASTICSEARCH_URL"
  # The URL carries the archiver's credentials: ingest's API key must not be sent with it.
  unset SPILLWAY_ELASTICSEARCH_API_KEY
fi
if [ -n "${ARCHIVER_ELASTICSEARCH_API_KEY:-}" ]; then
  export SPILLWAY_ELASTICSEARCH_API_KEY="$ARCHIVER_ELASTICSEARCH_API_KEY"
fi
exec archiver run "$@"
