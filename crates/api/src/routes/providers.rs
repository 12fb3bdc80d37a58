//! Model provider credentials (admins). API keys are write-only.

use actix_web::{HttpRequest, HttpResponse, delete, get, patch, post, web};
use paas_auth::{Action, authorize};
use paas_core::ProviderId;
use paas_models::{Provider, ProviderKind};

use crate::dto::{CreateProviderRequest, ProviderList, UpdateProviderRequest};
use crate::error::{ApiResult, ErrorBody};
use crate::extract::Auth;
use crate::idempotency::{self, IdempotencyKeyHeader, Keyed};
use crate::services::ClientInfo;
use crate::services::providers::{self, NewProviderInput, ProviderUpdate};
use crate::state::AppState;

/// The tenant's providers, and which platform providers are available.
#[utoipa::path(tag = "providers", responses((status = 200, body = ProviderList), (status = 403, body = ErrorBody)),
    security(("bearer" = []), ("api_key" = [])))]
#[get("/providers")]
pub async fn list_providers(
    state: web::Data<AppState>,
    Auth(principal): Auth,
) -> ApiResult<web::Json<ProviderList>> {
    authorize(&principal, Action::ManageProviders)?;
    let platform = [
        ProviderKind::Openai,
        ProviderKind::Glm,
        ProviderKind::Anthropic,
    ]
    .into_iter()
    .filter(|k| state.providers.platform_available(*k))
    .map(|k| format!("platform:{}", k.as_str()))
    .collect();
    Ok(web::Json(ProviderList {
        items: providers::list(&state, &principal).await?,
        platform,
    }))
}

/// Adds provider credentials.
#[utoipa::path(tag = "providers", request_body = CreateProviderRequest, params(IdempotencyKeyHeader),
    responses((status = 201, body = Provider), (status = 400, body = ErrorBody),
        (status = 409, description = "provider_name_taken, or idempotency_request_in_progress (a request with this Idempotency-Key is still running; Retry-After)", body = ErrorBody),
        (status = 422, body = ErrorBody, description = "idempotency_key_reused: the Idempotency-Key was used for another request")),
    security(("bearer" = []), ("api_key" = [])))]
#[post("/providers")]
pub async fn create_provider(
    req: HttpRequest,
    state: web::Data<AppState>,
    Auth(principal): Auth,
    client: ClientInfo,
    Keyed { body, key }: Keyed<web::Json<CreateProviderRequest>>,
) -> ApiResult<HttpResponse> {
    authorize(&principal, Action::ManageProviders)?;
    idempotency::once(&req, &principal, key, move || async move {
        let b = body.into_inner();
        let input = NewProviderInput {
            name: b.name,
            kind: b.kind,
            base_url: b.base_url,
            api_key: b.api_key,
            default_model: b.default_model,
        };
        let created = providers::create(&state, &principal, input, &client).await?;
        Ok(HttpResponse::Created().json(created))
    })
    .await
}

/// One provider.
#[utoipa::path(tag = "providers", params(("id" = ProviderId, Path)),
    responses((status = 200, body = Provider), (status = 404, body = ErrorBody)),
    security(("bearer" = []), ("api_key" = [])))]
#[get("/providers/{id}")]
pub async fn get_provider(
    state: web::Data<AppState>,
    Auth(principal): Auth,
    id: web::Path<ProviderId>,
) -> ApiResult<web::Json<Provider>> {
    authorize(&principal, Action::ManageProviders)?;
    Ok(web::Json(
        providers::get(&state, &principal, id.into_inner()).await?,
    ))
}

/// Changes a provider (a new `api_key` replaces the stored one).
#[utoipa::path(tag = "providers", params(("id" = ProviderId, Path)), request_body = UpdateProviderRequest,
    responses((status = 200, body = Provider), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = []), ("api_key" = [])))]
#[patch("/providers/{id}")]
pub async fn update_provider(
    state: web::Data<AppState>,
    Auth(principal): Auth,
    client: ClientInfo,
    id: web::Path<ProviderId>,
    body: web::Json<UpdateProviderRequest>,
) -> ApiResult<web::Json<Provider>> {
    authorize(&principal, Action::ManageProviders)?;
    let b = body.into_inner();
    let update = ProviderUpdate {
        name: b.name,
        base_url: b.base_url,
        api_key: b.api_key,
        default_model: b.default_model,
    };
    Ok(web::Json(
        providers::update(&state, &principal, id.into_inner(), update, &client).await?,
    ))
}

/// Deletes a provider no agent uses.
#[utoipa::path(tag = "providers", params(("id" = ProviderId, Path)),
    responses((status = 204), (status = 404, body = ErrorBody), (status = 409, description = "In use", body = ErrorBody)),
    security(("bearer" = []), ("api_key" = [])))]
#[delete("/providers/{id}")]
pub async fn delete_provider(
    state: web::Data<AppState>,
    Auth(principal): Auth,
    client: ClientInfo,
    id: web::Path<ProviderId>,
) -> ApiResult<HttpResponse> {
    authorize(&principal, Action::ManageProviders)?;
    providers::delete(&state, &principal, id.into_inner(), &client).await?;
    Ok(HttpResponse::NoContent().finish())
}
