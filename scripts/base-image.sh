#!/usr/bin/env bash
# Makes the debian:<release>-slim image from this machine's own Debian mirror.
#
# No container registry is reachable from these machines, so `FROM
# debian:trixie-slim` works only once an image of that name exists locally.
# This builds it with debootstrap (about 45 s) and imports it; it does
# nothing when the image is already there. hostyard's images are Debian 13
# (trixie, the default); bookworm makes the Debian 12 base, which tests of
# an upgrade from Debian 12 images build on.
#
# usage: scripts/base-image.sh [RELEASE]   (a Debian code name; default trixie)
#   makes debian:RELEASE-slim
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=scripts/lib/log.sh
. "$repo/scripts/lib/log.sh"
# shellcheck source=scripts/lib/apt.sh
. "$repo/scripts/lib/apt.sh"

release=${1:-trixie}
[[ $release =~ ^[a-z]+$ ]] ||
  die "\"$release\" is not a Debian code name: pass one like trixie (the default) or bookworm"
image=debian:$release-slim

main() {
  if docker image inspect "$image" >/dev/null 2>&1; then
    step "$image exists, nothing to do"
    return
  fi
  need_root "run debootstrap"
  command -v debootstrap >/dev/null || die "debootstrap not found: apt-get install debootstrap"
  local mirror
  mirror=$(debian_mirror)
  [ -n "$mirror" ] || die "$NO_MIRROR"
  local root
  root=$(mktemp -d /tmp/base-image.XXXXXX)
  # shellcheck disable=SC2064 # expand $root now: it is local to main
  trap "rm -rf '$root' '$root.log'" EXIT
  step "debootstrap $release from $mirror"
  debootstrap --variant=minbase "$release" "$root" "$mirror" >"$root.log" 2>&1 ||
    die "debootstrap $release failed; see $root.log"
  # Trim what a -slim image leaves out: apt lists and caches.
  rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*.bin "$root"/var/cache/apt/archives/*.deb
  step "importing as $image"
  tar -C "$root" -c . | docker import - "$image" >/dev/null
  rm -rf "$root" "$root.log"
  trap - EXIT
  note "done: $(docker image inspect --format '{{.Size}}' "$image") bytes"
}

# Run main unless sourced (sourcing gives the functions alone).
if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then
  main "$@"
fi
