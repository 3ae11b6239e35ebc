#!/usr/bin/env bash
# Turns a fresh Debian 13 (trixie) server into a hostyard server. Idempotent:
# a second run finds everything in place, changes nothing and says so. Every
# change is printed; nothing secret is.
#
# What it does, in order:
#   0. checks the release in /etc/os-release: on anything older than Debian
#      13 it stops with one line naming both, before changing anything;
#   1. /etc/hostyard/hostyard.yaml if missing (all defaults), then reads it
#      with `hostyard config get` (the binaries' own parser); the names of
#      binaries, images, units and the data layout's directories come from
#      `hostyard names` (their one home), never from a copy here;
#   2. etcd: when every etcd.endpoints URL is on loopback (the default
#      http://127.0.0.1:2379; `hostyard etcd placement`) this server runs its
#      own single member; otherwise it joins that cluster: the endpoints must
#      answer first (`hostyard etcd check`), or setup stops here, having
#      changed nothing else;
#   3. apt: docker.io + iptables, etcd-server (only for a local member:
#      Debian's defaults listen on loopback), haproxy (its `haproxy -c`
#      validates confd's configs; Debian's own haproxy.service is stopped
#      and disabled, since hostyard's haproxy.service replaces it), git
#      (imports and pulls);
#   4. the hostyard binaries into bin_dir, from --binaries DIR; the data layout;
#   5. the images: loaded from --images DIR (tarballs of scripts/images.sh
#      save), or built from this checkout's dockerfiles/ when missing;
#   6. `hostyard generate --out /etc/systemd/system`, daemon-reload;
#   7. enables and starts docker, etcd (local member only) and hostyard.target.
#
# usage: scripts/setup.sh [--binaries DIR] [--images DIR]
#   --binaries DIR  (or HOSTYARD_BINARIES) a directory with hostyard,
#                   hostyard-confd, hostyard-discovery, hostyard-import and
#                   hostyard-gitpull: `target/release` of a `cargo build
#                   --release` of this repository (on Debian 12 or 13),
#                   copied to the server. Without it the binaries must be in
#                   bin_dir already.
#   --images DIR    (or HOSTYARD_IMAGES) <kind>.tar files from
#                   `scripts/images.sh save DIR`
#   HOSTYARD_CONFIG the node config (default /etc/hostyard/hostyard.yaml)
#   ETCD_CHECK_SECS how long a joined cluster's endpoints may take to answer
#                   (default 15)
#   OS_RELEASE      the os-release file the release is read from (default
#                   /etc/os-release; tests point it elsewhere)
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=scripts/lib/log.sh
. "$repo/scripts/lib/log.sh"
# shellcheck source=scripts/lib/apt.sh
. "$repo/scripts/lib/apt.sh"

CONFIG=${HOSTYARD_CONFIG:-/etc/hostyard/hostyard.yaml}
BINARIES_DIR=${HOSTYARD_BINARIES:-}
IMAGES_DIR=${HOSTYARD_IMAGES:-}
UNIT_DIR=/etc/systemd/system
# The binaries bin_dir gets (`hostyard names binaries`, set by main).
BINARIES=()
# procps: /bin/kill, which haproxy-confd.service's ExecReload= runs.
# bind9-dnsutils: dig, with which `hostyard status` compares the sites'
# published mail records with what `hostyard mail dns` prints.
APT_PACKAGES=(ca-certificates curl docker.io iptables haproxy git restic rsync procps bind9-dnsutils)
# The Debian release a server needs (its HAProxy 3.0, etcd 3.5, systemd 257
# and Docker 26 are what the units and images are made for).
NEED_VERSION=13
NEED_RELEASE="Debian 13 (trixie)"
START_WAIT_SECS=120
ETCD_CHECK_SECS=${ETCD_CHECK_SECS:-15}
# The hostyard binary that reads the config (set by find_reader).
READER=""
# etcd.endpoints of the config, and whether they are all on loopback.
ENDPOINTS=()
LOCAL_ETCD=1
# Set when this run changed something.
CHANGED=0

