//! Logging and tracing: `tracing` to stdout, as JSON lines in production or readable text in
//! development, filtered by `RUST_LOG` (default `info`); and, when
//! `OTEL_EXPORTER_OTLP_ENDPOINT` is set, every span exported over OTLP (HTTP/protobuf) to
//! Jaeger, Tempo or an OpenTelemetry collector, with W3C `traceparent` propagation.
//!
//! The exporter reads the standard `OTEL_*` variables (`OTEL_EXPORTER_OTLP_ENDPOINT`,
//! `OTEL_EXPORTER_OTLP_HEADERS`, `OTEL_BSP_SCHEDULE_DELAY`, …); `OTEL_SERVICE_NAME` names the
//! service (default `agent-paas`). Spans at `info` and above are exported whatever `RUST_LOG`
//! says; `PAAS_TRACES_FILTER` changes that.

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::Layer;
use tracing_subscriber::fmt;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

use crate::config::LogFormat;

/// Flushes the trace exporter when dropped (at the end of `main`).
#[derive(Debug, Default)]
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

impl Telemetry {
    /// Sends the spans still buffered.
    pub fn shutdown(&mut self) {
        if let Some(provider) = self.provider.take()
            && let Err(err) = provider.shutdown()
        {
            tracing::warn!(error = %err, "trace export: could not flush at shutdown");
        }
    }
}

impl Drop for Telemetry {
    fn drop(&mut self) {
        self.shutdown();
    }
}

fn otlp_provider() -> Option<SdkTracerProvider> {
    let endpoint = std::env::var("OTEL_EXPORTER_OTLP_ENDPOINT")
        .ok()
        .filter(|v| !v.trim().is_empty())?;
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .build();
    let exporter = match exporter {
        Ok(exporter) => exporter,
        Err(err) => {
            // Logging is not up yet.
            #[allow(clippy::print_stderr)]
            {
                eprintln!("agent-paas: cannot export traces to {endpoint}: {err}");
            }
            return None;
        }
    };
    let service = std::env::var("OTEL_SERVICE_NAME").unwrap_or_else(|_| "agent-paas".to_owned());
    let provider = SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(
            opentelemetry_sdk::Resource::builder()
                .with_service_name(service)
                .build(),
        )
        .build();
    opentelemetry::global::set_text_map_propagator(
        opentelemetry_sdk::propagation::TraceContextPropagator::new(),
    );
    opentelemetry::global::set_tracer_provider(provider.clone());
    Some(provider)
}

/// Spans exported as traces: `info` and above, whatever `RUST_LOG` says about logs (quiet logs
/// must not empty the traces). `PAAS_TRACES_FILTER` overrides it (EnvFilter syntax).
fn traces_filter() -> EnvFilter {
    std::env::var("PAAS_TRACES_FILTER")
        .ok()
        .and_then(|v| EnvFilter::try_new(v).ok())
        .unwrap_or_else(|| EnvFilter::new("info"))
}

pub fn init(format: LogFormat) -> Telemetry {
    let logs = || EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let provider = otlp_provider();
    let otel = provider.as_ref().map(|p| {
        tracing_opentelemetry::layer()
            .with_tracer(p.tracer("agent-paas"))
            .with_filter(traces_filter())
    });
    let registry = tracing_subscriber::registry().with(otel);
    let _ = match format {
        LogFormat::Json => registry
            .with(
                fmt::layer()
                    .json()
                    .flatten_event(true)
                    .with_current_span(true)
                    .with_target(true)
                    .with_filter(logs()),
            )
            .try_init(),
        LogFormat::Text => registry
            .with(fmt::layer().with_target(true).with_filter(logs()))
            .try_init(),
    };
    Telemetry { provider }
}
