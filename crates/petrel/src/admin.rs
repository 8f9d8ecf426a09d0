//! The admin API's operations, carried out on the running daemon.

use crate::suspensions::{Selector, Target};
use async_trait::async_trait;
use petrel_delivery::{Dispatcher, EgressPolicy, PoolChoice, Route};
use petrel_http_api::{
    AdminOps, BounceSummary, MessageActionKind, MessageActionRequest, MessageActionResponse, MessageActionResult,
    MessageEntry, MessageInfo, QueueSelector, QueueSummary, ReadyQueueSummary, RebindRequest, ReloadOutcome,
    ResumeRequest, RouteExplanation, RouteRequest, ScheduledQueueSummary, SourceSuspendRequest, SuspendRequest,
    SuspensionInfo, WarmupSummary,
};
use petrel_lua::PolicyEngine;
use petrel_message::{EnvelopeAddress, Message, SpoolId};
use petrel_queue::{
    ActionOutcome, MessageAction, QueueConfig, QueueFilter, QueueKey, QueueManager, QueuePolicy, RebindTarget,
};
use petrel_smtp_server::{ConnMeta, PolicyError, SessionPolicy};
use petrel_spool::Spool;
use std::sync::Arc;

/// A reload as the admin API starts it; `None` once the daemon is gone.
pub(crate) type ReloadFn =
    Box<dyn Fn() -> std::pin::Pin<Box<dyn std::future::Future<Output = Option<ReloadOutcome>> + Send>> + Send + Sync>;

pub(crate) struct DaemonAdmin {
    /// Runs a reload; it holds the reloader weakly, since the reloader owns
    /// the listeners whose handlers own this.
    pub reload: ReloadFn,
    pub engine: Arc<PolicyEngine>,
    pub queues: Arc<QueueManager>,
    pub dispatcher: Arc<Dispatcher>,
    pub spool: Arc<dyn Spool>,
    /// The last hour of classified failures.
    pub bounces: Arc<petrel_telemetry::BounceWindow>,
    /// Every suspension, kept across restarts.
    pub suspensions: Arc<crate::suspensions::SuspensionBook>,
    /// Counters and the recent-activity rings.
    pub metrics: Arc<petrel_telemetry::Metrics>,
    /// The listeners' addresses (ESMTP, HTTP), as the reloader keeps them.
    pub listeners: Arc<parking_lot::Mutex<(Vec<std::net::SocketAddr>, Vec<std::net::SocketAddr>)>>,
    /// The host name, and when the daemon started (Unix seconds).
    pub hostname: String,
    pub started: i64,
}

fn filter(selector: &QueueSelector) -> QueueFilter {
    QueueFilter {
        queue: selector.queue.clone(),
        domain: selector.domain.clone(),
        tenant: selector.tenant.clone(),
        campaign: selector.campaign.clone(),
    }
}

impl DaemonAdmin {
    /// A source of the init registry, or one the policy defines late
    /// (`get_egress_source`, the sources helper).
    async fn knows_source(&self, name: &str) -> bool {
        self.engine.registry().source(name).is_some() || matches!(self.engine.egress_source(name).await, Ok(Some(_)))
    }
}

#[async_trait]
impl AdminOps for DaemonAdmin {
    fn suspend(&self, request: &SuspendRequest) -> Result<String, String> {
        let expires = crate::suspensions::expiry(request.duration.as_deref(), request.expires)?;
        let filters = match &request.queue_names {
            Some(names) if !names.is_empty() => {
                names.iter().map(|n| Selector { queue: Some(n.clone()), ..Default::default() }).collect()
            }
            _ => vec![Selector::from(&request.selector())],
        };
        let reason = request.reason.clone().unwrap_or_else(|| "admin".into());
        Ok(self.suspensions.add(Target::Queues { filters }, reason, "admin", expires).id)
    }

    fn resume(&self, request: &ResumeRequest) -> usize {
        if let Some(id) = &request.id {
            return self.suspensions.lift(|s| &s.id == id);
        }
        let wanted = Selector::from(&request.selector());
        self.suspensions.lift(|s| matches!(&s.target, Target::Queues { filters } if filters.contains(&wanted)))
    }

