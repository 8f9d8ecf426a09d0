//! Admin endpoints: suspend and resume, bounce, rebind, reload, queue
//! summary, inspect, route; plus metrics and liveness.

use crate::error::{ApiError, parse_json};
use crate::state::{
    ApiState, MessageInfo, QueueSelector, QueueSummary, RebindRequest, ReloadOutcome, ResumeRequest, RouteExplanation,
    RouteRequest, SourceSuspendRequest, SuspendRequest, Suspended, SuspensionInfo,
};
use axum::Json;
use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use utoipa::ToSchema;

type Shared = State<Arc<ApiState>>;

#[derive(Debug, Serialize, ToSchema)]
pub struct Done {
    /// How many messages or queues the action touched, where it counts.
    pub affected: Option<usize>,
}

fn done(affected: Option<usize>) -> Json<Done> {
    Json(Done { affected })
}

#[utoipa::path(post, path = "/api/admin/suspend/v1", request_body = SuspendRequest,
    responses((status = 401, description = "Authentication required"), (status = 415, description = "Not sent as application/json"), (status = 200, body = Suspended), (status = 400, description = "Bad selector or duration")))]
pub async fn suspend(State(s): Shared, body: Bytes) -> Result<Json<Suspended>, ApiError> {
    let request: SuspendRequest = parse_json(&body)?;
    if request.queue_names.as_ref().is_none_or(|n| n.is_empty()) {
        check_selector(&request.selector())?;
    }
    let id = s.admin.suspend(&request).map_err(|e| ApiError::bad_request("duration", e))?;
    Ok(Json(Suspended { id }))
}

#[utoipa::path(delete, path = "/api/admin/suspend/v1", request_body = ResumeRequest,
    responses((status = 401, description = "Authentication required"), (status = 415, description = "Not sent as application/json"), (status = 200, body = Done), (status = 400, description = "Bad selector")))]
pub async fn resume(State(s): Shared, body: Bytes) -> Result<Json<Done>, ApiError> {
    let request: ResumeRequest = parse_json(&body)?;
    if request.id.is_none() {
        check_selector(&request.selector())?;
    }
    Ok(done(Some(s.admin.resume(&request))))
}

#[utoipa::path(get, path = "/api/admin/suspend/v1",
    responses((status = 401, description = "Authentication required"), (status = 200, body = Vec<SuspensionInfo>)))]
pub async fn list_suspensions(State(s): Shared) -> Json<Vec<SuspensionInfo>> {
    Json(s.admin.suspensions())
}

fn check_selector(selector: &QueueSelector) -> Result<(), ApiError> {
    let empty = selector.queue.is_none()
        && selector.domain.is_none()
        && selector.tenant.is_none()
        && selector.campaign.is_none();
    if empty {
        return Err(ApiError::bad_request("queue", "give a queue name or at least one of domain, tenant, campaign"));
    }
    Ok(())
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SourceRequest {
    /// The egress source name.
    pub name: String,
}

#[utoipa::path(post, path = "/api/admin/suspend-ready-q/v1", request_body = SourceSuspendRequest,
    responses((status = 401, description = "Authentication required"), (status = 415, description = "Not sent as application/json"), (status = 200, body = Suspended), (status = 400, description = "Bad request"), (status = 404, description = "No such egress source")))]
pub async fn suspend_source(State(s): Shared, body: Bytes) -> Result<Json<Suspended>, ApiError> {
    let request: SourceSuspendRequest = parse_json(&body)?;
    match s.admin.suspend_source(&request).await {
        Ok(Some(id)) => Ok(Json(Suspended { id })),
        Ok(None) => Err(ApiError::status(StatusCode::NOT_FOUND, format!("no egress source named {:?}", request.name))),
        Err(e) => Err(ApiError::bad_request("duration", e)),
    }
}

#[utoipa::path(delete, path = "/api/admin/suspend-ready-q/v1", request_body = SourceRequest,
    responses((status = 401, description = "Authentication required"), (status = 415, description = "Not sent as application/json"), (status = 200, body = Done), (status = 400, description = "Bad request"), (status = 404, description = "No such egress source")))]
pub async fn resume_source(State(s): Shared, body: Bytes) -> Result<Json<Done>, ApiError> {
    let request: SourceRequest = parse_json(&body)?;
    if !s.admin.resume_source(&request.name).await {
        return Err(ApiError::status(StatusCode::NOT_FOUND, format!("no egress source named {:?}", request.name)));
    }
    Ok(done(None))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BounceRequest {
    pub queue: Option<String>,
    pub domain: Option<String>,
    pub tenant: Option<String>,
    pub campaign: Option<String>,
    pub reason: String,
}

#[utoipa::path(post, path = "/api/admin/bounce/v1", request_body = BounceRequest,
    responses((status = 401, description = "Authentication required"), (status = 415, description = "Not sent as application/json"), (status = 200, body = Done), (status = 400, description = "Bad request")))]
