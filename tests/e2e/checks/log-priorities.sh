# shellcheck shell=bash
# `journalctl -p warning` shows problems only: confd's routine lines are
# info or notice, a skipped key a warning. Sourced by tests/e2e/run.sh.

CHECKS+=(t_journal_priorities_filter_problems)

# etcd_put KEY VALUE: through etcd's JSON gateway on the box's loopback.
etcd_put() {
  local k v
  k=$(printf '%s' "$1" | base64 -w0)
  v=$(printf '%s' "$2" | base64 -w0)
  bx curl -s --max-time 5 -X POST http://127.0.0.1:2379/v3/kv/put -d "{\"key\":\"$k\",\"value\":\"$v\"}" >/dev/null
}

confd_warns_about() {
  bx journalctl -u haproxy-confd.service -p warning --no-pager -o cat | grep -q "$1"
}

t_journal_priorities_filter_problems() {
  local key=/services/static/priority-check.example.com
  etcd_put "$key" '{not json'
  wait_for 20 "confd's warning about $key" confd_warns_about "skipped $key"
  expect "routine lines among confd's warnings" \
    "$(bx journalctl -u haproxy-confd.service -p warning --no-pager -o cat | grep -c -E '^(ready|routing in sync|applied )')" 0
  expect "routine lines in confd's whole journal" \
    "$([ "$(bx journalctl -u haproxy-confd.service --no-pager -o cat | grep -c -E '^ready$')" -ge 1 ] && echo some)" some
  bx curl -s --max-time 5 -X POST http://127.0.0.1:2379/v3/kv/deleterange \
    -d "{\"key\":\"$(printf '%s' "$key" | base64 -w0)\"}" >/dev/null
}
