#!/usr/bin/env bash
# Provides the `haproxy` and `etcd` of Debian 13 for the tests and benches,
# and prints the directory that holds them (put it first on PATH).
#
# Servers run Debian 13 (HAProxy 3.0, etcd 3.5); tests must run the same,
# also on an older development machine whose apt has other versions
# (Debian 12: HAProxy 2.6, etcd 3.4).
# - On Debian 13 it installs apt's haproxy and etcd-server and links them.
# - On an older release it makes, once, a Debian 13 root file system with
#   debootstrap (haproxy and etcd-server in it, 30 s to 2 min) and writes
#   wrappers that run the root's binaries with the root's own dynamic loader
#   and libraries. No chroot: the binaries see the host's files (the tests'
#   temp dirs, configs and sockets), only their libraries are Debian 13's.
#   The cache is built aside and renamed into place, so a half-made one is
#   never used; a cache of an older recipe is made anew.
#
# usage: PATH="$(scripts/test-tools.sh):$PATH"
# Progress goes to stderr, the bin dir alone to stdout.
# env: TEST_TOOLS_CACHE (default /var/cache/hostyard-test/trixie-tools),
#      MIRROR (default: the mirror apt uses here).
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=scripts/lib/log.sh
. "$repo/scripts/lib/log.sh"
# shellcheck source=scripts/lib/apt.sh
. "$repo/scripts/lib/apt.sh"

CACHE=${TEST_TOOLS_CACHE:-/var/cache/hostyard-test/trixie-tools}
RELEASE=trixie
# Bump when what the cache holds changes: an older cache is then made anew.
RECIPE="1 $RELEASE haproxy etcd-server"
# What the harness accepts (crates/hostyard-testsupport/src/process.rs).
WANT_HAPROXY=3.0
WANT_ETCD=3.5
# The loader and library dirs of an amd64 Debian root.
LOADER=lib64/ld-linux-x86-64.so.2
LIBDIRS=usr/lib/x86_64-linux-gnu:lib/x86_64-linux-gnu
# Free space build() wants beside the cache, in MB.
NEED_MB=500

# host_codename: VERSION_CODENAME of this machine's release.
host_codename() {
  (
    # shellcheck disable=SC1091 # the host's file, not the repository's
    . /etc/os-release
    echo "${VERSION_CODENAME:-}"
  )
}

