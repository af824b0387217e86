//! Counters shared by a phase's workers, error tallies, percentiles and the
//! progress line.

use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde::Serialize;

use super::body;
use super::client::Outcome;

/// Total CPU ticks (user + system) from the text of a `/proc/PID/stat`.
pub fn parse_cpu_ticks(stat: &str) -> Option<u64> {
    // The command name may hold spaces and parentheses: fields are counted
    // from the last ')'. utime and stime are fields 14 and 15.
    let rest = &stat[stat.rfind(')')? + 1..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    Some(f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?)
}

/// How much CPU the load generator itself uses during a phase, to show
/// whether it could be the bottleneck (Linux only; `None` elsewhere).
pub struct CpuMeter {
    ticks: Option<u64>,
    start: Instant,
}

impl CpuMeter {
    fn now() -> Option<u64> {
        parse_cpu_ticks(&std::fs::read_to_string("/proc/self/stat").ok()?)
    }

    pub fn start() -> CpuMeter {
        CpuMeter {
            ticks: Self::now(),
            start: Instant::now(),
        }
    }

    /// Cores used on average since `start` (ticks are 1/100 s on Linux).
    pub fn cores(&self) -> Option<f64> {
        let used = Self::now()?.checked_sub(self.ticks?)? as f64 / 100.0;
        Some(used / self.start.elapsed().as_secs_f64().max(1e-9))
    }
}

/// Nearest-rank percentile of an ascending slice (`p` in 0..=100).
pub fn percentile(sorted: &[u64], p: f64) -> Option<u64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

/// p50/p99/max of a set of durations in microseconds, reported in ms.
#[derive(Serialize, Debug, Clone, Copy, PartialEq)]
pub struct Quantiles {
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

impl Quantiles {
    pub fn from_micros(mut samples: Vec<u64>) -> Option<Quantiles> {
        samples.sort_unstable();
        let ms = |v: u64| v as f64 / 1000.0;
        Some(Quantiles {
            p50_ms: ms(percentile(&samples, 50.0)?),
            p99_ms: ms(percentile(&samples, 99.0)?),
            max_ms: ms(*samples.last()?),
        })
    }
}

/// One kind of error seen during a phase.
#[derive(Serialize, Debug, Clone)]
pub struct ErrorTally {
    pub kind: String,
    pub count: u64,
    pub example: String,
}

/// Errors of a phase, by kind ("HTTP 400 ProvisionedThroughputExceededException",
/// "transport", "PutRecords partial failure", ...).
#[derive(Default)]
pub struct Errors {
    total: AtomicU64,
    kinds: Mutex<BTreeMap<String, (u64, String)>>,
}

/// Whether a failed call is one the server asks us to slow down for.
#[derive(Debug, PartialEq)]
pub enum Failure {
    Throttled,
    Other,
}

impl Errors {
    pub fn add(&self, kind: String, example: impl FnOnce() -> String) {
        self.total.fetch_add(1, Ordering::Relaxed);
        let mut kinds = self.kinds.lock().expect("errors lock");
        let entry = kinds.entry(kind).or_insert_with(|| (0, example()));
        entry.0 += 1;
    }

    /// Records a failed call; tells whether it was throttling.
    pub fn record(&self, outcome: &Outcome) -> Failure {
        match outcome {
            Outcome::Ok(_) => Failure::Other,
            Outcome::Http { status, body } => {
                let code = body::error_code(body);
                let throttled = *status == 429
                    || *status == 503
                    || code.contains("Throttl")
                    || code.contains("ProvisionedThroughputExceeded")
                    || code.contains("LimitExceeded");
                self.add(format!("HTTP {status} {code}"), || {
                    body::error_message(body).unwrap_or_else(|| {
                        String::from_utf8_lossy(body).chars().take(200).collect()
                    })
                });
                if throttled {
                    Failure::Throttled
                } else {
                    Failure::Other
                }
            }
            Outcome::Transport(msg) => {
                self.add("transport".into(), || msg.clone());
                Failure::Other
            }
        }
    }

    pub fn total(&self) -> u64 {
        self.total.load(Ordering::Relaxed)
    }

    pub fn tallies(&self) -> Vec<ErrorTally> {
        self.kinds
            .lock()
            .expect("errors lock")
            .iter()
            .map(|(kind, (count, example))| ErrorTally {
                kind: kind.clone(),
                count: *count,
                example: example.clone(),
            })
            .collect()
    }
}

/// Live counters of a phase, read by the progress line.
#[derive(Default)]
pub struct Counters {
    pub requests: AtomicU64,
    pub records: AtomicU64,
    pub bytes: AtomicU64,
    pub errors: Errors,
}

impl Counters {
    pub fn add(&self, requests: u64, records: u64, bytes: u64) {
        self.requests.fetch_add(requests, Ordering::Relaxed);
        self.records.fetch_add(records, Ordering::Relaxed);
        self.bytes.fetch_add(bytes, Ordering::Relaxed);
    }
}

/// Backoff after a failed call: short for throttling (the server is alive
/// and asking us to slow down), longer for anything else.
pub fn backoff(failure: &Failure, attempt: u32) -> Duration {
    let base = match failure {
        Failure::Throttled => 5,
        Failure::Other => 20,
    };
    Duration::from_millis((base << attempt.min(5)).min(500))
}

/// The one-line progress display on stderr: rewritten in place on a
/// terminal, a line every few seconds otherwise.
pub struct Progress {
    stop: tokio::sync::watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl Progress {
    pub fn start(
        phase: &'static str,
        counters: std::sync::Arc<Counters>,
        planned: Option<Duration>,
    ) -> Progress {
        let (stop, mut stopped) = tokio::sync::watch::channel(false);
        let tty = std::io::stderr().is_terminal();
        let every = if tty {
            Duration::from_millis(250)
        } else {
            Duration::from_secs(5)
        };
        let task = tokio::spawn(async move {
            let start = Instant::now();
            let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
            loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    _ = stopped.changed() => break,
                }
                let line = progress_line(phase, &counters, start.elapsed(), planned);
                let mut err = std::io::stderr().lock();
                if tty {
                    let _ = write!(err, "\r\x1b[2K{line}");
                } else {
                    let _ = writeln!(err, "{line}");
                }
                let _ = err.flush();
            }
            if tty {
                let _ = write!(std::io::stderr(), "\r\x1b[2K");
            }
        });
        Progress { stop, task }
    }

    pub async fn finish(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }
}

fn progress_line(
    phase: &str,
    c: &Counters,
    elapsed: Duration,
    planned: Option<Duration>,
) -> String {
    let secs = elapsed.as_secs_f64().max(1e-9);
    let records = c.records.load(Ordering::Relaxed);
    let bytes = c.bytes.load(Ordering::Relaxed);
    let time = match planned {
        Some(p) => format!("{:.1}/{:.0}s", secs, p.as_secs_f64()),
        None => format!("{secs:.1}s"),
    };
    format!(
        "[{phase}] {time}  {} requests  {} records  {:.0} rec/s  {:.1} MB/s  {} errors",
        c.requests.load(Ordering::Relaxed),
        records,
        records as f64 / secs,
        bytes as f64 / secs / 1e6,
        c.errors.total(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    #[test]
    fn cpu_ticks_are_read_after_the_command_name() {
        let stat = "123 (my (odd) cmd) S 1 2 3 4 5 6 7 8 9 10 250 50 0 0 20 0 1 0";
        assert_eq!(parse_cpu_ticks(stat), Some(300));
        assert_eq!(parse_cpu_ticks("garbage"), None);
    }

    #[test]
    fn percentile_uses_nearest_rank() {
        let v: Vec<u64> = (1..=100).collect();
        assert_eq!(percentile(&v, 50.0), Some(50));
        assert_eq!(percentile(&v, 99.0), Some(99));
        assert_eq!(percentile(&v, 100.0), Some(100));
        assert_eq!(percentile(&v, 0.0), Some(1));
    }

    #[test]
    fn percentile_of_small_sets_picks_an_existing_sample() {
        assert_eq!(percentile(&[7], 99.0), Some(7));
        assert_eq!(percentile(&[1, 2], 50.0), Some(1));
        assert_eq!(percentile(&[1, 2], 99.0), Some(2));
        assert_eq!(percentile(&[], 50.0), None);
    }

    #[test]
    fn quantiles_sort_unordered_samples_and_report_milliseconds() {
        let q = Quantiles::from_micros(vec![3000, 1000, 2000]).unwrap();
        assert_eq!(
            q,
            Quantiles {
                p50_ms: 2.0,
                p99_ms: 3.0,
                max_ms: 3.0
            }
        );
        assert_eq!(Quantiles::from_micros(vec![]), None);
    }

    #[test]
    fn errors_are_tallied_by_kind_with_first_example() {
        let e = Errors::default();
        let throttle = Outcome::Http {
            status: 400,
            body: Bytes::from_static(
                br#"{"__type":"ProvisionedThroughputExceededException","message":"Rate exceeded for shard"}"#,
            ),
        };
        assert_eq!(e.record(&throttle), Failure::Throttled);
        assert_eq!(e.record(&throttle), Failure::Throttled);
        assert_eq!(
            e.record(&Outcome::Transport("connection reset".into())),
            Failure::Other
        );
        assert_eq!(
            e.record(&Outcome::Http {
                status: 500,
                body: Bytes::from_static(br#"{"__type":"InternalFailure"}"#)
            }),
            Failure::Other
        );
        assert_eq!(e.total(), 4);
        let t = e.tallies();
        assert_eq!(t.len(), 3);
        let pt = t
            .iter()
            .find(|t| t.kind == "HTTP 400 ProvisionedThroughputExceededException")
            .unwrap();
        assert_eq!(pt.count, 2);
        assert_eq!(pt.example, "Rate exceeded for shard");
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        assert!(backoff(&Failure::Throttled, 0) < backoff(&Failure::Throttled, 3));
        assert!(backoff(&Failure::Other, 30) <= Duration::from_millis(500));
    }
}
