//! The session state machine over a connected socket.

use crate::connect::connect_from;
use crate::error::{ClientError, Phase};
use crate::stream::Stream;
use crate::tls::{TlsConfigs, TlsMode};
use petrel_smtp_proto::{Reply, parse_reply};
use rustls::pki_types::ServerName;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Per-phase time limits (the names of `kumo.make_egress_path`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// TCP connect.
    pub connect: Duration,
    /// The greeting.
    pub banner: Duration,
    /// The EHLO reply.
    pub ehlo: Duration,
    /// The MAIL FROM reply.
    pub mail_from: Duration,
    /// Each RCPT TO reply.
    pub rcpt_to: Duration,
    /// The DATA reply.
    pub data: Duration,
    /// The reply after the body.
    pub data_dot: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        let five_minutes = Duration::from_secs(300);
        Self {
            connect: Duration::from_secs(60),
            banner: Duration::from_secs(60),
            ehlo: five_minutes,
            mail_from: five_minutes,
            rcpt_to: five_minutes,
            data: five_minutes,
            data_dot: five_minutes,
        }
    }
}

impl Timeouts {
    fn for_phase(&self, phase: Phase) -> Duration {
        match phase {
            Phase::Connect => self.connect,
            Phase::Banner => self.banner,
            Phase::Ehlo | Phase::Rset | Phase::StartTls => self.ehlo,
            Phase::MailFrom => self.mail_from,
            Phase::RcptTo => self.rcpt_to,
            Phase::Data => self.data,
            Phase::DataDot => self.data_dot,
        }
    }
}

/// How to open one connection.
#[derive(Clone)]
pub struct ConnectOptions {
    /// The egress source's address; `None` lets the kernel choose.
    pub source: Option<IpAddr>,
    /// The host and port to connect to.
    pub target: SocketAddr,
    /// The host name the target was found under, for TLS verification.
    pub server_name: String,
    /// Name said in EHLO: the egress source's `ehlo_domain`.
    pub ehlo_domain: String,
    /// Per-step reply timeouts.
    pub timeouts: Timeouts,
    /// Whether and how to use STARTTLS.
    pub tls: TlsMode,
    /// Required unless `tls` is `Disabled`.
    pub tls_configs: Option<TlsConfigs>,
    /// Speak LMTP (LHLO) instead of SMTP.
    pub lmtp: bool,
    /// Where to copy the session's lines (a live trace), if anywhere.
    pub transcript: Option<Transcript>,
}

/// Receives each line of a session as `("send" | "recv", line)`; message
/// bodies arrive as a note of their size, never their content.
pub type Transcript = std::sync::Arc<dyn Fn(&'static str, &str) + Send + Sync>;

impl ConnectOptions {
    /// Plain SMTP to `target` with default timeouts and TLS disabled.
    pub fn new(source: Option<IpAddr>, target: SocketAddr, ehlo_domain: impl Into<String>) -> Self {
        Self {
            source,
            target,
            server_name: target.ip().to_string(),
            ehlo_domain: ehlo_domain.into(),
            timeouts: Timeouts::default(),
            tls: TlsMode::Disabled,
            tls_configs: None,
            lmtp: false,
            transcript: None,
        }
    }
}

/// What the server said it supports in its EHLO reply.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Capabilities {
    /// The server answered EHLO (not only HELO).
    pub esmtp: bool,
    /// PIPELINING is offered.
    pub pipelining: bool,
    /// The SIZE limit it announced, if any.
    pub size: Option<u64>,
    /// 8BITMIME is offered.
    pub eight_bit_mime: bool,
    /// SMTPUTF8 is offered.
    pub smtputf8: bool,
    /// STARTTLS is offered.
    pub starttls: bool,
}

impl Capabilities {
    fn from_ehlo(reply: &Reply) -> Self {
        let mut caps = Capabilities { esmtp: true, ..Default::default() };
        for line in reply.text.lines().skip(1) {
            let mut words = line.split_ascii_whitespace();
            let keyword = words.next().unwrap_or("").to_ascii_uppercase();
            match keyword.as_str() {
                "PIPELINING" => caps.pipelining = true,
                "8BITMIME" => caps.eight_bit_mime = true,
                "SMTPUTF8" => caps.smtputf8 = true,
                "STARTTLS" => caps.starttls = true,
                "SIZE" => caps.size = words.next().and_then(|s| s.parse().ok()).filter(|&n| n > 0),
                _ => {}
            }
        }
        caps
    }
}

