//! The measurement loop: closed model (each connection sends as fast as it
//! gets answers) or open model (requests are due at a fixed rate whatever
//! the server does; latency counts from the due time, so a stalled server
//! is charged for the requests it kept waiting — no coordinated omission).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::client::{Conn, Failure, Target};
use crate::scenario::{snippet, Kind, Shared, Worker};
use crate::stats::{curve, OpRec, Outcome, Percentiles, Point, Recorder};

/// How to run one scenario.
#[derive(Debug, Clone)]
pub struct RunConfig {
    /// Name in the reports.
    pub label: String,
    /// Scenario.
    pub kind: Kind,
    /// Connections (= workers).
    pub connections: usize,
    /// Open model rate, requests per second; `None` = closed model.
    pub rate: Option<f64>,
    /// Measured time.
    pub duration: Duration,
    /// Unrecorded time before it.
    pub warmup: Duration,
    /// Per-request timeout.
    pub timeout: Duration,
    /// Runtime threads of the load generator (for the report).
    pub threads: usize,
    /// Print a progress line each second.
    pub progress: bool,
}

/// One operation's numbers.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OpSummary {
    /// Operation (`all` for the total).
    pub op: String,
    /// Requests answered or failed in the measured window.
    pub requests: u64,
    /// 2xx with a good body.
    pub ok: u64,
    /// 2xx per second.
    pub ok_rps: f64,
    /// Errors: non-2xx + bad bodies + socket errors + timeouts.
    pub errors: u64,
    /// Errors per request.
    pub error_ratio: f64,
    /// Responses by status.
    pub statuses: std::collections::BTreeMap<String, u64>,
    /// Socket errors.
    pub socket_errors: u64,
    /// Timeouts.
    pub timeouts: u64,
    /// 2xx with an unexpected body.
    pub bad_body: u64,
    /// 503 responses.
    pub s503: u64,
    /// 503 responses with `Retry-After`.
    pub s503_retry_after: u64,
    /// 429 responses.
    pub s429: u64,
    /// Latency of the successes.
    pub latency_ms: Percentiles,
    /// Latency of the 503s.
    pub latency_503_ms: Percentiles,
    /// Latency of all error responses (not socket errors or timeouts).
    pub latency_errors_ms: Percentiles,
    /// Percentile curve of the successes: (percentile, ms).
    pub curve: Vec<(f64, f64)>,
    /// First distinct error messages.
    pub error_samples: Vec<String>,
}

impl OpSummary {
    fn of(op: &str, rec: &OpRec, secs: f64) -> OpSummary {
        let ok = rec.ok_count();
        let errors = rec.error_count();
        let requests = rec.statuses.values().sum::<u64>() + rec.socket_errors + rec.timeouts;
        OpSummary {
            op: op.to_owned(),
            requests,
            ok,
            ok_rps: ok as f64 / secs.max(1e-9),
            errors,
            error_ratio: if requests == 0 { 0.0 } else { errors as f64 / requests as f64 },
            statuses: rec.statuses.iter().map(|(s, n)| (s.to_string(), *n)).collect(),
            socket_errors: rec.socket_errors,
            timeouts: rec.timeouts,
            bad_body: rec.bad_body,
            s503: rec.statuses.get(&503).copied().unwrap_or(0),
            s503_retry_after: rec.s503_retry_after,
            s429: rec.statuses.get(&429).copied().unwrap_or(0),
            latency_ms: Percentiles::of(&rec.ok),
            latency_503_ms: Percentiles::of(&rec.rejected),
            latency_errors_ms: Percentiles::of(&rec.failed),
            curve: curve(&rec.ok),
            error_samples: rec.samples.clone(),
        }
    }
}

