//! The OpenAPI document, generated from the handlers' annotations so it
//! cannot drift from what the server does.

use crate::{admin, console, inject, messages};
use utoipa::OpenApi;

#[derive(OpenApi)]
#[openapi(
    info(title = "Petrel HTTP API", description = "Injection and administration of the Petrel MTA"),
    paths(
        inject::inject,
        admin::suspend, admin::resume, admin::list_suspensions, admin::suspend_source, admin::resume_source,
        admin::bounce, admin::rebind, admin::reload, admin::queue_summary, admin::inspect, admin::route,
        admin::metrics, admin::liveness, messages::list, messages::flush, messages::action,
        console::snapshot, console::records,
    ),
    components(schemas(
        inject::InjectRequest, inject::InjectRecipient, inject::Content, inject::ContentBuilder,
        inject::NamedAddress, inject::Attachment, inject::InjectResponse,
    )),
    modifiers(&Security),
    security(("basic" = []), ("bearer" = []))
)]
struct ApiDoc;

struct Security;

impl utoipa::Modify for Security {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "basic",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Basic).build()),
        );
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// The document as served at `/api-docs/openapi.json`.
pub fn openapi_json() -> String {
    ApiDoc::openapi().to_pretty_json().expect("the OpenAPI document serializes")
}
