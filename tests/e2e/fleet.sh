#!/usr/bin/env bash
# Fleet in a box: three Debian 13 servers (systemd as PID 1, Docker inside)
# and a jump box on one docker network. The jump box sets the servers up
# from scratch through deploy/ (its CA, ssh with pinned host keys, one etcd
# member at a time), adds a site on each server, and the checks below run
# against the result. scripts/test.sh (CI) runs it after tests/e2e/run.sh,
# with the same CACHE; about 12 minutes on 2 cores.
#
# usage: tests/e2e/fleet.sh   (as root; on a shared machine under the lock:
#          CACHE=/var/cache/hostyard-box-NAME flock /tmp/hostyard-e2e.lock tests/e2e/fleet.sh)
#   KEEP_BOX=1  leave the boxes and their network for a look afterwards
#   CHECKS="t_a t_b"  run only these checks (after the two that set the fleet up)
#   BENCH_MOVES=N  no checks: N rounds of the move benchmark (scripts/bench.sh move)
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
# shellcheck source=tests/e2e/lib/common.sh
. "$repo/tests/e2e/lib/common.sh"

RUN=hostyard-fleet-$$
NET=$RUN
JUMP=$RUN-jump
SERVERS=(n1 n2 n3)
KEEP_BOX=${KEEP_BOX:-0}
CHECKS=${CHECKS:-}
BENCH_MOVES=${BENCH_MOVES:-}
CACHE=${CACHE:-/var/cache/hostyard-box-fleet}
export CACHE
declare -A IP=()
declare -a PASSED=() FAILED=()
FLEET=/etc/hostyard-fleet
# What the jump box runs deploy/ with: the boxes mount the build's binaries
# and image tarballs here (scripts/server-in-a-box.sh).
DEPLOY_ENV=(env BINARIES=/hostyard/bin IMAGES=/hostyard/images "FLEET=$FLEET")

box_of() { echo "$RUN-$1"; }
on() { docker exec "$(box_of "$1")" "${@:2}"; }
oni() { docker exec -i "$(box_of "$1")" "${@:2}"; }
jump() { docker exec -i "$JUMP" "$@"; }
deploy() { jump "${DEPLOY_ENV[@]}" "/hostyard/src/deploy/$1" "${@:2}"; }

cleanup() {
  if [ "$KEEP_BOX" = 1 ]; then
    note "kept $JUMP and $RUN-n1..n3 on network $NET"
    return
  fi
  remove_boxes "$JUMP" "${SERVERS[@]/#/$RUN-}"
  docker network rm "$NET" >/dev/null 2>&1 || true
}

expect() {
  if [ "$2" != "$3" ]; then
    printf '    FAIL %s: got "%s", want "%s"\n' "$1" "$2" "$3" >&2
    return 1
  fi
  printf '    ok   %s: %s\n' "$1" "$2" >&2
}

# boot NAME [PREPARED]: a box on the fleet's network, without setup; its
# output in /tmp/$RUN-boot-NAME.log. PREPARED=1: the build and the image
# tarballs are ready (an earlier boot made them), only boot.
boot() {
  local log=/tmp/$RUN-boot-$1.log
  BOX=$(box_of "$1") BOX_NETWORK=$NET BOX_PORT=auto SETUP=0 SAMPLE_SITE=0 KEEP_BOX=1 \
    PREPARED=${2:-0} "$repo/scripts/server-in-a-box.sh" >"$log" 2>&1 || {
    tail -n 20 "$log" >&2
    note "booting $1 failed (log: $log)"
    return 1
  }
}

# in_parallel CMD ARG...: CMD ARG for each ARG at once; fails if one does.
in_parallel() {
  local cmd=$1 pids=() p a rc=0
  shift
  for a in "$@"; do
    "$cmd" "$a" &
    pids+=($!)
  done
  for p in "${pids[@]}"; do wait "$p" || rc=1; done
  return "$rc"
}

boot_prepared() { boot "$1" 1; }

# ssh_packages BOX: ssh and what the checks use, from the box's Debian.
ssh_packages() {
  if [ "$1" = jump ]; then
    apt_in jump openssh-client openssl curl wrk rsync
  else
    apt_in "$1" openssh-server
  fi
}

# The boxes share one apt archive (server-in-a-box.sh), whose lock apt does
# not wait for: installs take turns on a lock of their own there.
apt_in() {
  on "$1" sh -c "apt-get update -qq && DEBIAN_FRONTEND=noninteractive flock /var/cache/apt/archives/.hostyard-box.lock apt-get install -y -qq --no-install-recommends ${*:2} >/dev/null"
}

# The machine stands in for the provider: it boots the boxes, gives the jump
# box's public key to each server's root and reads each server's host key
# from the server itself (the pinned known_hosts, never trust on first use).
make_fleet() {
  local s t0=$SECONDS
  step "booting the jump box and ${SERVERS[*]} on $NET"
  docker network create "$NET" >/dev/null
  # The first boot builds what every box mounts; the others only boot, all
  # at once, and their packages come at once too.
  boot "${SERVERS[0]}" || die "booting ${SERVERS[0]} failed"
  in_parallel boot_prepared jump "${SERVERS[@]:1}" || die "booting the boxes failed"
  for s in jump "${SERVERS[@]}"; do
    IP[$s]=$(docker inspect -f "{{(index .NetworkSettings.Networks \"$NET\").IPAddress}}" "$(box_of "$s")")
  done
  note "booted in $((SECONDS - t0)) s"
  in_parallel ssh_packages jump "${SERVERS[@]}" || die "installing packages in the boxes failed"
  jump sh -c 'mkdir -p /root/.ssh && ssh-keygen -q -t ed25519 -N "" -f /root/.ssh/id_ed25519'
  jump mkdir -p "$FLEET"
  local pub inventory="servers:"
  pub=$(jump cat /root/.ssh/id_ed25519.pub)
  for s in "${SERVERS[@]}"; do
    oni "$s" sh -c "mkdir -p /root/.ssh && cat >>/root/.ssh/authorized_keys" <<<"$pub"
    printf '%s %s\n' "${IP[$s]}" "$(on "$s" cut -d' ' -f1,2 /etc/ssh/ssh_host_ed25519_key.pub)" |
      jump sh -c "cat >>$FLEET/known_hosts"
    inventory+=$'\n'"  - {name: $s, ssh: root@${IP[$s]}, private: ${IP[$s]}, role: member}"
  done
  inventory+=$'\nsites:'
  for s in "${SERVERS[@]}"; do
    inventory+=$'\n'"  - {domain: site-$s.example, kind: static, server: $s}"
  done
  jump sh -c "cat >$FLEET/fleet.yaml" <<<"$inventory"
  # The jump box is the checks' load generator (wrk, probes every 20 ms):
  # like a hoster's monitoring host, the operator lifts the per-client
  # limits for it in each server's own config, before deploy/ sets it up.
  for s in "${SERVERS[@]}"; do
    yaml_checked <<YAML | oni "$s" sh -c 'mkdir -p /etc/hostyard && cat >/etc/hostyard/hostyard.yaml'
haproxy:
  unlimited_sources: [127.0.0.0/8, "::1/128", ${IP[jump]}/32]
YAML
  done
  note "four boxes in $((SECONDS - t0)) s"
}

# etcd_members: `NAME PEER-URL` lines, asked as root through the jump box.
etcd_members() {
  jump "${DEPLOY_ENV[@]}" bash -c '. /hostyard/src/deploy/lib/fleet.sh && tunnel n1 && etcd_admin members' |
    sort
}

