//! Command-line definition: the subcommands and the options only they take. The
//! configuration options (those a `TAILBOX_*` variable or the `--config` file may set
//! too) are defined in [`crate::options`]; [`command`] gives each its variable.

use std::path::PathBuf;

use clap::{Args, CommandFactory, Parser, Subcommand};

use crate::options::{DestinationOptions, GlobalOptions, Options, PgOptions, with_env};

/// Publishes transactional-outbox events from PostgreSQL to Kafka by tailing the WAL.
#[derive(Debug, Parser)]
#[command(name = "tailbox", version)]
pub struct Cli {
    /// TOML configuration file; keys are the option names with '_' (pg_url, slot,
    /// kafka_brokers, kafka_props = { "linger.ms" = "10" }, …).
    #[arg(long, global = true)]
    pub config: Option<PathBuf>,
    #[command(flatten)]
    pub global: GlobalOptions,
    #[command(subcommand)]
    pub command: Command,
}

/// The command line: [`Cli`] with the `TAILBOX_*` variable of every configuration option.
pub fn command() -> clap::Command {
    fn add_env(command: clap::Command) -> clap::Command {
        command.mut_args(with_env).mut_subcommands(add_env)
    }
    add_env(Cli::command())
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Stream outbox events to Kafka until SIGINT/SIGTERM.
    Run(Box<Options>),
    /// Create the slot with an exported snapshot, publish the rows already in the outbox
    /// table as of that snapshot, then stream on (no gap, no duplicate at the boundary).
    Backfill(Box<BackfillArgs>),
    /// Delete outbox rows older than an age, in batches (for users who keep rows; the
    /// publication carries inserts only, so this never affects publishing).
    Cleanup(CleanupArgs),
    /// Show the slot and publication (LSNs, retained WAL, lag, holder), the server's
    /// identity and, with Kafka settings, whether the checkpoint is this server's.
    Status(Box<StatusArgs>),
    /// Create the publication and the slot unless they exist (sql/02 and sql/03).
    Setup(SetupArgs),
    /// Drop the slot and the publication if they exist (sql/99_teardown.sql).
    Teardown(PgOptions),
    /// Configuration commands.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// The webhook sink's dead letters (table tailbox_dead_letter).
    #[command(subcommand)]
    DeadLetters(DeadLettersCommand),
}

impl Command {
    /// The configuration options this subcommand was given: the groups it has, the
    /// others unset.
    pub fn options(&self) -> Options {
        let with = |pg: &PgOptions, destination: Option<&DestinationOptions>| Options {
            pg: pg.clone(),
            destination: destination.cloned().unwrap_or_default(),
            ..Options::default()
        };
        match self {
            Command::Run(options) | Command::Config(ConfigCommand::Check(options)) => {
                (**options).clone()
            }
            Command::Backfill(args) => args.run.clone(),
            Command::Status(args) => with(&args.pg, Some(&args.destination)),
            Command::Setup(args) => with(&args.pg, None),
            Command::Cleanup(args) => with(&args.pg, None),
            Command::Teardown(pg) => with(pg, None),
            Command::DeadLetters(
                DeadLettersCommand::List(args) | DeadLettersCommand::Replay(args),
            ) => with(&args.pg, Some(&args.destination)),
        }
    }
}

/// `tailbox dead-letters …`.
#[derive(Debug, Subcommand)]
pub enum DeadLettersCommand {
    /// List dead letters not replayed yet (or those named with --id), oldest first.
    List(Box<DeadLettersArgs>),
    /// POST dead letters again (same body and webhook-id, fresh signature), one attempt
    /// each; a 2xx marks the row replayed.
    Replay(Box<DeadLettersArgs>),
}

/// Options of `tailbox dead-letters list|replay`.
#[derive(Debug, Args)]
pub struct DeadLettersArgs {
    /// Only this dead letter (repeatable) [default: every one not replayed yet].
    #[arg(long = "id")]
    pub ids: Vec<i64>,
    /// Print JSON lines instead of a table (list).
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub pg: PgOptions,
    #[command(flatten)]
    pub destination: DestinationOptions,
}

/// Options of `tailbox backfill`: those of `run`, and the order of the rows.
#[derive(Debug, Args)]
pub struct BackfillArgs {
    /// SQL ORDER BY expression for the backfilled rows [default: "timestamp" when the
    /// table has that column, else the table's physical order].
    #[arg(long)]
    pub order_by: Option<String>,
    #[command(flatten)]
    pub run: Options,
}

/// Options of `tailbox cleanup`.
#[derive(Debug, Args)]
pub struct CleanupArgs {
    /// Delete rows older than this PostgreSQL interval, e.g. "7 days" or "12 hours".
    #[arg(long)]
    pub older_than: String,
    /// The column holding the row's time.
    #[arg(long, default_value = "timestamp")]
    pub timestamp_column: String,
    /// Rows deleted per statement.
    #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(i64).range(1..=1_000_000))]
    pub batch_size: i64,
    #[command(flatten)]
    pub pg: PgOptions,
}

/// Options of `tailbox setup`.
#[derive(Debug, Args)]
pub struct SetupArgs {
    /// Create a failover slot (PostgreSQL 17+): standbys with sync_replication_slots = on
    /// keep a copy of it that survives their promotion (see docs/runbook.md).
    #[arg(long)]
    pub failover: bool,
    #[command(flatten)]
    pub pg: PgOptions,
}

/// `tailbox config …`.
#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Validate the configuration (flags, environment, file) and print the effective
    /// values with their sources, secrets redacted.
    Check(Box<Options>),
}

/// Options of `tailbox status`.
#[derive(Debug, Args)]
pub struct StatusArgs {
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub pg: PgOptions,
    /// With Kafka settings, status also reads the checkpoint topic and says whether the
    /// checkpoint there is this server's.
    #[command(flatten)]
    pub destination: DestinationOptions,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cli_definition_is_consistent() {
        command().debug_assert();
    }
}