changed() {
  CHANGED=1
  note "$*"
}

usage() {
  printf 'usage: %s [--binaries DIR] [--images DIR]\n' "${0##*/}" >&2
  exit 2
}

parse_args() {
  while [ $# -gt 0 ]; do
    case $1 in
      --binaries)
        [ $# -ge 2 ] || usage
        BINARIES_DIR=$2
        shift 2
        ;;
      --images)
        [ $# -ge 2 ] || usage
        IMAGES_DIR=$2
        shift 2
        ;;
      -h | --help) usage ;;
      *) usage ;;
    esac
  done
}

# check_release: stop, having changed nothing, unless this is Debian 13 or
# newer. Debian testing and unstable have no VERSION_ID: newer, so fine.
check_release() {
  local id version codename found
  id=$(os_release ID)
  version=$(os_release VERSION_ID)
  codename=$(os_release VERSION_CODENAME)
  found=$(os_release PRETTY_NAME)
  [ "$id" != debian ] || found="Debian ${version:-$codename}${codename:+ ($codename)}"
  if [ "$id" != debian ] || { [ -n "$version" ] && ! [[ $version =~ ^[0-9]+$ && $version -ge $NEED_VERSION ]]; }; then
    die "this server runs ${found:-an unknown system (no ${OS_RELEASE:-/etc/os-release})}; hostyard needs $NEED_RELEASE or newer:" \
      "upgrade the release first (docs/upgrades.md). Nothing was changed."
  fi
}

# find_reader: the hostyard binary that reads the config. The config is read
# by `hostyard config get` (the parser the binaries use: lists, defaults and
# validation included), but where the installed binaries are, bin_dir, is
# itself in the config. So: the hostyard of --binaries DIR when given (a
# first install always has it), else the installed one on PATH or in the
# default bin_dir. A server whose config moves bin_dir off PATH passes
# --binaries.
find_reader() {
  if [ -n "$BINARIES_DIR" ]; then
    READER=$BINARIES_DIR/hostyard
  else
    READER=$(command -v hostyard || echo /usr/local/bin/hostyard)
  fi
  [ -x "$READER" ] ||
    die "$READER is missing or not executable: pass --binaries DIR (see --help) with the hostyard binaries"
}

# hostyard ARGS...: the reader with this run's config. Its one-line error
# (an invalid config) stops setup.
hostyard() {
  "$READER" --config "$CONFIG" "$@" || die "hostyard $* failed (above)"
}

# config_get KEY: a value of the node config, one line per list item. An
# invalid config or unknown key stops setup with hostyard's one-line error.
config_get() { hostyard config get "$1"; }

# names WHAT: hostyard's names of binaries, images, target, services or
# dirs, one per line (`hostyard names --help`).
names() { hostyard names "$1"; }

# read_etcd: ENDPOINTS from the config; LOCAL_ETCD=0 when any is elsewhere.
read_etcd() {
  local endpoints placement
  endpoints=$(config_get etcd.endpoints)
  mapfile -t ENDPOINTS <<<"$endpoints"
  placement=$(hostyard etcd placement)
  [ "$placement" = local ] || LOCAL_ETCD=0
}

# check_cluster: with endpoints elsewhere this server joins an existing
# cluster and runs no member of its own, so the cluster must answer before
# anything else changes. `hostyard etcd check` probes them with the etcd
# client the services use, for up to ETCD_CHECK_SECS; one that answers is
# enough (the client fails over between them). It prints what answered,
# or fails with one line naming each endpoint's error and the fix.
check_cluster() {
  step "etcd: joining the cluster at ${ENDPOINTS[*]}"
  local out line
  if ! out=$("$READER" --config "$CONFIG" etcd check --timeout "$ETCD_CHECK_SECS" 2>&1); then
    line=$(printf '%s\n' "$out" | tail -n 1)
    die "${line#hostyard: } Nothing else was changed."
  fi
  while IFS= read -r line; do note "$line"; done <<<"$out"
  note "no local etcd member: hostyard's units use the cluster"
}

