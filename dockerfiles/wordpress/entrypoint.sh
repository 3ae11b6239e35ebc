#!/bin/bash
# Prepares a hostyard WordPress site's container (its wp-content, salts and
# database upgrade), then runs Apache in the foreground. Never prints a
# secret.
set -euo pipefail

log() { printf 'hostyard-wordpress: %s\n' "$*" >&2; }

# The salts file is the host's secrets/wp-salts.php, root's and private:
# root (this script) reads it, PHP runs as www-data.
install -m 0640 -o root -g www-data /srv/secrets/wp-salts.php /run/hostyard/wp-salts.php

# A fresh site's wp-content is empty: give it Debian's default theme and
# plugins (root's: code stays read-only to PHP) and an uploads dir that
# www-data writes. An imported wp-content is kept as it is. (cp -a of
# Debian's own wp-content would copy its 0700 www-data modes, which root
# without CAP_DAC_OVERRIDE cannot read back.)
if [ ! -d /srv/wp-content/themes ]; then
  log "seeding an empty wp-content"
  mkdir -p /srv/wp-content/plugins /srv/wp-content/uploads /srv/wp-content/themes.tmp
  cp -rL /usr/share/wordpress/wp-content/themes/. /srv/wp-content/themes.tmp/
  chmod -R u=rwX,go=rX /srv/wp-content/themes.tmp /srv/wp-content/plugins
  chown www-data:www-data /srv/wp-content/uploads
  # Last, so a seed cut short is redone at the next start.
  mv /srv/wp-content/themes.tmp /srv/wp-content/themes
fi

# WordPress's own database upgrade, when the site's database is older than
# this WordPress (a site moved from an older image), before any request can
# see the old schema. As www-data, as PHP runs under Apache.
if ! setpriv --reuid=www-data --regid=www-data --init-groups \
  php /usr/local/share/hostyard/wp-upgrade.php >&2; then
  log "starting anyway: the next start tries the upgrade again (wp-admin offers it too)"
fi

# Debian's Apache environment (run user, dirs); it reads unset variables.
set +u
# shellcheck source=/dev/null
. /etc/apache2/envvars
set -u
mkdir -p "$APACHE_RUN_DIR" "$APACHE_LOCK_DIR" "$APACHE_LOG_DIR"
exec /usr/sbin/apache2 -DFOREGROUND
