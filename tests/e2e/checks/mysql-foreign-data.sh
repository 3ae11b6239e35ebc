# shellcheck shell=bash
# The MariaDB image never deletes or overwrites a data dir it did not set
# up: files without its marker stop it with one line saying what to do.
# Sourced by tests/e2e/run.sh.

CHECKS+=(t_mysql_leaves_a_data_dir_it_did_not_set_up)

t_mysql_leaves_a_data_dir_it_did_not_set_up() {
  local dir=/srv/e2e-mysql-foreign image out status=0
  image=$(bx hostyard config get images.mysql)
  bx rm -rf "$dir"
  bx mkdir -p "$dir"
  printf 'precious\n' | bxi sh -c "cat >$dir/ibdata1"
  out=$(bx docker run --rm -v "$dir:/var/lib/mysql" "$image" 2>&1) || status=$?
  expect "the MariaDB container's exit status" "$status" 1
  expect "its message" "$(grep -c 'holds files but no .hostyard-initialised' <<<"$out")" 1
  expect "the data dir's file" "$(bx cat "$dir/ibdata1")" precious
  expect "the data dir's entries" "$(bx ls -A "$dir")" ibdata1
  bx rm -rf "$dir"
}
