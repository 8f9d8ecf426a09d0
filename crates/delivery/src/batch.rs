//! One transaction for one or more messages: messages of a ready queue with
//! the same sender, recipient domain and body (the recipients of one
//! reception) go out as one MAIL with several RCPTs, up to
//! `max_recipients_per_batch`.

use crate::context::Dispatched;
use crate::outcome::Outcome;
use petrel_smtp_client::SmtpClient;
use petrel_spool::Spool;
use std::sync::Arc;

/// Whether `other` may share a transaction with `first` (before comparing
/// bodies, which needs them loaded).
pub(crate) fn compatible(first: &Dispatched, other: &Dispatched) -> bool {
    let (a, b) = (&first.message, &other.message);
    a.sender == b.sender && a.size == b.size && a.recipient.domain().eq_ignore_ascii_case(b.recipient.domain())
}

async fn body(spool: &dyn Spool, item: &mut Dispatched) -> Result<Arc<[u8]>, Outcome> {
    if let Some(data) = &item.message.data {
        return Ok(data.clone());
    }
    match spool.load_data(item.message.id).await {
        Ok(data) => {
            item.message.data = Some(data.clone());
            Ok(data)
        }
        Err(e) => Err(Outcome::local(false, "4.3.0", format!("cannot read the message body: {e}"))),
    }
}

/// The body as this peer can take it: 8-bit bodies become quoted-printable
/// for a peer without 8BITMIME (RFC 6152). A message with 8-bit headers
/// (`utf8_headers`) is left as it is: it needs SMTPUTF8, which
/// `send_batch` insists on.
fn for_peer(
    caps: &petrel_smtp_client::Capabilities,
    data: &Arc<[u8]>,
    utf8_headers: bool,
) -> Result<Arc<[u8]>, Outcome> {
    if caps.eight_bit_mime || utf8_headers || !petrel_message::has_8bit(data) {
        return Ok(data.clone());
    }
    match petrel_message::to_7bit(data) {
        Ok(converted) => Ok(Arc::from(converted)),
        Err(e) => Err(Outcome::local(true, "5.6.3", format!("the peer has no 8BITMIME and {e}"))),
    }
}

/// What became of a batch.
pub(crate) enum Transmitted {
    /// Each message's outcome, and whether the connection can carry
    /// another transaction.
    Done(Vec<(Dispatched, Outcome)>, bool),
    /// A reused connection turned out closed (the peer dropped it while it
    /// was idle) before anything was accepted: `retry` goes again on a
    /// fresh connection, and no attempt is counted; `done` failed before
    /// the transaction (an unreadable body) and is reported as usual.
    Stale { retry: Vec<Dispatched>, done: Vec<(Dispatched, Outcome)> },
}

/// Whether `e`, at the start of a transaction on a reused connection, means
/// only that the peer had closed it while idle.
fn stale(e: &petrel_smtp_client::ClientError) -> bool {
    use petrel_smtp_client::{ClientError, Phase};
    match e {
        ClientError::Io { .. } | ClientError::Protocol { .. } => true,
        ClientError::Rejected { phase: Phase::MailFrom, reply } => reply.code == 421,
        _ => false,
    }
}

/// One of a path's rates, under its limiter key (shared by every node on
/// the same Redis when one is configured).
pub(crate) struct Pacer<'a> {
    pub limits: &'a petrel_throttle::Limiter,
    pub key: &'a str,
    pub spec: petrel_throttle::ThrottleSpec,
}

impl Pacer<'_> {
    /// Take the next slot and wait for it. Path rates pace evenly unless
    /// their spec names a burst.
    pub async fn wait(&self) {
        self.limits.wait(self.key, &self.spec.paced()).await;
    }
}

/// What a transaction needs from its ready queue.
pub(crate) struct Lane<'a> {
    /// Where bodies are read from.
    pub spool: &'a dyn Spool,
    /// `max_message_rate`, paced per message sent.
    pub message_rate: Option<Pacer<'a>>,
    /// Back to the front of the ready queue, for the next transaction.
    pub put_back: &'a (dyn Fn(Dispatched) + Sync),
}

/// Send `batch` over `client`. Messages whose body turns out to differ go
/// back to the front of the ready queue. `reused`: the connection carried
/// an earlier transaction.
pub(crate) async fn transmit(
    lane: Lane<'_>,
    client: &mut SmtpClient,
    batch: Vec<Dispatched>,
    reused: bool,
) -> Transmitted {
    let mut done = Vec::with_capacity(batch.len());
    let mut items: Vec<Dispatched> = Vec::with_capacity(batch.len());
    let mut other_bodies = Vec::new();
    let mut shared: Option<Arc<[u8]>> = None;
    for mut item in batch {
        match body(lane.spool, &mut item).await {
            Err(outcome) => done.push((item, outcome)),
            Ok(data) => match &shared {
                None => {
                    shared = Some(data);
                    items.push(item);
                }
                Some(first) if **first == *data => items.push(item),
                Some(_) => other_bodies.push(item),
            },
        }
    }
    // Back to the front in their order, so arrival order holds.
    for item in other_bodies.into_iter().rev() {
        (lane.put_back)(item);
    }
    let Some(data) = shared else { return Transmitted::Done(done, true) };
    // `max_message_rate` counts messages sent, so the pacing waits only for
    // the ones this transaction really carries.
    if let Some(pacer) = &lane.message_rate {
        for _ in &items {
            pacer.wait().await;
        }
    }
    let sender = items[0].message.sender.email().to_string();
    let recipients: Vec<String> = items.iter().map(|i| i.message.recipient.email().to_string()).collect();
    let refs: Vec<&str> = recipients.iter().map(String::as_str).collect();
    // Conversion rewrites bodies only, so the headers decide SMTPUTF8 either way.
    let smtputf8 = petrel_message::has_8bit_headers(&data);
    let data = match for_peer(client.capabilities(), &data, smtputf8) {
        Ok(data) => data,
        Err(outcome) => {
            done.extend(items.into_iter().map(|item| (item, outcome.clone())));
            return Transmitted::Done(done, true);
        }
    };
    match client.send_batch(&sender, &refs, &data, smtputf8).await {
        Ok(results) => {
            // With every recipient refused, DATA was never sent: reset.
            let reusable = results.iter().any(|r| r.is_ok()) || client.rset().await.is_ok();
            for (item, result) in items.into_iter().zip(results) {
                let outcome = match &result {
                    Ok(reply) => Outcome::from_reply(reply),
                    Err(e) => Outcome::from_client(e),
                };
                done.push((item, outcome));
            }
            Transmitted::Done(done, reusable)
        }
        Err(e) if reused && stale(&e) => {
            tracing::debug!(error = %e, "a reused connection was closed by the peer; sending again on a new one");
            Transmitted::Stale { retry: items, done }
        }
        Err(e) => {
            let reusable = e.connection_usable() && client.rset().await.is_ok();
            let outcome = Outcome::from_client(&e);
            done.extend(items.into_iter().map(|item| (item, outcome.clone())));
            Transmitted::Done(done, reusable)
        }
    }
}
