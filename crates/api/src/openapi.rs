//! The OpenAPI 3 document, generated from the same route registration the server uses.

use actix_web::{App, HttpResponse, get, web};
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{InfoBuilder, OpenApi, OpenApiBuilder};
use utoipa_actix_web::AppExt;

use crate::routes;

/// The document, serialised once at start-up.
#[derive(Clone, Debug)]
pub struct OpenApiJson(pub String);

/// Builds the document by registering every route on a throwaway app and collecting their
/// `#[utoipa::path]` descriptions.
pub fn document() -> OpenApi {
    let (_, collected) = App::new()
        .into_utoipa_app()
        .configure(routes::configure)
        .split_for_parts();
    let mut doc = OpenApiBuilder::new()
        .info(
            InfoBuilder::new()
                .title("Agent PaaS API")
                .version(env!("CARGO_PKG_VERSION"))
                .description(Some(
                    "Multi-tenant platform for LLM agents. Authenticate with `Authorization: Bearer \
                     <access token or API key>` or `X-API-Key: <API key>`. Errors are \
                     `{\"error\": {\"code\": \"...\", \"message\": \"...\"}}`.",
                ))
                .build(),
        )
        .build();
    doc.merge(collected);
    let components = doc.components.get_or_insert_with(Default::default);
    components.add_security_scheme(
        "bearer",
        SecurityScheme::Http(
            HttpBuilder::new()
                .scheme(HttpAuthScheme::Bearer)
                .bearer_format("JWT access token or ap_… API key")
                .build(),
        ),
    );
    components.add_security_scheme(
        "api_key",
        SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::new("X-API-Key"))),
    );
    components.add_security_scheme(
        "operator",
        SecurityScheme::Http(
            HttpBuilder::new()
                .scheme(HttpAuthScheme::Bearer)
                .bearer_format("PAAS_OPERATOR_TOKEN")
                .build(),
        ),
    );
    doc
}

/// Serialises [`document`] for people and diffs (what `agent-paas openapi` prints).
pub fn document_pretty_json() -> String {
    document().to_pretty_json().unwrap_or_else(|err| {
        tracing::error!(error = %err, "cannot serialise the OpenAPI document");
        "{}".to_owned()
    })
}

/// Serialises [`document`].
pub fn document_json() -> String {
    document().to_json().unwrap_or_else(|err| {
        tracing::error!(error = %err, "cannot serialise the OpenAPI document");
        "{}".to_owned()
    })
}

/// This document.
#[utoipa::path(tag = "meta", responses((status = 200, description = "The OpenAPI 3 document")))]
#[get("/openapi.json")]
pub async fn openapi_json(doc: web::Data<OpenApiJson>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/json")
        .body(doc.0.clone())
}
