# shellcheck shell=bash
# scripts/bench.sh backup: backups and a restore on a server in a box, with
# Debian 13's restic into a local repository on the box, timed from inside
# the box (its clock, its curl against HAProxy on 127.0.0.1:80):
#   - the first and the second (unchanged: each skipped, nothing stored)
#     backup of 20 static sites (each BACKUP_SITE_MB of random files), one
#     `systemctl start backup@D` after another as their timers would run
#     them: time, time a site, and repository growth;
#   - a WordPress site with BACKUP_WP_MB of uploads: the p50 latency of its
#     front page while its own backup@ unit runs, over the p50 when idle,
#     measured in the same run;
#   - the restore of that site after its data is lost: `hostyard restore D`
#     to its first 200 through HAProxy.
# Sourced by scripts/bench.sh (which has the shared helpers: median, field,
# now_ms, remove_box, BOX).

BACKUP_SITES=20
BACKUP_SITE_MB=2
BACKUP_WP_MB=100
BACKUP_WP=bench-wp.example.com
BACKUP_REPO=/srv/bench-restic
# Requests to the WordPress front page while idle.
BACKUP_IDLE_REQUESTS=40
# Bound of every wait for a site's 200, in s.
BACKUP_ANSWER_SECS=300

bench_backup() {
    need_root "boot a systemd container"
    local records
    trap remove_box EXIT
    # As bench_start: a new bash reads the whole script before running it.
    # shellcheck disable=SC2154 # repo: set by scripts/bench.sh, which sources this
    BOX=$BOX BOX_PORT=auto KEEP_BOX=1 SAMPLE_SITE=0 bash -c '. "$0"' "$repo/scripts/server-in-a-box.sh"
    step "timing backups and a restore in $BOX"
    # The box prints records on stdout and progress on stderr.
    records=$(docker exec "$BOX" /hostyard/src/scripts/bench.sh backup-measure)
    backup_report "$records"
}

# backup_report RECORDS: the figures, then one summary line.
backup_report() {
    local r=$1
    step "figures (box clock; repository sizes by du)"
    note "$BACKUP_SITES static sites of $BACKUP_SITE_MB MB, backed up one after another: first $(field first 2 <<<"$r") s, second (unchanged) $(field second 2 <<<"$r") s ($(field second 3 <<<"$r") s a site)"
    note "repository: $(field repo 2 <<<"$r") MB before, $(field repo 3 <<<"$r") MB after the first round, $(field repo 4 <<<"$r") MB after the second"
    note "WordPress front page p50: idle $(field latency 2 <<<"$r") ms ($(field latency 4 <<<"$r") requests), during its own backup $(field latency 3 <<<"$r") ms ($(field latency 5 <<<"$r") requests; the backup took $(field latency 6 <<<"$r") s)"
    note "restore of WordPress with $BACKUP_WP_MB MB of uploads: hostyard restore returned after $(field restore 3 <<<"$r") s, first 200 after $(field restore 2 <<<"$r") s"
    awk -v wp="$BACKUP_WP_MB" '
        $1 == "first" { first = $2 } $1 == "second" { second = $2 }
        $1 == "repo" { growth = $4 - $3 }
        $1 == "restore" { restore = $2 }
        $1 == "latency" { ratio = ($2 > 0) ? $3 / $2 : 0 }
        $1 == "second" { per_site = $3 }
        END { printf "backup: first_20_s=%.1f second_20_s=%.1f unchanged_site_s=%.3f growth_second_mb=%.1f restore_wp_%smb_s=%.1f p50_during_vs_idle=%.2f\n",
            first, second, per_site, growth, wp, restore, ratio }' <<<"$r"
}

# ---- backup: inside the box (bench.sh is mounted at /hostyard/src) ---------

# secs_since T0_MS: seconds since T0_MS, one decimal.
secs_since() { awk -v ms=$(($(now_ms) - $1)) 'BEGIN { printf "%.1f\n", ms / 1000 }'; }

# repo_mb: the repository's size in MB, one decimal.
repo_mb() { du -sk "$BACKUP_REPO" | awk '{ printf "%.1f\n", $1 / 1024 }'; }

