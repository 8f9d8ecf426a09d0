//! A ready queue: messages bound for one site from one source, drained by up
//! to `connection_limit` connection workers that reuse their sessions.

use crate::dispatcher::Dispatcher;
use crate::outcome::{Attempt, report};
use crate::path::EgressPathConfig;
use parking_lot::Mutex;
use petrel_egress::EgressSource;
use petrel_message::Message;
use petrel_queue::ScheduledQueue;
use petrel_smtp_client::{ClientError, ConnectOptions, SmtpClient};
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::sync::Notify;

/// Most messages a ready queue holds before its source counts as full.
const READY_CAPACITY: usize = 1024;

pub(crate) struct Dispatched {
    pub queue: Arc<ScheduledQueue>,
    pub message: Message,
    pub pool: String,
}

struct Slots {
    items: VecDeque<Dispatched>,
    workers: usize,
    idle: usize,
}

pub(crate) struct ReadyQueue {
    pub name: String,
    pub source: Arc<EgressSource>,
    pub site: String,
    hosts: Vec<String>,
    path: EgressPathConfig,
    ehlo: String,
    slots: Mutex<Slots>,
    wake: Notify,
}

enum Next {
    Item(Box<Dispatched>),
    Wait,
    Exit,
}

impl ReadyQueue {
    pub fn new(
        name: String,
        source: Arc<EgressSource>,
        site: String,
        hosts: Vec<String>,
        path: EgressPathConfig,
        ehlo: String,
    ) -> Self {
        let slots = Slots {
            items: VecDeque::new(),
            workers: 0,
            idle: 0,
        };
        Self {
            name,
            source,
            site,
            hosts,
            path,
            ehlo,
            slots: Mutex::new(slots),
            wake: Notify::new(),
        }
    }

    pub fn len(&self) -> usize {
        self.slots.lock().items.len()
    }

    pub fn is_full(&self) -> bool {
        self.len() >= READY_CAPACITY
    }

    /// Queue a message; wake an idle connection or open another one while
    /// under `connection_limit`.
    pub fn push(self: &Arc<Self>, item: Dispatched, dispatcher: &Arc<Dispatcher>) {
        let mut slots = self.slots.lock();
        slots.items.push_back(item);
        if slots.idle > 0 {
            self.wake.notify_one();
        } else if slots.workers < self.path.connection_limit.max(1) {
            slots.workers += 1;
            tokio::spawn(self.clone().worker(dispatcher.clone()));
        }
    }

    fn next(&self, connected: bool) -> Next {
        let mut slots = self.slots.lock();
        if let Some(item) = slots.items.pop_front() {
            return Next::Item(Box::new(item));
        }
        if connected {
            slots.idle += 1;
            Next::Wait
        } else {
            slots.workers -= 1;
            Next::Exit
        }
    }

    /// After an idle wait: keep going if there is work, else retire.
    fn done_waiting(&self, give_up: bool) -> bool {
        let mut slots = self.slots.lock();
        slots.idle -= 1;
        if give_up && slots.items.is_empty() {
            slots.workers -= 1;
            return true;
        }
        false
    }

    fn take_all(&self) -> Vec<Dispatched> {
        self.slots.lock().items.drain(..).collect()
    }

    async fn worker(self: Arc<Self>, dispatcher: Arc<Dispatcher>) {
        let shutdown = dispatcher.handles.shutdown.clone();
        let mut conn: Option<SmtpClient> = None;
        let mut sent = 0usize;
        loop {
            let item = match self.next(conn.is_some()) {
                Next::Item(item) => *item,
                Next::Exit => return,
                Next::Wait => {
                    let give_up = tokio::select! {
                        _ = self.wake.notified() => false,
                        _ = tokio::time::sleep(self.path.idle_timeout) => true,
                        _ = shutdown.cancelled() => true,
                    };
                    if self.done_waiting(give_up) {
                        if let Some(c) = conn.take() {
                            c.quit().await;
                        }
                        return;
                    }
                    continue;
                }
            };
            if conn.is_none() {
                match self.connect().await {
                    Ok(c) => {
                        conn = Some(c);
                        sent = 0;
                    }
                    Err(e) => {
                        // The site is unreachable from this source: everything
                        // queued here would fail the same way, so fail it now.
                        tracing::warn!(ready_queue = %self.name, error = %e, "connection failed");
                        let attempt = Attempt {
                            ready: &self,
                            peer: None,
                        };
                        for other in std::iter::once(item).chain(self.take_all()) {
                            report(&dispatcher, &attempt, other, Err(&e)).await;
                        }
                        continue;
                    }
                }
            }
            let client = conn.as_mut().expect("connected above");
            let peer = Some(client.peer_addr());
            let (item, result) = self.send(&dispatcher, client, item).await;
            let reusable = match &result {
                Ok(_) => true,
                Err(e) => e.connection_usable() && client.rset().await.is_ok(),
            };
            report(&dispatcher, &Attempt { ready: &self, peer }, item, result.as_ref()).await;
            sent += 1;
            if !reusable || sent >= self.path.max_deliveries_per_connection.max(1) {
                let finished = conn.take();
                if let Some(c) = finished.filter(|_| reusable) {
                    c.quit().await;
                }
            }
        }
    }

