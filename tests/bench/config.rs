//! Settings: `--flag VALUE` on the command line, else `BENCH_*` in the environment,
//! else the defaults (the figures, or smaller ones with `BENCH_QUICK=1`).

use std::path::PathBuf;

use anyhow::{Context, Result, bail};

/// What `tailbox-bench --help` prints.
pub const HELP: &str = "\
tailbox-bench: throwaway PostgreSQL 15 + Kafka, then measures pg_recvlogical's drain rate,
tailbox's catch-up rate and cost, commit->Kafka latency under steady load, and one huge
transaction, the catch-up into Redis Streams, and HTTP webhooks (a local receiver). Writes target/bench/report.md and report.json; the Markdown table goes to
stdout, progress to stderr. Every figure is the median of --runs runs.

Options (flag, or the environment variable beside it; flags win):
  --runs N               BENCH_RUNS              runs per figure (default 3)
  --rows N               BENCH_ROWS              catch-up rows (default 1000000; quick 200000)
  --txn-size N           BENCH_TXN_SIZE          rows per catch-up transaction (default 100)
  --payload-bytes N      BENCH_PAYLOAD_BYTES     JSON payload size (default 200)
  --rate N               BENCH_RATE              steady load, events/s (default 10000)
  --duration-secs N      BENCH_DURATION_SECS     steady load duration (default 60; quick 15)
  --steady-txn-size N    BENCH_STEADY_TXN_SIZE   events per steady transaction (default 10)
  --writers N            BENCH_WRITERS           steady writer connections (default 4)
  --huge-rows N          BENCH_HUGE_ROWS         rows of the huge transaction (default 1000000; quick 200000)
  --partitions N         BENCH_PARTITIONS        partitions of each bench topic (default 3)
  --status-interval-ms N BENCH_STATUS_INTERVAL_MS  tailbox --status-interval-ms (default 100)
  --phases LIST          BENCH_PHASES            comma list of catchup,steady,huge,redis,webhook (default all)
  --tailbox-arg ARG      BENCH_TAILBOX_ARGS      extra tailbox argument, repeatable (env: space-separated),
                                                 e.g. BENCH_TAILBOX_ARGS='--kafka-prop linger.ms=1'
  --out DIR              BENCH_OUT               report directory (default <workspace>/target/bench)
  --nice N               BENCH_NICE              nice value for PostgreSQL, Kafka, tailbox and the bench
                                                 (default -10 as root, so other work on a shared machine
                                                 disturbs less; 0 = leave priorities alone)
  --quiet-wait-secs N    BENCH_QUIET_WAIT_SECS   before each run, wait up to N s until other processes use
                                                 less than half a core (default 60; 0 = don't wait)
  --quick                BENCH_QUICK=1           smaller defaults (see above): a few minutes in all

The tailbox binary is the release build: run through `make bench`, or set
TAILBOX_TEST_RELEASE=1 (or TAILBOX_BIN=/path/to/tailbox).

Internal: `tailbox-bench produce-floor [--sink kafka|redis|webhook] ...` is the child
process the catchup, redis and webhook phases run for their sink-alone references (see
tests/bench/producer.rs for its arguments); it is not meant to be run by hand.
";

/// Which measurements to take.
#[derive(Debug, Clone, Copy)]
pub struct Phases {
    pub catchup: bool,
    pub steady: bool,
    pub huge: bool,
    pub redis: bool,
    pub webhook: bool,
}

impl Phases {
    /// Whether a phase publishes to Kafka (the Kafka warm-up is for those).
    pub fn uses_kafka(&self) -> bool {
        self.catchup || self.steady || self.huge
    }
}

/// Resolved settings.
#[derive(Debug, Clone)]
pub struct Config {
    pub runs: u32,
    pub rows: u64,
    pub txn_size: u64,
    pub payload_bytes: u32,
    pub rate: u64,
    pub duration_secs: u64,
    pub steady_txn_size: u64,
    pub writers: u32,
    pub huge_rows: u64,
    pub partitions: i32,
    pub status_interval_ms: u64,
    pub phases: Phases,
    pub tailbox_args: Vec<String>,
    pub out: PathBuf,
    pub quick: bool,
    pub nice: i32,
    pub quiet_wait_secs: u64,
}

/// Raw values by option name, from flags then the environment.
struct Source {
    flags: Vec<(String, String)>,
    quick_flag: bool,
    extra_args: Vec<String>,
}

impl Source {
    fn get(&self, name: &str) -> Option<String> {
        if let Some((_, v)) = self.flags.iter().rev().find(|(k, _)| k == name) {
            return Some(v.clone());
        }
        let env = format!("BENCH_{}", name.replace('-', "_").to_ascii_uppercase());
        std::env::var(env).ok().filter(|v| !v.trim().is_empty())
    }

    fn number<T: std::str::FromStr>(&self, name: &str, default: T) -> Result<T> {
        match self.get(name) {
            None => Ok(default),
            Some(v) => v
                .trim()
                .replace('_', "")
                .parse()
                .ok()
                .with_context(|| format!("--{name}: {v:?} is not a valid number")),
        }
    }
}

impl Config {
    /// Parses `std::env::args()`; `Ok(None)` after printing `--help`.
    pub fn from_args() -> Result<Option<Config>> {
        let mut args = std::env::args().skip(1);
        let mut src = Source { flags: Vec::new(), quick_flag: false, extra_args: Vec::new() };
        while let Some(arg) = args.next() {
            match arg.as_str() {
                "-h" | "--help" => {
                    print!("{HELP}");
                    return Ok(None);
                }
                "--quick" => src.quick_flag = true,
                "--tailbox-arg" => {
                    let v = args.next().context("--tailbox-arg needs a value")?;
                    src.extra_args.push(v);
                }
                flag if flag.starts_with("--") => {
                    let (name, value) = match flag[2..].split_once('=') {
                        Some((n, v)) => (n.to_owned(), v.to_owned()),
                        None => (
                            flag[2..].to_owned(),
                            args.next().with_context(|| format!("{flag} needs a value"))?,
                        ),
                    };
                    if name == "tailbox-arg" {
                        src.extra_args.push(value);
                    } else {
                        src.flags.push((name, value));
                    }
                }
                other => bail!("unexpected argument {other:?}; see --help"),
            }
        }
        Config::resolve(&src).map(Some)
    }

    fn resolve(src: &Source) -> Result<Config> {
        const KNOWN: &[&str] = &[
            "runs",
            "rows",
            "txn-size",
            "payload-bytes",
            "rate",
            "duration-secs",
            "steady-txn-size",
            "writers",
            "huge-rows",
            "partitions",
            "status-interval-ms",
            "phases",
            "out",
            "nice",
            "quiet-wait-secs",
        ];
        if let Some((name, _)) = src.flags.iter().find(|(k, _)| !KNOWN.contains(&k.as_str())) {
            bail!("unknown option --{name}; see --help");
        }
        let quick = src.quick_flag
            || std::env::var("BENCH_QUICK")
                .map(|v| !matches!(v.trim(), "" | "0" | "false" | "no" | "off"))
                .unwrap_or(false);
        let phases = match src.get("phases") {
            None => Phases { catchup: true, steady: true, huge: true, redis: true, webhook: true },
            Some(list) => {
                let mut p = Phases {
                    catchup: false,
                    steady: false,
                    huge: false,
                    redis: false,
                    webhook: false,
                };
                for item in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
                    match item {
                        "catchup" => p.catchup = true,
                        "steady" => p.steady = true,
                        "huge" => p.huge = true,
                        "redis" => p.redis = true,
                        "webhook" => p.webhook = true,
                        other => {
                            bail!(
                                "--phases: unknown phase {other:?} (catchup, steady, huge, redis, webhook)"
                            )
                        }
                    }
                }
                p
            }
        };
        let mut tailbox_args: Vec<String> = std::env::var("BENCH_TAILBOX_ARGS")
            .map(|v| v.split_whitespace().map(str::to_owned).collect())
            .unwrap_or_default();
        if !src.extra_args.is_empty() {
            tailbox_args.clone_from(&src.extra_args);
        }
        let out = match src.get("out") {
            Some(dir) => PathBuf::from(dir),
            None => tailbox_e2e::workspace_root().join("target").join("bench"),
        };
        let cfg = Config {
            runs: src.number("runs", 3)?,
            rows: src.number("rows", if quick { 200_000 } else { 1_000_000 })?,
            txn_size: src.number("txn-size", 100)?,
            payload_bytes: src.number("payload-bytes", 200)?,
            rate: src.number("rate", 10_000)?,
            duration_secs: src.number("duration-secs", if quick { 15 } else { 60 })?,
            steady_txn_size: src.number("steady-txn-size", 10)?,
            writers: src.number("writers", 4)?,
            huge_rows: src.number("huge-rows", if quick { 200_000 } else { 1_000_000 })?,
            partitions: src.number("partitions", 3)?,
            status_interval_ms: src.number("status-interval-ms", 100)?,
            phases,
            tailbox_args,
            out,
            quick,
            nice: src.number("nice", if is_root() { -10 } else { 0 })?,
            quiet_wait_secs: src.number("quiet-wait-secs", 60)?,
        };
        if cfg.runs == 0
            || cfg.rows == 0
            || cfg.txn_size == 0
            || cfg.rate == 0
            || cfg.duration_secs == 0
            || cfg.steady_txn_size == 0
            || cfg.writers == 0
            || cfg.huge_rows == 0
            || cfg.partitions <= 0
        {
            bail!("runs, rows, sizes, rate, duration, writers and partitions must be positive");
        }
        Ok(cfg)
    }
}

/// Whether we run as root (only root may lower a nice value).
fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(1).map(|u| u == "0"))
        })
        .unwrap_or(false)
}
