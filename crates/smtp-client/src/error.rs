//! Outbound failures, classified so the delivery layer never reads text.

use petrel_smtp_proto::Reply;
use std::net::{IpAddr, SocketAddr};

/// The protocol step a failure happened in, for logs and timeouts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Opening the TCP connection.
    Connect,
    /// Waiting for the greeting.
    Banner,
    /// EHLO (or LHLO).
    Ehlo,
    /// MAIL FROM.
    MailFrom,
    /// RCPT TO.
    RcptTo,
    /// DATA, before the body.
    Data,
    /// After the body, waiting for the final reply.
    DataDot,
    /// RSET between transactions.
    Rset,
    /// STARTTLS and the handshake.
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

/// How a connection or transaction failed; [`ClientError::is_permanent`] tells whether to bounce.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The source address is not usable on this host (not configured, wrong
    /// family). Transient: an operator can fix it without losing mail.
    #[error("cannot bind source address {address}: {source}")]
    Bind {
        /// The egress source's address.
        address: IpAddr,
        /// What the OS said.
        source: std::io::Error,
    },
    /// The TCP connection could not be made.
    #[error("cannot connect to {target}: {source}")]
    Connect {
        /// The host and port tried.
        target: SocketAddr,
        /// What the OS said.
        source: std::io::Error,
    },
    /// The server did not answer in time.
    #[error("timed out after {secs}s waiting for the {phase} reply")]
    Timeout {
        /// The step that waited.
        phase: Phase,
        /// The timeout that ran out.
        secs: u64,
    },
    /// The server answered with a non-success reply.
    #[error("{phase} refused: {reply}")]
    Rejected {
        /// The step that was refused.
        phase: Phase,
        /// The server's reply.
        reply: Reply,
    },
    /// STARTTLS was required but not offered, or the handshake failed.
    #[error("TLS: {detail}")]
    Tls {
        /// What went wrong.
        detail: String,
    },
    /// The server sent something that is not SMTP.
    #[error("protocol error during {phase}: {detail}")]
    Protocol {
        /// The step at which the server misbehaved.
        phase: Phase,
        /// What it sent.
        detail: String,
    },
    /// The connection broke.
    #[error("connection lost during {phase}: {source}")]
    Io {
        /// The step in progress.
        phase: Phase,
        /// What the OS said.
        source: std::io::Error,
    },
    /// The transaction cannot be sent as asked: an address with a line
    /// break, or SMTPUTF8 needed and not offered. Permanent.
    #[error("cannot send: {detail}")]
    Unsendable {
        /// The enhanced status code the failure is logged with.
        enhanced: &'static str,
        /// Why it cannot be sent.
        detail: String,
    },
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

    /// The step that was refused, when the server refused one.
    pub fn phase(&self) -> Option<Phase> {
        match self {
            ClientError::Rejected { phase, .. } => Some(*phase),
            _ => None,
        }
    }

    /// The server's reply, when the failure is one.
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
