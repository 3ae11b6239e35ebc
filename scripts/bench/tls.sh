# shellcheck shell=bash
# scripts/bench.sh tls: HTTPS through hostyard's HAProxy config against a
# plain HAProxy (same binary, `bind ... ssl crt-list`, the same certificates
# and backend), the hostyard-tls path that adds a certificate with 1,000
# loaded (no reload), HAProxy's start and memory with 1,000 certificates,
# and site start to HTTPS with pebble as the ACME CA
# (crates/hostyard-confd/benches/tls.rs says how each is measured). Runs on
# this machine with scripts/test-tools.sh's HAProxy 3.0, etcd 3.5 and
# pebble, and wrk; about two minutes on 2 cores after the build. Ends with
# the summary line `tls: ...`.
# Sourced by scripts/bench.sh (which has require).

bench_tls() {
    local tools
    # shellcheck disable=SC2154 # repo: set by scripts/bench.sh, which sources this
    tools=$("$repo/scripts/test-tools.sh") || die "scripts/test-tools.sh failed"
    export PATH="$tools:$PATH"
    # shellcheck source=scripts/lib/apt.sh
    . "$repo/scripts/lib/apt.sh"
    # pebble: this machine's Debian package (the ACME CA, on loopback).
    apt_ensure wrk curl pebble
    cd "$repo" || die "cannot cd to $repo"
    # The sync code logs each of the 1,000 certificates it installs: left
    # out here, the figures are what the bench prints.
    cargo bench -p hostyard-confd --bench tls 2> >(grep -v ': certificate installed from ' >&2)
}
