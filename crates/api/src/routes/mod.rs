//! HTTP routes. Handlers are thin: extract, authorise with `paas_auth::authorize`, call one
//! service function, shape the response. Every handler carries a `#[utoipa::path]`, and
//! [`configure`] is the single registration used both by the server and by the OpenAPI
//! document, so the two cannot drift.

pub mod admin;
pub mod agents;
pub mod api_keys;
pub mod audit;
pub mod auth;
pub mod chat;
pub mod health;
pub mod me;
pub mod openai;
pub mod providers;
pub mod sessions;
pub mod tenant;
pub mod usage;
pub mod users;

use utoipa_actix_web::scope;
use utoipa_actix_web::service_config::ServiceConfig;

/// Registers every route.
pub fn configure(cfg: &mut ServiceConfig<'_>) {
    cfg.service(health::healthz)
        .service(health::readyz)
        .service(crate::metrics::prometheus);
    cfg.service(
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
            .service(agents::list_agents)
            .service(agents::create_agent)
            .service(agents::get_agent)
            .service(agents::update_agent)
            .service(agents::delete_agent)
            .service(providers::list_providers)
            .service(providers::create_provider)
            .service(providers::get_provider)
            .service(providers::update_provider)
            .service(providers::delete_provider)
            .service(sessions::list_sessions)
            .service(sessions::create_session)
            .service(sessions::get_session)
            .service(sessions::update_session)
            .service(sessions::delete_session)
            .service(sessions::list_messages)
            .service(sessions::export_session)
            .service(chat::chat_completions)
            .service(chat::get_run)
            .service(chat::run_events)
            .service(chat::cancel_run)
            .service(usage::get_quota)
            .service(usage::get_usage)
            .service(admin::list_tenants)
            .service(admin::get_tenant)
            .service(admin::change_plan)
            .service(admin::set_quota)
            .service(admin::suspend_tenant)
            .service(admin::reactivate_tenant)
            .service(crate::openapi::openapi_json),
    );
    // The OpenAI-compatible API, with OpenAI-shaped errors for bad bodies too.
    cfg.service(
        scope::scope("/v1")
            .app_data(
                actix_web::web::JsonConfig::default()
                    .limit(crate::server::MAX_BODY_BYTES)
                    .error_handler(openai::json_error),
            )
            .service(openai::list_models)
            .service(openai::chat_completions),
    );
}
