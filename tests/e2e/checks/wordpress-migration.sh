# shellcheck shell=bash disable=SC2154 # PORT: set by tests/e2e/run.sh
# A WordPress site made here (installed by hostyard with the table prefix
# blog_, a plugin activated, a post, an uploaded image, pretty permalinks)
# is checked as its users see it (permalinks, REST, XML-RPC, Site Health as
# its administrator, cron, PHP's modules), exported in the original
# migration layout (mysql/dump.sql, wordpress/wp-content/,
# wordpress/.htaccess) and imported on a fresh site under the same domain;
# through HAProxy: the post at its pretty URL, the image's bytes, the plugin
# active, the same login, an upload. A truncated dump of another domain is
# refused by its importer and leaves nothing. One site, one check, to keep
# the suite short. Sourced by tests/e2e/run.sh (bx, bxi, code, body, expect,
# note, now_ms, wait_for, wp_login, wp_admin_password).

MIG_SITE=blog.example.com
MIG_CUT=cut.example.com
MIG_SLUG=e2e-migrated-post
# Bound of a request that writes (REST calls, uploads).
MIG_CURL_SECS=60
# An 8x8 PNG, made for this test.
MIG_PNG=iVBORw0KGgoAAAANSUhEUgAAAAgAAAAICAIAAABLbSncAAAAbElEQVR4nA3JQQEAMAgDMZSgpEqqhOepQAlKqmjLN1VFFypcTLHFFSmqmm7UuJlmm2vSP0QLCYsRK05EP0wbGZsxa87EP4YeNHiYYYcbMj+WXrR4mWWXW7I/jj50+JhjjztyP0IHBYcJGy4kPLAsVIExyOP/AAAAAElFTkSuQmCC
# What Site Health lists as required or recommended for WordPress 6.8.
MIG_PHP_MODULES="curl dom exif fileinfo hash imagick intl json mbstring mysqli openssl pcre libxml zip
  filter gd iconv SimpleXML xmlreader zlib sodium"

CHECKS+=(t_wordpress_site_works_and_migrates)

mig_url() { printf 'http://127.0.0.1:%s%s' "$PORT" "$1"; }

# mig_upload JAR FILE NAME: the uploaded file's path on the site.
mig_upload() {
  wp_rest "$MIG_SITE" "$1" /wp/v2/media -H 'Content-Type: image/png' \
    -H "Content-Disposition: attachment; filename=$3" --data-binary "@$2" |
    jq -r '.source_url // empty' 2>/dev/null | sed 's,^https\?://[^/]*,,'
}

# mig_user_view JAR FILE UPLOAD: what a visitor and the administrator see.
mig_user_view() {
  local jar=$1 file=$2 upload=$3
  expect "the post at its pretty URL" "$(body "$MIG_SITE" "/$MIG_SLUG/" | grep -c '<title>Moved with its site')" 1
  expect "the image's bytes" "$(curl -s --max-time "$MIG_CURL_SECS" -H "Host: $MIG_SITE" "$(mig_url "$upload")" |
    sha256sum)" "$(sha256sum <"$file")"
  expect "the plugin's mark on the front page" "$(body "$MIG_SITE" / | grep -c 'name="e2e-plugin" content="active"')" 1
  expect "/wp-json/wp/v2/posts" "$(body "$MIG_SITE" /wp-json/wp/v2/posts |
    jq --arg slug "$MIG_SLUG" '[.[] | select(.slug == $slug)] | length')" 1
  expect "xmlrpc.php demo.sayHello" "$(curl -s --max-time "$MIG_CURL_SECS" -H "Host: $MIG_SITE" \
    --data '<?xml version="1.0"?><methodCall><methodName>demo.sayHello</methodName></methodCall>' \
    "$(mig_url /xmlrpc.php)" | grep -c '<string>Hello!</string>')" 1
  expect "the administrator's login" "$(wp_admin_password "$MIG_SITE" | tr -d '\n' | wp_login "$MIG_SITE" admin "$jar")" 302
  expect "the dashboard" "$(curl -s --max-time "$MIG_CURL_SECS" -H "Host: $MIG_SITE" -b "$jar" "$(mig_url /wp-admin/)" |
    grep -c '<title>Dashboard')" 1
}

