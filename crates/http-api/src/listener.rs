//! Binding an HTTP listener (plain or TLS) and serving the router on it.

use crate::auth::{refuse_oversized, require_access, require_json};
use crate::serve::{Accept, HttpLimits, Io, serve};
use crate::state::ApiState;
use crate::{admin, console, inject, messages, openapi, trace};
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
    /// Where to listen.
    pub listen: SocketAddr,
    /// Clients allowed in without credentials.
    pub trusted_hosts: Vec<ipnet::IpNet>,
    /// Largest request body, after gzip decompression.
    pub max_request_size: usize,
    /// Serve HTTPS with the certificate and key below.
    pub use_tls: bool,
    /// PEM certificate chain.
    pub tls_certificate: Option<PathBuf>,
    /// PEM private key.
    pub tls_private_key: Option<PathBuf>,
    /// A hash of the certificate and key files' contents, so a reload sees
    /// a renewed certificate at the same paths.
    pub tls_fingerprint: u64,
    /// Connection cap and deadlines.
    pub limits: HttpLimits,
}

impl HttpListenerConfig {
    /// Defaults: loopback trusted, 2 MiB bodies, no TLS, default limits.
    pub fn new(listen: SocketAddr) -> Self {
        Self {
            listen,
            trusted_hosts: ["127.0.0.0/8", "::1/128"].iter().map(|n| n.parse().expect("valid")).collect(),
            max_request_size: 2 * 1024 * 1024,
            use_tls: false,
            tls_certificate: None,
            tls_private_key: None,
            tls_fingerprint: 0,
            limits: HttpLimits::default(),
        }
    }
}

fn router(state: Arc<ApiState>) -> Router {
    let protected = Router::new()
        .route("/api/inject/v1", post(inject::inject))
        .route("/api/admin/suspend/v1", post(admin::suspend).delete(admin::resume).get(admin::list_suspensions))
        .route("/api/admin/suspend-ready-q/v1", post(admin::suspend_source).delete(admin::resume_source))
        .route("/api/admin/bounce/v1", post(admin::bounce))
        .route("/api/admin/rebind/v1", post(admin::rebind))
        .route("/api/admin/reload/v1", post(admin::reload))
        .route("/api/admin/bump-config-epoch", post(admin::reload))
        .route("/api/admin/queue-summary/v1", get(admin::queue_summary))
        .route("/api/admin/inspect-message/v1", get(admin::inspect))
        .route("/api/admin/route/v1", post(admin::route))
        .route("/api/admin/messages/v1", get(messages::list))
        .route("/api/admin/flush/v1", post(messages::flush))
        .route("/api/admin/message-action/v1", post(messages::action))
        .route("/metrics", get(admin::metrics))
        .route("/api/admin/console/v1", get(console::snapshot))
        .route("/api/admin/trace-smtp-server/v1", get(trace::server))
        .route("/api/admin/trace-smtp-client/v1", get(trace::client))
        .route("/api/admin/message-records/v1", get(console::records))
        .route("/", get(console::index))
        .route("/console/app.js", get(console::script))
        .route("/console/app.css", get(console::style))
        .route_layer(axum::middleware::from_fn(require_json))
        .route_layer(axum::middleware::from_fn_with_state(state.clone(), require_access));
    let public = Router::new().route("/api/check-liveness/v1", get(admin::liveness)).route(
        "/api-docs/openapi.json",
        get(|| async { ([(header::CONTENT_TYPE, "application/json")], openapi::openapi_json()).into_response() }),
    );
    let limit = state.max_request_size;
    protected
        .merge(public)
        .layer(DefaultBodyLimit::max(limit))
        .layer(axum::middleware::from_fn_with_state(limit, refuse_oversized))
        .with_state(state)
}

/// A listener's TLS identity, as [`HttpListener::prepare`] reads it.
pub type TlsIdentity = Arc<rustls::ServerConfig>;

/// A running HTTP listener. Requests go to the router current when they
/// arrive, so a reload can change its settings without closing the socket;
/// a renewed certificate is used for the next handshake.
pub struct HttpListener {
    local_addr: SocketAddr,
    config: HttpListenerConfig,
    router: Arc<ArcSwap<Router>>,
    limits: Arc<ArcSwap<HttpLimits>>,
    tls: Option<Arc<ArcSwap<tokio_rustls::TlsAcceptor>>>,
    stop: CancellationToken,
}

/// Plain TCP connections.
struct PlainAccept(TcpListener);

