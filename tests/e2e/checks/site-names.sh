# shellcheck shell=bash
# A site's other names and a static-git deploy's undo, each by the commands
# docs/sites.md gives the operator. Sourced by tests/e2e/run.sh.

CHECKS+=(t_an_alias_by_command_redirects_to_the_site t_path_redirects_by_command_are_one_hop t_a_bad_push_is_rolled_back_by_command)
CHECKS+=(t_www_a_preview_password_and_headers_by_command t_a_wordpress_site_served_under_www_has_no_loop)

ALIAS=alias.example.net

# location HOST PATH: the status and Location of one request, no redirect
# followed.
location() {
  curl -s -o /dev/null -w '%{http_code} %{redirect_url}' --max-time "$CURL_SECS" \
    -H "Host: $1" "http://127.0.0.1:$PORT$2" || true
}

t_an_alias_by_command_redirects_to_the_site() {
  need_static_site
  expect "$ALIAS before it is an alias" "$(code "$ALIAS" /)" 404
  bx hostyard site set "$STATIC" --add-alias "$ALIAS"
  expect "site show" "$(bx hostyard site show "$STATIC" | sed -n 's/^aliases: //p')" "$ALIAS"
  # Routing follows the declaration through confd's watch: bounded wait.
  local t0 got
  t0=$(now_ms)
  until got=$(location "$ALIAS" '/x?y=1') && [ "${got%% *}" = 301 ]; do
    (($(now_ms) - t0 < 10000)) || break
    sleep 0.1
  done
  note "$ALIAS redirected $(($(now_ms) - t0)) ms after hostyard site set returned"
  expect "$ALIAS/x?y=1" "$got" "301 http://$STATIC/x?y=1"
  bx hostyard site set "$STATIC" --remove-alias "$ALIAS"
  t0=$(now_ms)
  until got=$(code "$ALIAS" /) && [ "$got" = 404 ]; do
    (($(now_ms) - t0 < 10000)) || break
    sleep 0.1
  done
  expect "$ALIAS once removed" "$got" 404
}

t_path_redirects_by_command_are_one_hop() {
  need_static_site
  bx hostyard site set "$STATIC" --redirect /old-page=/new-page \
    --redirect-prefix 308:/blog/=https://blog.example.org/
  expect "site show" "$(bx hostyard site show "$STATIC" | grep -c '^redirect')" 2
  # confd's edge thread follows the declaration: bounded wait.
  local t0 got
  t0=$(now_ms)
  until got=$(location "$STATIC" '/old-page?y=1') && [ "${got%% *}" = 301 ]; do
    (($(now_ms) - t0 < 10000)) || break
    sleep 0.1
  done
  note "/old-page redirected $(($(now_ms) - t0)) ms after hostyard site set returned"
  expect "$STATIC/old-page?y=1" "$got" "301 http://$STATIC/new-page?y=1"
  expect "$STATIC/blog/a?b=1" "$(location "$STATIC" '/blog/a?b=1')" \
    "308 https://blog.example.org/a?b=1"
  bx hostyard site set "$STATIC" --remove-redirect /old-page --remove-redirect /blog/
  t0=$(now_ms)
  until got=$(location "$STATIC" /old-page) && [ "${got%% *}" != 301 ]; do
    (($(now_ms) - t0 < 10000)) || break
    sleep 0.1
  done
  expect "$STATIC/old-page once removed" "${got%% *}" 404
}

# push CONTENT: a commit of index.html pushed to the site's repository,
# from a working clone made again when a reboot emptied /tmp; the git
# daemon (a transient unit) started again too.
push() {
  git_repo
  bxi bash -euo pipefail -s "$1" <<'EOF2'
if [ ! -d /tmp/work/site ]; then
  mkdir -p /tmp/work
  git clone -q /srv/git/site.git /tmp/work/site
  git -C /tmp/work/site config user.email e2e@example.com
  git -C /tmp/work/site config user.name e2e
fi
cd /tmp/work/site
echo "$1" >index.html
git commit -qam "$1"
git push -q /srv/git/site.git main
EOF2
}

# headers HOST PATH [CURL ARGS...]: the status line and headers of one answer.
headers() {
  local host=$1 path=$2
  shift 2
  curl -s -o /dev/null -D - --max-time "$CURL_SECS" -H "Host: $host" "$@" \
    "http://127.0.0.1:$PORT$path" | tr -d '\r' || true
}

