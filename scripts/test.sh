#!/usr/bin/env bash
# THE test command for hostyard (CI runs it through .ci/run).
#
# On a fresh Debian 12 or 13 machine as root it installs what the tests need,
# starts a Docker engine if none answers, then runs formatting, lint, the
# shell linter and the whole test suite against real etcd, HAProxy, git and
# Docker (HAProxy 3.0 and etcd 3.5 as on Debian 13, from scripts/test-tools.sh),
# then the end-to-end checks on a server in a box and the fleet in a box.
# Every step runs even after an earlier one failed; a summary at the end
# lists them all and the exit status is non-zero if any failed.
#
# usage: scripts/test.sh            (CARGO_TARGET_DIR is honoured)
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"
# shellcheck source=scripts/lib/log.sh
. "$repo/scripts/lib/log.sh"
# shellcheck source=scripts/lib/apt.sh
. "$repo/scripts/lib/apt.sh"

# Debian packages the tests use. The one list: add packages here. (HAProxy
# and etcd come from scripts/test-tools.sh: Debian 13's, as servers run.)
APT_PACKAGES=(
  ca-certificates
  protobuf-compiler # etcd-client's build runs protoc ...
  libprotobuf-dev   # ... which needs google/protobuf/*.proto (only Recommended)
  docker.io         # the engine (a fresh machine has only the client)
  iptables          # dockerd's bridge networking
  git               # git daemon and clones in import/gitpull tests
  wrk               # load while reloading
  shellcheck
  debootstrap       # scripts/base-image.sh
  busybox-static    # the FROM-scratch httpd test image
  systemd           # systemd-analyze verify for generated units
  procps            # /bin/kill, which a generated unit's ExecReload= names (verify checks it exists)
  restic            # backup and restore tests (crates/hostyard/tests/backup.rs)
  curl              # HTTPS requests in the confd tests (crates/hostyard-confd/tests/https.rs)
  openssl           # the e2e HTTPS check makes its CA and certificate
  pebble            # the ACME CA of crates/hostyard-confd/tests/acme.rs (with pebble-challtestsrv)
)

# The unused-dependency check: cargo-machete, built once per machine into
# this cache. 0.8.0 is the newest whose locked dependencies build with
# Debian 13's rustc 1.85 (0.9's need 1.86 and 1.88).
MACHETE_VERSION=0.8.0
MACHETE_ROOT=${MACHETE_ROOT:-/var/cache/hostyard-test/cargo-machete-$MACHETE_VERSION}

DOCKERD_LOG=${DOCKERD_LOG:-/var/log/hostyard-test-dockerd.log}
DOCKERD_WAIT_SECS=60

# Results of the steps, printed by summary.
declare -a RESULTS=() FAILED_TESTS=() FAILED_TARGETS=()
FAILED=0
TEST_COUNTS=""

install_packages() {
  step "checking apt packages"
  apt_ensure "${APT_PACKAGES[@]}"
  # Debian 13's own cargo where none is on PATH; on Debian 12 it names rustup.
  ensure_cargo "$repo"
}

# use_server_tools: HAProxy 3.0 and etcd 3.5 of Debian 13 first on PATH for
# the tests and benches (the harness refuses other versions).
use_server_tools() {
  local bin
  bin=$("$repo/scripts/test-tools.sh") || die "scripts/test-tools.sh failed"
  note "using $bin/haproxy and $bin/etcd"
  export PATH="$bin:$PATH"
}

docker_answers() { docker info >/dev/null 2>&1; }

