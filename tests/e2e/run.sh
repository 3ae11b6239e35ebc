#!/usr/bin/env bash
# hostyard's end-to-end suite: a real server (Debian 13, systemd as PID 1,
# Docker inside) in a container, set up by scripts/setup.sh, with real sites
# started by `systemctl start` and checked through HAProxy from this machine.
# Nothing is mocked. scripts/test.sh (and so CI) runs it after the
# workspace tests.
#
# The server is booted by scripts/server-in-a-box.sh under a unique name with
# a port docker picks, so runs do not collide; it and its docker volume are
# removed at the end. Every check is a function t_*; each runs even after an
# earlier one failed, and a summary lists them. Exit status 1 if any failed.
#
# usage: tests/e2e/run.sh [NAME...]   (as root; NAME: run only these checks)
#   KEEP_BOX=1   leave the server running for a look after the run
# More checks go in tests/e2e/checks/*.sh (see CHECKS below), not here.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
# shellcheck source=tests/e2e/lib/common.sh
. "$repo/tests/e2e/lib/common.sh"

BOX=hostyard-e2e-$$
KEEP_BOX=${KEEP_BOX:-0}
PORT=""
STATIC=example.com
GIT_SITE=git.example.com
WP=wp.example.com
# Bound of every single HTTP request.
CURL_SECS=5
declare -a PASSED=() FAILED=()

cleanup() {
  if [ "$KEEP_BOX" = 1 ]; then
    note "kept $BOX (port $PORT): docker rm -f $BOX; docker volume rm $BOX-docker"
    return
  fi
  remove_boxes "$BOX"
}

bx() { docker exec "$BOX" "$@"; }
bxi() { docker exec -i "$BOX" "$@"; }

# The server's data layout, from hostyard itself in the box (`hostyard
# names dirs`, its one home), set by layout_dirs once the box runs.
IMPORT_DIR=""
DOMAINS_DIR=""
POSTFIX_DIR=""

layout_dirs() {
  local dirs
  dirs=$(bx hostyard names dirs) || die "hostyard names dirs failed in $BOX"
  IMPORT_DIR=$(awk '$1 == "import" { print $2 }' <<<"$dirs")
  DOMAINS_DIR=$(awk '$1 == "domains" { print $2 }' <<<"$dirs")
  POSTFIX_DIR=$(awk '$1 == "postfix" { print $2 }' <<<"$dirs")
  if [ -z "$IMPORT_DIR" ] || [ -z "$DOMAINS_DIR" ] || [ -z "$POSTFIX_DIR" ]; then
    die "hostyard names dirs lacks import, domains or postfix: $dirs"
  fi
}

# code HOST PATH: the HTTP status HAProxy answers (000: no answer).
code() {
  curl -s -o /dev/null -w '%{http_code}' --max-time "$CURL_SECS" --path-as-is \
    -H "Host: $1" "http://127.0.0.1:$PORT$2" || true
}

# body HOST PATH: the response body.
body() { curl -s --max-time "$CURL_SECS" -H "Host: $1" "http://127.0.0.1:$PORT$2" || true; }

# answers_200 HOST: HAProxy answers 200 for HOST now. A function, so that
# wait_for asks again each time (a "$(code ...)" argument is evaluated once).
answers_200() { [ "$(code "$1" /)" = 200 ]; }

# expect WHAT GOT WANT: fail the check unless GOT = WANT.
expect() {
  if [ "$2" != "$3" ]; then
    printf '    FAIL %s: got "%s", want "%s"\n' "$1" "$2" "$3" >&2
    return 1
  fi
  printf '    ok   %s: %s\n' "$1" "$2" >&2
}

# now_ms: wall clock in milliseconds, for the figures the checks print.
now_ms() { date +%s%3N; }

# ---- what a check needs, so that each can run alone ------------------------
# (tests/e2e/run.sh NAME, or again on a kept box): each sets up its part
# only when it is not there yet.

