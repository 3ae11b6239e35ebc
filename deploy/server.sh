#!/usr/bin/env bash
# Sets up or removes a server of the fleet, from the jump box.
#
# usage: deploy/server.sh add NAME     set it up (again): certificate, files, etcd member, setup.sh
#        deploy/server.sh remove NAME  its etcd member and user go, its certificate is dropped
#        deploy/server.sh peers        every set-up server's fleet.peers from the inventory again
# env: see deploy/lib/fleet.sh (FLEET, BINARIES, IMAGES, SSH_KEY)
#
# add, in order (each step says when it had nothing to do):
#   1. the server's certificate from the fleet CA (deploy/ca.sh issue): a
#      new one, with a new etcd user, when it ends within RENEW_DAYS (30);
#      for a server set up already, the new user is granted now, before
#      the server uses it;
#   2. this checkout's scripts/ and dockerfiles/, the binaries and image
#      tarballs to /root/hostyard-deploy, only what differs;
#   3. /etc/hostyard/etcd: the CA, its certificate, its key (0600);
#      /etc/hostyard/hostyard.yaml.d/fleet.yaml from `hostyard fleet
#      node-config` (the fleet's settings only: the operator's
#      /etc/hostyard/hostyard.yaml is never written);
#   4. a member that is not one yet: joins the running cluster as a learner
#      (`member-add`; the first member makes a new cluster) and gets
#      member.env from `hostyard fleet member-env`;
#   5. scripts/setup.sh on the server (it runs the member's etcd); SIGHUP
#      to its confd if it ran already and step 3 copied anything;
#   6. etcd's authentication on, the server's user and role (its prefix
#      only), the learner promoted once it has caught up.
#   7. the other set-up servers' node configs again (fleet.peers), SIGHUP
#      to their confd where that changed.
# A new certificate (1) is rolled out by 3 and 5 (setup.sh restarts the
# member's etcd with it: one member at a time, so the others keep the
# quorum) and then by restarting every other etcd client on the server
# (confd with its certificate and ACME threads, each site's discovery);
# once `hostyard etcd check` answers there with it, the replaced
# certificate's user is revoked (6): that certificate is refused from then on.
# Members are added one at a time: run add for one, then the next.
set -euo pipefail

# shellcheck source=deploy/lib/fleet.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib/fleet.sh"

PROMOTE_SECS=${PROMOTE_SECS:-60}

