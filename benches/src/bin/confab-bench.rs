//! `confab-bench`: load scenarios against a running Confab server. See `confab-bench --help`
//! and benches/RESULTS.md.

// Functions stay short enough to read at once (threshold in clippy.toml); tests may not.
#![warn(clippy::too_many_lines)]

use clap::Parser;
use confab_benches::cli::{Cli, Scenario};

/// Open files wanted: every connection is a socket, plus slack.
const OPEN_FILES: u64 = 65_536;

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let limit = confab_benches::raise_open_files(OPEN_FILES);
    eprintln!(
        "confab-bench {}: open-file limit {limit}",
        cli.scenario.name()
    );
    if let Scenario::Floor(args) = &cli.scenario {
        confab_benches::floor::run(args)?.print();
        return Ok(());
    }
    if let Scenario::Plot(args) = &cli.scenario {
        for file in confab_benches::plot::run(args)? {
            println!("wrote {}", file.display());
        }
        return Ok(());
    }
    if let Scenario::Search(args) = &cli.scenario {
        confab_benches::search::run(args)?.print();
        return Ok(());
    }
    let runtime = tokio::runtime::Runtime::new()?;
    if let Scenario::ScaleWorker = &cli.scenario {
        runtime.block_on(confab_benches::scale::worker::run())?;
        runtime.shutdown_timeout(std::time::Duration::from_secs(1));
        return Ok(());
    }
    if let Scenario::Scale(args) = cli.scenario {
        let report = runtime.block_on(confab_benches::scale::run(cli.common, args))?;
        report.print();
        runtime.shutdown_timeout(std::time::Duration::from_secs(1));
        return Ok(());
    }
    let report = runtime.block_on(confab_benches::scenario::run(cli.common, cli.scenario))?;
    report.print();
    // Tasks still closing sockets must not hold the exit.
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    Ok(())
}
