//! The routing decision, in one place for delivery and for `petrel route`:
//! which pool (and why), which hosts with which ports, which EHLO name. The
//! dispatcher routes real messages with these functions and
//! `Dispatcher::explain` (`explain.rs`) walks a would-be message through the
//! same ones, so the two cannot disagree.

use crate::context::Destination;
use crate::path::{EgressPathConfig, EgressPolicy, EgressPolicyError};
use petrel_egress::{DEFAULT_NAME, EgressPool, EgressSource, Registry};
use petrel_queue::QueueConfig;
use std::net::SocketAddr;
use std::sync::Arc;

/// Why a message uses the pool it uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PoolChoice {
    /// Its `egress_pool` meta.
    Meta,
    /// The `egress_pool` of its queue's `get_queue_config`.
    QueueConfig,
    /// Neither names one.
    Default,
    /// The pool it names is not defined (any more): the default pool.
    Undefined(String),
}

/// The pool for a message with `meta_pool` whose queue config says
/// `config`: the registry's, else the policy's `get_egress_pool`.
pub async fn choose_pool(
    policy: &dyn EgressPolicy,
    registry: &Registry,
    meta_pool: Option<&str>,
    config: &QueueConfig,
) -> Result<(Arc<EgressPool>, PoolChoice), EgressPolicyError> {
    let (wanted, choice) = match (meta_pool, config.egress_pool.as_deref()) {
        (Some(p), _) => (p, PoolChoice::Meta),
        (None, Some(p)) => (p, PoolChoice::QueueConfig),
        (None, None) => (DEFAULT_NAME, PoolChoice::Default),
    };
    // The init registry answers first; only the built-in `default` yields
    // to a pool the policy defines late (a sources.toml `[pool."default"]`).
    let builtin = wanted == DEFAULT_NAME && registry.default_pool_is_builtin();
    if let Some(pool) = registry.pool(wanted).filter(|_| !builtin) {
        return Ok((pool.clone(), choice));
    }
    match policy.egress_pool(wanted).await? {
        Some(pool) => Ok((pool, choice)),
        None if builtin => Ok((registry.pool(DEFAULT_NAME).expect("always defined").clone(), choice)),
        None => {
            let default = registry.pool(DEFAULT_NAME).expect("the registry always has a default pool").clone();
            Ok((default, PoolChoice::Undefined(wanted.to_string())))
        }
    }
}

/// The sources of `pool`, in its order: each from the registry, else the
/// policy's `get_egress_source`. A pool naming a source nothing defines is
/// an error, so its mail waits with the reason rather than leaving from
/// some other address.
pub async fn pool_sources(
    policy: &dyn EgressPolicy,
    registry: &Registry,
    pool: &EgressPool,
) -> Result<Vec<Arc<EgressSource>>, EgressPolicyError> {
    let mut sources = Vec::with_capacity(pool.entries.len());
    for entry in &pool.entries {
        let builtin = entry.source == DEFAULT_NAME && registry.default_source_is_builtin();
        let source = match registry.source(&entry.source).filter(|_| !builtin) {
            Some(source) => source.clone(),
            None => match policy.egress_source(&entry.source).await? {
                Some(source) => source,
                // The built-in default when nothing replaces it.
                None if builtin => registry.source(DEFAULT_NAME).expect("always defined").clone(),
                None => {
                    return Err(EgressPolicyError(format!(
                        "pool {:?} names unknown source {:?}",
                        pool.name, entry.source
                    )));
                }
            },
        };
        sources.push(source);
    }
    Ok(sources)
}

/// The EHLO name a source uses toward a site.
pub fn ehlo_name(path: &EgressPathConfig, source: &EgressSource, default: &str) -> String {
    path.ehlo_domain.clone().or_else(|| source.ehlo_domain.clone()).unwrap_or_else(|| default.to_string())
}

/// One host of a destination as a connection reaches it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Endpoint {
    /// The host's name (for TLS and logs).
    pub name: String,
    /// What to resolve and connect to: the name, or its pinned address.
    pub connect: String,
    pub port: u16,
}

