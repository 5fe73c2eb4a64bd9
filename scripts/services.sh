#!/usr/bin/env bash
# services.sh up|down|status|env — real Elasticsearch and PostgreSQL on loopback, without Docker.
#
# Elasticsearch: the official test distribution zip from Maven Central (no bundled JDK, so we point
# ES_JAVA_HOME at an installed JDK), run as a dedicated non-root user, single node, 1 GiB heap.
# PostgreSQL: Debian's packages (installed if missing), our own cluster in the state directory.
#
# If SPILLWAY_ES_URL / ELASTICSEARCH_URL or SPILLWAY_PG_URL / DATABASE_URL are set, those services
# are used as they are and nothing is started for them. `down` stops only what `up` started.
set -euo pipefail

# The one place the Elasticsearch version is pinned.
ES_VERSION="${SPILLWAY_ES_VERSION:-8.19.21}"
ES_PORT="${SPILLWAY_ES_PORT:-9200}"
ES_TRANSPORT_PORT="${SPILLWAY_ES_TRANSPORT_PORT:-9300}"
ES_HEAP="${SPILLWAY_ES_HEAP:-1g}"
PG_PORT="${SPILLWAY_PG_PORT:-5432}"
ES_USER="${SPILLWAY_ES_USER:-spillway-es}"

if [ "$(id -u)" = 0 ]; then
  STATE="${SPILLWAY_STATE_DIR:-/var/tmp/spillway}"
else
  STATE="${SPILLWAY_STATE_DIR:-${XDG_STATE_HOME:-$HOME/.local/state}/spillway}"
fi
STATE="$(realpath -m "$STATE")" # absolute: commands run as another user start in /
CACHE="${XDG_CACHE_HOME:-$HOME/.cache}/spillway"
ES_HOME="$STATE/elasticsearch-$ES_VERSION"
ES_DATA="$STATE/es/data"
ES_LOGS="$STATE/es/logs"
ES_PID="$STATE/es/es.pid"
PG_DATA="$STATE/pg/data"
PG_LOG="$STATE/pg/postgresql.log"
PG_RUN="$STATE/pg/run"

ES_URL_DEFAULT="http://127.0.0.1:$ES_PORT"
PG_URL_DEFAULT="postgres://spillway:spillway@127.0.0.1:$PG_PORT/spillway?sslmode=disable"
EXT_ES_URL="${SPILLWAY_ES_URL:-${ELASTICSEARCH_URL:-}}"
EXT_PG_URL="${SPILLWAY_PG_URL:-${DATABASE_URL:-}}"

log() { printf '[services] %s\n' "$*" >&2; }
die() { printf '[services] error: %s\n' "$*" >&2; exit 1; }

# as_user USER CMD... runs CMD as USER when we are root, as ourselves otherwise. As another user
# it runs in /: the caller's directory (a clone in a private mktemp dir, say) may be closed to
# that user, and PostgreSQL's tools then complain that they cannot change into it.
as_user() {
  local u="$1"; shift
  if [ "$(id -u)" = 0 ]; then (cd / && runuser -u "$u" -- "$@"); else "$@"; fi
}

redact() { sed -E 's#(://[^:/@]+):[^@]*@#\1:***@#'; }

find_java() {
  # ES 8 needs Java 17+; ES 9 needs 21+. Prefer an explicit choice, then the newest installed JDK.
  # ES 8.19 is tested here on Debian's OpenJDK 17, its documented minimum; 9.x takes the newest JDK.
  local want=17 prefer="/usr/lib/jvm/java-17-openjdk-amd64 /usr/lib/jvm/java-21-openjdk-amd64"
  case "$ES_VERSION" in 9.*) want=21 prefer="/usr/lib/jvm/temurin-25-jdk-amd64 /usr/lib/jvm/java-21-openjdk-amd64" ;; esac
  local cand
  for cand in "${SPILLWAY_ES_JAVA_HOME:-}" "${ES_JAVA_HOME:-}" $prefer /usr/lib/jvm/*; do
    [ -n "$cand" ] && [ -x "$cand/bin/java" ] || continue
    local v
    v=$("$cand/bin/java" -version 2>&1 | sed -nE 's/.*version "([0-9]+).*/\1/p' | head -1)
    if [ -n "$v" ] && [ "$v" -ge "$want" ]; then echo "$cand"; return 0; fi
  done
  return 1
}