add() {
  local name=$1 n user
  server "$name"
  local ssh=$S_SSH private=$S_PRIVATE role=$S_ROLE
  step "$name ($ssh, $private, $role)"
  "$deploy_dir/ca.sh" init
  "$deploy_dir/ca.sh" issue "$name" "$private" "$role"
  user=$("$deploy_dir/ca.sh" user "$name")
  # The user of the certificate this one replaced (empty: none), revoked
  # once the new one is in use.
  local old
  old=$("$deploy_dir/ca.sh" user "$name" --old)
  if [ -n "$old" ] && [ -f "$FLEET/state/$name" ]; then
    grant_first "$name" "$user"
  fi

  step "$name: files in $REMOTE"
  local src
  src=$(mktemp -d)
  tar -C "$repo" -c scripts dockerfiles | tar -C "$src" -x
  n=$(on "$ssh" "mkdir -p $REMOTE/src" && tar -C "$src" -c . | on "$ssh" "cd $REMOTE/src && tar --no-same-owner -x && echo ok")
  rm -rf "$src"
  [ "$n" = ok ] || die "copying the checkout to $name failed"
  local bins=() images=()
  [ -n "$BINARIES" ] || die "BINARIES is not set: the directory of the built binaries"
  mapfile -t bins < <(HOSTYARD_CONFIG=/dev/null "$HOSTYARD" names binaries)
  note "binaries: $(push "$ssh" "$BINARIES" "$REMOTE/bin" 0755 "${bins[@]}") copied"
  if [ -n "$IMAGES" ]; then
    mapfile -t images < <(cd "$IMAGES" && ls -- *.tar)
    note "images: $(push "$ssh" "$IMAGES" "$REMOTE/images" 0644 "${images[@]}") copied"
  fi

  step "$name: TLS files and node config"
  local tls
  tls=$(umask 077 && mktemp -d)
  cp "$FLEET/ca/ca.pem" "$tls/ca.pem"
  cp "$FLEET/ca/servers/$name.pem" "$tls/server.pem"
  cp "$FLEET/ca/servers/$name.key" "$tls/server.key"
  n=$(($(push "$ssh" "$tls" /etc/hostyard/etcd 0644 ca.pem server.pem) +
    $(push "$ssh" "$tls" /etc/hostyard/etcd 0600 server.key) +
    $(fleet_config "$name" "$ssh")))
  rm -rf "$tls"
  note "$n files copied"

  local first=""
  if [ "$role" = member ]; then
    if on "$ssh" test -s /etc/hostyard/etcd/member.env; then
      note "etcd: $name has its member settings already"
    else
      first=$(running_member "$name")
      local cluster=""
      if [ -n "$first" ]; then
        step "$name: joining the etcd cluster through $first"
        tunnel "$first"
        cluster=$(etcd_admin member-add "$name")
        etcd_admin grant "$user" --prefix "$PREFIX" >/dev/null
        untunnel
      else
        step "$name: the first member, a new etcd cluster"
      fi
      fleet member-env "$name" --cluster "$cluster" |
        on "$ssh" "umask 077 && cat >/etc/hostyard/etcd/member.env.tmp && mv /etc/hostyard/etcd/member.env.tmp /etc/hostyard/etcd/member.env"
      note "wrote /etc/hostyard/etcd/member.env"
    fi
  fi

  step "$name: setup.sh"
  on "$ssh" "$REMOTE/src/scripts/setup.sh" --binaries "$REMOTE/bin" ${IMAGES:+--images "$REMOTE/images"}
  if [ -n "$old" ]; then
    # A new certificate: every etcd client restarts with it (confd too,
    # which then presents it on the peer frontend).
    roll_out "$name" "$ssh"
  elif [ "$n" != 0 ] && on "$ssh" systemctl is-active -q haproxy-confd.service; then
    # A confd already running reads a new node config (or a certificate
    # copied again) on SIGHUP only: the peer frontend's files and peers.
    on "$ssh" systemctl reload haproxy-confd.service
    note "$name: new certificate or node config, confd told (systemctl reload)"
  fi
  [ "$role" != member ] || peers_members_only "$name" "$ssh"

  step "$name: its etcd user"
  # Through another member: a member just added is a learner, which
  # answers no administration until promoted. The first has only itself.
  local via
  via=$(running_member "$name")
  if [ -z "$via" ]; then
    [ "$role" = member ] || die "no running member to reach etcd through; add a member first"
    via=$name
  fi
  tunnel "$via"
  etcd_admin enable-auth | sed 's/^/    /' >&2
  etcd_admin grant "$user" --prefix "$PREFIX" | sed 's/^/    /' >&2
  if [ -n "$old" ] && [ "$old" != "$user" ]; then
    etcd_admin revoke "$old" | sed 's/^/    /' >&2
    "$deploy_dir/ca.sh" forget-old "$name"
    note "the replaced certificate's user $old is revoked: that certificate is refused from now on"
  fi
  if [ "$role" = member ]; then
    wait_for "$PROMOTE_SECS" "$name to catch up and be promoted" etcd_admin member-promote "$name" ||
      die "$name stays a learner: journalctl -u etcd on $name"
    note "$name is a voting member"
  fi
  untunnel
  mkdir -p "$FLEET/state"
  touch "$FLEET/state/$name"
  peers "$name"
  step "done: $name is set up"
}

# grant_first NAME USER: USER (of NAME's new certificate) granted through
# any running member before NAME has the certificate, so that none of
# NAME's etcd clients is refused while it changes over.
grant_first() {
  local via
  via=$(running_member)
  [ -n "$via" ] || die "no running member to grant $2 through; start one (systemctl start etcd on a member)"
  step "$1: a new certificate, its user $2 first"
  tunnel "$via"
  etcd_admin grant "$2" --prefix "$PREFIX" | sed 's/^/    /' >&2
  untunnel
}

