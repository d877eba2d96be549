//! The Kubernetes Dapr resources against the self-hosted ones (`components/`, `dapr.yaml`):
//! the same components (type, version, scopes, every metadata entry but the addresses of
//! brokers and stores, so the same consumer groups), the same subscriptions and the same
//! resiliency policies, and the same app ids on the same ports.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::manifest::Object;

/// Component metadata that names where a broker or store is, which differs between a
/// loopback run and a cluster by design.
pub const ADDRESS_KEYS: [&str; 3] = ["brokers", "redisHost", "redisPassword"];

#[derive(Debug, Default)]
pub struct Parity {
    /// Differences: each one fails the comparison.
    pub problems: Vec<String>,
    /// Kubernetes resources without a self-hosted twin yet, for apps the self-hosted run
    /// (`dapr.yaml`) does not have yet either: reported, not failed.
    pub pending: Vec<String>,
}

fn is_dapr(o: &Object) -> bool {
    o.api_version().starts_with("dapr.io/")
}

fn scopes(o: &Object) -> Vec<String> {
    let mut s: Vec<String> = o
        .at("/scopes")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|v| v.as_str().map(str::to_owned))
        .collect();
    s.sort();
    s
}

/// A component's spec with its metadata as a sorted name -> entry map, addresses removed.
fn comparable_component_spec(o: &Object) -> Value {
    let mut spec = o.at("/spec").cloned().unwrap_or(Value::Null);
    if let Some(map) = spec.as_object_mut() {
        let entries: BTreeMap<String, Value> = map
            .get("metadata")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|m| m["name"].as_str().map(|n| (n.to_owned(), m.clone())))
            .filter(|(n, _)| !ADDRESS_KEYS.contains(&n.as_str()))
            .collect();
        map.insert(
            "metadata".into(),
            serde_json::to_value(entries).unwrap_or(Value::Null),
        );
    }
    spec
}

fn diff(what: &str, self_hosted: &Value, k8s: &Value, problems: &mut Vec<String>) {
    if self_hosted == k8s {
        return;
    }
    match (self_hosted, k8s) {
        (Value::Object(a), Value::Object(b)) => {
            let keys: std::collections::BTreeSet<&String> = a.keys().chain(b.keys()).collect();
            for key in keys {
                diff(
                    &format!("{what}.{key}"),
                    a.get(key).unwrap_or(&Value::Null),
                    b.get(key).unwrap_or(&Value::Null),
                    problems,
                );
            }
        }
        _ => problems.push(format!(
            "{what}: components/ has {self_hosted}, k8s/ has {k8s}"
        )),
    }
}

/// Compares the Dapr resources of `k8s` with `self_hosted` (the objects of `components/`);
/// `dapr_run` is the parsed `dapr.yaml`.
pub fn compare(self_hosted: &[Object], k8s: &[Object], dapr_run: &Value) -> Parity {
    let mut parity = Parity::default();
    let problems = &mut parity.problems;
    let k8s: Vec<&Object> = k8s.iter().filter(|o| is_dapr(o)).collect();
    let local_apps: Vec<&str> = dapr_run["apps"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|a| a["appID"].as_str())
        .collect();

    // Which k8s object is the twin of a self-hosted one.
    let twin = |sh: &Object| -> Option<&Object> {
        k8s.iter().copied().find(|o| {
            o.kind() == sh.kind()
                && match sh.kind() {
                    // Subscriptions by what they subscribe, whatever their names.
                    "Subscription" => {
                        o.str_at("/spec/pubsubname") == sh.str_at("/spec/pubsubname")
                            && o.str_at("/spec/topic") == sh.str_at("/spec/topic")
                            && scopes(o) == scopes(sh)
                    }
                    _ => o.name() == sh.name(),
                }
        })
    };

    let mut matched: Vec<&Object> = Vec::new();
    for sh in self_hosted.iter().filter(|o| is_dapr(o)) {
        if sh.kind() == "Configuration" {
            continue;
        }
        let Some(k) = twin(sh) else {
            problems.push(format!(
                "components/ has {} {:?} (scopes {:?}); k8s/ has no such {}",
                sh.kind(),
                sh.name(),
                scopes(sh),
                sh.kind()
            ));
            continue;
        };
        matched.push(k);
        let what = format!("{} {}", sh.kind(), sh.name());
        if scopes(sh) != scopes(k) {
            problems.push(format!(
                "{what}: scopes differ: components/ {:?}, k8s/ {:?}",
                scopes(sh),
                scopes(k)
            ));
        }
        match sh.kind() {
            "Component" => diff(
                &format!("{what}: spec"),
                &comparable_component_spec(sh),
                &comparable_component_spec(k),
                problems,
            ),
            _ => diff(
                &format!("{what}: spec"),
                sh.at("/spec").unwrap_or(&Value::Null),
                k.at("/spec").unwrap_or(&Value::Null),
                problems,
            ),
        }
    }

    for k in k8s.iter().copied() {
        if matches!(k.kind(), "Configuration") || matched.iter().any(|m| std::ptr::eq(*m, k)) {
            continue;
        }
        let scoped = scopes(k);
        let pending =
            !scoped.is_empty() && scoped.iter().all(|app| !local_apps.contains(&app.as_str()));
        let line = format!(
            "k8s/ has {} {:?} (scopes {scoped:?}), components/ has no twin",
            k.kind(),
            k.name()
        );
        if pending {
            parity.pending.push(format!(
                "{line}: its apps {scoped:?} are not in dapr.yaml yet, so it is compared once they are"
            ));
        } else {
            parity.problems.push(line);
        }
    }

    parity
}