install_packages() {
  # A member of its own only when the config keeps etcd on loopback.
  [ "$LOCAL_ETCD" = 0 ] || APT_PACKAGES+=(etcd-server)
  step "apt packages: ${APT_PACKAGES[*]}"
  apt_ensure "${APT_PACKAGES[@]}"
  [ ${#APT_INSTALLED[@]} -eq 0 ] || CHANGED=1
  # Debian's haproxy package starts its own haproxy.service. hostyard's unit
  # of the same name (in /etc/systemd/system, so it wins) runs HAProxy in a
  # container; the packaged one must not keep running under that name, or
  # starting hostyard.target would find "haproxy.service" already active.
  if [ ! -f "$UNIT_DIR/haproxy.service" ]; then
    if systemctl is-active -q haproxy.service || systemctl is-enabled -q haproxy.service 2>/dev/null; then
      changed "stopping and disabling Debian's haproxy.service (hostyard's replaces it)"
      systemctl disable --now -q haproxy.service
    fi
  fi
}

# The files of a fleet member's etcd (docs/fleet.md): deploy/ puts the
# fleet CA, this server's certificate and key (root, 0600) and member.env
# (`hostyard fleet member-env`) in this directory.
ETCD_TLS_DIR=/etc/hostyard/etcd
# etcd runs as user etcd and may not read root's key: it gets a copy of its
# own, 0600 too.
ETCD_MEMBER_DIR=/var/lib/etcd/hostyard-tls
ETCD_DROPIN=/etc/systemd/system/etcd.service.d/hostyard.conf

# etcd_dropin: the drop-in of a fleet member's etcd.service.
etcd_dropin() {
  local bridge chain
  printf '%s\n' "# Written by hostyard's setup.sh: this server is a fleet member." \
    "[Service]" "EnvironmentFile=$ETCD_TLS_DIR/member.env"
  # Set again before every start (iptables rules do not survive a reboot);
  # delete first, so there is always exactly one. INPUT: this member's own
  # ports; DOCKER-USER: the other members' (the traffic would leave
  # masqueraded as this server, a peer). Docker rewrites FORWARD when it
  # makes a network (a rule there was gone after the first site started);
  # DOCKER-USER is the chain it leaves to the host and jumps to first. It
  # is made here when etcd starts before Docker, which then uses it.
  printf '%s\n' "ExecStartPre=-+/usr/sbin/iptables -w -N DOCKER-USER"
  for chain in INPUT DOCKER-USER; do
    for bridge in docker0 br-+; do
      printf 'ExecStartPre=-+/usr/sbin/iptables -w -D %s -i %s -p tcp --dport 2379:2381 -j REJECT\n' "$chain" "$bridge"
      printf 'ExecStartPre=+/usr/sbin/iptables -w -I %s -i %s -p tcp --dport 2379:2381 -j REJECT\n' "$chain" "$bridge"
    done
  done
}

# etcd_member: a fleet member's etcd (a local member with TLS files in the
# config) gets member.env through a drop-in, its own copy of the key, and
# a firewall rule that refuses etcd's ports to anything arriving from a
# Docker bridge: the sites' containers cannot reach the member's listeners
# on the private address. Restarts etcd when any of it changed (the package
# started it with Debian's defaults).
etcd_member() {
  local ca
  ca=$(config_get etcd.ca_file)
  [ "$LOCAL_ETCD" = 1 ] && [ -n "$ca" ] || return 0
  step "etcd member with TLS ($ETCD_TLS_DIR)"
  local f n=0 dropin
  for f in ca.pem server.pem server.key member.env; do
    [ -s "$ETCD_TLS_DIR/$f" ] || die "$ETCD_TLS_DIR/$f is missing: deploy/server.sh add NAME writes it from the jump box"
  done
  install -d -o etcd -g etcd -m 0700 "$ETCD_MEMBER_DIR"
  for f in server.pem:member.pem server.key:member.key; do
    if ! cmp -s "$ETCD_TLS_DIR/${f%%:*}" "$ETCD_MEMBER_DIR/${f#*:}"; then
      install -o etcd -g etcd -m 0600 "$ETCD_TLS_DIR/${f%%:*}" "$ETCD_MEMBER_DIR/${f#*:}"
      changed "installed $ETCD_MEMBER_DIR/${f#*:}"
      n=$((n + 1))
    fi
  done
  dropin=$(etcd_dropin)
  if [ "$(cat "$ETCD_DROPIN" 2>/dev/null)" != "$dropin" ]; then
    mkdir -p "$(dirname "$ETCD_DROPIN")"
    printf '%s\n' "$dropin" >"$ETCD_DROPIN.tmp"
    mv "$ETCD_DROPIN.tmp" "$ETCD_DROPIN"
    systemctl daemon-reload
    changed "wrote $ETCD_DROPIN"
    n=$((n + 1))
  fi
  if [ "$n" -gt 0 ] && systemctl is-active -q etcd.service; then
    systemctl restart etcd.service
    changed "restarted etcd.service with the member's settings"
  fi
  [ "$n" -gt 0 ] || note "up to date"
}

# The peer frontend (fleet.private_address, fleet.peer_port) takes only
# mutual TLS from the fleet's servers; a site's container must not reach it
# at all, on this server or another (its traffic to another server leaves
# masqueraded as this one, a peer). The same two chains as etcd's ports,
# for every fleet server (member or client): INPUT for this server's own
# port, DOCKER-USER for the others'. Applied now and before every start of
# HAProxy (iptables rules do not survive a reboot), deleted first so there
# is always exactly one.
PEER_DROPIN=/etc/systemd/system/haproxy.service.d/hostyard-peers.conf

# peer_rules PORT ACTION: the iptables commands, one a line (ACTION -D or -I).
peer_rules() {
  local chain bridge
  for chain in INPUT DOCKER-USER; do
    for bridge in docker0 br-+; do
      printf '/usr/sbin/iptables -w %s %s -i %s -p tcp --dport %s -j REJECT\n' "$2" "$chain" "$bridge" "$1"
    done
  done
}

peer_firewall() {
  local address port dropin rule
  address=$(config_get fleet.private_address)
  if [ -z "$address" ]; then
    if [ -f "$PEER_DROPIN" ]; then
      rm -f "$PEER_DROPIN"
      systemctl daemon-reload
      changed "removed $PEER_DROPIN (no peer frontend)"
    fi
    return 0
  fi
  step "the peer frontend's port, closed to site containers"
  port=$(config_get fleet.peer_port)
  dropin=$(
    printf '%s\n' "# Written by hostyard's setup.sh: site containers never reach the peer frontend." \
      "[Service]" "ExecStartPre=-+/usr/sbin/iptables -w -N DOCKER-USER"
    peer_rules "$port" -D | sed 's/^/ExecStartPre=-+/'
    peer_rules "$port" -I | sed 's/^/ExecStartPre=+/'
  )
  if [ "$(cat "$PEER_DROPIN" 2>/dev/null)" != "$dropin" ]; then
    mkdir -p "$(dirname "$PEER_DROPIN")"
    printf '%s\n' "$dropin" >"$PEER_DROPIN.tmp"
    mv "$PEER_DROPIN.tmp" "$PEER_DROPIN"
    systemctl daemon-reload
    changed "wrote $PEER_DROPIN"
  fi
  /usr/sbin/iptables -w -N DOCKER-USER 2>/dev/null || true
  while read -r rule; do
    # shellcheck disable=SC2086 # the rule's words
    $rule 2>/dev/null || true
  done < <(peer_rules "$port" -D)
  while read -r rule; do
    # shellcheck disable=SC2086 # the rule's words
    $rule || die "cannot add the peer frontend's firewall rule: $rule"
  done < <(peer_rules "$port" -I)
  note "port $port refused from docker0 and br-+ (INPUT, DOCKER-USER)"
}

install_binaries() {
  local bin_dir=$1 b
  step "hostyard binaries in $bin_dir"
  mkdir -p "$bin_dir"
  if [ -z "$BINARIES_DIR" ]; then
    for b in "${BINARIES[@]}"; do
      [ -x "$bin_dir/$b" ] || die "$bin_dir/$b is missing: pass --binaries DIR (see --help)"
    done
    note "no --binaries given: keeping the installed ones"
    return
  fi
  for b in "${BINARIES[@]}"; do
    [ -f "$BINARIES_DIR/$b" ] || die "$BINARIES_DIR/$b not found"
  done
  local n=0
  for b in "${BINARIES[@]}"; do
    if cmp -s "$BINARIES_DIR/$b" "$bin_dir/$b"; then
      continue
    fi
    # install writes a temp file and renames it: a running binary is not
    # overwritten in place.
    install -m 0755 "$BINARIES_DIR/$b" "$bin_dir/$b"
    changed "installed $bin_dir/$b"
    n=$((n + 1))
  done
  [ "$n" -gt 0 ] || note "up to date"
}

write_config() {
  step "node config $CONFIG"
  if [ -f "$CONFIG" ]; then
    note "exists, left as it is"
    return
  fi
  mkdir -p "$(dirname "$CONFIG")"
  cat >"$CONFIG.tmp" <<'EOF'
# hostyard node config. Every field has a default; this file sets none, so
# the server uses them all. docs/reference/config.md lists every field.
EOF
  mv "$CONFIG.tmp" "$CONFIG"
  changed "created with all defaults"
}

make_layout() {
  local root=$1 dirs _role dir n=0
  step "data layout under $root"
  dirs=$(names dirs)
  while read -r _role dir; do
    if [ ! -d "$dir" ]; then
      mkdir -p "$dir"
      changed "created $dir"
      n=$((n + 1))
    fi
  done <<<"$dirs"
  [ "$n" -gt 0 ] || note "up to date"
}

images() {
  step "images${IMAGES_DIR:+ from $IMAGES_DIR}"
  local images kind name tar want have n=0
  # KIND NAME lines: the kind names the tarball, the config the image.
  images=$(names images)
  # fd 3: apt-get and docker in the loop must not read the list.
  while read -r kind name <&3; do
    have=$(docker image inspect --format '{{.Id}}' "$name" 2>/dev/null || true)
    have=${have#sha256:}
    tar=${IMAGES_DIR:+$IMAGES_DIR/$kind.tar}
    if [ -n "$tar" ] && [ -f "$tar" ]; then
      want=$(hostyard image-id "$tar")
      if [ "$have" = "$want" ]; then
        continue
      fi
      docker load --quiet --input "$tar" >/dev/null
      docker tag "$want" "$name"
      changed "loaded $name from $tar"
      n=$((n + 1))
    elif [ -z "$have" ]; then
      [ -d "$repo/dockerfiles" ] || die "image $name missing and no $kind.tar in --images"
      # base-image.sh needs debootstrap to make debian:trixie-slim.
      dpkg-query -W -f='${db:Status-Status}' debootstrap 2>/dev/null | grep -qx installed ||
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends debootstrap >/dev/null
      HOSTYARD=$READER "$repo/scripts/images.sh" build "$kind"
      [ "$name" = "hostyard/$kind" ] || docker tag "hostyard/$kind" "$name"
      changed "built $name"
      n=$((n + 1))
    fi
  done 3<<<"$images"
  [ "$n" -gt 0 ] || note "up to date"
}

generate() {
  local bin_dir=$1 rc=0
  step "units in $UNIT_DIR"
  "$bin_dir/hostyard" --config "$CONFIG" generate --check --out "$UNIT_DIR" >/dev/null 2>&1 || rc=$?
  case $rc in
    0)
      note "up to date"
      return
      ;;
    1) ;;
    *) "$bin_dir/hostyard" --config "$CONFIG" generate --check --out "$UNIT_DIR" || die "hostyard generate refused the config" ;;
  esac
  local out
  out=$("$bin_dir/hostyard" --config "$CONFIG" generate --out "$UNIT_DIR" 2>&1) ||
    die "hostyard generate failed: $out"
  printf '%s\n' "$out" | sed 's/^/    /' >&2
  systemctl daemon-reload
  changed "generated units; systemctl daemon-reload"
  # A running unit keeps what it started with; restarting HAProxy or a site
  # is the operator's call (it interrupts), so say which ones changed.
  if printf '%s\n' "$out" | grep -q '^updated '; then
    note "running units keep their old settings until restarted (systemctl restart UNIT): the updated files are listed above"
  fi
}

