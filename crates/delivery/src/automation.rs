//! Traffic shaping automation, in-process: rules from the shaping files
//! (`[["gmail.com".automation]]`) watch the replies of failed attempts and,
//! when a rule's regex matches (at once, or N times within a period),
//! decide to suspend the source × site the reply came from, or the
//! tenant or campaign. Sans-IO: records in, decisions out; the daemon
//! turns decisions into suspensions that expire by themselves.

use petrel_telemetry::{LogRecord, RecordType};
use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

/// Which mail a rule watches: a domain's, or a provider's.
#[derive(Debug, Clone)]
pub enum Scope {
    /// Recipients of this domain (a `["gmail.com"]` block).
    Domain(String),
    /// A `[provider."name"]` block's `match` list.
    Provider(Vec<ProviderMatch>),
}

/// One entry of a provider's `match` list.
#[derive(Debug, Clone)]
pub enum ProviderMatch {
    /// The recipient domain ends with this.
    DomainSuffix(String),
    /// One of the site's MX hosts ends with this.
    MxSuffix(String),
    /// One of the site's MX hosts is this.
    HostName(String),
}

/// What a rule does when it fires.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Suspend the source × site (the ready queue) the reply came from.
    Suspend,
    /// Suspend the message's tenant for its domain.
    SuspendTenant,
    /// Suspend the message's campaign (of its tenant) for its domain.
    SuspendCampaign,
    /// Override one egress path option for the source × site.
    SetConfig {
        /// The `make_egress_path` option.
        name: String,
        /// Its value while the override lasts.
        value: String,
    },
}

impl Action {
    /// Its name in logs and metrics.
    pub fn label(&self) -> &'static str {
        match self {
            Action::Suspend => "Suspend",
            Action::SuspendTenant => "SuspendTenant",
            Action::SuspendCampaign => "SuspendCampaign",
            Action::SetConfig { .. } => "SetConfig",
        }
    }
}

/// When a rule fires.
#[derive(Debug, Clone, Copy)]
pub enum Trigger {
    /// At the first match.
    Immediate,
    /// At the `count`-th match within `period` (per source × site).
    Threshold {
        /// Matches needed.
        count: usize,
        /// Within this long.
        period: Duration,
    },
}

/// One automation rule.
#[derive(Debug, Clone)]
pub struct AutomationRule {
    /// Names the rule in suspensions and logs (`gmail.com#1`).
    pub name: String,
    /// Which mail it watches.
    pub scope: Scope,
    /// Any of these matching the reply matches the rule.
    pub regex: Vec<regex::Regex>,
    /// What it does.
    pub action: Action,
    /// How long the action lasts.
    pub duration: Duration,
    /// When it fires.
    pub trigger: Trigger,
}

/// What to suspend, decided by a rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// The ready queue `source->site`.
    ReadyQueue {
        /// The egress source.
        source: String,
        /// The site.
        site: String,
    },
    /// An egress path option of `source->site`, overridden.
    PathOverride {
        /// The egress source.
        source: String,
        /// The site.
        site: String,
        /// The option.
        name: String,
        /// Its value.
        value: String,
    },
    /// Scheduled queues of `tenant` (and `campaign`) for `domain`.
    Queues {
        /// The recipient domain.
        domain: String,
        /// The tenant.
        tenant: Option<String>,
        /// The campaign.
        campaign: Option<String>,
    },
}

/// A rule that fired: what to hold, for how long, and why.
#[derive(Debug, Clone)]
pub struct Fired {
    /// The rule's name.
    pub rule: String,
    /// The action taken.
    pub action: Action,
    /// What to hold.
    pub decision: Decision,
    /// For how long.
    pub duration: Duration,
    /// The reply that fired it.
    pub reason: String,
}

/// The rules and their counters.
pub struct Automaton {
    rules: Vec<AutomationRule>,
    /// Match times per (rule, source, site), for thresholds.
    seen: HashMap<(usize, String, String), VecDeque<Instant>>,
    /// What fired and until when: no second action while one holds.
    holding: HashMap<(usize, String), Instant>,
}

fn meta(record: &LogRecord, key: &str) -> Option<String> {
    record.meta.get(key).and_then(|v| v.as_str()).map(str::to_string)
}

fn domain_of(address: &str) -> &str {
    address.rsplit_once('@').map_or("", |(_, d)| d)
}

impl Scope {
    fn covers(&self, domain: &str, site: &str) -> bool {
        let hosts = || site.trim_start_matches("mx_list:").split(',').map(|h| h.trim().trim_end_matches('.'));
        match self {
            Scope::Domain(d) => d.eq_ignore_ascii_case(domain),
            Scope::Provider(list) => list.iter().any(|m| match m {
                ProviderMatch::DomainSuffix(s) => domain.to_ascii_lowercase().ends_with(&s.to_ascii_lowercase()),
                ProviderMatch::MxSuffix(s) => {
                    hosts().any(|h| h.to_ascii_lowercase().ends_with(&s.to_ascii_lowercase()))
                }
                ProviderMatch::HostName(n) => hosts().any(|h| h.eq_ignore_ascii_case(n)),
            }),
        }
    }
}

