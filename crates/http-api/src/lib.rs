//! The HTTP API (axum): message injection (`/api/inject/v1`), the admin
//! endpoints, Prometheus metrics, liveness, and the OpenAPI document that
//! describes them. Policy decisions reach it through [`InjectPolicy`];
//! operator actions through [`AdminOps`], which the daemon implements.

// Every public item is documented: the API's types are its OpenAPI schema.

mod admin;
mod auth;
mod console;
mod console_model;
mod error;
mod inject;
mod listener;
mod messages;
mod openapi;
mod serve;
mod state;
mod trace;

pub use console_model::{
    ActivityBucket, ConsolePool, ConsolePoolEntry, ConsoleSnapshot, ConsoleSource, MessageRecords, PoolWeight,
    RecordsQuery,
};
pub use error::ApiError;
pub use inject::{InjectRequest, InjectResponse};
pub use listener::{HttpListener, HttpListenerConfig, TlsIdentity};
pub use openapi::openapi_json;
pub use serve::HttpLimits;
pub use state::{
    AdminOps, ApiState, AuthInfo, BounceSummary, ChangedDefinition, DefinitionChanges, InjectPolicy, ListenerChanges,
    MessageActionKind, MessageActionRequest, MessageActionResponse, MessageActionResult, MessageEntry, MessageInfo,
    PolicyError, QueueSelector, QueueSummary, ReadyQueueSummary, RebindRequest, ReloadChanges, ReloadOutcome,
    ResumeRequest, RouteExplanation, RouteRequest, ScheduledQueueSummary, SourceSuspendRequest, SuspendRequest,
    Suspended, SuspensionInfo, WarmupSummary,
};
