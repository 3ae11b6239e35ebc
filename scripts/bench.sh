#!/usr/bin/env bash
# Benchmarks against real etcd, HAProxy, Docker and systemd.
#   scripts/bench.sh confd   for fleets of 40, 10,000 and 100,000 sites (SIZES,
#                            comma-separated): route latency against its floor
#                            in RUNS rounds (default 3), confd's sync and
#                            memory, `hostyard status`, a burst, HAProxy's
#                            map memory; then failed requests under churn
#                            and reloads, proxy cost (HAProxy and etcd from
#                            scripts/test-tools.sh; about 6 min on 2 cores
#                            after the build; LOAD=0: the sizes only)
#   scripts/bench.sh redirects  throughput of a site with 1,000 path
#                            redirects against the same HAProxy without
#                            them, in one run (HAProxy and etcd from
#                            scripts/test-tools.sh; EDGE=1: with a preview
#                            password and the strict headers as well)
#   scripts/bench.sh backup  the first and second backup of 20 sites, a
#                            WordPress site's latency during its backup and
#                            its restore, on a server in a box (as root; see
#                            scripts/bench/backup.sh)
#   scripts/bench.sh tls     HTTPS handshakes and keep-alive requests vs a
#                            plain HAProxy, adding a certificate with 1,000
#                            loaded, HAProxy start and memory with 1,000
#                            (see scripts/bench/tls.sh)
#   scripts/bench.sh start   `systemctl start static-git@D` to its first 200
#                            through HAProxy, for one site and for 20 started
#                            together, and the memory of a site (as root)
#   scripts/bench.sh hook    a static-git site published by its signed push
#                            hook 20 times (PUSHES), hook to new commit
#                            served p50/p99, under a keep-alive load whose
#                            failed requests are counted (as root; see
#                            scripts/bench/hook.sh)
#   scripts/bench.sh move    a fleet's move gap (deploy/site.sh move), static
#                            and WordPress with 100 MB of uploads, against a
#                            stop and start of the same site in the same run, RUNS
#                            rounds (default 5), on the fleet in a box of
#                            tests/e2e/fleet.sh (as root)
#
# `start` boots a server in a box (scripts/server-in-a-box.sh, under a unique
# name), serves a sample repository from a `git daemon` on the box's
# loopback, and times everything from inside the box: systemctl, curl against
# HAProxy on 127.0.0.1:80 and the clock are the box's own, so no `docker
# exec` or published port is in a figure. The box and its docker volume are
# removed at the end (KEEP_BOX=1 keeps them). RUNS=5 sets the one-site runs.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=scripts/lib/log.sh
. "$repo/scripts/lib/log.sh"
# shellcheck source=scripts/lib/box.sh
. "$repo/scripts/lib/box.sh"

# The target for one fresh site's first 200 after systemctl start, in ms
# (reported as ok=yes/no, not asserted: a busy machine is slower).
TARGET_ONE_MS=3000
# Bound of every wait for a site's first 200, in ms.
ANSWER_BOUND_MS=60000
TWENTY=20
GIT_URL=git://127.0.0.1:9418/site.git

usage() {
    echo "usage: scripts/bench.sh confd | redirects | start | backup | tls | hook | move" >&2
}

require() {
    local bin=$1 pkg=$2
    if ! command -v "$bin" >/dev/null 2>&1; then
        echo "bench.sh: $bin not found (apt-get install -y $pkg)" >&2
        exit 1
    fi
}

# bench_tools: HAProxy 3.0 and etcd 3.5 first in PATH, as servers run
# (Debian 13; the harness refuses others), wrk, and the checkout as the
# working directory.
bench_tools() {
    local tools
    tools=$("$repo/scripts/test-tools.sh") || die "scripts/test-tools.sh failed"
    export PATH="$tools:$PATH"
    require wrk wrk
    cd "$repo"
}

