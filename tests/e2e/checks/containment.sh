# shellcheck shell=bash
# One site cannot take the server down or reach its control plane: a fork
# bomb and a memory hog in one site leave another site, etcd and HAProxy
# serving; a site container reaches neither etcd nor the docker socket.
# Sourced by tests/e2e/run.sh.

CHECKS+=(
  t_fork_bomb_and_memory_hog_stay_in_their_site
  t_site_containers_cannot_reach_etcd_or_docker
  t_a_site_cannot_reach_another_sites_database
)

HOG_SITE=hog.example.com
# The site that must keep serving, and how many requests measure it.
CALM_SITE=calm.example.com
LATENCY_SAMPLES=20

# start_plain_site DOMAIN: a static site with one page.
start_plain_site() {
  bx mkdir -p "$IMPORT_DIR/$1/static/www-content"
  printf '%s\n' "$1" | bxi sh -c "cat >$IMPORT_DIR/$1/static/www-content/index.html"
  bx systemctl start "static@$1"
}

# p50_ms DOMAIN: the median time of LATENCY_SAMPLES requests; fails the
# check if any is not a 200.
p50_ms() {
  local i out times=()
  for ((i = 0; i < LATENCY_SAMPLES; i++)); do
    out=$(curl -s -o /dev/null -w '%{http_code} %{time_total}' --max-time "$CURL_SECS" \
      -H "Host: $1" "http://127.0.0.1:$PORT/") || true
    [ "${out%% *}" = 200 ] || { printf '    FAIL request %s to %s: %s\n' "$i" "$1" "$out" >&2; return 1; }
    times+=("${out#* }")
  done
  printf '%s\n' "${times[@]}" | sort -n | awk '{a[NR]=$1} END {printf "%d\n", a[int((NR+1)/2)]*1000}'
}

# hog_at_pids_limit: the hog site's cgroup has refused a fork for being at
# its process limit (pids.events counts those, cgroup v1 and v2 alike).
hog_at_pids_limit() {
  local id refused
  id=$(bx docker inspect -f '{{.Id}}' "static_$HOG_SITE")
  # shellcheck disable=SC2016 # expanded by the box's shell
  refused=$(bx sh -c 'cat "$(find /sys/fs/cgroup -path "*$1*" -name pids.events 2>/dev/null | head -n 1)"' sh "$id")
  [ "${refused#max }" -gt 0 ] 2>/dev/null
}

etcd_healthy() { bx curl -s --max-time 2 http://127.0.0.1:2379/health | jq -e '.health == "true"' >/dev/null 2>&1; }

t_fork_bomb_and_memory_hog_stay_in_their_site() {
  start_plain_site "$CALM_SITE"
  start_plain_site "$HOG_SITE"
  local idle bomb hog rc=0
  idle=$(p50_ms "$CALM_SITE")
  # A fork bomb, bounded by the test: it runs until the site is stopped.
  bx docker exec -d "static_$HOG_SITE" sh -c 'f() { f | f & }; f'
  wait_for 30 "the fork bomb to reach the process limit" hog_at_pids_limit
  bomb=$(p50_ms "$CALM_SITE")
  etcd_healthy || { printf '    FAIL etcd unhealthy during the fork bomb\n' >&2; return 1; }
  bx systemctl restart "static@$HOG_SITE"
  # A memory hog: tail keeps a line without end in memory until the
  # container's cgroup kills it.
  bx docker exec "static_$HOG_SITE" sh -c 'head -c 4G /dev/zero | tail -n 1 >/dev/null' >/dev/null 2>&1 || rc=$?
  hog=$(p50_ms "$CALM_SITE")
  etcd_healthy || { printf '    FAIL etcd unhealthy after the memory hog\n' >&2; return 1; }
  bx systemctl stop "static@$HOG_SITE" "static@$CALM_SITE"
  note "$CALM_SITE p50: idle ${idle} ms, during a fork bomb ${bomb} ms, after a memory hog ${hog} ms"
  expect "the memory hog was killed (exit 137)" "$rc" 137
  expect "HAProxy's container still up" "$(bx docker inspect -f '{{.State.Running}}' hostyard_haproxy)" true
}

t_site_containers_cannot_reach_etcd_or_docker() {
  local gateway own
  gateway=$(bx docker network inspect -f '{{range .IPAM.Config}}{{.Gateway}}{{end}}' hostyard)
  own=$(bx hostname -i | awk '{print $1}')
  # A container on the sites' network with PHP (the WordPress image), as a
  # compromised site would be.
  local probe=(docker run --rm --network hostyard --entrypoint php hostyard/wordpress -r)
  local host
  for host in 127.0.0.1 "$gateway" "$own"; do
    expect "etcd at $host:2379 from a site container" \
      "$(bx "${probe[@]}" "echo @fsockopen('$host', 2379, \$e, \$s, 2) ? 'open' : 'closed';")" closed
  done
  expect "the docker socket in a site container" \
    "$(bx "${probe[@]}" "echo file_exists('/var/run/docker.sock') || file_exists('/run/docker.sock') ? 'there' : 'absent';")" absent
}

t_a_site_cannot_reach_another_sites_database() {
  bx systemctl start "wordpress@$WP"
  local db_ip probe=(docker run --rm --network hostyard --entrypoint php hostyard/wordpress -r)
  db_ip=$(bx docker inspect -f '{{range .NetworkSettings.Networks}}{{.IPAddress}} {{end}}' "mysql_$WP" | awk '{print $1}')
  # Its own WordPress reaches it (by name, on their network).
  expect "mysql_$WP:3306 from wordpress_$WP" \
    "$(bx docker exec "wordpress_$WP" php -r "echo @fsockopen('mysql_$WP', 3306, \$e, \$s, 2) ? 'open' : 'closed';")" open
  # Another site's container reaches it neither by name nor by address.
  expect "mysql_$WP:3306 from another site's container" \
    "$(bx "${probe[@]}" "echo @fsockopen('mysql_$WP', 3306, \$e, \$s, 2) ? 'open' : 'closed';")" closed
  expect "$db_ip:3306 from another site's container" \
    "$(bx "${probe[@]}" "echo @fsockopen('$db_ip', 3306, \$e, \$s, 2) ? 'open' : 'closed';")" closed
}
