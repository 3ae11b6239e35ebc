# shellcheck shell=bash
# A site's other names and a static-git deploy's undo, each by the commands
# docs/sites.md gives the operator. Sourced by tests/e2e/run.sh.

CHECKS+=(t_an_alias_by_command_redirects_to_the_site t_a_bad_push_is_rolled_back_by_command)

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

# push CONTENT: a commit of index.html pushed to the site's repository.
push() {
  bxi bash -euo pipefail -s "$1" <<'EOF2'
cd /tmp/work/site
echo "$1" >index.html
git commit -qam "$1"
git push -q /srv/git/site.git main
EOF2
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
