//! Admission: the one path by which received mail enters Petrel, for SMTP
//! and HTTP injection alike. A message is stored durably first, then its
//! Reception record is written, then it is queued; the caller acknowledges
//! only after [`Intake::admit`] returned `Ok`.

use crate::QueueManager;
use petrel_message::{Message, REFERENCE_HEADER, Report};
use petrel_spool::{Spool, SpoolError};
use petrel_telemetry::{Logger, RecordType, ResponseInfo};
use std::sync::Arc;

/// How a policy event refused or failed, for SMTP and HTTP alike.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    /// `kumo.reject(code, text)`: refuse with this reply.
    #[error("rejected: {code} {text}")]
    Reject {
        /// The SMTP reply code (4xx or 5xx).
        code: u16,
        /// The reply text, which may start with an enhanced status code.
        text: String,
    },
    /// The policy itself failed (a Lua error): the client is told to retry.
    #[error("policy error: {0}")]
    Failed(String),
}

/// Where a message came from, for its log records.
#[derive(Debug, Clone)]
pub struct ReceptionInfo {
    /// The client's address (`ip:port`), or the HTTP client's.
    pub peer_address: String,
    /// The name the client gave (its EHLO domain; empty over HTTP).
    pub peer_name: String,
    /// `ESMTP`, `ESMTPS`, `ESMTPA`, `ESMTPSA` or `HTTP`.
    pub protocol: String,
    /// TLS version and cipher, when the client used TLS.
    pub tls: Option<(String, String)>,
}

/// What admission needs: the spool, the queues, the log.
#[derive(Clone)]
pub struct Intake {
    spool: Arc<dyn Spool>,
    queues: Arc<QueueManager>,
    logger: Logger,
}

impl Intake {
    /// An intake writing to `spool` and queueing in `queues`.
    pub fn new(spool: Arc<dyn Spool>, queues: Arc<QueueManager>, logger: Logger) -> Self {
        Self { spool, queues, logger }
    }

    /// Where sessions copy their transcripts while someone watches.
    pub fn traces(&self) -> &Arc<petrel_telemetry::TraceHub> {
        self.logger.traces()
    }

    /// Whether new mail can be stored now (see [`Spool::is_healthy`]).
    pub fn accepting(&self) -> bool {
        self.spool.is_healthy()
    }

    /// Store `messages` durably (all or none), log a Reception record for
    /// each with `response` (the reply the client is about to get), and
    /// queue them.
    pub async fn admit(
        &self,
        mut messages: Vec<Message>,
        from: &ReceptionInfo,
        response: &ResponseInfo,
    ) -> Result<(), SpoolError> {
        add_reference(&mut messages);
        self.spool.store(&messages).await?;
        for message in messages {
            self.log(RecordType::Reception, &message, from, response.clone());
            self.queues.insert(message);
        }
        Ok(())
    }

    /// Log a report received for mail sent earlier: an `OOB` record per
    /// recipient of a delivery status report, or a `Feedback` record.
    /// `message` is the report as received (its id stands in when the
    /// report does not name the original).
    pub fn report_received(&self, message: &Message, report: &Report, from: &ReceptionInfo) {
        for mut record in report_records(message, report) {
            record.peer_address =
                Some(petrel_telemetry::PeerAddress { name: from.peer_name.clone(), addr: from.peer_address.clone() });
            record.reception_protocol = Some(from.protocol.clone());
            self.logger.log(record);
        }
    }

    /// Log a message the policy refused (a Rejection record).
    pub fn rejected(&self, message: &Message, from: &ReceptionInfo, response: ResponseInfo) {
        self.log(RecordType::Rejection, message, from, response);
    }

    fn log(&self, kind: RecordType, message: &Message, from: &ReceptionInfo, response: ResponseInfo) {
        let mut record = self.logger.record(kind, message, response);
        record.peer_address =
            Some(petrel_telemetry::PeerAddress { name: from.peer_name.clone(), addr: from.peer_address.clone() });
        record.reception_protocol = Some(from.protocol.clone());
        if let Some((version, cipher)) = &from.tls {
            record.tls_protocol_version = Some(version.clone());
            record.tls_cipher = Some(cipher.clone());
        }
        self.logger.log(record);
    }
}

