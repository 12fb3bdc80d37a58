//! Building and running the HTTP server.

use std::net::TcpListener;

use actix_web::middleware::DefaultHeaders;
use actix_web::{App, HttpServer, web};
use tracing_actix_web::TracingLogger;
use utoipa_actix_web::AppExt;

use crate::error::{json_error, path_error, query_error};
use crate::openapi::{OpenApiJson, document_json};
use crate::routes;
use crate::state::AppState;

/// Largest request body accepted (JSON or otherwise).
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

/// Builds the server on an already-bound listener (port 0 in tests). Await the returned
/// [`actix_web::dev::Server`] to run it; stop it through its handle (the CLI turns SIGTERM and
/// SIGINT into a graceful stop: actix's own handling would stop at once on SIGINT).
pub fn build(state: AppState, listener: TcpListener) -> std::io::Result<actix_web::dev::Server> {
    let workers = state.config.workers;
    crate::metrics::handle();
    crate::idempotency::spawn_sweeper(&state);
    let state = web::Data::new(state);
    let openapi = web::Data::new(OpenApiJson(document_json()));
    let server = HttpServer::new(move || {
        App::new()
            .app_data(state.clone())
            .app_data(openapi.clone())
            .app_data(
                web::JsonConfig::default()
                    .limit(MAX_BODY_BYTES)
                    .error_handler(json_error),
            )
            .app_data(web::PayloadConfig::default().limit(MAX_BODY_BYTES))
            .app_data(web::QueryConfig::default().error_handler(query_error))
            .app_data(web::PathConfig::default().error_handler(path_error))
            .wrap(
                DefaultHeaders::new()
                    .add(("X-Content-Type-Options", "nosniff"))
                    .add(("X-Frame-Options", "DENY"))
                    .add(("Referrer-Policy", "no-referrer"))
                    // Responses carry tokens, keys and tenant data: never cache them.
                    .add(("Cache-Control", "no-store")),
            )
            .wrap(actix_web::middleware::from_fn(
                crate::extract::rate_limit_headers,
            ))
            .wrap(actix_web::middleware::from_fn(crate::metrics::http_metrics))
            .wrap(actix_web::middleware::from_fn(
                crate::metrics::request_id_header,
            ))
            .wrap(TracingLogger::default())
            .into_utoipa_app()
            .configure(routes::configure)
            .into_app()
            .default_service(web::to(crate::web::dashboard))
    })
    .workers(workers)
    // Streamed answers are many small writes: without TCP_NODELAY, Nagle's algorithm holds each
    // one back until the client acknowledges the last (up to its 40 ms delayed ACK).
    .tcp_nodelay(true)
    .shutdown_timeout(30)
    .disable_signals()
    .listen(listener)?
    .run();
    Ok(server)
}
