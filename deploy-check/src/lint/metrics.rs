//! Metrics: every service's pods tell a Prometheus that discovers pods by annotation where
//! the app's `/metrics` is.

use super::*;

/// The label that marks this system's service workloads.
const SERVICE_COMPONENT: &str = "service";

pub(super) fn metrics(o: &Object, p: &mut Problems) {
    let is_service = o
        .pod_metadata()
        .and_then(|m| m.pointer("/labels/app.kubernetes.io~1component"))
        .and_then(Value::as_str)
        == Some(SERVICE_COMPONENT);
    if !is_service {
        return;
    }
    if o.pod_annotation("prometheus.io/scrape") != Some("true") {
        p.add(
            o,
            "needs the pod annotation prometheus.io/scrape: \"true\": its /metrics is never scraped",
        );
    }
    let path = o.pod_annotation("prometheus.io/path");
    if path != Some("/metrics") {
        p.add(
            o,
            format!("prometheus.io/path is {path:?}; the services serve their metrics at /metrics"),
        );
    }
    match o
        .pod_annotation("prometheus.io/port")
        .map(str::parse::<i64>)
    {
        None => p.add(
            o,
            "needs the pod annotation prometheus.io/port (the app's port)",
        ),
        Some(Err(_)) => p.add(o, "prometheus.io/port is not a port number"),
        Some(Ok(port)) => {
            let listened = o
                .containers()
                .iter()
                .any(|c| ports_of(c).any(|x| x["containerPort"] == port));
            if !listened {
                p.add(
                    o,
                    format!(
                        "prometheus.io/port {port} is no container's port: the scrape would fail"
                    ),
                );
            }
        }
    }
}