    fn suspensions(&self) -> Vec<SuspensionInfo> {
        self.suspensions.list().iter().map(crate::suspensions::info).collect()
    }

    async fn suspend_source(&self, request: &SourceSuspendRequest) -> Result<Option<String>, String> {
        let expires = crate::suspensions::expiry(request.duration.as_deref(), request.expires)?;
        if !self.knows_source(&request.name).await {
            return Ok(None);
        }
        let reason = request.reason.clone().unwrap_or_else(|| "admin".into());
        Ok(Some(self.suspensions.add(Target::Source { name: request.name.clone() }, reason, "admin", expires).id))
    }

    async fn resume_source(&self, name: &str) -> bool {
        let known = self.knows_source(name).await;
        if known {
            self.suspensions.lift(|s| matches!(&s.target, Target::Source { name: n } if n == name));
        }
        known
    }

    async fn rebind(&self, request: &RebindRequest) -> Result<usize, String> {
        let target = match (&request.to_queue, &request.to_pool) {
            (Some(queue), _) => RebindTarget::Queue(queue.clone()),
            (None, Some(pool)) => {
                // Unknown, the mail would silently fall back to the default pool.
                if self.engine.current().config.registry.pool(pool).is_none() {
                    return Err(format!("no egress pool named {pool:?}"));
                }
                RebindTarget::Pool(pool.clone())
            }
            (None, None) => return Ok(0),
        };
        Ok(self.queues.rebind(&filter(&request.selector()), &target).await)
    }

    async fn bounce(&self, selector: &QueueSelector, reason: &str) -> usize {
        self.queues.admin_bounce(&filter(selector), reason).await
    }

    fn list_messages(&self, selector: &QueueSelector, limit: usize) -> Vec<MessageEntry> {
        let rows = self.queues.list_messages(&filter(selector), limit);
        rows.into_iter()
            .map(|r| MessageEntry {
                id: r.id.to_string(),
                queue: r.queue,
                created: r.created.to_rfc3339(),
                size: r.size,
                sender: r.sender,
                recipient: r.recipient,
                attempts: r.attempts,
                held: r.next_attempt.is_none(),
                next_attempt: r.next_attempt.map(|t| t.to_rfc3339()),
                last_error: r.last_error,
            })
            .collect()
    }

    fn flush(&self, selector: &QueueSelector) -> usize {
        self.queues.flush(&filter(selector))
    }

    fn console(&self) -> petrel_http_api::ConsoleSnapshot {
        let generation = self.engine.current();
        let spool = &generation.config.spool;
        let listeners = self.listeners.lock().clone();
        crate::console::snapshot(crate::console::Sources {
            metrics: &self.metrics,
            registry: &generation.config.registry,
            late: self.engine.late_bound(),
            dispatcher: &self.dispatcher,
            queues: &self.queues,
            listeners: &listeners,
            spool: format!("{} (meta {})", spool.data.display(), spool.meta.display()),
            spool_healthy: self.spool.is_healthy(),
            hostname: &self.hostname,
            started: self.started,
            generation: generation.number,
        })
    }

    async fn message_records(&self, query: &petrel_http_api::RecordsQuery) -> Vec<serde_json::Value> {
        let Some(logs) = self.engine.current().config.logs.clone() else { return Vec::new() };
        let query = query.clone();
        tokio::task::spawn_blocking(move || crate::console::records(&logs.log_dir, &query)).await.unwrap_or_default()
    }

    async fn message_action(&self, request: &MessageActionRequest) -> MessageActionResponse {
        let action = match request.action {
            MessageActionKind::Hold => MessageAction::Hold,
            MessageActionKind::Release => MessageAction::Release,
            MessageActionKind::Delete => MessageAction::Delete,
            MessageActionKind::Bounce => MessageAction::Bounce(request.reason.clone().unwrap_or_default()),
        };
        let mut results = Vec::with_capacity(request.ids.len());
        for id in &request.ids {
            let outcome = match SpoolId::parse(id) {
                Err(_) => "bad_id",
                Ok(spool_id) => match self.queues.message_action(spool_id, &action).await {
                    ActionOutcome::Done => "done",
                    ActionOutcome::NotHeld => "not_held",
                    ActionOutcome::NotWaiting => "not_waiting",
                },
            };
            results.push(MessageActionResult { id: id.clone(), outcome: outcome.into() });
        }
        MessageActionResponse { done: results.iter().filter(|r| r.outcome == "done").count(), results }
    }

