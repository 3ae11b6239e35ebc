# shellcheck shell=bash
# HTTPS on the server in a box: a site imported with TLS/<domain>.pem is
# served with that certificate (its chain checked by curl against the
# test's CA) for the name and its www. alias once `systemctl start`
# returns, without a reload or restart of HAProxy; HTTP then redirects,
# except ACME's challenge path. Sourced by tests/e2e/run.sh.

CHECKS+=(t_https_serves_an_imported_certificate_without_a_reload)

TLS_SITE=tls.example.com

# https_code HOST PATH: the status HAProxy answers over HTTPS in the box,
# verifying the chain against the test CA (000 when it does not verify).
https_code() {
  bx curl -s -o /dev/null -w '%{http_code}' --max-time "$CURL_SECS" \
    --cacert /tmp/hostyard-e2e-ca.pem --resolve "$1:443:127.0.0.1" "https://$1$2" || true
}

https_verifies() { [ "$(https_code "$1" /)" = 200 ]; }

reloads_so_far() {
  bx journalctl -u haproxy-confd -o cat | grep -c 'reloaded hitlessly' || true
}

t_https_serves_an_imported_certificate_without_a_reload() {
  local dir
  dir=$(mktemp -d)
  make_tls_bundle "$dir" "$TLS_SITE"
  bxi sh -c 'cat >/tmp/hostyard-e2e-ca.pem' <"$dir/ca.pem"
  bx mkdir -p "$IMPORT_DIR/$TLS_SITE/static/www-content" "$IMPORT_DIR/$TLS_SITE/TLS"
  printf 'tls site\n' | bxi sh -c "cat >$IMPORT_DIR/$TLS_SITE/static/www-content/index.html"
  bxi sh -c "cat >$IMPORT_DIR/$TLS_SITE/TLS/$TLS_SITE.pem" <"$dir/bundle.pem"
  rm -rf "$dir"
  local started reloads
  started=$(bx docker inspect -f '{{.State.StartedAt}}' hostyard_haproxy)
  reloads=$(reloads_so_far)
  # Before any site certificate: the default one, which the CA does not sign.
  expect "https before the site starts" "$(https_code "$TLS_SITE" /)" 000
  bx systemctl start "static@$TLS_SITE"
  wait_for 10 "https://$TLS_SITE to verify" https_verifies "$TLS_SITE" || true
  expect "https://$TLS_SITE/" "$(https_code "$TLS_SITE" /)" 200
  expect "https://www.$TLS_SITE/ (redirect to the name)" "$(https_code "www.$TLS_SITE" /)" 301
  expect "http://$TLS_SITE/ (redirect to https)" "$(code "$TLS_SITE" /)" 301
  expect "http://$TLS_SITE/.well-known/acme-challenge/x (stays on http)" \
    "$(code "$TLS_SITE" /.well-known/acme-challenge/x)" 404
  expect "HTTP/2 by ALPN" "$(bx curl -s -o /dev/null -w '%{http_version}' --max-time "$CURL_SECS" \
    --cacert /tmp/hostyard-e2e-ca.pem --resolve "$TLS_SITE:443:127.0.0.1" "https://$TLS_SITE/")" 2
  expect "HAProxy's container not restarted" \
    "$(bx docker inspect -f '{{.State.StartedAt}}' hostyard_haproxy)" "$started"
  expect "no HAProxy reload" "$(reloads_so_far)" "$reloads"
  bx systemctl stop "static@$TLS_SITE"
}