/// Everything about one run; the JSON report is a list of these.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunResult {
    /// Name.
    pub label: String,
    /// Scenario.
    pub scenario: String,
    /// Target URL.
    pub target: String,
    /// `closed` or `open`.
    pub model: String,
    /// Connections.
    pub connections: usize,
    /// Offered rate (open model).
    pub rate: Option<f64>,
    /// Load generator threads.
    pub threads: usize,
    /// Measured seconds.
    pub duration_s: f64,
    /// Warm-up seconds.
    pub warmup_s: f64,
    /// Per-request timeout, seconds.
    pub timeout_s: f64,
    /// Unix time of the start of the measurement.
    pub started_unix: u64,
    /// Seconds spent preparing data.
    pub setup_s: f64,
    /// Why the scenario did not run, if it did not.
    pub skipped: Option<String>,
    /// Open model: requests due in the measured window.
    pub scheduled: Option<u64>,
    /// Open model: due requests never sent because no connection was free
    /// before they were older than the timeout (raise --connections).
    pub backlog_expired: u64,
    /// Every operation together.
    pub total: OpSummary,
    /// Per operation.
    pub ops: Vec<OpSummary>,
    /// One point per second.
    pub timeline: Vec<Point>,
    /// Notes from the preparation.
    pub notes: Vec<String>,
}

