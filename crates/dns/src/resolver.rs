//! The resolver seam and its hickory implementation.

use crate::plan::{MxHost, MxPlan};
use async_trait::async_trait;
use hickory_resolver::config::{NameServerConfig, ResolverConfig, ResolverOpts};
use hickory_resolver::net::NetError;
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::proto::rr::RData;
use hickory_resolver::{Resolver as Hickory, TokioResolver};
use std::net::{IpAddr, SocketAddr};

/// Why a lookup gave no usable answer; only `Transient` is worth retrying.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DnsError {
    /// The domain does not exist.
    #[error("domain {0} does not exist (NXDOMAIN)")]
    NxDomain(String),
    /// The domain publishes a null MX (RFC 7505).
    #[error("domain {0} accepts no mail (null MX)")]
    NullMx(String),
    /// Neither MX nor address records exist.
    #[error("{0} has no MX and no address records")]
    NoAddress(String),
    /// SERVFAIL, timeouts, unreachable servers: try again later.
    #[error("DNS lookup for {name} failed: {detail}")]
    Transient {
        /// The name that was looked up.
        name: String,
        /// What the resolver reported.
        detail: String,
    },
}

impl DnsError {
    /// Whether the answer is final (the message should bounce).
    pub fn is_permanent(&self) -> bool {
        !matches!(self, DnsError::Transient { .. })
    }
}

/// The lookups delivery needs; the hickory implementation is [`HickoryResolver`], tests may use a fixed one.
#[async_trait]
pub trait Resolver: Send + Sync + 'static {
    /// The MX plan for a domain.
    async fn resolve_mx(&self, domain: &str) -> Result<MxPlan, DnsError>;
    /// Addresses of a host name (an IP literal resolves to itself).
    async fn resolve_ip(&self, host: &str) -> Result<Vec<IpAddr>, DnsError>;
    /// The TXT records of a name, each record's strings joined.
    async fn resolve_txt(&self, name: &str) -> Result<Vec<String>, DnsError> {
        Err(DnsError::Transient { name: name.to_string(), detail: "this resolver does not look up TXT records".into() })
    }
    /// The PTR names of an address.
    async fn resolve_ptr(&self, ip: IpAddr) -> Result<Vec<String>, DnsError> {
        Err(DnsError::Transient { name: ip.to_string(), detail: "this resolver does not look up PTR records".into() })
    }
}

/// hickory-resolver with its TTL-honouring cache.
pub struct HickoryResolver {
    inner: TokioResolver,
}

impl HickoryResolver {
    /// The system's resolver configuration (`/etc/resolv.conf`).
    pub fn system() -> Result<Self, DnsError> {
        let builder = Hickory::builder_tokio()
            .map_err(|e| DnsError::Transient { name: "/etc/resolv.conf".into(), detail: e.to_string() })?;
        let inner =
            builder.build().map_err(|e| DnsError::Transient { name: "resolver".into(), detail: e.to_string() })?;
        Ok(Self { inner })
    }

    /// Query only these servers (`kumo.dns.configure_resolver`).
    pub fn with_name_servers(servers: &[SocketAddr]) -> Result<Self, DnsError> {
        let configs = servers
            .iter()
            .map(|s| {
                let mut config = NameServerConfig::udp_and_tcp(s.ip());
                for connection in &mut config.connections {
                    connection.port = s.port();
                }
                config
            })
            .collect();
        let mut options = ResolverOpts::default();
        options.timeout = std::time::Duration::from_secs(5);
        options.attempts = 2;
        let mut builder =
            Hickory::builder_with_config(ResolverConfig::from_name_servers(configs), TokioRuntimeProvider::default());
        *builder.options_mut() = options;
        let inner =
            builder.build().map_err(|e| DnsError::Transient { name: "resolver".into(), detail: e.to_string() })?;
        Ok(Self { inner })
    }
}

fn fqdn(name: &str) -> String {
    if name.ends_with('.') { name.to_string() } else { format!("{name}.") }
}

