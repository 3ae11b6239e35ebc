# shellcheck shell=bash
# YAML the checks hand a server (configs, inventory entries) is written as
# a here-doc and read by a YAML parser on this machine before it goes on:
# a slip of indentation or a value that needs quoting fails where it was
# written, instead of reaching hostyard as some other setting.

# yaml_checked: copies stdin to stdout once python3's YAML parser has read
# it; otherwise prints nothing, names the problem and returns 1.
yaml_checked() {
  local text
  text=$(cat)
  if ! python3 -c '
import sys, yaml
try:
    yaml.safe_load(sys.stdin)
except yaml.YAMLError as e:
    sys.exit(str(e))
' <<<"$text"; then
    printf '    FAIL not YAML:\n%s\n' "$text" >&2
    return 1
  fi
  printf '%s\n' "$text"
}
