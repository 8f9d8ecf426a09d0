//! Reading the reports mailbox providers send back: RFC 3464 delivery
//! status notifications (out-of-band bounces) and RFC 5965 feedback
//! reports (complaints). Both are `multipart/report`; the report part is
//! a set of `Name: value` fields, and the original message (or its
//! headers) usually comes along, carrying Petrel's `X-Petrel-Id` header,
//! which ties the report to the message that was sent.

use mail_parser::{MessageParser, MimeHeaders};
use serde_json::{Map, Value, json};

/// The header Petrel adds at reception naming the message's spool id (the
/// first recipient's, for a reception with several).
pub const REFERENCE_HEADER: &str = "X-Petrel-Id";

/// One recipient of a delivery status report.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DsnRecipient {
    /// `Final-Recipient`, the address alone.
    pub final_recipient: String,
    /// `Action`: failed, delayed, delivered, relayed, expanded.
    pub action: String,
    /// `Status`, an RFC 3463 code.
    pub status: String,
    /// `Diagnostic-Code` without its type (`smtp; `).
    pub diagnostic: Option<String>,
    /// `Remote-MTA` without its type.
    pub remote_mta: Option<String>,
}

/// A parsed delivery status report.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DsnReportParsed {
    /// `Reporting-MTA` without its type.
    pub reporting_mta: Option<String>,
    /// Per-recipient fields.
    pub recipients: Vec<DsnRecipient>,
    /// The `X-Petrel-Id` of the original, when its headers came back.
    pub reference: Option<String>,
}

/// A report Petrel can read.
#[derive(Debug, Clone, PartialEq)]
pub enum Report {
    /// A delivery status notification.
    Dsn(DsnReportParsed),
    /// A feedback report, in KumoMTA's `feedback_report` shape.
    Feedback {
        /// The report.
        report: Value,
        /// The `X-Petrel-Id` of the original, when it came back.
        reference: Option<String>,
    },
}

/// `Name: value` fields, folded lines joined, in groups split by blank lines.
fn field_groups(text: &str) -> Vec<Vec<(String, String)>> {
    let mut groups: Vec<Vec<(String, String)>> = vec![Vec::new()];
    for line in text.lines() {
        if line.trim().is_empty() {
            if !groups.last().is_some_and(Vec::is_empty) {
                groups.push(Vec::new());
            }
            continue;
        }
        let group = groups.last_mut().expect("never empty");
        if line.starts_with([' ', '\t']) {
            if let Some((_, value)) = group.last_mut() {
                value.push(' ');
                value.push_str(line.trim());
            }
            continue;
        }
        if let Some((name, value)) = line.split_once(':') {
            group.push((name.trim().to_ascii_lowercase(), value.trim().to_string()));
        }
    }
    groups.retain(|g| !g.is_empty());
    groups
}

fn get<'a>(group: &'a [(String, String)], name: &str) -> Option<&'a str> {
    group.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
}

/// `rfc822; user@example.com` → `user@example.com`.
fn typed(value: &str) -> String {
    value.split_once(';').map_or(value, |(_, v)| v).trim().trim_matches(['<', '>']).to_string()
}

/// The `X-Petrel-Id` in some headers.
fn reference_in(headers: &[u8]) -> Option<String> {
    crate::first_header(headers, REFERENCE_HEADER).map(|v| v.trim().to_string()).filter(|v| !v.is_empty())
}

/// What `data` is, when it is a report Petrel reads.
pub fn parse_report(data: &[u8]) -> Option<Report> {
    let message = MessageParser::default().parse(data)?;
    let ct = message.content_type()?;
    if !ct.ctype().eq_ignore_ascii_case("multipart") || !ct.subtype().is_some_and(|s| s.eq_ignore_ascii_case("report"))
    {
        return None;
    }
    let report_type = ct.attribute("report-type").unwrap_or("").to_ascii_lowercase();
    let mut fields = None;
    let mut original: Option<Vec<u8>> = None;
    for part in message.parts.iter() {
        let Some(pct) = part.content_type() else { continue };
        let kind = format!("{}/{}", pct.ctype(), pct.subtype().unwrap_or("")).to_ascii_lowercase();
        match kind.as_str() {
            "message/delivery-status" | "message/feedback-report" | "message/global-delivery-status" => {
                fields = Some(String::from_utf8_lossy(part.contents()).into_owned());
            }
            "text/rfc822-headers" | "message/rfc822" | "message/global" | "message/global-headers" => {
                original = Some(part.contents().to_vec());
            }
            _ => {}
        }
    }
    let fields = fields?;
    let reference = original.as_deref().and_then(reference_in);
    match report_type.as_str() {
        "delivery-status" => Some(Report::Dsn(dsn(&fields, reference))),
        "feedback-report" => Some(Report::Feedback { report: feedback(&fields, original.as_deref()), reference }),
        _ => None,
    }
}