# need_static_site: $STATIC imported and routed.
need_static_site() {
  [ "$(code "$STATIC" /)" = 200 ] && return
  bx mkdir -p "$IMPORT_DIR/$STATIC/static/www-content"
  printf 'static site %s\n' "$STATIC" | bxi sh -c "cat >$IMPORT_DIR/$STATIC/static/www-content/index.html"
  bx systemctl start "static@$STATIC"
}

# need_git_site: $GIT_SITE routed from the box's git daemon.
need_git_site() {
  [ "$(code "$GIT_SITE" /)" = 200 ] && return
  git_repo
  bx mkdir -p "$IMPORT_DIR/$GIT_SITE/static-git"
  echo git://127.0.0.1:9418/site.git | bxi sh -c "cat >$IMPORT_DIR/$GIT_SITE/static-git/GITURL"
  bx systemctl start "static-git@$GIT_SITE"
}

# need_wordpress: $WP's containers running (installed or not).
need_wordpress() { bx systemctl start "wordpress@$WP"; }

# ---- the checks, in the order they run -------------------------------------

t_setup_second_run_changes_nothing() {
  local out
  out=$(bx /hostyard/src/scripts/setup.sh --binaries /hostyard/bin --images /hostyard/images 2>&1)
  expect "last line of the second setup.sh" "$(printf '%s\n' "$out" | tail -n 1)" "==> done: nothing to change"
}

# server_state: what a refused setup.sh must not change: units, config,
# binaries, installed packages, the server-wide services.
server_state() {
  # shellcheck disable=SC2016 # expanded by the box's shell
  bx sh -c 'find /etc/systemd/system /etc/hostyard /usr/local/bin -xdev \( -type f -exec sha256sum {} + \) -o \( -type l -printf "%p -> %l\n" \) | sort
    dpkg-query -W | sort
    for u in docker.service etcd.service haproxy-confd.service haproxy.service hostyard.target; do
      echo "$u $(systemctl is-active "$u") $(systemctl is-enabled "$u" 2>&1)"
    done'
}

# setup.sh on a Debian 12 server (its os-release, given by OS_RELEASE) and
# with no node config yet: one line naming both releases, exit 1, and not
# even the config it would write first.
t_setup_on_debian_12_stops_and_changes_nothing() {
  local before out rc=0
  printf '%s\n' 'PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"' 'NAME="Debian GNU/Linux"' \
    'VERSION_ID="12"' 'VERSION="12 (bookworm)"' 'VERSION_CODENAME=bookworm' 'ID=debian' |
    bxi sh -c 'cat >/tmp/e2e-os-release-12'
  before=$(server_state)
  out=$(bx env OS_RELEASE=/tmp/e2e-os-release-12 HOSTYARD_CONFIG=/tmp/e2e-no-config/hostyard.yaml \
    /hostyard/src/scripts/setup.sh --binaries /hostyard/bin --images /hostyard/images 2>&1) || rc=$?
  printf '%s\n' "$out" | sed 's/^/    | /' >&2
  expect "setup.sh's exit status" "$rc" 1
  expect "lines of output" "$(printf '%s\n' "$out" | wc -l)" 1
  expect "the line names the release found and the one needed" \
    "$(printf '%s\n' "$out" | grep -c 'runs Debian 12 (bookworm); hostyard needs Debian 13 (trixie) or newer')" 1
  expect "the node config it would have written" "$(bx test -e /tmp/e2e-no-config && echo exists || echo absent)" absent
  expect "apt, units and services after the refusal" "$(diff <(echo "$before") <(server_state) | wc -l)" 0
}

t_setup_with_unreachable_etcd_cluster_fails_and_changes_nothing() {
  local ip before out rc=0
  # The box's own etcd listens on loopback only: at the box's container
  # address nothing answers, a real "cluster elsewhere" that is down.
  ip=$(bx hostname -i | awk '{print $1}')
  yaml_checked <<YAML | bxi sh -c 'cat >/tmp/e2e-cluster.yaml'
etcd:
  endpoints: ["http://$ip:2379"]
YAML
  before=$(server_state)
  out=$(bx env HOSTYARD_CONFIG=/tmp/e2e-cluster.yaml ETCD_CHECK_SECS=3 \
    /hostyard/src/scripts/setup.sh --binaries /hostyard/bin --images /hostyard/images 2>&1) || rc=$?
  printf '%s\n' "$out" | tail -n 1 | sed 's/^/    | /' >&2
  expect "setup.sh's exit status" "$rc" 1
  expect "the error names the endpoint, the fix and that nothing changed" \
    "$(printf '%s\n' "$out" | grep -c "http://$ip:2379.*set etcd.endpoints.*Nothing else was changed")" 1
  expect "apt, units and services after the refusal" "$(diff <(echo "$before") <(server_state) | wc -l)" 0
}

