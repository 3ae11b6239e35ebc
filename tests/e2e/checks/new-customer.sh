# shellcheck shell=bash
# A new customer's WordPress site, end to end, by exactly the commands of
# docs/new-customer.md, in its order. Sourced by tests/e2e/run.sh.

CHECKS+=(t_a_new_customer_end_to_end)

CUSTOMER=shop.example

# until_is WHAT WANT CMD...: waits (10 s at most) until CMD prints WANT
# (confd follows a declaration through its watch), then expects it.
until_is() {
  local what=$1 want=$2 t0 got
  shift 2
  t0=$(now_ms)
  until got=$("$@") && [ "$got" = "$want" ]; do
    (($(now_ms) - t0 < 10000)) || break
    sleep 0.1
  done
  expect "$what" "$got" "$want"
}

# status_line HOST PATH [CURL_ARGS...]: "<status> <Location>" of one request.
status_line() {
  local host=$1 path=$2
  shift 2
  curl -s -o /dev/null -w '%{http_code} %{redirect_url}' --max-time "$CURL_SECS" \
    -H "Host: $host" "$@" "http://127.0.0.1:$PORT$path" || true
}

t_a_new_customer_end_to_end() {
  local site=$CUSTOMER www=www.$CUSTOMER preview jar
  # 1. Start the site.
  bx systemctl enable --now "wordpress@$site"
  expect "hostyard wordpress password" \
    "$(bx hostyard wordpress password "$site" | grep -c '^password: .\{20,\}$')" 1

  # 2. A preview behind a password.
  bx sh -c "cd /root && openssl rand -base64 18 > preview.pass &&
    hostyard site set $site --basic-auth preview < preview.pass"
  until_is "$site without the preview password" "401 " status_line "$site" /

  # 3. Names, redirects and headers.
  bx hostyard site set "$site" --add-alias shop-old.example
  bx hostyard site set "$site" --redirect-prefix /catalog/=/shop/ --redirect /about.php=/about/
  bx hostyard site set "$site" --canonical www --headers basic
  until_is "shop-old.example/x?y=1" "301 http://$www/x?y=1" status_line shop-old.example '/x?y=1'
  expect "$site/x" "$(status_line "$site" /x)" "301 http://$www/x"
  expect "$www/catalog/a?b=1" "$(status_line "$www" '/catalog/a?b=1')" "301 http://$www/shop/a?b=1"
  expect "$site/about.php" "$(status_line "$site" /about.php)" "301 http://$www/about/"
  expect "$www without the password" "$(status_line "$www" /)" "401 "
  preview=$(bx cat /root/preview.pass)
  expect "$www with the password" "$(status_line "$www" / -u "preview:$preview")" "200 "
  expect "$www's nosniff header" \
    "$(curl -s -o /dev/null -D - --max-time "$CURL_SECS" -H "Host: $www" -u "preview:$preview" \
      "http://127.0.0.1:$PORT/" | tr -d '\r' | grep -ci '^x-content-type-options: nosniff')" 1

  # 4. DNS: the mail records to publish.
  expect "hostyard mail dns: SPF, DKIM, DMARC" \
    "$(bx hostyard mail dns "$site" | grep -c -e "^$site\. IN TXT \"v=spf1 " -e "^hy1\._domainkey\.$site\. IN TXT " -e "^_dmarc\.$site\. IN TXT \"v=DMARC1")" 3

  # 6. WordPress: PHP limits.
  bx hostyard site set "$site" --php-upload 128m --php-time 120s
  expect "site show's PHP limits" "$(bx hostyard site show "$site" | grep -c '^php: upload 128M, memory 256M (default), time 120s$')" 1

  # 8. Launch, then check.
  bx hostyard site set "$site" --remove-basic-auth
  bx rm /root/preview.pass
  until_is "$www once launched" "200 " status_line "$www" /
  jar=$(mktemp /tmp/e2e-customer-jar.XXXXXX)
  expect "the administrator logs in on $www" \
    "$(bx hostyard wordpress password "$site" | sed -n 's/^password: //p' | tr -d '\n' | wp_login "$www" admin "$jar")" 302
  rm -f "$jar"
  # The sites' table only: the backups' table below it names the site too.
  expect "hostyard status lists $site" \
    "$(bx hostyard status | awk '/^BACKUP OF/ { exit } { print }' | grep -c "^$site ")" 1
  bx systemctl disable --now "wordpress@$site"
}
