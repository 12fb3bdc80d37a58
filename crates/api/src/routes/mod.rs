//! HTTP routes. Handlers are thin: extract, authorise with `paas_auth::authorize`, call one
//! service function, shape the response. Every handler carries a `#[utoipa::path]`, and
//! [`configure`] is the single registration used both by the server and by the OpenAPI
//! document, so the two cannot drift.

pub mod api_keys;
pub mod audit;
pub mod auth;
pub mod health;
pub mod me;
pub mod tenant;
pub mod users;

use utoipa_actix_web::scope;
use utoipa_actix_web::service_config::ServiceConfig;

/// Registers every route.
pub fn configure(cfg: &mut ServiceConfig<'_>) {
    cfg.service(health::healthz)
        .service(health::readyz)
        .service(
            scope::scope("/api/v1")
                .service(auth::signup)
                .service(auth::login)
                .service(auth::refresh)
                .service(auth::logout)
                .service(me::get_me)
                .service(me::update_me)
                .service(me::change_password)
                .service(users::list_users)
                .service(users::create_user)
                .service(users::get_user)
                .service(users::update_user)
                .service(users::deactivate_user)
                .service(api_keys::list_api_keys)
                .service(api_keys::create_api_key)
                .service(api_keys::revoke_api_key)
                .service(tenant::get_tenant)
                .service(tenant::update_tenant)
                .service(audit::list_audit_events)
                .service(crate::openapi::openapi_json),
        );
}
