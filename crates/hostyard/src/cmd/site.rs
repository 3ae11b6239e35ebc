//! `hostyard site`: a site's records in etcd (its declaration, its owner).

use clap::Subcommand;
use hostyard_config::NodeConfig;
use hostyard_core::aliases::listed;
use hostyard_core::edge::{BasicAuth, Canonical, EdgeRules, HeadersPreset, PathRedirect};
use hostyard_core::Domain;

use super::{runtime, usage, Failure};

// Parsed once per run: the size of the `Set` variant costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand)]
pub enum SiteAction {
    /// Print the server that owns the site (only its discovery registers
    /// it); nothing when no server does.
    Owner {
        /// The site's domain (example.com).
        domain: String,
    },
    /// Make this server the site's owner. Refused while another server
    /// owns it and serves it, unless --take-over.
    Claim {
        /// The site's domain (example.com).
        domain: String,
        /// Take it from the server that serves it now: that server's
        /// discovery stops registering it and its unit fails.
        #[arg(long)]
        take_over: bool,
    },
    /// Hand the site from server FROM to server TO in one transaction (a
    /// move's switch). Refused when a third server owns it and serves it,
    /// unless --take-over.
    Transfer {
        /// The site's domain (example.com).
        domain: String,
        #[arg(long)]
        from: String,
        #[arg(long)]
        to: String,
        /// Take it from a third server that serves it now.
        #[arg(long)]
        take_over: bool,
    },
    /// Print the site's declaration: its kind, its aliases, its path
    /// redirects, canonical name, basic auth user, headers preset and the
    /// server that owns it.
    Show {
        /// The site's domain (example.com).
        domain: String,
    },
    /// Change the site's aliases (other names that answer with a 301 to
    /// it, as its www. name does unless --canonical www), path redirects,
    /// canonical name, basic auth and security headers. HAProxy follows
    /// at once, without a reload; the site's ACME certificate is ordered
    /// again to cover new aliases. Run it on the server that owns the site.
    Set {
        /// The site's domain (example.com).
        domain: String,
        /// A name to add (repeat for more). Its DNS should point at the
        /// fleet: a name the CA cannot validate is left off the
        /// certificate.
        #[arg(long = "add-alias", value_name = "NAME")]
        add: Vec<String>,
        /// A name to remove (repeat for more).
        #[arg(long = "remove-alias", value_name = "NAME")]
        remove: Vec<String>,
        /// A path that redirects: [301:|308:]FROM=TO, e.g. /old=/new or
        /// 308:/api=https://api.example.org/v2 (301 unless 308 is given;
        /// the query string is kept). Replaces a rule of the same path.
        #[arg(long = "redirect", value_name = "RULE")]
        redirect: Vec<String>,
        /// Every path under a prefix: [301:|308:]PREFIX=TO, what follows
        /// the prefix appended to TO, e.g. /blog/=https://blog.example.org/.
        #[arg(long = "redirect-prefix", value_name = "RULE")]
        redirect_prefix: Vec<String>,
        /// Remove the redirect (exact or prefix) of this path.
        #[arg(long = "remove-redirect", value_name = "FROM")]
        remove_redirect: Vec<String>,
        /// The name the site is served under: bare (D; www.D redirects to
        /// it) or www (www.D; D redirects to it).
        #[arg(long, value_name = "bare|www")]
        canonical: Option<String>,
        /// Put the site behind a password (a preview) for USER; the
        /// password is read from stdin (one line, at least 16 characters),
        /// never from the command line, and only a salted hash is kept.
        #[arg(
            long = "basic-auth",
            value_name = "USER",
            conflicts_with = "remove_basic_auth"
        )]
        basic_auth: Option<String>,
        /// Remove the password.
        #[arg(long = "remove-basic-auth")]
        remove_basic_auth: bool,
        /// Security headers on the site's responses: none, basic
        /// (nosniff, referrer policy, same-origin frames) or strict (basic,
        /// HSTS over HTTPS and a permissions policy).
        #[arg(long, value_name = "none|basic|strict")]
        headers: Option<String>,
        /// WordPress: the largest upload (PHP's upload_max_filesize and
        /// post_max_size; HAProxy refuses a larger body with 413), e.g.
        /// 128M, at most wordpress.php_limits.upload.max.
        #[arg(long = "php-upload", value_name = "SIZE")]
        php_upload: Option<String>,
        /// WordPress: PHP's memory per request (memory_limit), e.g. 512M,
        /// at most wordpress.php_limits.memory.max.
        #[arg(long = "php-memory", value_name = "SIZE")]
        php_memory: Option<String>,
        /// WordPress: PHP's time per request (max_execution_time; HAProxy
        /// waits for the response that long and 5 s more), e.g. 120s, at
        /// most wordpress.php_limits.time.max.
        #[arg(long = "php-time", value_name = "TIME")]
        php_time: Option<String>,
        /// WordPress: the node config's default PHP limits again (a
        /// --php-... given beside it is kept).
        #[arg(long = "php-reset")]
        php_reset: bool,
    },
    /// Serve a static-git site's previously published tree again, at once,
    /// and publish nothing until a new commit is pushed (a bad deploy's
    /// undo). Run it again to go further back.
    Rollback {
        /// The site's domain (example.com), hosted on this server.
        domain: String,
    },
    /// A static-git site's deploy hook: print the URL a forge (GitHub,
    /// GitLab, Gitea, Forgejo) calls on every push and where its secret is,
    /// made the first time. The secret is printed only with --print.
    Hook {
        /// The site's domain (example.com), hosted on this server.
        domain: String,
        /// Replace the secret (the forge needs the new one).
        #[arg(long)]
        rotate: bool,
        /// Print the secret too, for the forge's hook settings.
        #[arg(long)]
        print: bool,
    },
    /// Remove the site's declaration (its kind and aliases) from etcd, e.g.
    /// before it comes back as another kind. Refused while the declared site
    /// runs; its data is left as it is.
    Forget {
        /// The site's domain, as in its unit name (example.com).
        domain: String,
    },
}

