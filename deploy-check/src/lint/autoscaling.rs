//! Autoscaling: one autoscaler per workload, HPA and KEDA targets, KEDA consumer groups.

use super::*;

pub(super) fn autoscaling(objects: &[Object], index: &Index<'_>, p: &mut Problems) {
    let mut targets: BTreeMap<(String, String), Vec<String>> = BTreeMap::new();
    for o in objects {
        let (kind, name, min, max) = match (o.api_version(), o.kind()) {
            (v, "HorizontalPodAutoscaler") if v.starts_with("autoscaling/") => (
                o.str_at("/spec/scaleTargetRef/kind")
                    .unwrap_or("")
                    .to_owned(),
                o.str_at("/spec/scaleTargetRef/name")
                    .unwrap_or("")
                    .to_owned(),
                o.at("/spec/minReplicas")
                    .and_then(Value::as_i64)
                    .unwrap_or(1),
                o.at("/spec/maxReplicas")
                    .and_then(Value::as_i64)
                    .unwrap_or(0),
            ),
            ("keda.sh/v1alpha1", "ScaledObject") => (
                o.str_at("/spec/scaleTargetRef/kind")
                    .unwrap_or("Deployment")
                    .to_owned(),
                o.str_at("/spec/scaleTargetRef/name")
                    .unwrap_or("")
                    .to_owned(),
                o.at("/spec/minReplicaCount")
                    .and_then(Value::as_i64)
                    .unwrap_or(0),
                o.at("/spec/maxReplicaCount")
                    .and_then(Value::as_i64)
                    .unwrap_or(100),
            ),
            _ => continue,
        };
        if min > max {
            p.add(
                o,
                format!(
                    "scales between {min} and {max} replicas: the minimum is above the maximum"
                ),
            );
        }
        let Some(target) = index.find(&kind, &name) else {
            p.add(o, format!("scales {kind} {name:?}, which is not defined"));
            continue;
        };
        targets
            .entry((kind.clone(), name.clone()))
            .or_default()
            .push(o.id());
        if target.at("/spec/replicas").is_some() {
            p.add(target, format!("sets spec.replicas although {o} owns its replica count (every apply would reset it)"));
        }
        // Resource metrics are relative to requests: the scaled containers need them.
        for metric in o
            .at("/spec/metrics")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let (resource, container) = match metric["type"].as_str() {
                Some("ContainerResource") => (
                    metric
                        .pointer("/containerResource/name")
                        .and_then(Value::as_str),
                    metric
                        .pointer("/containerResource/container")
                        .and_then(Value::as_str),
                ),
                Some("Resource") => (
                    metric.pointer("/resource/name").and_then(Value::as_str),
                    None,
                ),
                _ => continue,
            };
            let containers: Vec<&Value> = target
                .pod_spec()
                .and_then(|s| s["containers"].as_array())
                .into_iter()
                .flatten()
                .filter(|c| container.is_none_or(|n| c["name"] == n))
                .collect();
            if containers.is_empty() {
                p.add(
                    o,
                    format!("scales on container {container:?}, which {target} does not have"),
                );
            }
            for c in containers {
                if let Some(r) = resource
                    && c.pointer(&format!("/resources/requests/{r}")).is_none()
                {
                    p.add(
                        o,
                        format!(
                            "scales on {r} of container {}, which requests no {r}",
                            c["name"]
                        ),
                    );
                }
            }
        }
    }
    for ((kind, name), owners) in targets {
        if owners.len() > 1
            && let Some(target) = index.find(&kind, &name)
        {
            p.add(
                target,
                format!(
                    "is scaled by {} autoscalers at once: {owners:?}",
                    owners.len()
                ),
            );
        }
    }
}
