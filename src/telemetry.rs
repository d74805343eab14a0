//! Logging through `tracing`: human lines or JSON, filtered by `RUST_LOG`.
//! Lines are written by a dedicated thread, so a request never waits on
//! stdout: at tens of thousands of requests a second, a synchronous write
//! per access-log line costs a large share of the request path.

use tracing_appender::non_blocking::{NonBlockingBuilder, WorkerGuard};
use tracing_subscriber::EnvFilter;

use crate::config::LogFormat;

/// Lines buffered before a writer waits (never dropped: logs are evidence).
const BUFFERED_LINES: usize = 256 * 1024;

/// Installs the global subscriber (once; later calls are no-ops). Keep the
/// guard until exit: dropping it flushes what is buffered.
pub fn init(format: LogFormat) -> WorkerGuard {
    let (writer, guard) = NonBlockingBuilder::default()
        .lossy(false)
        .buffered_lines_limit(BUFFERED_LINES)
        .finish(std::io::stdout());
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .with_writer(writer);
    let _ = match format {
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
        LogFormat::Human => builder.try_init(),
    };
    guard
}
