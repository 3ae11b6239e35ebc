#!/usr/bin/env bash
# hostyard's main job, for now: build it, generate every systemd unit for a
# sample node config, show them, and check them with systemd-analyze verify.
#
# On a fresh Debian 12 machine as root it installs the Debian packages it
# needs first (Rust itself must be there: see README). Nothing outside a temp
# dir is written; the units are not installed.
#
# usage: scripts/demo.sh            (CARGO_TARGET_DIR is honoured;
#                                    KEEP=1 keeps the temp dir)
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"
# shellcheck source=scripts/lib/log.sh
. "$repo/scripts/lib/log.sh"
# shellcheck source=scripts/lib/apt.sh
. "$repo/scripts/lib/apt.sh"

# protobuf-compiler: etcd-client's build; systemd: systemd-analyze.
APT_PACKAGES=(protobuf-compiler systemd)

BINARIES=(hostyard hostyard-confd hostyard-discovery hostyard-import hostyard-gitpull)

install_packages() {
  step "checking apt packages"
  local missing
  # verify checks that the docker client named in the units exists.
  command -v docker >/dev/null || APT_PACKAGES+=(docker.io)
  mapfile -t missing < <(apt_missing "${APT_PACKAGES[@]}")
  if [ ${#missing[@]} -eq 0 ]; then
    note "all present"
    return
  fi
  need_root "install ${missing[*]}"
  note "installing: ${missing[*]}"
  apt_install "${missing[@]}"
}

build() {
  command -v cargo >/dev/null ||
    die "cargo not found: install Rust 1.88 or newer (https://rustup.rs), then rerun"
  step "building hostyard (release)"
  local args=() b
  for b in "${BINARIES[@]}"; do args+=(-p "$b"); done
  cargo build --release --quiet "${args[@]}"
}

write_config() {
  local config=$1 data=$2 bin=$3
  cat >"$config" <<EOF
# A sample node config: every field not named here keeps its default
# (README.md, "Config").
node_name: demo
data_root: $data
bin_dir: $bin
docker:
  binary: $(command -v docker)
git:
  poll_interval: 15min
EOF
}

show_units() {
  local dir=$1 f
  for f in "$dir"/*; do
    printf '\n===== %s =====\n' "${f##*/}"
    cat "$f"
  done
}

verify_units() {
  local dir=$1 f name instances=()
  step "systemd-analyze verify (instances for example.com)"
  for f in "$dir"/*; do
    name=${f##*/}
    instances+=("$dir/${name/@./@example.com.}")
  done
  systemd-analyze verify --man=no "${instances[@]}"
  note "all ${#instances[@]} units pass"
}

main() {
  install_packages
  build
  local target=${CARGO_TARGET_DIR:-$repo/target}
  target=$(cd "$target/release" && pwd)
  # Global: the EXIT trap runs after main's locals are gone.
  WORK=$(mktemp -d /tmp/hostyard-demo.XXXXXX)
  local work=$WORK
  if [ "${KEEP:-0}" = 1 ]; then
    note "keeping $work"
  else
    trap 'rm -rf "$WORK"' EXIT
  fi

  write_config "$work/hostyard.yaml" "$work/data" "$target"
  step "sample config $work/hostyard.yaml"
  cat "$work/hostyard.yaml"

  step "hostyard generate --out $work/units"
  "$target/hostyard" --config "$work/hostyard.yaml" generate --out "$work/units"
  show_units "$work/units"
  verify_units "$work/units"

  step "hostyard generate --check (nothing to do the second time)"
  "$target/hostyard" --config "$work/hostyard.yaml" generate --out "$work/units" --check
  step "done: on a server, hostyard generate --out /etc/systemd/system, then systemctl daemon-reload"
}

main "$@"
