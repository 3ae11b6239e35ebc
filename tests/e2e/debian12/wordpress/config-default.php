<?php
/* hostyard: one site per container. The database comes from the site's
 * secrets/db.env (the container's environment) and the mysql_<domain>
 * container; the keys and salts from secrets/wp-salts.php, copied by the
 * entrypoint to where PHP (www-data) may read it. Debian's wp-config.php
 * loads this file for every Host. */
define('DB_NAME', getenv('WORDPRESS_DB_NAME'));
define('DB_USER', getenv('WORDPRESS_DB_USER'));
define('DB_PASSWORD', getenv('WORDPRESS_DB_PASSWORD'));
define('DB_HOST', getenv('HOSTYARD_DB_HOST') ?: getenv('WORDPRESS_DB_HOST'));
define('WP_CONTENT_DIR', '/srv/wp-content');
/* Plugins and themes come with the image or the site's import, not from
 * the admin pages: the code is read-only. */
define('DISALLOW_FILE_EDIT', true);
require '/run/hostyard/wp-salts.php';