# Any answer with Elasticsearch's product header counts as "up": the test zip lacks the rest-root
# module, so `GET /` answers 405 there and the version is read from the nodes info API instead.
es_up_at() { curl -sS -m 2 -o /dev/null -D - "$1/_nodes/_local" 2>/dev/null | grep -qi '^x-elastic-product: Elasticsearch'; }
es_version() { curl -fsS -m 5 "$1/_nodes/_local?filter_path=nodes.*.version" 2>/dev/null | sed -nE 's/.*"version":"([^"]+)".*/\1/p'; }

es_health_ok() {
  local st
  st=$(curl -fsS -m 5 "$1/_cluster/health?wait_for_status=yellow&timeout=1s" 2>/dev/null \
        | sed -nE 's/.*"status":"([a-z]+)".*/\1/p')
  [ "$st" = green ] || [ "$st" = yellow ]
}

ensure_es_user() {
  [ "$(id -u)" = 0 ] || return 0
  id "$ES_USER" >/dev/null 2>&1 && return 0
  log "creating system user $ES_USER (Elasticsearch refuses to run as root)"
  useradd --system --no-create-home --home-dir "$STATE" --shell /usr/sbin/nologin "$ES_USER"
}

fetch_es() {
  local zip="$CACHE/elasticsearch-$ES_VERSION.zip"
  if [ ! -s "$zip" ]; then
    command -v mvn >/dev/null || die "mvn is needed to fetch Elasticsearch from Maven Central (apt-get install maven)"
    mkdir -p "$CACHE"
    log "fetching org.elasticsearch.distribution.integ-test-zip:elasticsearch:$ES_VERSION:zip from Maven Central"
    mvn -q -B dependency:copy \
      -Dartifact="org.elasticsearch.distribution.integ-test-zip:elasticsearch:$ES_VERSION:zip" \
      -DoutputDirectory="$CACHE" >&2 || die "could not fetch Elasticsearch $ES_VERSION"
  fi
  if [ ! -x "$ES_HOME/bin/elasticsearch" ]; then
    log "unpacking Elasticsearch $ES_VERSION into $ES_HOME"
    local tmp="$STATE/.unpack.$$"
    rm -rf "$tmp"; mkdir -p "$tmp"
    command -v unzip >/dev/null || install_debs unzip
    unzip -q "$zip" -d "$tmp"
    rm -rf "$ES_HOME"
    mv "$tmp/elasticsearch-$ES_VERSION" "$ES_HOME"
    rm -rf "$tmp"
  fi
}

install_debs() {
  [ "$(id -u)" = 0 ] || die "please install: $*"
  log "installing Debian packages: $*"
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -q "$@" >/dev/null 2>&1 || { apt-get update -q >/dev/null 2>&1; apt-get install -y -q "$@" >/dev/null; }
}

write_es_config() {
  # es_node_config HOME DATA LOGS HTTP_PORT TRANSPORT_PORT: a single-node development config.
  local cfg="$ES_HOME/config/elasticsearch.yml"
  cat >"$cfg" <<YML
# Written by scripts/services.sh — a single-node development cluster on loopback.
cluster.name: spillway-dev
node.name: spillway-dev-1
discovery.type: single-node
network.host: 127.0.0.1
http.port: $ES_PORT
transport.port: $ES_TRANSPORT_PORT
path.data: $ES_DATA
path.logs: $ES_LOGS
xpack.security.enabled: false
cluster.routing.allocation.disk.threshold_enabled: false
action.destructive_requires_name: false
YML
}

