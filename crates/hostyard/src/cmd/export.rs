//! `hostyard export` and `hostyard refresh`: a site's data written in the
//! migration layout, and a stopped site brought up to a newer export (the
//! two copies of a move).

use std::path::Path;

use hostyard_config::NodeConfig;
use hostyard_core::Domain;

use super::{note, runtime, usage, Failure};

pub fn export(config: &NodeConfig, domain: &str, dir: &Path) -> Result<u8, Failure> {
    let domain = Domain::parse_instance(domain).map_err(usage)?;
    let kind = hostyard_backup::export(config, &domain, dir).map_err(runtime)?;
    note(format_args!(
        "exported {kind} site {domain} to {}",
        dir.display()
    ));
    Ok(0)
}

pub fn refresh(
    config: &NodeConfig,
    domain: &str,
    dir: &Path,
    db_timeout: u64,
) -> Result<u8, Failure> {
    let domain = Domain::parse_instance(domain).map_err(usage)?;
    let layout = config.layout();
    let unit = hostyard_backup::site_kind(&layout, &domain)
        .map_err(runtime)?
        .map(|k| k.site_unit(&domain));
    if let Some(unit) = unit.filter(|u| hostyard::site::unit_is_active(u)) {
        return Err(runtime(anyhow::anyhow!(
            "{unit} runs: a refresh replaces a stopped site's data; systemctl stop {unit} first"
        )));
    }
    let done = hostyard_backup::refresh::refresh(
        config,
        &domain,
        dir,
        std::time::Duration::from_secs(db_timeout),
    )
    .map_err(runtime)?;
    println!(
        "refreshed {} site {domain} from {}: {}",
        done.kind,
        dir.display(),
        if done.parts.is_empty() {
            "nothing to replace".to_string()
        } else {
            done.parts.join(", ")
        }
    );
    Ok(0)
}