fn classify(name: &str, e: &NetError) -> DnsError {
    if e.is_nx_domain() {
        DnsError::NxDomain(name.to_string())
    } else {
        DnsError::Transient { name: name.to_string(), detail: e.to_string() }
    }
}

#[async_trait]
impl Resolver for HickoryResolver {
    async fn resolve_mx(&self, domain: &str) -> Result<MxPlan, DnsError> {
        let domain = domain.trim_end_matches('.').to_ascii_lowercase();
        match self.inner.mx_lookup(fqdn(&domain)).await {
            Ok(lookup) => {
                let mut hosts: Vec<MxHost> = lookup
                    .answers()
                    .iter()
                    .filter_map(|r| match &r.data {
                        RData::MX(mx) => Some(MxHost {
                            preference: mx.preference,
                            name: mx.exchange.to_utf8().trim_end_matches('.').to_ascii_lowercase(),
                        }),
                        _ => None,
                    })
                    .collect();
                // RFC 7505: a single MX of "." means the domain takes no mail.
                if hosts.len() == 1 && hosts[0].name.is_empty() {
                    return Err(DnsError::NullMx(domain));
                }
                hosts.retain(|h| !h.name.is_empty());
                if hosts.is_empty() {
                    return self.implicit(&domain).await;
                }
                hosts.sort_by_key(|h| h.preference);
                Ok(MxPlan { hosts, implicit: false })
            }
            Err(e) if e.is_no_records_found() && !e.is_nx_domain() => self.implicit(&domain).await,
            Err(e) => Err(classify(&domain, &e)),
        }
    }

    async fn resolve_ip(&self, host: &str) -> Result<Vec<IpAddr>, DnsError> {
        if let Ok(ip) = host.trim_start_matches('[').trim_end_matches(']').parse::<IpAddr>() {
            return Ok(vec![ip]);
        }
        match self.inner.lookup_ip(fqdn(host)).await {
            Ok(lookup) => Ok(lookup.iter().collect()),
            Err(e) if e.is_no_records_found() && !e.is_nx_domain() => Err(DnsError::NoAddress(host.to_string())),
            Err(e) => Err(classify(host, &e)),
        }
    }

    async fn resolve_txt(&self, name: &str) -> Result<Vec<String>, DnsError> {
        match self.inner.txt_lookup(fqdn(name)).await {
            Ok(lookup) => Ok(lookup
                .answers()
                .iter()
                .filter_map(|r| match &r.data {
                    RData::TXT(txt) => {
                        Some(txt.txt_data.iter().map(|part| String::from_utf8_lossy(part)).collect::<String>())
                    }
                    _ => None,
                })
                .collect()),
            Err(e) if e.is_no_records_found() && !e.is_nx_domain() => Ok(Vec::new()),
            Err(e) => Err(classify(name, &e)),
        }
    }

    async fn resolve_ptr(&self, ip: IpAddr) -> Result<Vec<String>, DnsError> {
        let name = hickory_resolver::proto::rr::Name::from(ip);
        match self.inner.reverse_lookup(name).await {
            Ok(lookup) => Ok(lookup
                .answers()
                .iter()
                .filter_map(|r| match &r.data {
                    RData::PTR(ptr) => Some(ptr.0.to_utf8()),
                    _ => None,
                })
                .collect()),
            Err(e) if e.is_no_records_found() && !e.is_nx_domain() => Ok(Vec::new()),
            Err(e) => Err(classify(&ip.to_string(), &e)),
        }
    }
}

impl HickoryResolver {
    /// RFC 5321 §5.1: no MX records, so the domain itself is the host, if it
    /// has an address.
    async fn implicit(&self, domain: &str) -> Result<MxPlan, DnsError> {
        let addresses = self.resolve_ip(domain).await?;
        if addresses.is_empty() {
            return Err(DnsError::NoAddress(domain.to_string()));
        }
        Ok(MxPlan { hosts: vec![MxHost { preference: 0, name: domain.to_string() }], implicit: true })
    }
}
