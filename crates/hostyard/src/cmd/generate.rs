//! `hostyard generate`: every unit into a directory, only what changed.

use std::path::Path;

use hostyard::units::{check_config_path, render_units};
use hostyard::write::{check_units, write_units};
use hostyard_config::NodeConfig;

use super::{note, runtime, usage, Failure};

pub fn run(
    config: &NodeConfig,
    config_path: &Path,
    out: &Path,
    check: bool,
) -> Result<u8, Failure> {
    // The units name the config as an absolute path: they run from /.
    let config_path = std::path::absolute(config_path)
        .map_err(|e| usage(anyhow::anyhow!("--config {}: {e}", config_path.display())))?;
    check_config_path(&config_path).map_err(usage)?;
    let hidden = config.unit_path_problems();
    if !hidden.is_empty() {
        return Err(usage(anyhow::anyhow!(
            "{}: {}",
            config_path.display(),
            hidden.join("; ")
        )));
    }
    let files = render_units(config, &config_path)
        .map_err(|e| runtime(anyhow::Error::new(e).context("cannot render the units")))?;
    if check {
        let differences = check_units(out, &files).map_err(runtime)?;
        if print_lines(&differences, files.len(), out, "are") {
            return Ok(0);
        }
        note(format_args!(
            "{} of {} units in {} are not up to date; run hostyard generate --out {}",
            differences.len(),
            files.len(),
            out.display(),
            out.display()
        ));
        return Ok(1);
    }
    let changes = write_units(out, &files).map_err(runtime)?;
    if !print_lines(&changes, files.len(), out, "were") {
        note(format_args!(
            "wrote {} of {} units; run systemctl daemon-reload",
            changes.len(),
            files.len()
        ));
    }
    Ok(0)
}

/// Prints a line for each written or differing file; with none, notes that
/// all `total` units in `out` `are` (or `were`) up to date and says so.
fn print_lines(lines: &[impl std::fmt::Display], total: usize, out: &Path, are: &str) -> bool {
    for line in lines {
        println!("{line}");
    }
    if lines.is_empty() {
        note(format_args!(
            "all {total} units in {} {are} up to date",
            out.display()
        ));
    }
    lines.is_empty()
}