# enable_start UNIT: enable and start UNIT unless it already is.
enable_start() {
  local unit=$1
  if ! systemctl is-enabled -q "$unit" 2>/dev/null; then
    systemctl enable -q "$unit"
    changed "enabled $unit"
  fi
  if ! systemctl is-active -q "$unit"; then
    systemctl start "$unit"
    changed "started $unit"
  fi
}

services() {
  local target services unit
  target=$(names target)
  services=$(names services)
  enable_start docker.service
  # haproxy-confd.service is ordered After=etcd.service (ordering only, no
  # Wants= or Requires=): with no local member that unit does not exist and
  # systemd ignores the ordering, so the units are the same either way and
  # confd reaches the cluster from the endpoints in the config.
  if [ "$LOCAL_ETCD" = 1 ]; then
    step "services: docker, etcd, $target"
    enable_start etcd.service
  else
    step "services: docker, $target (etcd: the cluster at ${ENDPOINTS[*]})"
    ! systemctl is-active -q etcd.service ||
      note "a local etcd.service runs but the config uses the cluster: left as it is"
  fi
  enable_start "$target"
  # An active target does not start what an update made it want (such as
  # postfix-tls.path): starting it again does, and is a no-op otherwise.
  systemctl start "$target"
  # The target only Wants its units: check what it pulled in answers.
  for unit in $services; do
    wait_for "$START_WAIT_SECS" "$unit to be active" systemctl is-active -q "$unit" ||
      die "$unit is not active: systemctl status $unit; journalctl -u $unit"
  done
  note "${services//$'\n'/, } are active"
}

