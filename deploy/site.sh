#!/usr/bin/env bash
# Adds, removes or lists sites on the fleet's servers, from the jump box.
# The inventory says which server a site lives on and its kind.
#
# usage: deploy/site.sh add DOMAIN [DIR]  start (and enable) KIND@DOMAIN on its server;
#                                         DIR, a folder in the import layout, goes to
#                                         its server's import dir first (a new site only)
#        deploy/site.sh remove DOMAIN     stop and disable it there (its data stays)
#        deploy/site.sh list              DOMAIN KIND SERVER STATE, every site of the inventory
# env: see deploy/lib/fleet.sh
set -euo pipefail

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

case ${1:-} in
  add) { [ $# = 2 ] || [ $# = 3 ]; } || die "usage: deploy/site.sh add DOMAIN [DIR]"; add "$2" "${3:-}" ;;
  remove) [ $# = 2 ] || die "usage: deploy/site.sh remove DOMAIN"; remove "$2" ;;
  list) list ;;
  *) die "usage: deploy/site.sh add DOMAIN [DIR] | remove DOMAIN | list" ;;
esac