pub fn run(config: &NodeConfig, action: SiteAction) -> Result<u8, Failure> {
    match action {
        SiteAction::Forget { domain } => {
            let domain = Domain::parse_instance(&domain).map_err(usage)?;
            match hostyard::site::forget(config, &domain).map_err(runtime)? {
                hostyard::site::Forgot::Nothing => {
                    println!("{domain} has no declaration; nothing changed");
                }
                hostyard::site::Forgot::Declaration(kind) => {
                    let kind = kind.map_or("malformed".to_string(), |k| format!("a {k}"));
                    println!(
                        "forgot {domain} (declared as {kind} site); its data in {} is left as it is",
                        config.layout().domain_dir(&domain).display()
                    );
                }
            }
        }
        SiteAction::Show { domain } => {
            let domain = Domain::parse_instance(&domain).map_err(usage)?;
            let shown = hostyard::site::show(config, &domain).map_err(runtime)?;
            println!("kind: {}", shown.kind);
            print_decl(&shown.aliases, &shown.redirects);
            print_edge(&shown.edge);
            if shown.kind == hostyard_core::SiteKind::Wordpress {
                println!("{}", hostyard::php::describe(config, &shown.php));
            }
            println!("owner: {}", shown.owner.as_deref().unwrap_or("none"));
        }
        SiteAction::Set {
            domain,
            add,
            remove,
            redirect,
            redirect_prefix,
            remove_redirect,
            canonical,
            basic_auth,
            remove_basic_auth,
            headers,
            php_upload,
            php_memory,
            php_time,
            php_reset,
        } => {
            let domain = Domain::parse_instance(&domain).map_err(usage)?;
            let names = |list: Vec<String>| -> Result<Vec<Domain>, Failure> {
                list.iter()
                    .map(|n| Domain::parse_instance(n).map_err(usage))
                    .collect()
            };
            let rules = |list: Vec<String>, prefix: bool| -> Result<Vec<PathRedirect>, Failure> {
                list.iter()
                    .map(|r| PathRedirect::parse(r, prefix).map_err(|e| usage(anyhow::anyhow!(e))))
                    .collect()
            };
            let mut add_redirects = rules(redirect, false)?;
            add_redirects.extend(rules(redirect_prefix, true)?);
            let change = hostyard::site::SiteChange {
                add_aliases: names(add)?,
                remove_aliases: names(remove)?,
                add_redirects,
                remove_redirects: remove_redirect,
                canonical: canonical
                    .map(|c| Canonical::parse(&c).map_err(|e| usage(anyhow::anyhow!(e))))
                    .transpose()?,
                basic_auth: match (basic_auth, remove_basic_auth) {
                    (Some(user), _) => Some(Some(read_basic_auth(&user)?)),
                    (None, true) => Some(None),
                    (None, false) => None,
                },
                headers: headers
                    .map(|h| HeadersPreset::parse(&h).map_err(|e| usage(anyhow::anyhow!(e))))
                    .transpose()?,
                php: php_change(php_upload, php_memory, php_time, php_reset)?,
            };
            if change.is_empty() {
                return Err(usage(anyhow::anyhow!(
                    "nothing to set: name --add-alias NAME, --remove-alias NAME, --redirect \
                     FROM=TO, --redirect-prefix FROM=TO, --remove-redirect FROM, --canonical \
                     bare|www, --basic-auth USER, --remove-basic-auth, --headers PRESET, \
                     --php-upload SIZE, --php-memory SIZE, --php-time TIME or --php-reset"
                )));
            }
            let before_aliases = change.add_aliases.len() + change.remove_aliases.len();
            let set = hostyard::site::set(config, &domain, &change).map_err(runtime)?;
            if !set.changed {
                println!("{domain} is set so already; nothing changed");
                print_decl(&set.decl.aliases, &set.decl.edge.redirects);
                print_edge(&set.decl.edge);
                print_php(config, &domain, &set.decl, &change.php)?;
                return Ok(0);
            }
            println!("{domain} is now:");
            print_decl(&set.decl.aliases, &set.decl.edge.redirects);
            print_edge(&set.decl.edge);
            print_php(config, &domain, &set.decl, &change.php)?;
            // A certificate this server orders is ordered again for the
            // new names; an imported one is the operator's.
            let layout = config.layout();
            if before_aliases > 0
                && config.tls.acme.enabled()
                && layout.domain_dir(&domain).is_dir()
                && hostyard_tls::acme::orders(&layout, &domain)
            {
                hostyard::tls::renew(config, &domain).map_err(runtime)?;
                println!("{}", hostyard::tls::next_steps(config, &domain));
            }
        }
        SiteAction::Rollback { domain } => {
            let domain = Domain::parse_instance(&domain).map_err(usage)?;
            let layout = config.layout();
            if !layout.git_repo_dir(&domain).is_dir() {
                return Err(runtime(anyhow::anyhow!(
                    "{domain} has no repository here ({}): only a static-git site hosted on this \
                     server has published trees to roll back to",
                    layout.git_repo_dir(&domain).display()
                )));
            }
            let done = hostyard_git::rollback(&layout, &domain).map_err(runtime)?;
            println!(
                "{domain} serves {} again (was {}); pulls publish nothing until a new commit is pushed",
                done.to, done.from
            );
        }
        SiteAction::Hook {
            domain,
            rotate,
            print,
        } => {
            let domain = Domain::parse_instance(&domain).map_err(usage)?;
            let hook = hostyard::hook::ensure(config, &domain, rotate).map_err(runtime)?;
            println!("url: {}", hook.url);
            println!("content type: application/json");
            println!(
                "secret: {}{}",
                hook.secret_file.display(),
                if hook.new {
                    " (new: give it to the forge)"
                } else {
                    ""
                }
            );
            if print {
                println!("{}", hostyard::hook::secret(&hook).map_err(runtime)?);
            }
        }
        SiteAction::Owner { domain } => {
            let domain = Domain::parse_instance(&domain).map_err(usage)?;
            if let Some(owner) = hostyard::owner::owner(config, &domain).map_err(runtime)? {
                println!("{owner}");
            }
        }
        SiteAction::Claim { domain, take_over } => {
            let domain = Domain::parse_instance(&domain).map_err(usage)?;
            let again = format!("hostyard site claim {domain} --take-over");
            let changed = hostyard::owner::claim(config, &domain, take_over, false, &again)
                .map_err(runtime)?;
            println!("{}", changed.describe(&domain, &config.node_name()));
        }
        SiteAction::Transfer {
            domain,
            from,
            to,
            take_over,
        } => {
            let domain = Domain::parse_instance(&domain).map_err(usage)?;
            for name in [&from, &to] {
                hostyard_core::etcd::parse_owner(name.as_bytes())
                    .map_err(|e| usage(anyhow::anyhow!("server name {name:?}: {}", e.reason)))?;
            }
            let changed = hostyard::owner::transfer(config, &domain, &from, &to, take_over)
                .map_err(runtime)?;
            println!("{}", changed.describe(&domain, &to));
        }
    }
    Ok(0)
}