# A real cluster elsewhere: a second etcd in the box, listening only on the
# box's container address. setup.sh with a config naming it must join it
# (no local member installed or started) and succeed. The units name the
# config path, so that run rewrites them; setup.sh with the server's own
# config then puts every file back, which the check verifies too.
t_setup_joins_a_configured_etcd_cluster() {
  local ip before out rc=0 setup=(/hostyard/src/scripts/setup.sh --binaries /hostyard/bin --images /hostyard/images)
  ip=$(bx hostname -i | awk '{print $1}')
  bx systemd-run -q --unit e2e-cluster-etcd /usr/bin/etcd --name e2e --data-dir /tmp/e2e-cluster-etcd \
    --listen-client-urls "http://$ip:23790" --advertise-client-urls "http://$ip:23790" \
    --listen-peer-urls http://127.0.0.1:23800 --initial-advertise-peer-urls http://127.0.0.1:23800 \
    --initial-cluster e2e=http://127.0.0.1:23800
  yaml_checked <<YAML | bxi sh -c 'cat >/tmp/e2e-join.yaml'
etcd:
  endpoints: ["http://$ip:23790"]
YAML
  before=$(server_state)
  # ETCD_CHECK_SECS also covers the new member's start.
  out=$(bx env HOSTYARD_CONFIG=/tmp/e2e-join.yaml ETCD_CHECK_SECS=30 "${setup[@]}" 2>&1) || rc=$?
  bx systemctl stop e2e-cluster-etcd
  printf '%s\n' "$out" | grep -E '^==> (etcd|apt|services)|healthy|local etcd' | sed 's/^/    | /' >&2
  expect "setup.sh with the cluster's endpoints" "$rc" 0
  expect "the cluster answered" "$(printf '%s\n' "$out" | grep -c "^    healthy: http://$ip:23790$")" 1
  expect "etcd-server among the packages" "$(printf '%s\n' "$out" | grep '^==> apt packages' | grep -c etcd-server)" 0
  expect "the services step names the cluster, not etcd.service" "$(printf '%s\n' "$out" | grep -c "^==> services: docker, hostyard.target (etcd: the cluster at http://$ip:23790)$")" 1
  rc=0
  bx "${setup[@]}" >/dev/null 2>&1 || rc=$?
  expect "setup.sh with the server's own config again" "$rc" 0
  expect "units, packages and services after both runs" "$(diff <(echo "$before") <(server_state) | wc -l)" 0
}

t_static_site_answers_when_start_returns() {
  bx mkdir -p "$IMPORT_DIR/$STATIC/static/www-content"
  printf 'static site %s\n' "$STATIC" | bxi sh -c "cat >$IMPORT_DIR/$STATIC/static/www-content/index.html"
  local t0
  t0=$(now_ms)
  bx systemctl start "static@$STATIC"
  note "systemctl start static@$STATIC took $(($(now_ms) - t0)) ms"
  # The very next request, no retry: start returns only once routed.
  expect "first GET after start" "$(body "$STATIC" /)" "static site $STATIC"
}

t_host_with_port_routes() {
  need_static_site
  expect "GET with Host: $STATIC:80" "$(code "$STATIC:80" /)" 200
  expect "GET with Host: ${STATIC^^}" "$(code "${STATIC^^}" /)" 200
}

t_unknown_host_404() {
  expect "GET with an unknown Host" "$(code unknown.example.org /)" 404
}

t_stop_503_within_1s_then_start_200() {
  need_static_site
  bx systemctl stop "static@$STATIC"
  local t0 c
  t0=$(now_ms)
  # Bounded: a stopped site answers 503 within 1 s, never a hang or a 404.
  until c=$(code "$STATIC" /) && [ "$c" = 503 ]; do
    (($(now_ms) - t0 < 1000)) || break
    sleep 0.05
  done
  note "503 $(($(now_ms) - t0)) ms after systemctl stop returned"
  expect "GET after stop" "$c" 503
  bx systemctl start "static@$STATIC"
  expect "first GET after start again" "$(code "$STATIC" /)" 200
}

# A git daemon on the server's loopback serves the site's repository. The
# daemon is a transient unit: a reboot check ends it, and a later clone
# (a restore) needs it again.
git_repo() {
  bxi bash -euo pipefail <<'EOF'
if [ ! -d /srv/git/site.git ]; then
  mkdir -p /srv/git /tmp/work
  git init -q -b main /tmp/work/site
  cd /tmp/work/site
  git config user.email e2e@example.com
  git config user.name e2e
  echo 'v1' >index.html
  git add index.html
  git commit -qm v1
  git clone -q --bare /tmp/work/site /srv/git/site.git
fi
systemctl is-active -q e2e-git-daemon && exit 0
systemctl reset-failed e2e-git-daemon 2>/dev/null || true
systemd-run -q --unit e2e-git-daemon --property=Type=exec /usr/bin/git daemon --reuseaddr \
  --base-path=/srv/git --export-all --listen=127.0.0.1 --port=9418 /srv/git
EOF
}

t_static_git_site_and_pull() {
  git_repo
  bx mkdir -p "$IMPORT_DIR/$GIT_SITE/static-git"
  echo git://127.0.0.1:9418/site.git | bxi sh -c "cat >$IMPORT_DIR/$GIT_SITE/static-git/GITURL"
  local t0
  t0=$(now_ms)
  bx systemctl start "static-git@$GIT_SITE"
  note "systemctl start static-git@$GIT_SITE took $(($(now_ms) - t0)) ms"
  expect "first GET after start" "$(body "$GIT_SITE" /)" v1
  expect "GET /.git/config" "$(code "$GIT_SITE" /.git/config)" 404
  bxi bash -euo pipefail <<'EOF'
cd /tmp/work/site
echo 'v2' >index.html
git commit -qam v2
git push -q /srv/git/site.git main
EOF
  bx systemctl start "static-git-puller@$GIT_SITE.service"
  expect "GET after a push and a pull" "$(body "$GIT_SITE" /)" v2
}

# wp_login HOST USER JAR: wp-login.php's status for USER of HOST, whose
# password is on stdin; the cookies go to JAR. 302 is a login, 200 the form.
wp_login() {
  rm -f "$3"
  curl -s -o /dev/null -w '%{http_code}' --max-time 60 -H "Host: $1" \
    -c "$3" -b 'wordpress_test_cookie=WP%20Cookie%20check' \
    --data-urlencode "log=$2" --data-urlencode 'pwd@-' --data-urlencode 'testcookie=1' \
    "http://127.0.0.1:$PORT/wp-login.php" || true
}

# wp_rest DOMAIN JAR ROUTE CURL_ARGS...: a REST API call as the login in
# JAR's cookies, with the nonce WordPress gives that login.
wp_rest() {
  local site=$1 jar=$2 route=$3 nonce
  shift 3
  nonce=$(curl -s --max-time 60 -H "Host: $site" -b "$jar" \
    "http://127.0.0.1:$PORT/wp-admin/admin-ajax.php?action=rest-nonce")
  curl -s --max-time 60 -H "Host: $site" -b "$jar" -H "X-WP-Nonce: $nonce" \
    "$@" "http://127.0.0.1:$PORT/?rest_route=$route"
}

# wp_page DOMAIN PATH: DOMAIN's page at PATH through HAProxy, redirects
# followed (WordPress sends /?p=ID on to the post's pretty permalink).
wp_page() {
  curl -sL --max-time 60 --connect-to "$1:80:127.0.0.1:$PORT" "http://$1$2" || true
}

# wp_upload_plugin DOMAIN JAR: installs a one-file plugin through wp-admin's
# "Upload Plugin" form as its administrator would (the box has no Internet
# for the plugin directory: the same unpack into wp-content/plugins);
# "installed, owner www-data" when its file is there.
wp_upload_plugin() {
  local site=$1 jar=$2 zip nonce
  zip=$(mktemp /tmp/e2e-plugin.XXXXXX.zip)
  python3 - "$zip" <<'PY'
import sys, zipfile
with zipfile.ZipFile(sys.argv[1], "w") as z:
    z.writestr("e2e-upload/e2e-upload.php", "<?php\n/*\nPlugin Name: e2e upload\n*/\n")
PY
  nonce=$(curl -s --max-time 60 -H "Host: $site" -b "$jar" \
    "http://127.0.0.1:$PORT/wp-admin/plugin-install.php?tab=upload" |
    awk -F 'name="_wpnonce" value="' 'NF > 1 && !done { split($2, v, "\""); print v[1]; done = 1 }')
  curl -s -o /dev/null --max-time 120 -H "Host: $site" -b "$jar" -F "_wpnonce=$nonce" \
    -F "pluginzip=@$zip;type=application/zip" -F 'install-plugin-submit=Install Now' \
    "http://127.0.0.1:$PORT/wp-admin/update.php?action=upload-plugin" || true
  rm -f "$zip"
  bx stat -c 'installed, owner %U' "$DOMAINS_DIR/$site/wp-content/plugins/e2e-upload/e2e-upload.php" 2>/dev/null || true
}

# wp_admin_password DOMAIN: the administrator password hostyard installed
# DOMAIN with (never printed by the check).
wp_admin_password() { bx sed -n 's/^WP_ADMIN_PASSWORD=//p' "$DOMAINS_DIR/$1/secrets/wp-admin.env"; }

# A new WordPress is installed before it is routed: its front page and post
# answer at once, the installer is never offered, the administrator logs in
# with the password from the site's secrets, and a restart keeps the site.
t_wordpress_fresh_install_survives_restart() {
  local t0 jar
  jar=$(mktemp /tmp/e2e-wp-jar.XXXXXX)
  # A new site's administrator gets the node config's e-mail (once: a kept
  # box may have it from an earlier run).
  if ! bx grep -q '^wordpress:' /etc/hostyard/hostyard.yaml; then
    yaml_checked <<'YAML' | bxi sh -c 'cat >>/etc/hostyard/hostyard.yaml'
wordpress:
  admin_email: ops@hoster.example
YAML
  fi
  t0=$(now_ms)
  bx systemctl start "wordpress@$WP"
  note "systemctl start wordpress@$WP took $(($(now_ms) - t0)) ms (with mysql@$WP's first start and the install)"
  expect "administrator's login" "$(wp_admin_password "$WP" | tr -d '\n' | wp_login "$WP" admin "$jar")" 302
  expect "the dashboard" "$(curl -s --max-time 60 -H "Host: $WP" -b "$jar" "http://127.0.0.1:$PORT/wp-admin/" |
    grep -c '<title>Dashboard')" 1
  note "systemctl start wordpress@$WP to a logged-in dashboard: $(($(now_ms) - t0)) ms"
  expect "the administrator's e-mail" "$(curl -s --max-time 60 -H "Host: $WP" -b "$jar" \
    "http://127.0.0.1:$PORT/wp-admin/options-general.php" | grep -c 'value="ops@hoster.example"')" 1
  expect "a plugin uploaded in wp-admin" "$(wp_upload_plugin "$WP" "$jar")" "installed, owner www-data"
  expect "GET / of a fresh WordPress" "$(code "$WP" /)" 200
  expect "GET the install page" "$(code "$WP" /wp-admin/install.php)" 403
  expect "GET the config wizard" "$(code "$WP" /wp-admin/setup-config.php)" 403
  expect "the blog's front page" "$(body "$WP" / | grep -c 'Hello world!')" 1
  expect "the first post at its pretty URL" "$(code "$WP" /hello-world/)" 200
  expect "the REST API" "$(body "$WP" /wp-json/wp/v2/posts | jq '[.[] | select(.slug == "hello-world")] | length')" 1
  bx systemctl restart "wordpress@$WP"
  expect "the first post after systemctl restart wordpress@$WP" "$(body "$WP" / | grep -c 'Hello world!')" 1
  rm -f "$jar"
}

