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
    /// The client's `address:port`.
    pub peer_address: String,
    /// The authenticated user (Basic) or `"bearer"`; empty for trusted hosts.
    pub identity: String,
    /// The client is in the listener's `trusted_hosts` (no credentials asked).
    pub trusted_host: bool,
}

/// A refusal or failure of `http_message_generated`: the same type the
/// SMTP listener's policy uses.
pub use petrel_queue::PolicyError;

/// Decisions the HTTP listener asks of policy (`http_server_validate_auth_basic`,
/// `http_server_validate_auth_bearer`, `http_message_generated`).
#[async_trait]
pub trait InjectPolicy: Send + Sync + 'static {
    /// Whether HTTP Basic credentials are accepted; `Err` when the policy failed.
    async fn validate_basic(&self, user: &str, password: &str) -> Result<bool, String>;
    /// Whether a bearer token is accepted; `Err` when the policy failed.
    async fn validate_bearer(&self, token: &str) -> Result<bool, String>;
    /// May edit an injected message (one recipient's copy) or refuse it.
    async fn message_generated(&self, message: &mut Message, auth: &AuthInfo) -> Result<(), PolicyError>;
}

/// Which scheduled queues an admin action applies to: a queue by name, or
/// every queue matching the given parts.
#[derive(Debug, Clone, Default, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct QueueSelector {
    /// A scheduled queue by its full name (`campaign:tenant@domain`).
    pub queue: Option<String>,
    /// Every queue for this recipient domain.
    pub domain: Option<String>,
    /// Every queue of this tenant.
    pub tenant: Option<String>,
    /// Every queue of this campaign.
    pub campaign: Option<String>,
}

/// `POST /api/admin/suspend/v1`: hold scheduled queues (KumoMTA's shape).
#[derive(Debug, Clone, Default, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SuspendRequest {
    /// A scheduled queue by its full name.
    pub queue: Option<String>,
    /// Every queue for this recipient domain.
    pub domain: Option<String>,
    /// Every queue of this tenant.
    pub tenant: Option<String>,
    /// Every queue of this campaign.
    pub campaign: Option<String>,
    /// These queues by name (takes precedence over the fields above).
    pub queue_names: Option<Vec<String>>,
    /// Why (shown by `petrel suspensions`); `"admin"` when not given.
    pub reason: Option<String>,
    /// How long it lasts (`"2h"`, `"30 minutes"`); until lifted when absent.
    pub duration: Option<String>,
    /// When it ends, instead of `duration` (RFC 3339).
    pub expires: Option<chrono::DateTime<chrono::Utc>>,
}

/// `DELETE /api/admin/suspend/v1`: lift a suspension by its `id`, or every
/// suspension made with the same selector.
#[derive(Debug, Clone, Default, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ResumeRequest {
    /// The suspension's id, as `POST` answered it.
    pub id: Option<String>,
    /// A scheduled queue by its full name.
    pub queue: Option<String>,
    /// Every queue for this recipient domain.
    pub domain: Option<String>,
    /// Every queue of this tenant.
    pub tenant: Option<String>,
    /// Every queue of this campaign.
    pub campaign: Option<String>,
}

impl SuspendRequest {
    /// The queue selector fields of the request.
    pub fn selector(&self) -> QueueSelector {
        QueueSelector {
            queue: self.queue.clone(),
            domain: self.domain.clone(),
            tenant: self.tenant.clone(),
            campaign: self.campaign.clone(),
        }
    }
}

impl ResumeRequest {
    /// The queue selector fields of the request.
    pub fn selector(&self) -> QueueSelector {
        QueueSelector {
            queue: self.queue.clone(),
            domain: self.domain.clone(),
            tenant: self.tenant.clone(),
            campaign: self.campaign.clone(),
        }
    }
}

/// `POST /api/admin/suspend-ready-q/v1`: stop sending from a source.
#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SourceSuspendRequest {
    /// The egress source.
    pub name: String,
    /// Why; `"admin"` when not given.
    pub reason: Option<String>,
    /// How long it lasts; until lifted when absent.
    pub duration: Option<String>,
    /// When it ends, instead of `duration`.
    pub expires: Option<chrono::DateTime<chrono::Utc>>,
}

/// A suspension made: its id, for lifting it early.
#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
pub struct Suspended {
    /// The suspension's id.
    pub id: String,
}