/// `--php-...` as given, each parsed.
fn php_change(
    upload: Option<String>,
    memory: Option<String>,
    time: Option<String>,
    reset: bool,
) -> Result<hostyard_core::php::PhpChange, Failure> {
    use hostyard_core::php::{Seconds, Size};
    let flag = |name: &str, e: String| usage(anyhow::anyhow!("--{name}: {e}"));
    Ok(hostyard_core::php::PhpChange {
        reset,
        upload: upload
            .map(|t| Size::parse(&t).map_err(|e| flag("php-upload", e)))
            .transpose()?,
        memory: memory
            .map(|t| Size::parse(&t).map_err(|e| flag("php-memory", e)))
            .transpose()?,
        time: time
            .map(|t| Seconds::parse(&t).map_err(|e| flag("php-time", e)))
            .transpose()?,
    })
}

/// A change of the PHP limits: printed, and applied to the site's Apache
/// here (also when the declaration held them already: a site.conf lost
/// or a signal missed is made good by running the command again).
fn print_php(
    config: &NodeConfig,
    domain: &Domain,
    decl: &hostyard_core::etcd::SiteDecl,
    change: &hostyard_core::php::PhpChange,
) -> Result<(), Failure> {
    if change.is_empty() {
        return Ok(());
    }
    println!("{}", hostyard::php::describe(config, &decl.php));
    let container = decl.kind.container_name(domain);
    match hostyard::php::apply(config, domain, &decl.php).map_err(runtime)? {
        hostyard::php::Applied::Reloaded => println!(
            "{container}'s Apache restarted gracefully with them (no request lost); HAProxy \
             follows at once"
        ),
        hostyard::php::Applied::NotRunning => println!(
            "{domain} does not run here: it starts with them (`systemctl start {}`)",
            decl.kind
                .instance_unit(hostyard_core::UnitRole::Site, domain)
        ),
        hostyard::php::Applied::NotHere => println!(
            "{domain}'s data is not on this server: the server that hosts it applies them \
             there with the same command"
        ),
    }
    Ok(())
}

