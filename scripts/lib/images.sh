# shellcheck shell=bash
# hostyard's images as scripts/images.sh builds and saves them. The kinds
# and names come from `hostyard names images` (their one home is the node
# config's images section); the ID in a tarball from `hostyard image-id`.

# find_hostyard: set HOSTYARD to a hostyard binary that can answer: the
# one $HOSTYARD names (setup.sh passes the one it runs, server-in-a-box.sh
# the one it just built), else one on PATH, else this checkout's, built
# with cargo first (a build machine has the checkout and its toolchain).
find_hostyard() {
  if [ -n "${HOSTYARD:-}" ]; then
    [ -x "$HOSTYARD" ] || die "HOSTYARD=$HOSTYARD is not an executable hostyard binary"
    return
  fi
  if HOSTYARD=$(command -v hostyard); then
    return
  fi
  command -v cargo >/dev/null ||
    die "no hostyard binary: set HOSTYARD=/path/to/hostyard, or install cargo to build it"
  local target=${CARGO_TARGET_DIR:-$repo/target}
  (cd "$repo" && cargo build --release --quiet -p hostyard) || die "cargo build -p hostyard failed"
  HOSTYARD=$target/release/hostyard
}

# image_kinds: every image kind, one per line.
image_kinds() {
  local images kind _name
  images=$("$HOSTYARD" names images) || die "$HOSTYARD names images failed (above)"
  while read -r kind _name; do printf '%s\n' "$kind"; done <<<"$images"
}

# image_dockerfile KIND: the Dockerfile's path under dockerfiles/.
image_dockerfile() {
  case $1 in
    haproxy | postfix) printf 'server-wide/%s/Dockerfile' "$1" ;;
    static-git) printf 'static/Dockerfile' ;;
    *) printf '%s/Dockerfile' "$1" ;;
  esac
}

# image_build_args KIND: the --build-arg options of its build, one a line:
# static-git is the static image serving the tree gitpull publishes.
image_build_args() {
  case $1 in
    static-git) printf '%s\n' --build-arg MOUNT=/srv/public --build-arg ROOT=/srv/public/current ;;
  esac
}

# tar_image_id TAR: the image ID (hex, no "sha256:") of the image a
# `docker save` tarball holds, from its manifest (hostyard parses it).
tar_image_id() { "$HOSTYARD" image-id "$1"; }