# The operator's own settings on n1, as docs/reference/config.md says to set
# them: in /etc/hostyard/hostyard.yaml, which deploy/ must never write.
OPERATOR_SETTINGS='backup:
  repository: /srv/n1-restic'

t_servers_set_up_one_member_at_a_time() {
  local s t0 took=() saved rc=0
  for s in "${SERVERS[@]}"; do
    t0=$SECONDS
    deploy server.sh add "$s" >"/tmp/$RUN-add-$s.log" 2>&1 || {
      tail -n 30 "/tmp/$RUN-add-$s.log" >&2
      return 1
    }
    took+=("$s $((SECONDS - t0)) s")
    if [ "$s" = n1 ]; then
      saved=$(on n1 cat /etc/hostyard/hostyard.yaml)
      yaml_checked <<<"$OPERATOR_SETTINGS" | oni n1 sh -c 'cat >>/etc/hostyard/hostyard.yaml'
    fi
  done
  note "set up from the jump box: ${took[*]}"
  expect "members" "$(etcd_members | awk '{print $1}' | tr '\n' ' ')" "n1 n2 n3 "
  t0=$SECONDS
  local again
  again=$(deploy server.sh add n2 2>&1)
  note "add n2 again: $((SECONDS - t0)) s"
  expect "a second add changes nothing" \
    "$(grep -c -e 'done: nothing to change' -e 'member settings already' -e 'nothing changed' <<<"$again")" 4 || rc=1
  # Three adds (n2, n3, n2 again) after the operator's edit on n1: every
  # setting of theirs is as they wrote it, beside the fleet's.
  expect "n1's backup.repository after three adds" \
    "$(on n1 hostyard config get backup.repository)" /srv/n1-restic || rc=1
  expect "n1's haproxy.unlimited_sources after four adds" \
    "$(on n1 hostyard config get haproxy.unlimited_sources | grep -cxF "${IP[jump]}/32")" 1 || rc=1
  expect "n1's node_name from the fleet's drop-in" "$(on n1 hostyard config get node_name)" n1 || rc=1
  # The later checks set their own backup repository.
  printf '%s\n' "$saved" | oni n1 sh -c 'cat >/etc/hostyard/hostyard.yaml'
  return "$rc"
}

t_sites_on_their_servers() {
  jump mkdir -p /tmp/site/static/www-content
  local s
  for s in "${SERVERS[@]}"; do
    printf 'hello from %s\n' "$s" | jump sh -c 'cat >/tmp/site/static/www-content/index.html'
    deploy site.sh add "site-$s.example" /tmp/site >/dev/null 2>&1 || return 1
  done
  for s in "${SERVERS[@]}"; do
    expect "site-$s.example through $s" \
      "$(jump curl -s --max-time 5 -H "Host: site-$s.example" "http://${IP[$s]}/")" "hello from $s"
  done
  expect "the fleet's list" "$(deploy site.sh list 2>/dev/null | awk '{print $4}' | tr '\n' ' ')" "active active active "
  expect "add again" "$(deploy site.sh add site-n1.example 2>&1 | grep -c 'nothing changed')" 1
}

# until SECS CMD...: re-runs CMD until it succeeds; prints the seconds it
# took (with a fraction), fails after SECS.
until_ok() {
  local limit=$1 t0 now
  shift
  t0=$(date +%s.%N)
  while ! "$@" >/dev/null 2>&1; do
    now=$(date +%s.%N)
    if awk -v a="$t0" -v b="$now" -v l="$limit" 'BEGIN { exit !(b - a > l) }'; then
      return 1
    fi
    sleep 0.05
  done
  now=$(date +%s.%N)
  awk -v a="$t0" -v b="$now" 'BEGIN { printf "%.2f\n", b - a }'
}

# says SERVER DOMAIN TEXT: DOMAIN through SERVER's HAProxy answers TEXT.
says() {
  [ "$(jump curl -s --max-time 3 -H "Host: $2" "http://${IP[$1]}/")" = "$3" ]
}

# down SERVER DOMAIN: SERVER answers DOMAIN with its own 503 page (a
# site hosted but down), not a 404 and not a failed forward.
down() {
  jump curl -s -o /dev/null -D - --max-time 3 -H "Host: $2" "http://${IP[$1]}/" |
    tr -d '\r' | grep -qix 'x-hostyard-page: down'
}

# Every server serves every site, the ones it hosts itself
# and, forwarded to the peer that hosts them, the others, over HTTP and
# HTTPS (TLS ends on the server the request reached), and the hosting
# server logs the client, not the forwarding server.
t_every_server_serves_every_site() {
  local s t rc=0
  for s in "${SERVERS[@]}"; do
    for t in "${SERVERS[@]}"; do
      expect "site-$s.example through $t" \
        "$(jump curl -s --max-time 5 -H "Host: site-$s.example" "http://${IP[$t]}/")" "hello from $s" || rc=1
    done
  done
  expect "site-n1.example over HTTPS through n3" \
    "$(jump curl -sk --max-time 5 --resolve "site-n1.example:443:${IP[n3]}" https://site-n1.example/)" \
    "hello from n1" || rc=1
  # A path of its own marks the request (the site answers it 404); n1's
  # line for it names the jump box, not n3.
  jump curl -s -o /dev/null --max-time 5 -H 'Host: site-n1.example' "http://${IP[n3]}/via-n3-$RUN"
  expect "n1 logs the jump box as the client of a request through n3" \
    "$(until_ok 5 sh -c "docker exec $(box_of n1) journalctl -u haproxy --no-pager -n 300 | grep -q via-n3-$RUN" >/dev/null &&
      on n1 journalctl -u haproxy --no-pager -n 300 | grep "via-n3-$RUN" | grep -o "${IP[jump]} site-n1.example GET")" \
    "${IP[jump]} site-n1.example GET" || rc=1
  # The peer frontend takes nothing from the jump box, which is no server.
  expect "n1's peer port from the jump box" \
    "$(jump curl -s --max-time 3 -H 'Host: site-n1.example' "http://${IP[n1]}:8405/" || echo refused)" refused || rc=1
  return "$rc"
}

