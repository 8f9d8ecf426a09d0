//! Who may call what: trusted hosts (loopback by default) without
//! credentials; anyone else with HTTP Basic or a bearer token that the
//! policy accepts. A wrong credential gets a bare 401, whoever sends it.

use crate::error::ApiError;
use crate::state::{ApiState, AuthInfo};
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::Engine;
use std::net::SocketAddr;
use std::sync::Arc;

/// The client's address, as the connection reported it.
#[derive(Debug, Clone, Copy)]
pub struct PeerAddr(pub SocketAddr);

/// Requests that change state must say they carry JSON. A web page can
/// make a browser send a form, `text/plain` or multipart POST to any
/// address without asking first (no CORS preflight); it cannot send
/// `application/json` that way. So no page a logged-in operator visits can
/// act on the API through their browser (CSRF).
pub async fn require_json(request: Request, next: Next) -> Response {
    let changes_state = matches!(
        *request.method(),
        axum::http::Method::POST | axum::http::Method::PUT | axum::http::Method::PATCH | axum::http::Method::DELETE
    );
    let is_json = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|essence| essence.trim().eq_ignore_ascii_case("application/json"));
    if changes_state && !is_json {
        let message = "requests that change state must be sent with Content-Type: application/json";
        return ApiError::status(StatusCode::UNSUPPORTED_MEDIA_TYPE, message).into_response();
    }
    next.run(request).await
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

/// A body declared larger than the limit is refused with `413` before any
/// handler runs. The client is still sending it, so the body is read and
/// thrown away first (up to a bound, for a few seconds): closing at once
/// would reset the connection and the client would see a broken pipe, not
/// the reply. Beyond the bound, the connection is closed after the reply.
pub async fn refuse_oversized(
    axum::extract::State(limit): axum::extract::State<usize>,
    request: Request,
    next: Next,
) -> Response {
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    let Some(declared) = declared.filter(|n| *n > limit as u64) else {
        return next.run(request).await;
    };
    let bound = (limit as u64).saturating_mul(8).max(16 << 20);
    if declared <= bound {
        let body = request.into_body();
        let _ =
            tokio::time::timeout(std::time::Duration::from_secs(5), axum::body::to_bytes(body, bound as usize)).await;
    }
    let message = format!("the body ({declared} bytes) exceeds the {limit} byte limit");
    let mut response = ApiError::status(StatusCode::PAYLOAD_TOO_LARGE, message).into_response();
    response.headers_mut().insert(header::CONNECTION, header::HeaderValue::from_static("close"));
    response
}
