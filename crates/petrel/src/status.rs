//! The daemon's one-line status: every interval in which something
//! happened, how many messages were received, delivered, deferred, bounced
//! and expired, and how many wait. A quiet daemon prints nothing.

use petrel_delivery::Dispatcher;
use petrel_queue::QueueManager;
use petrel_telemetry::Metrics;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// The line for what changed between two readings of the totals.
pub(crate) fn line(before: [u64; 5], now: [u64; 5], queued: usize, every: Duration) -> String {
    let d: Vec<u64> = now.iter().zip(before).map(|(n, b)| n - b).collect();
    format!(
        "status: last {}s: received {}, delivered {}, deferred {}, bounced {}, expired {}; {queued} queued",
        every.as_secs(),
        d[0],
        d[1],
        d[2],
        d[3],
        d[4]
    )
}

/// Print the status every `every` while anything moves.
pub(crate) fn run(
    every: Duration,
    metrics: Arc<Metrics>,
    queues: Arc<QueueManager>,
    dispatcher: Arc<Dispatcher>,
    shutdown: CancellationToken,
) {
    tokio::spawn(async move {
        let queued = || queues.waiting() + dispatcher.summary().iter().map(|r| r.messages).sum::<usize>();
        let mut last = (metrics.activity.totals(), queued());
        let mut tick = tokio::time::interval(every);
        tick.tick().await;
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = shutdown.cancelled() => return,
            }
            let now = (metrics.activity.totals(), queued());
            if now != last {
                tracing::info!("{}", line(last.0, now.0, now.1, every));
                last = now;
            }
        }
    });
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_line_counts_what_changed() {
        let line = super::line([1, 1, 0, 0, 0], [5, 3, 1, 1, 0], 2, std::time::Duration::from_secs(10));
        assert_eq!(line, "status: last 10s: received 4, delivered 2, deferred 1, bounced 1, expired 0; 2 queued");
    }
}