# docs/sites.md, "The canonical name, a preview password, security headers".
t_www_a_preview_password_and_headers_by_command() {
  need_static_site
  bx hostyard site set "$STATIC" --canonical www
  bx sh -c 'cd /root && openssl rand -base64 18 > preview.pass &&
    hostyard site set '"$STATIC"' --basic-auth preview < preview.pass'
  bx hostyard site set "$STATIC" --headers strict
  expect "site show" "$(bx hostyard site show "$STATIC" | grep -E '^(canonical|basic-auth|headers):' | tr '\n' ' ')" \
    "canonical: www basic-auth: preview headers: strict "
  # confd's edge thread follows the declaration: bounded wait.
  local t0 got pass
  t0=$(now_ms)
  until got=$(location "$STATIC" '/x?y=1') && [ "$got" = "301 http://www.$STATIC/x?y=1" ]; do
    (($(now_ms) - t0 < 10000)) || break
    sleep 0.1
  done
  note "$STATIC redirected to www. $(($(now_ms) - t0)) ms after the last hostyard site set returned"
  expect "$STATIC/x?y=1" "$got" "301 http://www.$STATIC/x?y=1"
  expect "www.$STATIC without the password" "$(code "www.$STATIC" /)" 401
  expect "www.$STATIC with a wrong one" \
    "$(headers "www.$STATIC" / -u preview:not-the-password-at-all | head -1)" "HTTP/1.1 401 Unauthorized"
  pass=$(bx cat /root/preview.pass)
  got=$(headers "www.$STATIC" / -u "preview:$pass")
  expect "www.$STATIC with the password" "$(head -1 <<<"$got")" "HTTP/1.1 200 OK"
  expect "nosniff" "$(grep -ci '^x-content-type-options: nosniff' <<<"$got")" 1
  expect "permissions policy" "$(grep -ci '^permissions-policy:' <<<"$got")" 1
  expect "no HSTS over HTTP" "$(grep -ci '^strict-transport-security:' <<<"$got")" 0
  bx hostyard site set "$STATIC" --canonical bare --remove-basic-auth --headers none
  bx rm -f /root/preview.pass
  t0=$(now_ms)
  until got=$(code "$STATIC" /) && [ "$got" = 200 ]; do
    (($(now_ms) - t0 < 10000)) || break
    sleep 0.1
  done
  expect "$STATIC once all three are back" "$got" 200
  expect "www.$STATIC once all three are back" "$(location "www.$STATIC" /)" "301 http://$STATIC/"
}

# WordPress builds its links and its own canonical redirect on its home
# URL (http://D from the install): served under www.D it must answer there,
# not send the visitor back to D, which HAProxy sends to www.D again.
t_a_wordpress_site_served_under_www_has_no_loop() {
  need_wordpress
  bx hostyard site set "$WP" --canonical www
  local t0 got
  t0=$(now_ms)
  until got=$(location "$WP" '/?p=1') && [ "$got" = "301 http://www.$WP/?p=1" ]; do
    (($(now_ms) - t0 < 10000)) || break
    sleep 0.1
  done
  expect "$WP/?p=1" "$got" "301 http://www.$WP/?p=1"
  got=$(location "www.$WP" '/?p=1')
  expect "www.$WP/?p=1: WordPress's permalink on www." "$got" "301 http://www.$WP/hello-world/"
  expect "www.$WP/hello-world/" "$(location "www.$WP" /hello-world/)" "200 "
  expect "www.$WP's links" "$(body "www.$WP" /hello-world/ | grep -c "href=\"http://$WP/")" 0
  bx hostyard site set "$WP" --canonical bare
  t0=$(now_ms)
  until got=$(location "www.$WP" /) && [ "$got" = "301 http://$WP/" ]; do
    (($(now_ms) - t0 < 10000)) || break
    sleep 0.1
  done
  expect "www.$WP once bare again" "$got" "301 http://$WP/"
  expect "$WP/hello-world/ once bare again" "$(location "$WP" /hello-world/)" "200 "
}

t_a_bad_push_is_rolled_back_by_command() {
  need_git_site
  local before
  before=$(body "$GIT_SITE" /)
  push bad
  bx systemctl start "static-git-puller@$GIT_SITE.service"
  expect "after the bad push" "$(body "$GIT_SITE" /)" bad
  bx hostyard site rollback "$GIT_SITE"
  expect "after the rollback" "$(body "$GIT_SITE" /)" "$before"
  # The next pull leaves the bad commit out, and says so.
  bx systemctl start "static-git-puller@$GIT_SITE.service"
  expect "after a pull" "$(body "$GIT_SITE" /)" "$before"
  bx journalctl -u "static-git-puller@$GIT_SITE.service" --no-pager | grep -q 'held back by a rollback' ||
    { echo "    FAIL the puller's journal does not say the commit is held" >&2; return 1; }
  push fixed
  bx systemctl start "static-git-puller@$GIT_SITE.service"
  expect "after a new push" "$(body "$GIT_SITE" /)" fixed
}

CHECKS+=(t_a_signed_push_hook_publishes_the_site)

# hook_post SIGNATURE BODY: the status of a Gitea-style push hook to
# $GIT_SITE through the box's HAProxy.
hook_post() {
  curl -s -o /dev/null -w '%{http_code}' --max-time "$CURL_SECS" -H "Host: $GIT_SITE" \
    -H 'Content-Type: application/json' -H 'X-Gitea-Event: push' \
    -H "X-Gitea-Signature: $1" --data-binary "$2" \
    "http://127.0.0.1:$PORT/.well-known/hostyard/deploy" || true
}

# hmac SECRET BODY: the hex HMAC-SHA256 a forge signs BODY with (the
# secret to python on stdin, not on its command line).
hmac() {
  python3 -c 'import hashlib, hmac, sys; print(hmac.new(sys.stdin.readline().strip().encode(), sys.argv[1].encode(), hashlib.sha256).hexdigest())' "$2" <<<"$1"
}