impl Accept for PlainAccept {
    async fn next(&mut self) -> Option<(Box<dyn Io>, SocketAddr)> {
        loop {
            match self.0.accept().await {
                Ok((stream, peer)) => return Some((Box::new(stream), peer)),
                Err(e) => {
                    tracing::warn!(error = %e, "HTTP accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    }
}

impl Accept for TlsListener {
    async fn next(&mut self) -> Option<(Box<dyn Io>, SocketAddr)> {
        let (stream, peer) = self.ready.recv().await?;
        Some((Box::new(stream), peer))
    }
}

impl HttpListener {
    /// Bind and serve with `state` until `shutdown` (or [`HttpListener::stop`]).
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
        let limits = Arc::new(ArcSwap::from_pointee(config.limits));
        let token = stop.clone();
        let tls = if config.use_tls {
            let acceptor = Arc::new(ArcSwap::from_pointee(tokio_rustls::TlsAcceptor::from(tls_config(config)?)));
            let listener = TlsListener::start(tcp, acceptor.clone(), config.limits.header_read_timeout, token.clone());
            tokio::spawn(serve(listener, app, limits.clone(), token));
            Some(acceptor)
        } else {
            tokio::spawn(serve(PlainAccept(tcp), app, limits.clone(), token));
            None
        };
        tracing::info!(listen = %local_addr, tls = config.use_tls, "HTTP listener started");
        Ok(Self { local_addr, config: config.clone(), router: current, limits, tls, stop })
    }

    /// The bound address (the real port when the policy said 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The settings in force.
    pub fn config(&self) -> &HttpListenerConfig {
        &self.config
    }

    /// Check new settings without applying them: the TLS identity they
    /// need (read again from its files), or why they cannot apply. Turning
    /// TLS on or off takes a restart.
    pub fn prepare(&self, config: &HttpListenerConfig) -> Result<Option<TlsIdentity>, String> {
        if config.use_tls != self.config.use_tls {
            return Err(format!("HTTP listener {}: turning use_tls on or off takes a restart", config.listen));
        }
        let same_identity = config.tls_certificate == self.config.tls_certificate
            && config.tls_private_key == self.config.tls_private_key
            && config.tls_fingerprint == self.config.tls_fingerprint;
        if !config.use_tls || same_identity {
            return Ok(None);
        }
        tls_config(config).map(Some).map_err(|e| format!("HTTP listener {}: {e}", config.listen))
    }

    /// Serve new requests with `state`, new connections with the limits
    /// and the TLS identity `prepare` returned.
    pub fn update(
        &mut self,
        config: &HttpListenerConfig,
        state: Arc<ApiState>,
        tls: Option<Arc<rustls::ServerConfig>>,
    ) {
        self.router.store(Arc::new(router(state)));
        self.limits.store(Arc::new(config.limits));
        if let (Some(current), Some(next)) = (&self.tls, tls) {
            current.store(Arc::new(tokio_rustls::TlsAcceptor::from(next)));
        }
        self.config = config.clone();
    }

    /// Stop accepting; connections in progress get a graceful close.
    pub fn stop(&self) {
        self.stop.cancel();
    }
}

fn tls_config(config: &HttpListenerConfig) -> std::io::Result<Arc<rustls::ServerConfig>> {
    let invalid = |e: String| std::io::Error::new(std::io::ErrorKind::InvalidInput, e);
    let (certs, key) = match (&config.tls_certificate, &config.tls_private_key) {
        (Some(cert), Some(key)) => {
            let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
                .and_then(|i| i.collect())
                .map_err(|e| invalid(format!("{}: {e}", cert.display())))?;
            let key = PrivateKeyDer::from_pem_file(key).map_err(|e| invalid(format!("{}: {e}", key.display())))?;
            (certs, key)
        }
        // As KumoMTA does: without files, a self-signed certificate for
        // the listening address (clients that pin or skip verification).
        (None, None) => {
            let names = vec!["localhost".to_string(), config.listen.ip().to_string()];
            let generated = rcgen::generate_simple_self_signed(names)
                .map_err(|e| invalid(format!("cannot generate a certificate: {e}")))?;
            let key = PrivateKeyDer::Pkcs8(generated.signing_key.serialize_der().into());
            (vec![generated.cert.der().clone()], key)
        }
        _ => return Err(invalid("tls_certificate and tls_private_key go together".into())),
    };
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
}

impl TlsListener {
    fn start(
        tcp: TcpListener,
        acceptor: Arc<ArcSwap<tokio_rustls::TlsAcceptor>>,
        handshake_timeout: Duration,
        stop: CancellationToken,
    ) -> Self {
        let (tx, ready) = mpsc::channel(64);
        tokio::spawn(async move {
            loop {
                let (stream, peer) = tokio::select! {
                    accepted = tcp.accept() => match accepted {
                        Ok(pair) => pair,
                        Err(_) => continue,
                    },
                    _ = stop.cancelled() => return,
                };
                let (acceptor, tx) = (acceptor.load_full(), tx.clone());
                tokio::spawn(async move {
                    if let Ok(Ok(tls)) = tokio::time::timeout(handshake_timeout, acceptor.accept(stream)).await {
                        let _ = tx.send((tls, peer)).await;
                    }
                });
            }
        });
        Self { ready }
    }
}
