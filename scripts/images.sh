#!/usr/bin/env bash
# Builds hostyard's container images from dockerfiles/ and saves them as
# tarballs, so a server without this checkout's build tools (or without a
# registry, which these machines never reach) can `docker load` them.
#
# Images are named by kind (scripts/images.sh kinds lists them, as
# `hostyard names images` does). A tarball is DIR/<kind>.tar;
# scripts/setup.sh loads it and tags it with the name the node config gives
# that kind.
#
# usage: scripts/images.sh build [KIND...]      build (default: all kinds) as hostyard/<kind>
#        scripts/images.sh save DIR [KIND...]    build, then write DIR/<kind>.tar where it changed
#        scripts/images.sh kinds                 list the kinds
#   HOSTYARD  the hostyard binary asked for the kinds and tarball IDs (default:
#             hostyard on PATH, else this checkout's, built with cargo)
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=scripts/lib/log.sh
. "$repo/scripts/lib/log.sh"
# shellcheck source=scripts/lib/images.sh
. "$repo/scripts/lib/images.sh"

# build KIND...: docker build each kind as hostyard/<kind>. Docker's layer
# cache makes a rebuild of an unchanged Dockerfile take a second.
build() {
  local kind log dockerfile release bases=() build_args
  log=$(mktemp /tmp/hostyard-images.XXXXXX)
  # shellcheck disable=SC2064 # expand $log now: it is local
  trap "rm -f '$log'" EXIT
  for kind in "$@"; do
    dockerfile=$repo/dockerfiles/$(image_dockerfile "$kind")
    mapfile -t build_args < <(image_build_args "$kind")
    # The base each Dockerfile names (debian:trixie-slim for hostyard's
    # images), in FROM or as its ARG DEBIAN's default, made from the mirror
    # when missing: no registry to pull from.
    release=$(sed -n -e 's/^FROM debian:\([a-z]*\)-slim\b.*/\1/p' \
      -e 's/^ARG DEBIAN=\([a-z]*\)$/\1/p' "$dockerfile" | head -n 1)
    if [ -n "$release" ] && [[ " ${bases[*]} " != *" $release "* ]]; then
      "$repo/scripts/base-image.sh" "$release"
      bases+=("$release")
    fi
    step "building hostyard/$kind"
    # The log is shown only on failure: the client's notice that the legacy
    # builder is deprecated (no buildx in Debian's docker.io) is noise.
    if ! docker build -t "hostyard/$kind" "${build_args[@]}" -f "$dockerfile" "$repo/dockerfiles" >"$log" 2>&1; then
      tail -n 30 "$log" >&2
      die "docker build of hostyard/$kind failed"
    fi
  done
}

# save DIR KIND...: write DIR/<kind>.tar unless it already holds the image
# the engine has under hostyard/<kind> (same image ID).
save() {
  local dir=$1 kind id tmp
  shift
  mkdir -p "$dir"
  for kind in "$@"; do
    id=$(docker image inspect --format '{{.Id}}' "hostyard/$kind")
    if [ -f "$dir/$kind.tar" ] && [ "$(tar_image_id "$dir/$kind.tar")" = "${id#sha256:}" ]; then
      note "$dir/$kind.tar is up to date"
      continue
    fi
    step "saving hostyard/$kind to $dir/$kind.tar"
    # A temp name of its own, then a rename: a parallel run (or a server
    # loading the file) never sees half a tarball.
    tmp=$(mktemp "$dir/.$kind.tar.XXXXXX")
    docker save "hostyard/$kind" >"$tmp"
    mv "$tmp" "$dir/$kind.tar"
  done
}

main() {
  local cmd=${1:-} kinds args=()
  [ $# -gt 0 ] && shift
  case $cmd in
    build | save | kinds)
      find_hostyard
      kinds=$(image_kinds)
      ;;
  esac
  case $cmd in
    build)
      if [ $# -gt 0 ]; then args=("$@"); else mapfile -t args <<<"$kinds"; fi
      build "${args[@]}"
      ;;
    save)
      [ $# -gt 0 ] || die "usage: images.sh save DIR [KIND...]"
      local dir=$1
      shift
      if [ $# -gt 0 ]; then args=("$@"); else mapfile -t args <<<"$kinds"; fi
      build "${args[@]}"
      save "$dir" "${args[@]}"
      ;;
    kinds) printf '%s\n' "$kinds" ;;
    *)
      printf 'usage: %s build [KIND...] | save DIR [KIND...] | kinds\n' "${0##*/}" >&2
      exit 2
      ;;
  esac
}

main "$@"
