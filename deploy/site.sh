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
# Each step of a move is a `hostyard move` subcommand on the server it
# concerns (docs/reference/cli.md); this script only sequences them and
# copies the site's export between the servers. The export (the migration
# layout, made in the source's move stage) travels source -> jump box ->
# target with rsync over the same pinned ssh as `on` (the servers have no
# ssh to each other): once while the site runs (the pre-copy, all of it),
# once more after it stopped (only what changed). The target checks it
# against the source's manifest (every path with its type and mode, every
# file's sha256) before it applies it. It imports the pre-copy and starts a
# WordPress site's MariaDB while the site still serves on the source, so
# the gap holds only the difference, never a database's initialisation.
# The progress (FROM TO WAS_ACTIVE PHASE) lives in $FLEET/state/move/, so
# that a move cut short can be run again; the target decides the next step
# from it and from what it has (`hostyard move next`).

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

# seconds_since T0: seconds since T0 (date +%s.%N), two decimals.
seconds_since() { awk -v a="$1" -v b="$(date +%s.%N)" 'BEGIN { printf "%.2f", b - a }'; }

# stage_paths: the site's move stage on the source (OUT) and the target
# (STAGE), asked from each server (`hostyard names site`: its data
# layout's one home).
stage_paths() {
  local role name
  OUT="" STAGE=""
  while read -r role name; do [ "$role" != move_stage ] || OUT=$name; done < <(on "$FROM_SSH" hostyard names site "$DOMAIN")
  while read -r role name; do [ "$role" != move_stage ] || STAGE=$name; done < <(on "$TO_SSH" hostyard names site "$DOMAIN")
  { [ -n "$OUT" ] && [ -n "$STAGE" ]; } ||
    die "cannot read $DOMAIN's names on $FROM and $TO (hostyard names site $DOMAIN); run deploy/server.sh add for both so they run this hostyard"
}

# copy_over: the source's fresh export, source -> jump box -> target's stage.
copy_over() {
  on "$FROM_SSH" hostyard move export "$DOMAIN"
  (umask 077 && mkdir -p "$LOCAL")
  on "$TO_SSH" "mkdir -p -m 0700 ${STAGE%/*}"
  sync "$FROM_SSH:$OUT" "$LOCAL"
  sync "$LOCAL" "$TO_SSH:$STAGE"
}

# prepare_target: the target's stopped copy built or refreshed from the stage.
prepare_target() { on "$TO_SSH" hostyard move prepare "$DOMAIN" --kind "$KIND"; }

# state PHASE: records how far the move is (FROM TO WAS_ACTIVE PHASE).
state() {
  PHASE=$1
  printf '%s %s %s %s\n' "$FROM" "$TO" "$WAS_ACTIVE" "$1" >"$STATE.tmp"
  mv "$STATE.tmp" "$STATE"
}

# undo_target: the target's copy goes (it had no data for the site before:
# checked at the start).
undo_target() { on "$TO_SSH" hostyard move remove "$DOMAIN" --kind "$KIND" --side target; }

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
  # The owner back to the source (nothing to do if the hand-over did not
  # change it), so that its discovery registers it again.
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
  on "$FROM_SSH" hostyard move clean "$DOMAIN" || true
  on "$TO_SSH" hostyard move clean "$DOMAIN" || true
  rm -rf "$LOCAL" "$LOCAL.manifest"
}

# next_step WANT: the target's answer to what comes next (a word, then
# the reason for done and refuse).
# (--phase=: ssh joins the words, so an empty phase must not be a word.)
next_step() {
  local was=""
  [ "$WAS_ACTIVE" != 1 ] || was=--was-active
  on "$TO_SSH" hostyard move next "$DOMAIN" --kind "$KIND" "--phase=$PHASE" --want "$1" $was
}

# begin: a new move's checks on both sides (never over a site the target
# has; the source has the site; no third server owns it, unless
# --take-over: the hand-over checks again in one transaction).
begin() {
  on "$TO_SSH" hostyard move can-receive "$DOMAIN" || die "nothing was changed"
  local active
  active=$(on "$FROM_SSH" hostyard move can-send "$DOMAIN" --to "$TO" $TAKE_OVER) || die "nothing was changed"
  [ "$active" != active ] || WAS_ACTIVE=1
  state precopy
}

# prepare: the pre-copy and the target's stopped copy, while the site
# serves on the source.
prepare() {
  local t0
  step "pre-copying $DOMAIN's export from $FROM to $TO while it runs"
  t0=$(date +%s.%N)
  copy_over || die "cannot copy $DOMAIN's export from $FROM to $TO (above); it runs on $FROM as before"
  note "pre-copied $(on "$FROM_SSH" du -sh "$OUT" | cut -f1) in $(seconds_since "$t0") s"
  t0=$(date +%s.%N)
  prepare_target ||
    die "cannot prepare $DOMAIN's copy on $TO (above); it runs on $FROM as before: run the move again, or deploy/site.sh move $DOMAIN --cancel"
  note "prepared on $TO (stopped there) in $(seconds_since "$t0") s"
  state prepared
}

