//! `GET /api/admin/trace-smtp-server/v1` and `/trace-smtp-client/v1`: live
//! SMTP transcripts as a stream of JSON lines, one per protocol line, for
//! as long as the client stays connected. Sessions that start after the
//! request are traced. Streams never end by themselves, so they are left
//! out of the OpenAPI document (a fuzzer would wait on them forever).

use crate::error::ApiError;
use crate::state::ApiState;
use axum::body::{Body, Bytes};
use axum::extract::{Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use petrel_telemetry::TraceEvent;
use serde::Deserialize;
use std::sync::Arc;
use tokio::sync::broadcast::{Receiver, error::RecvError};

/// Which sessions to show.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TraceQuery {
    /// Only sessions with this peer (an address or a CIDR block).
    pub peer: Option<String>,
    /// Outbound only: sessions to sites whose name contains this.
    pub site: Option<String>,
}

struct Filter {
    peer: Option<ipnet::IpNet>,
    site: Option<String>,
}

impl Filter {
    fn parse(q: TraceQuery) -> Result<Self, ApiError> {
        let peer = match q.peer {
            None => None,
            Some(text) => Some(
                text.parse::<ipnet::IpNet>()
                    .or_else(|_| text.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
                    .map_err(|_| {
                        ApiError::bad_request("peer", format!("{text:?} is neither an address nor a CIDR block"))
                    })?,
            ),
        };
        Ok(Self { peer, site: q.site.map(|s| s.to_ascii_lowercase()) })
    }

    fn admits(&self, e: &TraceEvent) -> bool {
        let peer_ok = self
            .peer
            .is_none_or(|net| e.peer.parse::<std::net::SocketAddr>().is_ok_and(|addr| net.contains(&addr.ip())));
        let site_ok = self
            .site
            .as_deref()
            .is_none_or(|want| e.site.as_deref().is_some_and(|s| s.to_ascii_lowercase().contains(want)));
        peer_ok && site_ok
    }
}

fn stream(rx: Receiver<Arc<TraceEvent>>, filter: Filter) -> Response {
    let lines = futures_util::stream::unfold((rx, filter), |(mut rx, filter)| async move {
        loop {
            let line = match rx.recv().await {
                Ok(event) if filter.admits(&event) => serde_json::to_string(&*event).expect("serializable"),
                Ok(_) => continue,
                Err(RecvError::Lagged(n)) => format!("{{\"direction\":\"lagged\",\"line\":\"{n} lines dropped\"}}"),
                Err(RecvError::Closed) => return None,
            };
            return Some((Ok::<Bytes, std::io::Error>(Bytes::from(line + "\n")), (rx, filter)));
        }
    });
    ([(header::CONTENT_TYPE, "application/x-ndjson")], Body::from_stream(lines)).into_response()
}

/// Inbound sessions, as the listeners see them.
pub async fn server(State(s): State<Arc<ApiState>>, Query(q): Query<TraceQuery>) -> Result<Response, ApiError> {
    let filter = Filter::parse(q)?;
    Ok(stream(s.intake.traces().watch_server(), filter))
}

/// Outbound sessions, as delivery opens them.
pub async fn client(State(s): State<Arc<ApiState>>, Query(q): Query<TraceQuery>) -> Result<Response, ApiError> {
    let filter = Filter::parse(q)?;
    Ok(stream(s.intake.traces().watch_client(), filter))
}