# ---- mail: real postfix forwarding to postfix's smtp-sink, both in the box --

SINK_PORT=2626
SINK_DIR=/srv/e2e-sink
# The test tools ship in the postfix image (smtp-sink, smtp-source).
POSTFIX_IMAGE=hostyard/postfix

# smtp TO: one message from a sender elsewhere to TO, through the box's
# postfix on port 25; smtp-source's exit status and output.
smtp() {
  bx docker run --rm --network host --entrypoint /usr/sbin/smtp-source "$POSTFIX_IMAGE" \
    -f "sender@elsewhere.example" -t "$1" -S "e2e mail to $1" -m 1 127.0.0.1:25 2>&1
}

# sunk RCPT ORIG: the sink holds a message for RCPT that was sent to ORIG.
sunk() { bx grep -rqsF "X-Rcpt-Args: <$1> ORCPT=rfc822;$2" "$SINK_DIR"; }

# need_mail_sink: postfix's smtp-sink on the box's loopback as the relay
# host every forward goes to, and a forward file for $STATIC.
need_mail_sink() {
  if [ "$(bx docker inspect -f '{{.State.Running}}' e2e-smtp-sink 2>/dev/null)" != true ]; then
    bx mkdir -p "$SINK_DIR"
    bx docker run --rm -v "$SINK_DIR:/sink" --entrypoint chown "$POSTFIX_IMAGE" postfix /sink
    bx docker rm -f e2e-smtp-sink >/dev/null 2>&1 || true
    # smtp-sink as PID 1 ignores SIGTERM: without SIGKILL as its stop signal
    # every shutdown of the box (the reboot check) would wait docker's 10 s.
    bx docker run -d --name e2e-smtp-sink --network host -v "$SINK_DIR:/sink" --stop-signal SIGKILL \
      --entrypoint /usr/sbin/smtp-sink "$POSTFIX_IMAGE" -u postfix -d "/sink/%M." "127.0.0.1:$SINK_PORT" 10 >/dev/null
  fi
  # Once: a rerun on a kept box must not append a second mail: section.
  if [ "$(bx hostyard config get mail.relayhost)" != "[127.0.0.1]:$SINK_PORT" ]; then
    yaml_checked <<YAML | bxi sh -c 'cat >>/etc/hostyard/hostyard.yaml'
mail:
  relayhost: "[127.0.0.1]:$SINK_PORT"
YAML
  fi
  printf 'info  owner@mailbox.example\n*     catchall@mailbox.example\n' |
    bxi sh -c "cat >$POSTFIX_DIR/forwards/$STATIC"
  bx systemctl reload postfix.service || {
    bx journalctl -u postfix.service -n 30 --no-pager >&2
    return 1
  }
}

