<?php
/* hostyard: WordPress's own database upgrade, run by the entrypoint (as
 * www-data) before Apache starts; Debian has no WP-CLI. It waits, bounded,
 * until the site's database answers, then loads WordPress the way
 * wp-admin/upgrade.php does and calls wp_upgrade() when the stored
 * db_version is older than this WordPress's. Says what it did on stderr
 * (the journal); silent when there is nothing to do.
 * Exit 0: nothing to do, upgraded, or no database within the bound (said);
 * 1: the upgrade failed. */

function say($message)
{
    fwrite(STDERR, "hostyard-wordpress: $message\n");
}

$wait_secs = (int) (getenv('HOSTYARD_DB_WAIT_SECS') ?: 40);
$host = getenv('HOSTYARD_DB_HOST') ?: getenv('WORDPRESS_DB_HOST');
$port = null;
if (preg_match('/^(.+):(\d+)$/', $host, $m)) {
    [$host, $port] = [$m[1], (int) $m[2]];
}

/* The database container starts beside this one, and on its first start on
 * a newer MariaDB it upgrades before it listens: wait for it. */
mysqli_report(MYSQLI_REPORT_OFF);
$deadline = microtime(true) + $wait_secs;
for (;;) {
    $db = mysqli_init();
    $db->options(MYSQLI_OPT_CONNECT_TIMEOUT, 2);
    if (@$db->real_connect($host, getenv('WORDPRESS_DB_USER'), getenv('WORDPRESS_DB_PASSWORD'),
        getenv('WORDPRESS_DB_NAME'), $port)) {
        $db->close();
        break;
    }
    $error = $db->connect_error;
    if (microtime(true) >= $deadline) {
        say(sprintf("the database at %s did not answer within %d s (%s): a WordPress database " .
            "upgrade, if one is due, waits for the next start", $host, $wait_secs, $error));
        exit(0);
    }
    usleep(200000);
}

/* Debian's wp-config.php picks its config file by Host: this is the CLI,
 * and config-default.php is the one. */
$_SERVER['WORDPRESS_CONFIG'] = 'default';
$_SERVER['HTTP_HOST'] = 'localhost';
/* As wp-admin/upgrade.php: no plugins or theme code, and no cron request
 * to the site's own URL. */
define('WP_INSTALLING', true);
define('DISABLE_WP_CRON', true);
require '/usr/share/wordpress/wp-load.php';
require_once ABSPATH . 'wp-admin/includes/upgrade.php';

global $wpdb, $wp_db_version, $wp_version;

/* A fresh site: its install form creates the tables at this version. */
if (!is_blog_installed()) {
    exit(0);
}
$stored = (int) get_option('db_version');
if ($stored >= $wp_db_version) {
    exit(0);
}
say("the database is at db_version $stored, WordPress $wp_version has $wp_db_version: running its upgrade");
$t0 = microtime(true);
wp_upgrade();
$now = (int) $wpdb->get_var("SELECT option_value FROM $wpdb->options WHERE option_name = 'db_version'");
if ($now !== (int) $wp_db_version) {
    say("WordPress's database upgrade did not finish: db_version is $now" .
        ($wpdb->last_error !== '' ? " ($wpdb->last_error)" : ''));
    exit(1);
}
say(sprintf('WordPress database upgraded to db_version %d in %.2f s', $now, microtime(true) - $t0));
