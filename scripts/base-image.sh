#!/usr/bin/env bash
# Makes the debian:bookworm-slim image from this machine's own Debian mirror.
#
# No container registry is reachable from these machines, so `FROM
# debian:bookworm-slim` works only once an image of that name exists
# locally. This builds it with debootstrap (about 40 s) and imports it;
# it does nothing when the image is already there.
#
# usage: scripts/base-image.sh [IMAGE]   (default debian:bookworm-slim)
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=scripts/lib/log.sh
. "$repo/scripts/lib/log.sh"
# shellcheck source=scripts/lib/apt.sh
. "$repo/scripts/lib/apt.sh"

image=${1:-debian:bookworm-slim}

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
  trap "rm -rf '$root'" EXIT
  step "debootstrap bookworm from $mirror"
  debootstrap --variant=minbase bookworm "$root" "$mirror" >"$root.log" 2>&1 ||
    die "debootstrap failed; see $root.log"
  # Trim what a -slim image leaves out: apt lists and caches.
  rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*.bin "$root"/var/cache/apt/archives/*.deb
  step "importing as $image"
  tar -C "$root" -c . | docker import - "$image" >/dev/null
  rm -f "$root.log"
  note "done: $(docker image inspect --format '{{.Size}}' "$image") bytes"
}

# Run main unless sourced (sourcing gives the functions alone).
if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then
  main "$@"
fi