t_mail_forwards_for_hosted_domains() {
  expect "postfix.service after setup" "$(bx systemctl is-active postfix.service)" active
  need_mail_sink
  # postfix's daemons that were idle at the reload may take one more
  # connection with the old tables before they exit (as with `postfix
  # reload`): wait, bounded, for the new ones.
  local t0
  t0=$(now_ms)
  wait_for 20 "postfix to take mail for info@$STATIC" smtp "info@$STATIC" || true
  note "info@$STATIC accepted $(($(now_ms) - t0)) ms after systemctl reload returned"
  expect "info@$STATIC accepted" "$(smtp "info@$STATIC" >/dev/null && echo yes)" yes
  expect "other@$STATIC accepted (catch-all)" "$(smtp "other@$STATIC" >/dev/null && echo yes)" yes
  wait_for 30 "the forward of info@$STATIC in the sink" sunk owner@mailbox.example "info@$STATIC" || true
  expect "info@$STATIC reached the sink as owner@mailbox.example" \
    "$(sunk owner@mailbox.example "info@$STATIC" && echo yes)" yes
  wait_for 30 "the forward of other@$STATIC in the sink" sunk catchall@mailbox.example "other@$STATIC" || true
  expect "other@$STATIC reached the sink as catchall@mailbox.example" \
    "$(sunk catchall@mailbox.example "other@$STATIC" && echo yes)" yes
}