/// Each host of a destination with the port a connection to it uses: the
/// host's own (`host:2526`, or a pinned `addr`'s), else the path's
/// `smtp_port`, and a source's `remote_port` over both.
pub(crate) fn endpoints(destination: &Destination, path: &EgressPathConfig, source: &EgressSource) -> Vec<Endpoint> {
    destination
        .plan
        .attempt_order()
        .iter()
        .map(|host| {
            let pinned = destination.pinned.iter().find(|(name, _)| name == host).map(|(_, addr)| addr);
            let (name, name_port) = split_host_port(host, path.smtp_port);
            let (connect, port) = match pinned {
                Some(addr) => split_host_port(addr, name_port),
                None => (name.clone(), name_port),
            };
            Endpoint { name, connect, port: source.remote_port.unwrap_or(port) }
        })
        .collect()
}

/// Whether delivery skips `ip` of a destination: `prohibited_hosts` guards
/// hosts found through DNS, never a smart host the operator named.
pub(crate) fn is_prohibited(destination: &Destination, path: &EgressPathConfig, ip: &std::net::IpAddr) -> bool {
    !destination.explicit && path.prohibited_hosts.iter().any(|n| n.contains(ip))
}

/// `host`, `host:port`, `ip`, `ip:port` or `[ipv6]:port`.
pub(crate) fn split_host_port(entry: &str, default_port: u16) -> (String, u16) {
    if let Ok(addr) = entry.parse::<SocketAddr>() {
        return (addr.ip().to_string(), addr.port());
    }
    if let Some(inner) = entry.strip_prefix('[').and_then(|e| e.strip_suffix(']')) {
        return (inner.to_string(), default_port);
    }
    match entry.rsplit_once(':') {
        Some((host, port)) if !host.contains(':') => match port.parse() {
            Ok(port) => (host.to_string(), port),
            Err(_) => (entry.to_string(), default_port),
        },
        _ => (entry.to_string(), default_port),
    }
}

/// One host of an explained route.
#[derive(Debug, Clone)]
pub struct HostRoute {
    /// The host name (or address) as the destination gives it.
    pub name: String,
    /// The port a connection to it uses.
    pub port: u16,
    /// Its addresses; `prohibited` ones (`prohibited_hosts`, for hosts found
    /// through DNS) are skipped by delivery.
    pub addresses: Vec<(std::net::IpAddr, bool)>,
    /// Why its addresses could not be found, if they could not.
    pub error: Option<String>,
}

/// Everything delivery would decide for a message, without sending it.
#[derive(Debug, Clone)]
pub struct Route {
    /// The pool the message is sent through.
    pub pool: Arc<EgressPool>,
    /// Why that pool.
    pub pool_choice: PoolChoice,
    /// `None` when every source of the pool is skipped now.
    pub source: Option<Arc<EgressSource>>,
    /// Sources passed over, with why (suspended, unusable).
    pub skipped: Vec<(String, &'static str)>,
    /// `Err` with what DNS answered when the destination cannot be found.
    pub destination: Result<RouteDestination, String>,
}

/// Where a routed message would go.
#[derive(Debug, Clone)]
pub struct RouteDestination {
    /// The site: the destination's host set, shared by domains with the same MX hosts.
    pub site: String,
    /// From the policy (`mx_list`), or found through DNS.
    pub explicit: bool,
    /// The domain has no MX record and its own address is used.
    pub implicit_mx: bool,
    /// The hosts in the order delivery tries them.
    pub hosts: Vec<HostRoute>,
    /// The path config of the chosen source toward the site.
    pub path: Option<EgressPathConfig>,
    /// Why `get_egress_path_config` failed, if it did.
    pub path_error: Option<String>,
    /// The EHLO name the connection would announce.
    pub ehlo: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::split_host_port;

    #[test]
    fn host_and_port_forms() {
        assert_eq!(split_host_port("mx.example", 25), ("mx.example".into(), 25));
        assert_eq!(split_host_port("mx.example:2525", 25), ("mx.example".into(), 2525));
        assert_eq!(split_host_port("127.0.0.1:26", 25), ("127.0.0.1".into(), 26));
        assert_eq!(split_host_port("[::1]:27", 25), ("::1".into(), 27));
        assert_eq!(split_host_port("[::1]", 25), ("::1".into(), 25));
        assert_eq!(split_host_port("::1", 25), ("::1".into(), 25));
    }
}
