//! Queue settings and the policy seam that supplies them.

use async_trait::async_trait;
use petrel_message::Message;
use std::time::Duration;

/// How messages of a queue are delivered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeliveryProtocol {
    /// SMTP to the routing domain's MX hosts, or to `mx_list` (smart hosts
    /// by name, resolved as A/AAAA) when given. Entries may carry `:port`.
    Smtp {
        /// The hosts to use instead of MX lookup, tried in this order.
        mx_list: Option<Vec<MxListEntry>>,
    },
    /// Handed to the policy (`protocol = { custom_lua = { constructor =
    /// 'make.webhook' } }`): the constructor event returns a connection
    /// object whose `send(message)` (or `send_batch(messages)`) delivers.
    /// Messages of such a queue go out in order, one batch at a time.
    CustomLua {
        /// The event that builds a connection.
        constructor: String,
        /// Messages per `send_batch` call; 1 calls `send` for each.
        batch_size: usize,
        /// How long a short batch waits for more messages to fill it.
        batch_timeout: Option<Duration>,
    },
}

impl DeliveryProtocol {
    /// The smart hosts of an SMTP queue, when it names them.
    pub fn mx_list(&self) -> Option<&Vec<MxListEntry>> {
        match self {
            DeliveryProtocol::Smtp { mx_list } => mx_list.as_ref(),
            DeliveryProtocol::CustomLua { .. } => None,
        }
    }
}

/// One host of an `mx_list`: a name (`host`, `host:port`, `ip`), or a name
/// with the address to connect to (`{ name = 'mx.example.com', addr =
/// '10.0.0.1:2025' }`): the name is used for TLS and logs, the address
/// (and its port, when it has one) for the connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MxListEntry {
    /// The host's name.
    pub name: String,
    /// Where to connect instead of resolving `name`.
    pub addr: Option<String>,
}

impl From<&str> for MxListEntry {
    fn from(name: &str) -> Self {
        Self { name: name.to_string(), addr: None }
    }
}

impl From<String> for MxListEntry {
    fn from(name: String) -> Self {
        Self { name, addr: None }
    }
}

/// Settings of one scheduled queue (`kumo.make_queue_config`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueConfig {
    /// The pool to send through, unless the message's meta names one.
    pub egress_pool: Option<String>,
    /// First retry delay; each later one doubles.
    pub retry_interval: Duration,
    /// The longest delay between retries.
    pub max_retry_interval: Option<Duration>,
    /// How long a message may stay queued before it expires.
    pub max_age: Duration,
    /// How messages of the queue are delivered.
    pub protocol: DeliveryProtocol,
    /// Send the envelope sender a delivery status notification when a
    /// message bounces or expires (Momentum's `generate_bounces`).
    pub generate_bounces: bool,
    /// Also tell the sender, every `delay_dsn_retry_interval`, that a
    /// message is still waiting (Momentum's `generate_delay_dsn`).
    pub generate_delay_dsn: bool,
    /// Spacing of delay notifications, counted from reception.
    pub delay_dsn_retry_interval: Duration,
}

impl Default for QueueConfig {
    fn default() -> Self {
        Self {
            egress_pool: None,
            retry_interval: Duration::from_secs(20 * 60),
            max_retry_interval: None,
            max_age: Duration::from_secs(7 * 24 * 3600),
            protocol: DeliveryProtocol::Smtp { mx_list: None },
            generate_bounces: true,
            generate_delay_dsn: false,
            delay_dsn_retry_interval: Duration::from_secs(3600),
        }
    }
}

/// What `get_queue_config(domain, tenant, campaign, routing_domain)` receives.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct QueueKey {
    /// The recipient domain.
    pub domain: String,
    /// `tenant` meta.
    pub tenant: Option<String>,
    /// `campaign` meta.
    pub campaign: Option<String>,
    /// `routing_domain` meta.
    pub routing_domain: Option<String>,
}

impl QueueKey {
    /// The key of the queue `message` belongs to.
    pub fn of(message: &Message) -> Self {
        let parts = message.queue_parts();
        Self {
            domain: parts.domain.to_ascii_lowercase(),
            tenant: parts.tenant.map(str::to_string),
            campaign: parts.campaign.map(str::to_string),
            routing_domain: parts.routing_domain.map(str::to_string),
        }
    }
}

/// The policy could not produce a queue config (a Lua error or a bad value).
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct QueuePolicyError(pub String);

/// Supplies queue settings; the Lua crate implements it with the
/// `get_queue_config` event, tests with plain Rust.
#[async_trait]
pub trait QueuePolicy: Send + Sync + 'static {
    /// `get_queue_config` for the queue with `key`.
    async fn queue_config(&self, key: &QueueKey) -> Result<QueueConfig, QueuePolicyError>;
}

/// A fixed configuration for every queue.
#[async_trait]
impl QueuePolicy for QueueConfig {
    async fn queue_config(&self, _key: &QueueKey) -> Result<QueueConfig, QueuePolicyError> {
        Ok(self.clone())
    }
}

/// Delay before the next attempt after `attempts` failed ones (≥ 1):
/// `retry_interval × 2^(attempts-1)`, capped at `max_retry_interval`, then
/// moved by `jitter` (a fraction in [-1, 1]) of up to 10 %, so that messages
/// that failed together do not all come back in the same instant.
pub fn retry_delay(config: &QueueConfig, attempts: u32, jitter: f64) -> Duration {
    let exponent = attempts.saturating_sub(1).min(30);
    let mut delay = config.retry_interval.saturating_mul(1u32 << exponent);
    if let Some(cap) = config.max_retry_interval {
        delay = delay.min(cap);
    }
    let factor = 1.0 + 0.1 * jitter.clamp(-1.0, 1.0);
    delay.mul_f64(factor)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exponential_backoff_with_cap_and_jitter() {
        let config = QueueConfig {
            retry_interval: Duration::from_secs(60),
            max_retry_interval: Some(Duration::from_secs(600)),
            ..Default::default()
        };
        let secs: Vec<u64> = (1..=6).map(|n| retry_delay(&config, n, 0.0).as_secs()).collect();
        assert_eq!(secs, [60, 120, 240, 480, 600, 600]);
        assert_eq!(retry_delay(&config, 1, 1.0), Duration::from_secs(66));
        assert_eq!(retry_delay(&config, 1, -1.0), Duration::from_secs(54));
        let uncapped = QueueConfig { retry_interval: Duration::from_secs(1), ..Default::default() };
        assert_eq!(retry_delay(&uncapped, 100, 0.0), Duration::from_secs(1 << 30));
    }
}
