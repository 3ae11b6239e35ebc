#!/usr/bin/env bash
# Adds, removes or lists sites on the fleet's servers, from the jump box.
# The inventory says which server a site lives on and its kind.
#
# usage: deploy/site.sh add DOMAIN [DIR] [--take-over]
#                                         start (and enable) KIND@DOMAIN on its server;
#                                         DIR, a folder in the import layout, goes to
#                                         its server's import dir first (a new site only);
#                                         the server becomes the site's owner in etcd,
#                                         refused while another server serves it unless
#                                         --take-over (docs/moving.md)
#        deploy/site.sh remove DOMAIN     stop and disable it there (its data stays)
#        deploy/site.sh list              DOMAIN KIND SERVER STATE, every site of the inventory
#        deploy/site.sh move DOMAIN SERVER [--prepare] [--take-over]
#                                         move it to SERVER: its export copied while it runs
#                                         and imported there (a WordPress database started),
#                                         then stopped, the difference copied, checked by
#                                         sha256 and applied, its owner in etcd handed to
#                                         SERVER, started there, the inventory
#                                         changed, the old server's copy removed (docs/moving.md);
#                                         --prepare stops before the stop: the site
#                                         runs on as before, and a later move is a short one
#        deploy/site.sh move DOMAIN --cancel
#                                         drop a prepared move: SERVER's copy removed
# env: see deploy/lib/fleet.sh
set -euo pipefail

# --take-over (anywhere after the command): passed to hostyard's ownership
# commands, which otherwise refuse a site another server serves.
TAKE_OVER=""
args=()
for a in "$@"; do
  if [ "$a" = --take-over ]; then TAKE_OVER=--take-over; else args+=("$a"); fi
done
set -- "${args[@]}"

# shellcheck source=deploy/lib/fleet.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib/fleet.sh"

# site DOMAIN: sets KIND and HOST (its server's ssh) from the inventory.
site() {
  local line domain server_name
  line=$(fleet sites | awk -v d="$1" '$1 == d')
  [ -n "$line" ] || die "site $1 is not in $INVENTORY; add it under sites: first"
  read -r domain KIND server_name <<<"$line"
  server "$server_name"
  HOST=$S_SSH
  SERVER=$server_name
}

add() {
  local domain=$1 dir=${2:-} unit
  site "$domain"
  unit="$KIND@$domain"
  if on "$HOST" systemctl is-active -q "$unit" && on "$HOST" systemctl is-enabled -q "$unit"; then
    step "$unit runs on $SERVER already; nothing changed"
    return
  fi
  if [ -n "$dir" ]; then
    [ -d "$dir" ] || die "$dir is not a directory"
    local import
    import=$(on "$HOST" hostyard config get data_root)/import/$domain
    if on "$HOST" test -e "$import"; then
      note "$import exists on $SERVER: left as it is"
    else
      tar -C "$dir" -c . | on "$HOST" "mkdir -p $import.tmp && tar -C $import.tmp --no-same-owner -x && mv $import.tmp $import"
      note "copied $dir to $SERVER:$import"
    fi
  fi
  # The owner first: a refusal (another server serves it) changes nothing.
  local owned
  owned=$(on "$HOST" hostyard site claim "$domain" $TAKE_OVER) ||
    die "$domain was not started on $SERVER (above); deploy/site.sh add $domain --take-over takes it from the server that serves it"
  note "$owned"
  step "starting $unit on $SERVER"
  on "$HOST" systemctl enable --now -q "$unit"
  step "done: $unit runs on $SERVER"
}

remove() {
  local domain=$1 unit
  site "$domain"
  unit="$KIND@$domain"
  if ! on "$HOST" systemctl is-active -q "$unit" && ! on "$HOST" systemctl is-enabled -q "$unit"; then
    step "$unit is not running on $SERVER; nothing changed"
    return
  fi
  on "$HOST" systemctl disable --now -q "$unit"
  step "done: stopped and disabled $unit on $SERVER (its data is left as it is)"
  note "for good: hostyard site forget $domain on $SERVER withdraws its declaration, owner and certificate from every server"
}

list() {
  local domain kind server_name state
  while read -r domain kind server_name; do
    server "$server_name"
    # </dev/null: ssh must not read the list of sites.
    state=$(on "$S_SSH" systemctl is-active "$kind@$domain" </dev/null 2>/dev/null) || true
    printf '%s %s %s %s\n' "$domain" "$kind" "$server_name" "${state:-unreachable}"
  done < <(fleet sites)
}