# verified SERVER DOMAIN TEXT: https://DOMAIN through SERVER answers TEXT,
# its chain verified against the test's CA.
verified() {
  [ "$(jump curl -s --max-time 3 --cacert /tmp/fleet-ca.pem --resolve "$2:443:${IP[$1]}" "https://$2/")" = "$3" ]
}

# A site's certificate, imported on the server that hosts
# it, is served by every server (each ends TLS itself, then forwards), its
# chain verified against the test's CA: published once in etcd, installed
# by every server's confd without a reload.
t_a_certificate_is_served_by_every_server() {
  local d=tls-n1.example dir s took rc=0
  dir=$(mktemp -d)
  make_tls_bundle "$dir" "$d"
  jump sh -c 'cat >/tmp/fleet-ca.pem' <"$dir/ca.pem"
  # A private CA's certificate is served by the other servers only where
  # that CA is trusted (docs/fleet.md: tls.acme.ca_file in a drop-in of its
  # own, then a restart of confd).
  for s in "${SERVERS[@]}"; do
    oni "$s" sh -c 'cat >/etc/hostyard/private-ca.pem' <"$dir/ca.pem"
    yaml_checked <<'YAML' | oni "$s" sh -c 'cat >/etc/hostyard/hostyard.yaml.d/trust.yaml'
tls:
  acme:
    ca_file: /etc/hostyard/private-ca.pem
YAML
    on "$s" systemctl restart haproxy-confd.service || rc=1
  done
  yaml_checked <<YAML | jump sh -c "cat >>$FLEET/fleet.yaml"
  - {domain: $d, kind: static, server: n1}
YAML
  jump mkdir -p "/tmp/site-$d/static/www-content" "/tmp/site-$d/TLS"
  printf 'hello from %s\n' "$d" | jump sh -c "cat >/tmp/site-$d/static/www-content/index.html"
  jump sh -c "umask 077 && cat >/tmp/site-$d/TLS/$d.pem" <"$dir/bundle.pem"
  rm -rf "$dir"
  deploy site.sh add "$d" "/tmp/site-$d" >/dev/null 2>&1 || return 1
  for s in "${SERVERS[@]}"; do
    took=$(until_ok 30 verified "$s" "$d" "hello from $d") || {
      note "https://$d through $s: no verified answer within 30 s"
      rc=1
      continue
    }
    note "https://$d through $s verified $took s after the add returned"
  done
  return "$rc"
}

# A site added on n1 is served through n3: 20 of them, each timed from the
# start of deploy/site.sh add to its first answer through n3 (the add
# returns once n1 routes it).
t_site_added_on_n1_is_served_through_n3() {
  local i d took=() lag=() t0 t1 rc=0
  for i in $(seq -w 1 20); do
    d=p$i.example
    yaml_checked <<YAML | jump sh -c "cat >>$FLEET/fleet.yaml"
  - {domain: $d, kind: static, server: n1}
YAML
    jump mkdir -p "/tmp/site-$d/static/www-content"
    printf 'hello from %s\n' "$d" | jump sh -c "cat >/tmp/site-$d/static/www-content/index.html"
  done
  for i in $(seq -w 1 20); do
    d=p$i.example
    t0=$(date +%s.%N)
    local out
    out=$(deploy site.sh add "$d" "/tmp/site-$d" 2>&1) || {
      note "adding $d failed: $(tail -n 3 <<<"$out" | tr '\n' ' ')"
      rc=1
      continue
    }
    t1=$(date +%s.%N)
    local more
    more=$(until_ok 30 says n3 "$d" "hello from $d") || {
      note "$d never answered through n3"
      rc=1
      continue
    }
    took+=("$(awk -v a="$t0" -v b="$t1" -v m="$more" 'BEGIN { printf "%.2f", b - a + m }')")
    lag+=("$more")
  done
  note "add on n1 to an answer through n3, p50 over ${#took[@]} sites: $(printf '%s\n' "${took[@]}" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}') s; after the add returned: p50 $(printf '%s\n' "${lag[@]}" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}') s, max $(printf '%s\n' "${lag[@]}" | sort -n | tail -n 1) s"
  expect "sites served through n3" "${#took[@]}" 20 || rc=1
  # Requests per second, one run each: through n3 (forwarded to n1) and
  # through n1 itself (wrk wants the port in the URL).
  local direct forwarded
  direct=$(jump wrk -t1 -c16 -d5s -H 'Host: site-n1.example' "http://${IP[n1]}:80/" | awk '/Requests\/sec/ {print $2}')
  forwarded=$(jump wrk -t1 -c16 -d5s -H 'Host: site-n1.example' "http://${IP[n3]}:80/" | awk '/Requests\/sec/ {print $2}')
  note "req/s for site-n1.example: through n1 $direct, through n3 (forwarded) $forwarded"
  return "$rc"
}

# A static-git site's push hook, sent to a server that does not host the
# site, publishes it on the one that does, as docs/sites.md sets it up: the
# secret from `hostyard site hook` on the owner, the URL on the site's
# name. The repository is served by a git daemon on n2, standing in for
# the forge.
t_a_push_hook_through_another_server_publishes_on_the_owner() {
  local d=hook-n1.example secret body sig status t0 took
  on n2 sh -c 'rm -rf /srv/forge /tmp/forge && git init -q -b main /tmp/forge &&
    echo first >/tmp/forge/index.html && git -C /tmp/forge add index.html &&
    git -C /tmp/forge -c user.email=e2e@example.com -c user.name=e2e commit -qm first &&
    mkdir -p /srv/forge && git clone -q --bare /tmp/forge /srv/forge/site.git'
  on n2 systemd-run -q --unit fleet-forge --property=Type=exec /usr/bin/git daemon --reuseaddr \
    --base-path=/srv/forge --export-all "--listen=${IP[n2]}" --port=9418 /srv/forge
  yaml_checked <<YAML | jump sh -c "cat >>$FLEET/fleet.yaml"
  - {domain: $d, kind: static-git, server: n1}
YAML
  jump mkdir -p "/tmp/site-$d/static-git"
  echo "git://${IP[n2]}:9418/site.git" | jump sh -c "cat >/tmp/site-$d/static-git/GITURL"
  deploy site.sh add "$d" "/tmp/site-$d" >/dev/null 2>&1 || { note "adding $d failed"; return 1; }
  until_ok 60 says n3 "$d" first >/dev/null || { note "$d never answered through n3"; return 1; }
  # On the owner, as the docs say: the secret is the last line.
  secret=$(on n1 hostyard site hook "$d" --print | tail -n 1)
  on n2 sh -c 'cd /tmp/forge && echo second >index.html &&
    git -c user.email=e2e@example.com -c user.name=e2e commit -qam second && git push -q /srv/forge/site.git main'
  body='{"ref":"refs/heads/main"}'
  sig=$(python3 -c 'import hashlib, hmac, sys; print(hmac.new(b"another secret", sys.argv[1].encode(), hashlib.sha256).hexdigest())' "$body")
  expect "a hook with another secret's signature through n3" "$(fleet_hook n3 "$d" "$sig" "$body")" 403 || return 1
  sig=$(python3 -c 'import hashlib, hmac, sys; print(hmac.new(sys.stdin.readline().strip().encode(), sys.argv[1].encode(), hashlib.sha256).hexdigest())' "$body" <<<"$secret")
  t0=$(date +%s.%N)
  status=$(fleet_hook n3 "$d" "$sig" "$body")
  expect "the signed hook through n3" "$status" 202 || return 1
  took=$(until_ok 20 says n3 "$d" second) || { note "the pushed commit was never served through n3"; return 1; }
  note "the pushed commit served through n3 $took s after the hook's answer ($(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.2f", b - a }') s after it was sent)"
  on n2 systemctl stop fleet-forge >/dev/null 2>&1 || true
}

# fleet_hook SERVER DOMAIN SIGNATURE BODY: the status of a Gitea-style
# push hook for DOMAIN sent to SERVER from the jump box.
fleet_hook() {
  jump curl -s -o /dev/null -w '%{http_code}' --max-time 5 -H "Host: $2" \
    -H 'Content-Type: application/json' -H 'X-Gitea-Event: push' -H "X-Gitea-Signature: $3" \
    --data-binary "$4" "http://${IP[$1]}/.well-known/hostyard/deploy" || true
}

# cut_off SERVER on|off: SERVER's packets to and from the other servers are
# dropped (a network partition; the server itself keeps running).
cut_off() {
  local op=-I t
  [ "$2" = on ] || op=-D
  for t in "${SERVERS[@]}"; do
    [ "$t" != "$1" ] || continue
    on "$1" iptables "$op" INPUT -s "${IP[$t]}" -j DROP
    on "$1" iptables "$op" OUTPUT -d "${IP[$t]}" -j DROP
  done
}