t_mail_relay_for_other_domains_refused() {
  local out
  out=$(smtp "someone@not-hosted.example") && {
    printf '    FAIL relaying to someone@not-hosted.example was accepted\n' >&2
    return 1
  }
  expect "relay to someone@not-hosted.example" "$(printf '%s\n' "$out" | grep -o 'Relay access denied')" \
    "Relay access denied"
}

# One bad forward file used to fail postfix.service's start (at the next
# boot: for every domain). Now it is reported and skipped, and its domain's
# mail deferred (451) until it is fixed.
t_mail_bad_forward_file_is_skipped() {
  need_mail_sink
  printf 'sales\n' | bxi sh -c "cat >$POSTFIX_DIR/forwards/broken.example"
  bx systemctl restart postfix.service || {
    printf '    FAIL systemctl restart postfix failed with a bad forward file\n' >&2
    bx journalctl -u postfix.service -n 20 --no-pager >&2
    return 1
  }
  expect "postfix.service after the restart" "$(bx systemctl is-active postfix.service)" active
  expect "the journal names the file and line, as a warning" \
    "$(bx journalctl -u postfix.service -p warning -n 50 --no-pager | grep -c 'skipped .*broken.example: line 1: "sales" has no destination')" 1
  wait_for 20 "postfix to take mail for info@$STATIC" smtp "info@$STATIC" || true
  expect "info@$STATIC still accepted" "$(smtp "info@$STATIC" >/dev/null && echo yes)" yes
  expect "mail to the broken domain deferred" \
    "$(smtp "someone@broken.example" | grep -o '451 4.3.0' | head -n 1)" "451 4.3.0"
  bx rm "$POSTFIX_DIR/forwards/broken.example"
  bx systemctl reload postfix.service
}

