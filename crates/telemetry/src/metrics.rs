//! Prometheus metrics. Message counters are fed by the log path, so every
//! logged event is counted exactly once and the two can never disagree.

use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
};

/// Petrel's Prometheus metrics (served at `/metrics`).
pub struct Metrics {
    registry: Registry,
    /// `event` is the log record type; pool and source are empty for
    /// events that have none (reception).
    messages: IntCounterVec,
    /// Messages waiting in scheduled queues, and in ready queues.
    pub scheduled_messages: IntGauge,
    /// Messages in ready queues.
    pub ready_messages: IntGauge,
    /// Open outbound connections per egress source.
    pub connections: IntGaugeVec,
    /// Time spent in Lua event handlers, by event.
    pub lua_event_seconds: HistogramVec,
    /// Policy reloads that failed (used by hot reload).
    pub reload_failures: IntGauge,
    /// Spool records found at start that could not be read (see
    /// `petrel spool check`).
    pub spool_unreadable: IntGauge,
    /// 1 while an egress source is skipped because its address will not bind.
    pub source_unhealthy: IntGaugeVec,
    /// Failed attempts by record type, bounce classification, egress
    /// source and site.
    classified: IntCounterVec,
    /// Shaping automation actions taken, by rule and action.
    automation: IntCounterVec,
    /// The last hour and day of events, for the console and status line.
    pub activity: crate::activity::Activity,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Every metric, registered and at zero.
    pub fn new() -> Self {
        let registry = Registry::new();
        let messages = IntCounterVec::new(
            Opts::new("petrel_messages_total", "Message events by type, egress pool and egress source"),
            &["event", "egress_pool", "egress_source"],
        )
        .expect("valid metric");
        let scheduled_messages =
            IntGauge::new("petrel_scheduled_messages", "Messages waiting in scheduled queues").expect("valid metric");
        let ready_messages = IntGauge::new("petrel_ready_messages", "Messages in ready queues").expect("valid metric");
        let connections = IntGaugeVec::new(
            Opts::new("petrel_connections", "Open outbound SMTP connections by egress source"),
            &["egress_source"],
        )
        .expect("valid metric");
        let lua_event_seconds = HistogramVec::new(
            HistogramOpts::new("petrel_lua_event_seconds", "Time spent in Lua event handlers")
                .buckets(vec![0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0]),
            &["event"],
        )
        .expect("valid metric");
        let reload_failures =
            IntGauge::new("petrel_policy_reload_failures", "Policy reloads refused since start").expect("valid metric");
        let spool_unreadable = IntGauge::new(
            "petrel_spool_unreadable_records",
            "Spool records found at start that could not be read; see petrel spool check",
        )
        .expect("valid metric");
        let source_unhealthy = IntGaugeVec::new(
            Opts::new("petrel_source_unhealthy", "1 while an egress source is skipped because it cannot be used"),
            &["egress_source"],
        )
        .expect("valid metric");
        let classified = IntCounterVec::new(
            Opts::new(
                "petrel_bounce_classifications_total",
                "Failed attempts (TransientFailure, Bounce, Expiration) by bounce classification, egress source and site",
            ),
            &["event", "classification", "egress_source", "site"],
        )
        .expect("valid metric");
        let automation = IntCounterVec::new(
            Opts::new("petrel_shaping_automation_total", "Shaping automation actions taken, by rule and action"),
            &["rule", "action"],
        )
        .expect("valid metric");
        for c in [
            Box::new(messages.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(automation.clone()),
            Box::new(classified.clone()),
            Box::new(scheduled_messages.clone()),
            Box::new(ready_messages.clone()),
            Box::new(connections.clone()),
            Box::new(lua_event_seconds.clone()),
            Box::new(reload_failures.clone()),
            Box::new(spool_unreadable.clone()),
            Box::new(source_unhealthy.clone()),
        ] {
            registry.register(c).expect("unique metric names");
        }
        Self {
            registry,
            messages,
            scheduled_messages,
            ready_messages,
            connections,
            lua_event_seconds,
            reload_failures,
            spool_unreadable,
            source_unhealthy,
            classified,
            automation,
            activity: Default::default(),
        }
    }

    /// Count one shaping automation action.
    pub fn count_automation(&self, rule: &str, action: &str) {
        self.automation.with_label_values(&[rule, action]).inc();
    }

    /// Count one classified failure.
    pub fn count_classified(&self, event: &str, classification: &str, source: &str, site: &str) {
        self.classified.with_label_values(&[event, classification, source, site]).inc();
    }

    /// Count one message event (a record type) for its pool and source.
    pub fn count(&self, event: &str, pool: Option<&str>, source: Option<&str>) {
        self.messages.with_label_values(&[event, pool.unwrap_or(""), source.unwrap_or("")]).inc();
    }

    /// Count an open connection from `source` until the guard is dropped.
    pub fn connection_opened(&self, source: &str) -> ConnectionGuard {
        let gauge = self.connections.with_label_values(&[source]);
        gauge.inc();
        ConnectionGuard(gauge)
    }

    /// `event`'s series of `petrel_lua_event_seconds`: a caller that times
    /// the event often keeps it rather than look it up by label each time.
    pub fn lua_histogram(&self, event: &str) -> EventHistogram {
        EventHistogram(self.lua_event_seconds.with_label_values(&[event]))
    }

    /// The Prometheus text exposition format.
    pub fn render(&self) -> String {
        let mut out = Vec::new();
        prometheus::TextEncoder::new().encode(&self.registry.gather(), &mut out).expect("text encoding");
        String::from_utf8(out).expect("text format is UTF-8")
    }
}

/// Held for as long as an outbound connection is open.
pub struct ConnectionGuard(IntGauge);

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// One Lua event's time histogram (see [`Metrics::lua_histogram`]).
#[derive(Clone)]
pub struct EventHistogram(Histogram);

impl EventHistogram {
    /// A timer that records into this histogram when dropped.
    pub fn start_timer(&self) -> prometheus::HistogramTimer {
        self.0.start_timer()
    }
}
