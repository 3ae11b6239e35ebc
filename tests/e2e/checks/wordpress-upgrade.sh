# shellcheck shell=bash disable=SC2154 # repo and PORT: set by tests/e2e/run.sh
# A WordPress site moves from the Debian 12 images (MariaDB 10.11, WordPress
# 6.1, frozen in tests/e2e/debian12/; MariaDB's Dockerfile is today's on
# Debian 12) to the Debian 13 ones and keeps its
# data: its post, its upload's bytes and a user's login, with MariaDB's and
# WordPress's database upgrades each run once, logged, and not again on the
# next restart. Sourced by tests/e2e/run.sh, which provides bx, bxi, code,
# body, expect, note, now_ms, wait_for, $BOX, $PORT and $repo.
#
# The Debian 12 images are built on this machine and loaded into the server
# under the names its node config gives the mysql and wordpress kinds, so
# the site's units run them; the server's own images get those names back
# once the site has written its data (and when the check fails).

UPGRADE_SITE=upgrade.example.com
UPGRADE_ADMIN_PASSWORD=e2e-Upgrade-Admin-Password-1
UPGRADE_AUTHOR=author1
UPGRADE_AUTHOR_PASSWORD=e2e-Upgrade-Author-Password-2
UPGRADE_POST_TITLE="Written on Debian 12"
# Bound of a request that writes (install, REST calls).
UPGRADE_CURL_SECS=60

CHECKS+=(t_wordpress_upgrade_from_debian12_keeps_data)

# upgrade_build_debian12: the Debian 12 images, on this machine, as
# hostyard-e2e/<kind>:debian12 (docker's layer cache makes a rebuild quick).
upgrade_build_debian12() {
  local kind log dockerfile build_args
  "$repo/scripts/base-image.sh" bookworm
  log=$(mktemp /tmp/e2e-debian12-build.XXXXXX)
  # MariaDB's Dockerfile is today's on Debian 12; the context gives it the
  # Debian 12 image's entrypoint.
  for kind in mysql wordpress; do
    dockerfile=$repo/tests/e2e/debian12/$kind/Dockerfile build_args=()
    if [ "$kind" = mysql ]; then
      dockerfile=$repo/dockerfiles/mysql/Dockerfile build_args=(--build-arg DEBIAN=bookworm)
    fi
    if ! docker build -t "hostyard-e2e/$kind:debian12" "${build_args[@]}" -f "$dockerfile" \
      "$repo/tests/e2e/debian12" >"$log" 2>&1; then
      tail -n 30 "$log" >&2
      rm -f "$log"
      return 1
    fi
  done
  rm -f "$log"
}

# upgrade_url PATH: the site's URL through HAProxy.
upgrade_url() { printf 'http://127.0.0.1:%s%s' "$PORT" "$1"; }

# upgrade_logged_lines UNIT TEXT: how many of UNIT's journal lines hold TEXT.
upgrade_logged_lines() { bx journalctl -u "$1" -o cat --no-pager | grep -cF -- "$2" || true; }

# upgrade_db_version: x.y of the MariaDB serving mysql@'s network port, from
# the last "Version: ... port: 3306" line it logged. Not `docker exec`: in a
# box, exec into a process that switched to another user fails (setns).
upgrade_db_version() {
  bx journalctl -u "mysql@$UPGRADE_SITE" -o cat --no-pager | grep -E "^Version: '.* port: 3306" |
    tail -n 1 | grep -oE "^Version: '[0-9]+\.[0-9]+" | cut -c11- || true
}

# upgrade_db_is X.Y: the journal says MariaDB X.Y serves the port.
upgrade_db_is() { [ "$(upgrade_db_version)" = "$1" ]; }

# upgrade_wp_upgrade_logged: WordPress's upgrade is in the journal.
upgrade_wp_upgrade_logged() {
  [ "$(upgrade_logged_lines "wordpress@$UPGRADE_SITE" 'WordPress database upgraded to db_version')" -ge 1 ]
}

# upgrade_site_version WANT_DB: "MariaDB <x.y> WordPress <x.y>" of the
# running site, once the journal has the server's WANT_DB line (bounded).
upgrade_site_version() {
  local wp
  wait_for 10 "MariaDB $1 in the journal" upgrade_db_is "$1" || true
  wp=$(bx docker exec "wordpress_$UPGRADE_SITE" grep -oE "^\\\$wp_version = '[0-9]+\.[0-9]+" \
    /usr/share/wordpress/wp-includes/version.php | grep -oE '[0-9]+\.[0-9]+$')
  printf 'MariaDB %s WordPress %s' "$(upgrade_db_version)" "$wp"
}

