#!/usr/bin/env bash
# A hostyard server in a container, on this machine: boots a Debian 13 with
# systemd as PID 1 (and Docker inside it), runs scripts/setup.sh in it with
# this checkout's release binaries and images, starts two sample sites and
# checks they answer through HAProxy, published on 127.0.0.1:8080:
# static@example.com from an import folder, and static-git@git.example.com
# from a sample repository that a `git daemon` on the box's loopback serves.
#
# On a fresh Debian 12 or 13 machine (as root) it installs the Debian packages
# it needs itself. Where cargo is missing it installs Debian 13's own (Rust
# 1.85, the workspace's rust-version); Debian 12's is too old, so there it
# stops and names rustup.
#
# Caches, reused by the next run: the systemd rootfs image (debootstrap,
# about a minute the first time), the site images (docker build's layer cache
# and their tarballs in $CACHE/images), and the box's /var/lib/docker volume.
# The box container itself is made anew on every run.
#
# usage: scripts/server-in-a-box.sh [up]   (as root; CARGO_TARGET_DIR is honoured)
#        scripts/server-in-a-box.sh image  only build the systemd rootfs image
#        scripts/server-in-a-box.sh down   remove the box
#   BOX=name       the container's name (default hostyard-box); its docker
#                  volume is <name>-docker
#   BOX_PORT=8080  the host port (on 127.0.0.1) HAProxy's port 80 is published on;
#                  "auto" lets docker pick a free one (printed, and readable
#                  with `docker port <name> 80/tcp`)
#   KEEP_BOX=0     remove the box at the end instead of leaving it running
#   SAMPLE_SITE=0  stop after setup.sh, no sample sites (tests/e2e starts
#                  its own)
#   SETUP=0        stop after the boot: no setup.sh (tests/e2e/fleet.sh sets
#                  its servers up from a jump box)
#   BOX_NETWORK=N  also attach the box to the docker network N (a fleet's)
#   PREPARED=1     the packages, the build and the image tarballs in CACHE
#                  are ready (this script just ran with the same CACHE): only
#                  boot. tests/e2e/fleet.sh boots its other boxes so, together
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=scripts/lib/log.sh
. "$repo/scripts/lib/log.sh"
# shellcheck source=scripts/lib/apt.sh
. "$repo/scripts/lib/apt.sh"

BOX=${BOX:-hostyard-box}
BOX_PORT=${BOX_PORT:-8080}
KEEP_BOX=${KEEP_BOX:-1}
SAMPLE_SITE=${SAMPLE_SITE:-1}
SETUP=${SETUP:-1}
BOX_NETWORK=${BOX_NETWORK:-}
PREPARED=${PREPARED:-0}
CACHE=${CACHE:-/var/cache/hostyard-box}
# The server's Debian release, the one setup.sh needs.
SERVER_RELEASE=trixie
SERVER_IMAGE=hostyard/server-box:$SERVER_RELEASE
TARGET_DIR=${CARGO_TARGET_DIR:-$repo/target}
# The binaries setup.sh installs: `hostyard names binaries` of the build,
# set by build_binaries.
BINARIES=()
SAMPLE_DOMAIN=example.com
SAMPLE_GIT_DOMAIN=git.example.com
# The sample repository's git daemon, on the box's loopback only.
SAMPLE_GIT_URL=git://127.0.0.1:9418/sample.git
BOOT_WAIT_SECS=60
# What this script runs on the machine itself: the docker engine, debootstrap
# for the rootfs images, curl, jq and python3's YAML parser for the checks
# (they read JSON with jq and check the YAML they write), and what `cargo
# build` needs beyond Rust (a C compiler and linker for ring; protoc and the
# well-known .proto files for etcd-client).
APT_PACKAGES=(ca-certificates curl jq python3-yaml debootstrap gcc libc6-dev protobuf-compiler libprotobuf-dev)

# box CMD...: run a command in the box.
box() { docker exec "$BOX" "$@"; }

