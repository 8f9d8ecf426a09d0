//! What Petrel tells its operator: one JSON log record per message event
//! (SPEC §5) written to zstd-compressed segments under the policy's log
//! directory, Prometheus metrics counted from those same events, and the
//! `tracing` subscriber for diagnostics.

// Every public item is documented: the records are Petrel's log format.

mod activity;
mod bounces;
mod classify;
mod hooks;
mod metrics;
mod record;
mod record_shape;
mod trace;
mod writer;

pub use activity::{Activity, Bucket, KINDS, SourceActivity};
pub use bounces::{BounceCount, BounceWindow};
pub use classify::{BounceClassifier, CacheSizes, ClassifierError, UNCATEGORIZED, single_line};
pub use hooks::{HookRecord, HookTap, LogHookConfig};
pub use metrics::{ConnectionGuard, EventHistogram, Metrics};
pub use record::{LogRecord, PeerAddress, RecordType, ResponseInfo, SourceAddress};
pub use trace::{SessionTrace, TraceEvent, TraceHub};
pub use writer::{LogConfig, Logger, read_records, segment_lines, segments};

/// Install the process-wide `tracing` subscriber (honours `RUST_LOG`).
/// Safe to call more than once; later calls are ignored and get `None`.
/// The handle changes the filter while running
/// (`kumo.set_diagnostic_log_filter`).
pub fn init_tracing(default_filter: &str) -> Option<LogFilter> {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_filter));
    // Colour only for a person at a terminal, never into a log file.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .with_ansi(ansi)
        .with_writer(std::io::stderr)
        .with_filter_reloading();
    let handle = builder.reload_handle();
    builder.try_init().ok()?;
    Some(LogFilter(std::sync::Arc::new(move |directives: &str| {
        let filter = tracing_subscriber::EnvFilter::try_new(directives).map_err(|e| e.to_string())?;
        handle.reload(filter).map_err(|e| e.to_string())
    })))
}

/// Applies a filter; says why not when it cannot.
type ApplyFilter = dyn Fn(&str) -> Result<(), String> + Send + Sync;

/// Changes the diagnostic log's filter of the running process.
#[derive(Clone)]
pub struct LogFilter(std::sync::Arc<ApplyFilter>);

impl LogFilter {
    /// A filter control of an embedder's own subscriber: `apply` gets the
    /// directives (already checked) and says whether they took effect.
    pub fn from_fn(apply: impl Fn(&str) -> Result<(), String> + Send + Sync + 'static) -> Self {
        Self(std::sync::Arc::new(apply))
    }

    /// Apply `directives` (`petrel=debug`, `info,petrel_delivery=trace`).
    pub fn set(&self, directives: &str) -> Result<(), String> {
        (self.0)(directives)
    }

    /// Whether `directives` is a valid filter, without applying it.
    pub fn check(directives: &str) -> Result<(), String> {
        tracing_subscriber::EnvFilter::try_new(directives).map(|_| ()).map_err(|e| e.to_string())
    }
}

impl std::fmt::Debug for LogFilter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LogFilter")
    }
}
