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
/* A site served under its www. name (`hostyard site set D --canonical
 * www`): HAProxy redirects D and every alias to www.D, so a request for
 * www.D is the only kind that reaches here. WordPress's home URL says
 * http://D (its install), and its own canonical redirect would send the
 * visitor back to D: a loop. Served under www.D, its links and redirects
 * name www.D. A site served under D keeps its home URL as it is. */
$hostyard_domain = getenv('HOSTYARD_DOMAIN');
$hostyard_host = strtolower(preg_replace('/:.*/', '', $_SERVER['HTTP_HOST'] ?? ''));
if ($hostyard_domain && $hostyard_host === 'www.' . $hostyard_domain) {
    $hostyard_scheme = ($_SERVER['HTTP_X_FORWARDED_PROTO'] ?? '') === 'https' ? 'https' : 'http';
    define('WP_HOME', $hostyard_scheme . '://' . $hostyard_host);
    define('WP_SITEURL', $hostyard_scheme . '://' . $hostyard_host);
}
