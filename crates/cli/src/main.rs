//! The `tailbox` binary: reads configuration, wires the pipeline, handles signals and
//! turns errors into one line and an exit code.
//!
//! Place in the data path: the outermost edge. Everything between PostgreSQL and Kafka
//! lives in the library crates; this crate configures and starts them, and shows
//! operators what they do.
//!
//! # Layout
//! - [`options`]: every configuration option, defined once (flag, variable, file key,
//!   default, help).
//! - [`cli`]: the subcommands; each option also reads `TAILBOX_*` from the environment.
//! - [`load`]: flags > environment > TOML file > defaults, merged per key.
//! - [`config`]: the merged options validated into a [`config::Config`], redacted.
//! - [`logging`]: `tracing` output as text or JSON, and the live progress line.
//! - [`run`]: `tailbox run`.
//! - [`ops`], [`http`], [`progress`]: `/healthz` `/readyz` `/status`, the slot's
//!   retained WAL, progress lines.
//! - [`metrics`]: every exported metric defined once, and the `/metrics` exposition
//!   (`prometheus-client`); the docs table is tested against it.
//! - `reference` (tests): the generated configuration reference, docs/configuration.md.
//! - [`admin`]: `tailbox status`, `setup`, `teardown`, `cleanup`, with what they need
//!   of PostgreSQL beside them: [`catalog`] (the status reports) and [`scripts`] (the
//!   sql/ scripts setup and teardown run, and their statement splitter).

mod admin;
mod catalog;
mod cli;
mod config;
mod http;
mod load;
mod logging;
mod metrics;
mod ops;
mod options;
mod progress;
#[cfg(test)]
mod reference;
mod run;
mod scripts;

use std::process::ExitCode;

use clap::{ArgMatches, FromArgMatches};

use crate::{
    cli::{Cli, Command, ConfigCommand, DeadLettersCommand},
    config::ConfigErrors,
    options::Settings,
};

/// mimalloc for Rust's allocations; built with `override`, it also replaces `malloc`
/// and `free` for the C code linked in (librdkafka allocates and frees several blocks
/// per record), which glibc's allocator served at a quarter of the pipeline thread's
/// CPU (see docs/benchmarks.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let argv: Vec<_> = std::env::args_os().collect();
    let matches = match cli::command().try_get_matches_from(&argv) {
        Ok(matches) => matches,
        Err(err) => match load::clap_error(&err, &argv) {
            Some(errors) => return fail(&anyhow::Error::new(errors)),
            None => err.exit(),
        },
    };
    let cli = match Cli::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(err) => err.exit(),
    };
    let given = Settings::new(cli.global.clone(), cli.command.options());
    let config = match config::load(cli.config.as_deref(), &given, leaf_matches(&matches)) {
        Ok(config) => config,
        Err(errors) => return fail(&anyhow::Error::new(errors)),
    };
    logging::init(config.log_format);
    let result = match cli.command {
        Command::Run(_) => run::run(&config, None),
        Command::Backfill(args) => run::run(&config, Some(args.order_by.as_deref())),
        Command::Status(args) => admin::status(&config, args.json),
        Command::Setup(args) => admin::setup(&config, args.failover),
        Command::Cleanup(args) => {
            admin::cleanup(&config, &args.older_than, &args.timestamp_column, args.batch_size)
        }
        Command::Teardown(_) => admin::teardown(&config),
        Command::Config(ConfigCommand::Check(_)) => config_check(&config),
        Command::DeadLetters(DeadLettersCommand::List(args)) => {
            admin::dead_letters_list(&config, &args.ids, args.json)
        }
        Command::DeadLetters(DeadLettersCommand::Replay(args)) => {
            admin::dead_letters_replay(&config, &args.ids)
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => fail(&err),
    }
}

/// The matches of the innermost subcommand (where its options live).
fn leaf_matches(matches: &ArgMatches) -> &ArgMatches {
    let mut leaf = matches;
    while let Some((_, sub)) = leaf.subcommand() {
        leaf = sub;
    }
    leaf
}

/// `tailbox config check`: everything `run` checks before connecting, then the
/// effective configuration.
fn config_check(config: &config::Config) -> anyhow::Result<()> {
    config.pg()?;
    config.outbox()?;
    config.destination()?;
    print!("{}", config.render());
    eprintln!("tailbox: configuration is valid");
    Ok(())
}

/// One line per problem: the error and its causes, the fix included where we know it.
fn fail(err: &anyhow::Error) -> ExitCode {
    logging::clear_progress();
    match err.downcast_ref::<ConfigErrors>() {
        Some(errors) => {
            for line in &errors.0 {
                eprintln!("tailbox: error: {line}");
            }
        }
        None => eprintln!("tailbox: error: {}", config::name_fields(&format!("{err:#}"))),
    }
    ExitCode::FAILURE
}