# puller_started: when the site's puller last started (monotonic), which
# a start changes.
puller_started() {
  bx systemctl show -p ExecMainStartTimestampMonotonic --value "static-git-puller@$GIT_SITE.service"
}

t_a_signed_push_hook_publishes_the_site() {
  need_git_site
  local secret body sig t0 got before
  # As docs/sites.md says: the URL and, with --print, the secret last.
  secret=$(bx hostyard site hook "$GIT_SITE" --print | tail -n 1)
  [ "${#secret}" = 64 ] || { echo "    FAIL hostyard site hook printed no secret" >&2; return 1; }
  body='{"ref":"refs/heads/main"}'
  push hooked
  # A signature of another secret: refused, the puller not started.
  before=$(puller_started)
  sig=$(hmac not-the-secret "$body")
  expect "a hook signed with another secret" "$(hook_post "$sig" "$body")" 403
  expect "the puller after a refused hook" "$(puller_started)" "$before"
  sig=$(hmac "$secret" "$body")
  t0=$(now_ms)
  expect "a hook signed with the site's secret" "$(hook_post "$sig" "$body")" 202
  until got=$(body "$GIT_SITE" /) && [ "$got" = hooked ]; do
    (($(now_ms) - t0 < 10000)) || break
    sleep 0.05
  done
  note "served the pushed commit $(($(now_ms) - t0)) ms after the hook was sent"
  expect "after the hook" "$got" hooked
}

CHECKS+=(t_a_push_hooked_while_the_puller_runs_is_published)

# A push whose hook comes while the site's puller is still running (it
# fetched the tip before this push) is published too, not left for the
# timer: systemd merges a start into a running start job. The git daemon's
# pack-objects is held (a system-wide uploadpack.packObjectsHook that waits
# while /run/e2e-hold-pack exists), so the puller is deterministically
# inside its fetch of the first push when the second one's hook comes.
t_a_push_hooked_while_the_puller_runs_is_published() {
  need_git_site
  local secret body t0 got rc=0
  secret=$(bx hostyard site hook "$GIT_SITE" --print | tail -n 1)
  body='{"ref":"refs/heads/main"}'
  bxi sh -c 'cat >/usr/local/bin/e2e-hold-pack && chmod 755 /usr/local/bin/e2e-hold-pack' <<'EOF2'
#!/bin/sh
# Test only: hold a fetch's pack while /run/e2e-hold-pack exists (30 s at most).
touch /run/e2e-pack-held
i=0
while [ -e /run/e2e-hold-pack ] && [ $i -lt 600 ]; do sleep 0.05; i=$((i + 1)); done
exec "$@"
EOF2
  bx git config --system uploadpack.packObjectsHook /usr/local/bin/e2e-hold-pack
  bx rm -f /run/e2e-pack-held
  bx touch /run/e2e-hold-pack
  push first-of-two
  expect "the first push's hook" "$(hook_post "$(hmac "$secret" "$body")" "$body")" 202 || rc=1
  t0=$(now_ms)
  until bx test -e /run/e2e-pack-held; do
    (($(now_ms) - t0 < 10000)) || break
    sleep 0.05
  done
  expect "the puller inside its fetch" "$(bx systemctl is-active "static-git-puller@$GIT_SITE.service" || true)" activating || rc=1
  push second-of-two
  expect "the second push's hook" "$(hook_post "$(hmac "$secret" "$body")" "$body")" 202 || rc=1
  bx rm -f /run/e2e-hold-pack
  t0=$(now_ms)
  until got=$(body "$GIT_SITE" /) && [ "$got" = second-of-two ]; do
    (($(now_ms) - t0 < 20000)) || break
    sleep 0.05
  done
  note "the second push served $(($(now_ms) - t0)) ms after the held fetch was let go"
  bx git config --system --unset uploadpack.packObjectsHook
  expect "after both hooks" "$got" second-of-two || rc=1
  return "$rc"
}

CHECKS+=(t_pushes_in_quick_succession_are_each_published)

# Pushes hooked one after the other are each published, however many come
# in a few seconds: five pulls right before them bring the puller to
# systemd's default start limit (5 in 10 s), which would refuse the next
# start and leave the push for the timer.
t_pushes_in_quick_succession_are_each_published() {
  need_git_site
  local secret body i t0 got rc=0
  secret=$(bx hostyard site hook "$GIT_SITE" --print | tail -n 1)
  body='{"ref":"refs/heads/main"}'
  for i in 1 2 3 4 5; do bx systemctl start "static-git-puller@$GIT_SITE.service" || true; done
  for i in 1 2; do
    push "quick-$i"
    expect "hook $i" "$(hook_post "$(hmac "$secret" "$body")" "$body")" 202 || rc=1
    t0=$(now_ms)
    until got=$(body "$GIT_SITE" /) && [ "$got" = "quick-$i" ]; do
      (($(now_ms) - t0 < 20000)) || break
      sleep 0.05
    done
    expect "push $i served" "$got" "quick-$i" || rc=1
  done
  return "$rc"
}
