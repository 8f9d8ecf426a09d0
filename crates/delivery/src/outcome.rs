//! What happens after an attempt: log it, then remove, retry or bounce.

use crate::dispatcher::Dispatcher;
use crate::ready::{Dispatched, ReadyQueue};
use petrel_smtp_client::{ClientError, Phase};
use petrel_smtp_proto::Reply;
use petrel_telemetry::{LogRecord, RecordType, ResponseInfo};
use std::net::SocketAddr;

pub(crate) struct Attempt<'a> {
    pub ready: &'a ReadyQueue,
    pub peer: Option<SocketAddr>,
}

fn from_reply(reply: &Reply) -> ResponseInfo {
    ResponseInfo {
        code: reply.code,
        enhanced_code: reply.enhanced.map(|e| e.to_string()),
        content: reply.text.clone(),
    }
}

/// A reply for failures that never got one from the server, in the RFC 3463
/// network classes, so logs can be filtered by code alone.
fn from_error(e: &ClientError) -> ResponseInfo {
    if let Some(reply) = e.reply() {
        return from_reply(reply);
    }
    let enhanced = match e {
        ClientError::Bind { .. } => "4.4.0",
        ClientError::Connect { .. }
        | ClientError::Timeout {
            phase: Phase::Connect | Phase::Banner,
            ..
        } => "4.4.1",
        _ => "4.4.2",
    };
    ResponseInfo {
        code: 451,
        enhanced_code: Some(enhanced.into()),
        content: e.to_string(),
    }
}

pub(crate) async fn report(
    dispatcher: &Dispatcher,
    attempt: &Attempt<'_>,
    item: Dispatched,
    result: Result<&Reply, &ClientError>,
) {
    let handles = &dispatcher.handles;
    let Dispatched {
        queue,
        mut message,
        pool,
    } = item;
    message.num_attempts += 1;
    let (kind, response) = match result {
        Ok(reply) => (RecordType::Delivery, from_reply(reply)),
        Err(e) if e.is_permanent() => (RecordType::Bounce, from_error(e)),
        Err(e) => (RecordType::TransientFailure, from_error(e)),
    };
    let source = &attempt.ready.source;
    let mut record = LogRecord::for_message(kind, &message, response.clone());
    record.site = attempt.ready.site.clone();
    record.peer_address = attempt.peer.map(|p| p.to_string());
    record.egress_pool = Some(pool);
    record.egress_source = Some(source.name.clone());
    record.source_address = source.source_address.map(|a| a.to_string());
    handles.logger.log(record);
    match kind {
        RecordType::TransientFailure => {
            handles.queues.retry(&queue, message, &response).await;
        }
        _ => {
            if let Err(e) = handles.spool.remove(message.id).await {
                // Left in the spool, it would be delivered again after a restart.
                tracing::error!(id = %message.id, error = %e, "cannot remove a finished message from the spool");
            }
        }
    }
}
