//! What Petrel tells its operator: one JSON log record per message event
//! (SPEC §5) written to zstd-compressed segments under the policy's log
//! directory, Prometheus metrics counted from those same events, and the
//! `tracing` subscriber for diagnostics.

// Every public item is documented: the records are Petrel's log format.

mod metrics;
mod record;
mod record_shape;
mod writer;

pub use metrics::{ConnectionGuard, Metrics};
pub use record::{LogRecord, PeerAddress, RecordType, ResponseInfo, SourceAddress};
pub use writer::{LogConfig, Logger, read_records, segment_lines, segments};

/// Install the process-wide `tracing` subscriber (honours `RUST_LOG`).
/// Safe to call more than once; later calls are ignored.
pub fn init_tracing(default_filter: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_filter));
    // Colour only for a person at a terminal, never into a log file.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .with_ansi(ansi)
        .with_writer(std::io::stderr)
        .try_init();
}
