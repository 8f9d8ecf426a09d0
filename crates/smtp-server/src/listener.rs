//! Accepting connections for one listener.

use crate::config::{ListenerConfig, ServerHandles};
use crate::session::Session;
use arc_swap::ArcSwap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpSocket};
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

/// Settings ready to serve: the configuration and its TLS identity.
pub struct Prepared {
    config: Arc<ListenerConfig>,
    tls: Arc<TlsAcceptor>,
}

impl Prepared {
    /// Check the settings (certificate files) without touching a socket.
    pub fn new(config: ListenerConfig) -> Result<Self, String> {
        let tls = crate::tls::acceptor(
            config.tls_certificate.as_deref(),
            config.tls_private_key.as_deref(),
            &config.hostname,
        )?;
        Ok(Self { config: Arc::new(config), tls: Arc::new(tls) })
    }
}

/// A running listener. Dropping it does not stop it; call [`Listener::stop`]
/// or cancel the daemon's shutdown token.
pub struct Listener {
    local_addr: SocketAddr,
    /// Read at each accepted connection, so a reload changes the settings of
    /// new sessions without closing the socket.
    current: Arc<ArcSwap<Prepared>>,
    /// Shared with the accept loop so a reload can change the backlog.
    socket: Arc<TcpListener>,
    stop: CancellationToken,
}

/// A listening socket on `addr` with `backlog` (tokio's own `bind` uses a
/// fixed 1024).
fn bind(addr: SocketAddr, backlog: u32) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() { TcpSocket::new_v4()? } else { TcpSocket::new_v6()? };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(backlog)
}

/// Counts a session while it lives.
struct Active(Arc<AtomicUsize>);

impl Drop for Active {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Listener {
    /// Bind and start accepting. `shutdown` is the daemon's signal; the
    /// listener also has its own, so a reload can stop just this one.
    pub async fn start(
        config: ListenerConfig,
        handles: Arc<ServerHandles>,
        shutdown: &CancellationToken,
    ) -> std::io::Result<Self> {
        let prepared = Prepared::new(config).map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
        let socket = Arc::new(bind(prepared.config.listen, prepared.config.listen_backlog)?);
        let accepting = socket.clone();
        let local_addr = socket.local_addr()?;
        let stop = shutdown.child_token();
        let current = Arc::new(ArcSwap::from_pointee(prepared));
        let settings = current.clone();
        let token = stop.clone();
        let active = Arc::new(AtomicUsize::new(0));
        let peers = Arc::new(crate::peers::Peers::default());
        tokio::spawn(async move {
            loop {
                let (mut stream, peer) = tokio::select! {
                    accepted = accepting.accept() => match accepted {
                        Ok(pair) => pair,
                        Err(e) => {
                            tracing::warn!(error = %e, "accept failed");
                            continue;
                        }
                    },
                    _ = token.cancelled() => return,
                };
                let now = settings.load_full();
                if active.fetch_add(1, Ordering::SeqCst) >= now.config.max_connections {
                    active.fetch_sub(1, Ordering::SeqCst);
                    tokio::spawn(async move {
                        let _ = stream.write_all(b"421 4.3.2 Too many connections, try again later\r\n").await;
                    });
                    continue;
                }
                let guard = Active(active.clone());
                let per_ip = (!now.config.may_relay(peer.ip())).then_some(now.config.max_connections_per_ip);
                let Some(peer_guard) = peers.admit(peer.ip(), per_ip) else {
                    drop(guard);
                    tokio::spawn(async move {
                        let _ = stream.write_all(b"421 4.7.0 Too many connections from your address\r\n").await;
                    });
                    continue;
                };
                let session = Session::new(
                    stream,
                    peer,
                    local_addr,
                    now.config.clone(),
                    handles.clone(),
                    now.tls.clone(),
                    peers.clone(),
                );
                let token = token.clone();
                tokio::spawn(async move {
                    let _guard = (guard, peer_guard);
                    if let Err(e) = session.run(token).await {
                        tracing::debug!(%peer, error = %e, "session ended with an error");
                    }
                });
            }
        });
        tracing::info!(listen = %local_addr, "ESMTP listener started");
        Ok(Self { local_addr, current, socket, stop })
    }

    /// The address it is bound to.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Its configuration now (reload may replace it).
    pub fn config(&self) -> Arc<ListenerConfig> {
        self.current.load().config.clone()
    }

    /// New settings for sessions accepted from now on.
    pub fn apply(&self, prepared: Prepared) {
        let backlog = prepared.config.listen_backlog;
        if backlog != self.current.load().config.listen_backlog {
            // Linux takes a second listen(2) on a listening socket as a new
            // backlog; connections already queued stay.
            if let Err(e) = socket2::SockRef::from(&*self.socket).listen(backlog as i32) {
                tracing::warn!(listen = %self.local_addr, error = %e, "cannot change the listen backlog");
            }
        }
        self.current.store(Arc::new(prepared));
    }

    /// Stop accepting; sessions in progress finish their current command.
    pub fn stop(&self) {
        self.stop.cancel();
    }
}
