//! Runs shaping automation in the daemon: failures from the log go
//! through the policy's rules, and what a rule decides becomes a
//! suspension (creator `automation: <rule>`, the matching reply as its
//! reason) that expires by itself.

use crate::suspensions::{Selector, SuspensionBook, Target};
use parking_lot::Mutex;
use petrel_delivery::automation::{AutomationRule, Automaton, Decision, Fired};
use petrel_telemetry::{LogRecord, Logger};
use std::sync::Arc;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// The rules in force and the channel failures arrive on.
pub(crate) struct Automation {
    automaton: Arc<Mutex<Automaton>>,
    tx: mpsc::UnboundedSender<LogRecord>,
    logger: Logger,
}

impl Automation {
    /// Start watching failures with `rules` (none: nothing is watched).
    pub(crate) fn start(
        logger: Logger,
        rules: Vec<AutomationRule>,
        book: Arc<SuspensionBook>,
        shutdown: CancellationToken,
    ) -> Self {
        let (tx, mut rx) = mpsc::unbounded_channel::<LogRecord>();
        let automaton = Arc::new(Mutex::new(Automaton::new(Vec::new())));
        let me = Self { automaton: automaton.clone(), tx, logger: logger.clone() };
        me.replace(rules);
        tokio::spawn(async move {
            loop {
                let record = tokio::select! {
                    r = rx.recv() => match r { Some(r) => r, None => return },
                    _ = shutdown.cancelled() => return,
                };
                let fired = automaton.lock().observe(&record, std::time::Instant::now());
                for f in fired {
                    act(&book, &logger, f);
                }
            }
        });
        me
    }

    /// A reload's rules replace the old ones (and their counters).
    pub(crate) fn replace(&self, rules: Vec<AutomationRule>) {
        let watching = !rules.is_empty();
        *self.automaton.lock() = Automaton::new(rules);
        self.logger.watch_failures(watching.then(|| self.tx.clone()));
    }
}

fn act(book: &SuspensionBook, logger: &Logger, fired: Fired) {
    let target = match &fired.decision {
        Decision::ReadyQueue { source, site } => Target::ReadyQueue { source: source.clone(), site: site.clone() },
        Decision::PathOverride { source, site, name, value } => Target::PathOverride {
            source: source.clone(),
            site: site.clone(),
            name: name.clone(),
            value: value.clone(),
        },
        Decision::Queues { domain, tenant, campaign } => Target::Queues {
            filters: vec![Selector {
                domain: Some(domain.clone()),
                tenant: tenant.clone(),
                campaign: campaign.clone(),
                ..Default::default()
            }],
        },
    };
    if book.holds(&target) {
        return;
    }
    let expires = chrono::Duration::from_std(fired.duration).ok().map(|d| chrono::Utc::now() + d);
    let creator = format!("automation: {}", fired.rule);
    let made = book.add(target, fired.reason.clone(), &creator, expires);
    logger.metrics().count_automation(&fired.rule, fired.action.label());
    tracing::warn!(rule = %fired.rule, action = ?fired.action, decision = ?fired.decision, id = %made.id, reason = %fired.reason, "shaping automation acted");
}
