# shellcheck shell=bash
# Outgoing mail from a WordPress site: WordPress's real lost-password flow
# sends through PHP's mail() (msmtp), the site's own postfix socket and
# opendkim to postfix's smtp-sink (the relay host of need_mail_sink); the
# mail arrives within 5 s, DKIM-signed for the site's domain, and a real
# verifier (dkimpy) passes it against the record `hostyard mail dns`
# prints. Then what the site must not do: send as another domain (envelope
# or From:), see another site's socket. Sourced by tests/e2e/run.sh.

CHECKS+=(t_wordpress_lost_password_mail_arrives_dkim_signed t_site_mail_cannot_pose_as_another_domain
  t_site_mail_over_the_hourly_cap_waits_in_the_queue)

# A second WordPress site, whose mail must keep flowing while $WP's waits.
WP2=wp2.example.com

# sink_file TEXT: the newest file in the sink holding TEXT (empty if none).
sink_file() {
  # shellcheck disable=SC2016 # expanded by the box's shell
  bx sh -c 'grep -lsF -- "$1" "$2"/* | xargs -r ls -t | head -n 1' sink "$1" "$SINK_DIR"
}
sink_has() { [ -n "$(sink_file "$1")" ]; }

# need_dkim_verifier: Debian's dkimpy in the box (a real verifier, given
# the public key instead of a DNS lookup).
need_dkim_verifier() {
  bx python3 -c 'import dkim' >/dev/null 2>&1 && return
  bx sh -c 'apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends python3-dkim >/dev/null'
  bx python3 -c 'import dkim' || echo "    FAIL python3-dkim could not be installed in the box" >&2
}

# dkim_verify FILE RECORD_LINE: "pass" when FILE's DKIM signature verifies
# against the zone line's key (the d= and s= printed too).
dkim_verify() {
  bxi python3 - "$1" "$2" <<'PY'
import re, sys, dkim
msg = open(sys.argv[1], "rb").read().replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
record = "".join(re.findall(r'"([^"]*)"', sys.argv[2])).encode()
sig = re.search(rb"^DKIM-Signature:(.*?)\r\n(?![ \t])", msg, re.M | re.S)
tags = dict(t.strip().split("=", 1) for t in sig.group(1).decode().replace("\r\n", "").split(";") if "=" in t) if sig else {}
ok = dkim.verify(msg, dnsfunc=lambda name, timeout=5: record)
print(("pass" if ok else "fail") + " d=" + tags.get("d", "").strip() + " s=" + tags.get("s", "").strip())
PY
}

t_wordpress_lost_password_mail_arrives_dkim_signed() {
  need_mail_sink
  need_wordpress
  need_dkim_verifier
  expect "the site's socket in its container" \
    "$(bx docker exec "wordpress_$WP" sh -c 'test -S /run/hostyard/mail/smtp && echo socket')" socket
  local t0 status file took record
  t0=$(now_ms)
  status=$(curl -s -o /dev/null -w '%{http_code}' --max-time 30 -H "Host: $WP" \
    --data-urlencode 'user_login=admin' --data-urlencode 'redirect_to=' \
    --data-urlencode 'wp-submit=Get New Password' \
    "http://127.0.0.1:$PORT/wp-login.php?action=lostpassword" || true)
  # WordPress redirects to "check your email" once wp_mail() returned true;
  # it answers the form again with "could not be sent" otherwise.
  expect "POST wp-login.php?action=lostpassword" "$status" 302
  wait_for 5 "the password reset mail in the sink" sink_has "Password Reset" || true
  took=$(($(now_ms) - t0))
  file=$(sink_file "Password Reset")
  expect "the password reset mail reached the sink" "$([ -n "$file" ] && echo yes)" yes
  note "lost-password POST to the mail in the sink: $took ms"
  expect "its envelope sender" "$(bx grep -m1 '^X-Mail-Args:' "$file" | grep -o "<wordpress@$WP>")" "<wordpress@$WP>"
  record=$(bx hostyard mail dns "$WP" | grep "_domainkey.$WP. ")
  expect "hostyard mail dns prints SPF and DMARC" \
    "$(bx hostyard mail dns "$WP" | grep -c -e "^$WP\. IN TXT \"v=spf1 " -e "^_dmarc\.$WP\. IN TXT \"v=DMARC1; ")" 2
  expect "its DKIM signature (dkimpy)" "$(dkim_verify "$file" "$record")" "pass d=$WP s=hy1"
  expect "the domain's private key" "$(bx stat -c '%a' "$POSTFIX_DIR/dkim/$WP/hy1.private")" 600
}

