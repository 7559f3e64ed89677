//! Processes and their cost: CPU time and peak RSS from /proc, the tailbox process,
//! pg_recvlogical, a sink alone (Kafka's producer, Redis, webhooks), and waiting for a
//! slot to confirm a position.

use std::io::BufRead as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::env::Env;
use crate::producer;

/// pg_recvlogical of PostgreSQL 15.
pub const PG_RECVLOGICAL: &str = "/usr/lib/postgresql/15/bin/pg_recvlogical";

/// One look at a process in /proc.
#[derive(Debug, Clone, Copy, Default)]
pub struct ProcSample {
    /// user + system time of all its threads, in clock ticks.
    pub cpu_ticks: u64,
    /// Peak resident set size so far (VmHWM), KiB.
    pub hwm_kb: u64,
    /// Time the main thread spent runnable but waiting for a CPU
    /// (/proc/PID/schedstat), ns.
    pub runqueue_ns: u64,
}

impl ProcSample {
    pub fn cpu_secs(&self) -> f64 {
        self.cpu_ticks as f64 / clk_tck()
    }

    pub fn runqueue_secs(&self) -> f64 {
        self.runqueue_ns as f64 / 1e9
    }

    pub fn hwm_mib(&self) -> f64 {
        self.hwm_kb as f64 / 1024.0
    }
}

/// `getconf CLK_TCK` (100 on every Linux we know of).
fn clk_tck() -> f64 {
    static TCK: OnceLock<f64> = OnceLock::new();
    *TCK.get_or_init(|| {
        Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
            .unwrap_or(100.0)
    })
}

/// Reads /proc/PID/stat (utime, stime) and /proc/PID/status (VmHWM).
pub fn read_proc(pid: u32) -> Option<ProcSample> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may contain spaces) start at field 3.
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kb = |name: &str| -> u64 {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    let runqueue_ns = std::fs::read_to_string(format!("/proc/{pid}/schedstat"))
        .ok()
        .and_then(|s| s.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        .unwrap_or(0);
    Some(ProcSample { cpu_ticks: utime + stime, hwm_kb: kb("VmHWM:"), runqueue_ns })
}

/// CPU seconds of each of `pid`'s threads, summed by thread name (librdkafka's
/// `rdk:*` threads, the producer's polling thread, the runtime's main thread…).
pub fn thread_cpu(pid: u32) -> Vec<(String, f64)> {
    let mut by_name: std::collections::BTreeMap<String, f64> = std::collections::BTreeMap::new();
    let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    for entry in dir.flatten() {
        let Ok(tid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/stat")) else {
            continue;
        };
        let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
            continue;
        };
        let name = stat[open + 1..close].to_owned();
        let f: Vec<&str> = stat[close + 1..].split_whitespace().collect();
        let ticks: u64 =
            f.get(11..13).into_iter().flatten().filter_map(|v| v.parse::<u64>().ok()).sum();
        *by_name.entry(name).or_default() += ticks as f64 / clk_tck();
    }
    by_name.into_iter().collect()
}

/// [`thread_cpu`] without the threads that used less than 10 ms.
pub fn busy_threads(pid: u32) -> Vec<(String, f64)> {
    thread_cpu(pid).into_iter().filter(|(_, cpu)| *cpu >= 0.01).collect()
}

/// CPU used by a process between two moments, sampled as long as it lives (a
/// walsender exits with its client, so its last sample is the one before that).
#[derive(Debug, Clone, Copy)]
pub struct CpuWatch {
    pid: u32,
    first: ProcSample,
    last: ProcSample,
}

impl CpuWatch {
    pub fn new(pid: u32) -> Option<Self> {
        let s = read_proc(pid)?;
        Some(Self { pid, first: s, last: s })
    }

    pub fn poll(&mut self) {
        if let Some(s) = read_proc(self.pid) {
            self.last = s;
        }
    }

    pub fn cpu_secs(&self) -> f64 {
        self.last.cpu_secs() - self.first.cpu_secs()
    }

