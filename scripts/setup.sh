#!/usr/bin/env bash
# Turns a fresh Debian 12 server into a hostyard server. Idempotent: a second
# run finds everything in place, changes nothing and says so. Every change is
# printed; nothing secret is.
#
# What it does, in order:
#   1. apt: docker.io + iptables, etcd-server (a single member on loopback:
#      Debian's defaults), haproxy (its `haproxy -c` validates confd's
#      configs; Debian's own haproxy.service is stopped and disabled, since
#      hostyard's haproxy.service replaces it), git (imports and pulls);
#   2. the hostyard binaries into bin_dir, from --binaries DIR;
#   3. /etc/hostyard/hostyard.yaml if missing (all defaults), the data layout;
#   4. the images: loaded from --images DIR (tarballs of scripts/images.sh
#      save), or built from this checkout's dockerfiles/ when missing;
#   5. `hostyard generate --out /etc/systemd/system`, daemon-reload;
#   6. enables and starts docker, etcd and hostyard.target.
#
# usage: scripts/setup.sh [--binaries DIR] [--images DIR]
#   --binaries DIR  (or HOSTYARD_BINARIES) a directory with hostyard,
#                   hostyard-confd, hostyard-discovery, hostyard-import and
#                   hostyard-gitpull: `target/release` of a `cargo build
#                   --release` of this repository (on any Debian 12 machine),
#                   copied to the server. Without it the binaries must be in
#                   bin_dir already.
#   --images DIR    (or HOSTYARD_IMAGES) <kind>.tar files from
#                   `scripts/images.sh save DIR`
#   HOSTYARD_CONFIG the node config (default /etc/hostyard/hostyard.yaml)
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=scripts/lib/log.sh
. "$repo/scripts/lib/log.sh"
# shellcheck source=scripts/lib/apt.sh
. "$repo/scripts/lib/apt.sh"
# shellcheck source=scripts/lib/images.sh
. "$repo/scripts/lib/images.sh"

CONFIG=${HOSTYARD_CONFIG:-/etc/hostyard/hostyard.yaml}
BINARIES_DIR=${HOSTYARD_BINARIES:-}
IMAGES_DIR=${HOSTYARD_IMAGES:-}
UNIT_DIR=/etc/systemd/system
BINARIES=(hostyard hostyard-confd hostyard-discovery hostyard-import hostyard-gitpull)
APT_PACKAGES=(ca-certificates docker.io iptables etcd-server haproxy git)
START_WAIT_SECS=120
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

# config_get KEY DEFAULT: a scalar of the node config, "key" at the top level
# or "section.key" one level down, in the block style this script writes and
# the README shows. Quotes and trailing comments are stripped; a missing file
# or key gives DEFAULT. (The binaries parse the file for real and refuse what
# is wrong; this only finds paths and image names.)
config_get() {
  local key=$1 default=$2 value=""
  if [ -f "$CONFIG" ]; then
    value=$(awk -v want="$key" '
      /^[[:space:]]*(#|$)/ { next }
      /^[^[:space:]]/ { section = "" }
      {
        line = $0
        indented = (line ~ /^[[:space:]]/)
        sub(/^[[:space:]]+/, "", line)
        k = line; sub(/:.*/, "", k)
        v = line; sub(/^[^:]*:[[:space:]]*/, "", v)
        sub(/(^|[[:space:]]+)#.*$/, "", v)
        gsub(/^["'\'']|["'\'']$/, "", v)
        if (!indented && v == "") { section = k; next }
        full = (indented && section != "") ? section "." k : k
        if (full == want) { print v; exit }
      }' "$CONFIG")
  fi
  printf '%s\n' "${value:-$default}"
}

install_packages() {
  step "apt packages: ${APT_PACKAGES[*]}"
  local missing
  mapfile -t missing < <(apt_missing "${APT_PACKAGES[@]}")
  if [ ${#missing[@]} -eq 0 ]; then
    note "all installed"
  else
    changed "installing: ${missing[*]}"
    apt_install "${missing[@]}"
  fi
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
# the server uses them all. README.md ("Config") lists every field.
EOF
  mv "$CONFIG.tmp" "$CONFIG"
  changed "created with all defaults"
}

make_layout() {
  local root=$1 dir n=0
  step "data layout under $root"
  for dir in "$root" "$root/domains" "$root/import" "$root/runtime" "$root/runtime/haproxy" "$root/runtime/postfix"; do
    if [ ! -d "$dir" ]; then
      mkdir -p "$dir"
      changed "created $dir"
      n=$((n + 1))
    fi
  done
  [ "$n" -gt 0 ] || note "up to date"
}

# image_key KIND: the node config's key of a kind's image name.
image_key() { printf 'images.%s' "${1//-/_}"; }

images() {
  step "images${IMAGES_DIR:+ from $IMAGES_DIR}"
  local kind name tar want have n=0
  for kind in "${IMAGE_KINDS[@]}"; do
    name=$(config_get "$(image_key "$kind")" "hostyard/$kind")
    have=$(docker image inspect --format '{{.Id}}' "$name" 2>/dev/null || true)
    have=${have#sha256:}
    tar=${IMAGES_DIR:+$IMAGES_DIR/$kind.tar}
    if [ -n "$tar" ] && [ -f "$tar" ]; then
      want=$(tar_image_id "$tar") || die "$tar holds no docker image manifest"
      if [ "$have" = "$want" ]; then
        continue
      fi
      docker load --quiet --input "$tar" >/dev/null
      docker tag "$want" "$name"
      changed "loaded $name from $tar"
      n=$((n + 1))
    elif [ -z "$have" ]; then
      [ -d "$repo/dockerfiles" ] || die "image $name missing and no $kind.tar in --images"
      # base-image.sh needs debootstrap to make debian:bookworm-slim.
      dpkg-query -W -f='${db:Status-Status}' debootstrap 2>/dev/null | grep -qx installed ||
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends debootstrap >/dev/null
      "$repo/scripts/images.sh" build "$kind"
      [ "$name" = "hostyard/$kind" ] || docker tag "hostyard/$kind" "$name"
      changed "built $name"
      n=$((n + 1))
    fi
  done
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
  step "services: docker, etcd, hostyard.target"
  enable_start docker.service
  enable_start etcd.service
  enable_start hostyard.target
  # hostyard.target only Wants its units: check what it pulled in answers.
  local unit
  for unit in haproxy-confd.service haproxy.service; do
    wait_for "$START_WAIT_SECS" "$unit to be active" systemctl is-active -q "$unit" ||
      die "$unit is not active: systemctl status $unit; journalctl -u $unit"
  done
  note "haproxy-confd.service and haproxy.service are active"
}

main() {
  parse_args "$@"
  need_root "set up a server"
  [ -d /run/systemd/system ] || die "systemd is not running (PID 1): hostyard needs a systemd server"
  local bin_dir data_root
  install_packages
  write_config
  bin_dir=$(config_get bin_dir /usr/local/bin)
  data_root=$(config_get data_root /data)
  install_binaries "$bin_dir"
  make_layout "$data_root"
  images
  generate "$bin_dir"
  services
  if [ "$CHANGED" = 1 ]; then
    step "done: this server is set up (changes above)"
  else
    step "done: nothing to change"
  fi
}

main "$@"
