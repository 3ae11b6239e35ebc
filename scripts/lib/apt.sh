# shellcheck shell=bash
# Installing Debian packages only when missing, the same way in every script.

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
