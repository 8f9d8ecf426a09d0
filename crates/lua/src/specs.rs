//! The tables policies pass to `kumo.*` functions, as typed Rust values.
//!
//! Every spec rejects unknown keys: a misspelt option is an error at load
//! time with its line, not a setting silently ignored in production.

use petrel_delivery::{EgressPathConfig, ThrottleSpec};
use petrel_queue::{DeliveryProtocol, QueueConfig};
use petrel_smtp_client::TlsMode;
use petrel_smtp_server::{ListenerConfig, parse_cidr};
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// Seconds as a number, or text such as `"20m"`, `"1 hour"`, `"7 days"`.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum DurationSpec {
    Seconds(f64),
    Text(String),
}

impl DurationSpec {
    pub fn to_duration(&self, field: &str) -> Result<Duration, String> {
        match self {
            DurationSpec::Seconds(s) if s.is_finite() && *s >= 0.0 => Ok(Duration::from_secs_f64(*s)),
            DurationSpec::Seconds(s) => Err(format!("{field}: {s} is not a valid number of seconds")),
            DurationSpec::Text(t) => {
                humantime::parse_duration(t.trim()).map_err(|e| format!("{field}: cannot parse duration {t:?}: {e}"))
            }
        }
    }
}

/// A list of addresses or CIDR blocks, errors naming `field`.
fn cidrs(list: &[String], field: &str) -> Result<Vec<ipnet::IpNet>, String> {
    list.iter().map(|h| parse_cidr(h).map_err(|e| format!("{field}: {e}"))).collect()
}

fn duration(spec: &Option<DurationSpec>, field: &str, default: Duration) -> Result<Duration, String> {
    spec.as_ref().map_or(Ok(default), |d| d.to_duration(field))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceSpec {
    pub name: String,
    pub source_address: Option<String>,
    pub ehlo_domain: Option<String>,
    pub remote_port: Option<u16>,
    /// Petrel's: an IP warm-up plan of daily caps.
    pub warmup: Option<WarmupSpec>,
}

/// `warmup = { start = 'YYYY-MM-DD', daily = { 50, 100, ... }, per_site = false }`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WarmupSpec {
    pub start: String,
    pub daily: Vec<u64>,
    pub per_site: Option<bool>,
}

