#!/bin/sh
# kibana-import.sh — loads Spillway's Kibana saved objects (data view "Spillway events" on
# events-*, the saved search "Spillway: events of one client", the dashboard "Spillway: events
# overview" and its Lens panels) through Kibana's saved objects API, after waiting for Kibana.
#
#   scripts/kibana-import.sh [FILE]     # default: mappings/kibana/saved-objects.ndjson
#
# KIBANA_URL   Kibana's base URL (default http://127.0.0.1:5601; add /s/<space> for a space)
# KIBANA_AUTH  user:password for a Kibana with security on (optional)
# KIBANA_WAIT  seconds to wait for Kibana to report "available" (default 300)
# KIBANA_POLL  seconds between two looks while waiting (default 5)
#
# Safe to rerun: objects keep their ids and overwrite=true replaces them. POSIX sh and curl only,
# so the same script runs in docker-compose's curl image and on a workstation.
set -eu

KIBANA_URL=${KIBANA_URL:-http://127.0.0.1:5601}
KIBANA_URL=${KIBANA_URL%/}
KIBANA_WAIT=${KIBANA_WAIT:-300}
KIBANA_POLL=${KIBANA_POLL:-5}
file=${1:-$(dirname "$0")/../mappings/kibana/saved-objects.ndjson}

if [ ! -r "$file" ]; then
  echo "kibana-import: cannot read $file" >&2
  exit 2
fi
case "$file" in
  *.ndjson) ;;
  *) echo "kibana-import: $file: Kibana only imports files named *.ndjson" >&2; exit 2 ;;
esac

# The positional parameters become curl's common options (the file name is saved above).
set -- -sS --connect-timeout 5 --max-time 60
if [ -n "${KIBANA_AUTH:-}" ]; then
  set -- "$@" -u "$KIBANA_AUTH"
fi

echo "kibana-import: waiting for Kibana at $KIBANA_URL (up to ${KIBANA_WAIT}s)"
start=$(date +%s)
until curl "$@" -f "$KIBANA_URL/api/status" 2>/dev/null | grep -q '"level":"available"'; do
  if [ $(( $(date +%s) - start )) -ge "$KIBANA_WAIT" ]; then
    echo "kibana-import: Kibana at $KIBANA_URL not available after ${KIBANA_WAIT}s" >&2
    exit 1
  fi
  sleep "$KIBANA_POLL"
done

resp=$(curl "$@" -X POST "$KIBANA_URL/api/saved_objects/_import?overwrite=true" \
  -H 'kbn-xsrf: spillway' --form "file=@$file") || {
  echo "kibana-import: import request failed" >&2
  exit 1
}
case "$resp" in
  *'"success":true'*)
    count=$(printf '%s' "$resp" | sed -n 's/.*"successCount":\([0-9]*\).*/\1/p')
    echo "kibana-import: imported ${count:-?} saved objects from $file"
    ;;
  *)
    echo "kibana-import: Kibana refused the import: $resp" >&2
    exit 1
    ;;
esac
