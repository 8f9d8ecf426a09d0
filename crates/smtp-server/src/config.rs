//! Listener settings and the policy seam for receptions.

use async_trait::async_trait;
use ipnet::IpNet;
use petrel_message::{EnvelopeAddress, Message};
use petrel_queue::Intake;
use serde::Serialize;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

/// One `kumo.start_esmtp_listener{...}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenerConfig {
    /// The address to bind.
    pub listen: SocketAddr,
    /// Name in the banner, EHLO reply and Received header.
    pub hostname: String,
    /// Clients allowed to relay (send to any domain).
    pub relay_hosts: Vec<IpNet>,
    /// Largest message accepted, in bytes.
    pub max_message_size: usize,
    /// Recipients accepted per transaction.
    pub max_recipients_per_message: usize,
    /// Longest wait for a command line or a chunk of DATA; a client that
    /// stays silent longer gets `421 4.4.2` and is disconnected.
    pub client_timeout: Duration,
    /// Concurrent sessions; one more gets `421 4.3.2` at connect.
    pub max_connections: usize,
    /// Connections the kernel queues before the listener accepts them
    /// (`listen(2)` backlog, capped by `net.core.somaxconn`). Bursts of
    /// hundreds of one-message clients overflow a small one.
    pub listen_backlog: u32,
    /// Messages (DATA transactions) per session before `421 4.7.0`.
    pub max_messages_per_connection: usize,
    /// PEM files for STARTTLS; without them a self-signed certificate is
    /// generated for `hostname`.
    pub tls_certificate: Option<std::path::PathBuf>,
    /// The private key for `tls_certificate`.
    pub tls_private_key: Option<std::path::PathBuf>,
    /// A hash of those files' contents, so a reload sees a certificate
    /// renewed in place and takes it for new sessions.
    pub tls_fingerprint: u64,
    /// Concurrent sessions from one address outside `relay_hosts`; one
    /// more gets `421 4.7.0` at connect. Relay hosts (injectors) are
    /// bounded by `max_connections` only.
    pub max_connections_per_ip: usize,
    /// `Received:` fields a message may already carry; more is a mail loop
    /// (`554 5.4.6`).
    pub max_received_headers: usize,
    /// Header fields a message may have (`552 5.3.4` beyond).
    pub max_header_fields: usize,
    /// Replies of 5xx in one session before `421 4.7.0` and close
    /// (Postfix's `smtpd_hard_error_limit`).
    pub max_errors: usize,
    /// NOOP, RSET, VRFY, HELP and repeated EHLO/HELO in one session before
    /// `421 4.7.0` (Postfix's `smtpd_junk_command_limit`).
    pub max_junk_commands: usize,
    /// Longest a session may last, however busy.
    pub max_session_duration: Duration,
    /// Slowest DATA accepted, in octets per second: DATA must arrive within
    /// `client_timeout` plus its size at this rate (Postfix's
    /// `smtpd_min_data_rate`).
    pub min_data_rate: usize,
    /// Failed AUTH attempts in one session before `421 4.7.0`; each failure
    /// waits longer before its `535`.
    pub max_auth_failures: usize,
}

impl ListenerConfig {
    /// A listener on `listen` with KumoMTA's defaults.
    pub fn new(listen: SocketAddr, hostname: impl Into<String>) -> Self {
        Self {
            listen,
            hostname: hostname.into(),
            relay_hosts: ["127.0.0.1", "::1"].iter().map(|h| parse_cidr(h).expect("valid")).collect(),
            max_message_size: 20 * 1024 * 1024,
            max_recipients_per_message: 1024,
            client_timeout: Duration::from_secs(300),
            max_connections: 1024,
            listen_backlog: 4096,
            max_messages_per_connection: 10_000,
            tls_certificate: None,
            tls_private_key: None,
            tls_fingerprint: 0,
            max_connections_per_ip: 50,
            max_received_headers: 100,
            max_header_fields: 1000,
            max_errors: 20,
            max_junk_commands: 100,
            max_session_duration: Duration::from_secs(3600),
            min_data_rate: 500,
            max_auth_failures: 3,
        }
    }

    /// Whether `ip` is in `relay_hosts`.
    pub fn may_relay(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
            v4 => v4,
        };
        self.relay_hosts.iter().any(|net| net.contains(&ip))
    }
}

/// `10.0.0.0/8`, or a bare address meaning just that host.
pub fn parse_cidr(text: &str) -> Result<IpNet, String> {
    let text = text.trim();
    text.parse::<IpNet>()
        .or_else(|_| text.parse::<IpAddr>().map(IpNet::from))
        .map_err(|_| format!("invalid address or CIDR block {text:?}"))
}