# Losing a server (its box frozen: no process runs, no
# packet is answered) or cutting it off. Its sites turn to the 503 page
# through the others within the lease TTL; the others keep serving and
# accepting changes; when it is back its sites return by themselves.
t_losing_a_server_and_a_partition() {
  local how took back rc=0 ttl
  ttl=$(on n1 hostyard config get discovery.ttl_secs 2>/dev/null || echo 60)
  for how in frozen cut-off; do
    if [ "$how" = frozen ]; then docker pause "$(box_of n2)" >/dev/null; else cut_off n2 on; fi
    took=$(until_ok $((ttl + 30)) down n1 site-n2.example) || {
      note "site-n2.example not 503 through n1 within $((ttl + 30)) s ($how)"
      rc=1
    }
    note "n2 $how: its site a 503 through n1 after ${took:-?} s (lease TTL $ttl s)"
    expect "site-n2.example through n3, n2 $how" \
      "$(until_ok 10 down n3 site-n2.example >/dev/null && echo 503)" 503 || rc=1
    expect "site-n1.example through n3, n2 $how" \
      "$(jump curl -s --max-time 5 -H 'Host: site-n1.example' "http://${IP[n3]}/")" "hello from n1" || rc=1
    # A change while n2 is gone: site-n3's registration goes and comes back.
    on n3 systemctl restart static@site-n3.example || rc=1
    expect "site-n3.example through n1 after a restart, n2 $how" \
      "$(until_ok 30 says n1 site-n3.example 'hello from n3' >/dev/null && echo served)" served || rc=1
    if [ "$how" = frozen ]; then docker unpause "$(box_of n2)" >/dev/null; else cut_off n2 off; fi
    back=$(until_ok 120 says n1 site-n2.example 'hello from n2') || {
      note "site-n2.example not back through n1 within 120 s ($how)"
      rc=1
    }
    note "n2 back ($how): its site served through n1 again after ${back:-?} s"
    expect "site-n2.example through n3, n2 back" \
      "$(until_ok 30 says n3 site-n2.example 'hello from n2' >/dev/null && echo served)" served || rc=1
  done
  # n2's member is healthy again (the next check stops n3's).
  expect "n2's etcd member after both" \
    "$(until_ok 60 on n2 hostyard etcd check --timeout 3 >/dev/null && echo healthy)" healthy || rc=1
  return "$rc"
}

# A site container on n1 reaches no etcd port: not its own server's (its
# private address, the bridge gateway) nor another member's.
t_site_containers_cannot_reach_etcd() {
  local gateway probe=(docker run --rm --network hostyard --entrypoint php hostyard/wordpress -r) host port
  gateway=$(on n1 docker network inspect -f '{{range .IPAM.Config}}{{.Gateway}}{{end}}' hostyard)
  for host in "${IP[n1]}" "$gateway" "${IP[n2]}"; do
    for port in 2379 2380; do
      expect "$host:$port from a site container on n1" \
        "$(on n1 "${probe[@]}" "echo @fsockopen('$host', $port, \$e, \$s, 2) ? 'open' : 'closed';")" closed
    done
  done
  # The server itself reaches its peers (the rule is for the bridges only).
  expect "n2's etcd from n1 itself" \
    "$(on n1 bash -c "exec 3<>/dev/tcp/${IP[n2]}/2379 && echo open || echo closed" 2>/dev/null)" open
}

