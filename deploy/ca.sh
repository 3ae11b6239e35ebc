#!/usr/bin/env bash
# The fleet CA on the jump box: the one root every etcd member and client
# of the fleet trusts, and the certificates it signs (openssl from Debian).
#
# usage: deploy/ca.sh init              make the CA and the jump box's root identity, once;
#                                       a root identity near its end is issued again
#        deploy/ca.sh issue NAME IP [ROLE]  a server's certificate (etcd peer, server and
#                                       client; ROLE member or client, default client),
#                                       issued again when it nears its end
#        deploy/ca.sh user NAME [--old] the etcd user of NAME's current certificate; --old:
#                                       of the one it replaced (empty when none)
#        deploy/ca.sh due               the servers whose certificates end within RENEW_DAYS,
#                                       `NAME END` a line: run deploy/server.sh add NAME for each
#        deploy/ca.sh forget-old NAME   the replaced certificate's user is revoked: drop it
#        deploy/ca.sh drop NAME         delete NAME's certificate and key (after `remove`)
# env:   FLEET (default /etc/hostyard-fleet): CA files go to $FLEET/ca/.
#        RENEW_DAYS (default 30): a certificate that ends within this many
#          days is issued again (its key too);
#        CERT_DAYS (default 825): how long a new server or root certificate lasts.
#
# Keys are EC P-256, written 0600 under umask 077 (never readable in
# between). A server's certificate names it twice: its SANs (its private
# address and 127.0.0.1, so members and local clients verify it) and its
# common name, which etcd's --client-cert-auth takes as the etcd user. That
# user carries a random suffix, so a server removed and later added again
# under the same name gets a new user: the old certificate, revoked with
# the old user, stays refused.
#
# Renewal: `issue` (and so `deploy/server.sh add NAME`, run again) makes a
# new key and certificate, with a new user, for a server whose certificate
# ends within RENEW_DAYS, whose address changed or whose role did; the
# replaced certificate stays as servers/NAME.old.pem until server.sh has
# rolled the new one out and revoked its user (`forget-old`). A member's
# certificate also names it an etcd member (the DNS name MEMBER_NAME),
# which members require of their peers; a client's never does. The CA
# itself (10 years) is not renewed here: a new CA is a change of every
# server's trust, done by hand (docs/fleet.md); every run of this
# script warns from CA_WARN_DAYS before its end.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=scripts/lib/log.sh
. "$here/../scripts/lib/log.sh"

FLEET=${FLEET:-/etc/hostyard-fleet}
CA=$FLEET/ca
DAYS_CA=3650
DAYS_CERT=${CERT_DAYS:-825}
RENEW_DAYS=${RENEW_DAYS:-30}
CA_WARN_DAYS=${CA_WARN_DAYS:-90}
# The DNS name only members' certificates carry: members' etcd accepts a
# peer only with it (ETCD_PEER_CERT_ALLOWED_HOSTNAME, written by `hostyard
# fleet member-env`: the same name there). Its dot keeps it from being a
# server name (letters, digits and - only).
MEMBER_NAME=member.hostyard-fleet
case $DAYS_CERT$RENEW_DAYS$CA_WARN_DAYS in
  *[!0-9]*) die "CERT_DAYS, RENEW_DAYS and CA_WARN_DAYS are whole numbers of days" ;;
esac

command -v openssl >/dev/null || die "openssl is missing; install it: apt-get install -y openssl"

# new_key FILE: an EC P-256 key, created unreadable to anyone but its owner.
new_key() {
  (umask 077 && openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null)
}

# ends_within PEM DAYS: PEM's certificate ends within DAYS days (or has).
ends_within() { ! openssl x509 -in "$1" -noout -checkend $(($2 * 86400)) >/dev/null; }

# end_of PEM: the end of PEM's validity, as openssl prints it.
end_of() { openssl x509 -in "$1" -noout -enddate | cut -d= -f2; }

