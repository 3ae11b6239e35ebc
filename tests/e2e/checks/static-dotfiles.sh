# shellcheck shell=bash
# The static kinds never serve a dotfile (a repository's .env, an
# .htpasswd), except below /.well-known/. Sourced by tests/e2e/run.sh.

CHECKS+=(t_static_sites_serve_no_dotfiles_but_well_known)

DOT_SITE=dot.example.com

t_static_sites_serve_no_dotfiles_but_well_known() {
  local content=$IMPORT_DIR/$DOT_SITE/static/www-content
  bx mkdir -p "$content/.well-known/.hidden" "$content/sub/.git"
  printf 'home\n' | bxi sh -c "cat >$content/index.html"
  printf 'DB_PASSWORD=x\n' | bxi sh -c "cat >$content/.env"
  printf 'Contact: mailto:security@%s\n' "$DOT_SITE" | bxi sh -c "cat >$content/.well-known/security.txt"
  printf 'no\n' | bxi sh -c "cat >$content/.well-known/.hidden/x"
  printf '[core]\n' | bxi sh -c "cat >$content/sub/.git/config"
  bx systemctl start "static@$DOT_SITE"
  expect "/" "$(code "$DOT_SITE" /)" 200
  expect "/.env" "$(code "$DOT_SITE" /.env)" 404
  expect "/%2eenv" "$(code "$DOT_SITE" /%2eenv)" 404
  expect "/sub/.git/config" "$(code "$DOT_SITE" /sub/.git/config)" 404
  expect "/.well-known/security.txt" "$(code "$DOT_SITE" /.well-known/security.txt)" 200
  expect "/.well-known/.hidden/x" "$(code "$DOT_SITE" /.well-known/.hidden/x)" 404
  expect "/.well-known/../.env" "$(code "$DOT_SITE" /.well-known/../.env)" 404
  bx systemctl stop "static@$DOT_SITE"
}
