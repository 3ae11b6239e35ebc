#!/usr/bin/env bash
# The fleet CA on the jump box: the one root every etcd member and client
# of the fleet trusts, and the certificates it signs (openssl from Debian).
#
# usage: deploy/ca.sh init              make the CA and the jump box's root identity, once
#        deploy/ca.sh issue NAME IP     a server's certificate (etcd peer, server and client)
#        deploy/ca.sh user NAME         the etcd user of NAME's current certificate
#        deploy/ca.sh drop NAME         delete NAME's certificate and key (after `remove`)
# env:   FLEET (default /etc/hostyard-fleet): CA files go to $FLEET/ca/.
#
# Keys are EC P-256, written 0600 under umask 077 (never readable in
# between). A server's certificate names it twice: its SANs (its private
# address and 127.0.0.1, so members and local clients verify it) and its
# common name, which etcd's --client-cert-auth takes as the etcd user. That
# user carries a random suffix, so a server removed and later added again
# under the same name gets a new user: the old certificate, revoked with
# the old user, stays refused.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=scripts/lib/log.sh
. "$here/../scripts/lib/log.sh"

FLEET=${FLEET:-/etc/hostyard-fleet}
CA=$FLEET/ca
DAYS_CA=3650
DAYS_CERT=825

command -v openssl >/dev/null || die "openssl is missing; install it: apt-get install -y openssl"

# new_key FILE: an EC P-256 key, created unreadable to anyone but its owner.
new_key() {
  (umask 077 && openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null)
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
  if [ -s "$CA/root.pem" ]; then
    note "root identity: $CA/root.pem exists"
  else
    step "root identity: making $CA/root.pem (etcd user root, for the jump box only)"
    new_key "$CA/root.key"
    local ext
    ext=$(mktemp)
    printf '%s\n' "basicConstraints=CA:false" "keyUsage=critical,digitalSignature" \
      "extendedKeyUsage=clientAuth" >"$ext"
    sign root "$ext" "$CA/root.pem" "$CA/root.key"
  fi
}

issue() {
  local name=$1 ip=$2 dir=$CA/servers ext user
  [ -s "$CA/ca.pem" ] || die "no fleet CA in $CA; run: deploy/ca.sh init"
  if [ -s "$dir/$name.pem" ] && openssl x509 -in "$dir/$name.pem" -noout -ext subjectAltName |
    grep -q "IP Address:$ip\(,\|$\)"; then
    note "certificate of $name: $dir/$name.pem exists"
    return
  fi
  step "certificate of $name ($ip)"
  user="hostyard-$name-$(openssl rand -hex 4)"
  new_key "$dir/$name.key"
  ext=$(mktemp)
  printf '%s\n' "basicConstraints=CA:false" "keyUsage=critical,digitalSignature" \
    "extendedKeyUsage=serverAuth,clientAuth" \
    "subjectAltName=IP:$ip,IP:127.0.0.1,DNS:$name,DNS:localhost" >"$ext"
  sign "$user" "$ext" "$dir/$name.pem" "$dir/$name.key"
}

user_of() {
  local pem=$CA/servers/$1.pem
  [ -s "$pem" ] || die "no certificate of $1 in $CA/servers; run: deploy/ca.sh issue $1 IP"
  openssl x509 -in "$pem" -noout -subject -nameopt sep_multiline | sed -n 's/^ *CN=//p'
}

case ${1:-} in
  init) init ;;
  issue) [ $# = 3 ] || die "usage: deploy/ca.sh issue NAME IP"; issue "$2" "$3" ;;
  user) [ $# = 2 ] || die "usage: deploy/ca.sh user NAME"; user_of "$2" ;;
  drop) [ $# = 2 ] || die "usage: deploy/ca.sh drop NAME"; rm -f "$CA/servers/$2.pem" "$CA/servers/$2.key" ;;
  *) die "usage: deploy/ca.sh init | issue NAME IP | user NAME | drop NAME" ;;
esac