# answers DOMAIN: HAProxy answers 200 for DOMAIN's front page.
answers() {
    [ "$(curl -s -o /dev/null --max-time 5 --connect-to ::127.0.0.1:80 -w '%{http_code}' "http://$1/")" = 200 ]
}

# front_ms DOMAIN: one GET of DOMAIN's front page, its total time in ms.
front_ms() {
    curl -s -o /dev/null --max-time 30 --connect-to ::127.0.0.1:80 -w '%{time_total}\n' "http://$1/" |
        awk '{ printf "%.0f\n", $1 * 1000 }'
}

# random_files DIR MB: MB files of 1 MB of random bytes (restic can neither
# compress nor deduplicate them).
random_files() {
    local i
    mkdir -p "$1"
    for ((i = 1; i <= $2; i++)); do head -c 1048576 /dev/urandom >"$1/f$i.bin"; done
}

backup_configure() {
    printf 'backup:\n  repository: %s\n' "$BACKUP_REPO" >>/etc/hostyard/hostyard.yaml
    hostyard generate --out /etc/systemd/system >/dev/null
    systemctl daemon-reload
    hostyard backup init >/dev/null
}

# backup_units DOMAIN...: each site's backup@ unit, one after another.
backup_units() {
    local d
    for d in "$@"; do systemctl start "backup@$d.service"; done
}

backup_measure() {
    local import domains sites=() i d t0 r0 r1 lat_idle lat_during pid n_during backup_s
    import=$(import_dir)
    domains=$(hostyard names dirs | awk '$1 == "domains" { print $2 }')
    [ -n "$domains" ] || die "hostyard names dirs names no domains dir"
    backup_configure
    note "restic $(restic version | awk '{ print $2 }'), repository $BACKUP_REPO"

    for ((i = 1; i <= BACKUP_SITES; i++)); do
        d=site$i.backup.example.com
        sites+=("$d")
        random_files "$import/$d/static/www-content/media" "$BACKUP_SITE_MB"
        printf '<h1>%s</h1>\n' "$d" >"$import/$d/static/www-content/index.html"
    done
    systemctl start --no-block "${sites[@]/#/static@}"
    for d in "${sites[@]}"; do wait_for "$BACKUP_ANSWER_SECS" "$d" answers "$d" || die "$d never answered"; done
    note "$BACKUP_SITES static sites answer"

    r0=$(repo_mb)
    t0=$(now_ms)
    backup_units "${sites[@]}"
    echo "first $(secs_since "$t0")"
    r1=$(repo_mb)
    t0=$(now_ms)
    backup_units "${sites[@]}"
    echo "second $(secs_since "$t0") $(awk -v ms=$(($(now_ms) - t0)) -v n="$BACKUP_SITES" 'BEGIN { printf "%.3f\n", ms / 1000 / n }')"
    # Each of them skipped: its unit's last line says so.
    for d in "${sites[@]}"; do
        journalctl -u "backup@$d.service" -n 5 -o cat | grep -q 'is unchanged since snapshot' ||
            die "the second backup of $d was not skipped: journalctl -u backup@$d.service"
    done
    echo "repo $r0 $r1 $(repo_mb)"

    # WordPress, installed by its start, with uploads as its own user.
    t0=$(now_ms)
    systemctl start "wordpress@$BACKUP_WP"
    wait_for "$BACKUP_ANSWER_SECS" "$BACKUP_WP" answers "$BACKUP_WP" || die "$BACKUP_WP never answered"
    note "WordPress answers after $(secs_since "$t0") s"
    random_files "$domains/$BACKUP_WP/wp-content/uploads/bench" "$BACKUP_WP_MB"
    chown -R --reference="$domains/$BACKUP_WP/wp-content" "$domains/$BACKUP_WP/wp-content/uploads"

    # Idle, then during its own backup, in the same run: one request after
    # another, each on a new connection.
    front_ms "$BACKUP_WP" >/dev/null
    lat_idle=$(for ((i = 1; i <= BACKUP_IDLE_REQUESTS; i++)); do front_ms "$BACKUP_WP"; done)
    t0=$(now_ms)
    systemctl start "backup@$BACKUP_WP.service" &
    pid=$!
    # Bounded by the unit's own timeout; at most 10000 requests.
    lat_during=$(i=0; while kill -0 "$pid" 2>/dev/null && ((i++ < 10000)); do front_ms "$BACKUP_WP"; done)
    wait "$pid" || die "backup@$BACKUP_WP failed: journalctl -u backup@$BACKUP_WP"
    backup_s=$(secs_since "$t0")
    n_during=$(grep -c . <<<"$lat_during" || true)
    echo "latency $(median <<<"$lat_idle") $(median <<<"$lat_during") $BACKUP_IDLE_REQUESTS $n_during $backup_s"

    # Lost: the site stopped, its data removed, its importer stopped (it
    # stays active otherwise and a start would not run it again).
    systemctl stop "wordpress@$BACKUP_WP" "mysql@$BACKUP_WP"
    rm -rf "${domains:?}/$BACKUP_WP"
    systemctl stop "wordpress-importer@$BACKUP_WP"
    t0=$(now_ms)
    hostyard restore "$BACKUP_WP" >&2
    local returned
    returned=$(secs_since "$t0")
    wait_for "$BACKUP_ANSWER_SECS" "the restored $BACKUP_WP" answers "$BACKUP_WP" || die "the restored $BACKUP_WP never answered"
    echo "restore $(secs_since "$t0") $returned"
    [ "$(find "$domains/$BACKUP_WP/wp-content/uploads/bench" -type f | wc -l)" = "$BACKUP_WP_MB" ] ||
        die "the restored $BACKUP_WP lacks its uploads"
}
