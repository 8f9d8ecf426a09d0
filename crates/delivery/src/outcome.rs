//! What happens after an attempt: log it, then remove, retry or bounce.

use crate::context::{Dispatched, Settlement};
use petrel_dns::DnsError;
use petrel_egress::EgressSource;
use petrel_smtp_client::{ClientError, Phase};
use petrel_smtp_proto::Reply;
use petrel_telemetry::{PeerAddress, RecordType, ResponseInfo, SourceAddress};
use std::net::SocketAddr;

/// How one attempt for one message ended.
#[derive(Debug, Clone)]
pub(crate) enum Outcome {
    Delivered(ResponseInfo),
    Failed { permanent: bool, response: ResponseInfo },
}

impl Outcome {
    /// The final reply to a delivered message (to the end of its data).
    pub fn from_reply(reply: &Reply) -> Self {
        Outcome::Delivered(response(reply, Some(Phase::DataDot)))
    }

    pub fn from_client(e: &ClientError) -> Self {
        if let Some(reply) = e.reply() {
            return Outcome::Failed { permanent: e.is_permanent(), response: response(reply, e.phase()) };
        }
        if let ClientError::Unsendable { enhanced, .. } = e {
            return Self::local(true, enhanced, e.to_string());
        }
        // Failures without a server reply get RFC 3463 network classes, so
        // logs can be filtered by code alone.
        let enhanced = match e {
            ClientError::Bind { .. } => "4.4.0",
            ClientError::Connect { .. } | ClientError::Timeout { phase: Phase::Connect | Phase::Banner, .. } => "4.4.1",
            ClientError::Tls { .. } => "4.7.5",
            _ => "4.4.2",
        };
        Self::local(false, enhanced, e.to_string())
    }

    pub fn from_dns(e: &DnsError) -> Self {
        let enhanced = match e {
            DnsError::NullMx(_) => "5.1.10",
            DnsError::NxDomain(_) | DnsError::NoAddress(_) => "5.1.2",
            DnsError::Transient { .. } => "4.4.3",
        };
        Self::local(e.is_permanent(), enhanced, e.to_string())
    }

    pub fn local(permanent: bool, enhanced: &str, content: String) -> Self {
        let code = if permanent { 550 } else { 451 };
        Outcome::Failed { permanent, response: ResponseInfo::new(code, Some(enhanced), content) }
    }
}

impl Outcome {
    /// One line for operators: code, enhanced code and text.
    pub fn describe(&self) -> String {
        let r = match self {
            Outcome::Delivered(r) | Outcome::Failed { response: r, .. } => r,
        };
        let enhanced = r.enhanced_code.as_deref().map(|e| format!(" {e}")).unwrap_or_default();
        format!("{}{enhanced} {}", r.code, r.content)
    }
}

/// The command names of KumoMTA's `response.command`.
fn command(phase: Phase) -> Option<&'static str> {
    Some(match phase {
        Phase::Ehlo => "EHLO",
        Phase::MailFrom => "MAIL FROM",
        Phase::RcptTo => "RCPT TO",
        Phase::Data => "DATA",
        Phase::DataDot => ".",
        Phase::Rset => "RSET",
        Phase::StartTls => "STARTTLS",
        Phase::Connect | Phase::Banner => return None,
    })
}

fn response(reply: &Reply, phase: Option<Phase>) -> ResponseInfo {
    ResponseInfo {
        code: reply.code,
        enhanced_code: reply.enhanced.map(|e| e.to_string()),
        content: reply.text.clone(),
        command: phase.and_then(command).map(str::to_string),
    }
}

/// Where the attempt was made, for the log record.
pub(crate) struct Attempt<'a> {
    pub source: &'a EgressSource,
    pub site: &'a str,
    /// The connection, once there is one.
    pub conn: Option<AttemptConn<'a>>,
    /// LMTP rather than SMTP.
    pub lmtp: bool,
}

/// The connection an attempt used.
pub(crate) struct AttemptConn<'a> {
    /// The server's MX name and address.
    pub peer_name: &'a str,
    pub peer: SocketAddr,
    /// The local address it left from.
    pub local: SocketAddr,
    pub tls: Option<&'a (String, String)>,
}

/// Write the log record of an attempt; returns its type.
pub(crate) fn log_attempt(
    settle: &Settlement,
    attempt: &Attempt<'_>,
    message: &petrel_message::Message,
    pool: &str,
    outcome: &Outcome,
) -> RecordType {
    let (kind, response) = match outcome {
        Outcome::Delivered(r) => (RecordType::Delivery, r),
        Outcome::Failed { permanent: true, response } => (RecordType::Bounce, response),
        Outcome::Failed { permanent: false, response } => (RecordType::TransientFailure, response),
    };
    let logger = &settle.logger;
    let mut record = logger.record(kind, message, response.clone());
    record.site = format!("{}->{}", attempt.source.name, attempt.site);
    record.egress_pool = Some(pool.to_string());
    record.egress_source = Some(attempt.source.name.clone());
    record.delivery_protocol = Some(if attempt.lmtp { "LMTP" } else { "ESMTP" }.to_string());
    match &attempt.conn {
        Some(conn) => {
            record.peer_address = Some(PeerAddress { name: conn.peer_name.to_string(), addr: conn.peer.to_string() });
            record.source_address = Some(SourceAddress { address: conn.local.to_string(), ..Default::default() });
            if let Some((version, cipher)) = conn.tls {
                record.tls_protocol_version = Some(version.clone());
                record.tls_cipher = Some(cipher.clone());
            }
        }
        // No connection (it failed, or DNS did): the address it would
        // have left from, port unknown.
        None => {
            record.source_address = attempt
                .source
                .source_address
                .map(|ip| SourceAddress { address: SocketAddr::new(ip, 0).to_string(), ..Default::default() });
        }
    }
    logger.log(record);
    kind
}

pub(crate) async fn report(settle: &Settlement, attempt: &Attempt<'_>, item: Dispatched, outcome: &Outcome) {
    let Dispatched { queue, mut message, pool } = item;
    message.num_attempts += 1;
    let kind = log_attempt(settle, attempt, &message, &pool, outcome);
    let response = match outcome {
        Outcome::Delivered(r) | Outcome::Failed { response: r, .. } => r,
    };
    if kind == RecordType::TransientFailure {
        settle.queues.retry(&queue, message, response).await;
        return;
    }
    if kind == RecordType::Bounce {
        let config = queue.config().unwrap_or_default();
        let remote_mta = attempt.conn.as_ref().map(|c| c.peer_name);
        settle.queues.report_failure(&config, &message, petrel_queue::Failure { response, remote_mta }).await;
    }
    // Not awaited: the connection goes on to its next message while the
    // removal rides with the spool writer's next batch (behind the fsync
    // of receptions arriving meanwhile).
    settle.spool.remove_later(message.id);
}