    fn queue_summary(&self) -> QueueSummary {
        let now = chrono::Utc::now();
        let scheduled = self
            .queues
            .summary()
            .into_iter()
            .map(|q| ScheduledQueueSummary {
                suspension: self.suspensions.queue_reason(&q.name),
                name: q.name,
                messages: q.messages,
                oldest_age_secs: q.oldest.map(|t| (now - t).num_seconds().max(0) as u64),
                last_error: q.last_error,
                suspended: q.suspended,
                held: q.held,
            })
            .collect();
        let ready = self
            .dispatcher
            .summary()
            .into_iter()
            .map(|r| ReadyQueueSummary {
                name: r.name,
                source_suspension: self.suspensions.source_reason(&r.source, &r.site),
                source: r.source,
                site: r.site,
                messages: r.messages,
                connections: r.connections,
                source_suspended: r.source_suspended,
                source_unhealthy: r.source_unhealthy,
            })
            .collect();
        let bounces_last_hour = self
            .bounces
            .last_hour()
            .into_iter()
            .map(|b| BounceSummary {
                source: b.source,
                site: b.site,
                classification: b.classification,
                deferred: b.deferred,
                bounced: b.bounced,
            })
            .collect();
        let warmup = self
            .dispatcher
            .warmup_view()
            .into_iter()
            .map(|w| WarmupSummary { source: w.source, site: w.site, day: w.day, cap: w.cap, used: w.used })
            .collect();
        QueueSummary { scheduled, ready, bounces_last_hour, warmup }
    }

    async fn inspect(&self, id: &str, want_body: bool) -> Option<MessageInfo> {
        let id = SpoolId::parse(id).ok()?;
        let message = self.spool.load_meta(id).await.ok()?;
        let body = match want_body {
            true => self.spool.load_data(id).await.ok().map(|d| String::from_utf8_lossy(&d).into_owned()),
            false => None,
        };
        Some(MessageInfo {
            id: message.id.to_string(),
            sender: message.sender.to_string(),
            recipient: message.recipient.to_string(),
            queue: message.queue_name(),
            created: message.created.to_rfc3339(),
            num_attempts: message.num_attempts,
            due: message.due.map(|d| d.to_rfc3339()),
            size: message.size,
            meta: message.meta.into(),
            body,
        })
    }

    async fn route(&self, request: &RouteRequest) -> Result<RouteExplanation, String> {
        explain_route(self, request).await
    }

    async fn reload(&self) -> Option<ReloadOutcome> {
        (self.reload)().await
    }
}

/// Walk a would-be message through the policy and the engine's decisions
/// without queueing or sending anything.
async fn explain_route(admin: &DaemonAdmin, request: &RouteRequest) -> Result<RouteExplanation, String> {
    let sender = EnvelopeAddress::parse(&request.sender).map_err(|e| format!("sender: {e}"))?;
    let recipient = EnvelopeAddress::parse(&request.recipient).map_err(|e| format!("recipient: {e}"))?;
    if recipient.is_null() {
        return Err("recipient: an address is required".into());
    }
    let body = format!("From: <{sender}>\r\nTo: <{recipient}>\r\nSubject: route check\r\n\r\n");
    let mut message = Message::new(sender, recipient, Arc::from(body.into_bytes()));
    message.meta = request.meta.clone().into();
    let given_pool = message.meta_str("egress_pool").map(str::to_string);
    let conn = ConnMeta {
        received_from: "127.0.0.1:0".into(),
        received_via: "127.0.0.1:0".into(),
        hostname: crate::host::system_hostname(),
        ehlo_domain: Some("route.check".into()),
        authn_id: None,
        tls: false,
    };
    match admin.engine.message_received(&mut message, &conn).await {
        Ok(()) => {}
        Err(PolicyError::Reject { code, text }) => {
            return Err(format!("smtp_server_message_received would reject: {code} {text}"));
        }
        Err(PolicyError::Failed(e)) => return Err(format!("smtp_server_message_received fails: {e}")),
    }
    let queue = message.queue_name();
    let config = admin.engine.queue_config(&QueueKey::of(&message)).await.map_err(|e| e.to_string())?;
    let route = admin.dispatcher.explain(&queue, &message, &config).await?;
    Ok(explanation(queue, given_pool.as_deref(), &config, route))
}

