#!/bin/sh
# hostyard-send: what a site's pipe transport in postfix's master.cf runs
# (as hostyard-send): msmtp, its arguments passed on, handing one queued
# message to the site's capped service. msmtp exits 69 (unavailable) for a
# 4xx answer too, and other codes for local trouble, which pipe would
# bounce: everything but a 5xx answer becomes 75 (EX_TEMPFAIL), so the
# message stays queued and is tried again. msmtp's words go to pipe, which
# logs them. msmtp buffers the message in /tmp (a tmpfs: the root is
# read-only).
set -u
out=$(/usr/bin/msmtp "$@" 2>&1) && exit 0
rc=$?
printf '%s\n' "$out"
case $out in
  *"server message: 5"*) exit "$rc" ;;
esac
exit 75