# upgrade_site_data JAR FILE UPLOAD_PATH POST_ID: the site's data as seen
# through HAProxy, one line each: the post, the upload's bytes, the author's
# login, and the admin's dashboard (200, not a redirect to upgrade.php).
upgrade_site_data() {
  local jar=$1 file=$2 upload=$3 post=$4
  expect "the post through HAProxy" \
    "$(wp_page "$UPGRADE_SITE" "/?p=$post" | grep -c "<title>$UPGRADE_POST_TITLE")" 1
  expect "the upload's bytes through HAProxy" \
    "$(curl -s --max-time "$UPGRADE_CURL_SECS" -H "Host: $UPGRADE_SITE" "$(upgrade_url "$upload")" | sha256sum)" \
    "$(sha256sum <"$file")"
  expect "$UPGRADE_AUTHOR's login with the same password" \
    "$(printf '%s' "$UPGRADE_AUTHOR_PASSWORD" | wp_login "$UPGRADE_SITE" "$UPGRADE_AUTHOR" "$jar.author")" 302
  expect "$UPGRADE_AUTHOR's login cookie" "$(grep -c wordpress_logged_in_ "$jar.author")" 1
  expect "admin's login" "$(printf '%s' "$UPGRADE_ADMIN_PASSWORD" | wp_login "$UPGRADE_SITE" admin "$jar")" 302
  expect "admin's dashboard" "$(curl -s -o /dev/null -w '%{http_code} %{redirect_url}' \
    --max-time "$UPGRADE_CURL_SECS" -H "Host: $UPGRADE_SITE" -b "$jar" "$(upgrade_url /wp-admin/)")" "200 "
}

# The config's image name of each kind, and the server's own (Debian 13)
# image ID under it, for upgrade_restore_images.
declare -A UPGRADE_IMAGE=() UPGRADE_ID13=()

# upgrade_restore_images: the server's own images under the config's names
# again, the Debian 12 ones gone from the server.
upgrade_restore_images() {
  local kind
  for kind in "${!UPGRADE_ID13[@]}"; do
    bx docker tag "${UPGRADE_ID13[$kind]}" "${UPGRADE_IMAGE[$kind]}"
  done
  bx docker rmi hostyard-e2e/mysql:debian12 hostyard-e2e/wordpress:debian12 >/dev/null 2>&1 || true
}

# upgrade_end STATUS UNIT...: at the check's end, its units' journals when
# it failed; then the units stopped and the server's own images back.
upgrade_end() {
  local rc=$1
  shift
  if [ "$rc" != 0 ]; then
    bx docker ps -a --format '{{.Names}} {{.Image}} {{.Status}}' | sed 's/^/    docker ps: /' >&2 || true
    bx journalctl -u "$1" -u "$2" -o cat -n 60 --no-pager | sed 's/^/    journal: /' >&2 || true
  fi
  bx systemctl stop "$@" || true
  upgrade_restore_images
}