# check_versions BIN_DIR: both tools run and are the versions servers run;
# otherwise says why and returns 1.
check_versions() {
  local bin=$1 out
  if ! out=$("$bin/haproxy" -vv 2>&1); then
    note "$bin/haproxy -vv failed: $(head -n 3 <<<"$out")"
    return 1
  fi
  if ! [[ $out =~ ^HAProxy\ version\ ${WANT_HAPROXY//./\\.}\. ]]; then
    note "$bin/haproxy is not HAProxy $WANT_HAPROXY: $(head -n 1 <<<"$out")"
    return 1
  fi
  # -vv lists the libraries it loaded; Lua is one the root must provide.
  if ! grep -q '^Built with Lua' <<<"$out"; then
    note "$bin/haproxy -vv shows no Lua: $(head -n 1 <<<"$out")"
    return 1
  fi
  note "$(head -n 1 <<<"$out")"
  if ! out=$("$bin/etcd" --version 2>&1); then
    note "$bin/etcd --version failed: $(head -n 3 <<<"$out")"
    return 1
  fi
  if ! [[ $out =~ ^etcd\ Version:\ ${WANT_ETCD//./\\.}\. ]]; then
    note "$bin/etcd is not etcd $WANT_ETCD: $(head -n 1 <<<"$out")"
    return 1
  fi
  note "$(head -n 1 <<<"$out")"
}

# On Debian 13: apt's own packages, linked into the bin dir so callers
# always get a directory holding just these two.
native() {
  step "Debian 13 here: apt's haproxy and etcd-server"
  apt_ensure haproxy etcd-server
  mkdir -p "$CACHE/bin"
  ln -sfn /usr/sbin/haproxy "$CACHE/bin/haproxy"
  ln -sfn /usr/bin/etcd "$CACHE/bin/etcd"
  check_versions "$CACHE/bin" || die "apt's haproxy or etcd-server is not what Debian 13 ships"
}

# wrapper ROOT_REL PROGRAM DYNAMIC: a wrapper script on stdout running
# PROGRAM (a path inside the root) with the root's loader when DYNAMIC=1.
# The wrapper finds the root next to its own directory, so the tree can
# be renamed into place after it is written.
wrapper() {
  local program=$1 dynamic=$2
  cat <<EOF
#!/bin/sh
# Written by scripts/test-tools.sh: Debian 13's /$program from the root
# next to this directory, with that root's own loader and libraries.
case \$0 in /*) self=\$0 ;; *) self=\$(pwd)/\$0 ;; esac
root=\${self%/bin/*}/root
EOF
  if [ "$dynamic" = 1 ]; then
    # --argv0: HAProxy's master re-executes argv[0] on reload; that must
    # be this wrapper again, not the root's binary under the host's loader.
    cat <<EOF
exec "\$root/$LOADER" --argv0 "\$self" \\
  --library-path "\$root/${LIBDIRS//:/:\$root/}" "\$root/$program" "\$@"
EOF
  else
    echo "exec \"\$root/$program\" \"\$@\""
  fi
}

# build: debootstrap the root in a temp dir beside the cache, write the
# wrappers, check them, then rename the whole tree into place.
build() {
  need_root "debootstrap a Debian 13 root into $CACHE"
  step "checking apt packages for the Debian 13 root"
  apt_ensure debootstrap
  local mirror parent tmp
  mirror=$(debian_mirror)
  [ -n "$mirror" ] || die "$NO_MIRROR"
  parent=$(dirname "$CACHE")
  mkdir -p "$parent"
  # debootstrap on a full disk fails with a misleading "file already
  # exists"; say what is wrong instead. The root takes about 180 MB, twice
  # that while a cache is replaced.
  local free_mb
  free_mb=$(df -Pk "$parent" | awk 'NR == 2 { print int($4 / 1024) }')
  ((free_mb >= NEED_MB)) ||
    die "only $free_mb MB free in $parent, the Debian 13 root needs $NEED_MB MB: free some, or set TEST_TOOLS_CACHE to a dir elsewhere"
  tmp=$(mktemp -d "$parent/.${CACHE##*/}.XXXXXX")
  # shellcheck disable=SC2064 # expand $tmp now: it is local to build
  trap "rm -rf '$tmp'" EXIT
  step "debootstrap $RELEASE with haproxy and etcd-server from $mirror (30 s to 2 min)"
  debootstrap --variant=minbase --include=haproxy,etcd-server "$RELEASE" "$tmp/root" "$mirror" \
    >"$tmp/debootstrap.log" 2>&1 ||
    die "debootstrap failed; its log ends with: $(tail -n 5 "$tmp/debootstrap.log" | tr '\n' ' ')"
  rm -rf "$tmp"/root/var/cache/apt/archives/*.deb "$tmp"/root/var/lib/apt/lists/*
  [ -x "$tmp/root/$LOADER" ] || die "no loader $LOADER in the $RELEASE root (not amd64?)"
  mkdir "$tmp/bin"
  local name program dynamic
  for name in haproxy etcd; do
    case $name in
      haproxy) program=usr/sbin/haproxy ;;
      etcd) program=usr/bin/etcd ;;
    esac
    # Go builds may be static; the loader refuses to run those.
    dynamic=0
    "$tmp/root/$LOADER" --verify "$tmp/root/$program" >/dev/null 2>&1 && dynamic=1
    wrapper "$program" "$dynamic" >"$tmp/bin/$name"
    chmod 755 "$tmp/bin/$name"
  done
  check_versions "$tmp/bin" || die "the new $RELEASE root's tools fail their check; it is removed"
  echo "$RECIPE" >"$tmp/recipe"
  chmod 755 "$tmp"
  if [ -e "$CACHE" ]; then
    note "replacing $CACHE (recipe: $(cat "$CACHE/recipe" 2>/dev/null || echo none))"
    local old
    old=$(mktemp -d "$parent/.${CACHE##*/}.old.XXXXXX")
    mv "$CACHE" "$old/"
    rm -rf "$old"
  fi
  mv "$tmp" "$CACHE"
  note "made $CACHE ($(du -sh "$CACHE" | cut -f1))"
}

main() {
  [ $# -eq 0 ] || { echo "usage: PATH=\"\$(${0##*/}):\$PATH\"" >&2; exit 2; }
  mkdir -p "$(dirname "$CACHE")" 2>/dev/null || true
  # One run at a time per cache: two test runs starting together would
  # otherwise both debootstrap and race on the rename.
  exec 9>>"$(dirname "$CACHE")/.${CACHE##*/}.lock" ||
    die "cannot create a lock beside $CACHE (run as root, or set TEST_TOOLS_CACHE)"
  flock 9
  if [ "$(host_codename)" = "$RELEASE" ]; then
    native
  elif [ "$(cat "$CACHE/recipe" 2>/dev/null)" = "$RECIPE" ]; then
    step "Debian 13 haproxy and etcd from $CACHE"
    # A cache damaged since (files removed by hand) is made anew.
    check_versions "$CACHE/bin" || build
  else
    build
  fi
  echo "$CACHE/bin"
}

# Run main unless sourced (sourcing gives the functions alone).
if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then
  main "$@"
fi
