//! Recording: HDR histograms (microseconds, 3 significant digits) per
//! operation, kept in a few mutex-guarded shards so workers rarely meet,
//! plus a one-second window that the progress line and the latency-over-time
//! plot read.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

/// Largest latency a histogram holds (longer ones are clamped): 10 minutes.
const MAX_US: u64 = 600_000_000;

/// A new latency histogram.
pub fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_US, 3).expect("valid histogram bounds")
}

fn record_us(h: &mut Histogram<u64>, latency: Duration) {
    let us = (latency.as_micros() as u64).clamp(1, MAX_US);
    let _ = h.record(us);
}

/// What became of one request.
#[derive(Debug, Clone)]
pub enum Outcome {
    /// 2xx (and a body that passed the scenario's check), with its status.
    Ok(u16),
    /// A non-2xx status; `true` when `Retry-After` was present; the start
    /// of the body.
    Status(u16, bool, String),
    /// 2xx, but the body was not what the scenario expects.
    BadBody(u16, String),
    /// Connect / read / write failure.
    Socket(String),
    /// No full response within the timeout.
    Timeout,
}

/// Everything recorded for one operation.
#[derive(Clone)]
pub struct OpRec {
    /// Latency of the 2xx responses.
    pub ok: Histogram<u64>,
    /// Latency of the 503 responses.
    pub rejected: Histogram<u64>,
    /// Latency of every response that is an error (non-2xx, bad body).
    pub failed: Histogram<u64>,
    /// Responses by status code.
    pub statuses: BTreeMap<u16, u64>,
    /// Socket errors.
    pub socket_errors: u64,
    /// Timeouts.
    pub timeouts: u64,
    /// 2xx whose body failed the check.
    pub bad_body: u64,
    /// 503s that carried `Retry-After`.
    pub s503_retry_after: u64,
    /// The first few error messages, for the report.
    pub samples: Vec<String>,
}

impl OpRec {
    fn new() -> OpRec {
        OpRec {
            ok: histogram(),
            rejected: histogram(),
            failed: histogram(),
            statuses: BTreeMap::new(),
            socket_errors: 0,
            timeouts: 0,
            bad_body: 0,
            s503_retry_after: 0,
            samples: Vec::new(),
        }
    }

    fn sample(&mut self, msg: String) {
        if self.samples.len() < 5 && !self.samples.contains(&msg) {
            self.samples.push(msg);
        }
    }

    fn merge(&mut self, other: &OpRec) {
        let _ = self.ok.add(&other.ok);
        let _ = self.rejected.add(&other.rejected);
        let _ = self.failed.add(&other.failed);
        for (s, n) in &other.statuses {
            *self.statuses.entry(*s).or_default() += n;
        }
        self.socket_errors += other.socket_errors;
        self.timeouts += other.timeouts;
        self.bad_body += other.bad_body;
        self.s503_retry_after += other.s503_retry_after;
        for s in &other.samples {
            self.sample(s.clone());
        }
    }

    /// Successful requests.
    pub fn ok_count(&self) -> u64 {
        self.ok.len()
    }

    /// Requests that count as errors: non-2xx, bad bodies, socket errors, timeouts.
    pub fn error_count(&self) -> u64 {
        let non2xx: u64 = self
            .statuses
            .iter()
            .filter(|(s, _)| !(200..300).contains(*s))
            .map(|(_, n)| n)
            .sum();
        non2xx + self.bad_body + self.socket_errors + self.timeouts
    }
}

/// The current one-second window.
struct Window {
    ok: u64,
    errors: u64,
    s503: u64,
    hist: Histogram<u64>,
}

impl Window {
    fn new() -> Window {
        Window {
            ok: 0,
            errors: 0,
            s503: 0,
            hist: histogram(),
        }
    }
}

struct Shard {
    ops: Vec<(&'static str, OpRec)>,
    window: Window,
}

/// One point of the latency-over-time series.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Point {
    /// Seconds since the measurement started (end of this window).
    pub t: f64,
    /// 2xx per second.
    pub ok_rps: f64,
    /// Errors per second (503s included).
    pub err_rps: f64,
    /// 503s per second.
    pub s503_rps: f64,
    /// Latency of the 2xx in this window, ms.
    pub p50_ms: f64,
    /// ms.
    pub p90_ms: f64,
    /// ms.
    pub p99_ms: f64,
    /// ms.
    pub max_ms: f64,
}

/// All the recording of one run.
pub struct Recorder {
    shards: Vec<Mutex<Shard>>,
    /// Open model: slots skipped because they were already older than the
    /// timeout when a connection got free (too few connections).
    pub backlog_expired: AtomicU64,
}

impl Recorder {
    /// `shards` independent locks.
    pub fn new(shards: usize) -> Recorder {
        Recorder {
            shards: (0..shards.max(1))
                .map(|_| {
                    Mutex::new(Shard {
                        ops: Vec::new(),
                        window: Window::new(),
                    })
                })
                .collect(),
            backlog_expired: AtomicU64::new(0),
        }
    }