/// What the policy knows about the client, passed to reception events.
#[derive(Debug, Clone, Serialize)]
pub struct ConnMeta {
    /// The client's `ip:port`.
    pub received_from: String,
    /// The listener's `ip:port`.
    pub received_via: String,
    /// The listener's host name.
    pub hostname: String,
    /// The name the client gave in EHLO or HELO.
    pub ehlo_domain: Option<String>,
    /// The identity that authenticated with AUTH, if any.
    pub authn_id: Option<String>,
    /// The session is encrypted (STARTTLS).
    pub tls: bool,
}

/// `kumo.make_listener_domain{...}`: mail for a domain that clients outside
/// `relay_hosts` may send.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListenerDomain {
    /// Anyone may send to this domain (an inbound domain).
    pub relay_to: bool,
    /// These clients may relay mail *from* this domain (it is the sender's
    /// domain) to anywhere.
    pub relay_from: Vec<IpNet>,
    /// What to do with delivery status reports (out-of-band bounces)
    /// received for this domain.
    pub log_oob: ReportHandling,
    /// What to do with feedback (ARF) reports received for this domain.
    pub log_arf: ReportHandling,
}

/// `log_oob` / `log_arf`: KumoMTA's values.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ReportHandling {
    /// Do not look at reports (`false`).
    #[default]
    Ignore,
    /// Log the report's record, then relay the message (`true`).
    LogThenRelay,
    /// Log the report's record and drop the message.
    LogThenDrop,
}

pub use petrel_queue::PolicyError;

/// Decisions the listener asks of policy, one per SMTP phase. The Lua crate
/// implements them with the `smtp_server_*` events; each defaults to
/// accepting. Nothing here is cached across sessions or clients.
#[async_trait]
pub trait SessionPolicy: Send + Sync + 'static {
    /// `smtp_server_ehlo`: whether to accept the client's EHLO/HELO name.
    async fn ehlo(&self, _domain: &str, _conn: &ConnMeta) -> Result<(), PolicyError> {
        Ok(())
    }
    /// `smtp_server_mail_from`: whether to accept the sender.
    async fn mail_from(&self, _sender: &EnvelopeAddress, _conn: &ConnMeta) -> Result<(), PolicyError> {
        Ok(())
    }
    /// `smtp_server_rcpt_to`: whether to accept a recipient.
    async fn rcpt_to(&self, _recipient: &EnvelopeAddress, _conn: &ConnMeta) -> Result<(), PolicyError> {
        Ok(())
    }
    /// `get_listener_domain`: whether a client outside `relay_hosts` may
    /// send to `domain`.
    async fn listener_domain(
        &self,
        _domain: &str,
        _listener: &str,
        _conn: &ConnMeta,
    ) -> Result<Option<ListenerDomain>, PolicyError> {
        Ok(None)
    }
    /// `smtp_server_auth_plain`: true to accept the credentials.
    async fn auth_plain(
        &self,
        _authz: &str,
        _authc: &str,
        _password: &str,
        _conn: &ConnMeta,
    ) -> Result<bool, PolicyError> {
        Ok(false)
    }
    /// May edit the message (meta, headers) or refuse it.
    async fn message_received(&self, message: &mut Message, conn: &ConnMeta) -> Result<(), PolicyError>;
}

/// Accept everything unchanged.
pub struct AcceptAll;

#[async_trait]
impl SessionPolicy for AcceptAll {
    async fn message_received(&self, _: &mut Message, _: &ConnMeta) -> Result<(), PolicyError> {
        Ok(())
    }
}

/// What sessions need from the rest of the daemon.
pub struct ServerHandles {
    /// Where accepted mail goes (spool, Reception log, queues).
    pub intake: Intake,
    /// Decisions the policy makes during a session.
    pub policy: Arc<dyn SessionPolicy>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relay_hosts_match_addresses_and_blocks() {
        let mut cfg = ListenerConfig::new("127.0.0.1:0".parse().unwrap(), "mx.test");
        assert!(cfg.may_relay("127.0.0.1".parse().unwrap()));
        assert!(cfg.may_relay("::ffff:127.0.0.1".parse().unwrap()));
        assert!(!cfg.may_relay("127.0.0.9".parse().unwrap()));
        cfg.relay_hosts = vec![parse_cidr("10.0.0.0/8").unwrap()];
        assert!(cfg.may_relay("10.1.2.3".parse().unwrap()));
        assert!(parse_cidr("10.0.0.300").is_err());
    }
}

/// What may happen to mail for one recipient.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Relay {
    /// It may be relayed.
    pub relay: bool,
    /// Delivery status reports to it are logged (and perhaps dropped).
    pub oob: ReportHandling,
    /// Feedback reports to it are logged (and perhaps dropped).
    pub arf: ReportHandling,
}

impl Relay {
    /// Its domain takes reports, so it is accepted even if not relayed.
    pub fn takes_reports(&self) -> bool {
        self.oob != ReportHandling::Ignore || self.arf != ReportHandling::Ignore
    }
}
