//! `hostyard mail` and `mail-wait`: postfix's config from the forward
//! files, its certificate, and the wait for it to answer.

use hostyard::write::{check_units, write_units, Change, Difference};
use hostyard_config::NodeConfig;

use super::{error_chain, note, runtime, usage, warn, Failure};

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
    for dir in [&forwards, &layout.postfix_queue_dir()] {
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
