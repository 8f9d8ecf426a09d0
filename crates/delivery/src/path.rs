//! Egress path settings and the policy seam that supplies them.

use async_trait::async_trait;
use petrel_egress::Registry;
use petrel_smtp_client::Timeouts;
use std::sync::Arc;
use std::time::Duration;

/// Settings of one `source->site` path (`kumo.make_egress_path`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EgressPathConfig {
    /// Most concurrent connections from the source to the site.
    pub connection_limit: usize,
    pub max_deliveries_per_connection: usize,
    pub smtp_port: u16,
    /// Overrides the source's `ehlo_domain` for this path.
    pub ehlo_domain: Option<String>,
    /// How long an unused connection stays open.
    pub idle_timeout: Duration,
    pub timeouts: Timeouts,
}

impl Default for EgressPathConfig {
    fn default() -> Self {
        Self {
            connection_limit: 32,
            max_deliveries_per_connection: 1024,
            smtp_port: 25,
            ehlo_domain: None,
            idle_timeout: Duration::from_secs(60),
            timeouts: Timeouts::default(),
        }
    }
}

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
    async fn egress_path_config(
        &self,
        routing_domain: &str,
        source: &str,
        site: &str,
    ) -> Result<EgressPathConfig, EgressPolicyError>;
}

/// One registry and one path configuration for everything.
pub struct FixedEgressPolicy {
    pub registry: Arc<Registry>,
    pub path: EgressPathConfig,
}

#[async_trait]
impl EgressPolicy for FixedEgressPolicy {
    fn registry(&self) -> Arc<Registry> {
        self.registry.clone()
    }
    async fn egress_path_config(&self, _: &str, _: &str, _: &str) -> Result<EgressPathConfig, EgressPolicyError> {
        Ok(self.path.clone())
    }
}