# peers_members_only NAME SSH: a member set up before members required
# their peers to be members gets that rule (member-env's
# ETCD_PEER_CERT_ALLOWED_HOSTNAME; member.env is written only at the join)
# once every set-up member's certificate names a member (its own installed
# by setup.sh just before): before that, it
# would refuse the others. Its etcd restarts with it (one member per add:
# the others keep the quorum).
peers_members_only() {
  local name=$1 ssh=$2 line m _ssh _private role
  line=$(fleet member-env "$name" | grep '^ETCD_PEER_CERT_ALLOWED_HOSTNAME=')
  if on "$ssh" grep -qxF "$line" /etc/hostyard/etcd/member.env; then
    return 0
  fi
  while read -r m _ssh _private role; do
    [ "$role" = member ] || continue
    [ "$m" = "$name" ] || [ -f "$FLEET/state/$m" ] || continue
    if ! openssl x509 -in "$FLEET/ca/servers/$m.pem" -noout -ext subjectAltName 2>/dev/null | grep -qF "DNS:${line#*=}"; then
      note "etcd: $name takes peers of any fleet certificate until $m has a member's certificate: run deploy/server.sh add $m, then add $name again"
      return 0
    fi
  done < <(fleet servers)
  on "$ssh" "printf '%s\n' '$line' >>/etc/hostyard/etcd/member.env && systemctl restart etcd.service"
  note "etcd: $name takes peers with a member's certificate only (${line%%=*}), restarted"
}

# ROLLOUT_SECS: how long the server's etcd may take to answer with a new
# certificate (a member's etcd restarted with it syncs with the others).
ROLLOUT_SECS=${ROLLOUT_SECS:-60}

# roll_out NAME SSH: NAME's etcd clients use its new certificate (installed
# by then; setup.sh restarted a member's etcd with it): confd, whose
# routing watch and certificate and ACME threads hold one connection
# each, and every site's discovery, each restarted (a discovery restart
# unroutes its site from its stop to its first check, a second or two;
# HAProxy keeps serving throughout). Then NAME's etcd must answer with it.
roll_out() {
  local name=$1 ssh=$2 units
  step "$name: its etcd clients to the new certificate"
  on "$ssh" systemctl try-restart haproxy-confd.service
  note "restarted haproxy-confd.service"
  units=$(on "$ssh" "systemctl list-units --state=active --plain --no-legend '*-discovery@*.service' | awk '{print \$1}'")
  if [ -n "$units" ]; then
    # --no-block: a discovery's start lasts until its site's container
    # answers, which may be never; its stop (the old certificate's last
    # use: it deletes the registration) is what must end before the revoke.
    # shellcheck disable=SC2086 # one unit name a word
    on "$ssh" systemctl restart --no-block $units
    wait_for 30 "$name's discovery units to stop with the old certificate" \
      on "$ssh" "! systemctl list-units --state=deactivating --plain --no-legend '*-discovery@*.service' | grep -q ."
  fi
  note "restarted $(wc -w <<<"$units") discovery units"
  wait_for "$ROLLOUT_SECS" "$name's etcd to answer with the new certificate" on "$ssh" hostyard etcd check --timeout 5 ||
    die "$name's etcd does not answer with its new certificate: hostyard etcd check on $name; the old one still works until this add passes"
  note "$name's etcd answers with the new certificate"
}

# FLEET_DROP_IN: the drop-in of the node config that deploy/ owns; the
# server's hostyard.yaml is the operator's.
FLEET_DROP_IN=/etc/hostyard/hostyard.yaml.d
# An earlier deploy/ wrote its settings into hostyard.yaml itself, with this
# first line; such a file held nothing of the operator's.
OLD_HEADER="# Written by deploy/ from the fleet inventory; edit the inventory, not this file."