# start_dockerd [EXTRA ARGS...]: start dockerd detached (it outlives this
# script, so later runs find it) and wait for `docker info`.
start_dockerd() {
  note "starting dockerd${*:+ $*} (log: $DOCKERD_LOG)"
  # In a container /proc/sys is read-only: Docker 26 (Debian 13) would then
  # refuse every bridged container, failing to switch IPv6 off in it.
  DOCKER_ALLOW_IPV6_ON_IPV4_INTERFACE=1 setsid dockerd "$@" >>"$DOCKERD_LOG" 2>&1 </dev/null &
  local pid=$!
  local deadline=$((SECONDS + DOCKERD_WAIT_SECS))
  until docker_answers; do
    if ! kill -0 "$pid" 2>/dev/null; then
      note "dockerd exited; its log ends with:"
      tail -n 15 "$DOCKERD_LOG" | sed 's/^/      /' >&2
      return 1
    fi
    if ((SECONDS >= deadline)); then
      note "no answer from docker info after ${DOCKERD_WAIT_SECS}s; log ends with:"
      tail -n 15 "$DOCKERD_LOG" | sed 's/^/      /' >&2
      return 1
    fi
    sleep 0.2
  done
}

ensure_docker() {
  step "checking the docker engine"
  if docker_answers; then
    note "docker engine answers"
    return
  fi
  need_root "start dockerd"
  command -v dockerd >/dev/null || die "dockerd not found: apt-get install docker.io"
  # A previous dockerd killed uncleanly leaves its pid file behind.
  # (bash's own kill: a minbase machine has no procps.)
  if [ -e /var/run/docker.pid ] && ! kill -0 "$(cat /var/run/docker.pid)" 2>/dev/null; then
    rm -f /var/run/docker.pid
  fi
  if start_dockerd; then return; fi
  # Where the kernel refuses iptables rules dockerd cannot set up its
  # bridge NAT; containers are still reachable on their IPs without it.
  note "retrying without iptables"
  start_dockerd --iptables=false || die "cannot start dockerd; see $DOCKERD_LOG"
}

# HAProxy's IPv6 listening is tested on ::1. A container without IPv6
# (Docker disables it on networks without an IPv6 subnet) has no ::1: turn
# it on for the loopback, through a writable /proc/sys when it is mounted
# read-only. If that is refused, the test says what is missing and fails.
ensure_ipv6_loopback() {
  local knob=/proc/sys/net/ipv6/conf/lo/disable_ipv6
  [ -e "$knob" ] && [ "$(cat "$knob")" = 1 ] || return 0
  step "enabling IPv6 on the loopback (::1) for the IPv6 tests"
  if ! { echo 0 >"$knob"; } 2>/dev/null; then
    # "bind": this mount point's flags only. A plain remount changes the
    # flags of proc itself (util-linux before 2.39 does), and a read-only
    # /proc stops dockerd from setting its shims' OOM scores.
    mount -o remount,bind,rw /proc/sys 2>/dev/null &&
      { echo 0 >"$knob"; } 2>/dev/null
    mount -o remount,bind,ro /proc/sys 2>/dev/null || true
  fi
  if [ "$(cat "$knob")" = 1 ]; then
    note "could not enable it (no CAP_SYS_ADMIN?): the IPv6 test will fail"
  else
    note "::1 is up"
  fi
}

# run_step NAME COMMAND...: run one check, record its result and time.
run_step() {
  local name=$1; shift
  step "$name: $*"
  local start=$SECONDS rc=0
  "$@" || rc=$?
  local secs=$((SECONDS - start))
  if [ $rc -eq 0 ]; then
    RESULTS+=("ok      ${secs}s  $name")
  else
    RESULTS+=("FAILED  ${secs}s  $name (exit $rc)")
    FAILED=1
  fi
}

# unused_dependencies: fails naming every crate and dependency its sources
# never use (cargo-machete reads them as text: no build, a few seconds).
unused_dependencies() {
  local bin="$MACHETE_ROOT/bin/cargo-machete"
  if [ "$("$bin" --version 2>/dev/null)" != "$MACHETE_VERSION" ]; then
    note "installing cargo-machete $MACHETE_VERSION into $MACHETE_ROOT (once, a few minutes)"
    env -u CARGO_TARGET_DIR cargo install --locked --quiet --root "$MACHETE_ROOT" \
      --version "$MACHETE_VERSION" cargo-machete || return 1
  fi
  "$bin" --skip-target-dir
}

