//! What the console shows, gathered from the daemon's parts: recent
//! activity (the telemetry rings), sources and pools with their last hour
//! and last picks, and the log records about a message.

use petrel_egress::{EgressPool, EgressSource};
use petrel_http_api::{
    ActivityBucket, ConsolePool, ConsolePoolEntry, ConsoleSnapshot, ConsoleSource, PoolWeight, RecordsQuery,
};
use petrel_telemetry::{Bucket, Metrics, SourceActivity};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

/// The parts the snapshot reads, borrowed from the admin handle.
pub(crate) struct Sources<'a> {
    pub metrics: &'a Arc<Metrics>,
    pub registry: &'a petrel_egress::Registry,
    /// Sources and pools the policy defined late (`get_egress_source`,
    /// `get_egress_pool`, the sources helper), shown with the registry's.
    pub late: (Vec<Arc<EgressSource>>, Vec<Arc<EgressPool>>),
    pub dispatcher: &'a petrel_delivery::Dispatcher,
    pub queues: &'a petrel_queue::QueueManager,
    pub listeners: &'a (Vec<SocketAddr>, Vec<SocketAddr>),
    pub spool: String,
    pub spool_healthy: bool,
    pub hostname: &'a str,
    pub started: i64,
    pub generation: u64,
}

fn buckets(list: Vec<Bucket>) -> Vec<ActivityBucket> {
    list.into_iter().map(|b| ActivityBucket { at: b.at, counts: b.counts[..4].to_vec() }).collect()
}

/// One console snapshot.
pub(crate) fn snapshot(from: Sources<'_>) -> ConsoleSnapshot {
    let now = chrono::Utc::now().timestamp();
    let activity = &from.metrics.activity;
    let paths = activity.sources(now);
    let ready = from.dispatcher.summary();
    let connections = |source: &str| ready.iter().filter(|r| r.source == source).map(|r| r.connections as u64).sum();
    let sum = |source: &str, f: fn(&SourceActivity) -> u64| paths.iter().filter(|p| p.source == source).map(f).sum();
    // The init registry's definitions first, then the late ones it lacks.
    let all_pools: Vec<&Arc<EgressPool>> =
        from.registry.pools().chain(from.late.1.iter().filter(|p| from.registry.pool(&p.name).is_none())).collect();
    let all_sources: Vec<&Arc<EgressSource>> =
        from.registry.sources().chain(from.late.0.iter().filter(|s| from.registry.source(&s.name).is_none())).collect();
    let sources = all_sources
        .iter()
        .map(|s| ConsoleSource {
            name: s.name.clone(),
            address: s.source_address.map(|a| a.to_string()),
            ehlo: s.ehlo_domain.clone(),
            pools: all_pools
                .iter()
                .flat_map(|p| p.entries.iter().filter(|e| e.source == s.name).map(|e| (p.name.clone(), e.weight)))
                .map(|(pool, weight)| PoolWeight { pool, weight })
                .collect(),
            connections: connections(&s.name),
            delivered: sum(&s.name, |p| p.delivered),
            deferred: sum(&s.name, |p| p.deferred),
            bounced: sum(&s.name, |p| p.bounced),
        })
        .collect();
    let picks: HashMap<String, Vec<(String, u64)>> = from.dispatcher.recent_picks().into_iter().collect();
    let pools = all_pools
        .iter()
        .map(|p| ConsolePool {
            name: p.name.clone(),
            entries: p
                .entries
                .iter()
                .map(|e| ConsolePoolEntry {
                    source: e.source.clone(),
                    weight: e.weight,
                    delivered_last_hour: paths
                        .iter()
                        .find(|a| a.pool == p.name && a.source == e.source)
                        .map_or(0, |a| a.delivered),
                    recent_picks: picks
                        .get(&p.name)
                        .and_then(|split| split.iter().find(|(s, _)| *s == e.source))
                        .map_or(0, |(_, n)| *n),
                })
                .collect(),
        })
        .collect();
    let oldest = from.queues.summary().iter().filter_map(|q| q.oldest).min();
    let (smtp, http) = from.listeners;
    ConsoleSnapshot {
        now,
        started: from.started,
        hostname: from.hostname.to_string(),
        generation: from.generation,
        totals: activity.totals().to_vec(),
        seconds: buckets(activity.seconds(now)),
        minutes: buckets(activity.minutes(now)),
        scheduled_messages: from.queues.waiting() as u64,
        ready_messages: ready.iter().map(|r| r.messages as u64).sum(),
        oldest_age_secs: oldest.map(|t| (chrono::Utc::now() - t).num_seconds().max(0) as u64),
        listeners: smtp.iter().map(|a| format!("ESMTP {a}")).chain(http.iter().map(|a| format!("HTTP {a}"))).collect(),
        spool: from.spool,
        spool_healthy: from.spool_healthy,
        sources,
        pools,
    }
}

/// Segments read, newest first, when looking for a message's records: a
/// bound on the work one console search costs.
const SEGMENTS_SEARCHED: usize = 64;

/// The records about `query`'s message or address, oldest first, at most
/// its limit (the newest kept).
pub(crate) fn records(dir: &Path, query: &RecordsQuery) -> Vec<serde_json::Value> {
    let limit = query.limit.unwrap_or(200);
    let address = query.address.as_deref().map(str::to_ascii_lowercase);
    let matches = |v: &serde_json::Value| {
        if let Some(id) = &query.id {
            return v["id"].as_str().is_some_and(|x| x.eq_ignore_ascii_case(id));
        }
        let Some(address) = &address else { return false };
        ["recipient", "sender"].iter().any(|k| v[*k].as_str().is_some_and(|x| x.eq_ignore_ascii_case(address)))
    };
    let Ok(mut segments) = petrel_telemetry::segments(dir) else { return Vec::new() };
    segments.reverse();
    let mut found: Vec<serde_json::Value> = Vec::new();
    for segment in segments.iter().take(SEGMENTS_SEARCHED) {
        let Ok(lines) = petrel_telemetry::segment_lines(segment) else { continue };
        let mut here: Vec<serde_json::Value> = lines
            .iter()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(|v| matches(v))
            .collect();
        here.append(&mut found);
        found = here;
        if found.len() >= limit {
            break;
        }
    }
    let skip = found.len().saturating_sub(limit);
    found.split_off(skip)
}