/// A connected, greeted SMTP session ready for transactions.
pub struct SmtpClient {
    pub(crate) lmtp: bool,
    stream: Stream,
    tls_info: Option<(String, String)>,
    buf: Vec<u8>,
    pub(crate) caps: Capabilities,
    timeouts: Timeouts,
    peer: SocketAddr,
    peer_name: String,
    local: SocketAddr,
    transcript: Option<Transcript>,
}

impl SmtpClient {
    /// Connect from the source, read the banner, greet, and negotiate TLS
    /// as `opts.tls` asks.
    pub async fn connect(opts: &ConnectOptions) -> Result<Self, ClientError> {
        let stream = tokio::time::timeout(opts.timeouts.connect, connect_from(opts.source, opts.target))
            .await
            .map_err(|_| ClientError::Timeout { phase: Phase::Connect, secs: opts.timeouts.connect.as_secs() })??;
        let local = stream.local_addr().map_err(|e| ClientError::Io { phase: Phase::Connect, source: e })?;
        let mut client = SmtpClient {
            lmtp: opts.lmtp,
            stream: Stream::Plain(stream),
            tls_info: None,
            buf: Vec::with_capacity(4096),
            caps: Capabilities::default(),
            timeouts: opts.timeouts,
            peer: opts.target,
            peer_name: opts.server_name.clone(),
            local,
            transcript: opts.transcript.clone(),
        };
        client.expect(Phase::Banner, 220).await?;
        client.greet(&opts.ehlo_domain, opts.lmtp).await?;
        if opts.tls == TlsMode::Disabled {
            return Ok(client);
        }
        if !client.caps.starttls {
            if opts.tls.is_required() {
                return Err(ClientError::Tls { detail: format!("{} does not offer STARTTLS", opts.target) });
            }
            return Ok(client);
        }
        let mut client = client.starttls(opts).await?;
        client.greet(&opts.ehlo_domain, opts.lmtp).await?;
        Ok(client)
    }

    async fn starttls(mut self, opts: &ConnectOptions) -> Result<Self, ClientError> {
        self.write(Phase::StartTls, b"STARTTLS\r\n").await?;
        self.expect(Phase::StartTls, 220).await?;
        if !self.buf.is_empty() {
            // Anything sent before the handshake could be injected plaintext.
            return Err(ClientError::Protocol {
                phase: Phase::StartTls,
                detail: "data after the 220 to STARTTLS".into(),
            });
        }
        let configs = opts.tls_configs.clone().unwrap_or_default();
        let config = if opts.tls.verifies() { configs.verified } else { configs.unverified };
        let name = ServerName::try_from(opts.server_name.clone())
            .unwrap_or_else(|_| ServerName::IpAddress(opts.target.ip().into()));
        let Stream::Plain(tcp) = self.stream else {
            return Err(ClientError::Protocol { phase: Phase::StartTls, detail: "already using TLS".into() });
        };
        let handshake = tokio_rustls::TlsConnector::from(config).connect(name, tcp);
        let tls = tokio::time::timeout(self.timeouts.ehlo, handshake)
            .await
            .map_err(|_| ClientError::Tls { detail: "handshake timed out".into() })?
            .map_err(|e| ClientError::Tls { detail: format!("handshake with {} failed: {e}", opts.target) })?;
        let (_, session) = tls.get_ref();
        let version = session.protocol_version().map(|v| format!("{v:?}")).unwrap_or_default();
        let cipher = session.negotiated_cipher_suite().map(|c| format!("{:?}", c.suite())).unwrap_or_default();
        Ok(SmtpClient {
            stream: Stream::Tls(Box::new(tls)),
            tls_info: Some((version, cipher)),
            caps: Capabilities::default(),
            ..self
        })
    }

    async fn greet(&mut self, ehlo_domain: &str, lmtp: bool) -> Result<(), ClientError> {
        let verb = if lmtp { "LHLO" } else { "EHLO" };
        self.write(Phase::Ehlo, format!("{verb} {ehlo_domain}\r\n").as_bytes()).await?;
        let reply = self.read_reply(Phase::Ehlo).await?;
        if reply.code == 250 {
            self.caps = Capabilities::from_ehlo(&reply);
            return Ok(());
        }
        if lmtp || !reply.is_permanent() {
            return Err(ClientError::Rejected { phase: Phase::Ehlo, reply });
        }
        // An old server that does not know EHLO: fall back to HELO.
        self.write(Phase::Ehlo, format!("HELO {ehlo_domain}\r\n").as_bytes()).await?;
        self.expect(Phase::Ehlo, 250).await?;
        self.caps = Capabilities::default();
        Ok(())
    }

