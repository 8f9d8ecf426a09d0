//! Suspensions as state: each one (of scheduled queues, or of an egress
//! source) has an id, a reason, who made it, when, and when it ends. They
//! are kept in a file beside the spool, so a restart keeps them, and a
//! task lifts each one when it expires. The queues and the dispatcher only
//! see filters and source names; the book counts, so lifting one of two
//! suspensions of the same queue leaves it suspended.

use chrono::{DateTime, Utc};
use parking_lot::Mutex;
use petrel_delivery::Dispatcher;
use petrel_queue::{QueueFilter, QueueManager};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// What a suspension holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Target {
    /// Scheduled queues, by name or by the parts of their names.
    Queues {
        /// Each selector; a queue matching any is held.
        filters: Vec<Selector>,
    },
    /// An egress source: nothing leaves from it.
    Source {
        /// The source's name.
        name: String,
    },
    /// One ready queue: nothing leaves from `source` for `site`.
    ReadyQueue {
        /// The egress source.
        source: String,
        /// The destination site.
        site: String,
    },
    /// Not a hold but a temporary setting: egress path option `name` of
    /// `source->site` is `value` (shaping automation's SetConfig).
    PathOverride {
        /// The egress source.
        source: String,
        /// The destination site.
        site: String,
        /// The `make_egress_path` option.
        name: String,
        /// Its value meanwhile.
        value: String,
    },
}

/// A queue selector as stored (the queue crate's filter, serializable).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Selector {
    /// A queue by its exact name.
    pub queue: Option<String>,
    /// Queues of this recipient domain.
    pub domain: Option<String>,
    /// Queues of this tenant.
    pub tenant: Option<String>,
    /// Queues of this campaign.
    pub campaign: Option<String>,
}

impl From<&petrel_http_api::QueueSelector> for Selector {
    fn from(s: &petrel_http_api::QueueSelector) -> Self {
        Self {
            queue: s.queue.clone(),
            domain: s.domain.clone(),
            tenant: s.tenant.clone(),
            campaign: s.campaign.clone(),
        }
    }
}

impl Selector {
    fn filter(&self) -> QueueFilter {
        QueueFilter {
            queue: self.queue.clone(),
            domain: self.domain.clone(),
            tenant: self.tenant.clone(),
            campaign: self.campaign.clone(),
        }
    }
}

/// One suspension.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Suspension {
    /// Its id (a UUID), for lifting it.
    pub id: String,
    /// What it holds.
    pub target: Target,
    /// Why.
    pub reason: String,
    /// Who made it (`admin`, or the rule that did).
    pub creator: String,
    /// When it was made.
    pub created: DateTime<Utc>,
    /// When it ends by itself; `None` lasts until lifted.
    pub expires: Option<DateTime<Utc>>,
}

/// Every active suspension, applied to the queues and the dispatcher.
pub struct SuspensionBook {
    path: PathBuf,
    active: Mutex<Vec<Suspension>>,
    queues: Arc<QueueManager>,
    dispatcher: Arc<Dispatcher>,
}

impl SuspensionBook {
    /// Read the book kept at `dir`, apply what has not expired.
    pub fn open(dir: &std::path::Path, queues: Arc<QueueManager>, dispatcher: Arc<Dispatcher>) -> Arc<Self> {
        let path = dir.join("suspensions.json");
        let stored: Vec<Suspension> = crate::state_file::load(&path).unwrap_or_default();
        let book = Arc::new(Self { path, active: Mutex::new(Vec::new()), queues, dispatcher });
        let now = Utc::now();
        let stored_count = stored.len();
        let live: Vec<Suspension> = stored.into_iter().filter(|s| s.expires.is_none_or(|e| e > now)).collect();
        let expired = stored_count - live.len();
        if !live.is_empty() {
            tracing::info!(count = live.len(), "suspensions restored");
        }
        for suspension in &live {
            book.apply(suspension);
        }
        *book.active.lock() = live;
        if expired > 0 {
            book.save();
        }
        book
    }

    fn apply(&self, suspension: &Suspension) {
        match &suspension.target {
            Target::Queues { filters } => {
                for f in filters {
                    self.queues.suspend_matching(&f.filter());
                }
            }
            Target::Source { name } => self.dispatcher.suspend_source(name),
            Target::ReadyQueue { source, site } => self.dispatcher.suspend_ready(source, site),
            Target::PathOverride { source, site, name, value } => {
                self.dispatcher.set_path_override(source, site, name, value)
            }
        }
    }

    /// Lift `gone`'s effect, unless another active suspension holds the same.
    fn unapply(&self, gone: &Suspension, remaining: &[Suspension]) {
        match &gone.target {
            Target::Queues { filters } => {
                for f in filters {
                    let still = remaining
                        .iter()
                        .any(|s| matches!(&s.target, Target::Queues { filters } if filters.contains(f)));
                    if !still {
                        self.queues.resume_matching(&f.filter());
                    }
                }
            }
            Target::Source { name } => {
                let still = remaining.iter().any(|s| matches!(&s.target, Target::Source { name: n } if n == name));
                if !still {
                    self.dispatcher.resume_source(name);
                }
            }
            Target::ReadyQueue { source, site } => {
                let still = remaining.iter().any(|s| s.target == gone.target);
                if !still {
                    self.dispatcher.resume_ready(source, site);
                }
            }
            Target::PathOverride { source, site, name, .. } => {
                let same = |t: &Target| matches!(t, Target::PathOverride { source: so, site: si, name: n, .. } if so == source && si == site && n == name);
                match remaining.iter().rev().find(|s| same(&s.target)) {
                    // Another override of the same option takes over.
                    Some(other) => self.apply(other),
                    None => self.dispatcher.clear_path_override(source, site, name),
                }
            }
        }
    }