# fleet_config NAME SSH: NAME's fleet settings from the inventory to its
# drop-in; prints how many files changed (0 or 1). A hostyard.yaml that an
# earlier deploy/ wrote is emptied, or its keys would be set twice.
fleet_config() {
  local name=$1 ssh=$2 tmp n first
  tmp=$(mktemp -d)
  fleet node-config "$name" >"$tmp/fleet.yaml"
  n=$(push "$ssh" "$tmp" "$FLEET_DROP_IN" 0644 fleet.yaml)
  first=$(on "$ssh" "head -n 1 /etc/hostyard/hostyard.yaml 2>/dev/null || true")
  if [ "$first" = "$OLD_HEADER" ]; then
    printf '%s\n' "# hostyard node config: this server's own settings (every field has a" \
      "# default). The fleet's are in $FLEET_DROP_IN/fleet.yaml, written by deploy/." \
      '# docs/reference/config.md lists every field.' >"$tmp/hostyard.yaml"
    push "$ssh" "$tmp" /etc/hostyard 0644 hostyard.yaml >/dev/null
    note "$name: the fleet's settings moved from hostyard.yaml to $FLEET_DROP_IN/fleet.yaml"
    n=1
  fi
  rm -rf "$tmp"
  echo "$n"
}

# peers [EXCEPT]: every set-up server but EXCEPT gets its node config from
# the inventory again, for its fleet.peers (whom it forwards to and takes
# forwarded requests from); where that changed, confd re-reads it (SIGHUP:
# one HAProxy reload for the peer frontend, routing unchanged).
peers() {
  local other f n tmp
  for f in "$FLEET"/state/*; do
    [ -f "$f" ] || continue
    other=${f##*/}
    [ "$other" != "${1:-}" ] || continue
    server "$other"
    n=$(fleet_config "$other" "$S_SSH")
    if [ "$n" = 0 ]; then
      note "$other: its fleet peers are up to date"
    else
      on "$S_SSH" systemctl reload haproxy-confd.service
      note "$other: new fleet peers, confd told (systemctl reload: SIGHUP to confd alone)"
    fi
  done
}

remove() {
  local name=$1 user via
  server "$name"
  local ssh=$S_SSH role=$S_ROLE
  via=$(running_member "$name")
  [ -n "$via" ] || die "no other running member: the last member cannot be removed this way"
  step "removing $name through $via's etcd"
  tunnel "$via"
  if [ "$role" = member ]; then
    # etcd refuses to remove a member while any member has been connected
    # for less than a few seconds ("unhealthy cluster"): retried, bounded.
    wait_for "$PROMOTE_SECS" "etcd to remove $name" etcd_admin member-remove "$name" ||
      die "etcd did not remove $name: $(etcd_admin member-remove "$name" 2>&1)"
    note "$name is no member"
  fi
  if [ -f "$FLEET/ca/servers/$name.pem" ]; then
    user=$("$deploy_dir/ca.sh" user "$name")
    etcd_admin revoke "$user" | sed 's/^/    /' >&2
  fi
  untunnel
  # The server may be gone already: stopping its services is best effort.
  if on "$ssh" true 2>/dev/null; then
    on "$ssh" "systemctl disable --now -q etcd.service hostyard.target 2>/dev/null; rm -rf /etc/hostyard/etcd /var/lib/etcd/hostyard /var/lib/etcd/hostyard-tls" ||
      note "could not stop $name's services"
    note "stopped etcd and hostyard.target on $name, removed its etcd data and credentials"
  fi
  "$deploy_dir/ca.sh" drop "$name"
  rm -f "$FLEET/state/$name"
  # Its address stays among the others' peers while the inventory lists
  # it (remove needs it there to find the server).
  note "now remove $name from $INVENTORY and run deploy/server.sh peers: the others stop taking forwarded requests from its address"
  step "done: $name is removed (its certificate is refused from now on)"
}

case ${1:-} in
  add) [ $# = 2 ] || die "usage: deploy/server.sh add NAME"; add "$2" ;;
  remove) [ $# = 2 ] || die "usage: deploy/server.sh remove NAME"; remove "$2" ;;
  peers) [ $# = 1 ] || die "usage: deploy/server.sh peers"; peers ;;
  *) die "usage: deploy/server.sh add NAME | remove NAME | peers" ;;
esac
