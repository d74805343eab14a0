//! Prometheus metrics for `GET /metrics`.
//!
//! Two kinds of numbers: what happens per request (counts, latencies, cache
//! lookups) is recorded on the request path into one process-wide registry,
//! at the cost of a hash lookup and a few atomic adds; what the instance
//! already counts (the hashing pool, the database pool, actor restarts) is
//! read from its [`AppState`] only when a scraper asks. One process runs
//! one instance in production; the test suite runs many, which share the
//! per-request series (they only ever add up) but each report their own
//! pool and queue readings.

use std::sync::atomic::Ordering;
use std::sync::OnceLock;
use std::time::Duration;

use http::header::CACHE_CONTROL;
use http::StatusCode;
use prometheus::core::Collector;
use prometheus::proto::MetricFamily;
use prometheus::{
    Gauge, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry, TextEncoder,
};

use crate::error::ApiError;
use crate::http::response::Reply;
use crate::state::AppState;

/// The Prometheus text exposition format, with the charset API.md asks for.
const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Latency buckets in seconds: sub-millisecond cache hits up to hashing
/// under load (an Argon2 verify is tens of milliseconds).
const LATENCY_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// The per-request series, registered once per process.
struct RequestMetrics {
    registry: Registry,
    requests: IntCounterVec,
    latency: HistogramVec,
    cache_hits: IntCounterVec,
    cache_misses: IntCounterVec,
}

static REQUEST_METRICS: OnceLock<RequestMetrics> = OnceLock::new();

fn request_metrics() -> &'static RequestMetrics {
    REQUEST_METRICS.get_or_init(|| {
        RequestMetrics::new().unwrap_or_else(|e| {
            // The definitions are constants: only a programming error gets here.
            panic!("metric definitions are invalid: {e}")
        })
    })
}

impl RequestMetrics {
    fn new() -> prometheus::Result<RequestMetrics> {
        let registry = Registry::new();
        let requests = IntCounterVec::new(
            Opts::new(
                "http_requests_total",
                "HTTP requests answered, by route template and status",
            ),
            &["method", "route", "status"],
        )?;
        let latency = HistogramVec::new(
            HistogramOpts::new(
                "http_request_duration_seconds",
                "Time from the request head to the response, by route template",
            )
            .buckets(LATENCY_BUCKETS.to_vec()),
            &["method", "route"],
        )?;
        let cache_hits = IntCounterVec::new(
            Opts::new(
                "cache_hits_total",
                "In-memory cache lookups answered from the cache",
            ),
            &["cache"],
        )?;
        let cache_misses = IntCounterVec::new(
            Opts::new(
                "cache_misses_total",
                "In-memory cache lookups that had to load",
            ),
            &["cache"],
        )?;
        registry.register(Box::new(requests.clone()))?;
        registry.register(Box::new(latency.clone()))?;
        registry.register(Box::new(cache_hits.clone()))?;
        registry.register(Box::new(cache_misses.clone()))?;
        Ok(RequestMetrics {
            registry,
            requests,
            latency,
            cache_hits,
            cache_misses,
        })
    }
}

/// Records one finished request. `route` is the matched template (or
/// `unmatched`), never the raw path, so the label set stays small.
pub fn record_request(method: &str, route: &'static str, status: u16, latency: Duration) {
    let metrics = request_metrics();
    let method = method_label(method);
    let mut buf = [0u8; 3];
    let status = status_label(status, &mut buf);
    metrics
        .requests
        .with_label_values(&[method, route, status])
        .inc();
    metrics
        .latency
        .with_label_values(&[method, route])
        .observe(latency.as_secs_f64());
}

/// Counts a lookup in cache `cache` that found its entry.
pub fn cache_hit(cache: &'static str) {
    request_metrics()
        .cache_hits
        .with_label_values(&[cache])
        .inc();
}

/// Counts a lookup in cache `cache` that had to load its entry.
pub fn cache_miss(cache: &'static str) {
    request_metrics()
        .cache_misses
        .with_label_values(&[cache])
        .inc();
}

/// `GET /metrics`: 404 when `METRICS_ENABLED=false`.
pub fn render(app: &AppState) -> Result<Reply, ApiError> {
    if !app.config.metrics_enabled {
        return Err(ApiError::NotFound);
    }
    let encode_error = |e: prometheus::Error| ApiError::Internal(format!("metrics: {e}"));
    let mut families = request_metrics().registry.gather();
    families.extend(instance_families(app).map_err(encode_error)?);
    let mut text = String::with_capacity(32 * 1024);
    TextEncoder::new()
        .encode_utf8(&families, &mut text)
        .map_err(encode_error)?;
    Ok(Reply::raw(StatusCode::OK, text, CONTENT_TYPE).with_header(CACHE_CONTROL, "no-store"))
}

