//! Prometheus metrics: the recorder, the `GET /metrics` endpoint and the HTTP middleware.
//!
//! Series are recorded where things happen through the `metrics` facade; this module installs
//! the Prometheus recorder once per process and renders it. Labels are bounded: route
//! patterns (never raw paths), status codes, provider kinds, run statuses, tenant ids and the
//! models a tenant's agents name — no user ids, no free text.

use std::sync::OnceLock;
use std::time::Instant;

use ::metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use actix_web::{HttpRequest, HttpResponse, get, web};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use paas_core::Error;

use crate::error::ApiError;
use crate::state::AppState;

static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// Latency buckets (seconds): from a fast API call to a long agent run.
const BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    60.0, 120.0, 300.0, 600.0,
];

/// How often histogram samples are folded into their buckets when nobody scrapes /metrics.
const UPKEEP_EVERY: std::time::Duration = std::time::Duration::from_secs(5);

/// Installs the process's Prometheus recorder (once; later calls reuse it).
pub fn handle() -> Option<&'static PrometheusHandle> {
    HANDLE
        .get_or_init(|| {
            let installed = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_seconds".to_owned()), BUCKETS)
                .and_then(|builder| builder.install_recorder());
            match installed {
                Ok(handle) => {
                    describe();
                    // `install_recorder` leaves upkeep to us: without it, every histogram sample
                    // is kept until the next scrape of /metrics, so a server nobody scrapes grows
                    // by every request it serves (found by `just soak`).
                    let upkept = handle.clone();
                    let spawned = std::thread::Builder::new()
                        .name("metrics-upkeep".to_owned())
                        .spawn(move || {
                            loop {
                                std::thread::sleep(UPKEEP_EVERY);
                                upkept.run_upkeep();
                            }
                        });
                    if let Err(err) = spawned {
                        tracing::warn!(error = %err, "cannot start the metrics upkeep thread");
                    }
                    Some(handle)
                }
                Err(err) => {
                    tracing::warn!(error = %err, "cannot install the Prometheus recorder; /metrics will be empty");
                    None
                }
            }
        })
        .as_ref()
}

fn describe() {
    describe_counter!(
        "http_requests_total",
        "HTTP requests by method, route pattern and status"
    );
    describe_histogram!(
        "http_request_duration_seconds",
        Unit::Seconds,
        "HTTP request latency by method and route pattern (until the response head; streams run on)"
    );
    describe_counter!(
        "chat_requests_total",
        "Chats (dashboard and OpenAI-compatible) by tenant, agent type (its provider kind) and outcome: a run status, or rejected"
    );
    describe_histogram!(
        "chat_duration_seconds",
        Unit::Seconds,
        "Duration of chat runs by tenant and agent type"
    );
    describe_gauge!(
        "active_sessions",
        "Runs streaming now, by tenant (on this replica)"
    );
    describe_counter!(
        "token_usage_total",
        "Tokens used (prompt + completion) by tenant and model"
    );
    describe_histogram!(
        "time_to_first_token_seconds",
        Unit::Seconds,
        "From the start of a run to its first streamed answer text, by provider"
    );
    describe_histogram!(
        "upstream_request_duration_seconds",
        Unit::Seconds,
        "Model calls from request to the end of their stream, by provider"
    );
    describe_counter!(
        "upstream_errors_total",
        "Failed model calls by provider and error code"
    );
    describe_counter!(
        "quota_rejections_total",
        "Requests refused by a quota or rate limit, by reason"
    );
    describe_counter!(
        "rate_limit_fallbacks_total",
        "Rate-limit decisions made per process because Redis was unavailable"
    );
    describe_gauge!(
        "usage_queue_depth",
        "Usage-ledger records waiting to be written"
    );
    describe_counter!(
        "usage_records_written_total",
        "Usage-ledger records written"
    );
    describe_counter!(
        "usage_records_dropped_total",
        "Usage-ledger records lost (queue full or shutdown); should stay 0"
    );
    describe_gauge!(
        "run_records_queue_depth",
        "Run rows of OpenAI-compatible requests (starts and outcomes) waiting to be written"
    );
    describe_counter!(
        "run_records_dropped_total",
        "Run rows lost (queue full, an error other than unavailability, or shutdown); should stay 0"
    );
    describe_gauge!(
        "db_pool_connections",
        "Database pool connections by state (open, idle, max)"
    );
    describe_gauge!("redis_up", "1 when the Redis connection is up");
    describe_counter!(
        "runs_interrupted_total",
        "Runs whose process died, marked failed (interrupted) and billed by the orphan sweep"
    );
}

/// The Prometheus text exposition of every series. Protected by `PAAS_METRICS_TOKEN` when set.
#[utoipa::path(tag = "health", responses((status = 200, description = "Prometheus text format"), (status = 401)))]
#[get("/metrics")]
pub async fn prometheus(
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    if let Some(expected) = &state.config.metrics_token
        && !crate::extract::bearer_is(&req, expected)
    {
        return Err(ApiError(Error::unauthenticated(
            "invalid_metrics_token",
            "authenticate with `Authorization: Bearer <PAAS_METRICS_TOKEN>`",
        )));
    }
    let pool = state.db.pool_status();
    ::metrics::gauge!("db_pool_connections", "state" => "open").set(pool.size as f64);
    ::metrics::gauge!("db_pool_connections", "state" => "idle").set(pool.available as f64);
    ::metrics::gauge!("db_pool_connections", "state" => "max").set(pool.max_size as f64);
    let redis_up = if state.redis.client().is_connected() {
        1.0
    } else {
        0.0
    };
    ::metrics::gauge!("redis_up").set(redis_up);
    ::metrics::gauge!("usage_queue_depth").set(state.usage.depth() as f64);
    ::metrics::gauge!("run_records_queue_depth").set(state.runs.records_queued() as f64);
    let body = handle().map(PrometheusHandle::render).unwrap_or_default();
    Ok(HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(body))
}

/// Middleware: `X-Request-Id` on every response — the id of the request's root span, which
/// every log line of the request carries (`request_id`), so a client's report finds the logs.
pub async fn request_id_header(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let id = actix_web::HttpMessage::extensions(&req)
        .get::<tracing_actix_web::RequestId>()
        .copied();
    let mut res = next.call(req).await?;
    if let Some(id) = id
        && let Ok(value) = actix_web::http::header::HeaderValue::from_str(&id.to_string())
    {
        res.headers_mut().insert(
            actix_web::http::header::HeaderName::from_static("x-request-id"),
            value,
        );
    }
    Ok(res)
}

/// Middleware: counts every request by method, route pattern and status, and times it.
pub async fn http_metrics(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let started = Instant::now();
    let method = req.method().as_str().to_owned();
    let res = next.call(req).await?;
    // The pattern (`/api/v1/agents/{id}`), never the raw path: bounded cardinality.
    let route = res
        .request()
        .match_pattern()
        .unwrap_or_else(|| "unmatched".to_owned());
    let status = res.status().as_u16().to_string();
    ::metrics::counter!("http_requests_total", "method" => method.clone(), "route" => route.clone(), "status" => status)
        .increment(1);
    ::metrics::histogram!("http_request_duration_seconds", "method" => method, "route" => route)
        .record(started.elapsed().as_secs_f64());
    Ok(res)
}

use fred::interfaces::ClientLike;