impl WarmupSpec {
    pub fn plan(self) -> Result<petrel_egress::WarmupPlan, String> {
        petrel_egress::WarmupPlan::parse(&self.start, self.daily, self.per_site.unwrap_or(false))
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PoolEntrySpec {
    pub name: String,
    pub weight: Option<i64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PoolSpec {
    pub name: String,
    #[serde(default)]
    pub entries: Vec<PoolEntrySpec>,
    /// Petrel's: `'wait'` (default) or `'spill'` when a source is busy.
    pub overflow: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EsmtpListenerSpec {
    pub listen: Option<String>,
    pub hostname: Option<String>,
    pub relay_hosts: Option<Vec<String>>,
    pub max_message_size: Option<usize>,
    pub max_recipients_per_message: Option<usize>,
    pub client_timeout: Option<DurationSpec>,
    pub max_connections: Option<usize>,
    pub listen_backlog: Option<u32>,
    pub max_messages_per_connection: Option<usize>,
    pub tls_certificate: Option<PathBuf>,
    pub tls_private_key: Option<PathBuf>,
    pub max_connections_per_ip: Option<usize>,
    pub max_received_headers: Option<usize>,
    pub max_header_fields: Option<usize>,
    pub max_errors: Option<usize>,
    pub max_junk_commands: Option<usize>,
    pub max_session_duration: Option<DurationSpec>,
    pub min_data_rate: Option<usize>,
    pub max_auth_failures: Option<usize>,
}

impl EsmtpListenerSpec {
    pub fn into_config(self, default_hostname: &str) -> Result<ListenerConfig, String> {
        let listen = self.listen.as_deref().unwrap_or("127.0.0.1:2025");
        let listen: SocketAddr = listen.parse().map_err(|_| format!("listen: {listen:?} is not an address:port"))?;
        let mut config = ListenerConfig::new(listen, self.hostname.unwrap_or_else(|| default_hostname.to_string()));
        if let Some(hosts) = self.relay_hosts {
            config.relay_hosts = cidrs(&hosts, "relay_hosts")?;
        }
        if let Some(size) = self.max_message_size {
            config.max_message_size = size;
        }
        if let Some(n) = self.max_recipients_per_message {
            config.max_recipients_per_message = n;
        }
        config.client_timeout = duration(&self.client_timeout, "client_timeout", config.client_timeout)?;
        if let Some(n) = self.max_connections {
            config.max_connections = n.max(1);
        }
        if let Some(n) = self.listen_backlog {
            config.listen_backlog = n.clamp(1, i32::MAX as u32);
        }
        if let Some(n) = self.max_messages_per_connection {
            config.max_messages_per_connection = n.max(1);
        }
        if self.tls_certificate.is_some() != self.tls_private_key.is_some() {
            return Err("tls_certificate and tls_private_key go together".into());
        }
        config.tls_fingerprint = tls_fingerprint(&[&self.tls_certificate, &self.tls_private_key])?;
        config.tls_certificate = self.tls_certificate;
        config.tls_private_key = self.tls_private_key;
        let limits = [
            (self.max_connections_per_ip, &mut config.max_connections_per_ip),
            (self.max_received_headers, &mut config.max_received_headers),
            (self.max_header_fields, &mut config.max_header_fields),
            (self.max_errors, &mut config.max_errors),
            (self.max_junk_commands, &mut config.max_junk_commands),
            (self.min_data_rate, &mut config.min_data_rate),
            (self.max_auth_failures, &mut config.max_auth_failures),
        ];
        for (value, field) in limits {
            if let Some(n) = value {
                *field = n.max(1);
            }
        }
        config.max_session_duration =
            duration(&self.max_session_duration, "max_session_duration", config.max_session_duration)?;
        // Fail at load, with the line, rather than when the listener starts.
        petrel_smtp_server::Prepared::new(config.clone())?;
        Ok(config)
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SpoolSpec {
    pub name: String,
    pub path: PathBuf,
    pub kind: Option<String>,
    pub min_free_space: Option<CountOrPercent>,
    pub min_free_inodes: Option<CountOrPercent>,
}

/// `"10%"` or a number, as KumoMTA's `min_free_space` takes.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum CountOrPercent {
    Count(u64),
    Text(String),
}

impl CountOrPercent {
    fn threshold(&self, field: &str) -> Result<petrel_spool::Threshold, String> {
        match self {
            CountOrPercent::Count(n) => Ok(petrel_spool::Threshold::Absolute(*n)),
            CountOrPercent::Text(t) => petrel_spool::Threshold::parse(t).map_err(|e| format!("{field}: {e}")),
        }
    }
}

impl SpoolSpec {
    pub fn reserve(&self) -> Result<petrel_spool::StorageReserve, String> {
        let mut reserve = petrel_spool::StorageReserve::default();
        if let Some(v) = &self.min_free_space {
            reserve.min_free_space = v.threshold("min_free_space")?;
        }
        if let Some(v) = &self.min_free_inodes {
            reserve.min_free_inodes = v.threshold("min_free_inodes")?;
        }
        Ok(reserve)
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResolverSpec {
    pub name_servers: Vec<String>,
}

impl ResolverSpec {
    pub fn servers(&self) -> Result<Vec<SocketAddr>, String> {
        if self.name_servers.is_empty() {
            return Err("name_servers: the list is empty".into());
        }
        self.name_servers
            .iter()
            .map(|s| {
                s.parse::<SocketAddr>()
                    .or_else(|_| s.parse::<std::net::IpAddr>().map(|ip| SocketAddr::new(ip, 53)))
                    .map_err(|_| format!("name_servers: {s:?} is not an address or address:port"))
            })
            .collect()
    }
}

/// `kumo.configure_log_hook{...}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogHookSpec {
    pub name: String,
    pub headers: Option<Vec<String>>,
    pub meta: Option<Vec<String>>,
}

/// `kumo.configure_bounce_classifier{...}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BounceClassifierSpec {
    pub files: Vec<String>,
    pub cache_size: Option<usize>,
    pub uncategorized_cache_size: Option<usize>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LocalLogsSpec {
    pub log_dir: PathBuf,
    pub max_file_size: Option<u64>,
    pub max_segment_duration: Option<DurationSpec>,
    pub compression_level: Option<i32>,
    pub meta: Option<Vec<String>>,
    pub headers: Option<Vec<String>>,
}

impl LocalLogsSpec {
    pub fn into_config(self) -> Result<petrel_telemetry::LogConfig, String> {
        let mut config = petrel_telemetry::LogConfig::new(self.log_dir);
        if let Some(size) = self.max_file_size {
            if size == 0 {
                return Err("max_file_size: must be greater than zero".into());
            }
            config.max_file_size = size;
        }
        config.max_segment_duration =
            self.max_segment_duration.as_ref().map(|d| d.to_duration("max_segment_duration")).transpose()?;
        if let Some(level) = self.compression_level {
            if !(0..=22).contains(&level) {
                return Err(format!("compression_level: {level} is outside 0..=22 (0 = uncompressed)"));
            }
            config.compression_level = level;
        }
        config.meta = self.meta;
        config.headers = self.headers.unwrap_or_default();
        Ok(config)
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SmtpProtocolSpec {
    mx_list: Option<Vec<MxListEntrySpec>>,
}

/// `'host[:port]'` or `{ name = 'host', addr = 'ip[:port]' }`.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum MxListEntrySpec {
    Name(String),
    Pinned { name: String, addr: String },
}

impl From<MxListEntrySpec> for petrel_queue::MxListEntry {
    fn from(spec: MxListEntrySpec) -> Self {
        match spec {
            MxListEntrySpec::Name(name) => Self { name, addr: None },
            MxListEntrySpec::Pinned { name, addr } => Self { name, addr: Some(addr) },
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ProtocolSpec {
    smtp: Option<SmtpProtocolSpec>,
    custom_lua: Option<CustomLuaSpec>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CustomLuaSpec {
    constructor: String,
    batch_size: Option<usize>,
    batch_timeout: Option<DurationSpec>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QueueConfigSpec {
    egress_pool: Option<String>,
    retry_interval: Option<DurationSpec>,
    max_retry_interval: Option<DurationSpec>,
    max_age: Option<DurationSpec>,
    protocol: Option<ProtocolSpec>,
    generate_bounces: Option<bool>,
    generate_delay_dsn: Option<bool>,
    delay_dsn_retry_interval: Option<DurationSpec>,
}

impl QueueConfigSpec {
    pub fn into_config(self) -> Result<QueueConfig, String> {
        let defaults = QueueConfig::default();
        let (smtp, custom) = match self.protocol {
            Some(ProtocolSpec { smtp: Some(_), custom_lua: Some(_) }) => {
                return Err("protocol: give smtp or custom_lua, not both".into());
            }
            Some(p) => (p.smtp, p.custom_lua),
            None => (None, None),
        };
        let mx_list: Option<Vec<petrel_queue::MxListEntry>> =
            smtp.and_then(|s| s.mx_list).map(|l| l.into_iter().map(Into::into).collect());
        if mx_list.as_ref().is_some_and(|l| l.is_empty()) {
            return Err("protocol.smtp.mx_list: the list is empty".into());
        }
        let retry_interval = duration(&self.retry_interval, "retry_interval", defaults.retry_interval)?;
        if retry_interval.is_zero() {
            return Err("retry_interval: must be greater than zero".into());
        }
        Ok(QueueConfig {
            egress_pool: self.egress_pool,
            retry_interval,
            max_retry_interval: self
                .max_retry_interval
                .as_ref()
                .map(|d| d.to_duration("max_retry_interval"))
                .transpose()?,
            max_age: duration(&self.max_age, "max_age", defaults.max_age)?,
            protocol: match custom {
                Some(c) if c.batch_size == Some(0) => {
                    return Err("protocol.custom_lua.batch_size: must be at least 1".into());
                }
                Some(c) => DeliveryProtocol::CustomLua {
                    batch_timeout: c
                        .batch_timeout
                        .as_ref()
                        .map(|d| d.to_duration("protocol.custom_lua.batch_timeout"))
                        .transpose()?,
                    constructor: c.constructor,
                    batch_size: c.batch_size.unwrap_or(1),
                },
                None => DeliveryProtocol::Smtp { mx_list },
            },
            generate_bounces: self.generate_bounces.unwrap_or(defaults.generate_bounces),
            generate_delay_dsn: self.generate_delay_dsn.unwrap_or(defaults.generate_delay_dsn),
            delay_dsn_retry_interval: match duration(
                &self.delay_dsn_retry_interval,
                "delay_dsn_retry_interval",
                defaults.delay_dsn_retry_interval,
            )? {
                d if d.is_zero() => return Err("delay_dsn_retry_interval: must be greater than zero".into()),
                d => d,
            },
        })
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EgressPathSpec {
    connection_limit: Option<usize>,
    max_ready: Option<usize>,
    max_deliveries_per_connection: Option<usize>,
    max_recipients_per_batch: Option<usize>,
    smtp_port: Option<u16>,
    ehlo_domain: Option<String>,
    idle_timeout: Option<DurationSpec>,
    connect_timeout: Option<DurationSpec>,
    banner_timeout: Option<DurationSpec>,
    ehlo_timeout: Option<DurationSpec>,
    mail_from_timeout: Option<DurationSpec>,
    rcpt_to_timeout: Option<DurationSpec>,
    data_timeout: Option<DurationSpec>,
    data_dot_timeout: Option<DurationSpec>,
    max_message_rate: Option<String>,
    max_connection_rate: Option<String>,
    enable_tls: Option<String>,
    prohibited_hosts: Option<Vec<String>>,
    use_lmtp: Option<bool>,
}

fn rate(text: &Option<String>, field: &str) -> Result<Option<ThrottleSpec>, String> {
    text.as_deref().map(|t| ThrottleSpec::parse(t).map_err(|e| format!("{field}: {e}"))).transpose()
}

impl EgressPathSpec {
    pub fn into_config(self) -> Result<EgressPathConfig, String> {
        let d = EgressPathConfig::default();
        let t = d.timeouts;
        let limit = self.connection_limit.unwrap_or(d.connection_limit);
        if limit == 0 {
            return Err("connection_limit: must be at least 1".into());
        }
        let enable_tls = match self.enable_tls.as_deref() {
            None => d.enable_tls,
            Some(mode) => TlsMode::parse(mode).ok_or_else(|| {
                format!("enable_tls: {mode:?} is not one of Disabled, Opportunistic, OpportunisticInsecure, Required, RequiredInsecure")
            })?,
        };
        let prohibited_hosts = match &self.prohibited_hosts {
            None => d.prohibited_hosts,
            Some(list) => cidrs(list, "prohibited_hosts")?,
        };
        Ok(EgressPathConfig {
            max_message_rate: rate(&self.max_message_rate, "max_message_rate")?,
            max_connection_rate: rate(&self.max_connection_rate, "max_connection_rate")?,
            enable_tls,
            prohibited_hosts,
            use_lmtp: self.use_lmtp.unwrap_or(d.use_lmtp),
            max_recipients_per_batch: self.max_recipients_per_batch.unwrap_or(d.max_recipients_per_batch).max(1),
            connection_limit: limit,
            max_ready: self.max_ready.unwrap_or(d.max_ready).max(1),
            max_deliveries_per_connection: self
                .max_deliveries_per_connection
                .unwrap_or(d.max_deliveries_per_connection)
                .max(1),
            smtp_port: self.smtp_port.unwrap_or(d.smtp_port),
            ehlo_domain: self.ehlo_domain,
            idle_timeout: duration(&self.idle_timeout, "idle_timeout", d.idle_timeout)?,
            timeouts: petrel_smtp_client::Timeouts {
                connect: duration(&self.connect_timeout, "connect_timeout", t.connect)?,
                banner: duration(&self.banner_timeout, "banner_timeout", t.banner)?,
                ehlo: duration(&self.ehlo_timeout, "ehlo_timeout", t.ehlo)?,
                mail_from: duration(&self.mail_from_timeout, "mail_from_timeout", t.mail_from)?,
                rcpt_to: duration(&self.rcpt_to_timeout, "rcpt_to_timeout", t.rcpt_to)?,
                data: duration(&self.data_timeout, "data_timeout", t.data)?,
                data_dot: duration(&self.data_dot_timeout, "data_dot_timeout", t.data_dot)?,
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        let d = |s: &str| DurationSpec::Text(s.into()).to_duration("x").unwrap().as_secs();
        assert_eq!(d("20m"), 1200);
        assert_eq!(d("1 hour"), 3600);
        assert_eq!(d("7 days"), 604800);
        assert_eq!(DurationSpec::Seconds(90.0).to_duration("x").unwrap().as_secs(), 90);
        assert!(
            DurationSpec::Text("soon".into()).to_duration("retry_interval").unwrap_err().starts_with("retry_interval")
        );
        assert!(DurationSpec::Seconds(-1.0).to_duration("x").is_err());
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpListenerSpec {
    pub listen: Option<String>,
    pub trusted_hosts: Option<Vec<String>>,
    pub max_request_size: Option<usize>,
    pub use_tls: Option<bool>,
    pub tls_certificate: Option<PathBuf>,
    pub tls_private_key: Option<PathBuf>,
    pub max_connections: Option<usize>,
    pub header_read_timeout: Option<DurationSpec>,
    pub request_timeout: Option<DurationSpec>,
}

/// A hash of the files' contents (0 when there are none): a renewed
/// certificate at the same path changes the listener's settings.
pub fn tls_fingerprint(files: &[&Option<PathBuf>]) -> Result<u64, String> {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    let mut any = false;
    for path in files.iter().copied().flatten() {
        let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
        bytes.hash(&mut hasher);
        any = true;
    }
    Ok(if any { hasher.finish() } else { 0 })
}

impl HttpListenerSpec {
    pub fn into_config(self) -> Result<petrel_http_api::HttpListenerConfig, String> {
        let listen = self.listen.as_deref().unwrap_or("127.0.0.1:8000");
        let listen: SocketAddr = listen.parse().map_err(|_| format!("listen: {listen:?} is not an address:port"))?;
        let mut config = petrel_http_api::HttpListenerConfig::new(listen);
        if let Some(hosts) = self.trusted_hosts {
            config.trusted_hosts = cidrs(&hosts, "trusted_hosts")?;
        }
        if let Some(size) = self.max_request_size {
            config.max_request_size = size;
        }
        config.use_tls = self.use_tls.unwrap_or(false);
        if self.tls_certificate.is_some() != self.tls_private_key.is_some() {
            return Err("tls_certificate and tls_private_key go together".into());
        }
        config.tls_fingerprint = tls_fingerprint(&[&self.tls_certificate, &self.tls_private_key])?;
        config.tls_certificate = self.tls_certificate;
        config.tls_private_key = self.tls_private_key;
        if let Some(n) = self.max_connections {
            config.limits.max_connections = n.max(1);
        }
        let limits = &mut config.limits;
        limits.header_read_timeout =
            duration(&self.header_read_timeout, "header_read_timeout", limits.header_read_timeout)?;
        limits.request_timeout = duration(&self.request_timeout, "request_timeout", limits.request_timeout)?;
        Ok(config)
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListenerDomainSpec {
    pub relay_to: Option<bool>,
    pub relay_from: Option<Vec<String>>,
    /// Any authenticated session may relay in Petrel, so these identities
    /// always may; the list is checked for shape only.
    pub relay_from_authz: Option<Vec<String>>,
    /// `true`/`false` or `"Ignore"`, `"LogThenRelay"`, `"LogThenDrop"`.
    pub log_oob: Option<ReportHandlingSpec>,
    pub log_arf: Option<ReportHandlingSpec>,
}

/// KumoMTA's `log_oob` / `log_arf` values.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(untagged)]
pub enum ReportHandlingSpec {
    Flag(bool),
    Named(ReportHandlingName),
}

#[derive(Debug, Clone, Copy, Deserialize)]
pub enum ReportHandlingName {
    Ignore,
    LogThenRelay,
    LogThenDrop,
}

impl From<ReportHandlingSpec> for petrel_smtp_server::ReportHandling {
    fn from(spec: ReportHandlingSpec) -> Self {
        use petrel_smtp_server::ReportHandling as H;
        match spec {
            ReportHandlingSpec::Flag(false) | ReportHandlingSpec::Named(ReportHandlingName::Ignore) => H::Ignore,
            ReportHandlingSpec::Flag(true) | ReportHandlingSpec::Named(ReportHandlingName::LogThenRelay) => {
                H::LogThenRelay
            }
            ReportHandlingSpec::Named(ReportHandlingName::LogThenDrop) => H::LogThenDrop,
        }
    }
}

impl ListenerDomainSpec {
    pub fn into_domain(self) -> Result<petrel_smtp_server::ListenerDomain, String> {
        let _ = self.relay_from_authz;
        let relay_from = cidrs(&self.relay_from.unwrap_or_default(), "relay_from")?;
        Ok(petrel_smtp_server::ListenerDomain {
            relay_to: self.relay_to.unwrap_or(false),
            relay_from,
            log_oob: self.log_oob.map(Into::into).unwrap_or_default(),
            log_arf: self.log_arf.map(Into::into).unwrap_or_default(),
        })
    }
}