# ca_warning: a warning when the CA nears its end (what to do is in the
# docs/fleet.md: a new CA needs every server's trust changed, not a re-issue).
ca_warning() {
  [ -s "$CA/ca.pem" ] || return 0
  if ends_within "$CA/ca.pem" "$CA_WARN_DAYS"; then
    printf '%s: WARNING: the fleet CA %s ends %s (within %s days): every certificate it signed is refused from then on; a new CA is a planned change of the whole fleet (docs/fleet.md, "Renewing the fleet certificates")\n' \
      "${0##*/}" "$CA/ca.pem" "$(end_of "$CA/ca.pem")" "$CA_WARN_DAYS" >&2
  fi
}

# sign CN EXTFILE OUT KEY: a certificate for KEY signed by the CA.
sign() {
  local cn=$1 ext=$2 out=$3 key=$4 csr
  csr=$(mktemp)
  openssl req -new -key "$key" -subj "/CN=$cn" -out "$csr"
  openssl x509 -req -in "$csr" -CA "$CA/ca.pem" -CAkey "$CA/ca.key" -CAcreateserial \
    -days "$DAYS_CERT" -sha256 -extfile "$ext" -out "$out.tmp" 2>/dev/null
  rm -f "$csr" "$ext"
  mv "$out.tmp" "$out"
}

init() {
  mkdir -p "$CA/servers"
  chmod 700 "$CA"
  if [ -s "$CA/ca.pem" ]; then
    note "CA: $CA/ca.pem exists"
  else
    step "CA: making $CA/ca.pem"
    new_key "$CA/ca.key"
    openssl req -x509 -new -key "$CA/ca.key" -subj "/CN=hostyard fleet CA" -days "$DAYS_CA" \
      -sha256 -addext "basicConstraints=critical,CA:true" \
      -addext "keyUsage=critical,keyCertSign,cRLSign" -out "$CA/ca.pem.tmp"
    mv "$CA/ca.pem.tmp" "$CA/ca.pem"
  fi
  ca_warning
  if [ -s "$CA/root.pem" ] && ! ends_within "$CA/root.pem" "$RENEW_DAYS"; then
    note "root identity: $CA/root.pem exists"
  else
    if [ -s "$CA/root.pem" ]; then
      # The user stays root: nothing to grant or revoke in etcd.
      step "root identity: a new $CA/root.pem, the old one ends $(end_of "$CA/root.pem")"
    else
      step "root identity: making $CA/root.pem (etcd user root, for the jump box only)"
    fi
    new_key "$CA/root.key.new"
    local ext
    ext=$(mktemp)
    printf '%s\n' "basicConstraints=CA:false" "keyUsage=critical,digitalSignature" \
      "extendedKeyUsage=clientAuth" >"$ext"
    sign root "$ext" "$CA/root.pem.new" "$CA/root.key.new"
    mv "$CA/root.key.new" "$CA/root.key"
    mv "$CA/root.pem.new" "$CA/root.pem"
  fi
}

# why_new PEM IP ROLE: why the certificate PEM must be issued again for a
# server at IP with ROLE; empty when it is fine.
why_new() {
  local pem=$1 ip=$2 role=$3 san
  san=$(openssl x509 -in "$pem" -noout -ext subjectAltName)
  if ! grep -q "IP Address:$ip\(,\|$\)" <<<"$san"; then
    echo "its address is not $ip"
  elif [ "$role" = member ] && ! grep -qF "DNS:$MEMBER_NAME" <<<"$san"; then
    echo "it does not name an etcd member, which members now require of their peers"
  elif [ "$role" = client ] && grep -qF "DNS:$MEMBER_NAME" <<<"$san"; then
    echo "it names an etcd member and the server is a client"
  elif ends_within "$pem" "$RENEW_DAYS"; then
    echo "it ends $(end_of "$pem"), within $RENEW_DAYS days"
  fi
}

