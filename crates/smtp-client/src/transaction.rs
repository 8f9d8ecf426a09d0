//! One mail transaction: MAIL, one or more RCPT, DATA, the dot — pipelined
//! when the server offers PIPELINING — with a result per recipient.

use crate::error::{ClientError, Phase};
use crate::session::{SmtpClient, check};
use petrel_smtp_proto::{Reply, dot_stuff};

/// What happened to one recipient of a transaction: the reply that accepted
/// the message, or the refusal (`Rejected` at RCPT or at the end of data).
pub type RecipientResult = Result<Reply, ClientError>;

impl SmtpClient {
    /// Send one message to one recipient; returns the final 2xx reply.
    /// `data` is the message as spooled (CRLF line endings, not stuffed).
    pub async fn send(&mut self, sender: &str, recipient: &str, data: &[u8]) -> Result<Reply, ClientError> {
        let mut results = self.send_batch(sender, &[recipient], data, false).await?;
        results.pop().expect("one result per recipient")
    }

    /// Send one message to several recipients in one transaction. The outer
    /// error is for the whole transaction (connection, MAIL or DATA refused);
    /// otherwise there is one result per recipient, in order. Over LMTP the
    /// server answers the end of data once per accepted recipient.
    ///
    /// `smtputf8`: the envelope or headers need SMTPUTF8 (RFC 6531); the
    /// transaction is refused before anything is sent when the server does
    /// not offer it. A non-ASCII address always needs it.
    pub async fn send_batch(
        &mut self,
        sender: &str,
        recipients: &[&str],
        data: &[u8],
        smtputf8: bool,
    ) -> Result<Vec<RecipientResult>, ClientError> {
        for address in std::iter::once(&sender).chain(recipients) {
            // Second line of defence: intake refuses these already.
            if address.contains(['\r', '\n', '\0', '<', '>']) {
                let detail = format!("address {address:?} contains a line break or angle bracket");
                return Err(ClientError::Unsendable { enhanced: "5.1.7", detail });
            }
        }
        let smtputf8 = smtputf8 || !sender.is_ascii() || recipients.iter().any(|r| !r.is_ascii());
        if smtputf8 && !self.caps.smtputf8 {
            let detail = "the message needs SMTPUTF8 and the server does not offer it".to_string();
            return Err(ClientError::Unsendable { enhanced: "5.6.7", detail });
        }
        let mail = format!("MAIL FROM:<{sender}>{}\r\n", self.mail_params(data.len(), smtputf8));
        let (rcpt_replies, data_reply) = if self.caps.pipelining {
            self.pipelined_envelope(&mail, recipients).await?
        } else {
            self.stepwise_envelope(&mail, recipients).await?
        };
        let mut results: Vec<RecipientResult> =
            rcpt_replies.into_iter().map(|reply| check(Phase::RcptTo, reply, 250)).collect();
        let accepted: Vec<usize> = (0..results.len()).filter(|&i| results[i].is_ok()).collect();
        let Some(data_reply) = data_reply else {
            return Ok(results);
        };
        check(Phase::Data, data_reply, 354)?;
        self.write(Phase::DataDot, &dot_stuff(data)).await?;
        let answers = if self.lmtp { accepted.len() } else { 1 };
        let mut finals = Vec::with_capacity(answers);
        for _ in 0..answers {
            finals.push(self.read_reply(Phase::DataDot).await?);
        }
        for (n, &i) in accepted.iter().enumerate() {
            let reply = finals[if self.lmtp { n } else { 0 }].clone();
            results[i] = check(Phase::DataDot, reply, 250);
        }
        Ok(results)
    }

    /// MAIL, RCPTs and DATA in one write (RFC 2920). Returns the RCPT replies
    /// and, when at least one recipient was accepted, the DATA reply.
    async fn pipelined_envelope(
        &mut self,
        mail: &str,
        recipients: &[&str],
    ) -> Result<(Vec<Reply>, Option<Reply>), ClientError> {
        let mut batch = mail.as_bytes().to_vec();
        for r in recipients {
            batch.extend_from_slice(format!("RCPT TO:<{r}>\r\n").as_bytes());
        }
        batch.extend_from_slice(b"DATA\r\n");
        self.write(Phase::MailFrom, &batch).await?;
        let mail_reply = self.read_reply(Phase::MailFrom).await?;
        let mut rcpt_replies = Vec::with_capacity(recipients.len());
        let mut closing = (mail_reply.code == 421).then(|| (Phase::MailFrom, mail_reply.clone()));
        for _ in recipients {
            match self.read_reply(Phase::RcptTo).await {
                Ok(reply) => {
                    if reply.code == 421 && closing.is_none() {
                        closing = Some((Phase::RcptTo, reply.clone()));
                    }
                    rcpt_replies.push(reply);
                }
                Err(e) => return Err(closing_reply(closing, e)),
            }
        }
        let data_reply = match self.read_reply(Phase::Data).await {
            Ok(reply) => reply,
            Err(e) => return Err(closing_reply(closing, e)),
        };
        let any_accepted = rcpt_replies.iter().any(|r| r.is_positive());
        if data_reply.code == 354 && !(mail_reply.is_positive() && any_accepted) {
            // RFC 2920 §3.1: the server took DATA with nobody to deliver to;
            // end it with an empty message and report the real refusal.
            self.write(Phase::DataDot, b".\r\n").await?;
            self.read_reply(Phase::DataDot).await?;
        }
        check(Phase::MailFrom, mail_reply, 250)?;
        Ok((rcpt_replies, any_accepted.then_some(data_reply)))
    }

    async fn stepwise_envelope(
        &mut self,
        mail: &str,
        recipients: &[&str],
    ) -> Result<(Vec<Reply>, Option<Reply>), ClientError> {
        self.write(Phase::MailFrom, mail.as_bytes()).await?;
        self.expect(Phase::MailFrom, 250).await?;
        let mut rcpt_replies = Vec::with_capacity(recipients.len());
        for r in recipients {
            self.write(Phase::RcptTo, format!("RCPT TO:<{r}>\r\n").as_bytes()).await?;
            rcpt_replies.push(self.read_reply(Phase::RcptTo).await?);
        }
        if !rcpt_replies.iter().any(|r| r.is_positive()) {
            return Ok((rcpt_replies, None));
        }
        self.write(Phase::Data, b"DATA\r\n").await?;
        let data_reply = self.read_reply(Phase::Data).await?;
        Ok((rcpt_replies, Some(data_reply)))
    }
}

/// A server that says `421` and hangs up mid-pipeline: its own reply is the
/// outcome, not the connection loss that follows it, so what it said (and
/// its enhanced code) reaches the logs and the retry rules.
fn closing_reply(closing: Option<(Phase, Reply)>, lost: ClientError) -> ClientError {
    match closing {
        Some((phase, reply)) => ClientError::Rejected { phase, reply },
        None => lost,
    }
}
