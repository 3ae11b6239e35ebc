<?php
/* hostyard: one site per container. The database comes from the site's
 * secrets/wp.env (the container's environment) and the mysql_<domain>
 * container; the keys and salts from secrets/wp-salts.php, copied by the
 * entrypoint to where PHP (www-data) may read it. Debian's wp-config.php
 * loads this file for every Host. */
define('DB_NAME', getenv('WORDPRESS_DB_NAME'));
define('DB_USER', getenv('WORDPRESS_DB_USER'));
define('DB_PASSWORD', getenv('WORDPRESS_DB_PASSWORD'));
define('DB_HOST', getenv('HOSTYARD_DB_HOST') ?: getenv('WORDPRESS_DB_HOST'));
/* An imported site keeps the table prefix of its dump (the importer reads
 * it from the dump's CREATE TABLE lines into wp.env). */
$table_prefix = getenv('WORDPRESS_TABLE_PREFIX') ?: 'wp_';
define('WP_CONTENT_DIR', '/srv/wp-content');
/* WordPress's core is the image's (read-only, updated with the image);
 * wp-content is the web user's, so plugins and themes install and update
 * from wp-admin, written in place. The code editor stays off. */
define('FS_METHOD', 'direct');
define('DISALLOW_FILE_EDIT', true);
/* WordPress's cron runs on the site's systemd timer
 * (wordpress-cron@<domain>.timer), not on visitors' requests. */
define('DISABLE_WP_CRON', true);
require '/run/hostyard/wp-salts.php';
