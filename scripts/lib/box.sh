# shellcheck shell=bash
# Boxes scripts/server-in-a-box.sh makes: a container and its docker volume
# <name>-docker.

# remove_boxes NAME...: each box and its volume, gone; one that is not
# there is no error.
remove_boxes() {
  local b
  for b in "$@"; do
    docker rm -f "$b" >/dev/null 2>&1 || true
    docker volume rm "$b-docker" >/dev/null 2>&1 || true
  done
}
