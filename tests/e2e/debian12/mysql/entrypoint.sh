#!/bin/bash
# Starts MariaDB for a hostyard WordPress site; initialises the data dir
# first when it is empty. Never prints a password.
set -euo pipefail

DATADIR=/var/lib/mysql

log() { printf 'hostyard-mysql: %s\n' "$*" >&2; }

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

# The data dir belongs to the host's site dir (created by the importer as
# root): hand it to mysql, which the server runs as.
chown mysql:mysql "$DATADIR" /run/mysqld

# Written last by the initialisation: without it, a data dir holds at most
# a set-up that was cut short (nothing of the site's yet), so it is redone.
MARKER=$DATADIR/.hostyard-initialised

if [ ! -f "$MARKER" ]; then
  if [ -n "$(ls -A "$DATADIR")" ]; then
    log "an earlier initialisation did not finish: starting over"
    find "$DATADIR" -mindepth 1 -delete
  fi
  : "${MARIADB_DATABASE:?not set (secrets/db.env)}" "${MARIADB_USER:?not set}"
  : "${MARIADB_PASSWORD:?not set}" "${MARIADB_ROOT_PASSWORD:?not set}"
  log "initialising $DATADIR"
  mariadb-install-db --user=mysql --datadir="$DATADIR" --auth-root-authentication-method=socket \
    --skip-test-db >/dev/null
  # A server on the socket only, for the set-up; it stops before the real one.
  mariadbd --user=mysql --datadir="$DATADIR" --skip-networking --socket=/run/mysqld/init.sock &
  pid=$!
  for _ in $(seq 300); do
    mariadb-admin --socket=/run/mysqld/init.sock ping >/dev/null 2>&1 && break
    alive "$pid" || { log "mariadbd exited during set-up"; exit 1; }
    sleep 0.1
  done
  db=${MARIADB_DATABASE//\`/}
  {
    # shellcheck disable=SC2016 # the backticks quote an SQL name
    printf 'CREATE DATABASE IF NOT EXISTS `%s`;\n' "$db"
    printf "CREATE USER %s@'%%' IDENTIFIED BY %s;\n" "$(sql_string "$MARIADB_USER")" "$(sql_string "$MARIADB_PASSWORD")"
    printf "GRANT ALL ON \`%s\`.* TO %s@'%%';\n" "$db" "$(sql_string "$MARIADB_USER")"
    printf "ALTER USER 'root'@'localhost' IDENTIFIED VIA unix_socket OR mysql_native_password USING PASSWORD(%s);\n" \
      "$(sql_string "$MARIADB_ROOT_PASSWORD")"
    printf 'FLUSH PRIVILEGES;\n'
  } | mariadb --socket=/run/mysqld/init.sock
  for f in /docker-entrypoint-initdb.d/*.sql; do
    [ -f "$f" ] || continue
    log "loading $(basename "$f")"
    mariadb --socket=/run/mysqld/init.sock "$db" <"$f"
  done
  mariadb-admin --socket=/run/mysqld/init.sock shutdown
  wait "$pid" || true
  touch "$MARKER"
  log "initialised"
fi

exec mariadbd --user=mysql --datadir="$DATADIR" --bind-address=0.0.0.0 --skip-name-resolve