/// Name each message's spool id in its headers (`X-Petrel-Id`), so that a
/// bounce or a complaint that returns the headers leads back to it. The
/// recipients of one reception share a body, and with it the id of the
/// first of them: their transactions can still carry several recipients.
fn add_reference(messages: &mut [Message]) {
    let mut last: Option<(*const u8, Arc<[u8]>)> = None;
    for message in messages.iter_mut() {
        let Some(data) = message.data.clone() else { continue };
        let shared = last.as_ref().filter(|(ptr, _)| *ptr == data.as_ptr()).map(|(_, new)| new.clone());
        let new = match shared {
            Some(new) => new,
            None => {
                let without = petrel_message::remove_headers(&data, REFERENCE_HEADER);
                let id = message.id.to_string();
                let new: Arc<[u8]> = match petrel_message::prepend_header(&without, REFERENCE_HEADER, &id) {
                    Ok(with) => Arc::from(with),
                    Err(_) => data.clone(),
                };
                last = Some((data.as_ptr(), new.clone()));
                new
            }
        };
        message.set_data(new);
    }
}

/// `550 5.1.1 text` as a reply; the status and action when there is none.
fn diagnostic_response(status: &str, action: &str, diagnostic: Option<&str>) -> ResponseInfo {
    if let Some(text) = diagnostic {
        // Multi-line replies come back as `550-5.1.1 ...`.
        let text = match text.as_bytes() {
            [a, b, c, b'-', ..] if [a, b, c].iter().all(|d| d.is_ascii_digit()) => {
                format!("{} {}", &text[..3], &text[4..])
            }
            _ => text.to_string(),
        };
        let mut words = text.splitn(3, ' ');
        if let Some(code) = words.next().and_then(|c| c.parse::<u16>().ok()) {
            let (enhanced, rest) = match (words.next(), words.next()) {
                (Some(e), rest) if e.split('.').count() == 3 => (Some(e.to_string()), rest.unwrap_or("").to_string()),
                (Some(word), rest) => (None, format!("{word} {}", rest.unwrap_or("")).trim().to_string()),
                (None, _) => (None, String::new()),
            };
            return ResponseInfo { code, enhanced_code: enhanced, content: rest, command: None };
        }
    }
    let code = if status.starts_with('4') { 450 } else { 550 };
    ResponseInfo::new(code, Some(status), format!("Action: {action}"))
}

fn report_records(message: &Message, report: &Report) -> Vec<petrel_telemetry::LogRecord> {
    let logger = Logger::disabled();
    match report {
        Report::Dsn(dsn) => dsn
            .recipients
            .iter()
            .map(|r| {
                let response = diagnostic_response(&r.status, &r.action, r.diagnostic.as_deref());
                let mut record = logger.record(RecordType::Oob, message, response);
                record.id = dsn.reference.clone().unwrap_or_else(|| message.id.to_string());
                // The report went to the original's sender, about one of
                // its recipients.
                record.sender = message.recipient.to_string();
                record.recipient = r.final_recipient.clone();
                record.queue = r.final_recipient.rsplit_once('@').map_or("", |(_, d)| d).to_ascii_lowercase();
                if let Some(mta) = &r.remote_mta {
                    record.site = mta.clone();
                }
                record
            })
            .collect(),
        Report::Feedback { report, reference } => {
            let feedback_type = report["feedback_type"].as_str().unwrap_or("other").to_string();
            let mut record = logger.record(
                RecordType::Feedback,
                message,
                ResponseInfo::new(250, None, format!("feedback-type: {feedback_type}")),
            );
            record.id = reference.clone().unwrap_or_else(|| message.id.to_string());
            let first =
                |key: &str| report[key].as_array().and_then(|l| l.first()).and_then(|v| v.as_str()).map(str::to_string);
            if let Some(from) = report["original_mail_from"].as_str() {
                record.sender = from.trim_matches(['<', '>', ' ']).to_string();
            }
            if let Some(to) = first("original_rcpto_to") {
                record.recipient = to.trim_matches(['<', '>', ' ']).to_string();
            }
            // Complaints are what senders act on; other types stay unclassified.
            record.bounce_classification = match feedback_type.as_str() {
                "abuse" | "fraud" => "Complaint".to_string(),
                _ => petrel_telemetry::UNCATEGORIZED.to_string(),
            };
            record.feedback_report = Some(report.clone());
            vec![record]
        }
    }
}
