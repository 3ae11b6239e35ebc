//! hostyard-discovery (to be written: see its issue).

use clap::Parser;

#[derive(Parser)]
#[command(version, about)]
struct Cli {}

fn main() -> anyhow::Result<()> {
    let _cli = Cli::parse();
    anyhow::bail!("not implemented yet")
}
