# shellcheck shell=bash
# ACME on the server in a box: pebble (Debian 13's package, installed in
# the box for this check only) on the box's loopback, its HTTP-01
# validations going to HAProxy's port 80 and every name resolved to
# 127.0.0.1 by pebble-challtestsrv. With tls.acme pointed at it,
# `systemctl start static@D` leads to valid HTTPS for D and www.D (curl
# checks the chain against pebble's root from its management API)
# without a reload or restart of HAProxy; the time from the start to the
# first valid HTTPS answer is printed (the tls bench's start_to_https_ms).
# Sourced by tests/e2e/run.sh.

# Last: it leaves tls.acme configured, so every site on the box gets a
# certificate from pebble and redirects HTTP to HTTPS from then on.
LAST_CHECKS+=(t_acme_certificate_for_a_started_site_without_a_reload)

ACME_SITE=acme.example.com
# Not under /tmp: confd's unit has a private /tmp, and it reads the CA
# of pebble's HTTPS (tls.acme.ca_file) from here.
PEBBLE_DIR=/etc/hostyard/e2e-pebble
# Ports on the box's loopback.
PEBBLE_ACME_PORT=14000
PEBBLE_MANAGEMENT_PORT=15000
PEBBLE_DNS_PORT=8053

# acme_code HOST: the status HAProxy answers over HTTPS for HOST, checked
# against pebble's root (000 when the chain does not verify).
acme_code() {
  bx curl -s -o /dev/null -w '%{http_code}' --max-time "$CURL_SECS" \
    --cacert "$PEBBLE_DIR/root.pem" --resolve "$1:443:127.0.0.1" "https://$1/" || true
}

acme_verifies() { [ "$(acme_code "$1")" = 200 ]; }

pebble_answers() {
  bx curl -sf -o /dev/null --max-time 2 --cacert "$PEBBLE_DIR/server.pem" \
    "https://127.0.0.1:$PEBBLE_ACME_PORT/dir"
}

# start_pebble: pebble and its DNS as transient units in the box.
start_pebble() {
  if ! bx sh -c 'command -v pebble' >/dev/null; then
    bx apt-get update -qq >/dev/null
    bx env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq pebble >/dev/null
  fi
  local dir
  dir=$(mktemp -d)
  # Pebble's own HTTPS certificate, for 127.0.0.1; not a CA (rustls
  # refuses a CA certificate as a server's: CaUsedAsEndEntity).
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
    -subj "/CN=pebble" -addext "subjectAltName=IP:127.0.0.1" \
    -addext "basicConstraints=critical,CA:FALSE" \
    -keyout "$dir/server.key" -out "$dir/server.pem" 2>/dev/null
  bx mkdir -p "$PEBBLE_DIR"
  bxi sh -c "cat >$PEBBLE_DIR/server.pem" <"$dir/server.pem"
  bxi sh -c "cat >$PEBBLE_DIR/server.key" <"$dir/server.key"
  rm -rf "$dir"
  bxi sh -c "cat >$PEBBLE_DIR/pebble.json" <<JSON
{"pebble": {"listenAddress": "127.0.0.1:$PEBBLE_ACME_PORT",
 "managementListenAddress": "127.0.0.1:$PEBBLE_MANAGEMENT_PORT",
 "certificate": "$PEBBLE_DIR/server.pem", "privateKey": "$PEBBLE_DIR/server.key",
 "httpPort": 80, "tlsPort": 5001, "ocspResponderURL": "",
 "externalAccountBindingRequired": false}}
JSON
  bx systemd-run -q --unit=e2e-pebble-dns pebble-challtestsrv \
    -dns01 "127.0.0.1:$PEBBLE_DNS_PORT" -http01 "" -https01 "" -tlsalpn01 "" \
    -management 127.0.0.1:8055 -defaultIPv4 127.0.0.1 -defaultIPv6 ""
  bx systemd-run -q --unit=e2e-pebble -E PEBBLE_VA_NOSLEEP=1 -E PEBBLE_WFE_NONCEREJECT=0 \
    pebble -config "$PEBBLE_DIR/pebble.json" -dnsserver "127.0.0.1:$PEBBLE_DNS_PORT"
  wait_for 20 "pebble to answer" pebble_answers
  bx sh -c "curl -sf --cacert $PEBBLE_DIR/server.pem https://127.0.0.1:$PEBBLE_MANAGEMENT_PORT/roots/0 >$PEBBLE_DIR/root.pem"
}

stop_pebble() {
  bx systemctl stop e2e-pebble e2e-pebble-dns 2>/dev/null || true
  bx rm -rf "$PEBBLE_DIR"
}

t_acme_certificate_for_a_started_site_without_a_reload() {
  local config=/etc/hostyard/hostyard.yaml
  start_pebble
  bx cp "$config" "$config.before-acme"
  yaml_checked <<YAML | bxi sh -c "cat >>$config"
tls:
  acme:
    directory: https://127.0.0.1:$PEBBLE_ACME_PORT/dir
    email: ops@hoster.example
    terms_accepted: true
    ca_file: $PEBBLE_DIR/server.pem
YAML
  # The checks before restarted confd too: its unit allows 5 starts in
  # 300 s (StartLimitBurst=), which a test's own restarts must not spend.
  bx systemctl reset-failed haproxy-confd
  bx systemctl restart haproxy-confd
  bx mkdir -p "$IMPORT_DIR/$ACME_SITE/static/www-content"
  printf 'acme site\n' | bxi sh -c "cat >$IMPORT_DIR/$ACME_SITE/static/www-content/index.html"
  local started reloads t0
  started=$(bx docker inspect -f '{{.State.StartedAt}}' hostyard_haproxy)
  reloads=$(reloads_so_far)
  expect "https before the site starts" "$(acme_code "$ACME_SITE")" 000
  t0=$(now_ms)
  bx systemctl start "static@$ACME_SITE"
  wait_for 60 "https://$ACME_SITE to verify against pebble's root" acme_verifies "$ACME_SITE" || true
  note "start_to_https_ms=$(($(now_ms) - t0)) (systemctl start static@$ACME_SITE to the first valid HTTPS answer)"
  expect "https://$ACME_SITE/" "$(acme_code "$ACME_SITE")" 200
  expect "https://www.$ACME_SITE/ (redirect to the name)" "$(acme_code "www.$ACME_SITE")" 301
  local haproxy_dir
  haproxy_dir=$(bx hostyard names dirs | awk '$1 == "haproxy" { print $2 }')
  expect "its source in tls-state.json" \
    "$(bx cat "$haproxy_dir/tls-state.json" | jq -r --arg d "$ACME_SITE" '.sites[$d].source')" acme
  expect "HAProxy's container not restarted" \
    "$(bx docker inspect -f '{{.State.StartedAt}}' hostyard_haproxy)" "$started"
  expect "no HAProxy reload" "$(reloads_so_far)" "$reloads"
  # Leave the box as the next checks expect it: no ACME.
  bx systemctl stop "static@$ACME_SITE"
  bx mv "$config.before-acme" "$config"
  bx systemctl reset-failed haproxy-confd
  bx systemctl restart haproxy-confd
  stop_pebble
}