shell_scripts() {
  # Tracked shell scripts: *.sh anywhere, plus extension-less files under
  # scripts/ and deploy/ whose first line names a shell.
  local f
  git ls-files '*.sh' 'scripts/*' 'deploy/*' .ci/run | sort -u | while read -r f; do
    [ -f "$f" ] || continue
    case $f in
      *.sh) echo "$f" ;;
      *) head -n 1 "$f" | grep -Eq '^#!.*\b(ba)?sh\b' && echo "$f" ;;
    esac
  done
  return 0
}

check_shell() {
  local files
  mapfile -t files < <(shell_scripts)
  note "${#files[@]} scripts: ${files[*]}"
  [ ${#files[@]} -eq 0 ] || shellcheck -x "${files[@]}"
}

# workspace_tests: every crate's tests (in parallel within each test binary;
# --no-fail-fast so one failing crate does not hide the others), output kept
# in a file so the summary can name the failing tests.
workspace_tests() {
  local log rc=0
  log=$(mktemp /tmp/hostyard-tests.XXXXXX.log)
  cargo test --workspace --no-fail-fast 2>&1 | tee "$log" || rc=$?
  local passed failed
  passed=$(awk '/^test result:/{s+=$4} END{print s+0}' "$log")
  failed=$(awk '/^test result:/{s+=$6} END{print s+0}' "$log")
  TEST_COUNTS="$passed passed, $failed failed"
  mapfile -t FAILED_TESTS < <(grep -E '^test .* \.\.\. FAILED$' "$log" | sed -E 's/^test (.*) \.\.\. FAILED$/\1/' || true)
  # shellcheck disable=SC2016 # the backticks are literal, from cargo's message
  mapfile -t FAILED_TARGETS < <(grep -oE 'to rerun pass `[^`]*`' "$log" | sed -E 's/to rerun pass `(.*)`/cargo test \1/' || true)
  rm -f "$log"
  return $rc
}

# End-to-end: a real systemd server in a container, set up by setup.sh,
# serving real sites (tests/e2e/run.sh boots it; images and the release
# build are cached between runs on the same machine).

summary() {
  printf '\n==> summary\n' >&2
  printf '    %s\n' "${RESULTS[@]}" >&2
  [ -z "$TEST_COUNTS" ] || printf '    tests: %s\n' "$TEST_COUNTS" >&2
  if [ ${#FAILED_TESTS[@]} -gt 0 ]; then
    printf '    failed test: %s\n' "${FAILED_TESTS[@]}" >&2
  fi
  if [ ${#FAILED_TARGETS[@]} -gt 0 ]; then
    printf '    rerun: %s\n' "${FAILED_TARGETS[@]}" >&2
  fi
  if [ $FAILED -ne 0 ]; then
    printf '%s: FAILED\n' "${0##*/}" >&2
  else
    printf '%s: all passed\n' "${0##*/}" >&2
  fi
}

main() {
  install_packages
  use_server_tools
  ensure_docker
  ensure_ipv6_loopback
  run_step "rustfmt" cargo fmt --all --check
  run_step "clippy" cargo clippy --workspace --all-targets -- -D warnings
  run_step "unused dependencies" unused_dependencies
  run_step "shellcheck" check_shell
  run_step "tests" workspace_tests
  run_step "e2e" tests/e2e/run.sh
  # Three servers and a jump box, set up from scratch through deploy/; the
  # same cache as the e2e box, so the build and images are made once.
  run_step "fleet" env CACHE="${CACHE:-/var/cache/hostyard-box}" tests/e2e/fleet.sh
  summary
  return $FAILED
}

# Run main unless sourced (sourcing lets one call a single function by hand).
if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then
  main "$@"
fi