t_wordpress_upgrade_from_debian12_keeps_data() {
  local kind work t0 out post upload
  local units=("wordpress@$UPGRADE_SITE" "mysql@$UPGRADE_SITE")
  work=$(mktemp -d /tmp/e2e-upgrade.XXXXXX)
  # The check runs in a subshell of its own: whatever happens below, at its
  # end the site is stopped and the server's own images have their names.
  # shellcheck disable=SC2064 # expand now: locals are gone when it runs
  trap "upgrade_end \$? ${units[*]}; rm -rf '$work'" EXIT

  upgrade_build_debian12
  for kind in mysql wordpress; do
    UPGRADE_IMAGE[$kind]=$(bx hostyard config get "images.$kind")
    UPGRADE_ID13[$kind]=$(bx docker image inspect -f '{{.Id}}' "${UPGRADE_IMAGE[$kind]}")
  done
  docker save hostyard-e2e/mysql:debian12 hostyard-e2e/wordpress:debian12 | bxi docker load -q >/dev/null
  for kind in mysql wordpress; do
    bx docker tag "hostyard-e2e/$kind:debian12" "${UPGRADE_IMAGE[$kind]}"
  done

  # The site on the Debian 12 images: installed, a post, an upload, a user.
  bx systemctl start "wordpress@$UPGRADE_SITE"
  expect "versions of the first start" "$(upgrade_site_version 10.11)" "MariaDB 10.11 WordPress 6.1"
  expect "POST the install form" "$(curl -s -o /dev/null -w '%{http_code}' --max-time "$UPGRADE_CURL_SECS" \
    -H "Host: $UPGRADE_SITE" --data-urlencode 'weblog_title=upgrade blog' --data-urlencode 'user_name=admin' \
    --data-urlencode "admin_password=$UPGRADE_ADMIN_PASSWORD" --data-urlencode "admin_password2=$UPGRADE_ADMIN_PASSWORD" \
    --data-urlencode "admin_email=admin@$UPGRADE_SITE" --data-urlencode 'blog_public=0' \
    "$(upgrade_url '/wp-admin/install.php?step=2')")" 200
  expect "admin's login" "$(printf '%s' "$UPGRADE_ADMIN_PASSWORD" | wp_login "$UPGRADE_SITE" admin "$work/jar")" 302
  out=$(jq -n --arg title "$UPGRADE_POST_TITLE" \
    '{title: $title, content: "A post from WordPress 6.1 and MariaDB 10.11.", status: "publish"}' | wp_rest "$UPGRADE_SITE" "$work/jar" /wp/v2/posts -H 'Content-Type: application/json' --data-binary @-)
  post=$(jq -r '.id // empty' <<<"$out" 2>/dev/null || true)
  expect "a post id from the REST API" "$([ -n "$post" ] && echo yes || echo "no: ${out:0:200}")" yes
  head -c 3000 /dev/urandom | base64 >"$work/upload.txt"
  out=$(wp_rest "$UPGRADE_SITE" "$work/jar" /wp/v2/media -H 'Content-Type: text/plain' \
    -H 'Content-Disposition: attachment; filename=upgrade-proof.txt' --data-binary "@$work/upload.txt")
  upload=$(jq -r '.source_url // empty' <<<"$out" 2>/dev/null | sed 's,^https\?://[^/]*,,' || true)
  expect "the upload's path" "$(grep -cE '^/wp-content/uploads/.*/upgrade-proof\.txt$' <<<"$upload")" 1
  out=$(jq -n --arg user "$UPGRADE_AUTHOR" --arg password "$UPGRADE_AUTHOR_PASSWORD" --arg site "$UPGRADE_SITE" \
    '{username: $user, password: $password, email: "\($user)@\($site)", roles: ["author"]}' |
    wp_rest "$UPGRADE_SITE" "$work/jar" /wp/v2/users -H 'Content-Type: application/json' --data-binary @-)
  expect "$UPGRADE_AUTHOR created" "$(jq -r '.username // empty' <<<"$out" 2>/dev/null)" "$UPGRADE_AUTHOR"
  upgrade_site_data "$work/jar" "$work/upload.txt" "$upload" "$post"
  bx systemctl stop "${units[@]}"

  # The same site on the Debian 13 images.
  upgrade_restore_images
  t0=$(now_ms)
  bx systemctl start "wordpress@$UPGRADE_SITE"
  note "upgrade start: systemctl start returned after $(($(now_ms) - t0)) ms (both upgrades)"
  expect "versions after the switch" "$(upgrade_site_version 11.8)" "MariaDB 11.8 WordPress 6.8"
  upgrade_site_data "$work/jar" "$work/upload.txt" "$upload" "$post"
  # Both upgrades ran before their server answered, so they are logged by
  # now; the journal may still be writing the lines.
  wait_for 10 "the upgrades in the journal" upgrade_wp_upgrade_logged || true
  bx journalctl -u "mysql@$UPGRADE_SITE" -u "wordpress@$UPGRADE_SITE" -o cat --no-pager |
    grep -E '^hostyard-(mysql|wordpress): (data dir|mariadb-upgrade done|the database is|WordPress database)' |
    sed 's/^/    | /' >&2
  upgrade_expect_upgrades_logged_once

  # A normal restart: nothing to upgrade, nothing run again.
  bx systemctl stop "${units[@]}"
  t0=$(now_ms)
  bx systemctl start "wordpress@$UPGRADE_SITE"
  note "normal restart: systemctl start returned after $(($(now_ms) - t0)) ms"
  expect "the post after the restart" "$(wp_page "$UPGRADE_SITE" "/?p=$post" | grep -c "<title>$UPGRADE_POST_TITLE")" 1
  upgrade_expect_upgrades_logged_once
  bx systemctl stop "${units[@]}"
}

# upgrade_expect_upgrades_logged_once: each upgrade's start and end lines
# are in the journal exactly once.
upgrade_expect_upgrades_logged_once() {
  local mysql="mysql@$UPGRADE_SITE" wp="wordpress@$UPGRADE_SITE"
  expect "mariadb-upgrade started, in $mysql's journal" \
    "$(upgrade_logged_lines "$mysql" 'data dir written by MariaDB 10.11')" 1
  expect "mariadb-upgrade finished" "$(upgrade_logged_lines "$mysql" 'mariadb-upgrade done in')" 1
  expect "WordPress's upgrade started, in $wp's journal" "$(upgrade_logged_lines "$wp" ': running its upgrade')" 1
  expect "WordPress's upgrade finished" "$(upgrade_logged_lines "$wp" 'WordPress database upgraded to db_version')" 1
}