/// One active suspension (`GET /api/admin/suspend/v1`, `petrel suspensions`).
#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
pub struct SuspensionInfo {
    /// Its id.
    pub id: String,
    /// `queue` or `source`.
    pub kind: String,
    /// What it holds: selectors of queues (`domain=…, tenant=…`), or the source.
    pub target: String,
    /// Why.
    pub reason: String,
    /// Who made it.
    pub creator: String,
    /// When it was made.
    pub created: chrono::DateTime<chrono::Utc>,
    /// When it ends by itself; `null` lasts until lifted.
    pub expires: Option<chrono::DateTime<chrono::Utc>>,
    /// Time left, as text (`"1h 59m"`); `"until lifted"` without expiry.
    pub duration: String,
}

/// Move the waiting messages of the selected queues to another queue or
/// pool (give exactly one of `to_queue`, `to_pool`).
#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RebindRequest {
    /// A scheduled queue by its full name.
    pub queue: Option<String>,
    /// Every queue for this recipient domain.
    pub domain: Option<String>,
    /// Every queue of this tenant.
    pub tenant: Option<String>,
    /// Every queue of this campaign.
    pub campaign: Option<String>,
    /// Move the messages to this scheduled queue …
    pub to_queue: Option<String>,
    /// … or have them leave from this egress pool.
    pub to_pool: Option<String>,
}

impl RebindRequest {
    /// The queues the request selects.
    pub fn selector(&self) -> QueueSelector {
        QueueSelector {
            queue: self.queue.clone(),
            domain: self.domain.clone(),
            tenant: self.tenant.clone(),
            campaign: self.campaign.clone(),
        }
    }
}

/// One scheduled queue: messages waiting for their next attempt.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ScheduledQueueSummary {
    /// `campaign:tenant@domain!routing_domain`.
    pub name: String,
    /// Messages waiting.
    pub messages: usize,
    /// Age of the oldest waiting message, in seconds.
    pub oldest_age_secs: Option<u64>,
    /// The reply of the last failed attempt.
    pub last_error: Option<String>,
    /// Held by an operator until resumed.
    pub suspended: bool,
    /// The suspension holding it: reason and time left.
    #[serde(default)]
    pub suspension: Option<String>,
    /// Why the queue holds its messages: its `get_queue_config` failed.
    pub held: Option<String>,
}

/// One ready queue: messages due now, by egress source and destination site.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ReadyQueueSummary {
    /// `source->site`.
    pub name: String,
    /// The egress source the messages leave from.
    pub source: String,
    /// The destination hosts, sorted (the connection-sharing key).
    pub site: String,
    /// Messages waiting for a connection.
    pub messages: usize,
    /// Connection workers (connected, connecting or idle).
    pub connections: usize,
    /// The source is suspended by an operator.
    pub source_suspended: bool,
    /// The suspension holding the source: reason and time left.
    #[serde(default)]
    pub source_suspension: Option<String>,
    /// The source cannot be used (its address does not bind) and is
    /// skipped for a back-off period.
    pub source_unhealthy: bool,
}

/// Failed attempts of the last hour from one egress source at one site in
/// one bounce classification.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct BounceSummary {
    /// The egress source.
    pub source: String,
    /// The destination site.
    pub site: String,
    /// The bounce classification (`Uncategorized` without a classifier).
    pub classification: String,
    /// Temporary failures (TransientFailure records).
    pub deferred: u64,
    /// Bounces and expirations.
    pub bounced: u64,
}

/// A warming-up source's day (`warmup` in its definition).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct WarmupSummary {
    /// The egress source.
    pub source: String,
    /// The site, for a per-site plan.
    pub site: Option<String>,
    /// Day of the plan (1 at its start).
    pub day: u64,
    /// Today's cap; `null` once the plan is over.
    pub cap: Option<u64>,
    /// Messages handed to the source today.
    pub used: u64,
}

/// Every queue of the daemon (`mailq`, `kcli queue-summary`).
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
pub struct QueueSummary {
    /// Scheduled queues, by name.
    pub scheduled: Vec<ScheduledQueueSummary>,
    /// Ready queues, by name.
    pub ready: Vec<ReadyQueueSummary>,
    /// Failures of the last hour by source, site and classification, most
    /// first: one IP blocked at one provider stands out at the top.
    #[serde(default)]
    pub bounces_last_hour: Vec<BounceSummary>,
    /// Warming-up sources: day, cap and use today.
    #[serde(default)]
    pub warmup: Vec<WarmupSummary>,
}