# site_send FROM_HEADER [MSMTP_OPTION...]: a mail from inside $WP's
# container through its socket, as a plugin could send it: msmtp's words,
# then "exit N".
site_send() {
  local from=$1 rc=0 out
  shift
  out=$(printf 'From: %s\nTo: owner@mailbox.example\nSubject: e2e pose %s\n\nbody\n' "$from" "$from" |
    bxi docker exec -i -u www-data "wordpress_$WP" msmtp "$@" -t 2>&1) || rc=$?
  printf '%s\nexit %s\n' "$out" "$rc"
}

# refused WHAT TEXT FROM_HEADER [MSMTP_OPTION...]: site_send's mail is
# refused with TEXT in postfix's answer (msmtp's words shown otherwise).
refused() {
  local what=$1 text=$2 out
  shift 2
  out=$(site_send "$@")
  if grep -qF -- "$text" <<<"$out" && ! grep -qx 'exit 0' <<<"$out"; then
    echo "    ok   $what refused: $text"
    return
  fi
  echo "    FAIL $what not refused with \"$text\": $(tr '\n' ' ' <<<"$out")" >&2
  return 1
}

t_site_mail_cannot_pose_as_another_domain() {
  local rc=0
  need_mail_sink
  need_wordpress
  expect "the container sees its own socket only" \
    "$(bx docker exec "wordpress_$WP" ls /run/hostyard/mail)" smtp
  expect "the sites' socket dir is not mounted" \
    "$(bx docker exec "wordpress_$WP" sh -c 'ls /run/hostyard/mail/.. ; test -e /var/spool/postfix/public && echo spool' | grep -c -e spool -e sites)" 0
  refused "envelope sender of $STATIC" 'Sender address rejected' "wordpress@$WP" -f "info@$STATIC" || rc=1
  refused "envelope sender of a subdomain" 'Sender address rejected' "wordpress@$WP" -f "x@sub.$WP" || rc=1
  refused "From: of $STATIC" 'From: address must be' "Boss <boss@$STATIC>" || rc=1
  # opendkim would sign by the first address: a second one of this site
  # must not make it sign as $STATIC.
  refused "From: of $STATIC and of the site" 'From: address must be' "boss@$STATIC, wordpress@$WP" || rc=1
  expect "its own mail still taken" "$(site_send "WordPress <wordpress@$WP>" | tail -n 1)" "exit 0"
  wait_for 5 "the site's own mail in the sink" sink_has "e2e pose WordPress <wordpress@$WP>" || true
  expect "its own mail in the sink" "$(sink_has "e2e pose WordPress <wordpress@$WP>" && echo yes)" yes
  expect "no posing mail in the sink" "$(sink_has "e2e pose Boss" && echo yes)" "" || rc=1
  return "$rc"
}

# sink_count TEXT: how many files in the sink hold TEXT.
sink_count() {
  # shellcheck disable=SC2016 # expanded by the box's shell
  bx sh -c 'grep -lsF -- "$1" "$2"/* | wc -l' sink "$1" "$SINK_DIR"
}
sink_count_is() { [ "$(sink_count "$1")" = "$2" ]; }

# cap_send SITE TAG: one mail from SITE's container through its socket,
# as PHP's mail() sends it (msmtp -t, as www-data); "exit N", msmtp's.
cap_send() {
  local rc=0
  printf 'From: wordpress@%s\nTo: owner@mailbox.example\nSubject: e2e cap %s %s\n\nbody\n' "$1" "$1" "$2" |
    bxi docker exec -i -u www-data "wordpress_$1" msmtp -t >/dev/null 2>&1 || rc=$?
  echo "exit $rc"
}