# hand_over: the gap. The source stops, its export of the difference
# travels (its manifest is made meanwhile), and one call on the target
# checks it, applies it, hands the owner over and starts the site there
# (returning once it is routed; enabled in finish, off the gap). A site
# that did not run moves stopped: its data only, nothing starts.
hand_over() {
  local start="" t0 laps there manifest took
  if [ "$WAS_ACTIVE" = 1 ]; then
    start=--start
    step "stopping $UNIT on $FROM, copying the difference, starting it on $TO"
  else
    step "$UNIT is stopped on $FROM: copying the difference, leaving it stopped on $TO"
  fi
  ROLLBACK=1
  state stopped
  t0=$(date +%s.%N)
  # stop, not disable --now: disabling reloads systemd, which would add to
  # the gap; finish disables it.
  on "$FROM_SSH" systemctl stop "$UNIT"
  laps="stopped $(seconds_since "$t0")"
  on "$FROM_SSH" hostyard move export "$DOMAIN"
  laps+=", exported $(seconds_since "$t0")"
  on "$FROM_SSH" hostyard move manifest "$DOMAIN" >"$LOCAL.manifest" &
  manifest=$!
  sync "$FROM_SSH:$OUT" "$LOCAL"
  sync "$LOCAL" "$TO_SSH:$STAGE"
  wait "$manifest"
  laps+=", copied $(seconds_since "$t0")"
  there=$(on "$TO_SSH" hostyard move hand-over "$DOMAIN" --kind "$KIND" --from "$FROM" $start $TAKE_OVER <"$LOCAL.manifest")
  took=$(seconds_since "$t0")
  ROLLBACK=0
  state switched
  note "checked on $TO: $(grep -c '^f ' "$LOCAL.manifest") files, sha256 as on $FROM"
  if [ "$WAS_ACTIVE" = 1 ]; then
    note "$DOMAIN served on $TO $took s after it stopped on $FROM ($laps; on $TO after the copy: $there s)"
  else
    note "$DOMAIN's data on $TO in $took s ($laps; on $TO after the copy: $there s)"
  fi
}

# sequence WANT: the steps the target names, one after another, until it
# says the move is done.
sequence() {
  local next
  while :; do
    if ! next=$(next_step "$1"); then
      [ -n "$next" ] || next="cannot ask $TO for the next step of the move (above): run deploy/server.sh add $TO so it runs this hostyard"
      die "${next#refuse }"
    fi
    case $next in
      begin) begin ;;
      prepare) prepare ;;
      prepare-stopped)
        # Undone on the target, but the source did not start again: the
        # copy is made anew, the site still stopped (a failure undoes it
        # again).
        ROLLBACK=1
        copy_over
        prepare_target
        ;;
      hand-over) hand_over ;;
      switched) state switched ;;
      finish)
        finish
        return
        ;;
      undo)
        undo_target || die "cannot remove $DOMAIN's copy on $TO (above); run the cancel again"
        clean_stages
        rm -f "$STATE"
        step "done: the move of $DOMAIN to $TO is dropped; it runs on $FROM as before"
        return
        ;;
      done\ *) step "${next#done }" && return ;;
      *) die "$TO answered '$next' to hostyard move next: run deploy/server.sh add $TO so it runs this hostyard" ;;
    esac
  done
}

# open_move DOMAIN TO: the servers, the recorded progress, the connections.
open_move() {
  DOMAIN=$1 TO=$2
  site "$DOMAIN"
  FROM=$SERVER FROM_SSH=$HOST UNIT=$KIND@$DOMAIN
  local dir=$FLEET/state/move sfrom sto
  STATE=$dir/$DOMAIN.state LOCAL=$dir/$DOMAIN WAS_ACTIVE=0 PHASE=""
  (umask 077 && mkdir -p "$dir")
  if [ -f "$STATE" ]; then
    read -r sfrom sto WAS_ACTIVE PHASE <"$STATE"
    [ -n "$TO" ] || TO=$sto
    [ "$sto" = "$TO" ] || die "the move of $DOMAIN from $sfrom to $sto is unfinished: run deploy/site.sh move $DOMAIN $sto first"
    FROM=$sfrom
    server "$FROM"
    FROM_SSH=$S_SSH
  fi
  [ -n "$TO" ] || return 0
  server "$TO"
  TO_SSH=$S_SSH
}

move() {
  command -v rsync >/dev/null || die "rsync is not installed on this jump box: apt-get install rsync"
  lock_domain "$1"
  open_move "$1" "$2"
  if [ -n "$PHASE" ]; then
    note "finishing the move of $DOMAIN from $FROM to $TO (it stopped at: $PHASE)"
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
  stage_paths
  if [ "$PREPARE_ONLY" = 1 ]; then sequence prepare; else sequence move; fi
}

# cancel DOMAIN: a move that did not stop the site yet (pre-copied or
# prepared) is dropped: the target's copy and the staged exports go, the
# site runs on its server as it did.
cancel() {
  lock_domain "$1"
  open_move "$1" ""
  if [ -z "$PHASE" ]; then
    step "no move of $DOMAIN is under way; nothing changed"
    return
  fi
  trap mux_close EXIT
  mux_open "$FROM_SSH" "$TO_SSH"
  stage_paths
  sequence cancel
}

# finish: the target serves: it is enabled there (it starts at boot; a
# site moved stopped is not), the inventory names it, and the source's
# copy (its data, its export, a WordPress site's database network) goes.
finish() {
  [ "$WAS_ACTIVE" != 1 ] || on "$TO_SSH" systemctl enable -q "$UNIT"
  fleet set-server "$DOMAIN" "$TO" | while read -r l; do note "$l"; done
  on "$FROM_SSH" hostyard move remove "$DOMAIN" --kind "$KIND" --side source ||
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
