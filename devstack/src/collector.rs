//! The OpenTelemetry Collector as a local process: an OTLP/gRPC receiver on a free loopback
//! port whose file exporter writes every span it receives to a JSON-lines file, read back by
//! [`Collector::spans`]. Built by [`crate::provision::otel_collector`].

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use nix::sys::signal::Signal;
use serde_json::Value;

use crate::paths::Paths;
use crate::process::{Managed, READY_TIMEOUT, free_port};

/// A running Collector.
pub struct Collector {
    process: Managed,
    grpc_port: u16,
    spans_file: PathBuf,
}

/// One span as the Collector received it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportedSpan {
    /// The `service.name` of the process that sent it.
    pub service: String,
    pub name: String,
    /// 32 lower-case hex digits.
    pub trace_id: String,
    /// 16 lower-case hex digits.
    pub span_id: String,
    /// Empty for a root span.
    pub parent_span_id: String,
}

impl Collector {
    /// Starts the Collector with its files in `dir` and waits until it is ready.
    pub async fn start(paths: &Paths, dir: &Path) -> Result<Collector> {
        let binary = paths.otel_collector();
        if !binary.is_file() {
            bail!(
                "{} is missing: run `cargo xtask provision`",
                binary.display()
            );
        }
        fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let grpc_port = free_port();
        let spans_file = dir.join("spans.jsonl");
        let config = dir.join("otelcol.yaml");
        // No internal telemetry: its own metrics server would take a fixed port (8888).
        let yaml = format!(
            "receivers:\n  otlp:\n    protocols:\n      grpc:\n        endpoint: 127.0.0.1:{grpc_port}\n\
             exporters:\n  file:\n    path: {}\n    flush_interval: 100ms\n\
             service:\n  telemetry:\n    metrics:\n      level: none\n\
             \x20 pipelines:\n    traces:\n      receivers: [otlp]\n      exporters: [file]\n",
            spans_file.display()
        );
        fs::write(&config, yaml).with_context(|| format!("writing {}", config.display()))?;
        let mut cmd = Command::new(&binary);
        cmd.arg("--config").arg(&config).current_dir(dir);
        let mut process = Managed::spawn(
            "otelcol",
            cmd,
            &dir.join("otelcol.log"),
            Some(&dir.join("otelcol.pid")),
        )?
        .with_stop(Signal::SIGTERM, Duration::from_secs(10));
        process
            .wait_for_log("Everything is ready", READY_TIMEOUT)
            .await
            .context("the OpenTelemetry Collector did not start")?;
        Ok(Collector {
            process,
            grpc_port,
            spans_file,
        })
    }

    /// What `OTEL_EXPORTER_OTLP_ENDPOINT` names: `http://127.0.0.1:<port>`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.grpc_port)
    }

    /// `127.0.0.1:<port>`: what a Dapr Configuration's `tracing.otel.endpointAddress` names.
    pub fn address(&self) -> String {
        format!("127.0.0.1:{}", self.grpc_port)
    }

    /// Every span received so far (the file exporter writes within 100 ms).
    pub fn spans(&self) -> Result<Vec<ExportedSpan>> {
        let text = match fs::read_to_string(&self.spans_file) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e).context(format!("reading {}", self.spans_file.display())),
        };
        Ok(parse_spans(&text))
    }

    pub fn log_tail(&self, lines: usize) -> String {
        self.process.log_tail(lines)
    }

    pub async fn shutdown(&mut self) {
        self.process.shutdown().await;
    }
}

/// The spans of what the file exporter wrote (JSON lines, one `ExportTraceServiceRequest`
/// each); a line still being written, or not JSON, is skipped.
pub fn parse_spans(text: &str) -> Vec<ExportedSpan> {
    text.lines()
        .filter(|l| l.ends_with('}'))
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .flat_map(|batch| parse_batch(&batch))
        .collect()
}

/// The spans of one OTLP/JSON `ExportTraceServiceRequest`.
fn parse_batch(batch: &Value) -> Vec<ExportedSpan> {
    let text = |v: &Value| v.as_str().unwrap_or_default().to_owned();
    let mut spans = Vec::new();
    for resource in batch["resourceSpans"].as_array().into_iter().flatten() {
        let service = resource["resource"]["attributes"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|a| a["key"] == "service.name")
            .map(|a| text(&a["value"]["stringValue"]))
            .unwrap_or_default();
        for scope in resource["scopeSpans"].as_array().into_iter().flatten() {
            for span in scope["spans"].as_array().into_iter().flatten() {
                spans.push(ExportedSpan {
                    service: service.clone(),
                    name: text(&span["name"]),
                    trace_id: text(&span["traceId"]).to_ascii_lowercase(),
                    span_id: text(&span["spanId"]).to_ascii_lowercase(),
                    parent_span_id: text(&span["parentSpanId"]).to_ascii_lowercase(),
                });
            }
        }
    }
    spans
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_gives_its_spans_with_their_service() {
        let batch = serde_json::json!({"resourceSpans": [{
            "resource": {"attributes": [
                {"key": "service.name", "value": {"stringValue": "chat-api"}}
            ]},
            "scopeSpans": [{"scope": {}, "spans": [
                {"traceId": "4BF92F3577B34DA6A3CE929D0E0E4736", "spanId": "00f067aa0ba902b7",
                 "parentSpanId": "", "name": "request"},
                {"traceId": "4bf92f3577b34da6a3ce929d0e0e4736", "spanId": "1111111111111111",
                 "parentSpanId": "00f067aa0ba902b7", "name": "child"}
            ]}]
        }]});
        let spans = parse_batch(&batch);
        assert_eq!(spans.len(), 2);
        assert_eq!(spans[0].service, "chat-api");
        assert_eq!(spans[0].trace_id, "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(spans[0].parent_span_id, "");
        assert_eq!(spans[1].parent_span_id, "00f067aa0ba902b7");
        assert_eq!(spans[1].name, "child");
        assert!(parse_batch(&serde_json::json!({"other": 1})).is_empty());
    }
}