# A site container on n2 reaches n1's peer port masqueraded as n2, a peer;
# the PROXY header it sends would set the client address every site on n1
# is told. The peer frontend wants a peer's certificate first: no answer,
# and n1 logs no request from the claimed address.
t_a_site_container_cannot_forge_a_peers_proxy_header() {
  local php
  # shellcheck disable=SC2016 # PHP's variables
  php=$(printf '$s = @fsockopen("%s", 8405, $e, $m, 3);
if (!$s) { echo "unreachable"; exit; }
stream_set_timeout($s, 5);
fwrite($s, "PROXY TCP4 203.0.113.66 %s 40000 8405\r\nGET / HTTP/1.1\r\nHost: site-n1.example\r\nConnection: close\r\n\r\n");
$a = (string) stream_get_contents($s);
echo strncmp($a, "HTTP/", 5) == 0 ? "answered " . strtok($a, "\r\n") : "refused";' "${IP[n1]}" "${IP[n1]}")
  # The port is closed to site containers (setup.sh's rule), on another
  # server and on n1 itself; past it, mutual TLS would refuse the header
  # (crates/hostyard-haproxy/tests/peers.rs).
  expect "a forged PROXY header from a site container on n2 to n1's peer port" \
    "$(on n2 docker run --rm --network hostyard --entrypoint php hostyard/wordpress -r "$php")" unreachable || return 1
  expect "n1's peer port from a site container on n1" \
    "$(on n1 docker run --rm --network hostyard --entrypoint php hostyard/wordpress -r "$php")" unreachable || return 1
  expect "n1's access log lines of a request from the claimed client" \
    "$(on n1 journalctl -u haproxy --no-pager | grep -c '203\.0\.113\.66 site-n1\.example GET' || true)" 0 || return 1
  # Forwarding between servers goes on: n3 to n1, in TLS.
  expect "site-n1.example through n3" \
    "$(jump curl -s --max-time 5 -H "Host: site-n1.example" "http://${IP[n3]}/")" "hello from n1"
}

# No plaintext listener but loopback's: etcd's sockets on the members.
t_no_plaintext_etcd_off_loopback() {
  # An https listener answers plain http with a 400, never with data.
  expect "health over http:// on n1's private address" \
    "$(on n2 curl -s --max-time 3 "http://${IP[n1]}:2379/health" | jq -r '.health // empty' 2>/dev/null)" ""
  expect "https:// without a certificate" \
    "$(on n2 curl -s --max-time 3 --cacert /etc/hostyard/etcd/ca.pem "https://${IP[n1]}:2379/health" >/dev/null 2>&1 && echo served || echo refused)" refused
}

# poll SERVER DOMAIN LOG: in the background on the jump box, requests DOMAIN
# through SERVER every ~20-50 ms, one `TIME CODE` line each into LOG (on
# the jump box), until /tmp/$RUN-poll-stop exists there.
poll() {
  jump rm -f "/tmp/$RUN-poll-stop"
  docker exec "$JUMP" sh -c "while [ ! -e /tmp/$RUN-poll-stop ]; do
      printf '%s %s\n' \"\$(date +%s.%N)\" \"\$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 -H 'Host: $2' http://${IP[$1]}/)\"
      sleep 0.02
    done >$3" &
  POLLER=$!
  # The poller has its first answer before the move starts.
  until_ok 10 jump test -s "$3" >/dev/null
}

# poll_stop LOG: stops the poller; prints `GAP NON200 N404 REQUESTS`: the
# seconds from the first answer that was not a 200 to the first 200 after
# the last one that was not (0 when every answer was a 200).
poll_stop() {
  jump touch "/tmp/$RUN-poll-stop"
  wait "$POLLER" || true
  jump cat "$1" | awk '
    { n++ }
    $2 != 200 { bad++; if (!first) first = $1; last = NR; if ($2 == 404) n404++ }
    { t[NR] = $1; c[NR] = $2 }
    END {
      back = 0
      for (i = last + 1; i <= NR; i++) if (c[i] == 200) { back = t[i]; break }
      gap = first ? (back ? back - first : -1) : 0
      printf "%.2f %d %d %d\n", gap, bad, n404, n
    }'
}

# wp_sql SERVER DOMAIN SQL: SQL in the WordPress site's database on SERVER,
# by a throwaway client on its database network (as hostyard export
# reaches it), the site's credentials on the client's stdin.
wp_sql() {
  on "$1" sh -c ". /data/domains/$2/secrets/db.env && printf '[client]\nuser=%s\npassword=%s\n' \"\$MARIADB_USER\" \"\$MARIADB_PASSWORD\" |
    docker run --rm -i --pull never --network hostyard-db-$2 --entrypoint mariadb \$(hostyard config get images.mysql) \
      --defaults-extra-file=/dev/stdin --host=mysql_$2 --batch --execute \"$3\" \"\$MARIADB_DATABASE\""
}

# move_and_measure DOMAIN FROM TO THROUGH TARGET [LIMIT]: moves DOMAIN from
# FROM to TO with deploy/site.sh while the jump box polls it through
# THROUGH; notes the gap and whether it met TARGET seconds, and fails on a
# 404, an unfinished move or a gap above LIMIT (default TARGET) seconds.
# The issue's targets are figures to report, not limits: on 2 cores shared
# with other builds every step slows down, so the limits only catch a move
# that hangs or loses the site.
move_and_measure() {
  local domain=$1 from=$2 to=$3 through=$4 target=$5 limit=${6:-$5} log=/tmp/$RUN-poll-$1 out rc=0 t0=$SECONDS
  local gap bad n404 n
  poll "$through" "$domain" "$log" || return 1
  out=$(deploy site.sh move "$domain" "$to" 2>&1) || {
    printf '%s\n' "$out" >&2
    rc=1
  }
  read -r gap bad n404 n < <(poll_stop "$log")
  note "move $domain $from -> $to: $((SECONDS - t0)) s in all; $(grep -o 'pre-copied .*' <<<"$out"); $(grep -o 'served on .*' <<<"$out")"
  note "through $through: gap ${gap} s (first non-200 to the first 200 from $to), $bad answers not 200 of $n, $n404 of them 404; the issue's target of $target s $(awk -v g="$gap" -v t="$target" 'BEGIN { print (g >= 0 && g <= t) ? "met" : "NOT met" }')"
  expect "404s while $domain moved" "$n404" 0 || rc=1
  expect "$domain's gap within $limit s" \
    "$(awk -v g="$gap" -v l="$limit" 'BEGIN { print (g >= 0 && g <= l) ? "yes" : "no (" g " s)" }')" yes || rc=1
  expect "the inventory after the move" "$(deploy site.sh list 2>/dev/null | awk -v d="$domain" '$1 == d { print $3, $4 }')" "$to active" || rc=1
  expect "$domain's data on $from after the move" \
    "$(on "$from" test -e "/data/domains/$domain" && echo kept || echo removed)" removed || rc=1
  return "$rc"
}

# A site moves with a measured gap. A static site n1 -> n2
# (2 s at most of 503 through n3) and a WordPress site with 100 MB of
# uploads n2 -> n3 (through n1), with a request every 20-50 ms; never a 404
# (the domain stays declared: a 503 while it moves). The WordPress target is
# 10 s. The WordPress move is prepared first (--prepare), then the site
# changes on n2 (an upload, its title in the database): both must arrive.
# Each move notes whether the issue's target was met, and the check fails
# above 15 s (static) and 30 s (WordPress): a loaded machine does not fail
# the suite, a broken move does.
# move_leftovers DOMAIN: what a move of DOMAIN left staged on n2, n3 and
# the jump box (its lock file aside): nothing once it finished or was undone.
move_leftovers() {
  { on n2 ls -A /data/import/.move; on n3 ls -A /data/import/.move; jump ls -A "$FLEET/state/move"; } 2>/dev/null |
    grep -F "$1" | grep -v '\.lock$' || true
}

# move_sites_add STATIC WP TEXT: the static site STATIC on n1 (its page
# says "TEXT STATIC") and the WordPress site WP on n2, added to the
# inventory and by site.sh, with 100 MB of uploads on WP, random (nothing
# compresses), in the site's layout. Says what failed.
move_sites_add() {
  local d=$1 w=$2 src=/tmp/site-$1
  local uploads=/data/domains/$w/wp-content/uploads/2026/12
  yaml_checked <<YAML | jump sh -c "cat >>$FLEET/fleet.yaml"
  - {domain: $d, kind: static, server: n1}
  - {domain: $w, kind: wordpress, server: n2}
YAML
  jump mkdir -p "$src/static/www-content"
  printf '%s %s\n' "$3" "$d" | jump sh -c "cat >$src/static/www-content/index.html"
  deploy site.sh add "$d" "$src" >/dev/null 2>&1 || { note "adding $d failed"; return 1; }
  deploy site.sh add "$w" >/dev/null 2>&1 || { note "adding $w failed"; return 1; }
  on n2 sh -c "mkdir -p $uploads && for i in \$(seq 1 50); do head -c 2M /dev/urandom >$uploads/f\$i.bin; done &&
    chown -R --reference=/data/domains/$w/wp-content /data/domains/$w/wp-content/uploads" ||
    { note "writing $w's uploads failed"; return 1; }
}

t_move_under_load() {
  local rc=0 d=mv-static.example w=mv-wp.example h t0=$SECONDS
  move_sites_add "$d" "$w" moving || return 1
  local uploads=/data/domains/$w/wp-content/uploads/2026/12
  h=$(on n2 sha256sum "$uploads/f7.bin" | cut -d' ' -f1)

  move_and_measure "$d" n1 n2 n3 2 15 || rc=1
  local s
  for s in "${SERVERS[@]}"; do
    expect "$d through $s after the move" "$(jump curl -s --max-time 5 -H "Host: $d" "http://${IP[$s]}/")" "moving $d" || rc=1
  done
  expect "moving $d to n2 again" "$(deploy site.sh move "$d" n2 2>&1 | grep -c 'nothing changed')" 1 || rc=1
  # A move cut short while the site is stopped (TERM, as by ^C) is undone:
  # the site serves from n2 again and the inventory is unchanged; run
  # again, the move completes.
  expect "a move to n3 stopped in its gap" "$(jump sh -c "${DEPLOY_ENV[*]} /hostyard/src/deploy/site.sh move $d n3 >/tmp/$RUN-cut 2>&1 & p=\$!
      for i in \$(seq 300); do grep -q '^==> stopping' /tmp/$RUN-cut && break; sleep 0.05; done
      kill -TERM \$p; wait \$p; echo exit \$?")" "exit 130" || rc=1
  expect "$d through n3 after the cut-short move" \
    "$(until_ok 10 says n3 "$d" "moving $d" >/dev/null && jump grep -c 'runs on n2 again' "/tmp/$RUN-cut")" 1 || rc=1
  expect "the inventory after the cut-short move" "$(deploy site.sh list 2>/dev/null | awk -v d="$d" '$1 == d { print $3, $4 }')" "n2 active" || rc=1
  # The undone move left none of its exports (the site's key and data).
  expect "the cut-short move's exports" "$(move_leftovers "$d")" "" || rc=1
  # A prepared move dropped: n1's copy goes, the site stays on n2.
  deploy site.sh move "$d" n1 --prepare >/dev/null 2>&1 || rc=1
  expect "n1's prepared copy of $d" "$(on n1 test -d "/data/domains/$d" && echo yes)" yes || rc=1
  expect "cancelling the prepared move" "$(deploy site.sh move "$d" --cancel 2>&1 | grep -c 'runs on n2 as before')" 1 || rc=1
  expect "n1's copy after the cancel" "$(on n1 test -e "/data/domains/$d" && echo kept || echo removed)" removed || rc=1
  expect "the inventory after the cancel" "$(deploy site.sh list 2>/dev/null | awk -v d="$d" '$1 == d { print $3, $4 }')" "n2 active" || rc=1
  # A move killed in its gap (KILL: no trap, nothing undone) is finished
  # by running it again.
  expect "a move to n3 killed in its gap" "$(jump sh -c "${DEPLOY_ENV[*]} /hostyard/src/deploy/site.sh move $d n3 >/tmp/$RUN-kill 2>&1 & p=\$!
      for i in \$(seq 300); do grep -q '^==> stopping' /tmp/$RUN-kill && break; sleep 0.05; done
      kill -KILL \$p; wait \$p; echo exit \$?")" "exit 137" || rc=1
  expect "the killed move run again" "$(deploy site.sh move "$d" n3 2>&1 | grep -c -e '^    finishing the move' -e "^==> done: $d moved from n2 to n3")" 2 || rc=1
  expect "$d through n1 after moving it to n3" "$(jump curl -s --max-time 5 -H "Host: $d" "http://${IP[n1]}/")" "moving $d" || rc=1
  # Two moves of one site at once: the second waits for the first, then
  # finds the site where the first put it.
  local both
  both=$(jump sh -c "${DEPLOY_ENV[*]} /hostyard/src/deploy/site.sh move $d n2 >/tmp/$RUN-m1 2>&1 &
      ${DEPLOY_ENV[*]} /hostyard/src/deploy/site.sh move $d n2 >/tmp/$RUN-m2 2>&1 & wait; cat /tmp/$RUN-m1 /tmp/$RUN-m2")
  expect "two moves at once: one waits, one moves, one finds it done" \
    "$(grep -c -e 'another move of .* is running' -e "^==> done: $d moved from n3 to n2" -e "^==> $d is on n2 already" <<<"$both")" 3 || rc=1
  expect "$d through n1 after the two moves" "$(jump curl -s --max-time 5 -H "Host: $d" "http://${IP[n1]}/")" "moving $d" || rc=1
  expect "the finished move's exports" "$(move_leftovers "$d")" "" || rc=1
  # A stopped site moves stopped: its data reaches n1, nothing starts or is
  # enabled there; started later, it serves what it served.
  deploy site.sh remove "$d" >/dev/null 2>&1 || rc=1
  deploy site.sh move "$d" n1 >/dev/null 2>&1 || rc=1
  expect "$d after moving it stopped" "$(deploy site.sh list 2>/dev/null | awk -v d="$d" '$1 == d { print $3, $4 }')/$(
    on n1 systemctl is-enabled "static@$d")/$(on n1 cat "/data/domains/$d/www/index.html")" "n1 inactive/disabled/moving $d" || rc=1
  deploy site.sh add "$d" >/dev/null 2>&1 || rc=1
  expect "$d through n2 once started on n1" "$(jump curl -s --max-time 5 -H "Host: $d" "http://${IP[n2]}/")" "moving $d" || rc=1

  # Prepared ahead (--prepare: n3 imports the pre-copy and starts its
  # MariaDB; the site serves from n2 throughout); then the site changes on
  # n2, an upload and its title in the database; the move carries both.
  deploy site.sh move "$w" n3 --prepare >/dev/null 2>&1 || rc=1
  expect "$w after --prepare" "$(deploy site.sh list 2>/dev/null | awk -v d="$w" '$1 == d { print $3, $4 }')/$(
    on n3 systemctl is-active "mysql@$w" "wordpress@$w" | tr '\n' ' ')" "n2 active/active inactive " || rc=1
  on n2 sh -c "head -c 1M /dev/urandom >$uploads/late.bin && chown --reference=$uploads/f7.bin $uploads/late.bin" || rc=1
  local late
  late=$(on n2 sha256sum "$uploads/late.bin" | cut -d' ' -f1)
  wp_sql n2 "$w" "UPDATE wp_options SET option_value = 'Changed after the pre-copy' WHERE option_name = 'blogname'" || rc=1
  expect "$w's new title on n2" "$(jump curl -s --max-time 10 -H "Host: $w" "http://${IP[n2]}/" | grep -c '<title>Changed after the pre-copy')" 1 || rc=1

  move_and_measure "$w" n2 n3 n1 10 30 || rc=1
  local f name sum
  for f in "f7.bin $h" "late.bin $late"; do
    read -r name sum <<<"$f"
    expect "upload $name of $w through n1 after the move" \
      "$(jump sh -c "curl -s --max-time 10 -H 'Host: $w' http://${IP[n1]}/wp-content/uploads/2026/12/$name | sha256sum | cut -d' ' -f1")" "$sum" || rc=1
  done
  expect "$w's title (changed after the pre-copy) through n1" \
    "$(jump curl -s --max-time 10 -H "Host: $w" "http://${IP[n1]}/" | grep -c '<title>Changed after the pre-copy')" 1 || rc=1
  # Nothing of the move stays: no database network on n2, no copy of the
  # import (its dump holds password hashes) kept by n3's importer.
  expect "$w's database network on n2 after the move" \
    "$(on n2 docker network inspect "hostyard-db-$w" >/dev/null 2>&1 && echo kept || echo removed)" removed || rc=1
  expect "n3's import/.done entries of $w" "$(on n3 sh -c "ls -d /data/import/.done/$w-* 2>/dev/null | wc -l")" 0 || rc=1
  expect "$w's front page through n2 after the move" \
    "$(jump curl -s -o /dev/null -w '%{http_code}' --max-time 10 -H "Host: $w" "http://${IP[n2]}/")" 200 || rc=1
  note "the move check: $((SECONDS - t0)) s (two sites added, 100 MB written, two moves)"
  return "$rc"
}