/// The route as operators read it, every decision with its reason.
fn explanation(queue: String, given_pool: Option<&str>, config: &QueueConfig, route: Route) -> RouteExplanation {
    let pool_reason = match &route.pool_choice {
        PoolChoice::Meta if given_pool.is_some() => "meta egress_pool given with the message".to_string(),
        PoolChoice::Meta => "meta egress_pool set by smtp_server_message_received".to_string(),
        PoolChoice::QueueConfig => format!("egress_pool of get_queue_config for queue {queue}"),
        PoolChoice::Default => "no pool set by the message or its queue: the default pool".to_string(),
        PoolChoice::Undefined(name) => format!("pool {name:?} is not defined: the default pool"),
    };
    let weights: Vec<String> = route.pool.entries.iter().map(|e| format!("{}={}", e.source, e.weight)).collect();
    let skipped: Vec<String> = route.skipped.iter().map(|(s, why)| format!("{s}: {why}")).collect();
    let source = route.source.clone();
    let mut out = RouteExplanation {
        queue,
        egress_pool: route.pool.name.clone(),
        pool_reason: format!("{pool_reason}; weights {}", weights.join(", ")),
        egress_source: source.as_ref().map_or_else(|| "(none available now)".into(), |s| s.name.clone()),
        source_address: source.as_ref().and_then(|s| s.source_address).map(|a| a.to_string()),
        skipped_sources: skipped,
        ehlo_domain: String::new(),
        site: String::new(),
        hosts: Vec::new(),
        hosts_reason: String::new(),
        dns_error: None,
        egress_path: serde_json::json!({}),
    };
    let mx_list = config.protocol.mx_list();
    let destination = match route.destination {
        Ok(d) => d,
        Err(dns) => {
            out.hosts_reason = format!("DNS for {} failed", out.queue);
            out.dns_error = Some(dns);
            return out;
        }
    };
    out.site = destination.site.clone();
    out.ehlo_domain = destination.ehlo.clone().unwrap_or_default();
    out.hosts_reason = match (mx_list, destination.implicit_mx) {
        (Some(_), _) => "mx_list of get_queue_config (smart host)".into(),
        (None, true) => "no MX records: the domain's own address".into(),
        (None, false) => "MX records, by preference".into(),
    };
    for host in &destination.hosts {
        let addresses: Vec<String> = host
            .addresses
            .iter()
            .map(|(ip, prohibited)| if *prohibited { format!("{ip} prohibited") } else { ip.to_string() })
            .collect();
        let detail = match &host.error {
            Some(e) => format!(" ({e})"),
            None if addresses.is_empty() => String::new(),
            None => format!(" ({})", addresses.join(", ")),
        };
        let name = if host.name.contains(':') { format!("[{}]", host.name) } else { host.name.clone() };
        out.hosts.push(format!("{name}:{}{detail}", host.port));
    }
    if let Some(e) = &destination.path_error {
        out.egress_path = serde_json::json!({ "error": e });
    } else if let (Some(path), Some(source)) = (&destination.path, &source) {
        out.egress_path = serde_json::json!({
            "connection_limit": path.connection_limit,
            "max_deliveries_per_connection": path.max_deliveries_per_connection,
            "max_recipients_per_batch": path.max_recipients_per_batch,
            "max_message_rate": path.max_message_rate.map(|r| r.to_string()),
            "max_connection_rate": path.max_connection_rate.map(|r| r.to_string()),
            "enable_tls": format!("{:?}", path.enable_tls),
            "smtp_port": source.remote_port.unwrap_or(path.smtp_port),
            "idle_timeout_secs": path.idle_timeout.as_secs(),
            "use_lmtp": path.use_lmtp,
        });
    }
    out
}
