#!/bin/bash
# Starts MariaDB for a hostyard WordPress site. Before the server listens on
# the network: an empty data dir is initialised, and one written by an older
# MariaDB (10.11 of the Debian 12 image) is upgraded with mariadb-upgrade,
# once. Never prints a password, and never deletes a data dir that holds
# anything.
set -euo pipefail
shopt -s nullglob dotglob

DATADIR=/var/lib/mysql
MARKER_NAME=.hostyard-initialised
# Written last by the initialisation: the data dir is this image's.
MARKER=$DATADIR/$MARKER_NAME
# A first initialisation is built here, beside nothing of the site's, then
# moved into $DATADIR entry by entry (renames), its marker last.
STAGE=$DATADIR/.hostyard-init
# The server of the set-up and of the upgrade: on this socket only, so
# WordPress cannot connect before the data is ready.
LOCAL_SOCKET=/run/mysqld/local.sock
LOCAL_WAIT_SECS=60

log() { printf 'hostyard-mysql: %s\n' "$*" >&2; }
die() {
  log "$*"
  exit 1
}

# sql_string VALUE: VALUE as a single-quoted SQL string literal.
sql_string() {
  local v=${1//\\/\\\\}
  printf "'%s'" "${v//\'/\'\'}"
}

# alive PID: the process runs (not a zombie). Not `kill -0`: once mariadbd
# switched to the mysql user, that needs CAP_KILL, which the unit drops.
alive() {
  local _pid _comm state
  read -r _pid _comm state _ <"/proc/$1/stat" 2>/dev/null || return 1
  [ "$state" != Z ]
}

local_pid=""

# start_local DIR: a server on DIR, reachable on $LOCAL_SOCKET only;
# returns once it answers.
start_local() {
  mariadbd --user=mysql --datadir="$1" --skip-networking --socket="$LOCAL_SOCKET" &
  local_pid=$!
  local i
  for ((i = 0; i < LOCAL_WAIT_SECS * 10; i++)); do
    mariadb-admin --socket="$LOCAL_SOCKET" ping >/dev/null 2>&1 && return 0
    alive "$local_pid" || die "mariadbd exited before it answered (its log is above)"
    sleep 0.1
  done
  die "mariadbd did not answer within $LOCAL_WAIT_SECS s"
}

# stop_local: a clean shutdown of the local server, if one runs.
stop_local() {
  [ -n "$local_pid" ] || return 0
  mariadb-admin --socket="$LOCAL_SOCKET" shutdown >/dev/null 2>&1 || true
  wait "$local_pid" || true
  local_pid=""
}

# As PID 1, bash ignores SIGTERM unless trapped: `docker stop` during the
# set-up or the upgrade shuts the local server down cleanly (both are
# redone at the next start) instead of waiting to be killed.
trap 'log "stopped before the server listened; the next start finishes what is left"; stop_local; exit 143' TERM INT

# version_in TEXT: the first x.y.z in TEXT.
version_in() { grep -oE '[0-9]+\.[0-9]+\.[0-9]+' <<<"$1" | head -n 1 || true; }

# data_version: the MariaDB version that last set up or upgraded the data
# dir, as mariadb-install-db and mariadb-upgrade record it ("" if neither
# file is there).
data_version() {
  local f
  for f in "$DATADIR/mariadb_upgrade_info" "$DATADIR/mysql_upgrade_info"; do
    [ -f "$f" ] && version_in "$(head -c 100 "$f")" && return
  done
  true
}

# older A B: version A is older than version B.
older() { [ "$1" != "$2" ] && [ "$(printf '%s\n' "$1" "$2" | sort -V | head -n 1)" = "$1" ]; }

# major_minor VERSION: 11.8 of 11.8.3. mariadb-upgrade has work only when
# this changes; a point release needs none.
major_minor() { cut -d. -f1,2 <<<"$1"; }

initialise() {
  : "${MARIADB_DATABASE:?not set (secrets/db.env)}" "${MARIADB_USER:?not set}"
  : "${MARIADB_PASSWORD:?not set}" "${MARIADB_ROOT_PASSWORD:?not set}"
  log "initialising $DATADIR"
  mkdir -m 0700 "$STAGE"
  chown mysql:mysql "$STAGE"
  mariadb-install-db --user=mysql --datadir="$STAGE" --auth-root-authentication-method=socket \
    --skip-test-db >/dev/null
  start_local "$STAGE"
  local db=${MARIADB_DATABASE//\`/} f
  {
    # shellcheck disable=SC2016 # the backticks quote an SQL name
    printf 'CREATE DATABASE IF NOT EXISTS `%s`;\n' "$db"
    printf "CREATE USER %s@'%%' IDENTIFIED BY %s;\n" "$(sql_string "$MARIADB_USER")" "$(sql_string "$MARIADB_PASSWORD")"
    printf "GRANT ALL ON \`%s\`.* TO %s@'%%';\n" "$db" "$(sql_string "$MARIADB_USER")"
    printf "ALTER USER 'root'@'localhost' IDENTIFIED VIA unix_socket OR mysql_native_password USING PASSWORD(%s);\n" \
      "$(sql_string "$MARIADB_ROOT_PASSWORD")"
    printf 'FLUSH PRIVILEGES;\n'
  } | mariadb --socket="$LOCAL_SOCKET"
  for f in /docker-entrypoint-initdb.d/*.sql; do
    [ -f "$f" ] || continue
    log "loading $(basename "$f")"
    mariadb --socket="$LOCAL_SOCKET" "$db" <"$f"
  done
  stop_local
  touch "$STAGE/$MARKER_NAME"
  move_into_place
  log "initialised"
}

# move_into_place: the staged data dir's entries into $DATADIR, the marker
# last. Each move is a rename within one file system, so a move cut short
# leaves every entry on one side, and the next start finishes it.
move_into_place() {
  local entry
  for entry in "$STAGE"/*; do
    [ "${entry##*/}" != "$MARKER_NAME" ] || continue
    mv -T -- "$entry" "$DATADIR/${entry##*/}"
  done
  mv -T -- "$STAGE/$MARKER_NAME" "$MARKER"
  rmdir "$STAGE"
}

# upgrade DATA_VERSION SERVER_VERSION: mariadb-upgrade against a local
# server, its output in the container's log (the journal).
upgrade() {
  log "data dir written by MariaDB ${1:-of an unknown version}, this is $2: running mariadb-upgrade"
  local t0=$SECONDS
  start_local "$DATADIR"
  if ! mariadb-upgrade --socket="$LOCAL_SOCKET" 2>&1 | sed -u 's/^/hostyard-mysql: mariadb-upgrade: /' >&2; then
    stop_local
    die "mariadb-upgrade failed (its output is above); the next start runs it again"
  fi
  stop_local
  log "mariadb-upgrade done in $((SECONDS - t0)) s: data dir now at $(data_version)"
}

# The data dir belongs to the host's site dir (created by the importer as
# root): hand it to mysql, which the server runs as.
chown mysql:mysql "$DATADIR" /run/mysqld

# A data dir written by another image may carry another uid for mysql (the
# user is made by the package, with the next free system id): the server
# could read nothing of it.
mysql_ids="$(id -u mysql):$(id -g mysql)"
if [ -d "$DATADIR/mysql" ] && [ "$(stat -c %u:%g "$DATADIR/mysql")" != "$mysql_ids" ]; then
  log "$DATADIR belongs to $(stat -c %u:%g "$DATADIR/mysql"), this image's mysql is $mysql_ids: chown -R"
  chown -R mysql:mysql "$DATADIR"
fi

if [ -d "$STAGE" ]; then
  if [ -f "$STAGE/$MARKER_NAME" ]; then
    log "finishing an initialisation whose move was cut short"
    move_into_place
  else
    # The stage holds nothing but what an unfinished run of initialise()
    # made from the environment and the dump files, both still there; the
    # data dir itself is not touched.
    log "an earlier initialisation did not finish: starting over"
    rm -rf -- "$STAGE"
  fi
fi

if [ ! -f "$MARKER" ]; then
  if [ -n "$(ls -A "$DATADIR")" ]; then
    die "$DATADIR holds files but no $MARKER_NAME, so this image did not set it up: left as it is." \
      "If it is a complete MariaDB data dir, create $MARKER_NAME in it; if not, empty it; then start again"
  fi
  initialise
fi

server_version=$(version_in "$(mariadbd --version)")
data=$(data_version)
if [ -z "$data" ] || older "$(major_minor "$data")" "$(major_minor "$server_version")"; then
  upgrade "$data" "$server_version"
elif older "$(major_minor "$server_version")" "$(major_minor "$data")"; then
  die "data dir upgraded by MariaDB $data, newer than this image's $server_version: MariaDB cannot go back;" \
    "run the newer image, or restore a copy of mysql/ made before the upgrade"
fi

trap - TERM INT
exec mariadbd --user=mysql --datadir="$DATADIR" --bind-address=0.0.0.0 --skip-name-resolve
