#!/bin/sh
# Entrypoint of hostyard/postfix: runs postfix (in the foreground) and
# opendkim beside it, with the config dir given as the one argument. On
# SIGHUP (postfix.service's reload, after `hostyard mail` re-rendered the
# config) it makes missing DKIM keys, has opendkim re-read its config and
# tables (SIGUSR1: its socket stays, so no mail is refused meanwhile) and
# reloads postfix.
set -eu
config_dir=${1:?usage: hostyard-postfix CONFIG_DIR}
[ -f "$config_dir/main.cf" ] || {
  echo "hostyard-postfix: $config_dir/main.cf is missing: run hostyard mail" >&2
  exit 1
}
spool=/var/spool/postfix
# /var/lib/postfix is a fresh tmpfs owned by root; postfix keeps its lock
# and caches there and wants to own it. opendkim's socket is there too,
# reachable by postfix (in opendkim's group) only.
chown postfix:postfix /var/lib/postfix
install -d -o opendkim -g opendkim -m 750 /var/lib/postfix/opendkim

# prepare_sites: for each site that sends mail (dkim_keys: domain selector
# dir), its DKIM key when missing (2048-bit RSA, 0600, opendkim's), its
# socket's directory, postfix's (docker makes it as root when the site
# starts first), its capped service's socket directory (hostyard-send's
# group: the pipe's user reaches it, the sites never see it), and the
# directories of its services' lock files. public/ may be passed through
# by others (711, not listed): pipe refuses postdrop as the pipe user's
# group, and the sockets that matter are in directories of their own.
prepare_sites() {
  [ -d "$spool/public" ] || install -d -o postfix -g postdrop -m 711 "$spool/public"
  chmod 711 "$spool/public"
  install -d -o postfix -g root -m 755 "$spool/public/sites"
  install -d -o postfix -g hostyard-send -m 750 "$spool/public/capped"
  [ -f "$config_dir/dkim_keys" ] || return 0
  while read -r domain selector dir; do
    [ -n "$domain" ] || continue
    install -d -o postfix -g root -m 755 "$spool/public/sites/$domain"
    # Each service process locks pid/unix.<service name>: its dir too.
    install -d -o postfix -g hostyard-send -m 750 "$spool/public/capped/$domain"
    install -d -m 755 "$spool/pid/unix.sites/$domain" "$spool/pid/unix.capped/$domain"
    if [ ! -f "$dir/$selector.private" ]; then
      mkdir -p "$dir"
      if opendkim-genkey -b 2048 -h sha256 -d "$domain" -s "$selector" -D "$dir"; then
        echo "hostyard-postfix: made the DKIM key $selector for $domain" >&2
      else
        echo "hostyard-postfix: warning: could not make the DKIM key $selector for $domain" >&2
        continue
      fi
    fi
    chown opendkim:opendkim "$dir/$selector.private"
    chmod 600 "$dir/$selector.private"
  done <"$config_dir/dkim_keys"
}

opendkim_pid=
socket=/var/lib/postfix/opendkim/opendkim.sock
# start_opendkim: opendkim, and a bounded wait (10 s) for its socket: postfix
# answers a site's mail 451 while the milter is not there.
start_opendkim() {
  rm -f "$socket"
  opendkim -f -x "$config_dir/opendkim.conf" &
  opendkim_pid=$!
  i=0
  while [ ! -S "$socket" ] && [ $i -lt 100 ] && kill -0 "$opendkim_pid" 2>/dev/null; do
    sleep 0.1
    i=$((i + 1))
  done
  [ -S "$socket" ] || echo "hostyard-postfix: warning: opendkim's socket is not there; the sites' mail is answered 451 until it is" >&2
}
stop_opendkim() {
  if [ -n "$opendkim_pid" ]; then
    kill "$opendkim_pid" 2>/dev/null || true
    wait "$opendkim_pid" 2>/dev/null || true
  fi
}

reload() {
  prepare_sites || true
  # A new site's key and table lines are read at opendkim's next
  # connection after SIGUSR1; an opendkim that died is started again.
  if [ -n "$opendkim_pid" ] && kill -USR1 "$opendkim_pid" 2>/dev/null; then
    :
  else
    start_opendkim
  fi
  /usr/sbin/postfix -c "$config_dir" reload || true
}

stop() {
  /usr/sbin/postfix -c "$config_dir" stop || true
  stop_opendkim
}

prepare_sites
start_opendkim
trap reload HUP
trap stop TERM INT
/usr/sbin/postfix -c "$config_dir" start-fg &
master=$!
# wait returns early for every trapped signal: go on until postfix is gone.
while kill -0 "$master" 2>/dev/null; do
  wait "$master" || true
done