es_start() {
  if [ -n "$EXT_ES_URL" ]; then
    es_health_ok "$EXT_ES_URL" || die "Elasticsearch at $(echo "$EXT_ES_URL" | redact) is not healthy"
    log "Elasticsearch: using $(echo "$EXT_ES_URL" | redact) (not started by us)"
    return 0
  fi
  if [ -f "$ES_PID" ] && kill -0 "$(cat "$ES_PID")" 2>/dev/null; then
    es_wait "$ES_URL_DEFAULT" || die "Elasticsearch (pid $(cat "$ES_PID")) runs but is not healthy; logs in $ES_LOGS"
    log "Elasticsearch: already running at $ES_URL_DEFAULT (pid $(cat "$ES_PID")), logs in $ES_LOGS"
    return 0
  fi
  if es_up_at "$ES_URL_DEFAULT"; then
    es_health_ok "$ES_URL_DEFAULT" || die "something answers on $ES_URL_DEFAULT but is not a healthy Elasticsearch"
    log "Elasticsearch: found one already running at $ES_URL_DEFAULT (not started by us)"
    return 0
  fi
  local java
  java=$(find_java) || die "no JDK found for Elasticsearch $ES_VERSION (set SPILLWAY_ES_JAVA_HOME)"
  ensure_es_user
  mkdir -p "$STATE" "$ES_DATA" "$ES_LOGS"
  fetch_es
  write_es_config
  if [ "$(id -u)" = 0 ]; then
    chmod 755 "$STATE"
    chown -R "$ES_USER" "$ES_HOME" "$STATE/es"
  fi
  log "starting Elasticsearch $ES_VERSION with $java (heap $ES_HEAP)"
  rm -f "$ES_PID"
  as_user "$ES_USER" env ES_JAVA_HOME="$java" ES_JAVA_OPTS="-Xms$ES_HEAP -Xmx$ES_HEAP" \
    ES_PATH_CONF="$ES_HOME/config" "$ES_HOME/bin/elasticsearch" -d -p "$ES_PID" \
    >"$ES_LOGS/startup.out" 2>&1 || { tail -n 30 "$ES_LOGS/startup.out" >&2; die "Elasticsearch failed to start; logs in $ES_LOGS"; }
  es_wait "$ES_URL_DEFAULT" || die "Elasticsearch did not become healthy; logs in $ES_LOGS"
  log "Elasticsearch: $(es_version "$ES_URL_DEFAULT") at $ES_URL_DEFAULT, logs in $ES_LOGS"
}

