#!/bin/sh
# hostyard-send: what a site's pipe transport in postfix's master.cf runs
# (as hostyard-send): msmtp, its arguments passed on, handing one queued
# message to the site's capped service. msmtp exits 69 (unavailable) for a
# 4xx answer too, which pipe would bounce; a 4xx (the cap, opendkim not
# there) becomes 75 (EX_TEMPFAIL), so the message stays queued and is
# tried again. msmtp's words go to pipe, which logs them.
set -u
out=$(/usr/bin/msmtp "$@" 2>&1) && exit 0
rc=$?
printf '%s\n' "$out"
case $out in
  *"server message: 4"*) exit 75 ;;
esac
exit "$rc"