/// The settable part of a declaration, one line per setting: `aliases:`
/// and one `redirect:` or `redirect-prefix:` line per rule, as
/// `hostyard site set` takes it back.
fn print_decl(aliases: &[Domain], redirects: &[PathRedirect]) {
    println!("aliases: {}", listed(aliases));
    for r in redirects {
        let what = if r.prefix {
            "redirect-prefix"
        } else {
            "redirect"
        };
        println!("{what}: {}", r.spec());
    }
}

/// The canonical name, basic auth (its user only) and headers preset, one
/// line each, as `hostyard site set` takes them.
fn print_edge(edge: &EdgeRules) {
    println!("canonical: {}", edge.canonical.as_str());
    println!(
        "basic-auth: {}",
        edge.basic_auth.as_ref().map_or("none", |a| a.user.as_str())
    );
    println!("headers: {}", edge.headers.as_str());
}

/// `--basic-auth USER`: the password is the first line of stdin, which
/// must not be a terminal (it would echo the password); a new random salt.
fn read_basic_auth(user: &str) -> Result<BasicAuth, Failure> {
    use std::io::{BufRead, IsTerminal};
    let stdin = std::io::stdin();
    if stdin.is_terminal() {
        return Err(usage(anyhow::anyhow!(
            "--basic-auth reads the password from stdin, which is a terminal here: give it \
             from a file, e.g. `openssl rand -base64 18 > preview.pass` then \
             `hostyard site set D --basic-auth {user} < preview.pass`"
        )));
    }
    let mut line = String::new();
    stdin
        .lock()
        .read_line(&mut line)
        .map_err(|e| usage(anyhow::anyhow!("reading the password from stdin: {e}")))?;
    let password = line.strip_suffix('\n').unwrap_or(&line);
    let password = password.strip_suffix('\r').unwrap_or(password);
    let salt: [u8; 16] = hostyard_core::secret::random_bytes(16)
        .map_err(|e| runtime(anyhow::anyhow!(e)))?
        .try_into()
        .map_err(|_| runtime(anyhow::anyhow!("16 random bytes were not 16")))?;
    BasicAuth::new(user, password, salt).map_err(|e| usage(anyhow::anyhow!(e)))
}