# mig_site_health JAR: Site Health's critical results as its screen gets
# them (the direct tests in the page, the others from their REST routes),
# one "test: label" line each. WordPress.org's reachability depends on
# this machine's network, not the host: listed apart.
mig_site_health() {
  local jar=$1 test out status direct
  # The page hands its results to its script as `var SiteHealth = {...};`.
  direct=$(curl -s --max-time "$MIG_CURL_SECS" -H "Host: $MIG_SITE" -b "$jar" "$(mig_url /wp-admin/site-health.php)" |
    sed -n 's/^.*var SiteHealth = \(.*\);[[:space:]]*$/\1/p')
  if [ -z "$direct" ]; then
    printf 'site-health.php: no SiteHealth object in the page\n'
  else
    jq -r '.. | objects | select(.status? == "critical") | "direct: \(.label)"' <<<"$direct" 2>&1 || true
  fi
  for test in background-updates loopback-requests https-status authorization-header page-cache; do
    out=$(wp_rest "$MIG_SITE" "$jar" "/wp-site-health/v1/tests/$test")
    status=$(jq -r '.status // empty' <<<"$out" 2>/dev/null || true)
    [ "$status" = critical ] && printf '%s: %s\n' "$test" "${out:0:200}"
    [ -n "$status" ] || printf '%s: no answer: %s\n' "$test" "${out:0:200}"
  done
  out=$(wp_rest "$MIG_SITE" "$jar" /wp-site-health/v1/tests/dotorg-communication)
  if [ "$(jq -r '.status // empty' <<<"$out" 2>/dev/null)" = critical ]; then
    note "Site Health: WordPress.org is not reachable from this machine (dotorg-communication critical; not counted)"
  fi
}

mig_end() {
  if [ "$1" != 0 ]; then
    bx journalctl -u "wordpress@$MIG_SITE" -u "mysql@$MIG_SITE" -u "wordpress-importer@$MIG_SITE" -o cat -n 40 \
      --no-pager | sed 's/^/    journal: /' >&2 || true
  fi
  bx systemctl stop "wordpress@$MIG_SITE" "mysql@$MIG_SITE" >/dev/null 2>&1 || true
}