# set_site_hourly_cap N: mail.site_hourly_cap in the node config ("" for
# the default), then postfix restarted, so its counts start from zero.
set_site_hourly_cap() {
  bx sed -i '/^  site_hourly_cap:/d' /etc/hostyard/hostyard.yaml
  if [ -n "$1" ]; then
    bx sed -i "s/^mail:\$/mail:\n  site_hourly_cap: $1/" /etc/hostyard/hostyard.yaml
  fi
  bx systemctl restart postfix.service
}

# postfix_queue: postfix's queue listing (postqueue -p, in its container).
postfix_queue() { bx docker exec hostyard_postfix postqueue -c "$POSTFIX_DIR/etc" -p; }

# Over its hourly cap a site's mail is taken (mail() does not fail), waits
# in the queue, deferred and logged under the site's name, while another
# site's mail still goes out; it leaves once the count allows (here: a
# fresh count after a restart, and a flush instead of the retry's wait).
t_site_mail_over_the_hourly_cap_waits_in_the_queue() {
  local rc=0 cap=3 run i t0 since log
  need_mail_sink
  need_wordpress
  bx systemctl start "wordpress@$WP2"
  since=$(bx date '+%Y-%m-%d %H:%M:%S')
  set_site_hourly_cap "$cap"
  expect "mail.site_hourly_cap" "$(bx hostyard config get mail.site_hourly_cap)" "$cap" || rc=1
  run=$(now_ms)
  for i in $(seq 1 $((cap + 1))); do
    expect "mail $i of $WP taken" "$(cap_send "$WP" "$run-$i")" "exit 0" || rc=1
  done
  wait_for 10 "$cap mails of $WP in the sink" sink_count_is "e2e cap $WP $run-" "$cap" || true
  wait_for 10 "the deferral in postfix's journal" \
    sh -c "docker exec $BOX journalctl -u postfix.service --since '$since' --no-pager | grep -q 'postfix/site/$WP/pipe.*status=deferred'" || true
  expect "$WP's mails in the sink (the cap)" "$(sink_count "e2e cap $WP $run-")" "$cap" || rc=1
  log=$(bx journalctl -u postfix.service --since "$since" --no-pager -o cat |
    grep -e "postfix/site/$WP/pipe.*status=deferred" -e "postfix/site/$WP/smtpd.*rate limit exceeded" | tail -n 2 || true)
  note "postfix's journal: $log"
  expect "the extra mail deferred, logged under postfix/site/$WP" \
    "$(grep -c "postfix/site/$WP/pipe.*status=deferred" <<<"$log")" 1 || rc=1
  # A queue entry's first line: ID, size, date, sender (the reason line
  # below it names the sender too).
  expect "the extra mail waits in the queue" "$(postfix_queue | grep -cE "^[0-9A-F]+[*!]? .* wordpress@$WP\$" || true)" 1 || rc=1
  t0=$(now_ms)
  expect "a mail of $WP2 taken" "$(cap_send "$WP2" "$run-other")" "exit 0" || rc=1
  wait_for 5 "$WP2's mail in the sink" sink_has "e2e cap $WP2 $run-other" || true
  expect "$WP2's mail in the sink meanwhile" "$(sink_has "e2e cap $WP2 $run-other" && echo yes)" yes || rc=1
  note "$WP2's mail to the sink while $WP is over its cap: $(($(now_ms) - t0)) ms"
  set_site_hourly_cap ""
  bx docker exec hostyard_postfix postqueue -c "$POSTFIX_DIR/etc" -f
  wait_for 10 "$WP's waiting mail in the sink" sink_count_is "e2e cap $WP $run-" $((cap + 1)) || true
  expect "$WP's waiting mail delivered once the count allows" "$(sink_count "e2e cap $WP $run-")" $((cap + 1)) || rc=1
  expect "no mail bounced" "$(sink_count "Undelivered Mail Returned to Sender")" 0 || rc=1
  if [ "$rc" != 0 ]; then
    bx journalctl -u postfix.service --since "$since" --no-pager -o cat | grep "postfix/site/$WP/" | tail -n 30 >&2 || true
  fi
  return "$rc"
}