issue() {
  local name=$1 ip=$2 role=$3 dir=$CA/servers ext user why san
  [ -s "$CA/ca.pem" ] || die "no fleet CA in $CA; run: deploy/ca.sh init"
  ca_warning
  if [ -s "$dir/$name.pem" ]; then
    why=$(why_new "$dir/$name.pem" "$ip" "$role")
    if [ -z "$why" ]; then
      note "certificate of $name: $dir/$name.pem exists, ends $(end_of "$dir/$name.pem")"
      return
    fi
    step "certificate of $name ($ip, $role): a new one, $why"
    # The replaced one's user is revoked once the new one is in use; a
    # replaced one that was never rolled out keeps the deployed one here.
    if [ ! -s "$dir/$name.old.pem" ]; then
      cp "$dir/$name.pem" "$dir/$name.old.pem"
    fi
  else
    step "certificate of $name ($ip, $role)"
  fi
  user="hostyard-$name-$(openssl rand -hex 4)"
  san="IP:$ip,IP:127.0.0.1,DNS:$name,DNS:localhost"
  [ "$role" != member ] || san+=",DNS:$MEMBER_NAME"
  new_key "$dir/$name.key.new"
  ext=$(mktemp)
  printf '%s\n' "basicConstraints=CA:false" "keyUsage=critical,digitalSignature" \
    "extendedKeyUsage=serverAuth,clientAuth" "subjectAltName=$san" >"$ext"
  sign "$user" "$ext" "$dir/$name.pem.new" "$dir/$name.key.new"
  mv "$dir/$name.key.new" "$dir/$name.key"
  mv "$dir/$name.pem.new" "$dir/$name.pem"
  note "ends $(end_of "$dir/$name.pem"); etcd user $user"
}

# cn_of PEM: the common name of PEM's certificate.
cn_of() { openssl x509 -in "$1" -noout -subject -nameopt sep_multiline | sed -n 's/^ *CN=//p'; }

user_of() {
  local pem=$CA/servers/$1.pem
  [ -s "$pem" ] || die "no certificate of $1 in $CA/servers; run: deploy/ca.sh issue $1 IP"
  if [ "${2:-}" = --old ]; then
    [ ! -s "$CA/servers/$1.old.pem" ] || cn_of "$CA/servers/$1.old.pem"
    return 0
  fi
  cn_of "$pem"
}

# due: NAME END for each server certificate within RENEW_DAYS of its end.
due() {
  local pem name
  ca_warning
  for pem in "$CA"/servers/*.pem; do
    [ -f "$pem" ] || continue
    name=${pem##*/}
    name=${name%.pem}
    case $name in *.old) continue ;; esac
    if ends_within "$pem" "$RENEW_DAYS"; then
      printf '%s %s\n' "$name" "$(end_of "$pem")"
    fi
  done
}

case ${1:-} in
  init) init ;;
  due) [ $# = 1 ] || die "usage: deploy/ca.sh due"; due ;;
  issue)
    { [ $# = 3 ] || [ $# = 4 ]; } || die "usage: deploy/ca.sh issue NAME IP [member|client]"
    case ${4:-client} in member | client) ;; *) die "issue: role ${4} is neither member nor client" ;; esac
    issue "$2" "$3" "${4:-client}"
    ;;
  user)
    { [ $# = 2 ] || { [ $# = 3 ] && [ "$3" = --old ]; }; } || die "usage: deploy/ca.sh user NAME [--old]"
    user_of "$2" "${3:-}"
    ;;
  forget-old) [ $# = 2 ] || die "usage: deploy/ca.sh forget-old NAME"; rm -f "$CA/servers/$2.old.pem" ;;
  drop) [ $# = 2 ] || die "usage: deploy/ca.sh drop NAME"; rm -f "$CA/servers/$2.pem" "$CA/servers/$2.key" "$CA/servers/$2.old.pem" ;;
  *) die "usage: deploy/ca.sh init | issue NAME IP [ROLE] | user NAME [--old] | due | forget-old NAME | drop NAME" ;;
esac
