//! `petrel route`: a would-be message walked through the same routing
//! functions and source availability the dispatcher uses, without queueing
//! it, moving any round-robin state or opening a connection.

use crate::context::Destination;
use crate::dispatcher::Dispatcher;
use crate::route::{HostRoute, Route, RouteDestination, choose_pool, ehlo_name, endpoints, is_prohibited};
use petrel_egress::EgressSource;
use petrel_message::Message;
use petrel_queue::QueueConfig;

impl Dispatcher {
    /// Route a would-be message of `queue` as delivery would, without
    /// queueing it, moving any round-robin state or opening a connection.
    /// An error when the pool or its sources cannot be had (the policy's
    /// `get_egress_pool` / `get_egress_source` failed or named nothing).
    pub async fn explain(&self, queue: &str, message: &Message, config: &QueueConfig) -> Result<Route, String> {
        let policy = &*self.handles.policy;
        let registry = policy.registry();
        let (pool, pool_choice) = match choose_pool(policy, &registry, message.meta_str("egress_pool"), config).await {
            Ok(chosen) => chosen,
            Err(e) => return Err(e.to_string()),
        };
        let sources = crate::route::pool_sources(policy, &registry, &pool).await.map_err(|e| e.to_string())?;
        let destination = self.destination(&config.protocol, message).await;
        let site = destination.as_ref().ok().map(Destination::site);
        let mut skipped = Vec::new();
        for entry in &pool.entries {
            if let Err(why) = self.source_available(&entry.source, site.as_deref(), pool.overflow) {
                skipped.push((entry.source.clone(), why));
            }
        }
        let source = self
            .choose_source(queue, &pool, site.as_deref(), false)
            .and_then(|name| sources.iter().find(|s| s.name == name).cloned());
        let destination = match destination {
            Err(outcome) => Err(outcome.describe()),
            Ok(destination) => Ok(self.explain_destination(message, destination, source.as_deref()).await),
        };
        Ok(Route { pool, pool_choice, source, skipped, destination })
    }

    async fn explain_destination(
        &self,
        message: &Message,
        destination: Destination,
        source: Option<&EgressSource>,
    ) -> RouteDestination {
        let site = destination.site();
        let (path, path_error) = match source {
            Some(s) => match self.handles.policy.egress_path_config(message.routing_domain(), &s.name, &site).await {
                Ok(path) => (Some(path), None),
                Err(e) => (None, Some(e.to_string())),
            },
            None => (None, None),
        };
        let mut hosts = Vec::new();
        if let (Some(path), Some(source)) = (&path, source) {
            for crate::route::Endpoint { name, connect, port } in endpoints(&destination, path, source) {
                let (addresses, error) = match self.handles.connect.resolver.resolve_ip(&connect).await {
                    Ok(ips) => (ips.iter().map(|ip| (*ip, is_prohibited(&destination, path, ip))).collect(), None),
                    Err(e) => (Vec::new(), Some(e.to_string())),
                };
                hosts.push(HostRoute { name, port, addresses, error });
            }
        }
        let ehlo = match (&path, source) {
            (Some(path), Some(source)) => Some(ehlo_name(path, source, &self.handles.default_ehlo)),
            _ => None,
        };
        RouteDestination {
            site,
            explicit: destination.explicit,
            implicit_mx: destination.plan.implicit,
            hosts,
            path,
            path_error,
            ehlo,
        }
    }
}