# backups: with backup.repository set, its password file and repository
# (hostyard backup init makes what is missing and touches nothing else).
backups() {
  local repository out
  repository=$(config_get backup.repository)
  [ -n "$repository" ] || return 0
  step "backups: the restic repository $repository"
  out=$(hostyard backup init) || die "hostyard backup init failed (above)"
  if printf '%s\n' "$out" | grep -q '^made \|^created '; then
    changed "$out"
  else
    note "$out"
  fi
}

main() {
  parse_args "$@"
  check_release
  need_root "set up a server"
  [ -d /run/systemd/system ] || die "systemd is not running (PID 1): hostyard needs a systemd server"
  local bin_dir data_root
  find_reader
  # A missing config is written with all defaults, so etcd on loopback: the
  # only change that can come before the cluster check.
  write_config
  bin_dir=$(config_get bin_dir)
  data_root=$(config_get data_root)
  local binaries
  binaries=$(names binaries)
  mapfile -t BINARIES <<<"$binaries"
  read_etcd
  [ "$LOCAL_ETCD" = 1 ] || check_cluster
  install_packages
  etcd_member
  peer_firewall
  install_binaries "$bin_dir"
  make_layout "$data_root"
  images
  generate "$bin_dir"
  backups
  services
  if [ "$CHANGED" = 1 ]; then
    step "done: this server is set up (changes above)"
  else
    step "done: nothing to change"
  fi
}

main "$@"