# confinement NAME: read-only root, dropped and added capabilities,
# no-new-privileges of a running container, as one line.
confinement() {
  bx docker inspect --format \
    '{{.HostConfig.ReadonlyRootfs}} drop={{.HostConfig.CapDrop}} add={{.HostConfig.CapAdd}} {{.HostConfig.SecurityOpt}} {{.HostConfig.NetworkMode}}' "$1"
}

t_containers_are_confined() {
  need_static_site
  need_git_site
  need_wordpress
  local web="drop=[ALL] add=[CHOWN NET_BIND_SERVICE SETGID SETUID] [no-new-privileges] hostyard"
  expect "static_$STATIC" "$(confinement "static_$STATIC")" "true $web"
  expect "static-git_$GIT_SITE" "$(confinement "static-git_$GIT_SITE")" "true $web"
  expect "wordpress_$WP" "$(confinement "wordpress_$WP")" "false $web"
  expect "hostyard_haproxy" "$(confinement hostyard_haproxy)" \
    "true drop=[ALL] add=[NET_BIND_SERVICE] [no-new-privileges] host"
  expect "hostyard_postfix" "$(confinement hostyard_postfix)" \
    "true drop=[ALL] add=[CHOWN DAC_OVERRIDE FOWNER KILL NET_BIND_SERVICE SETGID SETUID] [no-new-privileges] host"
}

# state: what a hostile instance must not change (site data, imports,
# containers).
state() {
  bx sh -c "find $DOMAINS_DIR $IMPORT_DIR | sort; docker ps -a --format '{{.Names}}' | sort"
}

t_hostile_instances_fail_cleanly() {
  local before after name ok=0
  before=$(state)
  for name in 'static@..%2fetc' 'static-git@a..b' 'static@-rf' 'static@x%20y'; do
    if bx systemctl start "$name" >/dev/null 2>&1; then
      printf '    FAIL systemctl start %s succeeded\n' "$name" >&2
      ok=1
    else
      printf '    ok   systemctl start %s failed\n' "$name" >&2
    fi
  done
  after=$(state)
  expect "data and containers after hostile starts" "$(diff <(echo "$before") <(echo "$after") | wc -l)" 0 || ok=1
  [ "$ok" = 0 ]
}

