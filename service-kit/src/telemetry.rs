//! Logging and span export: readable lines locally, JSON (`LOG_FORMAT=json`) in deployment;
//! with `OTEL_EXPORTER_OTLP_ENDPOINT` set, the spans of this project's code are also exported
//! over OTLP/gRPC (see [`crate::trace::start`] for how they are tied to the W3C trace context
//! the events carry). Unset, no exporter exists and spans cost what they cost without one.

use anyhow::{Context as _, bail};
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_subscriber::{
    EnvFilter, Layer as _, filter::filter_fn, fmt, layer::SubscriberExt as _,
    util::SubscriberInitExt as _,
};

/// The environment variables that ask for export (the OpenTelemetry SDK's own names).
const ENDPOINT_VARS: [&str; 2] = [
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    "OTEL_EXPORTER_OTLP_ENDPOINT",
];
const PROTOCOL_VARS: [&str; 2] = [
    "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
    "OTEL_EXPORTER_OTLP_PROTOCOL",
];

/// The crates whose spans and events are exported: this project's, not its dependencies'
/// (a request's HTTP span from tower-http, the database driver's events).
const EXPORTED_TARGETS: [&str; 5] = [
    "api",
    "workers",
    "reminder_cron",
    "service_kit",
    "todo_store",
];

/// A batch of spans the collector did not take is logged once, as the span processor's
/// error naming the cause (`BatchSpanProcessor.ExportError`); the exporter's own warning
/// about the same batch is left out unless `RUST_LOG` names the OpenTelemetry crates.
const QUIET_EXPORTER: &str = "opentelemetry-otlp=error";

/// `RUST_LOG` (default `info`; `info` too when it does not parse), with [`QUIET_EXPORTER`].
fn log_filter(rust_log: Option<&str>) -> EnvFilter {
    let rust_log = rust_log.map(str::trim).filter(|v| !v.is_empty());
    let filter = rust_log
        .and_then(|v| EnvFilter::try_new(v).ok())
        .unwrap_or_else(|| EnvFilter::new("info"));
    if rust_log.is_some_and(|v| v.contains("opentelemetry")) {
        return filter;
    }
    match QUIET_EXPORTER.parse() {
        Ok(directive) => filter.add_directive(directive),
        Err(_) => filter,
    }
}

/// Keeps span export running; dropping it exports what is still queued (waiting up to the
/// exporter's timeout) and stops the exporter.
#[must_use = "dropping it stops span export"]
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

impl Telemetry {
    /// Whether spans are exported.
    pub fn exporting(&self) -> bool {
        self.provider.is_some()
    }
}

impl Drop for Telemetry {
    fn drop(&mut self) {
        if let Some(provider) = self.provider.take()
            && let Err(e) = provider.shutdown()
        {
            eprintln!("span export did not shut down cleanly: {e}");
        }
    }
}

/// Installs the global subscriber (`RUST_LOG` filters, default `info`; see [`log_filter`]) and, when an OTLP
/// endpoint is set, the span exporter. Call it inside the Tokio runtime (the gRPC exporter
/// runs on it). Fails when export is asked for in a way this build cannot do (a protocol
/// other than `grpc`, an endpoint that is not a URL).
pub fn init(service: &str) -> anyhow::Result<Telemetry> {
    let provider = exporter(service)?;
    let filter = log_filter(std::env::var("RUST_LOG").ok().as_deref());
    let json = std::env::var("LOG_FORMAT").is_ok_and(|v| v.eq_ignore_ascii_case("json"));
    let lines = if json {
        fmt::layer().json().flatten_event(true).boxed()
    } else {
        // Colours only on a terminal: log files and `dapr run` output stay plain text.
        let ansi = std::io::IsTerminal::is_terminal(&std::io::stdout());
        fmt::layer().with_target(false).with_ansi(ansi).boxed()
    };
    let spans = provider.as_ref().map(|provider| {
        tracing_opentelemetry::layer()
            .with_tracer(provider.tracer(service.to_owned()))
            .with_filter(filter_fn(|meta| {
                EXPORTED_TARGETS
                    .iter()
                    .any(|target| meta.target().starts_with(target))
            }))
    });
    let installed = tracing_subscriber::registry()
        .with(filter)
        .with(lines)
        .with(spans)
        .try_init();
    if installed.is_ok() {
        tracing::info!(
            service,
            version = env!("CARGO_PKG_VERSION"),
            exporting_spans = provider.is_some(),
            "starting"
        );
    }
    Ok(Telemetry { provider })
}