    /// Seconds spent waiting for a CPU while runnable.
    pub fn runqueue_secs(&self) -> f64 {
        self.last.runqueue_secs() - self.first.runqueue_secs()
    }
}

/// Follows the walsender of a slot (it appears once the client started replication).
#[derive(Debug, Default)]
pub struct WalsenderWatch {
    watch: Option<CpuWatch>,
}

impl WalsenderWatch {
    pub fn update(&mut self, active_pid: Option<u32>) {
        match (&mut self.watch, active_pid) {
            (Some(w), _) => w.poll(),
            (None, Some(pid)) => self.watch = CpuWatch::new(pid),
            (None, None) => {}
        }
    }

    pub fn cpu_secs(&self) -> f64 {
        self.watch.map(|w| w.cpu_secs()).unwrap_or(f64::NAN)
    }

    pub fn runqueue_secs(&self) -> f64 {
        self.watch.map(|w| w.runqueue_secs()).unwrap_or(f64::NAN)
    }
}

/// A running `tailbox run`, its log in a file.
pub struct TailboxProc {
    child: Child,
    pub log: PathBuf,
    pub started: Instant,
}

impl TailboxProc {
    pub fn spawn(bin: &Path, args: &[String], log: PathBuf) -> Result<Self> {
        let file =
            std::fs::File::create(&log).with_context(|| format!("creating {}", log.display()))?;
        let started = Instant::now();
        let child = Command::new(bin)
            .args(args)
            .env("TAILBOX_LOG", "info")
            // An ephemeral port: the default one may be taken by another tailbox.
            .env("TAILBOX_METRICS_ADDR", "127.0.0.1:0")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(file)
            .spawn()
            .with_context(|| format!("spawning {}", bin.display()))?;
        Ok(Self { child, log, started })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// CPU since start and peak RSS so far.
    pub fn sample(&mut self) -> Result<ProcSample> {
        self.check_alive()?;
        read_proc(self.pid()).context("reading /proc of tailbox")
    }

    /// An error (with the log's tail) if tailbox exited.
    pub fn check_alive(&mut self) -> Result<()> {
        if let Some(status) = self.child.try_wait()? {
            bail!(
                "tailbox exited early ({status}); log {}:\n{}",
                self.log.display(),
                self.log_tail()
            );
        }
        Ok(())
    }

    fn log_tail(&self) -> String {
        log_tail(&self.log)
    }

    /// SIGTERM (tailbox drains, confirms and exits 0), bounded.
    pub fn terminate(mut self, timeout: Duration) -> Result<ExitStatus> {
        let ok = Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status()
            .context("running kill")?
            .success();
        if !ok {
            bail!("kill -TERM {} failed", self.pid());
        }
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait()? {
                return Ok(status);
            }
            if Instant::now() > deadline {
                bail!("tailbox did not stop within {timeout:?}:\n{}", self.log_tail());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for TailboxProc {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// The last 30 lines of a log file.
fn log_tail(log: &Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(30)..].join("\n")
}

/// How often slots are polled.
const POLL: Duration = Duration::from_millis(20);

/// Waits until `slot`'s walsender is up (the client started replication). Returns
/// its pid.
pub async fn wait_active(
    env: &Env,
    slot: &str,
    tailbox: &mut TailboxProc,
    timeout: Duration,
) -> Result<u32> {
    let deadline = Instant::now() + timeout;
    loop {
        if let (_, Some(pid)) = env.slot_state(slot).await? {
            return Ok(pid);
        }
        tailbox.check_alive()?;
        if Instant::now() > deadline {
            bail!("slot {slot} not active after {timeout:?}");
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Waits until `slot` confirmed `target`, sampling the walsender's CPU and calling
/// `tick` every poll (tailbox's liveness, /proc samples).
pub async fn wait_confirmed(
    env: &Env,
    slot: &str,
    target: u64,
    timeout: Duration,
    walsender: &mut WalsenderWatch,
    mut tick: impl FnMut() -> Result<()>,
) -> Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        let (confirmed, pid) = env.slot_state(slot).await?;
        walsender.update(pid);
        tick()?;
        if confirmed >= target {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("slot {slot} confirmed {confirmed:X}, not {target:X}, within {timeout:?}");
        }
        tokio::time::sleep(POLL).await;
    }
}

/// pg_recvlogical's drain of a slot.
#[derive(Debug, Clone, Copy)]
pub struct RefRun {
    pub secs: f64,
    pub cpu_secs: f64,
    pub peak_rss_mib: f64,
    pub walsender_cpu_secs: f64,
    pub walsender_runqueue_secs: f64,
}

/// Runs pg_recvlogical on `slot` (pgoutput v1, the bench publication, output to
/// /dev/null) until `endpos`, under `/usr/bin/time` for its CPU and peak RSS.
pub async fn run_recvlogical(
    env: &Env,
    slot: &str,
    endpos: u64,
    timeout: Duration,
) -> Result<RefRun> {
    let time_out = env.logs.join(format!("{slot}.time"));
    let endpos = tailbox_pgoutput::Lsn::new(endpos).to_string();
    let stderr = std::fs::File::create(env.logs.join(format!("{slot}.log")))?;
    let start = Instant::now();
    let mut child = Command::new("/usr/bin/time")
        .arg("-f")
        .arg("%U %S %M")
        .arg("-o")
        .arg(&time_out)
        .arg(PG_RECVLOGICAL)
        .args(["-d", &env.pg.url(), "-S", slot, "--start", "-n", "-F", "0"])
        .arg(format!("--endpos={endpos}"))
        .args(["-o", "proto_version=1"])
        .arg("-o")
        .arg(format!("publication_names={}", env.publication))
        .args(["-f", "-"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(stderr)
        .spawn()
        .context("spawning /usr/bin/time pg_recvlogical (apt-get install time)")?;
    let mut walsender = WalsenderWatch::default();
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        let (_, pid) = env.slot_state(slot).await?;
        walsender.update(pid);
        if start.elapsed() > timeout {
            let _ = child.kill();
            let _ = child.wait();
            bail!("pg_recvlogical did not reach {endpos} within {timeout:?}");
        }
        tokio::time::sleep(POLL).await;
    };
    let secs = start.elapsed().as_secs_f64();
    if !status.success() {
        bail!(
            "pg_recvlogical failed ({status}); see {}",
            env.logs.join(format!("{slot}.log")).display()
        );
    }
    let text = std::fs::read_to_string(&time_out)
        .with_context(|| format!("reading {}", time_out.display()))?;
    // The last line; /usr/bin/time may put a "Command exited…" line first.
    let line = text.lines().last().unwrap_or_default();
    let nums: Vec<f64> = line.split_whitespace().filter_map(|v| v.parse().ok()).collect();
    let (cpu_secs, peak_rss_mib) = match nums.as_slice() {
        [user, sys, max_kb] => (user + sys, max_kb / 1024.0),
        _ => (f64::NAN, f64::NAN),
    };
    Ok(RefRun {
        secs,
        cpu_secs,
        peak_rss_mib,
        walsender_cpu_secs: walsender.cpu_secs(),
        walsender_runqueue_secs: walsender.runqueue_secs(),
    })
}

/// A sink alone: the Kafka producer, Redis or webhooks (`tailbox-bench produce-floor`,
/// see producer.rs).
#[derive(Debug, Clone)]
pub struct ProducerRun {
    /// Spawn → the child reported every record acknowledged.
    pub secs: f64,
    /// What the child reported: first send → last acknowledgement, mean value size.
    pub report: producer::Report,
    /// CPU (all threads, since start) and peak RSS at that moment.
    pub sample: ProcSample,
    /// CPU seconds by thread name at that moment (threads that used 10 ms or more).
    pub threads: Vec<(String, f64)>,
}

/// Kills a child process that is still running when dropped (on an error path).
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if matches!(self.0.try_wait(), Ok(None)) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// Runs this binary as `tailbox-bench produce-floor ARGS…` (stderr to `log`) and
/// measures it: wall time until it reports every record acknowledged, then its CPU,
/// per-thread CPU and peak RSS from /proc while it waits for its stdin to close
/// (before the sink is torn down). The child inherits the bench's nice value and
/// autogroup, as tailbox and pg_recvlogical do.
pub async fn run_producer_alone(
    args: &[String],
    log: &Path,
    timeout: Duration,
) -> Result<ProducerRun> {
    let exe = std::env::current_exe().context("locating the tailbox-bench binary")?;
    let stderr =
        std::fs::File::create(log).with_context(|| format!("creating {}", log.display()))?;
    let started = Instant::now();
    let mut child = KillOnDrop(
        Command::new(&exe)
            .arg(producer::SUBCOMMAND)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .with_context(|| format!("spawning {} {}", exe.display(), producer::SUBCOMMAND))?,
    );
    let stdout = child.0.stdout.take().context("the producer's stdout")?;
    let line = read_line_within(stdout, timeout)
        .await
        .with_context(|| format!("waiting for the sink alone; log {}", log.display()))?;
    let secs = started.elapsed().as_secs_f64();
    if line.trim().is_empty() {
        let status = wait_exit(&mut child.0, Duration::from_secs(10)).await?;
        bail!("the sink alone failed ({status}); log {}:\n{}", log.display(), log_tail(log));
    }
    let pid = child.0.id();
    let sample = read_proc(pid).context("reading /proc of the sink alone")?;
    let threads = busy_threads(pid);
    let report = producer::Report::parse(&line)?;
    // Closing its stdin lets it exit.
    drop(child.0.stdin.take());
    let status = wait_exit(&mut child.0, Duration::from_secs(60)).await?;
    if !status.success() {
        bail!("the sink alone exited with {status}; log {}:\n{}", log.display(), log_tail(log));
    }
    Ok(ProducerRun { secs, report, sample, threads })
}

/// One line from `out` (empty at end of file), within `timeout`.
async fn read_line_within(out: std::process::ChildStdout, timeout: Duration) -> Result<String> {
    let read = tokio::task::spawn_blocking(move || {
        let mut line = String::new();
        std::io::BufReader::new(out).read_line(&mut line).map(|_| line)
    });
    match tokio::time::timeout(timeout, read).await {
        Ok(joined) => Ok(joined.context("reader task")?.context("reading a line")?),
        Err(_) => bail!("no line within {timeout:?}"),
    }
}

/// Waits (bounded) for `child` to exit.
async fn wait_exit(child: &mut Child, timeout: Duration) -> Result<ExitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait().context("waiting for a child process")? {
            return Ok(status);
        }
        if Instant::now() > deadline {
            bail!("child process {} did not exit within {timeout:?}", child.id());
        }
        tokio::time::sleep(POLL).await;
    }
}

/// CPU ticks of every process in /proc: pid → (ppid, own + reaped children's ticks).
fn all_processes() -> Vec<(u32, u32, u64)> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| {
        let pid: u32 = e.ok()?.file_name().to_str()?.parse().ok()?;
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        let rest = &stat[stat.rfind(')')? + 1..];
        let f: Vec<&str> = rest.split_whitespace().collect();
        let ppid: u32 = f.get(1)?.parse().ok()?;
        // utime, stime, cutime, cstime (fields 14–17)
        let ticks = f.get(11..15)?.iter().filter_map(|v| v.parse::<u64>().ok()).sum();
        Some((pid, ppid, ticks))
    })
    .collect()
}

/// Busy and total ticks of the whole machine (/proc/stat, all CPUs).
fn machine_ticks() -> (u64, u64) {
    let text = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let Some(line) = text.lines().find(|l| l.starts_with("cpu ")) else {
        return (0, 0);
    };
    let v: Vec<u64> = line.split_whitespace().skip(1).filter_map(|x| x.parse().ok()).collect();
    // user nice system idle iowait irq softirq steal (guest time is inside user)
    let busy =
        v.iter().take(8).enumerate().filter(|(i, _)| *i != 3 && *i != 4).map(|(_, x)| x).sum();
    let total = v.iter().take(8).sum();
    (busy, total)
}

/// The machine's CPU use at one moment, and how much of it is the bench's own: the
/// PostgreSQL cluster, the Kafka broker and this process with its children (tailbox,
/// pg_recvlogical), each with the CPU of children they already reaped.
#[derive(Debug, Clone, Copy)]
pub struct CpuSnapshot {
    busy: u64,
    ours: u64,
    at: Instant,
}

impl CpuSnapshot {
    pub fn take(roots: &[u32]) -> Self {
        let procs = all_processes();
        let parent: std::collections::HashMap<u32, u32> =
            procs.iter().map(|(p, pp, _)| (*p, *pp)).collect();
        let in_tree = |mut pid: u32| {
            for _ in 0..64 {
                if roots.contains(&pid) {
                    return true;
                }
                match parent.get(&pid) {
                    Some(&pp) if pp != 0 && pp != pid => pid = pp,
                    _ => return false,
                }
            }
            false
        };
        let ours = procs.iter().filter(|(p, _, _)| in_tree(*p)).map(|(_, _, t)| t).sum();
        Self { busy: machine_ticks().0, ours, at: Instant::now() }
    }

    /// (machine busy, of which not the bench's processes), in cores, since `earlier`.
    pub fn since(&self, earlier: &CpuSnapshot) -> (f64, f64) {
        let secs = (self.at - earlier.at).as_secs_f64().max(1e-3);
        let busy = self.busy.saturating_sub(earlier.busy) as f64 / clk_tck() / secs;
        let ours = self.ours.saturating_sub(earlier.ours) as f64 / clk_tck() / secs;
        (busy, (busy - ours).max(0.0))
    }
}

/// Sets the nice value of `pids`, their descendants, and all their threads (Linux
/// priorities are per thread; threads created later inherit them), and of their
/// scheduler autogroups: with `kernel.sched_autogroup_enabled`, nice values only
/// weigh within a session's autogroup, and sessions share the CPU by the autogroups'
/// own nice values.
pub fn renice_trees(pids: &[u32], nice: i32) -> Result<()> {
    for pid in pids {
        let path = format!("/proc/{pid}/autogroup");
        if std::path::Path::new(&path).exists()
            && let Err(e) = std::fs::write(&path, nice.to_string())
        {
            crate::progress(&format!("warning: cannot set {path} to {nice}: {e}"));
        }
    }
    let procs = all_processes();
    let mut tree: Vec<u32> = pids.to_vec();
    let mut i = 0;
    while i < tree.len() {
        let p = tree[i];
        tree.extend(procs.iter().filter(|(_, pp, _)| *pp == p).map(|(c, _, _)| *c));
        i += 1;
    }
    let mut tids = Vec::new();
    for p in tree {
        if let Ok(dir) = std::fs::read_dir(format!("/proc/{p}/task")) {
            tids.extend(dir.filter_map(|e| e.ok()?.file_name().to_str().map(str::to_owned)));
        }
    }
    if tids.is_empty() {
        return Ok(());
    }
    let out = Command::new("renice")
        .args(["-n", &nice.to_string(), "-p"])
        .args(&tids)
        .output()
        .context("running renice")?;
    // Threads and processes come and go meanwhile; renice skips the ones it misses.
    let err = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() && !err.contains("No such process") {
        bail!("renice failed: {}", err.trim());
    }
    Ok(())
}

/// Restores this process's autogroup nice value (which the whole session shares) when
/// dropped.
pub struct AutogroupGuard(Option<i32>);

impl AutogroupGuard {
    /// Remembers the current value.
    pub fn save() -> Self {
        let nice = std::fs::read_to_string("/proc/self/autogroup")
            .ok()
            .and_then(|s| s.split_whitespace().last().and_then(|n| n.parse().ok()));
        Self(nice)
    }
}

impl Drop for AutogroupGuard {
    fn drop(&mut self) {
        if let Some(nice) = self.0 {
            let _ = std::fs::write("/proc/self/autogroup", nice.to_string());
        }
    }
}