# --- move -------------------------------------------------------------------
# The site's export (the migration layout, `hostyard export`) travels
# source -> jump box -> target with rsync over the same pinned ssh as `on`
# (the servers have no ssh to each other): once while the site runs (the
# pre-copy, all of it), once more after it stopped (only what changed). The
# export is checked on the target against a manifest made on the source
# (every path with its type and mode, every file's sha256) before it becomes
# applied to the target's copy. The target imports the pre-copy and starts a
# WordPress site's MariaDB (which builds its data from the dump) while the
# site still serves on the source, so the gap holds only the difference and
# `hostyard refresh`, never a database's initialisation. State lives in
# $FLEET/state/move/, so that a move cut short can be run again.

# rsh: ssh as `on` runs it (its shared connection too), for rsync's -e.
rsh() {
  printf 'ssh -o BatchMode=yes -o StrictHostKeyChecking=yes -o UserKnownHostsFile=%s -o PasswordAuthentication=no -o KbdInteractiveAuthentication=no -o ConnectTimeout=10%s%s' \
    "$FLEET/known_hosts" "${SSH_MUX:+ -o ControlPath=$SSH_MUX/%C}" "${SSH_KEY:+ -i $SSH_KEY}"
}

# sync FROM TO: rsync the tree FROM/ to TO/ (either may be SSH:PATH),
# deleting what FROM has not; files compared by checksum (an export's files
# are new copies, their times say nothing). Received as root, on the jump
# box too, so nothing a server sends is taken beyond data: no owners (root
# receives, an export is root's), no device or special files, no setuid,
# setgid or sticky bit and nothing writable by others. An honest export has
# none of those (it is copied with modes normalised), so its manifest is
# unchanged.
sync() {
  rsync -rlpt -c --delete --no-D --chmod=ug-s,o-t,go-w -e "$(rsh)" "$1/" "$2/"
}

# manifest: the shell command printing a tree's manifest in the current
# directory; the same bytes on both servers means the same tree.
MANIFEST="find . -mindepth 1 -printf '%y %m %P\n' | LC_ALL=C sort && find . -type f -print0 | LC_ALL=C sort -z | xargs -0r sha256sum --"

# seconds_since T0: seconds since T0 (date +%s.%N), two decimals.
seconds_since() { awk -v a="$1" -v b="$(date +%s.%N)" 'BEGIN { printf "%.2f", b - a }'; }

# database_unit: the unit of the site's own database (mysql@DOMAIN), nothing
# for a kind without one (`hostyard names kinds`).
database_unit() {
  local kind db
  while read -r kind db; do
    if [ "$kind" = "$KIND" ]; then
      [ "$db" = - ] || echo "$db@$DOMAIN"
      return
    fi
  done < <(HOSTYARD_CONFIG=/dev/null "$HOSTYARD" names kinds)
  die "hostyard knows no site kind $KIND (the inventory's kind of $DOMAIN)"
}

# site_paths: the site's names on the source and the target, asked from
# each server (`hostyard names site`: its data layout's one home), as
# FROM_ROLE and TO_ROLE (FROM_DATA, TO_IMPORT, TO_IMPORT_DONE...); OUT is
# the source's staged export, STAGE the target's.
site_paths() {
  local side ssh role name v
  for side in FROM TO; do
    ssh=${side}_SSH
    while read -r role name; do
      case $role in '' | *[!a-z_]*) continue ;; esac
      printf -v "${side}_${role^^}" '%s' "$name"
    done < <(on "${!ssh}" hostyard names site "$DOMAIN")
  done
  for v in FROM_DATA FROM_MOVE_STAGE TO_DATA TO_IMPORT TO_IMPORT_DONE TO_MOVE_STAGE TO_DB_NETWORK; do
    [ -n "${!v:-}" ] ||
      die "cannot read $DOMAIN's names on $FROM and $TO (hostyard names site $DOMAIN); run deploy/server.sh add for both so they run this hostyard"
  done
  OUT=$FROM_MOVE_STAGE STAGE=$TO_MOVE_STAGE
}

