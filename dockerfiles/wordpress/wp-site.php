<?php
/* hostyard: what Debian's WordPress has no WP-CLI for, run as www-data in
 * the site's container. Says what it did on stderr (the journal) and never
 * prints a password.
 *
 *   php wp-site.php prepare          before Apache starts (the entrypoint):
 *       waits, bounded, for the database; a site that is not installed is
 *       installed with the administrator of secrets/wp-admin.env (its lines
 *       on stdin), so the install form is never offered; an installed one
 *       gets WordPress's own database upgrade when its db_version is older
 *       than this WordPress's. Exit 0: ready; 1: not ready (Apache must not
 *       start: an uninstalled site would offer its install form).
 *   php wp-site.php reset-password   WP_ADMIN_USER (may be empty: the first
 *       administrator) and WP_ADMIN_PASSWORD lines on stdin; sets that
 *       user's password, prints the user's login on stdout.
 *   php wp-site.php cron             runs WordPress's due cron events
 *       (wordpress-cron@<domain>.service; DISABLE_WP_CRON is set). */

function say($message)
{
    fwrite(STDERR, "hostyard-wordpress: $message\n");
}

/* KEY=value lines on stdin (the admin file), never on a command line. */
function read_stdin_env()
{
    $vars = [];
    foreach (explode("\n", (string) stream_get_contents(STDIN)) as $line) {
        if (preg_match('/^([A-Z_]+)=(.*)$/', trim($line), $m)) {
            $vars[$m[1]] = $m[2];
        }
    }
    return $vars;
}

$mode = $argv[1] ?? '';
if (!in_array($mode, ['prepare', 'reset-password', 'cron'], true)) {
    say("usage: wp-site.php prepare|reset-password|cron");
    exit(2);
}
$domain = getenv('HOSTYARD_DOMAIN') ?: 'localhost';
$input = $mode === 'cron' ? [] : read_stdin_env();

$wait_secs = (int) (getenv('HOSTYARD_DB_WAIT_SECS') ?: 40);
$host = getenv('HOSTYARD_DB_HOST') ?: getenv('WORDPRESS_DB_HOST');
$port = null;
if (preg_match('/^(.+):(\d+)$/', $host, $m)) {
    [$host, $port] = [$m[1], (int) $m[2]];
}

/* The database container starts beside this one, and on its first start it
 * loads an imported dump, or upgrades on a newer MariaDB, before it
 * listens: wait for it. */
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
        say(sprintf("the database at %s did not answer within %d s (%s): not starting, " .
            "the unit tries again", $host, $wait_secs, $error));
        exit(1);
    }
    usleep(200000);
}

/* Debian's wp-config.php picks its config file by Host: this is the CLI,
 * and config-default.php is the one. */
$_SERVER['WORDPRESS_CONFIG'] = 'default';
$_SERVER['HTTP_HOST'] = $domain;
$_SERVER['REQUEST_URI'] = '/';
$_SERVER['SERVER_NAME'] = $domain;

if ($mode === 'cron') {
    /* wp-cron.php runs what is due and exits; DISABLE_WP_CRON only stops
     * visitors' requests from spawning it. */
    require '/usr/share/wordpress/wp-cron.php';
    exit(0);
}

/* As wp-admin/install.php and upgrade.php: no plugins or theme code. */
define('WP_INSTALLING', true);
require '/usr/share/wordpress/wp-load.php';
/* The install mails nobody: the container has no sendmail, and the
 * operator reads the password from secrets/wp-admin.env. (A pluggable
 * function of upgrade.php, so defined before it.) */
function wp_new_blog_notification($blog_title, $blog_url, $user_id, $password)
{
}
require_once ABSPATH . 'wp-admin/includes/upgrade.php';

global $wpdb, $wp_db_version, $wp_version, $wp_rewrite;

if ($mode === 'reset-password') {
    $login = $input['WP_ADMIN_USER'] ?? '';
    $password = $input['WP_ADMIN_PASSWORD'] ?? '';
    if (!is_blog_installed() || strlen($password) < 16) {
        say(!is_blog_installed() ? 'the site is not installed' : 'no new password on stdin');
        exit(1);
    }
    if ($login === '') {
        $admins = get_users(['role' => 'administrator', 'orderby' => 'ID', 'order' => 'ASC', 'number' => 1]);
        $user = $admins[0] ?? null;
    } else {
        $user = get_user_by('login', $login);
    }
    if (!$user) {
        say($login === '' ? 'the site has no administrator' : "the site has no user \"$login\"");
        exit(1);
    }
    /* Also ends the user's sessions everywhere. */
    wp_set_password($password, $user->ID);
    say("set a new password for \"$user->user_login\"");
    echo $user->user_login, "\n";
    exit(0);
}

if (!is_blog_installed()) {
    $password = $input['WP_ADMIN_PASSWORD'] ?? '';
    $login = ($input['WP_ADMIN_USER'] ?? '') ?: 'admin';
    if (strlen($password) < 16) {
        say('WordPress is not installed and secrets/wp-admin.env has no administrator password: ' .
            'not starting (the install form would be open to the first visitor); ' .
            'systemctl start wordpress-importer@' . $domain . ' writes one');
        exit(1);
    }
    /* The node config's wordpress.admin_email, written by the importer. */
    $email = ($input['WP_ADMIN_EMAIL'] ?? '') ?: "admin@$domain";
    $t0 = microtime(true);
    /* No HTTP during the install: WordPress would probe its own URL for
     * pretty permalinks, which the rules below set anyway. */
    add_filter('pre_http_request', function () {
        return new WP_Error('hostyard', 'no HTTP requests during the install');
    });
    add_filter('send_site_admin_email_change_email', '__return_false');
    $result = wp_install($domain, $login, $email, 1, '', wp_slash($password));
    if (empty($result['user_id']) || !is_blog_installed()) {
        say('WordPress install failed' . ($wpdb->last_error !== '' ? " ($wpdb->last_error)" : ''));
        exit(1);
    }
    $url = "http://$domain";
    update_option('siteurl', $url);
    update_option('home', $url);
    /* Post name permalinks, as most sites use; the site's .htaccess has
     * WordPress's rewrite block. */
    $wp_rewrite->set_permalink_structure('/%postname%/');
    flush_rewrite_rules(false);
    say(sprintf('installed WordPress %s for %s (administrator "%s", e-mail %s) in %.2f s',
        $wp_version, $url, $login, $email, microtime(true) - $t0));
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
    /* wp-admin offers the upgrade too; the site serves meanwhile. */
    exit(0);
}
say(sprintf('WordPress database upgraded to db_version %d in %.2f s', $now, microtime(true) - $t0));
