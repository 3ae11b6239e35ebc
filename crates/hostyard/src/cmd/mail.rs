//! `hostyard mail` and `mail-wait`: postfix's config from the forward
//! files, its certificate, and the wait for it to answer.

use hostyard::write::{check_units, write_units, Change, Difference};
use hostyard_config::NodeConfig;

use super::{error_chain, note, runtime, usage, warn, Failure};

/// `hostyard mail dns|rotate-dkim D`.
#[derive(clap::Subcommand)]
pub enum MailAction {
    /// Print the SPF, DKIM and DMARC records DOMAIN publishes for the mail
    /// its site sends from this server (zone file lines).
    Dns {
        /// The site's domain (example.com).
        domain: String,
    },
    /// Rotate DOMAIN's DKIM key in two steps: first a new key (the next
    /// selector) made at the next `systemctl reload postfix` while the old
    /// one keeps signing (`hostyard mail dns DOMAIN` prints both records:
    /// publish the new one); then, with --finish, the new key signs from
    /// the next reload on.
    RotateDkim {
        /// The site's domain (example.com).
        domain: String,
        /// The second step: sign with the new key (refused until it is
        /// made).
        #[arg(long)]
        finish: bool,
    },
}

/// `hostyard mail dns D` and `hostyard mail rotate-dkim D`.
pub fn action(config: &NodeConfig, action: MailAction) -> Result<u8, Failure> {
    use hostyard::mail;
    use hostyard_core::Domain;
    let layout = config.layout();
    let parse = |d: &str| {
        Domain::parse(d).map_err(|e| usage(anyhow::anyhow!("{d:?} is not a domain: {e}")))
    };
    let sends = |domain: &Domain| -> Result<(), Failure> {
        let (sites, _) = mail::mail_sites(&layout).map_err(runtime)?;
        if sites.iter().any(|s| &s.domain == domain) {
            Ok(())
        } else {
            Err(usage(anyhow::anyhow!(
                "{domain} is no site on this server that sends mail (a WordPress site's data in {})",
                layout.domains_dir().display()
            )))
        }
    };
    match action {
        MailAction::Dns { domain } => {
            let domain = parse(&domain)?;
            sends(&domain)?;
            let hostname = mail_hostname(config)?;
            let records = mail::expected_records(&layout, &hostname, &domain)
                .map_err(|e| runtime(anyhow::anyhow!(e)))?;
            for (name, value) in records {
                println!("{name} IN TXT {}", mail::zone_txt(&value));
            }
            Ok(0)
        }
        MailAction::RotateDkim { domain, finish } => {
            use hostyard_core::mail::RotationStep;
            let domain = parse(&domain)?;
            sends(&domain)?;
            let rotation =
                mail::read_rotation(&layout, &domain).map_err(|e| runtime(anyhow::anyhow!(e)))?;
            let step = hostyard_core::mail::rotation_step(&domain, &rotation, finish)
                .map_err(|e| usage(anyhow::Error::new(e)))?;
            let write = |path: std::path::PathBuf, selector: &hostyard_core::mail::Selector| {
                hostyard_fs::AtomicWrite::new(0o644)
                    .write(&path, format!("{selector}\n").as_bytes())
                    .map_err(runtime)
            };
            match step {
                RotationStep::Start { next } => {
                    write(mail::pending_file(&layout, &domain), &next)?;
                    note(format_args!(
                        "{domain}: {next} is the next key; {} keeps signing. Next: systemctl reload postfix (makes {next}'s key), publish the {next} record `hostyard mail dns {domain}` prints, then `hostyard mail rotate-dkim {domain} --finish`",
                        rotation.signing
                    ));
                }
                RotationStep::Started { next } => {
                    let made = if rotation.pending_key_made {
                        format!("its key is made: publish the {next} record `hostyard mail dns {domain}` prints, then `hostyard mail rotate-dkim {domain} --finish`")
                    } else {
                        "its key is made at the next `systemctl reload postfix`".to_string()
                    };
                    note(format_args!(
                        "{domain}: the rotation to {next} is under way already; {made}"
                    ));
                }
                RotationStep::Switch { from, to } => {
                    write(mail::selector_file(&layout, &domain), &to)?;
                    let pending = mail::pending_file(&layout, &domain);
                    std::fs::remove_file(&pending).map_err(|e| {
                        runtime(anyhow::anyhow!("cannot remove {}: {e}", pending.display()))
                    })?;
                    note(format_args!(
                        "{domain} signs with {to} after `systemctl reload postfix`; keep {from}'s record published for a week (mail in flight was signed with it)"
                    ));
                }
            }
            Ok(0)
        }
    }
}

