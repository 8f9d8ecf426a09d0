//! The message record: what is spooled as meta, plus its body.

use crate::address::EnvelopeAddress;
use crate::id::SpoolId;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

use crate::meta::Meta;

/// One message for one recipient. Everything but `data` is the spooled meta
/// record; `data` is held only while the message is being received or
/// delivered, so messages waiting in queues cost no body memory.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Message {
    /// Its spool id.
    pub id: SpoolId,
    /// The envelope sender.
    pub sender: EnvelopeAddress,
    /// The envelope recipient (one per message, as in KumoMTA).
    pub recipient: EnvelopeAddress,
    /// Metadata set by policy and reception (`queue`, `tenant`, `egress_pool`, …).
    #[serde(default)]
    pub meta: Meta,
    /// When it was received.
    pub created: DateTime<Utc>,
    /// Delivery attempts so far.
    #[serde(default)]
    pub num_attempts: u32,
    /// When the next attempt is due; `None` means now.
    #[serde(default)]
    pub due: Option<DateTime<Utc>>,
    /// Body length, kept in the meta record so logs know it without the body.
    #[serde(default)]
    pub size: usize,
    /// The body, when it is loaded; delivery reads it from the spool on demand.
    #[serde(skip)]
    pub data: Option<Arc<[u8]>>,
}

impl Message {
    /// A new message with a fresh id, received now.
    pub fn new(sender: EnvelopeAddress, recipient: EnvelopeAddress, data: Arc<[u8]>) -> Self {
        Self {
            id: SpoolId::new(),
            sender,
            recipient,
            meta: Meta::new(),
            created: Utc::now(),
            num_attempts: 0,
            due: None,
            size: data.len(),
            data: Some(data),
        }
    }

    /// Replace the body (policy edits), keeping `size` in step.
    pub fn set_data(&mut self, data: Arc<[u8]>) {
        self.size = data.len();
        self.data = Some(data);
    }

    /// A string meta value; non-string JSON values are not coerced.
    pub fn meta_str(&self, key: &str) -> Option<&str> {
        self.meta.get(key).and_then(|v| v.as_str()).filter(|s| !s.is_empty())
    }

    /// Set one metadata value.
    pub fn set_meta(&mut self, key: impl Into<String>, value: serde_json::Value) {
        self.meta.insert(key.into(), value);
    }

    /// The routing domain: meta `routing_domain`, else the recipient's domain.
    pub fn routing_domain(&self) -> &str {
        self.meta_str("routing_domain").unwrap_or_else(|| self.recipient.domain())
    }

    /// What its scheduled queue's name is built from.
    pub fn queue_parts(&self) -> QueueNameParts<'_> {
        // A `queue` meta names the queue outright; its parts are what
        // get_queue_config is asked with (KumoMTA parses it the same way).
        if let Some(queue) = self.meta_str("queue") {
            return QueueNameParts::parse(queue);
        }
        QueueNameParts {
            campaign: self.meta_str("campaign"),
            tenant: self.meta_str("tenant"),
            domain: self.recipient.domain(),
            routing_domain: self.meta_str("routing_domain"),
        }
    }

    /// The scheduled queue this message waits in: meta `queue` if set, else
    /// `campaign:tenant@domain!routing_domain` with unset parts left out.
    pub fn queue_name(&self) -> String {
        match self.meta_str("queue") {
            Some(q) => q.to_string(),
            None => queue_name(&self.queue_parts()),
        }
    }

    /// Size of the body in bytes (as recorded at reception when the body is not loaded).
    pub fn size(&self) -> usize {
        self.data.as_ref().map_or(self.size, |d| d.len())
    }
}

impl<'a> QueueNameParts<'a> {
    /// Split `campaign:tenant@domain!routing_domain` (every part but the
    /// domain optional) into its parts.
    pub fn parse(name: &'a str) -> Self {
        let (rest, routing_domain) = match name.split_once('!') {
            Some((rest, routing)) => (rest, Some(routing)),
            None => (name, None),
        };
        let (campaign, rest) = match rest.split_once(':') {
            Some((campaign, rest)) => (Some(campaign), rest),
            None => (None, rest),
        };
        let (tenant, domain) = match rest.rsplit_once('@') {
            Some((tenant, domain)) => (Some(tenant), domain),
            None => (None, rest),
        };
        Self { campaign, tenant, domain, routing_domain }
    }
}

/// The pieces a queue name is built from, as `get_queue_config` receives them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueNameParts<'a> {
    /// `campaign` meta.
    pub campaign: Option<&'a str>,
    /// `tenant` meta.
    pub tenant: Option<&'a str>,
    /// The recipient domain.
    pub domain: &'a str,
    /// `routing_domain` meta.
    pub routing_domain: Option<&'a str>,
}

/// KumoMTA's queue name: `campaign:tenant@domain!routing_domain`, with absent parts left out.
pub fn queue_name(parts: &QueueNameParts<'_>) -> String {
    let mut name = String::new();
    if let Some(c) = parts.campaign {
        name.push_str(c);
        name.push(':');
    }
    if let Some(t) = parts.tenant {
        name.push_str(t);
        name.push('@');
    }
    name.push_str(&parts.domain.to_ascii_lowercase());
    if let Some(r) = parts.routing_domain {
        name.push('!');
        name.push_str(r);
    }
    name
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn msg() -> Message {
        Message::new(
            EnvelopeAddress::parse("s@a.example").unwrap(),
            EnvelopeAddress::parse("r@Dest.Example").unwrap(),
            Arc::from(&b"Subject: x\r\n\r\nhi\r\n"[..]),
        )
    }

    #[test]
    fn queue_names() {
        let mut m = msg();
        assert_eq!(m.queue_name(), "dest.example");
        m.set_meta("tenant", json!("acme"));
        assert_eq!(m.queue_name(), "acme@dest.example");
        m.set_meta("campaign", json!("spring"));
        m.set_meta("routing_domain", json!("relay.example"));
        assert_eq!(m.queue_name(), "spring:acme@dest.example!relay.example");
        assert_eq!(m.routing_domain(), "relay.example");
        m.set_meta("queue", json!("custom"));
        assert_eq!(m.queue_name(), "custom");
        // The queue meta's parts are what get_queue_config is asked with.
        assert_eq!(m.queue_parts().domain, "custom");
        assert_eq!(m.queue_parts().tenant, None);
        m.set_meta("queue", json!("c1:t1@other.example!gw.example"));
        let parts = m.queue_parts();
        assert_eq!(
            (parts.campaign, parts.tenant, parts.domain, parts.routing_domain),
            (Some("c1"), Some("t1"), "other.example", Some("gw.example"))
        );
    }

    #[test]
    fn spooled_meta_omits_the_body() {
        let m = msg();
        let json = serde_json::to_string(&m).unwrap();
        assert!(!json.contains("hi"));
        let back: Message = serde_json::from_str(&json).unwrap();
        assert_eq!(back.id, m.id);
        assert!(back.data.is_none());
    }
}
