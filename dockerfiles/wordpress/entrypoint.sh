#!/bin/bash
# Prepares a hostyard WordPress site's container (its wp-content, salts,
# .htaccess, and the install or database upgrade), then runs Apache in the
# foreground. Never prints a secret.
set -euo pipefail

log() { printf 'hostyard-wordpress: %s\n' "$*" >&2; }

# The salts file is the host's secrets/wp-salts.php, root's and private:
# root (this script) reads it, PHP runs as www-data.
install -m 0640 -o root -g www-data /srv/secrets/wp-salts.php /run/hostyard/wp-salts.php

# A fresh site's wp-content is empty: give it Debian's default theme and
# an empty plugins and uploads dir. An imported wp-content is kept as it
# is. (cp -a of Debian's own wp-content would copy its 0700 www-data modes,
# which root without CAP_DAC_OVERRIDE cannot read back.)
if [ ! -d /srv/wp-content/themes ]; then
  log "seeding an empty wp-content"
  mkdir -p /srv/wp-content/plugins /srv/wp-content/uploads /srv/wp-content/themes.tmp
  cp -rL /usr/share/wordpress/wp-content/themes/. /srv/wp-content/themes.tmp/
  chmod -R u=rwX,go=rX /srv/wp-content/themes.tmp /srv/wp-content/plugins
  # Last, so a seed cut short is redone at the next start.
  mv /srv/wp-content/themes.tmp /srv/wp-content/themes
fi

# wp-content is the web user's: uploads, and plugin and theme installs and
# updates from wp-admin, write there (WordPress's core, in the image, stays
# read-only). An import (copied by root) or a site from before is handed
# over once; later starts find nothing to change.
find /srv/wp-content -xdev ! -user www-data -exec chown -h www-data:www-data {} +

# The site's .htaccess (domains/<domain>/.htaccess, mounted where Debian's
# /usr/share/wordpress/.htaccess points) is WordPress's to rewrite, as on
# any Apache host (Settings > Permalinks).
chown www-data:www-data /etc/wordpress/htaccess

# PHP's mail() (sendmail_path: msmtp) submits to postfix's socket for this
# site, mounted at /run/hostyard/mail: the container's one way to send. The
# envelope sender is wordpress@ the site's domain, the one postfix takes
# from this socket; a plugin's -f of another domain is refused there.
if [[ "${HOSTYARD_DOMAIN:-}" =~ ^[a-z0-9.-]+$ ]]; then
  cat >/etc/msmtprc <<MSMTP
# Written by hostyard-wordpress at start; do not edit.
account default
socket /run/hostyard/mail/smtp
host localhost
domain $HOSTYARD_DOMAIN
from wordpress@$HOSTYARD_DOMAIN
auth off
tls off
syslog off
MSMTP
fi

# Install a new site, or upgrade an older database, before Apache serves
# anything: WordPress's install form is never offered. As www-data, as PHP
# runs under Apache; the administrator's password reaches it on stdin.
admin=/srv/secrets/wp-admin.env
if [ ! -f "$admin" ]; then admin=/dev/null; fi
if ! setpriv --reuid=www-data --regid=www-data --init-groups \
  php /usr/local/share/hostyard/wp-site.php prepare <"$admin" >&2; then
  log "WordPress is not ready (said above): not starting Apache"
  exit 1
fi

# Debian's Apache environment (run user, dirs); it reads unset variables.
set +u
# shellcheck source=/dev/null
. /etc/apache2/envvars
set -u
mkdir -p "$APACHE_RUN_DIR" "$APACHE_LOCK_DIR" "$APACHE_LOG_DIR"
exec /usr/sbin/apache2 -DFOREGROUND
