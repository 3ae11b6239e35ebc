#!/bin/sh
# Entrypoint of hostyard/postfix: runs postfix in the foreground with the
# config dir given as the one argument.
set -eu
config_dir=${1:?usage: hostyard-postfix CONFIG_DIR}
[ -f "$config_dir/main.cf" ] || {
  echo "hostyard-postfix: $config_dir/main.cf is missing: run hostyard mail" >&2
  exit 1
}
# /var/lib/postfix is a fresh tmpfs owned by root; postfix keeps its lock
# and caches there and wants to own it.
chown postfix:postfix /var/lib/postfix
exec /usr/sbin/postfix -c "$config_dir" start-fg
