# shellcheck shell=bash
# Installing Debian packages only when missing, the same way in every script.
# Needs scripts/lib/log.sh (note, need_root) sourced first.

# apt_missing PKG...: print the packages that are not installed, one a line.
apt_missing() {
  local pkg
  for pkg in "$@"; do
    [ "$(dpkg-query -W -f='${db:Status-Status}' "$pkg" 2>/dev/null)" = installed ] || echo "$pkg"
  done
}

# apt_install PKG...: one index update, then install quietly without
# recommended packages (a server gets only what it needs).
apt_install() {
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

# apt_names PKG...: the packages as this release names them, one a line.
# From Debian 13 on docker.io is the engine alone and its client is
# docker-cli (only Recommended, so --no-install-recommends would leave
# `docker` out): docker.io stands for both. Debian 12 has no docker-cli.
apt_names() {
  local pkg old=0
  case $(os_release VERSION_CODENAME) in
    buster | bullseye | bookworm) old=1 ;;
  esac
  for pkg in "$@"; do
    echo "$pkg"
    [ "$pkg" != docker.io ] || [ "$old" = 1 ] || echo docker-cli
  done
}

# apt_ensure PKG...: install the packages that are missing, saying which
# (root is needed only then). Leaves them in APT_INSTALLED, empty when all
# were there, for scripts that report what they changed.
APT_INSTALLED=()
apt_ensure() {
  local names
  mapfile -t names < <(apt_names "$@")
  mapfile -t APT_INSTALLED < <(apt_missing "${names[@]}")
  if [ ${#APT_INSTALLED[@]} -eq 0 ]; then
    note "all installed"
    return
  fi
  need_root "install ${APT_INSTALLED[*]}"
  note "installing: ${APT_INSTALLED[*]}"
  apt_install "${APT_INSTALLED[@]}"
}

# debian_mirror: the mirror apt uses here, from MIRROR, the deb822 sources
# file (Debian 12's default) or the one-line sources.list (older or minimal
# installs).
debian_mirror() {
  if [ -n "${MIRROR:-}" ]; then
    echo "$MIRROR"
  elif [ -f /etc/apt/sources.list.d/debian.sources ]; then
    awk '/^URIs:/{print $2; exit}' /etc/apt/sources.list.d/debian.sources
  elif [ -f /etc/apt/sources.list ]; then
    awk '$1 == "deb" {for (i = 2; i <= NF; i++) if ($i ~ /^https?:/) {print $i; exit}}' /etc/apt/sources.list
  fi
}

# What to say when debian_mirror finds nothing.
# shellcheck disable=SC2034 # used by the scripts that source this file
NO_MIRROR="no Debian mirror in /etc/apt/sources.list.d/debian.sources or /etc/apt/sources.list; set MIRROR=http://..."

# os_release FIELD: a field of /etc/os-release (OS_RELEASE overrides the
# path, for tests), unquoted; empty when the file or field is missing.
os_release() {
  local file=${OS_RELEASE:-/etc/os-release}
  [ -r "$file" ] || return 0
  sed -n "s/^$1=//p" "$file" | head -n 1 | tr -d "\"'"
}

# ensure_cargo REPO: cargo on PATH. Where it is missing and this release's
# own rustc is at least the workspace's rust-version (Debian 13: 1.85), it
# installs Debian's toolchain with apt; otherwise (Debian 12 has 1.63) it
# stops, naming rustup.
ensure_cargo() {
  command -v cargo >/dev/null && return
  local want have release
  want=$(sed -n 's/^rust-version *= *"\(.*\)"/\1/p' "$1/Cargo.toml")
  release="Debian $(os_release VERSION_ID) ($(os_release VERSION_CODENAME))"
  need_root "install Debian's Rust toolchain (cargo is not on PATH)"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  have=$(apt-cache policy rustc | awk '$1 == "Candidate:" {print $2}')
  if [ -z "$have" ] || [ "$have" = "(none)" ] || ! dpkg --compare-versions "$have" ge "$want"; then
    die "cargo not found, and $release's rustc (${have:-none}) is older than the workspace's Rust $want:" \
      "install Rust $want or newer with rustup (https://rustup.rs), then rerun"
  fi
  note "cargo not found: installing $release's Rust toolchain (cargo, rustc $have)"
  apt_install cargo rustc
}
