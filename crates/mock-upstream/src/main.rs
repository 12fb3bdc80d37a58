//! `mock-upstream`: serves the OpenAI Chat Completions mock until SIGINT or SIGTERM.

use std::net::{SocketAddr, TcpListener};
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use paas_mock_upstream::{MAX_CHUNKS, MockConfig, server};

/// A fast mock of OpenAI's Chat Completions API for load tests.
#[derive(Debug, Parser)]
#[command(name = "mock-upstream", version)]
struct Cli {
    /// Address to listen on.
    #[arg(long, env = "MOCK_UPSTREAM_LISTEN", default_value = "127.0.0.1:9100")]
    listen: SocketAddr,
    /// Delay before the response head / first chunk, in ms (header x-mock-latency-ms).
    #[arg(long, env = "MOCK_UPSTREAM_LATENCY_MS", default_value_t = 0)]
    latency_ms: u64,
    /// Content chunks per streamed answer; also the completion tokens (header x-mock-chunks).
    #[arg(long, env = "MOCK_UPSTREAM_CHUNKS", default_value_t = 20,
          value_parser = clap::value_parser!(u32).range(0..=i64::from(MAX_CHUNKS)))]
    chunks: u32,
    /// Delay between two content chunks, in ms (header x-mock-chunk-interval-ms).
    #[arg(long, env = "MOCK_UPSTREAM_CHUNK_INTERVAL_MS", default_value_t = 10)]
    chunk_interval_ms: u64,
    /// Worker threads (default: one per CPU).
    #[arg(long, env = "MOCK_UPSTREAM_WORKERS")]
    workers: Option<usize>,
    /// The model GET /v1/models lists (answers echo the requested model).
    #[arg(long, env = "MOCK_UPSTREAM_MODEL", default_value = "mock-gpt")]
    model: String,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let defaults = MockConfig::default();
    let config = MockConfig {
        latency: Duration::from_millis(cli.latency_ms).min(paas_mock_upstream::MAX_DELAY),
        chunks: cli.chunks,
        chunk_interval: Duration::from_millis(cli.chunk_interval_ms)
            .min(paas_mock_upstream::MAX_DELAY),
        workers: cli.workers.unwrap_or(defaults.workers).max(1),
        model: cli.model,
        ..defaults
    };
    // The accept loop and the workers run on actix's own threads; this runtime only waits.
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            tracing::error!(%err, "cannot start the runtime");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        let listener = TcpListener::bind(cli.listen)?;
        tracing::info!(
            listen = %listener.local_addr()?,
            latency_ms = config.latency.as_millis(),
            chunks = config.chunks,
            chunk_interval_ms = config.chunk_interval.as_millis(),
            workers = config.workers,
            "mock-upstream listening"
        );
        let server = server(config, listener)?;
        tokio::spawn(stop_on_signal(server.handle()));
        server.await
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            tracing::error!(%err, "mock-upstream failed");
            ExitCode::FAILURE
        }
    }
}

/// Stops the server gracefully on SIGINT or SIGTERM.
async fn stop_on_signal(handle: actix_web::dev::ServerHandle) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
    tracing::info!("stopping");
    handle.stop(true).await;
}