    /// TLS protocol version and cipher suite, when the session uses TLS.
    pub fn tls_info(&self) -> Option<&(String, String)> {
        self.tls_info.as_ref()
    }

    /// What the server announced (after STARTTLS, what it announced then).
    pub fn capabilities(&self) -> &Capabilities {
        &self.caps
    }
    /// The server's address.
    pub fn peer_addr(&self) -> SocketAddr {
        self.peer
    }
    /// The host name the server was reached by (its MX name).
    pub fn peer_name(&self) -> &str {
        &self.peer_name
    }
    /// The local address the connection left from.
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    pub(crate) fn mail_params(&self, size: usize, smtputf8: bool) -> String {
        let mut params = String::new();
        if self.caps.size.is_some() {
            params.push_str(&format!(" SIZE={size}"));
        }
        if self.caps.eight_bit_mime {
            params.push_str(" BODY=8BITMIME");
        }
        if smtputf8 {
            params.push_str(" SMTPUTF8");
        }
        params
    }

    /// Reset the transaction after a refusal so the connection can be reused.
    pub async fn rset(&mut self) -> Result<(), ClientError> {
        self.write(Phase::Rset, b"RSET\r\n").await?;
        self.expect(Phase::Rset, 250).await.map(|_| ())
    }

    /// Say goodbye politely; errors are irrelevant at this point.
    pub async fn quit(mut self) {
        self.note("send", "QUIT");
        if self.stream.write_all(b"QUIT\r\n").await.is_ok() {
            let _ = tokio::time::timeout(Duration::from_secs(5), self.read_reply(Phase::Rset)).await;
        }
    }

    fn note(&self, direction: &'static str, line: &str) {
        if let Some(transcript) = &self.transcript {
            transcript(direction, line);
        }
    }

    pub(crate) async fn write(&mut self, phase: Phase, bytes: &[u8]) -> Result<(), ClientError> {
        if let Some(transcript) = &self.transcript {
            if phase == Phase::DataDot && bytes != b".\r\n" {
                transcript("send", &format!("[message body: {} bytes]", bytes.len()));
            } else {
                for line in String::from_utf8_lossy(bytes).lines() {
                    transcript("send", line);
                }
            }
        }
        let limit = self.timeouts.for_phase(phase);
        match tokio::time::timeout(limit, self.stream.write_all(bytes)).await {
            Ok(result) => result.map_err(|e| ClientError::Io { phase, source: e }),
            Err(_) => Err(ClientError::Timeout { phase, secs: limit.as_secs() }),
        }
    }

    pub(crate) async fn expect(&mut self, phase: Phase, code: u16) -> Result<Reply, ClientError> {
        let reply = self.read_reply(phase).await?;
        check(phase, reply, code)
    }

    pub(crate) async fn read_reply(&mut self, phase: Phase) -> Result<Reply, ClientError> {
        let limit = self.timeouts.for_phase(phase);
        tokio::time::timeout(limit, self.read_reply_inner(phase))
            .await
            .map_err(|_| ClientError::Timeout { phase, secs: limit.as_secs() })?
    }

    async fn read_reply_inner(&mut self, phase: Phase) -> Result<Reply, ClientError> {
        loop {
            match parse_reply(&self.buf) {
                Ok(Some((reply, used))) => {
                    if let Some(transcript) = &self.transcript {
                        for line in String::from_utf8_lossy(&self.buf[..used]).lines() {
                            transcript("recv", line);
                        }
                    }
                    self.buf.drain(..used);
                    return Ok(reply);
                }
                Ok(None) => {}
                Err(e) => {
                    return Err(ClientError::Protocol { phase, detail: e.to_string() });
                }
            }
            let mut chunk = [0u8; 4096];
            let n = self.stream.read(&mut chunk).await.map_err(|e| ClientError::Io { phase, source: e })?;
            if n == 0 {
                let eof = std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "server closed the connection");
                return Err(ClientError::Io { phase, source: eof });
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }
}

pub(crate) fn check(phase: Phase, reply: Reply, code: u16) -> Result<Reply, ClientError> {
    if reply.code == code || (code == 250 && (200..300).contains(&reply.code)) {
        Ok(reply)
    } else {
        Err(ClientError::Rejected { phase, reply })
    }
}
