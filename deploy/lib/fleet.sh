# shellcheck shell=bash
# What deploy/'s scripts share: the fleet directory, the inventory's
# answers (from `hostyard fleet`, never parsed here), ssh with pinned host
# keys, and a tunnel to a member's etcd for the root identity.
#
# env: FLEET     the fleet directory (default /etc/hostyard-fleet): fleet.yaml,
#                known_hosts, ca/, state/
#      HOSTYARD  the hostyard binary of the jump box (default: $BINARIES/hostyard,
#                else hostyard on PATH)
#      BINARIES  the built binaries to install (target/release of a build)
#      IMAGES    the image tarballs (scripts/images.sh save DIR)
#      SSH_KEY   the private key ssh uses (default: ssh's own)

deploy_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
repo=$(cd "$deploy_dir/.." && pwd)
# shellcheck source=scripts/lib/log.sh
. "$repo/scripts/lib/log.sh"

FLEET=${FLEET:-/etc/hostyard-fleet}
export FLEET
INVENTORY=$FLEET/fleet.yaml
BINARIES=${BINARIES:-}
IMAGES=${IMAGES:-}
if [ -z "${HOSTYARD:-}" ]; then
  if [ -n "$BINARIES" ] && [ -x "$BINARIES/hostyard" ]; then
    HOSTYARD=$BINARIES/hostyard
  else
    HOSTYARD=$(command -v hostyard || true)
  fi
fi
[ -n "$HOSTYARD" ] || die "no hostyard binary: set BINARIES to a build's target/release (or HOSTYARD)"
# Where a server keeps what deploy/ copies to it.
# shellcheck disable=SC2034 # for the scripts that source this file
REMOTE=/root/hostyard-deploy
# The etcd prefix of the fleet's node configs (the default layout).
# shellcheck disable=SC2034 # for the scripts that source this file
PREFIX=""

[ -f "$INVENTORY" ] || die "no inventory at $INVENTORY; write one (docs/fleet.md) or set FLEET"
[ -f "$FLEET/known_hosts" ] || die "no $FLEET/known_hosts: pin every server's host key there first"

# fleet ARGS...: hostyard's answers about the inventory.
fleet() { HOSTYARD_CONFIG=/dev/null "$HOSTYARD" fleet --inventory "$INVENTORY" "$@"; }
fleet check >/dev/null || exit 2

# server NAME: sets S_SSH, S_PRIVATE and S_ROLE from the inventory.
server() {
  local line name
  line=$(fleet servers | awk -v n="$1" '$1 == n')
  [ -n "$line" ] || die "server $1 is not in $INVENTORY"
  # shellcheck disable=SC2034 # S_PRIVATE, S_ROLE: for the callers
  read -r name S_SSH S_PRIVATE S_ROLE <<<"$line"
}

# on SSH CMD...: run CMD on a server. Keys only, host keys from the pinned
# known_hosts only (an unknown or changed key stops here); nothing secret
# ever goes on a command line: secrets travel on stdin. With SSH_MUX (a
# private directory, see mux_open) the calls to one server share one
# connection instead of a handshake each.
on() {
  local dest=$1
  shift
  ssh -o BatchMode=yes -o StrictHostKeyChecking=yes -o UserKnownHostsFile="$FLEET/known_hosts" \
    -o PasswordAuthentication=no -o KbdInteractiveAuthentication=no -o ConnectTimeout=10 \
    ${SSH_MUX:+-o ControlPath="$SSH_MUX/%C"} \
    ${SSH_KEY:+-i "$SSH_KEY"} "$dest" -- "$@"
}