fn dsn(fields: &str, reference: Option<String>) -> DsnReportParsed {
    let groups = field_groups(fields);
    let mut parsed = DsnReportParsed { reference, ..Default::default() };
    for group in &groups {
        if let Some(mta) = get(group, "reporting-mta") {
            parsed.reporting_mta = Some(typed(mta));
        }
        let Some(recipient) = get(group, "final-recipient").or_else(|| get(group, "original-recipient")) else {
            continue;
        };
        parsed.recipients.push(DsnRecipient {
            final_recipient: typed(recipient),
            action: get(group, "action").unwrap_or("failed").to_ascii_lowercase(),
            status: get(group, "status").unwrap_or("5.0.0").split_whitespace().next().unwrap_or("5.0.0").to_string(),
            diagnostic: get(group, "diagnostic-code").map(typed),
            remote_mta: get(group, "remote-mta").map(typed),
        });
    }
    parsed
}

/// KumoMTA's `feedback_report` object: RFC 5965 fields by name, the
/// rest in `extensions`, the original message as text.
fn feedback(fields: &str, original: Option<&[u8]>) -> Value {
    let all: Vec<(String, String)> = field_groups(fields).into_iter().flatten().collect();
    let one = |name: &str| get(&all, name).map(|v| Value::String(v.to_string())).unwrap_or(Value::Null);
    let many = |name: &str| -> Value {
        let list: Vec<Value> = all.iter().filter(|(n, _)| n == name).map(|(_, v)| Value::String(v.clone())).collect();
        if list.is_empty() { Value::Null } else { Value::Array(list) }
    };
    const KNOWN: [&str; 13] = [
        "feedback-type",
        "user-agent",
        "version",
        "arrival-date",
        "incidents",
        "original-envelope-id",
        "original-mail-from",
        "reporting-mta",
        "source-ip",
        "authentication-results",
        "original-rcpt-to",
        "reported-domain",
        "reported-uri",
    ];
    let mut extensions = Map::new();
    for (name, value) in all.iter().filter(|(n, _)| !KNOWN.contains(&n.as_str())) {
        let entry = extensions.entry(name.clone()).or_insert_with(|| Value::Array(Vec::new()));
        if let Value::Array(list) = entry {
            list.push(Value::String(value.clone()));
        }
    }
    let reporting_mta = get(&all, "reporting-mta").map(|v| match v.split_once(';') {
        Some((kind, name)) => json!({ "mta_type": kind.trim(), "name": name.trim() }),
        None => json!({ "mta_type": "dns", "name": v }),
    });
    json!({
        "feedback_type": get(&all, "feedback-type").map(str::to_ascii_lowercase),
        "user_agent": one("user-agent"),
        "version": get(&all, "version").and_then(|v| v.parse::<u32>().ok()),
        "arrival_date": one("arrival-date"),
        "incidents": get(&all, "incidents").and_then(|v| v.parse::<u64>().ok()),
        "original_envelope_id": one("original-envelope-id"),
        "original_mail_from": one("original-mail-from"),
        "reporting_mta": reporting_mta,
        "source_ip": one("source-ip"),
        "authentication_results": many("authentication-results"),
        "original_rcpto_to": many("original-rcpt-to"),
        "reported_domain": many("reported-domain"),
        "reported_uri": many("reported-uri"),
        "extensions": extensions,
        "original_message": original.map(|o| String::from_utf8_lossy(o).into_owned()),
    })
}