/// A spooled message, for `inspect`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct MessageInfo {
    /// The spool id.
    pub id: String,
    /// The envelope sender.
    pub sender: String,
    /// The envelope recipient (one per spooled message).
    pub recipient: String,
    /// Its scheduled queue.
    pub queue: String,
    /// When it was received (RFC 3339).
    pub created: String,
    /// Delivery attempts so far.
    pub num_attempts: u32,
    /// When its next attempt is due (RFC 3339), if scheduled.
    pub due: Option<String>,
    /// Octets of the message.
    pub size: usize,
    /// The meta map set by the policy.
    #[schema(value_type = Object)]
    pub meta: serde_json::Map<String, serde_json::Value>,
    /// The message text, when asked for with `want_body=true`.
    pub body: Option<String>,
}

/// A would-be message to route without sending it.
#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RouteRequest {
    /// The envelope sender.
    pub sender: String,
    /// The envelope recipient.
    pub recipient: String,
    /// Meta the reception events would see (`tenant`, `campaign`, ...).
    #[serde(default)]
    #[schema(value_type = Object)]
    pub meta: serde_json::Map<String, serde_json::Value>,
}

/// The path a message would take, and why.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct RouteExplanation {
    /// The scheduled queue it would wait in.
    pub queue: String,
    /// The egress pool it would leave from.
    pub egress_pool: String,
    /// Why that pool, and its weights.
    pub pool_reason: String,
    /// The source the next weighted round-robin pick gives.
    pub egress_source: String,
    /// That source's address; none for the system default.
    pub source_address: Option<String>,
    /// Sources of the pool passed over now, each with why.
    pub skipped_sources: Vec<String>,
    /// The EHLO name the connection would use.
    pub ehlo_domain: String,
    /// The ready-queue key: the sorted destination host set.
    pub site: String,
    /// `host:port`, with each address (and whether `prohibited_hosts`
    /// removes it), in the order delivery tries them.
    pub hosts: Vec<String>,
    /// Where the hosts came from (smart host, MX records, implicit MX).
    pub hosts_reason: String,
    /// What DNS answered when the destination could not be found.
    pub dns_error: Option<String>,
    /// The egress path settings for that source and site.
    #[schema(value_type = Object)]
    pub egress_path: serde_json::Value,
}

/// What a reload changed in sources or pools.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct DefinitionChanges {
    /// Defined now and not before.
    pub added: Vec<String>,
    /// Defined before and not now.
    pub removed: Vec<String>,
    /// Defined both times, differently.
    pub changed: Vec<ChangedDefinition>,
}

/// A source or pool defined differently after a reload.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ChangedDefinition {
    /// The source or pool.
    pub name: String,
    /// Its definition before the reload.
    #[schema(value_type = Object)]
    pub before: serde_json::Value,
    /// Its definition after the reload.
    #[schema(value_type = Object)]
    pub after: serde_json::Value,
}

/// Listeners a reload started, stopped or gave new settings (`smtp ADDR`,
/// `http ADDR`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ListenerChanges {
    /// Listeners the new policy added, already accepting.
    pub started: Vec<String>,
    /// Listeners it removed (sessions in progress finish).
    pub stopped: Vec<String>,
    /// Kept listeners that took new settings.
    pub updated: Vec<String>,
}

/// Everything a reload changed; empty when it was refused or unchanged.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ReloadChanges {
    /// Egress sources added, removed or redefined.
    pub sources: DefinitionChanges,
    /// Egress pools added, removed or redefined.
    pub pools: DefinitionChanges,
    /// Listeners started, stopped or updated.
    pub listeners: ListenerChanges,
}

/// The result of a reload request.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ReloadOutcome {
    /// The new policy runs (or nothing had changed).
    pub success: bool,
    /// The policy generation in force after the request.
    pub generation: Option<u64>,
    /// The policy and every file it was built from read as before: nothing
    /// was reloaded (the generation stays).
    #[serde(default)]
    pub unchanged: bool,
    /// What the reload changed.
    pub changes: ReloadChanges,
    /// Why a refused reload was refused, each with its policy line.
    pub errors: Vec<String>,
}

