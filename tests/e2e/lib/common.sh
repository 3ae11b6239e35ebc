# shellcheck shell=bash disable=SC2154 # repo: set by the script that sources this
# The shell libraries every end-to-end script uses; $repo is the checkout.

# shellcheck source=scripts/lib/log.sh
. "$repo/scripts/lib/log.sh"
# shellcheck source=scripts/lib/box.sh
. "$repo/scripts/lib/box.sh"
# shellcheck source=tests/e2e/lib/tls.sh
. "$repo/tests/e2e/lib/tls.sh"
# shellcheck source=tests/e2e/lib/yaml.sh
. "$repo/tests/e2e/lib/yaml.sh"
