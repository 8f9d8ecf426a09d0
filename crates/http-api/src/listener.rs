//! Binding an HTTP listener (plain or TLS) and serving the router on it.

use crate::auth::{PeerAddr, require_access};
use crate::state::ApiState;
use crate::{admin, inject, openapi};
use arc_swap::ArcSwap;
use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::server::TlsStream;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

/// One `kumo.start_http_listener{...}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpListenerConfig {
    pub listen: SocketAddr,
    /// Clients allowed in without credentials.
    pub trusted_hosts: Vec<ipnet::IpNet>,
    /// Largest request body, after gzip decompression.
    pub max_request_size: usize,
    pub use_tls: bool,
    pub tls_certificate: Option<PathBuf>,
    pub tls_private_key: Option<PathBuf>,
}

impl HttpListenerConfig {
    pub fn new(listen: SocketAddr) -> Self {
        Self {
            listen,
            trusted_hosts: ["127.0.0.0/8", "::1/128"].iter().map(|n| n.parse().expect("valid")).collect(),
            max_request_size: 2 * 1024 * 1024,
            use_tls: false,
            tls_certificate: None,
            tls_private_key: None,
        }
    }
}

fn router(state: Arc<ApiState>) -> Router {
    let protected = Router::new()
        .route("/api/inject/v1", post(inject::inject))
        .route("/api/admin/suspend/v1", post(admin::suspend).delete(admin::resume))
        .route("/api/admin/suspend-ready-q/v1", post(admin::suspend_source).delete(admin::resume_source))
        .route("/api/admin/bounce/v1", post(admin::bounce))
        .route("/api/admin/rebind/v1", post(admin::rebind))
        .route("/api/admin/reload/v1", post(admin::reload))
        .route("/api/admin/bump-config-epoch", post(admin::reload))
        .route("/api/admin/queue-summary/v1", get(admin::queue_summary))
        .route("/api/admin/inspect-message/v1", get(admin::inspect))
        .route("/api/admin/route/v1", post(admin::route))
        .route("/metrics", get(admin::metrics))
        .route_layer(axum::middleware::from_fn_with_state(state.clone(), require_access));
    let public = Router::new().route("/api/check-liveness/v1", get(admin::liveness)).route(
        "/api-docs/openapi.json",
        get(|| async { ([(header::CONTENT_TYPE, "application/json")], openapi::openapi_json()).into_response() }),
    );
    protected.merge(public).layer(DefaultBodyLimit::max(state.max_request_size)).with_state(state)
}

/// A running HTTP listener. Requests go to the router current when they
/// arrive, so a reload can change its settings without closing the socket.
pub struct HttpListener {
    local_addr: SocketAddr,
    config: HttpListenerConfig,
    router: Arc<ArcSwap<Router>>,
    stop: CancellationToken,
}

impl HttpListener {
    pub async fn start(
        config: &HttpListenerConfig,
        state: Arc<ApiState>,
        shutdown: &CancellationToken,
    ) -> std::io::Result<Self> {
        let tcp = TcpListener::bind(config.listen).await?;
        let local_addr = tcp.local_addr()?;
        let stop = shutdown.child_token();
        let current = Arc::new(ArcSwap::from_pointee(router(state)));
        let routers = current.clone();
        let app =
            Router::new().fallback_service(tower::service_fn(move |request: axum::extract::Request| {
                let router = routers.load_full();
                async move {
                    Ok::<_, std::convert::Infallible>(Router::clone(&router).oneshot(request).await.into_response())
                }
            }));
        let token = stop.clone();
        if config.use_tls {
            let listener = TlsListener::start(tcp, tls_config(config)?, token.clone());
            let service = app.into_make_service_with_connect_info::<PeerAddr>();
            tokio::spawn(async move {
                let _ = axum::serve(listener, service).with_graceful_shutdown(token.cancelled_owned()).await;
            });
        } else {
            let service = app.into_make_service_with_connect_info::<PeerAddr>();
            tokio::spawn(async move {
                let _ = axum::serve(tcp, service).with_graceful_shutdown(token.cancelled_owned()).await;
            });
        }
        tracing::info!(listen = %local_addr, tls = config.use_tls, "HTTP listener started");
        Ok(Self { local_addr, config: config.clone(), router: current, stop })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    pub fn config(&self) -> &HttpListenerConfig {
        &self.config
    }

    /// Serve new requests with `state`; TLS settings cannot change this way.
    pub fn update(&mut self, config: &HttpListenerConfig, state: Arc<ApiState>) {
        self.router.store(Arc::new(router(state)));
        self.config = config.clone();
    }

    pub fn stop(&self) {
        self.stop.cancel();
    }
}

fn tls_config(config: &HttpListenerConfig) -> std::io::Result<Arc<rustls::ServerConfig>> {
    let invalid = |e: String| std::io::Error::new(std::io::ErrorKind::InvalidInput, e);
    let (Some(cert), Some(key)) = (&config.tls_certificate, &config.tls_private_key) else {
        return Err(invalid("use_tls needs tls_certificate and tls_private_key".into()));
    };
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .and_then(|i| i.collect())
        .map_err(|e| invalid(format!("{}: {e}", cert.display())))?;
    let key = PrivateKeyDer::from_pem_file(key).map_err(|e| invalid(format!("{}: {e}", key.display())))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let server = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| invalid(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| invalid(e.to_string()))?;
    Ok(Arc::new(server))
}

/// Accepts TCP and completes TLS handshakes in their own tasks, so a slow
/// client never holds up the next one.
pub struct TlsListener {
    ready: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    local: SocketAddr,
}

impl TlsListener {
    fn start(tcp: TcpListener, config: Arc<rustls::ServerConfig>, stop: CancellationToken) -> Self {
        let local = tcp.local_addr().expect("bound");
        let (tx, ready) = mpsc::channel(64);
        let acceptor = tokio_rustls::TlsAcceptor::from(config);
        tokio::spawn(async move {
            loop {
                let (stream, peer) = tokio::select! {
                    accepted = tcp.accept() => match accepted {
                        Ok(pair) => pair,
                        Err(_) => continue,
                    },
                    _ = stop.cancelled() => return,
                };
                let (acceptor, tx) = (acceptor.clone(), tx.clone());
                tokio::spawn(async move {
                    if let Ok(Ok(tls)) = tokio::time::timeout(Duration::from_secs(10), acceptor.accept(stream)).await {
                        let _ = tx.send((tls, peer)).await;
                    }
                });
            }
        });
        Self { ready, local }
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.ready.recv().await {
            Some(pair) => pair,
            // The accept loop stopped: wait for the graceful shutdown.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.local)
    }
}