    async fn send(
        &self,
        dispatcher: &Dispatcher,
        client: &mut SmtpClient,
        mut item: Dispatched,
    ) -> (Dispatched, Result<petrel_smtp_proto::Reply, ClientError>) {
        let data = match item.message.data.clone() {
            Some(data) => data,
            None => match dispatcher.handles.spool.load_data(item.message.id).await {
                Ok(data) => data,
                Err(e) => {
                    let io = std::io::Error::other(format!("cannot read the message body: {e}"));
                    return (
                        item,
                        Err(ClientError::Io {
                            phase: petrel_smtp_client::Phase::Data,
                            source: io,
                        }),
                    );
                }
            },
        };
        item.message.data = Some(data.clone());
        let m = &item.message;
        let result = client.send(m.sender.email(), m.recipient.email(), &data).await;
        (item, result)
    }

    /// Connect to the site's hosts in order until one answers.
    async fn connect(&self) -> Result<SmtpClient, ClientError> {
        let mut last = None;
        for host in &self.hosts {
            let (name, port) = split_host_port(host, self.path.smtp_port);
            let port = self.source.remote_port.unwrap_or(port);
            let addrs = match resolve(&name, port).await {
                Ok(addrs) => addrs,
                Err(e) => {
                    last = Some(e);
                    continue;
                }
            };
            for target in addrs {
                let opts = ConnectOptions {
                    source: self.source.source_address,
                    target,
                    ehlo_domain: self.ehlo.clone(),
                    timeouts: self.path.timeouts,
                };
                match SmtpClient::connect(&opts).await {
                    Ok(client) => return Ok(client),
                    Err(e) => {
                        tracing::debug!(%target, error = %e, "host failed; trying the next");
                        last = Some(e);
                    }
                }
            }
        }
        Err(last.unwrap_or_else(|| {
            let e = std::io::Error::new(std::io::ErrorKind::NotFound, "no destination hosts");
            ClientError::Io {
                phase: petrel_smtp_client::Phase::Connect,
                source: e,
            }
        }))
    }
}

async fn resolve(host: &str, port: u16) -> Result<Vec<SocketAddr>, ClientError> {
    let lookup_error = |e: std::io::Error| {
        let target = SocketAddr::from(([0, 0, 0, 0], port));
        ClientError::Connect {
            target,
            source: std::io::Error::new(e.kind(), format!("cannot resolve {host}: {e}")),
        }
    };
    Ok(tokio::net::lookup_host((host, port))
        .await
        .map_err(lookup_error)?
        .collect())
}

/// `host`, `host:port`, `ip`, `ip:port` or `[ipv6]:port`.
fn split_host_port(entry: &str, default_port: u16) -> (String, u16) {
    if let Ok(addr) = entry.parse::<SocketAddr>() {
        return (addr.ip().to_string(), addr.port());
    }
    if let Some(inner) = entry.strip_prefix('[').and_then(|e| e.strip_suffix(']')) {
        return (inner.to_string(), default_port);
    }
    match entry.rsplit_once(':') {
        Some((host, port)) if !host.contains(':') => match port.parse() {
            Ok(port) => (host.to_string(), port),
            Err(_) => (entry.to_string(), default_port),
        },
        _ => (entry.to_string(), default_port),
    }
}

#[cfg(test)]
mod tests {
    use super::split_host_port;

    #[test]
    fn host_and_port_forms() {
        assert_eq!(split_host_port("mx.example", 25), ("mx.example".into(), 25));
        assert_eq!(split_host_port("mx.example:2525", 25), ("mx.example".into(), 2525));
        assert_eq!(split_host_port("127.0.0.1:26", 25), ("127.0.0.1".into(), 26));
        assert_eq!(split_host_port("[::1]:27", 25), ("::1".into(), 27));
        assert_eq!(split_host_port("[::1]", 25), ("::1".into(), 25));
        assert_eq!(split_host_port("::1", 25), ("::1".into(), 25));
    }
}
