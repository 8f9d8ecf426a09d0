//! Delivery status notifications (RFC 3464): the report a sender gets when
//! its message failed, expired or is delayed. A multipart/report with a
//! human-readable part, the machine-readable `message/delivery-status`
//! and the original message's headers (`text/rfc822-headers`), sent from
//! the null sender so that it can never cause another notification.

use crate::{EnvelopeAddress, Message};
use chrono::{DateTime, Utc};
use mail_builder::MessageBuilder;
use mail_builder::headers::text::Text;
use mail_builder::mime::MimePart;
use std::sync::Arc;

/// The meta key a notification carries: the id of the message it reports on.
pub const DSN_OF_META: &str = "dsn_of";

/// What the notification tells the sender.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DsnAction {
    /// Given up: a permanent failure or an expiry.
    Failed,
    /// Still trying.
    Delayed,
}

impl DsnAction {
    fn as_str(self) -> &'static str {
        match self {
            DsnAction::Failed => "failed",
            DsnAction::Delayed => "delayed",
        }
    }
}

/// The facts of one report.
#[derive(Debug, Clone)]
pub struct DsnReport<'a> {
    /// This host's name (`Reporting-MTA: dns; …`, and the From domain).
    pub reporting_mta: &'a str,
    /// The message reported on (its body, when loaded, gives the headers).
    pub original: &'a Message,
    /// Failed or delayed.
    pub action: DsnAction,
    /// The reply that decided it: code, enhanced code, text.
    pub code: u16,
    /// RFC 3463 status; derived from the code's class when absent.
    pub enhanced_code: Option<&'a str>,
    /// The reply text.
    pub text: &'a str,
    /// The server that gave the reply, when there was one.
    pub remote_mta: Option<&'a str>,
    /// When the last attempt was made.
    pub last_attempt: DateTime<Utc>,
    /// For a delay: when Petrel stops trying.
    pub will_retry_until: Option<DateTime<Utc>>,
}

/// Whether a failure of `message` may be reported to its sender: never for
/// the null sender (notifications themselves, RFC 5321 §4.5.5), never for a
/// delivery or feedback report however it was sent, never for a log hook's
/// record. (`Auto-Submitted` mail is reported: ESPs mark their own
/// notifications so, and their senders want to hear of failures.)
pub fn wants_dsn(message: &Message) -> bool {
    // Log hook messages (`log_record` meta) carry the original's sender
    // but are Petrel's own records, not the sender's mail.
    if message.sender.is_null() || message.meta.get(DSN_OF_META).is_some() || message.meta.get("log_record").is_some() {
        return false;
    }
    let data = message.data.as_deref().unwrap_or_default();
    let content_type = crate::first_header(data, "Content-Type").unwrap_or_default().to_ascii_lowercase();
    !content_type.starts_with("multipart/report")
}

/// The status of the report: the reply's enhanced code, else its class.
fn status(report: &DsnReport<'_>) -> String {
    match report.enhanced_code {
        Some(code) => code.to_string(),
        None if report.code >= 500 => "5.0.0".to_string(),
        None => "4.0.0".to_string(),
    }
}

fn one_line(text: &str) -> String {
    text.replace(['\r', '\n'], " ")
}

/// The `message/delivery-status` body: per-message then per-recipient fields.
fn delivery_status(report: &DsnReport<'_>) -> String {
    let original = report.original;
    let mut out = format!(
        "Reporting-MTA: dns; {}\r\nX-Petrel-Queue-ID: {}\r\nArrival-Date: {}\r\n\r\n",
        report.reporting_mta,
        original.id,
        original.created.to_rfc2822()
    );
    out.push_str(&format!("Final-Recipient: rfc822; {}\r\n", original.recipient.email()));
    out.push_str(&format!("Action: {}\r\nStatus: {}\r\n", report.action.as_str(), status(report)));
    if let Some(mta) = report.remote_mta {
        out.push_str(&format!("Remote-MTA: dns; {mta}\r\n"));
    }
    let enhanced = report.enhanced_code.map(|e| format!(" {e}")).unwrap_or_default();
    out.push_str(&format!("Diagnostic-Code: smtp; {}{enhanced} {}\r\n", report.code, one_line(report.text)));
    out.push_str(&format!("Last-Attempt-Date: {}\r\n", report.last_attempt.to_rfc2822()));
    if let Some(until) = report.will_retry_until {
        out.push_str(&format!("Will-Retry-Until: {}\r\n", until.to_rfc2822()));
    }
    out
}