install_packages() {
  local want=("${APT_PACKAGES[@]}")
  # A machine with another docker engine (docker-ce) keeps it: docker.io
  # would conflict with it.
  command -v dockerd >/dev/null && command -v docker >/dev/null || want+=(docker.io iptables)
  step "apt packages: ${want[*]}"
  apt_ensure "${want[@]}"
}

ensure_docker() {
  command -v docker >/dev/null || die "docker not found: apt-get install docker.io iptables"
  if ! docker info >/dev/null 2>&1; then
    step "starting dockerd (log: /var/log/hostyard-box-dockerd.log)"
    # DOCKER_ALLOW_...: where this machine is itself a container (read-only
    # /proc/sys), Docker 26 would refuse the box; see boot().
    DOCKER_ALLOW_IPV6_ON_IPV4_INTERFACE=1 setsid dockerd >>/var/log/hostyard-box-dockerd.log 2>&1 </dev/null &
    wait_for 60 "docker info" docker info || die "dockerd did not answer"
  fi
}

build_binaries() {
  ensure_cargo "$repo"
  step "building hostyard (release) into $TARGET_DIR"
  local b tmp names
  # Every binary of the workspace; which of them a server gets, the built
  # hostyard says (the names have one home, in the code).
  (cd "$repo" && CARGO_TARGET_DIR=$TARGET_DIR cargo build --release --quiet --workspace --bins)
  # HOSTYARD_CONFIG=/dev/null (empty: all defaults) here and for images.sh:
  # a config this machine may have is not the box's.
  names=$(HOSTYARD_CONFIG=/dev/null "$TARGET_DIR/release/hostyard" names binaries)
  mapfile -t BINARIES <<<"$names"
  # The box mounts a directory holding exactly the binaries setup.sh installs.
  mkdir -p "$CACHE/bin"
  for b in "${BINARIES[@]}"; do
    cmp -s "$TARGET_DIR/release/$b" "$CACHE/bin/$b" && continue
    # Copy, then rename: a box of a parallel run may be reading the old one.
    tmp=$(mktemp "$CACHE/bin/.$b.XXXXXX")
    install -m 0755 "$TARGET_DIR/release/$b" "$tmp"
    mv "$tmp" "$CACHE/bin/$b"
  done
}