/// The tracer provider exporting to the configured OTLP endpoint; `None` when none is set.
fn exporter(service: &str) -> anyhow::Result<Option<SdkTracerProvider>> {
    let Some(endpoint) = endpoint(|name| std::env::var(name).ok())? else {
        return Ok(None);
    };
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_tonic()
        .build()
        .with_context(|| format!("cannot export spans to {endpoint:?}"))?;
    let mut resource = opentelemetry_sdk::Resource::builder();
    if std::env::var_os("OTEL_SERVICE_NAME").is_none() {
        resource = resource.with_service_name(service.to_owned());
    }
    Ok(Some(
        SdkTracerProvider::builder()
            .with_batch_exporter(exporter)
            .with_resource(resource.build())
            .build(),
    ))
}

/// The OTLP endpoint the environment (`var`) asks spans to be exported to, if any; an error
/// naming the variable when it asks for something this build cannot do.
fn endpoint(var: impl Fn(&str) -> Option<String>) -> anyhow::Result<Option<String>> {
    let set = |names: &[&'static str]| {
        names.iter().find_map(|name| {
            var(name)
                .filter(|v| !v.trim().is_empty())
                .map(|v| (*name, v))
        })
    };
    let Some((endpoint_var, endpoint)) = set(&ENDPOINT_VARS) else {
        return Ok(None);
    };
    if let Some((var, protocol)) = set(&PROTOCOL_VARS)
        && protocol.trim() != "grpc"
    {
        bail!(
            "{var}={protocol:?}: this build exports spans over OTLP/gRPC only; set it to \"grpc\" or unset it"
        );
    }
    if !(endpoint.starts_with("http://") || endpoint.starts_with("https://")) {
        bail!(
            "{endpoint_var}={endpoint:?} is not an http:// or https:// URL (for example http://127.0.0.1:4317)"
        );
    }
    Ok(Some(endpoint))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(vars: &[(&str, &str)]) -> anyhow::Result<Option<String>> {
        endpoint(|name| {
            vars.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| (*v).to_owned())
        })
    }

    #[test]
    fn the_exporters_warnings_are_quiet_unless_asked_for() {
        for (rust_log, shown) in [
            (None, "info,opentelemetry-otlp=error"),
            (Some("debug"), "debug,opentelemetry-otlp=error"),
            (Some(" "), "info,opentelemetry-otlp=error"),
            (Some("opentelemetry-otlp=debug"), "opentelemetry-otlp=debug"),
        ] {
            let filter = log_filter(rust_log).to_string();
            for part in shown.split(',') {
                assert!(filter.contains(part), "{rust_log:?}: {filter}");
            }
        }
        assert!(
            !log_filter(Some("opentelemetry-otlp=debug"))
                .to_string()
                .contains("=error")
        );
    }

    #[test]
    fn export_is_asked_for_by_an_endpoint_only() {
        assert_eq!(with(&[]).expect("valid"), None);
        assert_eq!(
            with(&[("OTEL_EXPORTER_OTLP_ENDPOINT", " ")]).expect("valid"),
            None
        );
        assert_eq!(
            with(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4317")]).expect("valid"),
            Some("http://127.0.0.1:4317".to_owned())
        );
        // The traces-only variable wins, as the SDK reads it.
        assert_eq!(
            with(&[
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://a:4317"),
                ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://b:4317"),
                ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
            ])
            .expect("valid"),
            Some("http://b:4317".to_owned())
        );
    }

    #[test]
    fn what_this_build_cannot_do_is_refused_by_name() {
        let err = with(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318"),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"),
        ])
        .expect_err("refused")
        .to_string();
        assert!(
            err.contains("OTEL_EXPORTER_OTLP_PROTOCOL") && err.contains("gRPC"),
            "{err}"
        );
        let err = with(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "127.0.0.1:4317")])
            .expect_err("refused")
            .to_string();
        assert!(
            err.contains("OTEL_EXPORTER_OTLP_ENDPOINT") && err.contains("URL"),
            "{err}"
        );
    }
}