fn human_text(report: &DsnReport<'_>) -> String {
    let recipient = report.original.recipient.email();
    let reply = format!(
        "{}{} {}",
        report.code,
        report.enhanced_code.map(|e| format!(" {e}")).unwrap_or_default(),
        one_line(report.text)
    );
    let server = report.remote_mta.map(|m| format!(" ({m})")).unwrap_or_default();
    match report.action {
        DsnAction::Failed => format!(
            "This is the mail system at {host}.\r\n\r\nYour message could not be delivered to {recipient}.\r\n\r\n\
             The receiving server{server} said:\r\n    {reply}\r\n\r\nNo further attempts will be made.\r\n",
            host = report.reporting_mta
        ),
        DsnAction::Delayed => format!(
            "This is the mail system at {host}.\r\n\r\nYour message to {recipient} has not been delivered yet.\r\n\r\n\
             The last attempt{server} got:\r\n    {reply}\r\n\r\nDelivery will be attempted again; you do not need \
             to send it again.\r\n",
            host = report.reporting_mta
        ),
    }
}

/// The header block of `data` (up to, not including, the blank line).
fn header_block(data: &[u8]) -> &[u8] {
    let end = data.windows(4).position(|w| w == b"\r\n\r\n").map(|p| p + 2).unwrap_or(data.len());
    &data[..end]
}

/// The notification for `report`, addressed to the original sender from
/// the null sender, with meta `dsn_of` naming the original.
pub fn build_dsn(report: &DsnReport<'_>) -> Message {
    let original = report.original;
    let data = original.data.as_deref().unwrap_or_default();
    let headers = header_block(data);
    let eight_bit = headers.iter().any(|b| *b >= 0x80);
    let status_part = MimePart::raw(format!(
        "Content-Type: message/delivery-status\r\nContent-Transfer-Encoding: 7bit\r\n\r\n{}",
        delivery_status(report)
    ));
    let mut original_part = b"Content-Type: text/rfc822-headers\r\nContent-Transfer-Encoding: ".to_vec();
    original_part.extend_from_slice(if eight_bit { b"8bit\r\n\r\n" } else { b"7bit\r\n\r\n" });
    original_part.extend_from_slice(headers);
    let subject = match report.action {
        DsnAction::Failed => "Undelivered Mail Returned to Sender",
        DsnAction::Delayed => "Delivery Status Notification (Delay)",
    };
    let body = MimePart::new(
        mail_builder::headers::content_type::ContentType::new("multipart/report")
            .attribute("report-type", "delivery-status"),
        vec![MimePart::new("text/plain", human_text(report)), status_part, MimePart::raw(original_part)],
    );
    let from = format!("MAILER-DAEMON@{}", report.reporting_mta);
    let bytes = MessageBuilder::new()
        .from(("Mail Delivery System", from.as_str()))
        .to(original.sender.email())
        .subject(subject)
        .header("Auto-Submitted", Text::new("auto-replied"))
        .message_id(format!("{}.dsn@{}", original.id, report.reporting_mta))
        .body(body)
        .write_to_vec()
        .expect("writing to memory cannot fail");
    let mut dsn = Message::new(EnvelopeAddress::null(), original.sender.clone(), Arc::from(bytes));
    dsn.set_meta(DSN_OF_META, serde_json::Value::String(original.id.to_string()));
    dsn
}
