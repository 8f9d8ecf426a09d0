//! Admission: the one path by which received mail enters Petrel, for SMTP
//! and HTTP injection alike. A message is stored durably first, then its
//! Reception record is written, then it is queued; the caller acknowledges
//! only after [`Intake::admit`] returned `Ok`.

use crate::QueueManager;
use petrel_message::Message;
use petrel_spool::{Spool, SpoolError};
use petrel_telemetry::{Logger, RecordType, ResponseInfo};
use std::sync::Arc;

/// How a policy event refused or failed, for SMTP and HTTP alike.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    /// `kumo.reject(code, text)`: refuse with this reply.
    #[error("rejected: {code} {text}")]
    Reject {
        /// The SMTP reply code (4xx or 5xx).
        code: u16,
        /// The reply text, which may start with an enhanced status code.
        text: String,
    },
    /// The policy itself failed (a Lua error): the client is told to retry.
    #[error("policy error: {0}")]
    Failed(String),
}

/// Where a message came from, for its log records.
#[derive(Debug, Clone)]
pub struct ReceptionInfo {
    /// The client's address (`ip:port`), or the HTTP client's.
    pub peer_address: String,
    /// The name the client gave (its EHLO domain; empty over HTTP).
    pub peer_name: String,
    /// `ESMTP`, `ESMTPS`, `ESMTPA`, `ESMTPSA` or `HTTP`.
    pub protocol: String,
    /// TLS version and cipher, when the client used TLS.
    pub tls: Option<(String, String)>,
}

/// What admission needs: the spool, the queues, the log.
#[derive(Clone)]
pub struct Intake {
    spool: Arc<dyn Spool>,
    queues: Arc<QueueManager>,
    logger: Logger,
}

impl Intake {
    /// An intake writing to `spool` and queueing in `queues`.
    pub fn new(spool: Arc<dyn Spool>, queues: Arc<QueueManager>, logger: Logger) -> Self {
        Self { spool, queues, logger }
    }

    /// Whether new mail can be stored now (see [`Spool::is_healthy`]).
    pub fn accepting(&self) -> bool {
        self.spool.is_healthy()
    }

    /// Store `messages` durably (all or none), log a Reception record for
    /// each with `response` (the reply the client is about to get), and
    /// queue them.
    pub async fn admit(
        &self,
        messages: Vec<Message>,
        from: &ReceptionInfo,
        response: &ResponseInfo,
    ) -> Result<(), SpoolError> {
        self.spool.store(&messages).await?;
        for message in messages {
            self.log(RecordType::Reception, &message, from, response.clone());
            self.queues.insert(message);
        }
        Ok(())
    }

    /// Log a message the policy refused (a Rejection record).
    pub fn rejected(&self, message: &Message, from: &ReceptionInfo, response: ResponseInfo) {
        self.log(RecordType::Rejection, message, from, response);
    }

    fn log(&self, kind: RecordType, message: &Message, from: &ReceptionInfo, response: ResponseInfo) {
        let mut record = self.logger.record(kind, message, response);
        record.peer_address =
            Some(petrel_telemetry::PeerAddress { name: from.peer_name.clone(), addr: from.peer_address.clone() });
        record.reception_protocol = Some(from.protocol.clone());
        if let Some((version, cipher)) = &from.tls {
            record.tls_protocol_version = Some(version.clone());
            record.tls_cipher = Some(cipher.clone());
        }
        self.logger.log(record);
    }
}