# mux_open SSH...: one master connection to each server (in SSH_MUX, a new
# private directory) that `on` then uses; mux_close ends them. A master
# left by a script that was killed (no mux_close) ends by itself after 10
# minutes without a call through it (ControlPersist); a call finding no
# master connects on its own.
SSH_MUX=""
mux_open() {
  local dest
  SSH_MUX=$(mktemp -d /tmp/hostyard-deploy-mux.XXXXXX)
  for dest in "$@"; do
    # -f: into the background once authenticated; its output goes nowhere,
    # so a caller's $(...) does not wait for it.
    ssh -o BatchMode=yes -o StrictHostKeyChecking=yes -o UserKnownHostsFile="$FLEET/known_hosts" \
      -o PasswordAuthentication=no -o KbdInteractiveAuthentication=no -o ConnectTimeout=10 \
      ${SSH_KEY:+-i "$SSH_KEY"} -o ControlPath="$SSH_MUX/%C" -o ControlPersist=600 -M -f -N "$dest" >/dev/null 2>&1 </dev/null 9>&- || true
  done
}
mux_close() {
  local s
  [ -n "$SSH_MUX" ] || return 0
  for s in "$SSH_MUX"/*; do
    if [ -S "$s" ]; then ssh -o ControlPath="$s" -O exit x >/dev/null 2>&1 || true; fi
  done
  rm -rf "$SSH_MUX"
  SSH_MUX=""
}

# push SSH LOCAL_DIR REMOTE_DIR MODE FILE...: copy the files whose content
# differs (sha256) into REMOTE_DIR with MODE, on stdin through tar; prints
# how many it copied.
push() {
  local dest=$1 from=$2 to=$3 mode=$4 f n=0 have
  shift 4
  have=$(on "$dest" "mkdir -p $to && cd $to && sha256sum $* 2>/dev/null || true")
  local send=()
  for f in "$@"; do
    [ -f "$from/$f" ] || die "$from/$f is missing"
    if ! grep -qxF "$(cd "$from" && sha256sum "$f")" <<<"$have"; then
      send+=("$f")
    fi
  done
  if [ ${#send[@]} -gt 0 ]; then
    tar -C "$from" -c "${send[@]}" | on "$dest" "umask 077 && tar -C $to --no-same-owner -x && cd $to && chmod $mode ${send[*]}"
    n=${#send[@]}
  fi
  echo "$n"
}

# TUNNEL_PORT: the jump box's end of a tunnel to a member's client port
# (loopback: the member's certificate names 127.0.0.1). tunnel NAME opens
# it, untunnel closes it.
TUNNEL_SOCKET=""
TUNNEL_PORT=""
tunnel() {
  server "$1"
  TUNNEL_SOCKET=$(mktemp -u /tmp/hostyard-deploy-ssh.XXXXXX)
  TUNNEL_PORT=$((20000 + RANDOM % 20000))
  on "$S_SSH" true >/dev/null
  ssh -o BatchMode=yes -o StrictHostKeyChecking=yes -o UserKnownHostsFile="$FLEET/known_hosts" \
    -o ExitOnForwardFailure=yes ${SSH_KEY:+-i "$SSH_KEY"} -M -S "$TUNNEL_SOCKET" -f -N \
    -L "127.0.0.1:$TUNNEL_PORT:127.0.0.1:2379" "$S_SSH" || die "no tunnel to $1's etcd"
  trap untunnel EXIT
}
untunnel() {
  [ -z "$TUNNEL_SOCKET" ] || ssh -S "$TUNNEL_SOCKET" -O exit x 2>/dev/null || true
  TUNNEL_SOCKET=""
}

# etcd ARGS...: `hostyard fleet etcd` as root through the tunnel.
etcd_admin() { fleet etcd --endpoint "https://127.0.0.1:$TUNNEL_PORT" "$@"; }

# running_member [EXCEPT]: the name of a member that deploy/ set up (its
# state file) and whose etcd answers through ssh, other than EXCEPT; empty
# when there is none (the first member makes the cluster).
running_member() {
  local name _ssh _private role
  while read -r name _ssh _private role; do
    if [ "$role" != member ] || [ "$name" = "${1:-}" ] || [ ! -f "$FLEET/state/$name" ]; then
      continue
    fi
    # </dev/null: ssh must not read the list of servers.
    if on "$_ssh" systemctl is-active -q etcd.service </dev/null 2>/dev/null; then
      echo "$name"
      return
    fi
  done < <(fleet servers)
}