    /// Records one request of worker `worker`.
    pub fn record(&self, worker: usize, op: &'static str, latency: Duration, outcome: &Outcome) {
        let mut shard = self.shards[worker % self.shards.len()]
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let shard = &mut *shard;
        let rec = match shard.ops.iter().position(|(name, _)| *name == op) {
            Some(i) => &mut shard.ops[i].1,
            None => {
                shard.ops.push((op, OpRec::new()));
                &mut shard.ops.last_mut().expect("pushed").1
            }
        };
        match outcome {
            Outcome::Ok(status) => {
                *rec.statuses.entry(*status).or_default() += 1;
                record_us(&mut rec.ok, latency);
                shard.window.ok += 1;
                record_us(&mut shard.window.hist, latency);
            }
            Outcome::Status(status, retry_after, snippet) => {
                *rec.statuses.entry(*status).or_default() += 1;
                if *status != 503 {
                    rec.sample(format!("{op}: HTTP {status} {snippet}"));
                }
                shard.window.errors += 1;
                record_us(&mut rec.failed, latency);
                if *status == 503 {
                    shard.window.s503 += 1;
                    record_us(&mut rec.rejected, latency);
                    if *retry_after {
                        rec.s503_retry_after += 1;
                    }
                }
            }
            Outcome::BadBody(status, msg) => {
                *rec.statuses.entry(*status).or_default() += 1;
                shard.window.errors += 1;
                rec.bad_body += 1;
                record_us(&mut rec.failed, latency);
                rec.sample(format!("{op}: {msg}"));
            }
            Outcome::Socket(msg) => {
                shard.window.errors += 1;
                rec.socket_errors += 1;
                rec.sample(format!("{op}: socket error: {msg}"));
            }
            Outcome::Timeout => {
                shard.window.errors += 1;
                rec.timeouts += 1;
            }
        }
    }

    /// Takes (and resets) the current window: a point ending at `t`,
    /// covering `secs` seconds.
    pub fn take_window(&self, t: f64, secs: f64) -> Point {
        let mut hist = histogram();
        let (mut ok, mut errors, mut s503) = (0, 0, 0);
        for shard in &self.shards {
            let mut shard = shard.lock().unwrap_or_else(|e| e.into_inner());
            let w = std::mem::replace(&mut shard.window, Window::new());
            ok += w.ok;
            errors += w.errors;
            s503 += w.s503;
            let _ = hist.add(&w.hist);
        }
        let ms = |q: f64| {
            if hist.is_empty() {
                0.0
            } else {
                hist.value_at_quantile(q) as f64 / 1000.0
            }
        };
        let secs = secs.max(1e-3);
        Point {
            t,
            ok_rps: ok as f64 / secs,
            err_rps: errors as f64 / secs,
            s503_rps: s503 as f64 / secs,
            p50_ms: ms(0.5),
            p90_ms: ms(0.9),
            p99_ms: ms(0.99),
            max_ms: if hist.is_empty() { 0.0 } else { hist.max() as f64 / 1000.0 },
        }
    }

    /// Discards everything recorded so far (end of the warm-up).
    pub fn reset(&self) {
        for shard in &self.shards {
            let mut shard = shard.lock().unwrap_or_else(|e| e.into_inner());
            shard.ops.clear();
            shard.window = Window::new();
        }
        self.backlog_expired.store(0, Ordering::Relaxed);
    }

    /// Every operation, merged over the shards, in order of first use.
    pub fn merged(&self) -> Vec<(&'static str, OpRec)> {
        let mut out: Vec<(&'static str, OpRec)> = Vec::new();
        for shard in &self.shards {
            let shard = shard.lock().unwrap_or_else(|e| e.into_inner());
            for (name, rec) in &shard.ops {
                match out.iter_mut().find(|(n, _)| n == name) {
                    Some((_, mine)) => mine.merge(rec),
                    None => out.push((name, rec.clone())),
                }
            }
        }
        out
    }

    /// All operations merged into one.
    pub fn total(ops: &[(&'static str, OpRec)]) -> OpRec {
        let mut all = OpRec::new();
        for (_, rec) in ops {
            all.merge(rec);
        }
        all
    }
}

/// Latency percentiles, in milliseconds.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Percentiles {
    /// Samples.
    pub count: u64,
    /// Mean.
    pub mean: f64,
    /// Minimum.
    pub min: f64,
    /// 50th percentile.
    pub p50: f64,
    /// 90th.
    pub p90: f64,
    /// 95th.
    pub p95: f64,
    /// 99th.
    pub p99: f64,
    /// 99.9th.
    pub p999: f64,
    /// Maximum.
    pub max: f64,
}

impl Percentiles {
    /// From a microsecond histogram.
    pub fn of(h: &Histogram<u64>) -> Percentiles {
        if h.is_empty() {
            return Percentiles::default();
        }
        let ms = |v: u64| v as f64 / 1000.0;
        Percentiles {
            count: h.len(),
            mean: h.mean() / 1000.0,
            min: ms(h.min()),
            p50: ms(h.value_at_quantile(0.50)),
            p90: ms(h.value_at_quantile(0.90)),
            p95: ms(h.value_at_quantile(0.95)),
            p99: ms(h.value_at_quantile(0.99)),
            p999: ms(h.value_at_quantile(0.999)),
            max: ms(h.max()),
        }
    }
}

/// The percentile curve for the plot: (percentile, ms), from 0 to 99.999 and max.
pub fn curve(h: &Histogram<u64>) -> Vec<(f64, f64)> {
    if h.is_empty() {
        return Vec::new();
    }
    let mut out = Vec::new();
    for k in 0..=25 {
        // 1 - 10^(-k/5): 0, 36.9, 60.2, ... 90, ... 99, ... 99.999
        let q = 1.0 - 10f64.powf(-(k as f64) / 5.0);
        if (h.len() as f64) * (1.0 - q) < 0.5 && k > 0 {
            break;
        }
        out.push((q * 100.0, h.value_at_quantile(q) as f64 / 1000.0));
    }
    out.push((100.0, h.max() as f64 / 1000.0));
    out
}
