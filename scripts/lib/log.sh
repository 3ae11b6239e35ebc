# shellcheck shell=bash
# Shared helpers for hostyard's scripts: uniform messages and bounded waits.

# step MESSAGE: announce what the script does next.
step() { printf '==> %s\n' "$*" >&2; }

# note MESSAGE: a detail under the current step.
note() { printf '    %s\n' "$*" >&2; }

# die MESSAGE: print an error naming the script and exit 1.
die() { printf '%s: error: %s\n' "${0##*/}" "$*" >&2; exit 1; }

# wait_for SECONDS WHAT COMMAND...: run COMMAND every 0.2 s until it
# succeeds or SECONDS pass; returns 1 on timeout. Never a fixed sleep.
wait_for() {
  local secs=$1 what=$2; shift 2
  local deadline=$((SECONDS + secs))
  until "$@" >/dev/null 2>&1; do
    if ((SECONDS >= deadline)); then
      printf '%s: timed out after %ss waiting for %s\n' "${0##*/}" "$secs" "$what" >&2
      return 1
    fi
    sleep 0.2
  done
}

# need_root WHY: exit unless running as root.
need_root() { [ "$(id -u)" = 0 ] || die "must run as root to $1"; }
