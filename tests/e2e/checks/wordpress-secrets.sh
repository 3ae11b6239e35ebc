# shellcheck shell=bash
# A WordPress container gets its own database user's password, never
# MariaDB's root password (docker inspect shows a container's environment).
# Sourced by tests/e2e/run.sh.

CHECKS+=(t_wordpress_container_has_no_root_password)

t_wordpress_container_has_no_root_password() {
  bx systemctl start "wordpress@$WP"
  local wp_env db_env
  wp_env=$(bx docker inspect -f '{{range .Config.Env}}{{println .}}{{end}}' "wordpress_$WP")
  db_env=$(bx docker inspect -f '{{range .Config.Env}}{{println .}}{{end}}' "mysql_$WP")
  expect "MARIADB_ROOT_PASSWORD in wordpress_$WP" "$(printf '%s\n' "$wp_env" | grep -c '^MARIADB_ROOT_PASSWORD=')" 0
  expect "WORDPRESS_DB_PASSWORD in wordpress_$WP" "$(printf '%s\n' "$wp_env" | grep -c '^WORDPRESS_DB_PASSWORD=')" 1
  expect "MARIADB_ROOT_PASSWORD in mysql_$WP" "$(printf '%s\n' "$db_env" | grep -c '^MARIADB_ROOT_PASSWORD=')" 1
}