impl Automaton {
    /// An automaton with `rules` and no history.
    pub fn new(rules: Vec<AutomationRule>) -> Self {
        Self { rules, seen: HashMap::new(), holding: HashMap::new() }
    }

    /// Whether there is anything to watch.
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// Watch one record (at `now`); the rules it fires.
    pub fn observe(&mut self, record: &LogRecord, now: Instant) -> Vec<Fired> {
        if !matches!(record.kind, RecordType::TransientFailure | RecordType::Bounce) {
            return Vec::new();
        }
        let Some(source) = record.egress_source.clone() else { return Vec::new() };
        let site = record.site.split_once("->").map_or(record.site.as_str(), |(_, s)| s).to_string();
        let domain = record.queue.rsplit_once('@').map_or(record.queue.as_str(), |(_, d)| d);
        let domain = domain.split('!').next().unwrap_or(domain).to_string();
        let domain = if domain.is_empty() { domain_of(&record.recipient).to_string() } else { domain };
        let reply = petrel_telemetry::single_line(&record.response);
        let mut fired = Vec::new();
        for (index, rule) in self.rules.iter().enumerate() {
            if !rule.scope.covers(&domain, &site) || !rule.regex.iter().any(|r| r.is_match(&reply)) {
                continue;
            }
            if let Trigger::Threshold { count, period } = rule.trigger {
                let times = self.seen.entry((index, source.clone(), site.clone())).or_default();
                times.push_back(now);
                while times.front().is_some_and(|t| now.duration_since(*t) > period) {
                    times.pop_front();
                }
                if times.len() < count {
                    continue;
                }
                times.clear();
            }
            let decision = match &rule.action {
                Action::Suspend => Decision::ReadyQueue { source: source.clone(), site: site.clone() },
                Action::SetConfig { name, value } => Decision::PathOverride {
                    source: source.clone(),
                    site: site.clone(),
                    name: name.clone(),
                    value: value.clone(),
                },
                Action::SuspendTenant => {
                    Decision::Queues { domain: domain.clone(), tenant: meta(record, "tenant"), campaign: None }
                }
                Action::SuspendCampaign => Decision::Queues {
                    domain: domain.clone(),
                    tenant: meta(record, "tenant"),
                    campaign: meta(record, "campaign"),
                },
            };
            let key = (index, format!("{decision:?}"));
            if self.holding.get(&key).is_some_and(|until| *until > now) {
                continue;
            }
            self.holding.insert(key, now + rule.duration);
            fired.push(Fired {
                rule: rule.name.clone(),
                action: rule.action.clone(),
                decision,
                duration: rule.duration,
                reason: format!("{} matched: {reply}", rule.name),
            });
        }
        fired
    }
}

/// `"2/hr"`, `"10/10m"`: a count and its period.
pub fn parse_threshold(text: &str) -> Result<Trigger, String> {
    let (count, period) = text.split_once('/').ok_or_else(|| format!("{text:?}: expected N/period, such as 2/hr"))?;
    let count: usize = count.trim().parse().map_err(|_| format!("{text:?}: {count:?} is not a count"))?;
    let period = match period.trim() {
        "s" | "sec" | "second" => Duration::from_secs(1),
        "m" | "min" | "minute" => Duration::from_secs(60),
        "h" | "hr" | "hour" => Duration::from_secs(3600),
        "d" | "day" => Duration::from_secs(86_400),
        other => humantime::parse_duration(other).map_err(|e| format!("{text:?}: {e}"))?,
    };
    if count == 0 {
        return Err(format!("{text:?}: the count must be at least 1"));
    }
    Ok(Trigger::Threshold { count, period })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thresholds_and_scopes_read_as_kumomta_writes_them() {
        match parse_threshold("2/hr").unwrap() {
            Trigger::Threshold { count, period } => assert_eq!((count, period), (2, Duration::from_secs(3600))),
            Trigger::Immediate => panic!("a threshold"),
        }
        assert!(matches!(parse_threshold("10/10m"), Ok(Trigger::Threshold { count: 10, .. })));
        assert!(parse_threshold("0/hr").is_err() && parse_threshold("often").is_err());
        let yahoo = Scope::Provider(vec![ProviderMatch::MxSuffix(".yahoodns.net".into())]);
        assert!(yahoo.covers("aol.com", "mta5.am0.yahoodns.net,mta6.am0.yahoodns.net"));
        assert!(!yahoo.covers("gmail.com", "gmail-smtp-in.l.google.com"));
        assert!(Scope::Domain("Gmail.com".into()).covers("gmail.com", "x"));
    }

    #[test]
    fn set_config_names_petrel_cannot_apply_are_refused() {
        let mut path = crate::EgressPathConfig::default();
        path.set_option("connection_limit", "3").unwrap();
        path.set_option("max_message_rate", "10/s").unwrap();
        assert_eq!(path.connection_limit, 3);
        assert!(path.set_option("enable_tls", "Required").unwrap_err().contains("not supported by Petrel yet"));
        assert!(path.set_option("max_message_rate", "lots").is_err());
    }
}
