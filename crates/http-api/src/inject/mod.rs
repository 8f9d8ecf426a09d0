//! `POST /api/inject/v1`, in KumoMTA's request shape.
//!
//! Everything is validated and every message built before anything is
//! stored, so a bad request leaves nothing behind; accepted messages are
//! spooled durably, in one batch, before the response counts them.

mod build;

use crate::error::{ApiError, parse_json};
use crate::state::{ApiState, AuthInfo, PolicyError};
use axum::Json;
use axum::body::Bytes;
use axum::extract::{Extension, State};
use axum::http::{HeaderMap, StatusCode, header};
use petrel_telemetry::ResponseInfo;
use serde::{Deserialize, Serialize};
use std::io::Read;
use std::sync::Arc;
use utoipa::ToSchema;

pub use build::build_messages;

type Substitutions = serde_json::Map<String, serde_json::Value>;

/// `POST /api/inject/v1`: one message per recipient, from a template.
#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct InjectRequest {
    /// The envelope sender (`MAIL FROM`); empty for a null sender.
    pub envelope_sender: String,
    /// Who gets a copy, each with their own substitutions.
    pub recipients: Vec<InjectRecipient>,
    /// The message: a complete RFC 5322 template, or parts to build one.
    pub content: Content,
    /// Template variables for every recipient.
    #[serde(default)]
    #[schema(value_type = Object)]
    pub substitutions: Substitutions,
}

#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct InjectRecipient {
    pub email: String,
    pub name: Option<String>,
    /// Template variables for this recipient, over the global ones.
    #[serde(default)]
    #[schema(value_type = Object)]
    pub substitutions: Substitutions,
}

/// A complete RFC 5322 message (a template), or parts to build one from.
#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
#[serde(untagged)]
pub enum Content {
    Raw(String),
    Builder(ContentBuilder),
}

#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ContentBuilder {
    pub subject: Option<String>,
    pub from: Option<NamedAddress>,
    pub reply_to: Option<NamedAddress>,
    #[serde(default)]
    pub headers: std::collections::BTreeMap<String, String>,
    pub text_body: Option<String>,
    pub html_body: Option<String>,
    #[serde(default)]
    pub attachments: Vec<Attachment>,
}

#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NamedAddress {
    pub email: String,
    pub name: Option<String>,
}

#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Attachment {
    pub data: String,
    /// `data` is base64 (binary content).
    #[serde(default)]
    pub base64: bool,
    pub content_type: String,
    pub file_name: Option<String>,
}

/// What an injection did, per KumoMTA's response shape.
#[derive(Debug, Clone, Default, Deserialize, Serialize, ToSchema)]
pub struct InjectResponse {
    /// Messages spooled.
    pub success_count: usize,
    /// Recipients refused (by the policy) or failed.
    pub fail_count: usize,
    /// Those recipients.
    pub failed_recipients: Vec<String>,
    /// Why, one line each.
    pub errors: Vec<String>,
    /// Petrel: the spool id of each message spooled, in recipient order
    /// (what `petrel inspect` and the console's message page take).
    pub ids: Vec<String>,
}

/// The body, gunzipped when sent with `Content-Encoding: gzip`; the size
/// limit applies to what comes out.
fn decode_body(headers: &HeaderMap, body: Bytes, limit: usize) -> Result<Vec<u8>, ApiError> {
    let gzip = headers
        .get(header::CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("gzip"));
    if !gzip {
        return Ok(body.to_vec());
    }
    let mut out = Vec::new();
    let decoder = flate2::read::GzDecoder::new(&body[..]);
    decoder
        .take(limit as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|e| ApiError::bad_request("", format!("the gzip body does not decompress: {e}")))?;
    if out.len() > limit {
        let message = format!("the decompressed body exceeds {limit} bytes");
        return Err(ApiError::status(StatusCode::PAYLOAD_TOO_LARGE, message));
    }
    Ok(out)
}

#[utoipa::path(
    post,
    path = "/api/inject/v1",
    request_body = InjectRequest,
    responses(
        (status = 401, description = "Authentication required"),
        (status = 415, description = "Not sent as application/json"),
        (status = 200, description = "Messages spooled; failures listed", body = InjectResponse),
        (status = 400, description = "Malformed request; the body names the field"),
        (status = 413, description = "Body too large (after decompression)"),
        (status = 503, description = "The spool cannot accept messages now"),
        (status = 507, description = "The spool is below its free-space reserve"),
    )
)]
pub async fn inject(
    State(state): State<Arc<ApiState>>,
    Extension(auth): Extension<AuthInfo>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<InjectResponse>, ApiError> {
    let body = decode_body(&headers, body, state.max_request_size)?;
    let request: InjectRequest = parse_json(&body)?;
    let messages = build_messages(&request)?;
    let mut response = InjectResponse::default();
    let mut accepted = Vec::with_capacity(messages.len());
    for mut message in messages {
        match state.policy.message_generated(&mut message, &auth).await {
            Ok(()) => accepted.push(message),
            Err(e) => {
                response.failed_recipients.push(message.recipient.to_string());
                response.errors.push(match &e {
                    PolicyError::Reject { code, text } => format!("{}: {code} {text}", message.recipient),
                    PolicyError::Failed(_) => format!("{}: policy error, try again later", message.recipient),
                });
                if let PolicyError::Failed(detail) = e {
                    tracing::error!(peer = %auth.peer_address, error = %detail, "http_message_generated failed");
                }
            }
        }
    }
    let from = petrel_queue::ReceptionInfo {
        peer_address: auth.peer_address.clone(),
        peer_name: String::new(),
        protocol: "HTTP".into(),
        tls: None,
    };
    let ok = ResponseInfo { code: 250, enhanced_code: Some("2.0.0".into()), content: "injected".into(), command: None };
    let count = accepted.len();
    let ids: Vec<String> = accepted.iter().map(|m| m.id.to_string()).collect();
    if let Err(e) = state.intake.admit(accepted, &from, &ok).await {
        tracing::error!(error = %e, "cannot spool injected messages");
        return Err(match e {
            petrel_spool::SpoolError::NoSpace => {
                ApiError::status(StatusCode::INSUFFICIENT_STORAGE, "the spool is below its free-space reserve")
            }
            _ => ApiError::status(StatusCode::SERVICE_UNAVAILABLE, "the spool cannot accept messages now"),
        });
    }
    response.success_count += count;
    response.ids = ids;
    response.fail_count = response.failed_recipients.len();
    Ok(Json(response))
}