es_wait() {
  local url="$1" i
  for i in $(seq 1 180); do
    es_health_ok "$url" && return 0
    if [ -f "$ES_PID" ] && ! kill -0 "$(cat "$ES_PID")" 2>/dev/null; then
      tail -n 30 "$ES_LOGS"/*.log >&2 2>/dev/null || true
      return 1
    fi
    sleep 1
  done
  return 1
}

es_stop() {
  if [ -f "$ES_PID" ]; then
    local pid; pid=$(cat "$ES_PID")
    if kill -0 "$pid" 2>/dev/null; then
      log "stopping Elasticsearch (pid $pid)"
      kill "$pid"
      local i; for i in $(seq 1 60); do kill -0 "$pid" 2>/dev/null || break; sleep 1; done
      kill -0 "$pid" 2>/dev/null && kill -9 "$pid" 2>/dev/null || true
    fi
    rm -f "$ES_PID"
  fi
}

pg_bin() {
  local d
  for d in "${SPILLWAY_PG_BINDIR:-}" $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V -r); do
    [ -n "$d" ] && [ -x "$d/pg_ctl" ] && { echo "$d"; return 0; }
  done
  return 1
}

pg_start() {
  if [ -n "$EXT_PG_URL" ]; then
    psql "$EXT_PG_URL" -qAtc 'select 1' >/dev/null 2>&1 || die "PostgreSQL at $(echo "$EXT_PG_URL" | redact) does not answer"
    log "PostgreSQL: using $(echo "$EXT_PG_URL" | redact) (not started by us)"
    return 0
  fi
  local bin
  bin=$(pg_bin) || { install_debs postgresql postgresql-client; bin=$(pg_bin) || die "PostgreSQL binaries not found"; }
  if [ -f "$PG_DATA/postmaster.pid" ] && as_user postgres "$bin/pg_ctl" -D "$PG_DATA" status >/dev/null 2>&1; then
    log "PostgreSQL: already running at 127.0.0.1:$PG_PORT, log in $PG_LOG"
    return 0
  fi
  if "$bin/pg_isready" -q -h 127.0.0.1 -p "$PG_PORT"; then
    psql "$PG_URL_DEFAULT" -qAtc 'select 1' >/dev/null 2>&1 \
      || die "a PostgreSQL not started by us runs on 127.0.0.1:$PG_PORT without the spillway role/database; stop it or set SPILLWAY_PG_URL"
    log "PostgreSQL: found one already running at 127.0.0.1:$PG_PORT (not started by us)"
    return 0
  fi
  mkdir -p "$STATE/pg" "$PG_RUN"
  [ "$(id -u)" = 0 ] && chown -R postgres "$STATE/pg"
  if [ ! -f "$PG_DATA/PG_VERSION" ]; then
    log "initialising a PostgreSQL cluster in $PG_DATA"
    local pw="$STATE/pg/.pw"; echo postgres >"$pw"; [ "$(id -u)" = 0 ] && chown postgres "$pw"
    as_user postgres "$bin/initdb" -D "$PG_DATA" -U postgres --auth-local=trust --auth-host=scram-sha-256 \
      --pwfile="$pw" -E UTF8 --locale=C.UTF-8 >/dev/null
    rm -f "$pw"
    cat >>"$PG_DATA/postgresql.conf" <<CONF
# scripts/services.sh
listen_addresses = '127.0.0.1'
port = $PG_PORT
unix_socket_directories = '$PG_RUN'
max_connections = ${SPILLWAY_PG_MAX_CONNECTIONS:-200}
shared_buffers = 512MB
wal_buffers = 16MB
max_wal_size = 4GB
checkpoint_timeout = 15min
CONF
  fi
  log "starting PostgreSQL ($bin)"
  as_user postgres "$bin/pg_ctl" -D "$PG_DATA" -l "$PG_LOG" -w -t 60 start >/dev/null \
    || { tail -n 20 "$PG_LOG" >&2; die "PostgreSQL failed to start"; }
  as_user postgres "$bin/psql" -h "$PG_RUN" -p "$PG_PORT" -U postgres -qAt -v ON_ERROR_STOP=1 postgres >/dev/null <<'SQL'
SELECT 'CREATE ROLE spillway LOGIN PASSWORD ''spillway''' WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname='spillway')\gexec
SELECT 'CREATE DATABASE spillway OWNER spillway' WHERE NOT EXISTS (SELECT 1 FROM pg_database WHERE datname='spillway')\gexec
SQL
  log "PostgreSQL: $("$bin/postgres" --version | awk '{print $3}') at 127.0.0.1:$PG_PORT (database spillway), log in $PG_LOG"
}

pg_stop() {
  local bin; bin=$(pg_bin) || return 0
  if [ -f "$PG_DATA/postmaster.pid" ]; then
    log "stopping PostgreSQL"
    as_user postgres "$bin/pg_ctl" -D "$PG_DATA" -m fast -w stop >/dev/null 2>&1 || true
  fi
}

status() {
  local es_url="${EXT_ES_URL:-$ES_URL_DEFAULT}" pg_url="${EXT_PG_URL:-$PG_URL_DEFAULT}"
  if es_up_at "$es_url"; then
    local who="not started by us"
    [ -f "$ES_PID" ] && kill -0 "$(cat "$ES_PID")" 2>/dev/null && who="pid $(cat "$ES_PID"), logs in $ES_LOGS"
    echo "elasticsearch: up   $(echo "$es_url" | redact) version $(es_version "$es_url") ($who)"
  else
    echo "elasticsearch: down ($(echo "$es_url" | redact))"
  fi
  if psql "$pg_url" -qAtc 'select 1' >/dev/null 2>&1; then
    local who="not started by us"
    [ -f "$PG_DATA/postmaster.pid" ] && who="data in $PG_DATA, log in $PG_LOG"
    echo "postgresql:    up   $(echo "$pg_url" | redact) ($who)"
  else
    echo "postgresql:    down ($(echo "$pg_url" | redact))"
  fi
}

# env prints the URLs the services answer on, for `eval "$(scripts/services.sh env)"`.
print_env() {
  echo "export SPILLWAY_ES_URL='${EXT_ES_URL:-$ES_URL_DEFAULT}'"
  echo "export SPILLWAY_PG_URL='${EXT_PG_URL:-$PG_URL_DEFAULT}'"
  echo "export SPILLWAY_ES_HOME='$ES_HOME'"
  echo "export SPILLWAY_ES_JAVA_HOME='$(find_java || true)'"
  echo "export SPILLWAY_ES_USER='$ES_USER'"
  echo "export SPILLWAY_PG_BINDIR='$(pg_bin || true)'"
}

case "${1:-}" in
  up)
    start=$(date +%s)
    mkdir -p "$STATE"
    command -v curl >/dev/null || install_debs curl
    pg_start
    es_start
    log "up in $(( $(date +%s) - start ))s"
    ;;
  down) es_stop; pg_stop ;;
  status) status ;;
  env) print_env ;;
  *) echo "usage: $0 up|down|status|env" >&2; exit 2 ;;
esac
