//! The log record: one line of JSON per event in a message's life.

use chrono::{DateTime, Utc};
use petrel_message::{Message, Meta};
use serde::{Deserialize, Serialize};

/// What happened, as KumoMTA names its record types.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum RecordType {
    /// Accepted and spooled (SMTP or HTTP).
    Reception,
    /// Accepted by the destination.
    Delivery,
    /// An attempt failed and will be retried.
    TransientFailure,
    /// Refused for good by the destination (or locally, such as a null MX).
    Bounce,
    /// Given up: the next attempt would be past `max_age`.
    Expiration,
    /// Bounced by an operator.
    AdminBounce,
    /// Refused at reception by the policy (`kumo.reject`).
    Rejection,
    /// An out-of-band bounce: a delivery status report received for a
    /// message sent earlier, one record per recipient it reports on.
    #[serde(rename = "OOB")]
    Oob,
    /// A feedback (ARF, RFC 5965) report received about a message sent.
    Feedback,
}

impl RecordType {
    /// The name as it appears in the `type` field.
    pub fn as_str(self) -> &'static str {
        match self {
            RecordType::Reception => "Reception",
            RecordType::Delivery => "Delivery",
            RecordType::TransientFailure => "TransientFailure",
            RecordType::Bounce => "Bounce",
            RecordType::Expiration => "Expiration",
            RecordType::AdminBounce => "AdminBounce",
            RecordType::Rejection => "Rejection",
            RecordType::Oob => "OOB",
            RecordType::Feedback => "Feedback",
        }
    }
}

/// The reply that decided the event (a remote reply, or one Petrel made up
/// for local failures such as a refused connection).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResponseInfo {
    /// The SMTP reply code.
    pub code: u16,
    /// The RFC 3463 enhanced status code, when there was one; written as
    /// KumoMTA writes it, `{"class": 5, "subject": 1, "detail": 1}`.
    #[serde(with = "crate::record_shape::enhanced_code")]
    pub enhanced_code: Option<String>,
    /// The reply text.
    pub content: String,
    /// The command the reply answered (`MAIL FROM`, `RCPT TO`, `DATA`, `.`
    /// for the end of the message); `None` for replies Petrel made up.
    #[serde(default)]
    pub command: Option<String>,
}

impl ResponseInfo {
    /// A reply with no command (one Petrel made up, or a reception reply).
    pub fn new(code: u16, enhanced_code: Option<&str>, content: impl Into<String>) -> Self {
        Self { code, enhanced_code: enhanced_code.map(str::to_string), content: content.into(), command: None }
    }
}

/// The other end of the communication: the client at reception (its EHLO
/// name and address), the server of an attempt (its MX name and address).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerAddress {
    /// EHLO name (reception) or MX host name (attempts).
    pub name: String,
    /// `ip:port` of the peer, as Petrel connected or was connected to.
    pub addr: String,
}

/// Where an attempt left from.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceAddress {
    /// The local `ip:port` of the connection.
    pub address: String,
    /// The proxy protocol used; always `None` (Petrel connects directly).
    pub protocol: Option<String>,
    /// The proxy server; always `None`.
    pub server: Option<String>,
}

/// One event of one message, written as one JSON line in the shape of
/// KumoMTA's log record, so existing log consumers read Petrel's logs.
/// Fields Petrel adds: `last_response` (Expiration records) and
/// `source_name`-free `egress_*` on DNS failures; see docs/logs.md.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LogRecord {
    /// What happened.
    #[serde(rename = "type")]
    pub kind: RecordType,
    /// The spool id.
    pub id: String,
    /// The envelope sender.
    pub sender: String,
    /// The envelope recipient.
    pub recipient: String,
    /// The scheduled queue.
    pub queue: String,
    /// The ready queue of an attempt, `source->site` as in KumoMTA (empty
    /// at reception).
    pub site: String,
    /// Octets of the message.
    pub size: usize,
    /// The reply that decided the event.
    pub response: ResponseInfo,
    /// The client (reception) or server (attempts).
    pub peer_address: Option<PeerAddress>,
    /// When the event happened: Unix seconds in the file (KumoMTA's
    /// `timestamp`), with the exact time in `event_time`.
    #[serde(with = "crate::record_shape::unix_seconds")]
    pub timestamp: DateTime<Utc>,
    /// When the event happened, RFC 3339.
    pub event_time: DateTime<Utc>,
    /// When the message was received: Unix seconds (`created`).
    #[serde(with = "crate::record_shape::unix_seconds")]
    pub created: DateTime<Utc>,
    /// When the message was received, RFC 3339.
    pub created_time: DateTime<Utc>,
    /// Delivery attempts so far, this one included.
    pub num_attempts: u32,
    /// The bounce classifier's verdict; `Uncategorized` until a classifier
    /// is configured (KumoMTA's value for unknown).
    pub bounce_classification: String,
    /// The egress pool of an attempt.
    pub egress_pool: Option<String>,
    /// The egress source of an attempt.
    pub egress_source: Option<String>,
    /// Where an attempt's connection left from.
    pub source_address: Option<SourceAddress>,
    /// The parsed ARF report of a Feedback record (KumoMTA's shape).
    pub feedback_report: Option<serde_json::Value>,
    /// The message's meta, or the keys `configure_local_logs{ meta = ... }` names.
    pub meta: Meta,
    /// Headers named in `configure_local_logs{ headers = ... }`.
    #[serde(default)]
    pub headers: std::collections::BTreeMap<String, String>,
    /// `ESMTP` or `LMTP` for attempts; `None` for expirations and
    /// administrative bounces.
    pub delivery_protocol: Option<String>,
    /// `ESMTP`, `ESMTPS`, `ESMTPA`, `ESMTPSA` or `HTTP`, at reception.
    pub reception_protocol: Option<String>,
    /// TLS version, when the connection used TLS.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_protocol_version: Option<String>,
    /// TLS cipher suite, when the connection used TLS.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_cipher: Option<String>,
    /// On an Expiration record: the reply of the last attempt, kept apart
    /// from `response`, which states the expiry itself. Petrel's own field.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_response: Option<ResponseInfo>,
}

impl LogRecord {
    /// A record pre-filled from the message; callers set what the event adds.
    pub fn for_message(kind: RecordType, msg: &Message, response: ResponseInfo) -> Self {
        let now = Utc::now();
        Self {
            kind,
            id: msg.id.to_string(),
            sender: msg.sender.to_string(),
            recipient: msg.recipient.to_string(),
            queue: msg.queue_name(),
            site: String::new(),
            size: msg.size(),
            response,
            peer_address: None,
            timestamp: now,
            event_time: now,
            created: msg.created,
            created_time: msg.created,
            num_attempts: msg.num_attempts,
            bounce_classification: "Uncategorized".into(),
            egress_pool: None,
            egress_source: None,
            source_address: None,
            feedback_report: None,
            delivery_protocol: None,
            reception_protocol: None,
            tls_protocol_version: None,
            tls_cipher: None,
            meta: msg.meta.clone(),
            headers: Default::default(),
            last_response: None,
        }
    }
}