impl RunResult {
    /// A run that did not happen.
    pub fn skipped(cfg: &RunConfig, target: &str, setup_s: f64, why: String) -> RunResult {
        let empty = OpSummary::of("all", &Recorder::total(&[]), 1.0);
        RunResult {
            label: cfg.label.clone(),
            scenario: cfg.kind.name().into(),
            target: target.into(),
            model: if cfg.rate.is_some() { "open" } else { "closed" }.into(),
            connections: cfg.connections,
            rate: cfg.rate,
            threads: cfg.threads,
            duration_s: 0.0,
            warmup_s: 0.0,
            timeout_s: cfg.timeout.as_secs_f64(),
            started_unix: unix_now(),
            setup_s,
            skipped: Some(why),
            scheduled: None,
            backlog_expired: 0,
            total: empty,
            ops: Vec::new(),
            timeline: Vec::new(),
            notes: Vec::new(),
        }
    }
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

struct Clock {
    start: Instant,
    warm_end: Instant,
    end: Instant,
    /// Open model: nanoseconds between due times.
    interval_ns: Option<f64>,
    next_slot: AtomicU64,
    timeout: Duration,
}

async fn worker(
    id: usize,
    shared: Arc<Shared>,
    target: Arc<Target>,
    rec: Arc<Recorder>,
    clock: Arc<Clock>,
) {
    let mut conn = Conn::new(target);
    let mut state = Worker::new(id, &shared);
    loop {
        // When this request is due: now (closed) or its slot (open).
        let due = match clock.interval_ns {
            None => {
                let now = Instant::now();
                if now >= clock.end {
                    return;
                }
                now
            }
            Some(interval) => {
                let slot = clock.next_slot.fetch_add(1, Ordering::Relaxed);
                let due = clock.start + Duration::from_nanos((slot as f64 * interval) as u64);
                if due >= clock.end {
                    return;
                }
                let now = Instant::now();
                if due > now {
                    // The timer wheel ticks in milliseconds and rounds up:
                    // aim one tick early and count from the send when that
                    // is before the due time (below), so neither a late
                    // wake-up nor a per-connection cap of ~1 request per
                    // tick skews the run.
                    let early = due.checked_sub(Duration::from_millis(1)).unwrap_or(due);
                    if early > now {
                        tokio::time::sleep_until(early.into()).await;
                    }
                } else if now - due > clock.timeout {
                    // Already older than the timeout: the client fell behind.
                    if due >= clock.warm_end {
                        rec.backlog_expired.fetch_add(1, Ordering::Relaxed);
                    }
                    continue;
                }
                due
            }
        };
        let call = state.next(&shared);
        // Latency counts from the due time, or from the send if that came first.
        let origin = due.min(Instant::now());
        let result = conn.send(&call, clock.timeout).await;
        let latency = origin.elapsed();
        let (outcome, bad) = match &result {
            Ok(reply) => {
                let bad = state.observe(&shared, &call, Some(reply));
                let outcome = if !(200..300).contains(&reply.status) {
                    Outcome::Status(reply.status, reply.retry_after.is_some(), snippet(&reply.body))
                } else if let Some(why) = &bad {
                    Outcome::BadBody(reply.status, why.clone())
                } else {
                    Outcome::Ok(reply.status)
                };
                (outcome, bad)
            }
            Err(Failure::Timeout) => {
                state.observe(&shared, &call, None);
                (Outcome::Timeout, None)
            }
            Err(Failure::Socket(e)) => {
                state.observe(&shared, &call, None);
                (Outcome::Socket(e.clone()), None)
            }
        };
        let _ = bad;
        if due >= clock.warm_end {
            rec.record(id, call.op, latency, &outcome);
        }
        if matches!(outcome, Outcome::Socket(_)) {
            // Do not spin on a refused connection.
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

/// Runs `cfg` with the prepared `shared` data.
pub async fn run(cfg: &RunConfig, shared: Arc<Shared>, target: Arc<Target>, setup_s: f64) -> RunResult {
    let rec = Arc::new(Recorder::new(16));
    let start = Instant::now() + Duration::from_millis(20);
    let warm_end = start + cfg.warmup;
    let end = warm_end + cfg.duration;
    let clock = Arc::new(Clock {
        start,
        warm_end,
        end,
        interval_ns: cfg.rate.map(|r| 1e9 / r.max(1e-6)),
        next_slot: AtomicU64::new(0),
        timeout: cfg.timeout,
    });
    let mut handles = Vec::new();
    for id in 0..cfg.connections.max(1) {
        handles.push(tokio::spawn(worker(
            id,
            shared.clone(),
            target.clone(),
            rec.clone(),
            clock.clone(),
        )));
    }
    let started_unix = unix_now() + cfg.warmup.as_secs();
    let mut timeline = Vec::new();
    let hard_stop = end + cfg.timeout + Duration::from_secs(2);
    let mut last = start;
    let mut measuring = false;
    loop {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let now = Instant::now();
        let finished = handles.iter().all(|h| h.is_finished()) || now >= hard_stop;
        if !measuring && now >= warm_end {
            // Whatever the window holds is warm-up.
            let _ = rec.take_window(0.0, 1.0);
            measuring = true;
            last = now;
        }
        let secs = now.duration_since(last).as_secs_f64();
        if secs >= 1.0 || finished {
            let point = rec.take_window(now.saturating_duration_since(warm_end).as_secs_f64(), secs);
            last = now;
            if cfg.progress && secs >= 0.05 {
                let phase = if measuring { "" } else { " (warm-up)" };
                eprintln!(
                    "[{:6.1}s] {:<16} ok {:8.0}/s  err {:6.0}/s  503 {:6.0}/s  p50 {:8.2}  p90 {:8.2}  p99 {:8.2}  max {:8.2} ms{phase}",
                    now.saturating_duration_since(start).as_secs_f64(),
                    cfg.label,
                    point.ok_rps,
                    point.err_rps,
                    point.s503_rps,
                    point.p50_ms,
                    point.p90_ms,
                    point.p99_ms,
                    point.max_ms,
                );
            }
            if measuring && secs >= 0.05 {
                timeline.push(point);
            }
        }
        if finished {
            break;
        }
    }
    for h in &handles {
        h.abort();
    }
    let secs = cfg.duration.as_secs_f64();
    let ops = rec.merged();
    let total = Recorder::total(&ops);
    let mut notes = shared.notes.clone();
    let backlog_expired = rec.backlog_expired.load(Ordering::Relaxed);
    if backlog_expired > 0 {
        notes.push(format!(
            "{backlog_expired} due requests were never sent: every connection was busy for longer \
             than the timeout; raise --connections"
        ));
    }
    RunResult {
        label: cfg.label.clone(),
        scenario: cfg.kind.name().into(),
        target: target.url.clone(),
        model: if cfg.rate.is_some() { "open" } else { "closed" }.into(),
        connections: cfg.connections,
        rate: cfg.rate,
        threads: cfg.threads,
        duration_s: secs,
        warmup_s: cfg.warmup.as_secs_f64(),
        timeout_s: cfg.timeout.as_secs_f64(),
        started_unix,
        setup_s,
        skipped: None,
        scheduled: cfg.rate.map(|r| (r * secs).round() as u64),
        backlog_expired,
        total: OpSummary::of("all", &total, secs),
        ops: ops.iter().map(|(op, r)| OpSummary::of(op, r, secs)).collect(),
        timeline,
        notes,
    }
}