/// One waiting message (`GET /api/admin/messages/v1`, `petrel queue list`).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct MessageEntry {
    /// Spool id.
    pub id: String,
    /// Scheduled queue.
    pub queue: String,
    /// When it was received (RFC 3339).
    pub created: String,
    /// Size in bytes.
    pub size: usize,
    /// Envelope sender.
    pub sender: String,
    /// Envelope recipient.
    pub recipient: String,
    /// Delivery attempts so far.
    pub attempts: u32,
    /// Its next attempt (RFC 3339); absent while held.
    pub next_attempt: Option<String>,
    /// An operator holds it.
    pub held: bool,
    /// The last failure of its queue.
    pub last_error: Option<String>,
}

/// What to do with messages picked by id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum MessageActionKind {
    /// Keep waiting, never released, until released (`postsuper -h`).
    Hold,
    /// Let a held message go, due now (`postsuper -H`).
    Release,
    /// Remove without a notification (`postsuper -d`).
    Delete,
    /// Remove with an AdminBounce record carrying `reason`.
    Bounce,
}

/// `POST /api/admin/message-action/v1`.
#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MessageActionRequest {
    /// What to do.
    pub action: MessageActionKind,
    /// Spool ids (32 hex digits).
    pub ids: Vec<String>,
    /// Why (bounce; also recorded for delete).
    pub reason: Option<String>,
}

/// What happened to one id.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct MessageActionResult {
    /// The id as given.
    pub id: String,
    /// `done`, `not_held` (release of a message not held), `not_waiting`
    /// (unknown, delivered or being delivered now) or `bad_id`.
    pub outcome: String,
}

/// The answer to a message action.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct MessageActionResponse {
    /// How many ids were acted on.
    pub done: usize,
    /// Per id, in request order.
    pub results: Vec<MessageActionResult>,
}

/// Operator actions, implemented by the daemon.
#[async_trait]
pub trait AdminOps: Send + Sync + 'static {
    /// Hold the selected scheduled queues until the request's expiry (or
    /// until lifted); the suspension's id, or what is wrong with the request.
    fn suspend(&self, request: &SuspendRequest) -> Result<String, String>;
    /// Lift suspensions by id or selector; how many were lifted.
    fn resume(&self, request: &ResumeRequest) -> usize;
    /// Every active suspension.
    fn suspensions(&self) -> Vec<SuspensionInfo>;
    /// Stop sending from an egress source; the suspension's id, `Ok(None)`
    /// when there is no source by that name (in the init registry or from
    /// the policy's `get_egress_source`).
    async fn suspend_source(&self, request: &SourceSuspendRequest) -> Result<Option<String>, String>;
    /// Send from an egress source again; false when there is none by that name.
    async fn resume_source(&self, name: &str) -> bool;
    /// Move waiting messages; `Err` names what the target lacks (an
    /// unknown pool), and nothing moves.
    async fn rebind(&self, request: &RebindRequest) -> Result<usize, String>;
    /// Bounce the waiting messages of the selected queues; how many.
    async fn bounce(&self, selector: &QueueSelector, reason: &str) -> usize;
    /// Every scheduled and ready queue.
    fn queue_summary(&self) -> QueueSummary;
    /// Waiting messages of the selected queues, oldest first, at most `limit`.
    fn list_messages(&self, selector: &QueueSelector, limit: usize) -> Vec<MessageEntry>;
    /// Make waiting messages of the selected queues due now; how many.
    fn flush(&self, selector: &QueueSelector) -> usize;
    /// Hold, release, delete or bounce messages by id.
    async fn message_action(&self, request: &MessageActionRequest) -> MessageActionResponse;
    /// What the console's overview, sources and pools pages show.
    fn console(&self) -> crate::console_model::ConsoleSnapshot;
    /// Log records about a message (by id) or an address, oldest first.
    async fn message_records(&self, query: &crate::console_model::RecordsQuery) -> Vec<serde_json::Value>;
    /// A spooled message, if the id names one.
    async fn inspect(&self, id: &str, want_body: bool) -> Option<MessageInfo>;
    /// Route a would-be message; `Err` when the request itself is unusable.
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
    /// Authentication and `http_message_generated`.
    pub policy: Arc<dyn InjectPolicy>,
    /// Operator actions.
    pub admin: Arc<dyn AdminOps>,
    /// Clients let in without credentials.
    pub trusted_hosts: Vec<ipnet::IpNet>,
    /// Largest request body accepted, after gzip decompression.
    pub max_request_size: usize,
}
