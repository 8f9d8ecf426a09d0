//! Outbound failures, classified so the delivery layer never reads text.

use petrel_smtp_proto::Reply;
use std::net::{IpAddr, SocketAddr};

/// The protocol step a failure happened in, for logs and timeouts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Connect,
    Banner,
    Ehlo,
    MailFrom,
    RcptTo,
    Data,
    DataDot,
    Rset,
    StartTls,
}

impl std::fmt::Display for Phase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Phase::Connect => "connect",
            Phase::Banner => "banner",
            Phase::Ehlo => "EHLO",
            Phase::MailFrom => "MAIL FROM",
            Phase::RcptTo => "RCPT TO",
            Phase::Data => "DATA",
            Phase::DataDot => "end of data",
            Phase::Rset => "RSET",
            Phase::StartTls => "STARTTLS",
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The source address is not usable on this host (not configured, wrong
    /// family). Transient: an operator can fix it without losing mail.
    #[error("cannot bind source address {address}: {source}")]
    Bind { address: IpAddr, source: std::io::Error },
    #[error("cannot connect to {target}: {source}")]
    Connect { target: SocketAddr, source: std::io::Error },
    #[error("timed out after {secs}s waiting for the {phase} reply")]
    Timeout { phase: Phase, secs: u64 },
    /// The server answered with a non-success reply.
    #[error("{phase} refused: {reply}")]
    Rejected { phase: Phase, reply: Reply },
    /// STARTTLS was required but not offered, or the handshake failed.
    #[error("TLS: {detail}")]
    Tls { detail: String },
    #[error("protocol error during {phase}: {detail}")]
    Protocol { phase: Phase, detail: String },
    #[error("connection lost during {phase}: {source}")]
    Io { phase: Phase, source: std::io::Error },
    /// The transaction cannot be sent as asked: an address with a line
    /// break, or SMTPUTF8 needed and not offered. Permanent.
    #[error("cannot send: {detail}")]
    Unsendable { enhanced: &'static str, detail: String },
}

impl ClientError {
    /// Only a 5xx reply is permanent; everything local or network is not.
    pub fn is_permanent(&self) -> bool {
        match self {
            ClientError::Rejected { reply, .. } => reply.is_permanent(),
            ClientError::Unsendable { .. } => true,
            _ => false,
        }
    }

    pub fn reply(&self) -> Option<&Reply> {
        match self {
            ClientError::Rejected { reply, .. } => Some(reply),
            _ => None,
        }
    }

    /// Whether the connection can carry another transaction after this.
    pub fn connection_usable(&self) -> bool {
        match self {
            ClientError::Unsendable { .. } => true,
            ClientError::Rejected { phase, reply } => {
                !matches!(phase, Phase::Banner | Phase::Ehlo) && reply.code != 421
            }
            _ => false,
        }
    }
}
