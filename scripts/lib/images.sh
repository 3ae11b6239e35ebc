# shellcheck shell=bash
# The image kinds hostyard builds, shared by scripts/images.sh (which builds
# and saves them) and scripts/setup.sh (which loads them on a server).

# Every kind that has a Dockerfile.
# shellcheck disable=SC2034 # used by the scripts that source this file
IMAGE_KINDS=(static static-git haproxy postfix mysql wordpress)

# image_dockerfile KIND: the Dockerfile's path under dockerfiles/.
image_dockerfile() {
  case $1 in
    haproxy | postfix) printf 'server-wide/%s/Dockerfile' "$1" ;;
    *) printf '%s/Dockerfile' "$1" ;;
  esac
}

# tar_image_id TAR: the image ID (hex, no "sha256:") of the image a
# `docker save` tarball holds, read from its manifest without unpacking the
# layers. Handles both the legacy layout ("<hex>.json") and the OCI one
# ("blobs/sha256/<hex>").
tar_image_id() {
  tar -xOf "$1" manifest.json 2>/dev/null |
    grep -o '"Config":"[^"]*"' | head -n 1 | grep -oE '[0-9a-f]{64}'
}
