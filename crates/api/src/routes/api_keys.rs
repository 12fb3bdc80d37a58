//! API keys.

use actix_web::{HttpRequest, HttpResponse, delete, get, post, web};
use paas_auth::{Action, authorize};
use paas_core::{ApiKeyId, Error};
use secrecy::ExposeSecret;

use crate::dto::{ApiKeyList, CreateApiKeyRequest, CreateApiKeyResponse, ListApiKeysQuery};
use crate::error::{ApiResult, ErrorBody};
use crate::extract::Auth;
use crate::idempotency::{self, IdempotencyKeyHeader, Keyed};
use crate::services::ClientInfo;
use crate::services::api_keys::{self, Expiry, KeyFilter};
use crate::state::AppState;

/// The caller's keys (admins: every key in the tenant). Never includes secrets.
#[utoipa::path(
    tag = "api-keys",
    params(ListApiKeysQuery),
    responses((status = 200, body = ApiKeyList), (status = 403, body = ErrorBody)),
    security(("bearer" = []), ("api_key" = []))
)]
#[get("/api-keys")]
pub async fn list_api_keys(
    state: web::Data<AppState>,
    Auth(principal): Auth,
    query: web::Query<ListApiKeysQuery>,
) -> ApiResult<web::Json<ApiKeyList>> {
    authorize(&principal, Action::ManageOwnApiKeys)?;
    let query = query.into_inner();
    let filter = KeyFilter {
        user_id: query.user_id,
        include_revoked: query.include_revoked.unwrap_or(false),
    };
    Ok(web::Json(ApiKeyList {
        items: api_keys::list(&state, &principal, filter).await?,
    }))
}

/// Creates a key for the caller. The secret is in this response only.
#[utoipa::path(
    tag = "api-keys",
    request_body = CreateApiKeyRequest,
    params(IdempotencyKeyHeader),
    responses(
        (status = 201, body = CreateApiKeyResponse),
        (status = 400, body = ErrorBody),
        (status = 403, description = "A scope the caller's role does not allow", body = ErrorBody),
        (status = 409, body = ErrorBody, description = "idempotency_request_in_progress: a request with this Idempotency-Key is still running; Retry-After"),
        (status = 422, body = ErrorBody, description = "idempotency_key_reused: the Idempotency-Key was used for another request"),
    ),
    security(("bearer" = []), ("api_key" = []))
)]
#[post("/api-keys")]
pub async fn create_api_key(
    req: HttpRequest,
    state: web::Data<AppState>,
    Auth(principal): Auth,
    client: ClientInfo,
    Keyed { body, key }: Keyed<web::Json<CreateApiKeyRequest>>,
) -> ApiResult<HttpResponse> {
    authorize(&principal, Action::ManageOwnApiKeys)?;
    idempotency::once(&req, &principal, key, move || {
        create_key(state, principal, client, body.into_inner())
    })
    .await
}

async fn create_key(
    state: web::Data<AppState>,
    principal: paas_core::Principal,
    client: ClientInfo,
    body: CreateApiKeyRequest,
) -> ApiResult<HttpResponse> {
    let expiry = match (body.expires_at, body.expires_in_days) {
        (Some(_), Some(_)) => {
            return Err(Error::bad_request(
                "invalid_expiry",
                "give expires_at or expires_in_days, not both",
            )
            .into());
        }
        (Some(at), None) => Expiry::At(at),
        (None, Some(days)) => Expiry::InDays(days),
        (None, None) => Expiry::Default,
    };
    let input = api_keys::NewKeyInput {
        name: body.name,
        scopes: body.scopes,
        expiry,
    };
    let created = api_keys::create(&state, &principal, input, &client).await?;
    Ok(HttpResponse::Created().json(CreateApiKeyResponse {
        id: created.key.id,
        key: created.secret.expose_secret().to_owned(),
        prefix: created.key.prefix,
        name: created.key.name,
        scopes: created.key.scopes,
        expires_at: created.key.expires_at,
        created_at: created.key.created_at,
    }))
}

/// Revokes a key: it stops working at once.
#[utoipa::path(
    tag = "api-keys",
    params(("id" = ApiKeyId, Path)),
    responses((status = 204), (status = 404, body = ErrorBody)),
    security(("bearer" = []), ("api_key" = []))
)]
#[delete("/api-keys/{id}")]
pub async fn revoke_api_key(
    state: web::Data<AppState>,
    Auth(principal): Auth,
    client: ClientInfo,
    id: web::Path<ApiKeyId>,
) -> ApiResult<HttpResponse> {
    authorize(&principal, Action::ManageOwnApiKeys)?;
    api_keys::revoke(&state, &principal, id.into_inner(), &client).await?;
    Ok(HttpResponse::NoContent().finish())
}