# export_on SSH DIR: the site's export, fresh, into DIR on that server. An
# export dumps the site's database, so it must run (it also runs while the
# site is stopped: mysql@ is not part of wordpress@).
export_on() {
  local db start=""
  db=$(database_unit)
  [ -z "$db" ] || start="systemctl start $db && "
  on "$1" "${start}rm -rf $2 && mkdir -p -m 0700 ${2%/*} && hostyard export $DOMAIN $2 >/dev/null"
}

# copy_over: the export, source -> jump box -> target's staging dir.
copy_over() {
  sync "$FROM_SSH:$OUT" "$LOCAL"
  sync "$LOCAL" "$TO_SSH:$STAGE"
}

# prepare_target: the target's copy of the site, stopped, from the staged
# export: imported by its importer the first time (a copy of the stage: the
# importer moves what it imported aside), refreshed from the stage after
# that; a WordPress site's MariaDB runs, and the refresh's load of the dump
# waits for its first initialisation. The site's own unit stays stopped.
# The importer keeps what it imported in import/.done/DOMAIN-TIME; this
# copy of the stage (with the dump and its password hashes) is the move's
# own, so the entries made since the import began go again.
prepare_target() {
  local units="$KIND-importer@$DOMAIN" done=$TO_IMPORT_DONE db
  db=$(database_unit)
  [ -z "$db" ] || units+=" $db"
  on "$TO_SSH" "t=''
    if ! test -e $TO_DATA; then
      t=\$(date +%s) && rm -rf $STAGE.import && cp -a $STAGE $STAGE.import && mv -T $STAGE.import $TO_IMPORT || exit 1
    fi
    systemctl start $units || exit 1
    for e in $done/$DOMAIN-*; do
      n=\${e##*-}; case \$t:\$n in :* | *: | *:*[!0-9]*) continue ;; esac
      [ \"\$n\" -lt \"\$t\" ] || rm -rf \"\$e\"
    done
    hostyard refresh $DOMAIN $STAGE >/dev/null"
}

# state PHASE: records how far the move is (FROM TO WAS_ACTIVE PHASE).
state() {
  printf '%s %s %s %s\n' "$FROM" "$TO" "$WAS_ACTIVE" "$1" >"$STATE.tmp"
  mv "$STATE.tmp" "$STATE"
}

# SERVES: the shell test that the site's unit is active on a server and its
# HAProxy answers it with the site's own answer (below 500: not the 503
# page; not a 404 page).
serves() {
  printf '%s' "systemctl is-active -q $UNIT && code=\$(curl -s -o /dev/null -w '%{http_code}' --max-time 5 -H 'Host: $DOMAIN' http://127.0.0.1/) && [ \"\$code\" -lt 500 ] && [ \"\$code\" != 404 ]"
}

# drop_db_network: the shell command removing the site's database network
# (one name on every server; mysql@ makes it and leaves it) once its units
# are stopped.
drop_db_network() {
  printf '{ ! docker network inspect %s >/dev/null 2>&1 || docker network rm %s >/dev/null; }' "$TO_DB_NETWORK" "$TO_DB_NETWORK"
}

# undo_target: stops the site on the target and removes what this move put
# there (the target had no data for it before: checked at the start).
undo_target() {
  on "$TO_SSH" "systemctl disable --now -q $UNIT 2>/dev/null; systemctl stop '*@$DOMAIN.service' '*@$DOMAIN.timer' 2>/dev/null; rm -rf $TO_DATA $TO_IMPORT && $(drop_db_network)"
}

# on_exit: a move that fails between stopping the source and the target
# serving (ROLLBACK=1) is undone; the shared ssh connections end.
ROLLBACK=0 PREPARE_ONLY=0
on_exit() {
  local rc=$?
  trap - EXIT
  if [ "$ROLLBACK" = 1 ]; then
    [ "$rc" != 0 ] || rc=1
    rollback
  fi
  mux_close
  exit "$rc"
}

# rollback: the target's copy goes, the source starts again.
rollback() {
  note "the move failed before $DOMAIN served on $TO: undoing it"
  # The owner back to the source (nothing to do if the switch did not
  # hand it over), so that its discovery registers it again.
  if undo_target && on "$FROM_SSH" hostyard site transfer "$DOMAIN" --from "$TO" --to "$FROM" >/dev/null &&
    { [ "$WAS_ACTIVE" != 1 ] || on "$FROM_SSH" systemctl enable --now -q "$UNIT"; }; then
    clean_stages
    rm -f "$STATE"
    printf '%s: error: moving %s to %s failed (above); %s runs on %s again and the inventory is unchanged: run the move again once the cause is fixed\n' \
      "${0##*/}" "$DOMAIN" "$TO" "$UNIT" "$FROM" >&2
  else
    printf '%s: error: moving %s to %s failed and could not be undone: it is stopped on %s; run deploy/site.sh move %s %s again to finish, or start it on %s with systemctl enable --now %s\n' \
      "${0##*/}" "$DOMAIN" "$TO" "$FROM" "$DOMAIN" "$TO" "$FROM" "$UNIT" >&2
  fi
}

# LOCK_WAIT_SECS: how long a move or cancel waits for another one of the
# same domain (or the ssh calls a killed one left) before it gives up.
LOCK_WAIT_SECS=${LOCK_WAIT_SECS:-120}

# lock_domain DOMAIN: one move or cancel of DOMAIN at a time on this jump
# box, taken before anything is read, so that a second run acts on what
# the first one left (a finished move is not rolled back by it). Held on
# fd 9 until the script exits; ssh's master connections do not inherit it.
lock_domain() {
  local dir=$FLEET/state/move
  (umask 077 && mkdir -p "$dir")
  exec 9>"$dir/$1.lock"
  if ! flock -n 9; then
    note "another move of $1 is running from this jump box; waiting up to $LOCK_WAIT_SECS s for it to end"
    flock -w "$LOCK_WAIT_SECS" 9 ||
      die "the other move of $1 still runs after $LOCK_WAIT_SECS s (it holds $dir/$1.lock): let it end, then run this again"
  fi
}

# clean_stages: the move's exports go from the source, the target and this
# jump box (they hold the site's TLS key and, for WordPress, its users'
# password hashes).
clean_stages() {
  on "$FROM_SSH" rm -rf "$OUT" || true
  on "$TO_SSH" rm -rf "$STAGE" "$STAGE.import" || true
  rm -rf "$LOCAL" "$LOCAL.manifest"
}

move() {
  DOMAIN=$1 TO=$2
  command -v rsync >/dev/null || die "rsync is not installed on this jump box: apt-get install rsync"
  lock_domain "$DOMAIN"
  site "$DOMAIN"
  FROM=$SERVER FROM_SSH=$HOST UNIT=$KIND@$DOMAIN
  server "$TO"
  TO_SSH=$S_SSH
  local dir=$FLEET/state/move phase="" sfrom sto
  STATE=$dir/$DOMAIN.state LOCAL=$dir/$DOMAIN WAS_ACTIVE=0
  (umask 077 && mkdir -p "$dir")
  if [ -f "$STATE" ]; then
    read -r sfrom sto WAS_ACTIVE phase <"$STATE"
    [ "$sto" = "$TO" ] || die "the move of $DOMAIN from $sfrom to $sto is unfinished: run deploy/site.sh move $DOMAIN $sto first"
    FROM=$sfrom
    server "$FROM"
    FROM_SSH=$S_SSH
    note "finishing the move of $DOMAIN from $FROM to $TO (it stopped at: $phase)"
  elif [ "$FROM" = "$TO" ]; then
    step "$DOMAIN is on $TO already; nothing changed"
    return
  fi
  trap on_exit EXIT
  trap 'exit 130' INT TERM
  mux_open "$FROM_SSH" "$TO_SSH"
  local r
  for r in "$FROM_SSH" "$TO_SSH"; do
    on "$r" command -v rsync >/dev/null ||
      die "rsync is missing on $r: run deploy/server.sh add for that server again (setup.sh installs it)"
  done
  site_paths
  if [ "$phase" = switched ]; then
    finish
    return
  fi
  local t0 took
  if [ "$phase" = stopped ]; then
    if [ "$WAS_ACTIVE" = 1 ] && on "$TO_SSH" "$(serves)" 2>/dev/null; then
      state switched
      finish
      return
    fi
    if on "$TO_SSH" test -d "$TO_DATA"; then
      # Stopped on the source, prepared on the target: only the gap's steps
      # are left (the target's unit, if it started and failed, stops first).
      on "$TO_SSH" systemctl stop "$UNIT"
    else
      # Undone on the target, but the source did not start again: the copy
      # is made anew, the site still stopped (a failure undoes it again).
      ROLLBACK=1
      export_on "$FROM_SSH" "$OUT"
      (umask 077 && mkdir -p "$LOCAL")
      on "$TO_SSH" "mkdir -p -m 0700 ${STAGE%/*}"
      copy_over
      prepare_target
    fi
  else
    if [ -z "$phase" ]; then
      # Never over a site the target has: its importer would keep that data.
      on "$TO_SSH" "! test -e $TO_DATA && ! test -e $TO_IMPORT" ||
        die "$TO has $DOMAIN's data already ($TO_DATA or $TO_IMPORT); move it aside there first"
      on "$FROM_SSH" test -d "$FROM_DATA" ||
        die "$FROM has no data for $DOMAIN ($FROM_DATA); nothing to move"
      # A third server that owns the site (a restore there) is not this
      # move's to overrule without --take-over; the switch's transfer
      # checks again in one transaction.
      local owner
      owner=$(on "$FROM_SSH" hostyard site owner "$DOMAIN")
      [ -z "$owner" ] || [ "$owner" = "$FROM" ] || [ "$owner" = "$TO" ] || [ -n "$TAKE_OVER" ] ||
        die "$DOMAIN is owned by server $owner in etcd (hostyard site owner $DOMAIN), not by $FROM: nothing was changed; deploy/site.sh move $DOMAIN $TO --take-over moves it anyway"
      ! on "$FROM_SSH" systemctl is-active -q "$UNIT" || WAS_ACTIVE=1
    fi
    state precopy
    step "pre-copying $DOMAIN's export from $FROM to $TO while it runs"
    t0=$(date +%s.%N)
    export_on "$FROM_SSH" "$OUT" || die "cannot export $DOMAIN on $FROM (above); it runs there as before"
    (umask 077 && mkdir -p "$LOCAL")
    on "$TO_SSH" "mkdir -p -m 0700 ${STAGE%/*}"
    copy_over || die "cannot copy $DOMAIN's export from $FROM to $TO (above); it runs on $FROM as before"
    note "pre-copied $(on "$FROM_SSH" du -sh "$OUT" | cut -f1) in $(seconds_since "$t0") s"
    t0=$(date +%s.%N)
    prepare_target ||
      die "cannot prepare $DOMAIN's copy on $TO (above); it runs on $FROM as before: run the move again, or deploy/site.sh move $DOMAIN --cancel"
    note "prepared on $TO (stopped there) in $(seconds_since "$t0") s"
    state prepared
    if [ "$PREPARE_ONLY" = 1 ]; then
      step "prepared: $DOMAIN runs on $FROM as before; deploy/site.sh move $DOMAIN $TO switches it (a short gap), deploy/site.sh move $DOMAIN --cancel drops the copy on $TO"
      return
    fi
  fi

  # A site that did not run moves stopped: its data only, nothing starts.
  local start
  start="systemctl start $UNIT && $(serves) && lap started"
  if [ "$WAS_ACTIVE" = 1 ]; then
    step "stopping $UNIT on $FROM, copying the difference, starting it on $TO"
  else
    start="systemctl stop '*@$DOMAIN.service' && lap stopped"
    step "$UNIT is stopped on $FROM: copying the difference, leaving it stopped on $TO"
  fi
  ROLLBACK=1
  state stopped
  t0=$(date +%s.%N)
  # stop, not disable --now: disabling reloads systemd, which would add to
  # the gap; finish disables it.
  on "$FROM_SSH" systemctl stop "$UNIT"
  local laps
  laps="stopped $(seconds_since "$t0")"
  export_on "$FROM_SSH" "$OUT"
  laps+=", exported $(seconds_since "$t0")"
  # The source's manifest is made while the export travels.
  on "$FROM_SSH" "cd $OUT && $MANIFEST" >"$LOCAL.manifest" &
  local manifest=$!
  copy_over
  wait "$manifest"
  laps+=", copied $(seconds_since "$t0")"
  # One call on the target: the same manifest there (sent on stdin), then
  # the export is applied to the prepared copy and the site starts; `start`
  # returns once it is routed (enabled in finish, off the gap).
  # It prints its own laps (seconds since it began, by its own clock).
  local there
  there=$(on "$TO_SSH" "t=\$(date +%s.%N); lap() { awk -v a=\$t -v b=\$(date +%s.%N) -v w=\$1 'BEGIN { printf \"%s %.2f, \", w, b - a }'; }
    cd $STAGE && [ \"\$($MANIFEST)\" = \"\$(cat)\" ] || { echo 'the export on $TO differs from the one made on $FROM (sha256 manifest)' >&2; exit 1; }
    lap checked && hostyard refresh $DOMAIN $STAGE >/dev/null && lap refreshed &&
    hostyard site transfer $DOMAIN --from $FROM --to $TO $TAKE_OVER >/dev/null && lap owned && $start" <"$LOCAL.manifest")
  took=$(seconds_since "$t0")
  laps+="; on $TO after the copy: ${there%, }"
  ROLLBACK=0
  state switched
  note "checked on $TO: $(grep -c '^f ' "$LOCAL.manifest") files, sha256 as on $FROM"
  if [ "$WAS_ACTIVE" = 1 ]; then
    note "$DOMAIN served on $TO $took s after it stopped on $FROM ($laps s)"
  else
    note "$DOMAIN's data on $TO in $took s ($laps s)"
  fi
  finish
}

# cancel DOMAIN: a move that did not stop the site yet (pre-copied or
# prepared) is dropped: the target's copy and the staged exports go, the
# site runs on its server as it did.
cancel() {
  DOMAIN=$1
  lock_domain "$DOMAIN"
  site "$DOMAIN"
  UNIT=$KIND@$DOMAIN STATE=$FLEET/state/move/$DOMAIN.state LOCAL=$FLEET/state/move/$DOMAIN
  if [ ! -f "$STATE" ]; then
    step "no move of $DOMAIN is under way; nothing changed"
    return
  fi
  local phase
  read -r FROM TO WAS_ACTIVE phase <"$STATE"
  case $phase in
    precopy | prepared) ;;
    *) die "the move of $DOMAIN to $TO is past the site's stop ($phase): run deploy/site.sh move $DOMAIN $TO to finish it" ;;
  esac
  server "$TO"
  TO_SSH=$S_SSH
  server "$FROM"
  FROM_SSH=$S_SSH
  trap mux_close EXIT
  mux_open "$FROM_SSH" "$TO_SSH"
  site_paths
  undo_target || die "cannot remove $DOMAIN's copy on $TO (above); run the cancel again"
  clean_stages
  rm -f "$STATE"
  step "done: the move of $DOMAIN to $TO is dropped; it runs on $FROM as before"
}

# finish: the target serves: it is enabled there (it starts at boot; a
# site moved stopped is not), the inventory names it, and the source's
# copy (its data, its export, a WordPress site's database network) goes.
finish() {
  [ "$WAS_ACTIVE" != 1 ] || on "$TO_SSH" systemctl enable -q "$UNIT"
  fleet set-server "$DOMAIN" "$TO" | while read -r l; do note "$l"; done
  on "$FROM_SSH" "systemctl disable --now -q $UNIT 2>/dev/null; systemctl stop '*@$DOMAIN.service' '*@$DOMAIN.timer'; rm -rf $FROM_DATA $OUT && $(drop_db_network)" ||
    die "$DOMAIN serves on $TO, but its copy on $FROM could not be removed (above): run the move again"
  clean_stages
  rm -f "$STATE"
  step "done: $DOMAIN moved from $FROM to $TO (its data on $FROM removed)"
}

case ${1:-} in
  add) { [ $# = 2 ] || [ $# = 3 ]; } || die "usage: deploy/site.sh add DOMAIN [DIR] [--take-over]"; add "$2" "${3:-}" ;;
  remove) [ $# = 2 ] || die "usage: deploy/site.sh remove DOMAIN"; remove "$2" ;;
  list) list ;;
  move)
    if [ $# = 3 ] && [ "$3" = --cancel ]; then
      cancel "$2"
    elif [ $# = 3 ] || { [ $# = 4 ] && [ "$4" = --prepare ]; }; then
      [ $# = 3 ] || PREPARE_ONLY=1
      move "$2" "$3"
    else
      die "usage: deploy/site.sh move DOMAIN SERVER [--prepare] [--take-over] | move DOMAIN --cancel"
    fi
    ;;
  *) die "usage: deploy/site.sh add DOMAIN [DIR] [--take-over] | remove DOMAIN | list | move DOMAIN SERVER [--prepare] [--take-over] | move DOMAIN --cancel" ;;
esac
