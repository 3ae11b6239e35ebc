#!/usr/bin/env bash
# Benchmarks against real etcd, HAProxy and loopback backends.
#   scripts/bench.sh confd   routing latency, failed requests under churn and
#                            reloads, 10k-site sync, confd memory, proxy cost
set -euo pipefail

usage() {
    echo "usage: scripts/bench.sh confd" >&2
}

repo_root() {
    cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd
}

require() {
    local bin=$1 pkg=$2
    if ! command -v "$bin" >/dev/null 2>&1; then
        echo "bench.sh: $bin not found (apt-get install -y $pkg)" >&2
        exit 1
    fi
}

bench_confd() {
    require etcd etcd-server
    require haproxy haproxy
    require wrk wrk
    cd "$(repo_root)"
    # The bench binary prints its figures and ends with the summary line.
    cargo bench -p hostyard-confd --bench confd
}

main() {
    if [[ $# -ne 1 ]]; then
        usage
        exit 2
    fi
    case "$1" in
        confd) bench_confd ;;
        *)
            usage
            exit 2
            ;;
    esac
}

main "$@"
