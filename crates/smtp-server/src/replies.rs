//! Replies the session's verbs share: the plain constructor, what a
//! policy refusal or failure becomes, and the storage refusal.

use crate::config::PolicyError;
use petrel_smtp_proto::{EnhancedCode, Reply};
use std::net::SocketAddr;

pub(crate) fn reply(code: u16, enhanced: &str, text: &str) -> Reply {
    Reply::new(code, Some(enhanced), text)
}

/// A policy refusal or failure as the client sees it.
pub(crate) fn policy_reply(error: PolicyError, phase: &str, peer: SocketAddr) -> Reply {
    match error {
        PolicyError::Reject { code, text } => rejection(code, &text),
        PolicyError::Failed(e) => {
            tracing::error!(%peer, error = %e, "{phase} policy event failed");
            reply(451, "4.3.0", "Temporary policy failure, try again later")
        }
    }
}

/// A policy's `kumo.reject(code, "5.7.1 text")` → reply; the enhanced code
/// may lead the text.
pub(crate) fn rejection(code: u16, text: &str) -> Reply {
    let (first, rest) = text.split_once(' ').unwrap_or((text, ""));
    match EnhancedCode::parse(first) {
        Some(enhanced) => Reply { code, enhanced: Some(enhanced), text: rest.to_string() },
        None => Reply { code, enhanced: None, text: text.to_string() },
    }
}

/// RFC 3463 4.3.1 "mail system full": the spool cannot take mail now.
pub(crate) fn insufficient_storage() -> Reply {
    Reply::new(452, Some("4.3.1"), "Insufficient system storage, try again later")
}
