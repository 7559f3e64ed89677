//! The `tailbox` binary: reads configuration, wires the pipeline, handles signals and
//! turns errors into one line and an exit code.
//!
//! Place in the data path: the outermost edge. Everything between PostgreSQL and Kafka
//! lives in the library crates; this crate only configures and starts them.
//!
//! # Layout
//! - [`cli`]: the command line (every flag also reads `TAILBOX_*` from the environment).
//! - [`logging`]: `tracing` output as text or JSON.
//! - [`run`]: `tailbox run`.

mod cli;
mod logging;
mod run;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    logging::init(cli.log_format);
    let result = match cli.command {
        cli::Command::Run(args) => run::run(*args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            // One line: the error and its causes, the fix included where we know it.
            eprintln!("tailbox: error: {err:#}");
            ExitCode::FAILURE
        }
    }
}