# The restore drill on a second server: n1 backs site-n1.example up to a
# restic repository on n3 over sftp (root's key only, n3's host key pinned
# in known_hosts), n1 is lost, and n2, with the same repository and
# password file, restores the site: the same page through n2.
t_restore_on_a_second_server() {
  local repository="sftp:root@${IP[n3]}:/srv/fleet-restic" s key out domains rc=0 t0=$SECONDS
  # n1 and n2 get a key of their own, authorized on n3 only, and n3's host
  # key from n3 itself.
  for s in n1 n2; do
    on "$s" sh -c 'mkdir -p /root/.ssh && ssh-keygen -q -t ed25519 -N "" -f /root/.ssh/id_ed25519' || return 1
    key=$(on "$s" cat /root/.ssh/id_ed25519.pub)
    oni n3 sh -c 'cat >>/root/.ssh/authorized_keys' <<<"$key"
    printf '%s %s\n' "${IP[n3]}" "$(on n3 cut -d' ' -f1,2 /etc/ssh/ssh_host_ed25519_key.pub)" |
      oni "$s" sh -c 'cat >>/root/.ssh/known_hosts'
    yaml_checked <<YAML | oni "$s" sh -c 'cat >>/etc/hostyard/hostyard.yaml'
backup:
  repository: $repository
YAML
    on "$s" hostyard generate --out /etc/systemd/system >/dev/null || return 1
    on "$s" systemctl daemon-reload
  done
  on n1 hostyard backup init >/dev/null || return 1
  # The password file moves from n1 to n2 as the operator would, never
  # printed.
  on n1 cat /etc/hostyard/restic-password |
    oni n2 sh -c 'umask 077 && cat >/etc/hostyard/restic-password'
  # By its unit (sandboxed, as the timer runs it), over sftp.
  on n1 systemctl start backup@site-n1.example.service || return 1
  expect "n1's snapshot, listed from n2" "$(on n2 hostyard backup ls site-n1.example | grep -c ' static ')" 1 || rc=1

  # n1 is lost: its site stopped, its data gone.
  deploy site.sh remove site-n1.example >/dev/null 2>&1 || return 1
  domains=$(on n1 hostyard names dirs | awk '$1 == "domains" { print $2 }')
  on n1 rm -rf "${domains:?}/site-n1.example"
  out=$(on n2 hostyard restore site-n1.example 2>&1) || {
    printf '%s\n' "$out" >&2
    return 1
  }
  expect "site-n1.example restored on n2" \
    "$(jump curl -s --max-time 5 -H "Host: site-n1.example" "http://${IP[n2]}/")" "hello from n1" || rc=1
  note "keys, backup, listing and restore over sftp: $((SECONDS - t0)) s"
  return "$rc"
}

