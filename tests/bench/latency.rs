//! The latency consumer: reads the steady-load topic as records arrive and, per
//! record, takes
//! - commit→append: the broker's append time (the topic is `LogAppendTime`, so the
//!   record timestamp is when the leader appended the batch, ms) minus the
//!   `commit_ts` header (µs). With acks=all on a single broker the producer's ack
//!   follows the append by one local round trip, so this is commit→ack minus that.
//! - commit→receive: this consumer's wall clock when `poll` returned the record minus
//!   `commit_ts`.
//!
//! Everything runs on one machine, so both clocks are the same clock.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, anyhow};
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message, Timestamp};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

/// Events of this `type` are warm-up traffic: counted, not measured.
pub const WARMUP_TYPE: &str = "Warmup";

/// Latencies, µs, one per measured record.
#[derive(Debug, Default)]
pub struct Samples {
    pub commit_to_append_us: Vec<i64>,
    pub commit_to_receive_us: Vec<i64>,
    /// Per record in arrival order: commit time, append time (ms precision), receive
    /// time, all µs since the epoch (for a look at when the slow ones happened).
    pub raw: Vec<(i64, i64, i64)>,
}

impl Samples {
    /// Writes `raw` as CSV.
    pub fn write_csv(&self, path: &std::path::Path) -> Result<()> {
        use std::io::Write as _;
        let mut out = std::io::BufWriter::new(
            std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?,
        );
        writeln!(out, "commit_us,append_us,receive_us")?;
        for (c, a, r) in &self.raw {
            writeln!(out, "{c},{a},{r}")?;
        }
        out.flush()?;
        Ok(())
    }
}

/// A consumer thread reading one topic from the beginning.
pub struct LatencyConsumer {
    stop: Arc<AtomicBool>,
    measured: Arc<AtomicU64>,
    warmup: Arc<AtomicU64>,
    handle: Option<JoinHandle<Result<Samples>>>,
}

impl LatencyConsumer {
    /// Assigns every partition of `topic` at the beginning (no group rebalance to
    /// wait for) and starts reading.
    pub fn start(bootstrap: &str, topic: &str, partitions: i32) -> Result<Self> {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", bootstrap)
            .set("group.id", tailbox_e2e::unique_name("bench_latency"))
            .set("enable.auto.commit", "false")
            .set("auto.offset.reset", "earliest")
            // The broker answers a fetch as soon as one byte is there; this only
            // bounds an idle long poll.
            .set("fetch.wait.max.ms", "100")
            .set("fetch.min.bytes", "1")
            .set_log_level(RDKafkaLogLevel::Error)
            .create()
            .context("creating the latency consumer")?;
        let mut tpl = TopicPartitionList::new();
        for p in 0..partitions {
            tpl.add_partition_offset(topic, p, Offset::Beginning)
                .context("building the assignment")?;
        }
        consumer.assign(&tpl).context("assigning partitions")?;
        let stop = Arc::new(AtomicBool::new(false));
        let measured = Arc::new(AtomicU64::new(0));
        let warmup = Arc::new(AtomicU64::new(0));
        let (s, m, w) = (Arc::clone(&stop), Arc::clone(&measured), Arc::clone(&warmup));
        let handle = std::thread::Builder::new()
            .name("latency-consumer".into())
            .spawn(move || consume(&consumer, &s, &m, &w))
            .context("spawning the consumer thread")?;
        Ok(Self { stop, measured, warmup, handle: Some(handle) })
    }

    /// Measured records received so far.
    pub fn measured(&self) -> u64 {
        self.measured.load(Ordering::Relaxed)
    }

    /// Warm-up records received so far.
    pub fn warmup(&self) -> u64 {
        self.warmup.load(Ordering::Relaxed)
    }

    /// Stops the thread and returns the samples.
    pub fn finish(mut self) -> Result<Samples> {
        self.stop.store(true, Ordering::Relaxed);
        let handle = self.handle.take().context("consumer already finished")?;
        handle.join().map_err(|_| anyhow!("the consumer thread panicked"))?
    }
}

impl Drop for LatencyConsumer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

fn now_micros() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

fn consume(
    consumer: &BaseConsumer,
    stop: &AtomicBool,
    measured: &AtomicU64,
    warmup: &AtomicU64,
) -> Result<Samples> {
    let mut samples = Samples::default();
    while !stop.load(Ordering::Relaxed) {
        let Some(result) = consumer.poll(Duration::from_millis(100)) else {
            continue;
        };
        let received = now_micros();
        let msg = match result {
            Ok(msg) => msg,
            Err(e) => {
                crate::progress(&format!("consumer error (continuing): {e}"));
                continue;
            }
        };
        let mut commit_ts = None;
        let mut is_warmup = false;
        if let Some(headers) = msg.headers() {
            for h in headers.iter() {
                match h.key {
                    "commit_ts" => {
                        commit_ts = h
                            .value
                            .and_then(|v| std::str::from_utf8(v).ok())
                            .and_then(|v| v.parse::<i64>().ok());
                    }
                    "type" => is_warmup = h.value == Some(WARMUP_TYPE.as_bytes()),
                    _ => {}
                }
            }
        }
        if is_warmup {
            warmup.fetch_add(1, Ordering::Relaxed);
            continue;
        }
        let Some(commit_us) = commit_ts else {
            return Err(anyhow!("a record without a commit_ts header"));
        };
        let mut append_us = -1;
        if let Timestamp::LogAppendTime(ms) = msg.timestamp() {
            append_us = ms * 1000;
            samples.commit_to_append_us.push(append_us - commit_us);
        }
        samples.commit_to_receive_us.push(received - commit_us);
        samples.raw.push((commit_us, append_us, received));
        measured.fetch_add(1, Ordering::Relaxed);
    }
    Ok(samples)
}

/// The `q` quantile (0 < q ≤ 1) of `sorted` by nearest rank.
pub fn quantile(sorted: &[i64], q: f64) -> Option<i64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

#[cfg(test)]
mod tests {
    use super::quantile;

    #[test]
    fn nearest_rank_quantiles() {
        let v: Vec<i64> = (1..=1000).collect();
        assert_eq!(quantile(&v, 0.5), Some(500));
        assert_eq!(quantile(&v, 0.99), Some(990));
        assert_eq!(quantile(&v, 0.999), Some(999));
        assert_eq!(quantile(&v, 1.0), Some(1000));
        assert_eq!(quantile(&[7], 0.999), Some(7));
        assert_eq!(quantile(&[], 0.5), None);
    }
}
