//! Who may call what: trusted hosts (loopback by default) without
//! credentials; anyone else with HTTP Basic or a bearer token that the
//! policy accepts. A wrong credential gets a bare 401, whoever sends it.

use crate::error::ApiError;
use crate::state::{ApiState, AuthInfo};
use axum::extract::connect_info::Connected;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::serve::IncomingStream;
use base64::Engine;
use std::net::SocketAddr;
use std::sync::Arc;

/// The client's address, as the connection reported it.
#[derive(Debug, Clone, Copy)]
pub struct PeerAddr(pub SocketAddr);

impl Connected<IncomingStream<'_, tokio::net::TcpListener>> for PeerAddr {
    fn connect_info(stream: IncomingStream<'_, tokio::net::TcpListener>) -> Self {
        PeerAddr(*stream.remote_addr())
    }
}

impl Connected<IncomingStream<'_, crate::listener::TlsListener>> for PeerAddr {
    fn connect_info(stream: IncomingStream<'_, crate::listener::TlsListener>) -> Self {
        PeerAddr(*stream.remote_addr())
    }
}

fn unauthorized() -> Response {
    let mut response = ApiError::status(StatusCode::UNAUTHORIZED, "authentication required").into_response();
    response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Basic realm=\"petrel\""));
    response
}

enum Credential {
    Basic(String, String),
    Bearer(String),
}

fn credential(value: &HeaderValue) -> Option<Credential> {
    let text = value.to_str().ok()?;
    let (scheme, rest) = text.split_once(' ')?;
    if scheme.eq_ignore_ascii_case("basic") {
        let decoded = base64::engine::general_purpose::STANDARD.decode(rest.trim()).ok()?;
        let decoded = String::from_utf8(decoded).ok()?;
        let (user, password) = decoded.split_once(':')?;
        Some(Credential::Basic(user.to_string(), password.to_string()))
    } else if scheme.eq_ignore_ascii_case("bearer") {
        Some(Credential::Bearer(rest.trim().to_string()))
    } else {
        None
    }
}

pub async fn require_access(
    State(state): State<Arc<ApiState>>,
    ConnectInfo(PeerAddr(peer)): ConnectInfo<PeerAddr>,
    mut request: Request,
    next: Next,
) -> Response {
    let ip = match peer.ip() {
        std::net::IpAddr::V6(v6) => v6.to_ipv4_mapped().map(std::net::IpAddr::V4).unwrap_or(peer.ip()),
        v4 => v4,
    };
    let trusted = state.trusted_hosts.iter().any(|net| net.contains(&ip));
    let mut info = AuthInfo { peer_address: peer.to_string(), identity: String::new(), trusted_host: trusted };
    match request.headers().get(header::AUTHORIZATION) {
        Some(value) => {
            let verdict = match credential(value) {
                Some(Credential::Basic(user, password)) => {
                    info.identity = user.clone();
                    state.policy.validate_basic(&user, &password).await
                }
                Some(Credential::Bearer(token)) => {
                    info.identity = "bearer".into();
                    state.policy.validate_bearer(&token).await
                }
                None => Ok(false),
            };
            match verdict {
                Ok(true) => {}
                Ok(false) => return unauthorized(),
                Err(e) => {
                    tracing::error!(%peer, error = %e, "authentication policy failed");
                    return unauthorized();
                }
            }
        }
        None if trusted => {}
        None => return unauthorized(),
    }
    request.extensions_mut().insert(info);
    next.run(request).await
}
