# shellcheck shell=bash
# Restore drills: a WordPress site with a post and an uploaded image, a
# static-git and a static site are backed up by their backup@ units, their
# data destroyed, and restored with `hostyard restore`: the post at its
# URL, the image's bytes, the admin's login, the same static files. A
# repository that is missing or has another password gives one line and
# changes no site. Sourced by tests/e2e/run.sh.

BACKUP_WP=drill-wp.example.com
BACKUP_REPO=/srv/e2e-restic
# The administrator password hostyard installed the site with, read from
# its secrets before the loss (a restore keeps the users of the dump).
BACKUP_ADMIN_PASSWORD=""
BACKUP_POST_TITLE="Restore drill post"
BACKUP_CURL_SECS=60

CHECKS+=(t_backup_restore_drill)

# backup_url PATH: the WordPress drill site's URL through HAProxy.
backup_url() { printf 'http://127.0.0.1:%s%s' "$PORT" "$1"; }

# backup_png FILE: a small valid PNG (WordPress checks an image's bytes).
backup_png() {
  python3 - "$1" <<'PY'
import random, struct, sys, zlib
random.seed(7)
w = h = 64
rows = b"".join(b"\0" + bytes(random.randrange(256) for _ in range(w * 3)) for _ in range(h))
def chunk(kind, data):
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)) \
    + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")
open(sys.argv[1], "wb").write(png)
PY
}

# backup_configure: backups into a local repository on the box, once, as
# docs/backups.md says: set backup.repository, then hostyard backup
# init. On a server whose units were generated before, init refuses and
# names the command that updates them; that command is run as given.
backup_configure() {
  local out cmd
  if [ -z "$(bx hostyard config get backup.repository)" ]; then
    yaml_checked <<YAML | bxi sh -c 'cat >>/etc/hostyard/hostyard.yaml'
backup:
  repository: $BACKUP_REPO
YAML
    if out=$(bx hostyard backup init 2>&1); then
      printf '    FAIL backup init with units generated before the repository was set: %s\n' "$out" >&2
      return 1
    fi
    cmd=$(sed -n 's/.*: run \(hostyard generate .*\), then hostyard backup init again$/\1/p' <<<"$out")
    expect "backup init names the command to run" "$([ -n "$cmd" ] && echo yes || echo "no: $out")" yes || return 1
    bx sh -c "$cmd" >/dev/null
  fi
  bx hostyard backup init >/dev/null
}

# backup_tree_sum DOMAIN DIR: one checksum of every file under the site's DIR.
backup_tree_sum() {
  bx sh -c "cd $DOMAINS_DIR/$1/$2 && find . -type f -print0 | sort -z | xargs -0 sha256sum | sha256sum"
}

# backup_wp_data JAR POST UPLOAD FILE: the drill site's post, image bytes
# and login, as seen through HAProxy.
backup_wp_data() {
  expect "the post at its URL" \
    "$(wp_page "$BACKUP_WP" "/?p=$2" | grep -c "<title>$BACKUP_POST_TITLE")" 1
  expect "the image's bytes" \
    "$(curl -s --max-time "$BACKUP_CURL_SECS" -H "Host: $BACKUP_WP" "$(backup_url "$3")" | sha256sum)" \
    "$(sha256sum <"$4")"
  expect "admin's login" "$(printf '%s' "$BACKUP_ADMIN_PASSWORD" | wp_login "$BACKUP_WP" admin "$1")" 302
}

