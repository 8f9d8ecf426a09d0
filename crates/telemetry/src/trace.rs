//! Live SMTP transcripts (`petrel trace-smtp-server` / `trace-smtp-client`):
//! sessions copy each line they read and write here while someone is
//! watching, and nobody pays anything when no one is. Message bodies and
//! authentication exchanges are never copied.

use serde::Serialize;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use tokio::sync::broadcast;

/// One line of a session, or its start or end.
#[derive(Debug, Clone, Serialize)]
pub struct TraceEvent {
    /// Numbers the sessions of this process.
    pub session: u64,
    /// When (RFC 3339, milliseconds).
    pub at: String,
    /// The other side (the client, for the listener; the server, for delivery).
    pub peer: String,
    /// This side's address.
    pub local: String,
    /// For outbound sessions: the site being delivered to.
    pub site: Option<String>,
    /// `open`, `recv`, `send` or `close`.
    pub direction: &'static str,
    /// The line, without its line ending.
    pub line: String,
}

/// Inbound (listener) and outbound (delivery) transcripts.
pub struct TraceHub {
    server: broadcast::Sender<Arc<TraceEvent>>,
    client: broadcast::Sender<Arc<TraceEvent>>,
    next: AtomicU64,
}

impl Default for TraceHub {
    fn default() -> Self {
        Self { server: broadcast::channel(4096).0, client: broadcast::channel(4096).0, next: AtomicU64::new(1) }
    }
}

impl TraceHub {
    /// Watch inbound sessions (those that start from now on).
    pub fn watch_server(&self) -> broadcast::Receiver<Arc<TraceEvent>> {
        self.server.subscribe()
    }

    /// Watch outbound sessions (those that start from now on).
    pub fn watch_client(&self) -> broadcast::Receiver<Arc<TraceEvent>> {
        self.client.subscribe()
    }

    /// A tracer for a new inbound session, if anyone is watching.
    pub fn server_session(&self, peer: SocketAddr, local: SocketAddr) -> Option<SessionTrace> {
        self.session(&self.server, peer.to_string(), local.to_string(), None)
    }

    /// A tracer for a new outbound session to `site`, if anyone is watching.
    pub fn client_session(
        &self,
        peer: SocketAddr,
        local: Option<std::net::IpAddr>,
        site: &str,
    ) -> Option<SessionTrace> {
        let local = local.map_or_else(|| "-".to_string(), |ip| ip.to_string());
        self.session(&self.client, peer.to_string(), local, Some(site.to_string()))
    }

    fn session(
        &self,
        tx: &broadcast::Sender<Arc<TraceEvent>>,
        peer: String,
        local: String,
        site: Option<String>,
    ) -> Option<SessionTrace> {
        if tx.receiver_count() == 0 {
            return None;
        }
        let trace = SessionTrace {
            tx: tx.clone(),
            session: self.next.fetch_add(1, Ordering::Relaxed),
            peer,
            local,
            site,
            secret_next: std::sync::atomic::AtomicBool::new(false),
        };
        trace.emit("open", "");
        Some(trace)
    }
}

/// Copies one session's lines to its watchers.
pub struct SessionTrace {
    tx: broadcast::Sender<Arc<TraceEvent>>,
    session: u64,
    peer: String,
    local: String,
    site: Option<String>,
    /// The last line sent was a 334 challenge: the answer is a secret.
    secret_next: std::sync::atomic::AtomicBool,
}

impl SessionTrace {
    /// Copy a line (`recv` or `send`); credentials are masked.
    pub fn emit(&self, direction: &'static str, line: &str) {
        if self.tx.receiver_count() == 0 {
            return;
        }
        let secret = direction == "recv" && self.secret_next.swap(false, Ordering::Relaxed);
        let line = if secret {
            "[authentication data]".to_string()
        } else if direction == "recv" && line.len() > 5 && line[..5].eq_ignore_ascii_case("AUTH ") {
            // Keep the mechanism, never the initial response.
            let mechanism = line[5..].split_whitespace().next().unwrap_or("");
            format!("{} {mechanism} [authentication data]", &line[..4])
        } else {
            line.to_string()
        };
        if direction == "send" && line.starts_with("334") {
            self.secret_next.store(true, Ordering::Relaxed);
        }
        let event = TraceEvent {
            session: self.session,
            at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            peer: self.peer.clone(),
            local: self.local.clone(),
            site: self.site.clone(),
            direction,
            line,
        };
        let _ = self.tx.send(Arc::new(event));
    }
}

impl Drop for SessionTrace {
    fn drop(&mut self) {
        self.emit("close", "");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nothing_is_made_unwatched_and_secrets_stay_out() {
        let hub = TraceHub::default();
        let addr: SocketAddr = "127.0.0.1:25".parse().unwrap();
        assert!(hub.server_session(addr, addr).is_none(), "nobody watching: no tracer");
        let mut rx = hub.watch_server();
        let trace = hub.server_session(addr, addr).unwrap();
        trace.emit("recv", "AUTH PLAIN AGFsaWNlAHNlY3JldA==");
        trace.emit("send", "334 ");
        trace.emit("recv", "AGFsaWNlAHNlY3JldA==");
        trace.emit("recv", "MAIL FROM:<a@b>");
        drop(trace);
        let lines: Vec<String> = std::iter::from_fn(|| rx.try_recv().ok()).map(|e| e.line.clone()).collect();
        assert_eq!(
            lines,
            ["", "AUTH PLAIN [authentication data]", "334 ", "[authentication data]", "MAIL FROM:<a@b>", ""]
        );
    }
}
