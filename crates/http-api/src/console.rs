//! The operator console: static pages embedded in the binary (served at
//! `/` under the admin API's trust rules, so nothing is fetched from
//! elsewhere and no cookie is ever set) and the two endpoints only it needs.
//! Its actions are the admin API's own JSON calls: a page on another site
//! cannot make them, because a cross-origin JSON request needs a CORS
//! preflight this listener never grants.

use crate::console_model::{ConsoleSnapshot, MessageRecords, RecordsQuery};
use crate::error::ApiError;
use crate::state::ApiState;
use axum::Json;
use axum::extract::{Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use std::sync::Arc;

type Shared = State<Arc<ApiState>>;

const INDEX: &str = include_str!("../console/index.html");
const SCRIPT: &str = include_str!("../console/app.js");
const STYLE: &str = include_str!("../console/app.css");

/// Scripts and styles only from this listener, and never in a frame.
fn page(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CONTENT_SECURITY_POLICY, "default-src 'self'; frame-ancestors 'none'"),
            (header::X_FRAME_OPTIONS, "DENY"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response()
}

/// `GET /`.
pub async fn index() -> Response {
    page("text/html; charset=utf-8", INDEX)
}

/// `GET /console/app.js`.
pub async fn script() -> Response {
    page("text/javascript; charset=utf-8", SCRIPT)
}

/// `GET /console/app.css`.
pub async fn style() -> Response {
    page("text/css; charset=utf-8", STYLE)
}

#[utoipa::path(get, path = "/api/admin/console/v1",
    responses((status = 401, description = "Authentication required"), (status = 200, body = ConsoleSnapshot)))]
pub async fn snapshot(State(s): Shared) -> Json<ConsoleSnapshot> {
    Json(s.admin.console())
}

/// Most records one answer carries.
const MAX_RECORDS: usize = 10_000;

#[utoipa::path(get, path = "/api/admin/message-records/v1", params(RecordsQuery),
    responses((status = 401, description = "Authentication required"), (status = 200, body = MessageRecords), (status = 400, description = "Neither id nor address, or a bad limit")))]
pub async fn records(State(s): Shared, Query(q): Query<RecordsQuery>) -> Result<Json<MessageRecords>, ApiError> {
    if q.id.is_none() && q.address.is_none() {
        return Err(ApiError::bad_request("id", "give a spool id or an address"));
    }
    if q.limit.is_some_and(|l| l == 0 || l > MAX_RECORDS) {
        return Err(ApiError::bad_request("limit", format!("limit must be between 1 and {MAX_RECORDS}")));
    }
    Ok(Json(MessageRecords { records: s.admin.message_records(&q).await }))
}