t_backup_restore_drill() {
  local work t0 out post upload static_sum git_body cmd
  work=$(mktemp -d /tmp/e2e-backup.XXXXXX)
  backup_configure
  need_static_site
  need_git_site
  # Its remote, which the restore clones again: running even after the
  # reboot check.
  git_repo
  bx systemctl start "wordpress@$BACKUP_WP"
  # The WordPress site (installed by its start, with the administrator of
  # its secrets): a post, an uploaded image.
  BACKUP_ADMIN_PASSWORD=$(wp_admin_password "$BACKUP_WP" | tr -d '\n')
  expect "admin's login before" "$(printf '%s' "$BACKUP_ADMIN_PASSWORD" | wp_login "$BACKUP_WP" admin "$work/jar")" 302
  out=$(jq -n --arg title "$BACKUP_POST_TITLE" '{title: $title, content: "Backed up and restored.", status: "publish"}' |
    wp_rest "$BACKUP_WP" "$work/jar" /wp/v2/posts -H 'Content-Type: application/json' --data-binary @-)
  post=$(jq -r '.id // empty' <<<"$out" 2>/dev/null || true)
  expect "a post id" "$([ -n "$post" ] && echo yes || echo "no: ${out:0:200}")" yes
  backup_png "$work/drill.png"
  out=$(wp_rest "$BACKUP_WP" "$work/jar" /wp/v2/media -H 'Content-Type: image/png' \
    -H 'Content-Disposition: attachment; filename=drill.png' --data-binary "@$work/drill.png")
  upload=$(jq -r '.source_url // empty' <<<"$out" 2>/dev/null | sed 's,^https\?://[^/]*,,' || true)
  expect "the image's path" "$(grep -cE '^/wp-content/uploads/.*/drill\.png$' <<<"$upload")" 1
  backup_wp_data "$work/jar" "$post" "$upload" "$work/drill.png"
  static_sum=$(backup_tree_sum "$STATIC" www)
  git_body=$(body "$GIT_SITE" /)

  # Backed up by the units, as the timers would.
  t0=$(now_ms)
  for site in "$STATIC" "$GIT_SITE" "$BACKUP_WP"; do
    bx systemctl start "backup@$site.service"
  done
  note "three backups (backup@ units) took $(($(now_ms) - t0)) ms"
  expect "backup ls of $BACKUP_WP" "$(bx hostyard backup ls "$BACKUP_WP" | grep -c ' wordpress ')" 1
  expect "hostyard status: $STATIC backed up" "$(bx hostyard status | grep -cE "^$STATIC +ok ")" 1

  # Failures: a missing repository and a wrong password give one line and
  # change no site.
  yaml_checked <<'YAML' | bxi sh -c 'cat >/tmp/e2e-missing.yaml'
backup:
  repository: /srv/e2e-no-repo
YAML
  out=$(bx hostyard --config /tmp/e2e-missing.yaml backup ls "$STATIC" 2>&1 || true)
  expect "a missing repository's error" "$(grep -c 'there is no restic repository' <<<"$out")/$(wc -l <<<"$out")" 1/1
  bx sh -c 'head -c 16 /dev/urandom | od -An -tx1 | tr -d " \n" >/tmp/e2e-wrong-pw && chmod 600 /tmp/e2e-wrong-pw'
  yaml_checked <<YAML | bxi sh -c 'cat >/tmp/e2e-wrong.yaml'
backup:
  repository: $BACKUP_REPO
  password_file: /tmp/e2e-wrong-pw
YAML
  out=$(bx hostyard --config /tmp/e2e-wrong.yaml restore "$STATIC" 2>&1 || true)
  expect "restore over a running site" "$(grep -c 'a restore never overwrites a site' <<<"$out")" 1
  out=$(bx hostyard --config /tmp/e2e-wrong.yaml backup run "$STATIC" 2>&1 || true)
  expect "a wrong password's error" "$(grep -c 'does not open the repository' <<<"$out")/$(wc -l <<<"$out")" 1/1
  expect "$STATIC unchanged" "$(backup_tree_sum "$STATIC" www)" "$static_sum"

  # Data lost: the static sites stopped and their data removed (restore
  # stops what it needs itself).
  bx systemctl stop "static@$STATIC" "static-git@$GIT_SITE"
  for site in "$STATIC" "$GIT_SITE"; do
    bx rm -rf "${DOMAINS_DIR:?}/$site"
  done
  # The WordPress site is replaced while it serves, by doing what restore's
  # refusal says, literally.
  out=$(bx hostyard restore "$BACKUP_WP" 2>&1 || true)
  cmd=$(sed -n 's/.*to replace it, \(systemctl stop .*\), then hostyard restore .*/\1/p' <<<"$out")
  expect "restore over a live WordPress names what to run" "$([ -n "$cmd" ] && echo yes || echo "no: $out")" yes || return 1
  bx sh -c "$cmd"
  expect "$STATIC after the loss" "$(code "$STATIC" /)" 503

  t0=$(now_ms)
  for site in "$STATIC" "$GIT_SITE" "$BACKUP_WP"; do
    bx hostyard restore "$site" || return 1
  done
  expect "hostyard status lists no moved-aside data as a site" \
    "$(bx hostyard status | grep -c 'replaced')" 0
  note "three restores (hostyard restore, each until its site is routed) took $(($(now_ms) - t0)) ms"
  expect "$STATIC's files" "$(backup_tree_sum "$STATIC" www)" "$static_sum"
  expect "$GIT_SITE's page" "$(body "$GIT_SITE" /)" "$git_body"
  wait_for 60 "the restored WordPress to answer" answers_200 "$BACKUP_WP"
  backup_wp_data "$work/jar" "$post" "$upload" "$work/drill.png"
  rm -rf "$work"
}