t_quorum_holds_with_one_member_stopped() {
  on n3 systemctl stop etcd.service
  local rc=0
  expect "n1 answers with n3's member stopped" \
    "$(on n1 hostyard etcd check --timeout 10 | head -n 1)" "healthy: https://127.0.0.1:2379" || rc=1
  # A write through n2: a site started there registers.
  on n2 systemctl restart static@site-n2.example || rc=1
  expect "site-n2.example after a restart, n3 down" \
    "$(jump curl -s --max-time 5 -H 'Host: site-n2.example' "http://${IP[n2]}/")" "hello from n2" || rc=1
  on n3 systemctl start etcd.service
  return "$rc"
}

# Adding a server never takes another server's sites down: `server.sh add
# n2` (again) and a reload of every server's confd (`systemctl reload
# haproxy-confd`, what the add runs where a server's peers changed) while
# wrk holds keep-alive connections to every server's site. Before, the
# add's `systemctl kill -s HUP` also killed confd's `docker network
# inspect`, and the site stayed 503 until the next etcd event.
t_adding_a_server_keeps_every_site_served() {
  local s secs=120 rc=0 t0 out bad served
  for s in "${SERVERS[@]}"; do
    # wrk wants the port in the URL (without it, it runs nothing).
    docker exec "$JUMP" sh -c "wrk -t1 -c4 -d${secs}s --timeout 3s -H 'Host: site-$s.example' http://${IP[$s]}:80/ >/tmp/$RUN-wrk-$s 2>&1" &
  done
  t0=$SECONDS
  out=$(deploy server.sh add n2 2>&1) || {
    tail -n 20 <<<"$out" >&2
    rc=1
  }
  for s in "${SERVERS[@]}"; do
    on "$s" systemctl reload haproxy-confd.service || rc=1
  done
  note "add n2 and the reloads took $((SECONDS - t0)) s of the ${secs} s of load"
  [ $((SECONDS - t0)) -lt $((secs - 10)) ] || {
    note "the add outlasted the load: raise secs"
    rc=1
  }
  wait
  for s in "${SERVERS[@]}"; do
    # wrk counts answers other than 2xx/3xx and socket errors apart.
    bad=$(jump cat "/tmp/$RUN-wrk-$s" | awk '
      /Non-2xx or 3xx responses:/ { n += $NF }
      /Socket errors:/ { gsub(/[^0-9 ]/, ""); for (i = 1; i <= NF; i++) n += $i }
      END { print n + 0 }')
    served=$(jump cat "/tmp/$RUN-wrk-$s" | awk '/ requests in / { print $1 }')
    note "site-$s.example through $s: ${served:-no} requests in ${secs} s"
    # A load that never ran would count no failure: it must have run.
    expect "wrk ran against site-$s.example through $s" \
      "$(awk '{ print ($1 > 0) ? "yes" : "no" }' <<<"${served:-0}")" yes || {
      jump cat "/tmp/$RUN-wrk-$s" >&2
      rc=1
    }
    expect "failed requests to site-$s.example through $s" "$bad" 0 || rc=1
    expect "$s's confd re-read its config" \
      "$(on "$s" journalctl -u haproxy-confd --no-pager --since "-$((SECONDS - t0 + 30))s" | grep -c 'SIGHUP: re-read' | awk '{ print ($1 > 0) ? "yes" : "no" }')" yes || rc=1
    expect "$s's confd forgot no network" \
      "$(on "$s" journalctl -u haproxy-confd --no-pager --since "-$((SECONDS - t0 + 30))s" | grep -c "sites' network unknown" || true)" 0 || rc=1
  done
  return "$rc"
}

t_removed_server_is_refused() {
  # n3's files, kept aside to try its certificate after the removal.
  on n3 cp -a /etc/hostyard/etcd /root/old-etcd
  deploy server.sh remove n3 >"/tmp/$RUN-remove.log" 2>&1 || {
    tail -n 20 "/tmp/$RUN-remove.log" >&2
    return 1
  }
  expect "members after removing n3" "$(etcd_members | awk '{print $1}' | tr '\n' ' ')" "n1 n2 "
  yaml_checked <<YAML | oni n3 sh -c 'cat >/root/old.yaml'
etcd:
  endpoints: ["https://${IP[n1]}:2379"]
  ca_file: /root/old-etcd/ca.pem
  cert_file: /root/old-etcd/server.pem
  key_file: /root/old-etcd/server.key
YAML
  local out
  out=$(on n3 hostyard --config /root/old.yaml etcd check --timeout 3 2>&1 || true)
  expect "n3's old certificate" "$(grep -c -e 'user name' -e 'permission denied' -e 'authentication' <<<"$out")" 1
}

# A certificate near its end is renewed by docs/fleet.md's step: n2's is
# first replaced by one that lasts 10 days (CERT_DAYS; RENEW_DAYS=900 makes
# the add renew the 825-day one), then `deploy/server.sh add n2`, as the
# docs say, finds it within 30 days and rolls a new one out. Each time:
# the new certificate is what n2's etcd serves, the replaced user is gone
# from etcd and its certificate refused, n2's site stays served, and the
# members keep their quorum.
t_certificates_renew_before_they_end() {
  local rc=0 round old new out served keep=/root/renew-old t0
  for round in short renew; do
    t0=$SECONDS
    old=$(jump "${DEPLOY_ENV[@]}" /hostyard/src/deploy/ca.sh user n2)
    on n2 rm -rf "$keep"
    on n2 cp -a /etc/hostyard/etcd "$keep"
    if [ "$round" = short ]; then
      out=$(jump env CERT_DAYS=10 RENEW_DAYS=900 "${DEPLOY_ENV[@]:1}" /hostyard/src/deploy/server.sh add n2 2>&1) || rc=1
    else
      out=$(deploy server.sh add n2 2>&1) || rc=1
    fi
    [ "$rc" = 0 ] || { tail -n 30 <<<"$out" >&2; return 1; }
    new=$(jump "${DEPLOY_ENV[@]}" /hostyard/src/deploy/ca.sh user n2)
    note "$round: $old -> $new in $((SECONDS - t0)) s (the add, rollout and revoke); $(grep -o 'a new one, .*' <<<"$out" | head -n 1)"
    [ "$new" != "$old" ] || { note "$round: the certificate was not issued again"; return 1; }
    # What n2's etcd serves on its private address, as a peer sees it.
    served=$(on n1 sh -c "openssl s_client -connect ${IP[n2]}:2379 -CAfile /etc/hostyard/etcd/ca.pem </dev/null 2>/dev/null |
      openssl x509 -noout -subject -nameopt sep_multiline" | sed -n 's/^ *CN=//p')
    expect "$round: the certificate n2's etcd serves" "$served" "$new" || rc=1
    expect "$round: the replaced user in etcd" \
      "$(jump "${DEPLOY_ENV[@]}" bash -c '. /hostyard/src/deploy/lib/fleet.sh && tunnel n1 && etcd_admin users' 2>/dev/null | grep -cxF "$old" || true)" 0 || rc=1
    yaml_checked <<YAML | oni n2 sh -c 'cat >/root/renew-old.yaml'
etcd:
  endpoints: ["https://${IP[n1]}:2379"]
  ca_file: $keep/ca.pem
  cert_file: $keep/server.pem
  key_file: $keep/server.key
YAML
    out=$(on n2 hostyard --config /root/renew-old.yaml etcd check --timeout 3 2>&1 || true)
    expect "$round: n2's replaced certificate" "$(grep -c -e 'user name' -e 'permission denied' -e 'authentication' <<<"$out")" 1 || rc=1
    expect "$round: n2's etcd check with the new one" "$(on n2 hostyard etcd check --timeout 10 2>/dev/null | head -n 1)" "healthy: https://127.0.0.1:2379" || rc=1
    if [ "$round" = short ]; then
      expect "short: n2's etcd check warns and names the step" \
        "$(on n2 hostyard etcd check --timeout 10 2>&1 | grep -c 'WARNING: .*deploy/server.sh add n2' || true)" 1 || rc=1
      expect "short: n2's status warns" "$(on n2 hostyard status 2>&1 | grep -c 'WARNING: .*deploy/server.sh add n2' || true)" 1 || rc=1
    fi
    expect "$round: members" "$(etcd_members | awk '{print $1}' | tr '\n' ' ')" "n1 n2 n3 " || rc=1
    expect "$round: site-n2.example through n1" \
      "$(until_ok 30 says n1 site-n2.example 'hello from n2' >/dev/null && echo served)" served || rc=1
  done
  expect "n2's etcd check warns after the renewal" "$(on n2 hostyard etcd check --timeout 10 2>&1 | grep -c WARNING || true)" 0 || rc=1
  return "$rc"
}

# ---- scripts/bench.sh move ------------------------------------------------
# bench_moves RUNS: the move's gap against a floor measured in the same
# run. Each round, each site is first stopped and started on its server
# (`systemctl stop`, then `start`: the stop and the start every move
# contains, nothing copied; not `restart`, whose gap HAProxy's retries hide
# while the registration stays),
# then moved to the next server, both polled through the third server as
# the move check does; a WordPress move is prepared first (--prepare,
# outside the gap). Prints the medians and the ratio move / restart.
bench_moves() {
  local runs=$1 d=bm-static.example w=bm-wp.example i site from to through gap log=/tmp/$RUN-bench-poll
  local -A at=([$d]=n1 [$w]=n2) kind=([$d]=static [$w]=wordpress) restart=() moved=()
  move_sites_add "$d" "$w" bench || die "the sites to move could not be added (said above)"
  for ((i = 1; i <= runs; i++)); do
    for site in "$d" "$w"; do
      from=${at[$site]}
      case $from in n1) to=n2 through=n3 ;; n2) to=n3 through=n1 ;; *) to=n1 through=n2 ;; esac
      poll "$through" "$site" "$log" || die "polling $site through $through failed"
      on "$from" sh -c "systemctl stop ${kind[$site]}@$site && systemctl start ${kind[$site]}@$site" ||
        die "stopping and starting $site on $from failed"
      read -r gap _ < <(poll_stop "$log")
      restart[$site]+="$gap "
      local was=$gap
      if [ "$site" = "$w" ]; then
        deploy site.sh move "$site" "$to" --prepare >/dev/null 2>&1 || die "preparing $site's move to $to failed"
      fi
      poll "$through" "$site" "$log" || die "polling $site through $through failed"
      deploy site.sh move "$site" "$to" >/dev/null 2>&1 || die "moving $site to $to failed"
      read -r gap _ < <(poll_stop "$log")
      moved[$site]+="$gap "
      at[$site]=$to
      note "round $i: $site stopped and started on $from, then moved to $to; gaps through $through: $was / $gap s"
    done
  done
  local r m
  for site in "$d" "$w"; do
    r=$(median_of "${restart[$site]}")
    m=$(median_of "${moved[$site]}")
    note "$(printf '%-9s' "${kind[$site]}") gap, median of $runs: stop and start $r s, move $m s, move / (stop and start) $(awk -v m="$m" -v r="$r" 'BEGIN { printf "%.2f", (r > 0 ? m / r : 0) }')"
    note "          every move: ${moved[$site]}s; every stop and start: ${restart[$site]}s"
  done
}

