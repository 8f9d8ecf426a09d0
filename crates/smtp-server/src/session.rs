//! One client session: its state and the command loop.

use crate::config::ServerHandles;
use crate::config::{ConnMeta, ListenerConfig};
use crate::io::{Conn, ConnError, Line};
use crate::replies::reply;
use petrel_message::EnvelopeAddress;
use petrel_smtp_proto::Reply;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::TcpStream;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

/// Whether the command loop goes on.
pub(crate) enum Flow {
    Continue,
    Close,
}

pub(crate) struct Session {
    pub conn: Conn,
    pub peer: SocketAddr,
    pub local: SocketAddr,
    pub config: Arc<ListenerConfig>,
    pub handles: Arc<ServerHandles>,
    pub tls: Arc<TlsAcceptor>,
    pub ehlo: Option<String>,
    pub sender: Option<EnvelopeAddress>,
    /// The client announced SMTPUTF8 for this transaction.
    pub smtputf8: bool,
    pub recipients: Vec<EnvelopeAddress>,
    /// For each recipient: may it be relayed, and how are reports to its
    /// domain handled.
    pub relays: Vec<crate::config::Relay>,
    pub authn_id: Option<String>,
    /// DATA transactions so far.
    pub messages: usize,
    /// NOOP, RSET, VRFY, HELP and repeated greetings so far.
    pub junk: usize,
    /// AUTH attempts that failed in this session.
    pub auth_failures: u32,
    pub started: tokio::time::Instant,
    /// What the listener remembers of client addresses.
    pub peers: Arc<crate::peers::Peers>,
}

impl Session {
    pub fn new(
        stream: TcpStream,
        peer: SocketAddr,
        local: SocketAddr,
        config: Arc<ListenerConfig>,
        handles: Arc<ServerHandles>,
        tls: Arc<TlsAcceptor>,
        peers: Arc<crate::peers::Peers>,
    ) -> Self {
        let mut conn = Conn::new(stream, config.client_timeout, config.min_data_rate);
        conn.set_trace(handles.intake.traces().server_session(peer, local));
        Self {
            conn,
            peer,
            local,
            config,
            handles,
            tls,
            ehlo: None,
            sender: None,
            smtputf8: false,
            recipients: Vec::new(),
            relays: Vec::new(),
            authn_id: None,
            messages: 0,
            junk: 0,
            auth_failures: 0,
            started: tokio::time::Instant::now(),
            peers,
        }
    }

    pub fn conn_meta(&self) -> ConnMeta {
        ConnMeta {
            received_from: self.peer.to_string(),
            received_via: self.local.to_string(),
            hostname: self.config.hostname.clone(),
            ehlo_domain: self.ehlo.clone(),
            authn_id: self.authn_id.clone(),
            tls: self.conn.is_tls(),
        }
    }

    /// A new transaction: the envelope is forgotten, the greeting kept.
    pub fn reset(&mut self) {
        self.sender = None;
        self.smtputf8 = false;
        self.recipients.clear();
        self.relays.clear();
    }

    /// A session cap this session has hit, as the reply that ends it.
    fn limit_reached(&self) -> Option<Reply> {
        let config = &self.config;
        if self.conn.errors() >= config.max_errors {
            Some(reply(421, "4.7.0", "Too many errors; closing"))
        } else if self.auth_failures as usize >= config.max_auth_failures {
            Some(reply(421, "4.7.0", "Too many failed authentication attempts; closing"))
        } else if self.started.elapsed() > config.max_session_duration {
            Some(reply(421, "4.4.2", "Session too long; closing"))
        } else {
            None
        }
    }

    pub async fn run(mut self, stop: CancellationToken) -> std::io::Result<()> {
        let result = self.serve(stop).await;
        let flushed = self.conn.flush().await;
        result.and(flushed)
    }

    async fn serve(&mut self, stop: CancellationToken) -> std::io::Result<()> {
        self.conn.send(&Reply::new(220, None, format!("{} Petrel ESMTP ready", self.config.hostname)));
        loop {
            let line = tokio::select! {
                line = self.conn.read_line() => line,
                _ = stop.cancelled() => {
                    self.conn.send(&reply(421, "4.3.2", "Service shutting down"));
                    return Ok(());
                }
            };
            let line = match line {
                Ok(Line::Command(line)) => line,
                Ok(Line::TooLong) => {
                    self.conn.send(&reply(500, "5.5.2", "Line too long"));
                    continue;
                }
                Ok(Line::Closed) => return Ok(()),
                Err(ConnError::Timeout) => {
                    self.conn.send(&reply(421, "4.4.2", "Timeout waiting for the client; closing"));
                    return Ok(());
                }
                Err(ConnError::Io(e)) => return Err(e),
            };
            let flow = self.handle(&line).await;
            if let Some(limit) = self.limit_reached() {
                self.conn.send(&limit);
                return Ok(());
            }
            match flow {
                Ok(Flow::Continue) => {}
                Ok(Flow::Close) => return Ok(()),
                Err(ConnError::Timeout) => {
                    self.conn.send(&reply(421, "4.4.2", "Timeout waiting for the client; closing"));
                    return Ok(());
                }
                Err(ConnError::Io(e)) => return Err(e),
            }
        }
    }
}
