# shellcheck shell=bash
# HAProxy's process is the one thing every site goes through: a restart,
# crash or watchdog kill of confd must not touch it, and stopping HAProxy on
# purpose lets the requests in flight finish. Sourced by tests/e2e/run.sh.

CHECKS+=(
  t_confd_restart_crash_and_watchdog_kill_leave_haproxy_serving
  t_haproxy_stop_finishes_requests_in_flight
)

# Requests of the load below, one keep-alive connection, 20 a second.
CONFD_LOAD_REQUESTS=160

# ensure_static_site: $STATIC routed (started here when the check runs alone).
ensure_static_site() {
  [ "$(code "$STATIC" /)" = 200 ] && return
  bx mkdir -p "$IMPORT_DIR/$STATIC/static/www-content"
  printf 'static site %s\n' "$STATIC" | bxi sh -c "cat >$IMPORT_DIR/$STATIC/static/www-content/index.html"
  bx systemctl start "static@$STATIC"
}

haproxy_started_at() { bx docker inspect -f '{{.State.StartedAt}}' hostyard_haproxy; }

confd_active() { [ "$(bx systemctl is-active haproxy-confd.service)" = active ]; }

# confd_pid: its main PID (changes when systemd restarts it).
confd_pid() { bx systemctl show -p MainPID --value haproxy-confd.service; }

# confd_back_after PID: confd runs again, as a new process.
confd_back_after() { confd_active && [ "$(confd_pid)" != "$1" ] && [ "$(confd_pid)" != 0 ]; }

t_confd_restart_crash_and_watchdog_kill_leave_haproxy_serving() {
  ensure_static_site
  local before codes pid load failed total
  before=$(haproxy_started_at)
  codes=$(mktemp)
  # One curl, one keep-alive connection, a request every 50 ms.
  # (-o applies to one URL: each gets its own, or bodies reach the count.)
  local urls=() i
  for ((i = 0; i < CONFD_LOAD_REQUESTS; i++)); do urls+=(-o /dev/null "http://127.0.0.1:$PORT/"); done
  curl -s --rate 20/s --max-time 30 -H "Host: $STATIC" -w '%{http_code}\n' "${urls[@]}" >"$codes" 2>/dev/null &
  load=$!
  pid=$(confd_pid)
  bx systemctl restart haproxy-confd.service
  wait_for 30 "confd after systemctl restart" confd_back_after "$pid"
  # A crash: systemd restarts it (Restart=on-failure).
  pid=$(confd_pid)
  bx systemctl kill -s KILL haproxy-confd.service
  wait_for 30 "confd after SIGKILL" confd_back_after "$pid"
  # What the watchdog sends when confd stops answering.
  pid=$(confd_pid)
  bx systemctl kill -s ABRT haproxy-confd.service
  wait_for 30 "confd after SIGABRT" confd_back_after "$pid"
  wait "$load" || true
  total=$(wc -l <"$codes")
  failed=$(grep -vc '^200$' "$codes" || true)
  rm -f "$codes"
  note "$total requests during a restart, a SIGKILL and a SIGABRT of confd: $failed not 200"
  expect "requests answered" "$total" "$CONFD_LOAD_REQUESTS"
  expect "failed requests" "$failed" 0
  expect "HAProxy's container start time" "$(haproxy_started_at)" "$before"
}

t_haproxy_stop_finishes_requests_in_flight() {
  ensure_static_site
  local file=$DOMAINS_DIR/$STATIC/www/e2e-big.bin got rc=0 dl
  # 64 MiB read at 8 MiB/s: in flight for about 8 s, and far more than the
  # kernel's socket buffers hold (HAProxy cannot have sent it all already).
  bx dd if=/dev/urandom of="$file" bs=1M count=64 status=none
  local want
  want=$(bx sha256sum "$file" | cut -d' ' -f1)
  dl=$(mktemp)
  curl -s --limit-rate 8M --max-time 60 -H "Host: $STATIC" -o "$dl" "http://127.0.0.1:$PORT/e2e-big.bin" &
  local load=$!
  # Stop once the download is under way.
  wait_for 10 "the download to start" test -s "$dl"
  bx systemctl stop haproxy.service
  wait "$load" || rc=$?
  got=$(sha256sum "$dl" | cut -d' ' -f1)
  rm -f "$dl"
  bx rm -f "$file"
  bx systemctl start haproxy.service
  wait_for 30 "$STATIC through HAProxy again" answers_200 "$STATIC"
  expect "curl's exit status for the download in flight" "$rc" 0
  expect "the download's bytes" "$got" "$want"
}
