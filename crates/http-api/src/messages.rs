//! Admin endpoints for single messages: list what waits, flush queues,
//! hold / release / delete / bounce by spool id.

use crate::error::{ApiError, parse_json};
use crate::state::{ApiState, MessageActionRequest, MessageActionResponse, MessageEntry, QueueSelector};
use axum::Json;
use axum::body::Bytes;
use axum::extract::{Query, State};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use utoipa::{IntoParams, ToSchema};

type Shared = State<Arc<ApiState>>;

/// Most rows one listing returns.
pub const MAX_LIST: usize = 100_000;

/// Which messages to list.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    /// A scheduled queue by name.
    pub queue: Option<String>,
    /// Queues of this recipient domain.
    pub domain: Option<String>,
    /// Queues of this tenant.
    pub tenant: Option<String>,
    /// Queues of this campaign.
    pub campaign: Option<String>,
    /// At most this many rows (1000 by default).
    pub limit: Option<usize>,
}

/// `GET /api/admin/messages/v1`.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct MessageList {
    /// Oldest first.
    pub messages: Vec<MessageEntry>,
}

#[utoipa::path(get, path = "/api/admin/messages/v1", params(ListQuery),
    responses((status = 401, description = "Authentication required"), (status = 200, body = MessageList), (status = 400, description = "Bad query")))]
pub async fn list(State(s): Shared, Query(q): Query<ListQuery>) -> Result<Json<MessageList>, ApiError> {
    let limit = q.limit.unwrap_or(1000);
    if limit == 0 || limit > MAX_LIST {
        return Err(ApiError::bad_request("limit", format!("limit must be between 1 and {MAX_LIST}")));
    }
    let selector = QueueSelector { queue: q.queue, domain: q.domain, tenant: q.tenant, campaign: q.campaign };
    Ok(Json(MessageList { messages: s.admin.list_messages(&selector, limit) }))
}

/// How many messages a flush made due.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Flushed {
    /// Messages now due.
    pub flushed: usize,
}

#[utoipa::path(post, path = "/api/admin/flush/v1", request_body = QueueSelector,
    responses((status = 401, description = "Authentication required"), (status = 415, description = "Not sent as application/json"), (status = 200, body = Flushed), (status = 400, description = "Bad request")))]
pub async fn flush(State(s): Shared, body: Bytes) -> Result<Json<Flushed>, ApiError> {
    // An empty selector flushes every queue, as `postqueue -f` does.
    let selector: QueueSelector = parse_json(&body)?;
    Ok(Json(Flushed { flushed: s.admin.flush(&selector) }))
}

#[utoipa::path(post, path = "/api/admin/message-action/v1", request_body = MessageActionRequest,
    responses((status = 401, description = "Authentication required"), (status = 415, description = "Not sent as application/json"), (status = 200, body = MessageActionResponse), (status = 400, description = "Bad request")))]
pub async fn action(State(s): Shared, body: Bytes) -> Result<Json<MessageActionResponse>, ApiError> {
    let request: MessageActionRequest = parse_json(&body)?;
    if request.ids.is_empty() {
        return Err(ApiError::bad_request("ids", "name at least one spool id"));
    }
    if request.ids.len() > MAX_LIST {
        return Err(ApiError::bad_request("ids", format!("at most {MAX_LIST} ids per request")));
    }
    if request.action == crate::state::MessageActionKind::Bounce && request.reason.is_none() {
        return Err(ApiError::bad_request("reason", "a bounce needs a reason"));
    }
    Ok(Json(s.admin.message_action(&request).await))
}
