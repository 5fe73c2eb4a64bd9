#!/usr/bin/env bash
# keygen.sh NAME ROLE [CLIENT_ID ...] — creates an API key for Spillway.
# Prints the key once (hand it to the client; it is not stored anywhere) and the entry for the
# keys file (auth.keys_file), which holds only the key's SHA-256 hash.
set -euo pipefail
if [ $# -lt 2 ]; then
  echo "usage: $0 NAME ingest|read|admin [CLIENT_ID ...]" >&2
  exit 2
fi
name="$1" role="$2"; shift 2
case "$role" in ingest|read|admin) ;; *) echo "role must be ingest, read or admin" >&2; exit 2 ;; esac
key="spw_$(head -c 32 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=\n')"
hash="sha256:$(printf '%s' "$key" | sha256sum | cut -d' ' -f1)"
echo "key (give to the client, shown once): $key"
echo
echo "# keys file entry (auth.keys_file):"
echo "  - name: $name"
echo "    role: $role"
echo "    hash: $hash"
if [ $# -gt 0 ]; then
  printf '    client_ids: ['; first=1
  for c in "$@"; do [ $first = 1 ] || printf ', '; printf '"%s"' "$c"; first=0; done; echo ']'
fi
echo
clients=$(IFS=,; echo "$*")
echo "# or inline (auth.keys / SPILLWAY_AUTH_KEYS, entries separated by ';'):"
echo "$name:$role:$hash${clients:+:$clients}"