/// The readings of this instance, taken now.
fn instance_families(app: &AppState) -> prometheus::Result<Vec<MetricFamily>> {
    let hashing = &app.hasher_stats;
    let completed = hashing.completed.load(Ordering::Relaxed);
    let wait_seconds = hashing.wait_micros.load(Ordering::Relaxed) as f64 / 1e6;
    let pool = app.db.status();
    let mut families = Vec::new();
    let mut int_gauge = |name: &str, help: &str, value: usize| -> prometheus::Result<()> {
        let gauge = IntGauge::new(name, help)?;
        gauge.set(i64::try_from(value).unwrap_or(i64::MAX));
        families.extend(gauge.collect());
        Ok(())
    };
    int_gauge(
        "hash_queue_depth",
        "Password hashing jobs waiting for a thread",
        hashing.queued.load(Ordering::Relaxed),
    )?;
    int_gauge(
        "hash_running",
        "Password hashing jobs running now",
        hashing.running.load(Ordering::Relaxed),
    )?;
    int_gauge(
        "audit_events_pending",
        "Audit events queued, not yet written",
        app.audit.pending(),
    )?;
    int_gauge(
        "audit_events_dropped_total",
        "Audit events lost to a full queue or a refused row",
        app.audit.dropped() as usize,
    )?;
    int_gauge("db_pool_max_size", "Database pool capacity", pool.max_size)?;
    int_gauge("db_pool_size", "Database connections open", pool.size)?;
    int_gauge(
        "db_pool_available",
        "Database connections idle in the pool",
        pool.available,
    )?;
    int_gauge(
        "db_pool_waiting",
        "Requests waiting for a database connection",
        pool.waiting,
    )?;
    let mut counter = |name: &str, help: &str, value: u64| -> prometheus::Result<()> {
        let counter = IntCounter::new(name, help)?;
        counter.inc_by(value);
        families.extend(counter.collect());
        Ok(())
    };
    counter(
        "hash_completed_total",
        "Password hashing jobs finished",
        completed,
    )?;
    counter(
        "hash_rejected_total",
        "Password hashing jobs refused because the queue was full (answered 503)",
        hashing.rejected.load(Ordering::Relaxed),
    )?;
    counter(
        "actor_restarts_total",
        "Actors restarted by the supervisor",
        app.actor_restarts.load(Ordering::Relaxed),
    )?;
    let wait_total = prometheus::Counter::new(
        "hash_queue_wait_seconds_total",
        "Time hashing jobs spent queued, summed",
    )?;
    wait_total.inc_by(wait_seconds);
    families.extend(wait_total.collect());
    let wait_mean = Gauge::new(
        "hash_queue_wait_mean_seconds",
        "Mean time a hashing job spent queued, since start",
    )?;
    wait_mean.set(if completed == 0 {
        0.0
    } else {
        wait_seconds / completed as f64
    });
    families.extend(wait_mean.collect());
    let entries = IntGaugeVec::new(
        Opts::new("cache_entries", "Entries held by an in-memory cache"),
        &["cache"],
    )?;
    entries
        .with_label_values(&["users"])
        .set(i64::try_from(app.users.entry_count()).unwrap_or(i64::MAX));
    families.extend(entries.collect());
    Ok(families)
}

/// Standard methods by name; anything else shares one label value, so a
/// client cannot grow the label set.
fn method_label(method: &str) -> &'static str {
    match method {
        "GET" => "GET",
        "HEAD" => "HEAD",
        "POST" => "POST",
        "PUT" => "PUT",
        "PATCH" => "PATCH",
        "DELETE" => "DELETE",
        "OPTIONS" => "OPTIONS",
        _ => "OTHER",
    }
}

/// The three digits of `status` without allocating.
fn status_label(status: u16, buf: &mut [u8; 3]) -> &str {
    let status = status.clamp(100, 999);
    buf[0] = b'0' + (status / 100) as u8;
    buf[1] = b'0' + (status / 10 % 10) as u8;
    buf[2] = b'0' + (status % 10) as u8;
    std::str::from_utf8(buf).unwrap_or("000")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_bounded() {
        let mut buf = [0u8; 3];
        assert_eq!(status_label(204, &mut buf), "204");
        assert_eq!(status_label(5, &mut buf), "100");
        assert_eq!(method_label("PATCH"), "PATCH");
        assert_eq!(method_label("BREW"), "OTHER");
    }

    #[test]
    fn requests_are_counted_by_template() {
        record_request("GET", "/api/unit-test/{id}", 200, Duration::from_millis(3));
        record_request("GET", "/api/unit-test/{id}", 200, Duration::from_millis(3));
        cache_hit("unit-test");
        cache_miss("unit-test");
        let mut text = String::new();
        TextEncoder::new()
            .encode_utf8(&request_metrics().registry.gather(), &mut text)
            .expect("encodes");
        assert!(
            text.contains(
                r#"http_requests_total{method="GET",route="/api/unit-test/{id}",status="200"} 2"#
            ),
            "{text}"
        );
        assert!(text.contains(
            r#"http_request_duration_seconds_bucket{method="GET",route="/api/unit-test/{id}",le="0.005"} 2"#
        ), "{text}");
        assert!(
            text.contains(r#"cache_hits_total{cache="unit-test"} 1"#),
            "{text}"
        );
        assert!(
            text.contains(r#"cache_misses_total{cache="unit-test"} 1"#),
            "{text}"
        );
    }
}
