//! What the HTTP handlers work with, and the seams they need filled.

use async_trait::async_trait;
use petrel_message::Message;
use petrel_telemetry::Logger;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use utoipa::ToSchema;

/// Who made an HTTP request, as the policy sees it.
#[derive(Debug, Clone, Default, Serialize)]
pub struct AuthInfo {
    pub peer_address: String,
    /// The authenticated user (Basic) or `"bearer"`; empty for trusted hosts.
    pub identity: String,
    pub trusted_host: bool,
}

/// A refusal or failure of `http_message_generated`: the same type the
/// SMTP listener's policy uses.
pub use petrel_queue::PolicyError;

/// Decisions the HTTP listener asks of policy (`http_server_validate_auth_basic`,
/// `http_server_validate_auth_bearer`, `http_message_generated`).
#[async_trait]
pub trait InjectPolicy: Send + Sync + 'static {
    async fn validate_basic(&self, user: &str, password: &str) -> Result<bool, String>;
    async fn validate_bearer(&self, token: &str) -> Result<bool, String>;
    async fn message_generated(&self, message: &mut Message, auth: &AuthInfo) -> Result<(), PolicyError>;
}

/// Which scheduled queues an admin action applies to: a queue by name, or
/// every queue matching the given parts.
#[derive(Debug, Clone, Default, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct QueueSelector {
    pub queue: Option<String>,
    pub domain: Option<String>,
    pub tenant: Option<String>,
    pub campaign: Option<String>,
}

#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RebindRequest {
    pub queue: Option<String>,
    pub domain: Option<String>,
    pub tenant: Option<String>,
    pub campaign: Option<String>,
    /// Move the messages to this scheduled queue …
    pub to_queue: Option<String>,
    /// … or have them leave from this egress pool.
    pub to_pool: Option<String>,
}

impl RebindRequest {
    pub fn selector(&self) -> QueueSelector {
        QueueSelector {
            queue: self.queue.clone(),
            domain: self.domain.clone(),
            tenant: self.tenant.clone(),
            campaign: self.campaign.clone(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ScheduledQueueSummary {
    pub name: String,
    pub messages: usize,
    /// Age of the oldest waiting message, in seconds.
    pub oldest_age_secs: Option<u64>,
    pub last_error: Option<String>,
    pub suspended: bool,
    /// Why the queue holds its messages: its `get_queue_config` failed.
    pub held: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ReadyQueueSummary {
    pub name: String,
    pub source: String,
    pub site: String,
    pub messages: usize,
    pub connections: usize,
    pub source_suspended: bool,
    /// The source cannot be used (its address does not bind) and is
    /// skipped for a back-off period.
    pub source_unhealthy: bool,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
pub struct QueueSummary {
    pub scheduled: Vec<ScheduledQueueSummary>,
    pub ready: Vec<ReadyQueueSummary>,
}

/// A spooled message, for `inspect`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct MessageInfo {
    pub id: String,
    pub sender: String,
    pub recipient: String,
    pub queue: String,
    pub created: String,
    pub num_attempts: u32,
    pub due: Option<String>,
    pub size: usize,
    #[schema(value_type = Object)]
    pub meta: serde_json::Map<String, serde_json::Value>,
    /// The message text, when asked for with `want_body=true`.
    pub body: Option<String>,
}

#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RouteRequest {
    pub sender: String,
    pub recipient: String,
    /// Meta the reception events would see (`tenant`, `campaign`, ...).
    #[serde(default)]
    #[schema(value_type = Object)]
    pub meta: serde_json::Map<String, serde_json::Value>,
}

/// The path a message would take, and why.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct RouteExplanation {
    pub queue: String,
    pub egress_pool: String,
    pub pool_reason: String,
    pub egress_source: String,
    pub source_address: Option<String>,
    /// Sources of the pool passed over now, each with why.
    pub skipped_sources: Vec<String>,
    pub ehlo_domain: String,
    pub site: String,
    /// `host:port`, with each address (and whether `prohibited_hosts`
    /// removes it), in the order delivery tries them.
    pub hosts: Vec<String>,
    pub hosts_reason: String,
    /// What DNS answered when the destination could not be found.
    pub dns_error: Option<String>,
    #[schema(value_type = Object)]
    pub egress_path: serde_json::Value,
}

/// What a reload changed in sources or pools.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct DefinitionChanges {
    pub added: Vec<String>,
    pub removed: Vec<String>,
    pub changed: Vec<ChangedDefinition>,
}

/// A source or pool defined differently after a reload.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ChangedDefinition {
    pub name: String,
    #[schema(value_type = Object)]
    pub before: serde_json::Value,
    #[schema(value_type = Object)]
    pub after: serde_json::Value,
}

/// Listeners a reload started, stopped or gave new settings (`smtp ADDR`,
/// `http ADDR`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ListenerChanges {
    pub started: Vec<String>,
    pub stopped: Vec<String>,
    pub updated: Vec<String>,
}

/// Everything a reload changed; empty when it was refused or unchanged.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ReloadChanges {
    pub sources: DefinitionChanges,
    pub pools: DefinitionChanges,
    pub listeners: ListenerChanges,
}

/// The result of a reload request.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ReloadOutcome {
    pub success: bool,
    pub generation: Option<u64>,
    /// The policy and every file it was built from read as before: nothing
    /// was reloaded (the generation stays).
    #[serde(default)]
    pub unchanged: bool,
    pub changes: ReloadChanges,
    pub errors: Vec<String>,
}

/// Operator actions, implemented by the daemon.
#[async_trait]
pub trait AdminOps: Send + Sync + 'static {
    fn suspend(&self, selector: &QueueSelector);
    fn resume(&self, selector: &QueueSelector);
    fn suspend_source(&self, name: &str) -> bool;
    fn resume_source(&self, name: &str) -> bool;
    /// Move waiting messages; `Err` names what the target lacks (an
    /// unknown pool), and nothing moves.
    async fn rebind(&self, request: &RebindRequest) -> Result<usize, String>;
    async fn bounce(&self, selector: &QueueSelector, reason: &str) -> usize;
    fn queue_summary(&self) -> QueueSummary;
    async fn inspect(&self, id: &str, want_body: bool) -> Option<MessageInfo>;
    async fn route(&self, request: &RouteRequest) -> Result<RouteExplanation, String>;
    /// `None` when hot reload is not available.
    async fn reload(&self) -> Option<ReloadOutcome>;
}

/// Everything a handler may touch; one per listener.
pub struct ApiState {
    /// Where injected mail goes (spool, Reception log, queues).
    pub intake: petrel_queue::Intake,
    /// For `/metrics`.
    pub logger: Logger,
    pub policy: Arc<dyn InjectPolicy>,
    pub admin: Arc<dyn AdminOps>,
    pub trusted_hosts: Vec<ipnet::IpNet>,
    /// Largest request body accepted, after gzip decompression.
    pub max_request_size: usize,
}