t_wordpress_site_works_and_migrates() {
  local work t0 out jar png upload missing old imp mysql_image dir
  work=$(mktemp -d /tmp/e2e-migration.XXXXXX)
  jar=$work/jar
  png=$work/e2e.png
  base64 -d <<<"$MIG_PNG" >"$png"
  # shellcheck disable=SC2064 # expand now: locals are gone when it runs
  trap "mig_end \$?; rm -rf '$work'" EXIT

  # The site before its first start: the import made, the table prefix
  # blog_ given (what the importer reads from an imported dump), a plugin.
  bx systemctl start "wordpress-importer@$MIG_SITE"
  bx sh -c "echo WORDPRESS_TABLE_PREFIX=blog_ >>$DOMAINS_DIR/$MIG_SITE/secrets/wp.env"
  bx mkdir -p "$DOMAINS_DIR/$MIG_SITE/wp-content/plugins/e2e-plugin"
  printf '%s\n' '<?php' '/* Plugin Name: e2e plugin */' \
    "add_action('wp_head', function () { echo '<meta name=\"e2e-plugin\" content=\"active\">'; });" |
    bxi sh -c "cat >$DOMAINS_DIR/$MIG_SITE/wp-content/plugins/e2e-plugin/e2e-plugin.php"
  bx systemctl start "wordpress@$MIG_SITE"

  missing=""
  out=$(bx docker exec "wordpress_$MIG_SITE" php -m)
  for mod in $MIG_PHP_MODULES; do grep -qx "$mod" <<<"$out" || missing="$missing $mod"; done
  expect "PHP modules Site Health asks for, missing from php -m" "$missing" ""
  expect "the administrator's login" "$(wp_admin_password "$MIG_SITE" | tr -d '\n' | wp_login "$MIG_SITE" admin "$jar")" 302
  expect "activate the plugin (REST)" "$(wp_rest "$MIG_SITE" "$jar" /wp/v2/plugins/e2e-plugin/e2e-plugin -d status=active |
    jq -r '.status // empty' 2>/dev/null)" active
  expect "a post (REST)" "$(wp_rest "$MIG_SITE" "$jar" /wp/v2/posts -d 'title=Moved with its site' -d status=publish \
    -d "slug=$MIG_SLUG" | jq -r '.slug // empty' 2>/dev/null)" "$MIG_SLUG"
  upload=$(mig_upload "$jar" "$png" e2e.png)
  expect "the image's path" "$(grep -cE '^/wp-content/uploads/[0-9]{4}/[0-9]{2}/e2e\.png$' <<<"$upload")" 1
  mig_user_view "$jar" "$png" "$upload"
  expect "Site Health's critical results" "$(mig_site_health "$jar")" ""
  expect "WordPress's cron, run by its timer's service" \
    "$(bx systemctl start "wordpress-cron@$MIG_SITE.service" && echo ran)" ran
  expect "the cron timer" "$(bx systemctl is-active "wordpress-cron@$MIG_SITE.timer")" active
  note "idle memory of $MIG_SITE: $(bx docker stats --no-stream --format '{{.Name}} {{.MemUsage}}' \
    "wordpress_$MIG_SITE" "mysql_$MIG_SITE" | tr '\n' ' ')"

  # Export in the original layout, the dump by the site's own database user
  # (docker exec into mariadbd fails in a box), then the site moves away.
  imp=$IMPORT_DIR/$MIG_SITE
  mysql_image=$(bx hostyard config get images.mysql)
  bx mkdir -p "$imp/mysql" "$imp/wordpress"
  bx sh -c "sed -n 's/^WORDPRESS_DB_PASSWORD=/MYSQL_PWD=/p' $DOMAINS_DIR/$MIG_SITE/secrets/wp.env >/root/e2e-dump.env"
  bx sh -c "docker run --rm --network hostyard-db-$MIG_SITE --env-file /root/e2e-dump.env --entrypoint mariadb-dump \
    $mysql_image -h mysql_$MIG_SITE -u wordpress --single-transaction wordpress >$imp/mysql/dump.sql"
  bx rm -f /root/e2e-dump.env
  # The importer too: it stays active (RemainAfterExit) and would not run
  # again for the next start.
  bx systemctl stop "wordpress@$MIG_SITE" "mysql@$MIG_SITE" "wordpress-importer@$MIG_SITE"
  dir=$DOMAINS_DIR/$MIG_SITE
  bx cp -a "$dir/wp-content" "$dir/.htaccess" "$imp/wordpress/"
  old=/root/e2e-old-$MIG_SITE
  bx rm -rf "$old"
  bx mv "$dir" "$old"
  note "export: dump.sql $(bx stat -c %s "$imp/mysql/dump.sql") bytes, wp-content $(bx du -sh "$imp/wordpress/wp-content" | cut -f1)"

  # A truncated dump of another domain: refused by its importer, nothing
  # of the site made, the import left where it was.
  bx mkdir -p "$IMPORT_DIR/$MIG_CUT/mysql"
  bx sh -c "head -c \$((\$(stat -c %s $imp/mysql/dump.sql) / 2)) $imp/mysql/dump.sql >$IMPORT_DIR/$MIG_CUT/mysql/dump.sql"
  expect "systemctl start wordpress@$MIG_CUT with a truncated dump" \
    "$(bx systemctl start "wordpress@$MIG_CUT" 2>/dev/null && echo started || echo failed)" failed
  expect "the importer's reason" "$(bx journalctl -u "wordpress-importer@$MIG_CUT" -o cat --no-pager |
    grep -c 'import refused, nothing changed: .*dump.sql is incomplete')" 1
  expect "$MIG_CUT's data" "$(bx test -e "$DOMAINS_DIR/$MIG_CUT" && echo exists || echo absent)" absent
  expect "$MIG_CUT's import" "$(bx test -f "$IMPORT_DIR/$MIG_CUT/mysql/dump.sql" && echo kept || echo gone)" kept
  expect "mysql@$MIG_CUT" "$(bx systemctl is-active "mysql@$MIG_CUT" || true)" inactive
  bx systemctl reset-failed "wordpress@$MIG_CUT" "wordpress-importer@$MIG_CUT" >/dev/null 2>&1 || true
  bx rm -rf "$IMPORT_DIR/$MIG_CUT"

  # The import on a fresh site under the same domain.
  t0=$(now_ms)
  bx systemctl start "wordpress@$MIG_SITE"
  note "migration: systemctl start wordpress@$MIG_SITE (import, dump load, start) took $(($(now_ms) - t0)) ms"
  expect "the table prefix read from the dump" \
    "$(bx grep -c '^WORDPRESS_TABLE_PREFIX=blog_$' "$DOMAINS_DIR/$MIG_SITE/secrets/wp.env")" 1
  # The administrator's password came with the dump: the old site's file.
  bx cp "$old/secrets/wp-admin.env" "$DOMAINS_DIR/$MIG_SITE/secrets/wp-admin.env"
  mig_user_view "$jar" "$png" "$upload"
  expect "an upload on the new server" "$(mig_upload "$jar" "$png" after-move.png | grep -c 'after-move\.png$')" 1

  # The operator resets the administrator's password: the new one logs
  # in, the old one no longer does, and the command printed neither.
  out=$(bx hostyard wordpress reset-password "$MIG_SITE")
  expect "reset-password's output" "$(grep -c "^set a new password for admin of $MIG_SITE, stored in" <<<"$out")" 1
  expect "the secrets file's mode" "$(bx stat -c %a "$DOMAINS_DIR/$MIG_SITE/secrets/wp-admin.env")" 600
  expect "login with the new password" \
    "$(bx hostyard wordpress password "$MIG_SITE" | sed -n 's/^password: //p' | tr -d '\n' | wp_login "$MIG_SITE" admin "$jar")" 302
  expect "login with the old password" \
    "$(bx sed -n 's/^WP_ADMIN_PASSWORD=//p' "$old/secrets/wp-admin.env" | tr -d '\n' | wp_login "$MIG_SITE" admin "$jar")" 200
  bx rm -rf "$old"
}
