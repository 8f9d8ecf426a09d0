//! Egress path settings and the policy seam that supplies them.

use async_trait::async_trait;
use ipnet::IpNet;
use petrel_egress::{EgressPool, EgressSource, Registry};
use petrel_smtp_client::{Timeouts, TlsMode};
use petrel_throttle::ThrottleSpec;
use std::sync::Arc;
use std::time::Duration;

/// Settings of one `source->site` path (`kumo.make_egress_path`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EgressPathConfig {
    /// Most concurrent connections from the source to the site.
    pub connection_limit: usize,
    /// Transactions on one connection before it is closed (KumoMTA's default 1024).
    pub max_deliveries_per_connection: usize,
    /// Most recipients (messages sharing a body) in one transaction.
    pub max_recipients_per_batch: usize,
    /// Messages per period from this source to this site; `None` is
    /// unlimited. Paced evenly unless the spec names a `max_burst`.
    pub max_message_rate: Option<ThrottleSpec>,
    /// New connections per period from this source to this site.
    pub max_connection_rate: Option<ThrottleSpec>,
    /// STARTTLS use (`enable_tls`).
    pub enable_tls: TlsMode,
    /// Port for hosts that name none.
    pub smtp_port: u16,
    /// Overrides the source's `ehlo_domain` for this path.
    pub ehlo_domain: Option<String>,
    /// How long an unused connection stays open.
    pub idle_timeout: Duration,
    /// How long each step of a transaction may wait for the server.
    pub timeouts: Timeouts,
    /// Addresses never contacted for MX-resolved destinations (mail loops).
    pub prohibited_hosts: Vec<IpNet>,
    /// Speak LMTP instead of SMTP.
    pub use_lmtp: bool,
    /// Waiting messages past which the source's ready queue counts as full:
    /// a pool with `overflow = 'spill'` then passes over the source.
    pub max_ready: usize,
}

/// Loopback and unspecified addresses: delivering there is a mail loop.
pub fn default_prohibited_hosts() -> Vec<IpNet> {
    ["127.0.0.0/8", "::1/128", "0.0.0.0/8", "::/128"].iter().map(|n| n.parse().expect("valid")).collect()
}

impl Default for EgressPathConfig {
    fn default() -> Self {
        Self {
            connection_limit: 32,
            max_ready: 1024,
            max_deliveries_per_connection: 1024,
            max_recipients_per_batch: 100,
            max_message_rate: None,
            max_connection_rate: None,
            enable_tls: TlsMode::Opportunistic,
            smtp_port: 25,
            ehlo_domain: None,
            idle_timeout: Duration::from_secs(60),
            timeouts: Timeouts::default(),
            prohibited_hosts: default_prohibited_hosts(),
            use_lmtp: false,
        }
    }
}

fn rate(value: &str) -> Result<ThrottleSpec, String> {
    ThrottleSpec::parse(value).map_err(|e| e.to_string())
}

impl EgressPathConfig {
    /// Set one option by its `make_egress_path` name (a shaping automation
    /// `SetConfig` override). The options a provider's replies usually ask
    /// to turn down are supported; others are refused.
    pub fn set_option(&mut self, name: &str, value: &str) -> Result<(), String> {
        let count = |v: &str| v.trim().parse::<usize>().map_err(|_| format!("{name}: {v:?} is not a whole number"));
        match name {
            "connection_limit" => self.connection_limit = count(value)?.max(1),
            "max_deliveries_per_connection" => self.max_deliveries_per_connection = count(value)?.max(1),
            "max_recipients_per_batch" => self.max_recipients_per_batch = count(value)?.max(1),
            "max_ready" => self.max_ready = count(value)?,
            "max_message_rate" => self.max_message_rate = Some(rate(value)?),
            "max_connection_rate" => self.max_connection_rate = Some(rate(value)?),
            other => {
                return Err(format!(
                    "SetConfig of {other:?} is not supported by Petrel yet (connection_limit, max_deliveries_per_connection, \
                     max_recipients_per_batch, max_ready, max_message_rate, max_connection_rate are)"
                ));
            }
        }
        Ok(())
    }
}

/// The policy could not produce a path config (a Lua error or a bad value).
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct EgressPolicyError(pub String);

/// What delivery asks of policy: the current sources and pools, and the
/// settings for a path. The Lua crate implements it; tests use
/// [`FixedEgressPolicy`].
#[async_trait]
pub trait EgressPolicy: Send + Sync + 'static {
    /// The registry in force now; a reload makes this return a new one.
    fn registry(&self) -> Arc<Registry>;
    /// A pool the registry does not hold, defined by the policy when first
    /// used (KumoMTA's `get_egress_pool`); `None` when nothing defines it.
    async fn egress_pool(&self, _name: &str) -> Result<Option<Arc<EgressPool>>, EgressPolicyError> {
        Ok(None)
    }
    /// A source the registry does not hold (`get_egress_source`).
    async fn egress_source(&self, _name: &str) -> Result<Option<Arc<EgressSource>>, EgressPolicyError> {
        Ok(None)
    }
    /// Deliver `messages` of a `custom_lua` queue through the policy: its
    /// `constructor` event builds a connection whose `send` (or, with
    /// `batch_size` > 1, `send_batch`) delivers. One outcome per message,
    /// in order; without a policy every message fails for a while.
    async fn custom_send(
        &self,
        constructor: &str,
        _batch_size: usize,
        _key: &petrel_queue::QueueKey,
        messages: Vec<petrel_message::Message>,
    ) -> Vec<CustomOutcome> {
        let text = format!("4.3.0 no policy answers the custom_lua constructor {constructor}");
        messages.iter().map(|_| CustomOutcome::Failed { code: 451, text: text.clone() }).collect()
    }
    /// `get_egress_path_config` for a message of `routing_domain` sent from `source` to `site`.
    async fn egress_path_config(
        &self,
        routing_domain: &str,
        source: &str,
        site: &str,
    ) -> Result<EgressPathConfig, EgressPolicyError>;
}

/// How a `custom_lua` delivery of one message ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CustomOutcome {
    /// `send` returned: the disposition it gave.
    Delivered(String),
    /// `send` raised `kumo.reject(code, text)` (4xx: retried; 5xx: given
    /// up) or failed (retried).
    Failed {
        /// The SMTP-style code.
        code: u16,
        /// The reply text, which may start with an enhanced code.
        text: String,
    },
}

/// One registry and fixed path settings: `by_source` for the sources it
/// names, `path` for every other.
pub struct FixedEgressPolicy {
    /// The sources and pools.
    pub registry: Arc<Registry>,
    /// The settings of every path not in `by_source`.
    pub path: EgressPathConfig,
    /// Settings for the paths of particular sources.
    pub by_source: std::collections::HashMap<String, EgressPathConfig>,
}

#[async_trait]
impl EgressPolicy for FixedEgressPolicy {
    fn registry(&self) -> Arc<Registry> {
        self.registry.clone()
    }
    async fn egress_path_config(&self, _: &str, source: &str, _: &str) -> Result<EgressPathConfig, EgressPolicyError> {
        Ok(self.by_source.get(source).unwrap_or(&self.path).clone())
    }
}
