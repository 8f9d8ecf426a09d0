//! Accepting connections for one listener.

use crate::config::{ListenerConfig, SessionPolicy};
use crate::session::Session;
use arc_swap::ArcSwap;
use petrel_queue::QueueManager;
use petrel_spool::Spool;
use petrel_telemetry::Logger;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// What sessions need from the rest of the daemon.
pub struct ServerHandles {
    pub spool: Arc<dyn Spool>,
    pub queues: Arc<QueueManager>,
    pub logger: Logger,
    pub policy: Arc<dyn SessionPolicy>,
}

/// A running listener. Dropping it does not stop it; call [`Listener::stop`]
/// or cancel the daemon's shutdown token.
pub struct Listener {
    local_addr: SocketAddr,
    /// Read at each accepted connection, so a reload changes the settings of
    /// new sessions without closing the socket.
    config: Arc<ArcSwap<ListenerConfig>>,
    stop: CancellationToken,
}

impl Listener {
    /// Bind and start accepting. `shutdown` is the daemon's signal; the
    /// listener also has its own, so a reload can stop just this one.
    pub async fn start(
        config: ListenerConfig,
        handles: Arc<ServerHandles>,
        shutdown: &CancellationToken,
    ) -> std::io::Result<Self> {
        let socket = TcpListener::bind(config.listen).await?;
        let local_addr = socket.local_addr()?;
        let stop = shutdown.child_token();
        let shared = Arc::new(ArcSwap::from_pointee(config));
        let configs = shared.clone();
        let token = stop.clone();
        tokio::spawn(async move {
            loop {
                let (stream, peer) = tokio::select! {
                    accepted = socket.accept() => match accepted {
                        Ok(pair) => pair,
                        Err(e) => {
                            tracing::warn!(error = %e, "accept failed");
                            continue;
                        }
                    },
                    _ = token.cancelled() => return,
                };
                let session = Session::new(stream, peer, local_addr, configs.load_full(), handles.clone());
                let token = token.clone();
                tokio::spawn(async move {
                    if let Err(e) = session.run(token).await {
                        tracing::debug!(%peer, error = %e, "session ended with an error");
                    }
                });
            }
        });
        tracing::info!(listen = %local_addr, "ESMTP listener started");
        Ok(Self { local_addr, config: shared, stop })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    pub fn config(&self) -> Arc<ListenerConfig> {
        self.config.load_full()
    }

    /// New settings for sessions accepted from now on.
    pub fn update(&self, config: ListenerConfig) {
        self.config.store(Arc::new(config));
    }

    /// Stop accepting; sessions in progress finish their current command.
    pub fn stop(&self) {
        self.stop.cancel();
    }
}