fn k8s_workloads(objects: &[Object]) -> Vec<(&str, &Object, Option<&str>)> {
    objects
        .iter()
        .filter(|o| o.pod_annotation("dapr.io/enabled") == Some("true"))
        .filter_map(|o| {
            o.pod_annotation("dapr.io/app-id")
                .map(|id| (id, o, o.pod_annotation("dapr.io/app-port")))
        })
        .collect()
}

/// `dapr.yaml` app settings and the sidecar annotations that mean the same.
pub const APP_SETTINGS: [(&str, &str); 5] = [
    ("enableAppHealthCheck", "dapr.io/enable-app-health-check"),
    ("appHealthCheckPath", "dapr.io/app-health-check-path"),
    (
        "appHealthProbeInterval",
        "dapr.io/app-health-probe-interval",
    ),
    ("appHealthProbeTimeout", "dapr.io/app-health-probe-timeout"),
    ("appHealthThreshold", "dapr.io/app-health-threshold"),
];

fn as_text(v: &Value) -> Option<String> {
    match v {
        Value::Null => None,
        Value::String(s) => Some(s.clone()),
        other => Some(other.to_string()),
    }
}

/// Every app of the self-hosted run (`dapr.yaml`) runs in the cluster with the same app id,
/// app port and app health checking.
pub fn compare_apps(k8s: &[Object], dapr_run: &Value) -> Vec<String> {
    let workloads = k8s_workloads(k8s);
    let common = &dapr_run["common"];
    let mut problems = Vec::new();
    for app in dapr_run["apps"].as_array().into_iter().flatten() {
        let Some(id) = app["appID"].as_str() else {
            continue;
        };
        let Some((_, workload, port)) = workloads.iter().find(|(app_id, _, _)| *app_id == id)
        else {
            problems.push(format!(
                "dapr.yaml runs app {id:?}; no workload in k8s/ has dapr.io/app-id {id:?}"
            ));
            continue;
        };
        let local = app["appPort"].as_i64().map(|p| p.to_string());
        if local.as_deref() != *port {
            problems.push(format!(
                "app {id}: dapr.yaml has appPort {local:?}, {workload} has dapr.io/app-port {port:?}"
            ));
        }
        for (setting, annotation) in APP_SETTINGS {
            let value = app
                .get(setting)
                .or_else(|| common.get(setting))
                .unwrap_or(&Value::Null);
            let mut local = as_text(value);
            let mut cluster = workload.pod_annotation(annotation).map(str::to_owned);
            if setting == "enableAppHealthCheck" {
                // Off unless switched on, on either side.
                local = local.filter(|v| v == "true");
                cluster = cluster.filter(|v| v == "true");
            }
            if local != cluster {
                problems.push(format!(
                    "app {id}: dapr.yaml has {setting} {local:?}, {workload} has {annotation} {cluster:?}"
                ));
            }
        }
    }
    problems
}
