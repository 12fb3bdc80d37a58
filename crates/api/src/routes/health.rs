//! Liveness and readiness probes.

use std::time::Duration;

use actix_web::http::header;
use actix_web::{HttpResponse, get, web};

use crate::dto::{Health, Readiness};
use crate::state::AppState;

/// The process is alive (no dependency is checked).
#[utoipa::path(tag = "health", responses((status = 200, body = Health)))]
#[get("/healthz")]
pub async fn healthz() -> web::Json<Health> {
    web::Json(Health { status: "ok" })
}

/// Ready to serve: PostgreSQL and Redis both answer within two seconds.
#[utoipa::path(
    tag = "health",
    responses((status = 200, body = Readiness), (status = 503, body = Readiness))
)]
#[get("/readyz")]
pub async fn readyz(state: web::Data<AppState>) -> HttpResponse {
    let limit = Duration::from_secs(2);
    let (postgres, redis) = tokio::join!(
        tokio::time::timeout(limit, state.db.ping()),
        tokio::time::timeout(limit, state.redis.ping()),
    );
    let label = |ok: bool| if ok { "ok" } else { "unavailable" };
    let postgres_ok = matches!(postgres, Ok(Ok(())));
    let redis_ok = matches!(redis, Ok(Ok(())));
    let ready = postgres_ok && redis_ok;
    let body = Readiness {
        status: if ready { "ready" } else { "unavailable" },
        postgres: label(postgres_ok),
        redis: label(redis_ok),
    };
    if ready {
        HttpResponse::Ok().json(body)
    } else {
        HttpResponse::ServiceUnavailable()
            .insert_header((header::RETRY_AFTER, "5"))
            .json(body)
    }
}