pub async fn bounce(State(s): Shared, body: Bytes) -> Result<Json<Done>, ApiError> {
    let request: BounceRequest = parse_json(&body)?;
    let selector = QueueSelector {
        queue: request.queue,
        domain: request.domain,
        tenant: request.tenant,
        campaign: request.campaign,
    };
    check_selector(&selector)?;
    Ok(done(Some(s.admin.bounce(&selector, &request.reason).await)))
}

#[utoipa::path(post, path = "/api/admin/rebind/v1", request_body = RebindRequest,
    responses((status = 401, description = "Authentication required"), (status = 415, description = "Not sent as application/json"), (status = 200, body = Done), (status = 400, description = "Bad request"), (status = 422, description = "No such egress pool; nothing was moved")))]
pub async fn rebind(State(s): Shared, body: Bytes) -> Result<Json<Done>, ApiError> {
    let request: RebindRequest = parse_json(&body)?;
    check_selector(&request.selector())?;
    if request.to_queue.is_some() == request.to_pool.is_some() {
        return Err(ApiError::bad_request("to_pool", "give exactly one of to_queue or to_pool"));
    }
    match s.admin.rebind(&request).await {
        Ok(moved) => Ok(done(Some(moved))),
        Err(e) => Err(ApiError { status: StatusCode::UNPROCESSABLE_ENTITY, message: e, field: Some("to_pool".into()) }),
    }
}

#[utoipa::path(post, path = "/api/admin/reload/v1",
    responses((status = 401, description = "Authentication required"), (status = 415, description = "Not sent as application/json"), (status = 200, body = ReloadOutcome), (status = 422, body = ReloadOutcome, description = "The new policy was refused; the old one runs on"),
              (status = 501, description = "Hot reload is not available")))]
pub async fn reload(State(s): Shared) -> Response {
    match s.admin.reload().await {
        None => ApiError::status(
            StatusCode::NOT_IMPLEMENTED,
            "hot reload is not available yet; restart to apply a new policy",
        )
        .into_response(),
        Some(outcome) if outcome.success => Json(outcome).into_response(),
        Some(outcome) => (StatusCode::UNPROCESSABLE_ENTITY, Json(outcome)).into_response(),
    }
}

#[utoipa::path(get, path = "/api/admin/queue-summary/v1", responses((status = 401, description = "Authentication required"), (status = 200, body = QueueSummary)))]
pub async fn queue_summary(State(s): Shared) -> Json<QueueSummary> {
    Json(s.admin.queue_summary())
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct InspectQuery {
    /// The spool id.
    pub id: String,
    /// Include the message text.
    #[serde(default)]
    pub want_body: bool,
}

#[utoipa::path(get, path = "/api/admin/inspect-message/v1", params(InspectQuery),
    responses((status = 401, description = "Authentication required"), (status = 200, body = MessageInfo), (status = 400, description = "Missing or malformed id"),
              (status = 404, description = "Not in the spool")))]
pub async fn inspect(State(s): Shared, Query(q): Query<InspectQuery>) -> Result<Json<MessageInfo>, ApiError> {
    match s.admin.inspect(&q.id, q.want_body).await {
        Some(info) => Ok(Json(info)),
        None => Err(ApiError::status(StatusCode::NOT_FOUND, format!("no message {} in the spool", q.id))),
    }
}

#[utoipa::path(post, path = "/api/admin/route/v1", request_body = RouteRequest,
    responses((status = 401, description = "Authentication required"), (status = 415, description = "Not sent as application/json"), (status = 200, body = RouteExplanation), (status = 400, description = "Bad request or no route")))]
pub async fn route(State(s): Shared, body: Bytes) -> Result<Json<RouteExplanation>, ApiError> {
    let request: RouteRequest = parse_json(&body)?;
    s.admin.route(&request).await.map(Json).map_err(|e| ApiError::bad_request("", e))
}

#[utoipa::path(get, path = "/metrics", responses((status = 401, description = "Authentication required"), (status = 200, description = "Prometheus text format", content_type = "text/plain")))]
pub async fn metrics(State(s): Shared) -> Response {
    let summary = s.admin.queue_summary();
    let m = s.logger.metrics();
    m.scheduled_messages.set(summary.scheduled.iter().map(|q| q.messages as i64).sum());
    m.ready_messages.set(summary.ready.iter().map(|q| q.messages as i64).sum());
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], m.render()).into_response()
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Liveness {
    pub status: String,
}

#[utoipa::path(get, path = "/api/check-liveness/v1",
    responses((status = 200, body = Liveness), (status = 503, body = Liveness, description = "The spool cannot write")))]
pub async fn liveness(State(s): Shared) -> Response {
    if s.intake.accepting() {
        Json(Liveness { status: "ok".into() }).into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, Json(Liveness { status: "spool cannot write".into() })).into_response()
    }
}
