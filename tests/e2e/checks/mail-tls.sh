# shellcheck shell=bash
# postfix's STARTTLS on the server in a box: the server name's certificate
# once confd serves one for that name (checked against the test's CA, its
# name verified), HAProxy's self-signed default before and after; the swap
# reaches postfix through postfix-tls.path without an operator's reload; no
# TLS 1.1; the key copy is 0600; mail to a hosted domain is still forwarded. Sourced by tests/e2e/run.sh (after https.sh,
# make_tls_bundle is in tests/e2e/lib/tls.sh).

CHECKS+=(t_mail_starttls_offers_the_server_certificate)

MAIL_TLS_NAME=mx.mail-tls.example

# starttls_fingerprint [OPENSSL_OPTION...]: the SHA-256 fingerprint of the
# certificate postfix offers after STARTTLS on the box's port 25 (empty
# when the handshake fails), by the openssl of the postfix image.
starttls_fingerprint() {
  bx docker run --rm --network host --entrypoint sh "$POSTFIX_IMAGE" -c \
    'openssl s_client -starttls smtp -connect 127.0.0.1:25 "$@" </dev/null 2>/dev/null |
       openssl x509 -noout -fingerprint -sha256 2>/dev/null | sed "s/.*=//"' starttls "$@" || true
}

# pem_fingerprint FILE: the same for a certificate file in the box.
pem_fingerprint() {
  bx docker run --rm -v "$1:/cert.pem:ro" --entrypoint openssl "$POSTFIX_IMAGE" \
    x509 -in /cert.pem -noout -fingerprint -sha256 | sed 's/.*=//'
}

# offers FINGERPRINT: postfix offers that certificate now.
offers() { [ "$(starttls_fingerprint)" = "$1" ]; }

t_mail_starttls_offers_the_server_certificate() {
  need_mail_sink
  local certs default dir own
  certs="$(bx hostyard names dirs | awk '$1 == "haproxy" { print $2 }')/certs"
  expect "postfix-tls.path" "$(bx systemctl is-active postfix-tls.path)" active
  # The server name, once (a rerun on a kept box finds it set).
  if [ -z "$(bx hostyard config get mail.hostname)" ]; then
    bx sed -i "s/^mail:\$/mail:\n  hostname: $MAIL_TLS_NAME/" /etc/hostyard/hostyard.yaml
    bx systemctl reload postfix.service
  fi
  expect "mail.hostname" "$(bx hostyard config get mail.hostname)" "$MAIL_TLS_NAME"

  # No certificate for the name yet: HAProxy's default one.
  default=$(pem_fingerprint "$certs/_default.pem")
  wait_for 20 "postfix to offer the default certificate" offers "$default" || true
  expect "STARTTLS before the name has a certificate (the default)" "$(starttls_fingerprint)" "$default"
  expect "postfix's key copy" "$(bx stat -c '%a %U' "$POSTFIX_DIR/etc/tls.pem")" "600 root"
  expect "TLS 1.2" "$(starttls_fingerprint -tls1_2)" "$default"
  expect "TLS 1.1 refused" "$(starttls_fingerprint -tls1_1 -cipher 'DEFAULT:@SECLEVEL=0')" ""

  # The name gets its own certificate (as an import or ACME leaves it):
  # confd checks and lists it, postfix-tls.path reloads postfix.
  dir=$(mktemp -d)
  make_tls_bundle "$dir" "$MAIL_TLS_NAME"
  bxi sh -c 'cat >/tmp/hostyard-e2e-mail-ca.pem' <"$dir/ca.pem"
  bx mkdir -p "$DOMAINS_DIR/$MAIL_TLS_NAME/tls"
  bxi sh -c "cat >$DOMAINS_DIR/$MAIL_TLS_NAME/tls/$MAIL_TLS_NAME.pem" <"$dir/bundle.pem"
  own=$(openssl x509 -in "$dir/site.pem" -noout -fingerprint -sha256 | sed 's/.*=//')
  rm -rf "$dir"
  local t0
  t0=$(now_ms)
  wait_for 30 "postfix to offer $MAIL_TLS_NAME's certificate" offers "$own" || true
  note "offered $(($(now_ms) - t0)) ms after the file was put in place"
  expect "STARTTLS with $MAIL_TLS_NAME's certificate" "$(starttls_fingerprint)" "$own"
  expect "its chain and name verify" "$(bx docker run --rm --network host \
    -v /tmp/hostyard-e2e-mail-ca.pem:/ca.pem:ro --entrypoint sh "$POSTFIX_IMAGE" -c \
    "openssl s_client -starttls smtp -connect 127.0.0.1:25 -CAfile /ca.pem -verify_return_error \
       -verify_hostname $MAIL_TLS_NAME </dev/null 2>&1 | grep -o 'Verify return code: 0 (ok)' | head -n 1")" \
    "Verify return code: 0 (ok)"
  expect "postfix-tls.service reloaded postfix" "$(bx journalctl -u postfix-tls.service -o cat |
    grep -q "out of date (now: $certs/$MAIL_TLS_NAME.pem)" && echo yes)" yes

  # Mail to a hosted domain is still taken and forwarded.
  expect "starttls@$STATIC accepted" "$(smtp "starttls@$STATIC" >/dev/null && echo yes)" yes
  wait_for 30 "the forward of starttls@$STATIC in the sink" sunk catchall@mailbox.example "starttls@$STATIC" || true
  expect "starttls@$STATIC forwarded" "$(sunk catchall@mailbox.example "starttls@$STATIC" && echo yes)" yes

  # The name's certificate removed: back to the default.
  bx rm -r "$DOMAINS_DIR/$MAIL_TLS_NAME"
  wait_for 30 "postfix to offer the default certificate again" offers "$default" || true
  expect "STARTTLS after the name's certificate is gone" "$(starttls_fingerprint)" "$default"
}