# port: the host port HAProxy's port 80 is published on (it may change when
# the box restarts).
port() {
  local p
  p=$(docker port "$BOX" 80/tcp | head -n 1)
  printf '%s\n' "${p##*:}"
}

booted() {
  local state
  state=$(bx systemctl is-system-running 2>/dev/null) || true
  [ "$state" = running ] || [ "$state" = degraded ]
}

t_reboot_brings_enabled_sites_back() {
  need_static_site
  need_git_site
  # What it served before (v2 after the pull check, v1 when run alone).
  local git_before
  git_before=$(body "$GIT_SITE" /)
  bx systemctl enable -q "static@$STATIC" "static-git@$GIT_SITE"
  local t0
  t0=$(now_ms)
  docker restart -t 60 "$BOX" >/dev/null
  wait_for 60 "systemd after the reboot" booted
  PORT=$(port)
  wait_for 60 "static@$STATIC after the reboot" answers_200 "$STATIC" || true
  wait_for 60 "static-git@$GIT_SITE after the reboot" answers_200 "$GIT_SITE" || true
  note "both answered $(($(now_ms) - t0)) ms after docker restart began"
  expect "static@$STATIC after the reboot" "$(body "$STATIC" /)" "static site $STATIC"
  expect "static-git@$GIT_SITE after the reboot" "$(body "$GIT_SITE" /)" "$git_before"
}

CHECKS=(
  t_setup_second_run_changes_nothing
  t_setup_on_debian_12_stops_and_changes_nothing
  t_setup_with_unreachable_etcd_cluster_fails_and_changes_nothing
  t_setup_joins_a_configured_etcd_cluster
  t_static_site_answers_when_start_returns
  t_host_with_port_routes
  t_unknown_host_404
  t_stop_503_within_1s_then_start_200
  t_static_git_site_and_pull
  t_wordpress_fresh_install_survives_restart
  t_mail_forwards_for_hosted_domains
  t_mail_relay_for_other_domains_refused
  t_mail_bad_forward_file_is_skipped
  t_containers_are_confined
  t_hostile_instances_fail_cleanly
  t_reboot_brings_enabled_sites_back
)

# Checks in files of their own: every tests/e2e/checks/*.sh defines t_*
# functions and lists them in a `CHECKS+=(...)` line; they run after the
# ones above, file by file in name order. A check that changes the whole
# server for good lists itself in `LAST_CHECKS+=(...)` instead, and runs
# after all others (ACME: once it is configured, every site gets a
# certificate and its HTTP answers become redirects). A check can use
# every helper of this file (bx, code, body, expect, server_state, ...).
LAST_CHECKS=()
for check_file in "$repo"/tests/e2e/checks/*.sh; do
  [ -e "$check_file" ] || continue
  # shellcheck source=/dev/null # which files is known only at run time
  . "$check_file"
done
unset check_file
CHECKS+=("${LAST_CHECKS[@]}")

run_check() {
  local name=$1 rc
  step "$name"
  # Not in an `if`: set -e must stay in force inside the check.
  set +e
  (
    set -e
    "$name"
  )
  rc=$?
  set -e
  if [ "$rc" = 0 ]; then PASSED+=("$name"); else FAILED+=("$name"); fi
}

main() {
  need_root "boot a systemd container"
  [ $# -eq 0 ] || CHECKS=("$@")
  trap cleanup EXIT
  BOX=$BOX BOX_PORT=auto KEEP_BOX=1 SAMPLE_SITE=0 "$repo/scripts/server-in-a-box.sh"
  PORT=$(port)
  layout_dirs
  local name
  for name in "${CHECKS[@]}"; do
    run_check "$name"
    # A check runs in a subshell: a reboot's new port must reach the next.
    PORT=$(port)
  done
  step "e2e: ${#PASSED[@]} passed, ${#FAILED[@]} failed"
  for name in "${FAILED[@]}"; do note "FAILED $name"; done
  [ ${#FAILED[@]} -eq 0 ]
}

main "$@"