    /// Write the book (atomically: a reader sees the old or the new file).
    fn save(&self) {
        let active = self.active.lock().clone();
        if let Err(e) = crate::state_file::save(&self.path, &active) {
            tracing::error!(path = %self.path.display(), error = %e, "cannot save the suspensions; a restart would lose the latest");
        }
    }

    /// Add a suspension; returns it (with its id).
    pub fn add(&self, target: Target, reason: String, creator: &str, expires: Option<DateTime<Utc>>) -> Suspension {
        let suspension = Suspension {
            id: uuid::Uuid::new_v4().to_string(),
            target,
            reason,
            creator: creator.to_string(),
            created: Utc::now(),
            expires,
        };
        self.apply(&suspension);
        self.active.lock().push(suspension.clone());
        self.save();
        suspension
    }

    /// Lift the suspensions `pick` selects; how many.
    pub fn lift(&self, pick: impl Fn(&Suspension) -> bool) -> usize {
        let (gone, remaining) = {
            let mut active = self.active.lock();
            let (gone, keep): (Vec<_>, Vec<_>) = active.drain(..).partition(|s| pick(s));
            *active = keep.clone();
            (gone, keep)
        };
        for s in &gone {
            self.unapply(s, &remaining);
        }
        if !gone.is_empty() {
            self.save();
        }
        gone.len()
    }

    /// Every active suspension, oldest first.
    pub fn list(&self) -> Vec<Suspension> {
        self.active.lock().clone()
    }

    /// What holds `source` (or its ready queue for `site`), for the queue
    /// summary: reason, time left.
    pub fn source_reason(&self, source: &str, site: &str) -> Option<String> {
        let active = self.active.lock();
        active
            .iter()
            .find(|s| match &s.target {
                Target::Source { name } => name == source,
                Target::ReadyQueue { source: so, site: si } => so == source && si == site,
                Target::Queues { .. } | Target::PathOverride { .. } => false,
            })
            .map(describe)
    }

    /// Whether an automation suspension of `target` is in force.
    pub fn holds(&self, target: &Target) -> bool {
        self.active.lock().iter().any(|s| &s.target == target)
    }

    /// What holds scheduled queue `name`, for the queue summary.
    pub fn queue_reason(&self, name: &str) -> Option<String> {
        let parts = petrel_message::QueueNameParts::parse(name);
        let key = petrel_queue::QueueKey {
            domain: parts.domain.to_ascii_lowercase(),
            tenant: parts.tenant.map(str::to_string),
            campaign: parts.campaign.map(str::to_string),
            routing_domain: parts.routing_domain.map(str::to_string),
        };
        let active = self.active.lock();
        active
            .iter()
            .find(|s| matches!(&s.target, Target::Queues { filters } if filters.iter().any(|f| f.filter().matches(name, &key))))
            .map(describe)
    }

    /// Lift expired suspensions once a second until shutdown.
    pub fn run_expiry(self: Arc<Self>, shutdown: CancellationToken) {
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                    _ = shutdown.cancelled() => return,
                }
                let now = Utc::now();
                let lifted = self.lift(|s| s.expires.is_some_and(|e| e <= now));
                if lifted > 0 {
                    tracing::info!(lifted, "suspensions expired");
                }
            }
        });
    }
}

/// When a suspension asked for with `duration` or `expires` ends.
pub(crate) fn expiry(duration: Option<&str>, expires: Option<DateTime<Utc>>) -> Result<Option<DateTime<Utc>>, String> {
    match (duration, expires) {
        (Some(_), Some(_)) => Err("give duration or expires, not both".into()),
        (Some(text), None) => {
            let d = humantime::parse_duration(text.trim()).map_err(|e| format!("cannot read {text:?}: {e}"))?;
            let d = chrono::Duration::from_std(d).map_err(|_| format!("{text:?} is too long"))?;
            Ok(Some(Utc::now() + d))
        }
        (None, Some(at)) if at <= Utc::now() => Err(format!("expires {at} is in the past")),
        (None, at) => Ok(at),
    }
}

/// `reason (by creator, 1h 59m left)`.
fn describe(s: &Suspension) -> String {
    format!("{} (by {}, {})", s.reason, s.creator, left(s))
}

fn left(s: &Suspension) -> String {
    match s.expires {
        None => "until lifted".to_string(),
        Some(at) => {
            let left = (at - Utc::now()).to_std().unwrap_or_default();
            format!("{} left", humantime::format_duration(Duration::from_secs(left.as_secs())))
        }
    }
}

/// What the API and the CLI show of a suspension.
pub(crate) fn info(s: &Suspension) -> petrel_http_api::SuspensionInfo {
    let (kind, target) = match &s.target {
        Target::Queues { filters } => {
            let text: Vec<String> = filters
                .iter()
                .map(|f| {
                    let parts =
                        [("queue", &f.queue), ("domain", &f.domain), ("tenant", &f.tenant), ("campaign", &f.campaign)];
                    let set: Vec<String> =
                        parts.iter().filter_map(|(k, v)| v.as_ref().map(|v| format!("{k}={v}"))).collect();
                    set.join(" ")
                })
                .collect();
            ("queue", text.join("; "))
        }
        Target::Source { name } => ("source", name.clone()),
        Target::ReadyQueue { source, site } => ("ready_queue", format!("{source}->{site}")),
        Target::PathOverride { source, site, name, value } => {
            ("config_override", format!("{source}->{site}: {name} = {value}"))
        }
    };
    let duration = left(s);
    petrel_http_api::SuspensionInfo {
        id: s.id.clone(),
        kind: kind.into(),
        target,
        reason: s.reason.clone(),
        creator: s.creator.clone(),
        created: s.created,
        expires: s.expires,
        duration,
    }
}
