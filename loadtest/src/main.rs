//! `parkme-loadtest`: runs one scenario against a ParkMe URL, prints the
//! summary, writes the JSON (and HTML) report. Exit 0 when every invariant
//! holds, 2 when one breaks, 1 when the run could not happen.

use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use parkme_loadtest::{Cli, html, run};

fn main() -> ExitCode {
    match real_main() {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(2),
        Err(e) => {
            eprintln!("parkme-loadtest: {e:#}");
            ExitCode::from(1)
        }
    }
}

fn real_main() -> anyhow::Result<bool> {
    let cli = Cli::parse();
    cli.validate()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let report = runtime.block_on(run(&cli))?;
    print!("{}", report.summary());
    if let Some(path) = &cli.report {
        let json = serde_json::to_string_pretty(&report).context("encoding the report")?;
        std::fs::write(path, json).with_context(|| format!("writing {}", path.display()))?;
    }
    if let Some(path) = &cli.html {
        std::fs::write(path, html::render(&report))
            .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(report.invariants_ok)
}
