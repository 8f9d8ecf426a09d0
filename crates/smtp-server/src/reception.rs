//! A completed DATA: split per recipient, run the policy, spool durably,
//! queue, log; and only then answer 250.

use crate::config::PolicyError;
use crate::replies::{insufficient_storage, rejection};
use crate::session::Session;
use petrel_message::Message;
use petrel_smtp_proto::Reply;
use petrel_telemetry::ResponseInfo;
use std::sync::Arc;

fn response_info(reply: &Reply) -> ResponseInfo {
    ResponseInfo {
        code: reply.code,
        enhanced_code: reply.enhanced.map(|e| e.to_string()),
        content: reply.text.clone(),
        command: None,
    }
}

/// `OK ids=a,b,c` while that fits in one reply line; past that the first
/// ids and how many more (every id is in the Reception log records).
fn accepted_text(messages: &[Message]) -> String {
    const SHOWN: usize = 8;
    let ids: Vec<String> = messages.iter().take(SHOWN).map(|m| m.id.to_string()).collect();
    match messages.len().saturating_sub(SHOWN) {
        0 => format!("OK ids={}", ids.join(",")),
        more => format!("OK ids={} and {more} more", ids.join(",")),
    }
}

/// Limits on what the client sent, before the policy sees it.
fn check_headers(session: &Session, data: &[u8]) -> Result<(), Reply> {
    let counts = petrel_message::header_counts(data);
    if counts.received > session.config.max_received_headers {
        return Err(Reply::new(554, Some("5.4.6"), "Too many Received headers: a mail loop"));
    }
    if counts.fields > session.config.max_header_fields {
        return Err(Reply::new(552, Some("5.3.4"), "Too many header fields"));
    }
    Ok(())
}

/// Reports to domains that log them (`log_oob`, `log_arf`): log the OOB or
/// Feedback records, then keep the messages to relay. A recipient accepted
/// only because its domain takes reports cannot be sent anything else.
fn reports(
    session: &Session,
    data: &[u8],
    messages: Vec<Message>,
    from: &petrel_queue::ReceptionInfo,
) -> Result<Vec<Message>, Reply> {
    use crate::config::ReportHandling::{Ignore, LogThenDrop};
    if !session.relays.iter().any(|r| r.takes_reports()) {
        return Ok(messages);
    }
    let report = petrel_message::parse_report(data);
    let mut kept = Vec::with_capacity(messages.len());
    for (message, relay) in messages.into_iter().zip(&session.relays) {
        let handling = match &report {
            Some(petrel_message::Report::Dsn(_)) => relay.oob,
            Some(petrel_message::Report::Feedback { .. }) => relay.arf,
            None => Ignore,
        };
        if let (Some(report), true) = (&report, handling != Ignore) {
            session.handles.intake.report_received(&message, report, from);
            if handling == LogThenDrop || !relay.relay {
                continue;
            }
        } else if !relay.relay {
            return Err(Reply::new(550, Some("5.7.1"), "Relaying denied: this domain takes only reports"));
        }
        kept.push(message);
    }
    Ok(kept)
}

pub(crate) async fn receive(session: &mut Session, data: Vec<u8>) -> Reply {
    if let Err(refusal) = check_headers(session, &data) {
        return refusal;
    }
    let handles = session.handles.clone();
    let sender = session.sender.clone().expect("checked before DATA");
    let ehlo = session.ehlo.clone().unwrap_or_default();
    // RFC 3848 protocol names: S for TLS, A for an authenticated client.
    let protocol = match (session.conn.is_tls(), session.authn_id.is_some()) {
        (false, false) => "ESMTP",
        (true, false) => "ESMTPS",
        (false, true) => "ESMTPA",
        (true, true) => "ESMTPSA",
    };
    let received = format!(
        "Received: from {ehlo} ({}) by {} (Petrel) with {protocol}; {}\r\n",
        session.peer.ip(),
        session.config.hostname,
        chrono::Utc::now().to_rfc2822()
    );
    let mut body = received.into_bytes();
    body.extend_from_slice(&data);
    let body: Arc<[u8]> = Arc::from(body);
    let conn = session.conn_meta();
    let mut messages: Vec<Message> =
        session.recipients.iter().map(|r| Message::new(sender.clone(), r.clone(), body.clone())).collect();
    if let Some(id) = &session.authn_id {
        for m in &mut messages {
            m.set_meta("authn_id", id.clone().into());
        }
    }
    let from = petrel_queue::ReceptionInfo {
        peer_address: conn.received_from.clone(),
        peer_name: conn.ehlo_domain.clone().unwrap_or_default(),
        protocol: protocol.into(),
        tls: session.conn.tls_info(),
    };
    let messages = match reports(session, &data, messages, &from) {
        Ok(kept) => kept,
        Err(refusal) => return refusal,
    };
    if messages.is_empty() {
        return Reply::new(250, Some("2.0.0"), "OK report logged");
    }
    let mut messages = messages;
    for message in &mut messages {
        match handles.policy.message_received(message, &conn).await {
            Ok(()) => {}
            Err(PolicyError::Reject { code, text }) => {
                let reply = rejection(code, &text);
                handles.intake.rejected(message, &from, response_info(&reply));
                return reply;
            }
            Err(PolicyError::Failed(error)) => {
                tracing::error!(peer = %session.peer, %error, "smtp_server_message_received failed; deferring the message");
                return Reply::new(451, Some("4.3.0"), "Temporary policy failure, try again later");
            }
        }
    }
    let reply = Reply::new(250, Some("2.0.0"), accepted_text(&messages));
    if let Err(e) = handles.intake.admit(messages, &from, &response_info(&reply)).await {
        tracing::error!(error = %e, "cannot spool a received message");
        return insufficient_storage();
    }
    reply
}