# The server's root file system: Debian 13 with systemd, as an image. Built
# once with debootstrap from this machine's mirror (no registry needed).
server_image() {
  if docker image inspect "$SERVER_IMAGE" >/dev/null 2>&1; then
    step "$SERVER_IMAGE exists"
    return
  fi
  command -v debootstrap >/dev/null || die "debootstrap not found: apt-get install debootstrap"
  local mirror root
  mirror=$(debian_mirror)
  [ -n "$mirror" ] || die "$NO_MIRROR"
  root=$(mktemp -d /tmp/server-box.XXXXXX)
  # shellcheck disable=SC2064 # expand $root now: it is local
  trap "rm -rf '$root' '$root.log'" EXIT
  step "debootstrap $SERVER_RELEASE with systemd from $mirror (about a minute)"
  debootstrap --variant=minbase --include=systemd,systemd-sysv,dbus "$SERVER_RELEASE" "$root" "$mirror" \
    >"$root.log" 2>&1 || die "debootstrap failed; see $root.log"
  rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*.bin "$root"/var/cache/apt/archives/*.deb
  # A container has no consoles: gettys would only restart forever.
  ln -sf /dev/null "$root/etc/systemd/system/getty@tty1.service"
  ln -sf /dev/null "$root/etc/systemd/system/console-getty.service"
  step "importing as $SERVER_IMAGE"
  tar -C "$root" -c . | docker import --change 'CMD ["/lib/systemd/systemd"]' - "$SERVER_IMAGE" >/dev/null
  rm -rf "$root" "$root.log"
  trap - EXIT
}

boot() {
  if docker container inspect "$BOX" >/dev/null 2>&1; then
    step "removing the previous $BOX"
    docker rm -f "$BOX" >/dev/null
  fi
  local publish=127.0.0.1:$BOX_PORT:80
  [ "$BOX_PORT" != auto ] || publish=127.0.0.1::80
  step "booting $BOX"
  # The packages setup.sh installs, downloaded once for every box of this
  # cache (apt locks the directory, so boxes set up at once take turns).
  mkdir -p "$CACHE/apt-archives/partial"
  # systemd as PID 1 needs these flags instead of --privileged; Docker
  # inside uses overlay2 on the volume. SIGRTMIN+3 asks systemd for a clean
  # shutdown, so `docker restart` is a real reboot (systemd ignores the
  # default SIGTERM).
  docker run -d --name "$BOX" --hostname "$BOX" \
    --cap-add SYS_ADMIN --cap-add NET_ADMIN \
    --stop-signal SIGRTMIN+3 \
    --security-opt seccomp=unconfined --security-opt apparmor=unconfined \
    --tmpfs /run --tmpfs /run/lock \
    -v /sys/fs/cgroup:/sys/fs/cgroup:rw \
    -v "$BOX-docker:/var/lib/docker" \
    -v "$repo:/hostyard/src:ro" \
    -v "$CACHE/bin:/hostyard/bin:ro" \
    -v "$CACHE/images:/hostyard/images:ro" \
    -v "$CACHE/apt-archives:/var/cache/apt/archives" \
    -p "$publish" \
    ${BOX_NETWORK:+--network "$BOX_NETWORK"} \
    "$SERVER_IMAGE" /lib/systemd/systemd >/dev/null
  # "degraded" is fine: a unit of the minimal rootfs may fail in a container.
  wait_for "$BOOT_WAIT_SECS" "systemd in $BOX" booted ||
    die "systemd in $BOX did not come up: $(box systemctl is-system-running 2>&1 || true)"
  note "systemd is $(box systemctl is-system-running 2>&1 || true)"
  # The box's /proc/sys is read-only (as in every unprivileged container),
  # so Docker 26 inside cannot switch IPv6 off on a bridge container's
  # interface, and without this it refuses to start every container on a
  # docker network. Box only: a real server's dockerd can write it.
  docker exec -i "$BOX" sh -c 'mkdir -p /etc/systemd/system/docker.service.d &&
    cat >/etc/systemd/system/docker.service.d/hostyard-box.conf' <<'EOF'
# server-in-a-box: /proc/sys is read-only here (see scripts/server-in-a-box.sh).
[Service]
Environment=DOCKER_ALLOW_IPV6_ON_IPV4_INTERFACE=1
EOF
  BOX_PORT=$(docker port "$BOX" 80/tcp | head -n 1)
  BOX_PORT=${BOX_PORT##*:}
  note "HAProxy's port 80 is published on 127.0.0.1:$BOX_PORT"
}

booted() {
  local state
  state=$(box systemctl is-system-running 2>/dev/null) || true
  [ "$state" = running ] || [ "$state" = degraded ]
}

# sample_site KIND DOMAIN FILE TEXT: an import folder for KIND@DOMAIN that
# holds TEXT in FILE (below its KIND/ dir), then the site started from it.
sample_site() {
  local kind=$1 domain=$2 file=$3 text=$4 dir
  step "starting $kind@$domain from an import folder"
  dir=/data/import/$domain/$kind
  box mkdir -p "$(dirname "$dir/$file")"
  printf '%s\n' "$text" | docker exec -i "$BOX" sh -c "cat >$dir/$file"
  local t0=$SECONDS
  box systemctl start "$kind@$domain"
  note "systemctl start returned after $((SECONDS - t0)) s"
}

sample_static() {
  sample_site static "$SAMPLE_DOMAIN" www-content/index.html \
    "<h1>$SAMPLE_DOMAIN, served by hostyard in a box</h1>"
}

# The sample repository: one commit with an index.html, in a bare repository
# that `git daemon` serves on the box's loopback (port 9418), as a transient
# unit so systemd keeps it running and stops it with the box. The box is new
# on every run, so this is too.
sample_repo() {
  step "sample repository $SAMPLE_GIT_URL in $BOX"
  docker exec -i "$BOX" bash -euo pipefail <<EOF
git init -q -b main /srv/sample-work
printf '<h1>%s, served by hostyard in a box from git</h1>\n' "$SAMPLE_GIT_DOMAIN" >/srv/sample-work/index.html
git -C /srv/sample-work add index.html
git -C /srv/sample-work -c user.name=hostyard -c user.email=box@$SAMPLE_GIT_DOMAIN commit -qm 'sample site'
mkdir -p /srv/git
git clone -q --bare /srv/sample-work /srv/git/sample.git
systemd-run -q --unit hostyard-sample-git-daemon --property=Type=exec \
  /usr/bin/git daemon --reuseaddr --base-path=/srv/git --export-all \
  --listen=127.0.0.1 --port=9418 /srv/git
EOF
  wait_for 10 "git daemon in $BOX" box git ls-remote "$SAMPLE_GIT_URL" ||
    die "the sample git daemon does not answer: docker exec $BOX journalctl -u hostyard-sample-git-daemon"
  note "edit it in the box: git clone $SAMPLE_GIT_URL; push to /srv/git/sample.git"
}

sample_static_git() {
  sample_site static-git "$SAMPLE_GIT_DOMAIN" GITURL "$SAMPLE_GIT_URL"
}

# check DOMAIN: the site answers 200 through HAProxy on the published port.
check() {
  local domain=$1 out code
  step "GET http://127.0.0.1:$BOX_PORT/ with Host: $domain"
  out=$(curl -sS --max-time 5 -H "Host: $domain" -w '\n%{http_code}' "http://127.0.0.1:$BOX_PORT/") ||
    die "no answer through HAProxy"
  code=${out##*$'\n'}
  out=${out%$'\n'*}
  note "$code ${out%$'\n'}"
  [ "$code" = 200 ] || die "expected 200 for $domain"
}

main() {
  need_root "boot a systemd container"
  case ${1:-up} in
    up) ;;
    image)
      install_packages
      ensure_docker
      server_image
      return
      ;;
    down)
      docker rm -f "$BOX" >/dev/null 2>&1 || true
      step "removed $BOX (its volume $BOX-docker is kept as a cache)"
      return
      ;;
    *)
      printf 'usage: %s [up | image | down]\n' "${0##*/}" >&2
      exit 2
      ;;
  esac
  if [ "$PREPARED" = 1 ]; then
    docker image inspect "$SERVER_IMAGE" >/dev/null 2>&1 || die "PREPARED=1 but there is no $SERVER_IMAGE"
    [ -x "$CACHE/bin/hostyard" ] || die "PREPARED=1 but there is no $CACHE/bin/hostyard"
  else
    install_packages
    ensure_docker
    build_binaries
    HOSTYARD=$TARGET_DIR/release/hostyard HOSTYARD_CONFIG=/dev/null "$repo/scripts/images.sh" save "$CACHE/images"
    server_image
  fi
  boot
  [ "$SETUP" != 0 ] || return 0
  step "running setup.sh in $BOX"
  box /hostyard/src/scripts/setup.sh --binaries /hostyard/bin --images /hostyard/images
  [ "$SAMPLE_SITE" != 0 ] || return 0
  sample_static
  sample_repo
  sample_static_git
  check "$SAMPLE_DOMAIN"
  check "$SAMPLE_GIT_DOMAIN"
  if [ "$KEEP_BOX" = 0 ]; then
    docker rm -f "$BOX" >/dev/null
    step "both sites answered; removed $BOX"
  else
    step "the box runs; reach its sites from this machine with:"
    printf "curl -H 'Host: %s' http://127.0.0.1:%s/\n" "$SAMPLE_DOMAIN" "$BOX_PORT" "$SAMPLE_GIT_DOMAIN" "$BOX_PORT"
    note "a shell in it: docker exec -it $BOX bash; remove it: ${0##*/} down"
  fi
}

main "$@"