bench_confd() {
    bench_tools
    # `hostyard status` is timed at each fleet size.
    cargo build --release -q -p hostyard --bin hostyard
    # The bench binary prints its figures and ends with the summary lines.
    HOSTYARD_BIN="${CARGO_TARGET_DIR:-$repo/target}/release/hostyard" \
        HOSTYARD_BENCH_SIZES=${SIZES:-40,10000,100000} HOSTYARD_BENCH_RUNS=${RUNS:-3} \
        HOSTYARD_BENCH_LOAD=${LOAD:-1} cargo bench -p hostyard-confd --bench confd
}

bench_redirects() {
    bench_tools
    # Prints each run and ends with the summary line (the ratio).
    # EDGE=1: with a preview password and the strict headers as well.
    HOSTYARD_BENCH_EDGE=${EDGE:-0} cargo bench -p hostyard-confd --bench redirects
}

# ---- start: on this machine ------------------------------------------------

BOX=hostyard-bench-$$

remove_box() {
    if [ "${KEEP_BOX:-0}" = 1 ]; then
        note "kept $BOX: docker rm -f $BOX; docker volume rm $BOX-docker"
        return
    fi
    remove_boxes "$BOX"
}

# median: the median of the integers on stdin (mean of the middle two for an
# even count), or "none" when there are none.
median() {
    sort -n | awk '{ v[NR] = $1 } END {
        if (NR == 0) { print "none"; exit }
        if (NR % 2) print v[(NR + 1) / 2]; else printf "%.0f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

# field TAG N: column N of the records tagged TAG (records on stdin).
field() { awk -v tag="$1" -v n="$2" '$1 == tag { print $n }'; }

# mb KIB: KiB as MB with one decimal.
mb() {
    if [ "$1" = none ]; then echo none; else awk -v k="$1" 'BEGIN { printf "%.1f\n", k / 1024 }'; fi
}

# boot_bench_box: a server in a box under $BOX (removed on exit unless
# KEEP_BOX=1), with curl and a git daemon serving the sample repository.
boot_bench_box() {
    trap remove_box EXIT
    # Sourced by a new bash, which reads the whole file before running it:
    # bash runs a script file as it reads it, so an edit of the checkout
    # during the minutes of the build would otherwise break the run.
    BOX=$BOX BOX_PORT=auto KEEP_BOX=1 SAMPLE_SITE=0 bash -c '. "$0"' "$repo/scripts/server-in-a-box.sh"
    step "curl and a git daemon with a sample repository in $BOX"
    docker exec "$BOX" /hostyard/src/scripts/bench.sh start-prepare
}

bench_start() {
    need_root "boot a systemd container"
    local runs=${RUNS:-5} records failed
    boot_bench_box
    step "timing in $BOX ($runs single starts, a warm restart of each, then $TWENTY together)"
    # The box prints records on stdout and progress on stderr.
    records=$(docker exec "$BOX" /hostyard/src/scripts/bench.sh start-measure "$runs")
    report "$records"
    failed=$(printf '%s\n' "$records" | awk '$1 == "never" { print $2 }')
    [ -z "$failed" ] || die "no 200 within $((ANSWER_BOUND_MS / 1000)) s from: $failed"
}

# report RECORDS: the figures, then one summary line.
report() {
    local r=$1 one one_ret warm warm_ret twenty twenty_max cont disc disc_rss site ok
    one=$(field one 3 <<<"$r" | median)
    one_ret=$(field one 4 <<<"$r" | median)
    warm=$(field warm 3 <<<"$r" | median)
    warm_ret=$(field warm 4 <<<"$r" | median)
    twenty=$(field twenty 3 <<<"$r" | median)
    twenty_max=$(field twenty 3 <<<"$r" | sort -n | tail -n 1)
    cont=$(field mem 3 <<<"$r" | median)
    disc=$(field mem 4 <<<"$r" | median)
    disc_rss=$(field mem 5 <<<"$r" | median)
    site=$(awk '$1 == "mem" { print $3 + $4 }' <<<"$r" | median)
    step "figures (ms from just before systemctl start, box clock, curl to 127.0.0.1:80 every 30 ms)"
    note "one fresh site (its importer clones): first 200 $(field one 3 <<<"$r" | xargs), start returned $(field one 4 <<<"$r" | xargs)"
    note "  of which, median: importer done (clone) $(field phase1 3 <<<"$r" | median), discovery registered $(field phase1 4 <<<"$r" | median)"
    note "one site restarted (data present, no clone): first 200 $(field warm 3 <<<"$r" | xargs), start returned $(field warm 4 <<<"$r" | xargs)"
    note "$TWENTY fresh sites with one systemctl start --no-block: first 200 $(field twenty 3 <<<"$r" | sort -n | xargs)"
    note "  of which, median: importer done (clone) $(field phase20 3 <<<"$r" | median), discovery registered $(field phase20 4 <<<"$r" | median)"
    note "memory of $(field mem 2 <<<"$r" | wc -l) running sites, median KiB: container $cont (docker stats), discovery $disc (MemoryCurrent; VmRSS $disc_rss)"
    ok=no
    [ "$one" != none ] && ((one <= TARGET_ONE_MS)) && ok=yes
    printf 'start: one_p50_ms=%s one_start_returned_p50_ms=%s one_warm_p50_ms=%s one_warm_start_returned_p50_ms=%s twenty_p50_ms=%s twenty_max_ms=%s site_mem_mb=%s container_mb=%s discovery_mb=%s discovery_rss_mb=%s target_one_ms=%s ok=%s\n' \
        "$one" "$one_ret" "$warm" "$warm_ret" "$twenty" "${twenty_max:-none}" \
        "$(mb "$site")" "$(mb "$cont")" "$(mb "$disc")" "$(mb "$disc_rss")" "$TARGET_ONE_MS" "$ok"
}

# ---- start: inside the box (bench.sh is mounted at /hostyard/src) ----------

start_prepare() {
    # Not part of a server; setup.sh has refreshed apt's lists already.
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends curl >/dev/null
    rm -rf /srv/bench-git /tmp/bench-site
    git init -q -b main /tmp/bench-site
    printf '<h1>bench</h1>\n' >/tmp/bench-site/index.html
    git -C /tmp/bench-site add index.html
    git -C /tmp/bench-site -c user.email=bench@example.com -c user.name=bench commit -qm bench
    mkdir -p /srv/bench-git
    git clone -q --bare /tmp/bench-site /srv/bench-git/site.git
    systemd-run -q --unit bench-git-daemon --property=Type=exec /usr/bin/git daemon --reuseaddr \
        --base-path=/srv/bench-git --export-all --listen=127.0.0.1 --port=9418 /srv/bench-git
    wait_for 10 "git daemon" git ls-remote "$GIT_URL"
}

# now_ms: the box's wall clock in ms, without a fork.
now_ms() {
    local t=${EPOCHREALTIME/./}
    echo $((t / 1000))
}

# import_dir: where the server takes imports from (`hostyard names dirs`,
# role import: under the config's data_root).
import_dir() {
    local role dir
    while read -r role dir; do
        [ "$role" != import ] || { printf '%s\n' "$dir"; return; }
    done < <(hostyard names dirs)
    die "hostyard names dirs names no import dir"
}

# import_git DOMAIN: the site's import folder, naming the sample repository.
import_git() {
    mkdir -p "$IMPORT_DIR/$1/static-git"
    echo "$GIT_URL" >"$IMPORT_DIR/$1/static-git/GITURL"
}

# codes DOMAIN...: "DOMAIN CODE" for each, from HAProxy, in one curl (one
# process and one keep-alive connection per poll, however many sites).
codes() {
    local args=() d
    for d in "$@"; do args+=(-o /dev/null "http://$d/"); done
    curl -s --max-time 2 --connect-to ::127.0.0.1:80 -w '%{url_effective} %{http_code}\n' "${args[@]}" |
        sed -E 's#^http://([^/]*)/ #\1 #' || true
}

# time_one TAG DOMAIN: start the site, print "TAG DOMAIN FIRST_200_MS
# START_RETURNED_MS" (or "never DOMAIN"). Polls while systemctl runs.
time_one() {
    local tag=$1 d=$2 t0 pid t200="" tret="" rc=0
    t0=$(now_ms)
    systemctl start "static-git@$d" &
    pid=$!
    while [ -z "$t200" ] || [ -z "$tret" ]; do
        if [ -z "$t200" ] && [ "$(codes "$d")" = "$d 200" ]; then t200=$(($(now_ms) - t0)); fi
        if [ -z "$tret" ] && ! kill -0 "$pid" 2>/dev/null; then
            tret=$(($(now_ms) - t0))
            wait "$pid" || rc=$?
            [ "$rc" = 0 ] || note "systemctl start static-git@$d exited $rc"
        fi
        (($(now_ms) - t0 < ANSWER_BOUND_MS)) || break
        sleep 0.03
    done
    if [ -z "$t200" ]; then
        echo "never $d"
    else
        echo "$tag $d $t200 ${tret:-none}"
        note "$tag $d: first 200 after $t200 ms, systemctl start returned after ${tret:-(still running)} ms"
    fi
    [ "$tag" != one ] || phases phase1 "$t0" "$d"
    # Bounded by the unit's TimeoutStartSec.
    if kill -0 "$pid" 2>/dev/null; then wait "$pid" || true; fi
}

# time_many DOMAIN...: start all with one systemctl call, print "twenty
# DOMAIN FIRST_200_MS" for each (from the common t0), or "never DOMAIN".
time_many() {
    local pending=("$@") t0 now d code left
    for d in "$@"; do import_git "$d"; done
    local units=()
    for d in "$@"; do units+=("static-git@$d"); done
    t0=$(now_ms)
    # --no-block: enqueue all jobs at once; systemd runs them together.
    systemctl start --no-block "${units[@]}"
    while [ ${#pending[@]} -gt 0 ]; do
        left=()
        while read -r d code; do
            if [ "$code" = 200 ]; then
                now=$(now_ms)
                echo "twenty $d $((now - t0))"
            else
                left+=("$d")
            fi
        done < <(codes "${pending[@]}")
        pending=("${left[@]}")
        (($(now_ms) - t0 < ANSWER_BOUND_MS)) || break
        [ ${#pending[@]} -eq 0 ] || sleep 0.03
    done
    for d in "${pending[@]}"; do echo "never $d"; done
    note "$(($# - ${#pending[@]})) of $# answered 200, the last after $(($(now_ms) - t0)) ms"
    phases phase20 "$t0" "$@"
}

# entered_ms UNIT: when UNIT last became active, in ms of the wall clock
# (empty if it never did).
entered_ms() {
    local when
    when=$(systemctl show -P ActiveEnterTimestamp --timestamp=us+utc "$1") || return 0
    [ -z "$when" ] || date -d "$when" +%s%3N
}

# phases TAG T0 DOMAIN...: where the time of a start went, from the units'
# own timestamps: "TAG DOMAIN IMPORTED_MS REGISTERED_MS" (the importer's
# clone done; discovery's READY, sent with its first registration), from T0.
phases() {
    local tag=$1 t0=$2 d imported registered
    shift 2
    for d in "$@"; do
        imported=$(entered_ms "static-git-importer@$d.service")
        registered=$(entered_ms "static-git-discovery@$d.service")
        if [ -z "$imported" ] || [ -z "$registered" ]; then continue; fi
        echo "$tag $d $((imported - t0)) $((registered - t0))"
    done
}

# kib SIZE: docker's "1.5MiB" as KiB.
kib() {
    awk -v s="$1" 'BEGIN {
        n = s + 0; u = s; sub(/^[0-9.]+/, "", u)
        f["B"] = 1 / 1024; f["KiB"] = 1; f["kB"] = 1000 / 1024; f["MiB"] = 1024; f["MB"] = 1e6 / 1024
        f["GiB"] = 1048576; f["GB"] = 1e9 / 1024
        printf "%.0f\n", n * f[u] }'
}

# memory DOMAIN...: "mem DOMAIN CONTAINER_KIB DISCOVERY_KIB DISCOVERY_RSS_KIB"
# for each. The container's figure is docker's (its cgroup, less inactive
# page cache); discovery's is its unit's cgroup (MemoryCurrent), which
# charges the shared binary's pages once, to one unit; its VmRSS counts them
# in every process.
memory() {
    local d name usage pid rss cg
    declare -A cont=()
    while read -r name usage; do cont[$name]=$(kib "$usage"); done < <(
        docker stats --no-stream --format '{{.Name}} {{.MemUsage}}' | awk '{ print $1, $2 }')
    for d in "$@"; do
        pid=$(systemctl show -p MainPID --value "static-git-discovery@$d")
        rss=$(awk '/^VmRSS:/ { print $2 }' "/proc/$pid/status" 2>/dev/null || true)
        cg=$(systemctl show -p MemoryCurrent --value "static-git-discovery@$d")
        # "[not set]" without memory accounting: fall back to the RSS.
        [[ $cg =~ ^[0-9]+$ ]] && cg=$((cg / 1024)) || cg=${rss:-0}
        echo "mem $d ${cont[static-git_$d]:-0} $cg ${rss:-0}"
    done
}

start_measure() {
    local runs=$1 i d ones=() many=()
    IMPORT_DIR=$(import_dir)
    # The images are loaded by setup.sh; one untimed start and stop reads
    # them (and the binaries) into the page cache, so the first timed start
    # is not a cold-cache outlier.
    import_git warm.bench.example.com
    time_one warmup warm.bench.example.com >/dev/null
    systemctl stop static-git@warm.bench.example.com
    for ((i = 1; i <= runs; i++)); do
        d=one$i.bench.example.com
        ones+=("$d")
        import_git "$d"
        time_one one "$d"
    done
    # Same domains again: data present and the importer still active, so
    # this is container + discovery + routing only. reset-failed clears the
    # unit's start limit (StartLimitBurst) between runs.
    for d in "${ones[@]}"; do
        systemctl stop "static-git@$d"
        systemctl reset-failed "static-git@$d" 2>/dev/null || true
        time_one warm "$d"
    done
    for ((i = 1; i <= TWENTY; i++)); do many+=("many$i.bench.example.com"); done
    time_many "${many[@]}"
    memory "${ones[@]}" "${many[@]}"
}

# shellcheck source=scripts/bench/backup.sh
. "$repo/scripts/bench/backup.sh"
# shellcheck source=scripts/bench/tls.sh
. "$repo/scripts/bench/tls.sh"
# shellcheck source=scripts/bench/hook.sh
. "$repo/scripts/bench/hook.sh"

main() {
    case "$*" in
        backup) bench_backup ;;
        tls) bench_tls ;;
        backup-measure) backup_measure ;;
        confd) bench_confd ;;
        redirects) bench_redirects ;;
        start) bench_start ;;
        hook) bench_hook ;;
        move) BENCH_MOVES=${RUNS:-5} exec "$repo/tests/e2e/fleet.sh" ;;
        # Internal: run by `start` inside the box.
        start-prepare) start_prepare ;;
        "start-measure "[0-9]*) start_measure "$2" ;;
        "hook-measure "[0-9]*) hook_measure "$2" ;;
        *)
            usage
            exit 2
            ;;
    esac
}

main "$@"