/// `hostyard mail`: validate every forward file, then write postfix's config
/// dir (only files that changed). A bad forward file is reported, one line
/// each, and skipped (its domain deferred): postfix.service runs this before
/// every start, and one typo must not stop mail for every domain. `--check`
/// lists bad files too, and exits 1 for them.
pub fn run(config: &NodeConfig, check: bool) -> Result<u8, Failure> {
    use hostyard::mail;
    let layout = config.layout();
    let forwards = layout.postfix_forwards_dir();
    let read = mail::read_forwards(&forwards).map_err(runtime)?;
    for bad in &read.bad {
        let deferred = match &bad.domain {
            Some(d) => format!("mail for {d} is deferred until it is fixed"),
            None => "fix or remove it".to_string(),
        };
        warn(format_args!(
            "skipped {}; {deferred}",
            error_chain(&bad.error)
        ));
    }
    let deferred = read.deferred();
    let maps = read.maps;
    let (sites, bad_sites) = mail::mail_sites(&layout).map_err(runtime)?;
    for bad in &bad_sites {
        warn(format_args!("no mail submission for {bad}"));
    }
    let hostname = mail_hostname(config)?;
    let cert = mail::mail_certificate(&layout, &hostname).map_err(runtime)?;
    if cert.is_none() {
        warn(format_args!(
            "no certificate for {hostname} and no default one in {}: postfix offers no STARTTLS until haproxy-confd has made one",
            layout.haproxy_certs_dir().display()
        ));
    }
    let files = mail::render_mail(
        &layout,
        &hostname,
        &config.mail.relayhost,
        &maps,
        &deferred,
        &sites,
        config.mail.site_hourly_cap,
        cert.is_some(),
    )
    .map_err(|e| runtime(anyhow::Error::new(e).context("cannot render postfix's config")))?;
    let out = layout.postfix_config_dir();
    let tls_path = out.join(mail::TLS_PEM);
    let tls_current = hostyard_fs::read_if_exists(&tls_path).map_err(runtime)?;
    let tls_stale = tls_current.as_deref() != cert.as_ref().map(|c| c.pem.as_slice());
    if check {
        let mut differences = check_units(&out, &files).map_err(runtime)?;
        if tls_stale {
            differences.push(match tls_current {
                None => Difference::Missing(tls_path.clone()),
                Some(_) => Difference::Differs(tls_path.clone()),
            });
        }
        for d in &differences {
            println!("{d}");
        }
        for bad in &read.bad {
            println!("bad {}", error_chain(&bad.error));
        }
        return Ok(u8::from(!differences.is_empty() || !read.bad.is_empty()));
    }
    // The operator's directory and postfix's queue exist from the first
    // render on, so there is an obvious place to put a forward file.
    let mut dirs = vec![
        forwards.clone(),
        layout.postfix_queue_dir(),
        layout.dkim_dir(),
    ];
    dirs.extend(sites.iter().map(|s| layout.dkim_domain_dir(&s.domain)));
    for dir in &dirs {
        std::fs::create_dir_all(dir)
            .map_err(|e| runtime(anyhow::anyhow!("cannot create {}: {e}", dir.display())))?;
    }
    let mut changes = write_units(&out, &files).map_err(runtime)?;
    // Before postfix reads main.cf's TLS lines; a private key: 0600.
    if tls_stale {
        match &cert {
            Some(c) => {
                hostyard_tls::files::KEY_FILE
                    .write(&tls_path, &c.pem)
                    .map_err(runtime)?;
                changes.push(match tls_current {
                    None => Change::Created(tls_path.clone()),
                    Some(_) => Change::Updated(tls_path.clone()),
                });
                note(format_args!(
                    "postfix's certificate is now {}",
                    c.source.display()
                ));
            }
            None => std::fs::remove_file(&tls_path).map_err(|e| {
                runtime(anyhow::anyhow!("cannot remove {}: {e}", tls_path.display()))
            })?,
        }
    }
    for c in &changes {
        println!("{c}");
    }
    note(format_args!(
        "mail for {} domain(s) from {}; {} of {} files in {} changed",
        maps.len(),
        forwards.display(),
        changes.len(),
        files.len() + usize::from(cert.is_some()),
        out.display()
    ));
    Ok(0)
}

/// The name postfix greets with, from the config or the kernel.
fn mail_hostname(config: &NodeConfig) -> Result<String, Failure> {
    let kernel_hostname = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_default();
    hostyard::mail::mail_hostname(config, &kernel_hostname).map_err(usage)
}

/// `hostyard mail --certificate-changed`: whether postfix's copy of its
/// certificate differs from the one it should offer (exit 0: reload it; 1:
/// nothing to do). postfix-tls.service asks this whenever HAProxy's
/// certificate directory changes, so a renewal of another site's
/// certificate does not reload postfix.
pub fn certificate_changed(config: &NodeConfig) -> Result<u8, Failure> {
    let layout = config.layout();
    let hostname = mail_hostname(config)?;
    let cert = hostyard::mail::mail_certificate(&layout, &hostname).map_err(runtime)?;
    let copy = layout.postfix_config_dir().join(hostyard::mail::TLS_PEM);
    let current = hostyard_fs::read_if_exists(&copy).map_err(runtime)?;
    if current.as_deref() == cert.as_ref().map(|c| c.pem.as_slice()) {
        return Ok(1);
    }
    let source = cert.map_or_else(|| "none".to_string(), |c| c.source.display().to_string());
    note(format_args!(
        "postfix's certificate is out of date (now: {source})"
    ));
    Ok(0)
}

/// `hostyard mail-wait`: until postfix answers SMTP, within `timeout`.
pub fn wait(timeout: u64) -> Result<u8, Failure> {
    let address = hostyard::mail::SMTP_ADDRESS
        .parse()
        .map_err(|e| runtime(anyhow::anyhow!("{e}")))?;
    let took = hostyard::mail::wait_for_smtp(address, std::time::Duration::from_secs(timeout))
        .map_err(|e| runtime(anyhow::anyhow!(e)))?;
    note(format_args!(
        "postfix answers on {address} after {} ms",
        took.as_millis()
    ));
    Ok(0)
}
