# shellcheck shell=bash
# A WordPress site's PHP limits, as docs/sites.md ("PHP limits") tells the
# operator: `hostyard site set D --php-upload 2m --php-memory 200m` takes
# effect at once (Apache restarts gracefully, HAProxy follows); a 1.5 MB
# file uploads through WordPress's media API, a 3 MB one gets 413 from
# HAProxy; the site's PHP sees the limits and its .htaccess (php_value) or
# ini_set cannot raise them; a value over the node config's bound and a
# static site are refused, changing nothing; --php-reset brings the
# defaults back. Sourced by tests/e2e/run.sh.

CHECKS+=(t_wordpress_php_limits)

# php_media_upload JAR FILE: the status of a media upload of FILE by the
# login in JAR (the REST API, as the block editor's upload does).
php_media_upload() {
  local nonce
  nonce=$(curl -s --max-time 60 -H "Host: $WP" -b "$1" \
    "http://127.0.0.1:$PORT/wp-admin/admin-ajax.php?action=rest-nonce")
  curl -s -o /dev/null -w '%{http_code}' --max-time 120 -H "Host: $WP" -b "$1" \
    -H "X-WP-Nonce: $nonce" -F "file=@$2;type=application/pdf" \
    "http://127.0.0.1:$PORT/?rest_route=/wp/v2/media" || true
}

# php_pdf FILE BYTES: a PDF of about BYTES (finfo says application/pdf,
# which WordPress accepts).
php_pdf() {
  python3 - "$1" "$2" <<'PY'
import sys
with open(sys.argv[1], "wb") as f:
    f.write(b"%PDF-1.4\n")
    line = b"%" + b"x" * 78 + b"\n"
    for _ in range(int(sys.argv[2]) // len(line)):
        f.write(line)
    f.write(b"%%EOF\n")
PY
}

# php_limits_are WANT: the site's PHP reports WANT (Apache's graceful
# restart takes its first requests a moment after the signal).
php_limits_are() { [ "$(body "$WP" /wp-content/plugins/e2e-limits/limits.php)" = "$1" ]; }

t_wordpress_php_limits() {
  local work jar out plugin t0
  need_wordpress
  need_static_site
  work=$(mktemp -d /tmp/e2e-php.XXXXXX)
  jar=$work/jar
  # The site's own PHP reports what it runs with, and tries to raise it.
  plugin=$DOMAINS_DIR/$WP/wp-content/plugins/e2e-limits
  bx mkdir -p "$plugin"
  printf '%s\n' '<?php' \
    'echo ini_get("upload_max_filesize"), " ", ini_get("post_max_size"), " ", ini_get("memory_limit"), " ", ini_get("max_execution_time");' \
    '@ini_set("memory_limit", "4G"); @set_time_limit(3000);' \
    'echo " after ini_set: ", ini_get("memory_limit"), " ", ini_get("max_execution_time"), "\n";' |
    bxi sh -c "cat >$plugin/limits.php"
  # The tenant's .htaccess (WordPress writes it) tries too.
  printf 'php_value upload_max_filesize 1G\nphp_value post_max_size 1G\nphp_value memory_limit 2G\n' |
    bxi sh -c "cat >>$DOMAINS_DIR/$WP/.htaccess"

  expect "the defaults, .htaccess ignored" "$(body "$WP" /wp-content/plugins/e2e-limits/limits.php)" \
    "64M 64M 256M 60 after ini_set: 256M 60"
  t0=$(now_ms)
  out=$(bx hostyard site set "$WP" --php-upload 2m --php-memory 200m)
  printf '%s\n' "$out" >&2
  expect "site set's PHP line" "$(grep -c '^php: upload 2M, memory 200M, time 60s (default)$' <<<"$out")" 1
  expect "Apache restarted" "$(grep -c 'restarted gracefully' <<<"$out")" 1
  wait_for 10 "the site's PHP to see 2M" php_limits_are "2M 2M 200M 60 after ini_set: 200M 60" || true
  note "the site's PHP had the new limits $(($(now_ms) - t0)) ms after the command started"
  expect "the site's PHP" "$(body "$WP" /wp-content/plugins/e2e-limits/limits.php)" \
    "2M 2M 200M 60 after ini_set: 200M 60"

  php_pdf "$work/small.pdf" 1500000
  php_pdf "$work/large.pdf" 3000000
  expect "admin's login" "$(wp_admin_password "$WP" | tr -d '\n' | wp_login "$WP" admin "$jar")" 302
  expect "1.5 MB media upload" "$(php_media_upload "$jar" "$work/small.pdf")" 201
  expect "3 MB media upload" "$(php_media_upload "$jar" "$work/large.pdf")" 413
  expect "the 413 is HAProxy's" "$(curl -s -o /dev/null -D - --max-time 60 -H "Host: $WP" \
    -F "file=@$work/large.pdf" "http://127.0.0.1:$PORT/?rest_route=/wp/v2/media" |
    grep -ci '^x-hostyard-page: too-large')" 1

  # Over the bound, or not WordPress: refused, nothing changed.
  out=$(bx hostyard site set "$WP" --php-upload 1g 2>&1 || true)
  expect "over the bound" "$(grep -c 'wordpress.php_limits.upload.max' <<<"$out")" 1
  out=$(bx hostyard site set "$STATIC" --php-upload 2m 2>&1 || true)
  expect "a static site" "$(grep -c 'for WordPress sites only' <<<"$out")" 1
  expect "still 2M" "$(bx hostyard site show "$WP" | grep -c '^php: upload 2M, memory 200M')" 1

  bx hostyard site set "$WP" --php-reset >&2
  wait_for 10 "the site's PHP to see the defaults" php_limits_are "64M 64M 256M 60 after ini_set: 256M 60" || true
  expect "the defaults again" "$(body "$WP" /wp-content/plugins/e2e-limits/limits.php)" \
    "64M 64M 256M 60 after ini_set: 256M 60"
  expect "3 MB media upload after the reset" "$(php_media_upload "$jar" "$work/large.pdf")" 201
  bx rm -rf "$plugin"
  rm -rf "$work"
}