# median_of "NUMBER...": their median (the mean of the middle two for an
# even count).
median_of() {
  tr -s ' ' '\n' <<<"$1" | grep . | sort -g | awk '{ v[NR] = $1 } END {
    if (NR % 2) printf "%.2f", v[(NR + 1) / 2]; else printf "%.2f", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

main() {
  need_root "boot the fleet's boxes"
  trap cleanup EXIT
  local t0=$SECONDS name
  make_fleet
  if [ -n "$BENCH_MOVES" ]; then
    t_servers_set_up_one_member_at_a_time || die "setting the fleet up failed"
    step "bench: $BENCH_MOVES rounds of stops and starts, and moves, a static site and a WordPress site with 100 MB of uploads"
    bench_moves "$BENCH_MOVES"
    step "bench: done in $((SECONDS - t0)) s"
    return
  fi
  for name in t_servers_set_up_one_member_at_a_time t_sites_on_their_servers \
    t_every_server_serves_every_site t_a_certificate_is_served_by_every_server \
    t_site_added_on_n1_is_served_through_n3 t_a_push_hook_through_another_server_publishes_on_the_owner \
    t_losing_a_server_and_a_partition t_site_containers_cannot_reach_etcd \
    t_a_site_container_cannot_forge_a_peers_proxy_header t_no_plaintext_etcd_off_loopback \
    t_move_under_load t_restore_on_a_second_server t_quorum_holds_with_one_member_stopped \
    t_adding_a_server_keeps_every_site_served t_certificates_renew_before_they_end \
    t_removed_server_is_refused; do
    # CHECKS: only these (the set-up checks run anyway: the others need them).
    case $name in
      t_servers_set_up_one_member_at_a_time | t_sites_on_their_servers) ;;
      *) [ -z "$CHECKS" ] || [[ " $CHECKS " == *" $name "* ]] || continue ;;
    esac
    step "$name"
    if "$name"; then PASSED+=("$name"); else FAILED+=("$name"); fi
  done
  step "fleet: ${#PASSED[@]} passed, ${#FAILED[@]} failed, $((SECONDS - t0)) s in all"
  local f
  for f in "${FAILED[@]}"; do note "FAILED $f"; done
  [ ${#FAILED[@]} -eq 0 ]
}

main "$@"
