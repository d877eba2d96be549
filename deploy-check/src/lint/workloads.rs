//! Workloads, their containers and Services: references to Secrets, keys, ports and
//! volumes, requests and limits, probes.

use super::*;

pub(super) fn workload(o: &Object, index: &Index<'_>, p: &mut Problems) {
    let Some(spec) = o.pod_spec() else { return };
    let kind = o.kind();

    // The controller's selector must select its own template (the API server refuses).
    if matches!(
        kind,
        "Deployment" | "StatefulSet" | "DaemonSet" | "ReplicaSet"
    ) {
        let selector = o
            .at("/spec/selector/matchLabels")
            .and_then(Value::as_object);
        let labels = o
            .pod_metadata()
            .and_then(|m| m.get("labels"))
            .and_then(Value::as_object);
        match (selector, labels) {
            (Some(sel), Some(labels)) if !sel.is_empty() => {
                for (k, v) in sel {
                    if labels.get(k) != Some(v) {
                        p.add(o, format!("spec.selector.matchLabels {k}={v} does not match the pod template's labels"));
                    }
                }
            }
            _ => p.add(
                o,
                "needs spec.selector.matchLabels matching the pod template's labels",
            ),
        }
    }

    let restart = spec["restartPolicy"].as_str();
    match kind {
        "Job" | "CronJob" => {
            if !matches!(restart, Some("OnFailure" | "Never")) {
                p.add(
                    o,
                    format!("a Job's pods need restartPolicy OnFailure or Never, not {restart:?}"),
                );
            }
        }
        _ => {
            if !matches!(restart, None | Some("Always")) {
                p.add(
                    o,
                    format!("restartPolicy {restart:?}: only Always is allowed here"),
                );
            }
        }
    }

    if kind == "StatefulSet" {
        let service = o.str_at("/spec/serviceName").unwrap_or("");
        match index.find("Service", service) {
            None => p.add(o, format!("spec.serviceName {service:?} names no Service")),
            Some(s) if s.str_at("/spec/clusterIP") != Some("None") => p.add(
                o,
                format!(
                    "spec.serviceName {service:?} must be a headless Service (clusterIP: None)"
                ),
            ),
            Some(_) => {}
        }
    }

    // Volumes and what mounts them.
    let mut volumes: BTreeSet<String> = BTreeSet::new();
    for v in spec["volumes"].as_array().into_iter().flatten() {
        let vname = v["name"].as_str().unwrap_or("").to_owned();
        if let Some(secret) = v.pointer("/secret/secretName").and_then(Value::as_str)
            && !index.secrets.contains_key(secret)
            && v.pointer("/secret/optional") != Some(&Value::Bool(true))
        {
            p.add(
                o,
                format!("volume {vname}: Secret {secret:?} is not defined"),
            );
        }
        if let Some(cm) = v.pointer("/configMap/name").and_then(Value::as_str)
            && !index.config_maps.contains_key(cm)
            && v.pointer("/configMap/optional") != Some(&Value::Bool(true))
        {
            p.add(
                o,
                format!("volume {vname}: ConfigMap {cm:?} is not defined"),
            );
        }
        if let Some(claim) = v
            .pointer("/persistentVolumeClaim/claimName")
            .and_then(Value::as_str)
            && index.find("PersistentVolumeClaim", claim).is_none()
        {
            p.add(
                o,
                format!("volume {vname}: PersistentVolumeClaim {claim:?} is not defined"),
            );
        }
        volumes.insert(vname);
    }
    for t in o
        .at("/spec/volumeClaimTemplates")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        volumes.insert(
            t.pointer("/metadata/name")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_owned(),
        );
    }

    for c in o.containers() {
        let cname = c["name"].as_str().unwrap_or("?");
        container(o, c, cname, &volumes, index, p);
    }
}

pub(super) fn container(
    o: &Object,
    c: &Value,
    cname: &str,
    volumes: &BTreeSet<String>,
    index: &Index<'_>,
    p: &mut Problems,
) {
    let image = c["image"].as_str().unwrap_or("");
    let last = image.rsplit('/').next().unwrap_or(image);
    if image.is_empty() {
        p.add(o, format!("container {cname} has no image"));
    } else if !last.contains(':') && !image.contains('@') {
        p.add(o, format!("container {cname}: image {image:?} has no tag (it would mean :latest, pulled on every start)"));
    } else if last.ends_with(":latest") {
        p.add(
            o,
            format!("container {cname}: image {image:?} is :latest; pin a tag"),
        );
    }
    if let Some(policy) = c["imagePullPolicy"].as_str()
        && !matches!(policy, "Always" | "IfNotPresent" | "Never")
    {
        p.add(
            o,
            format!(
                "container {cname}: imagePullPolicy {policy:?} is not Always, IfNotPresent or Never"
            ),
        );
    }

    // Requests and limits for CPU and memory, requests within limits.
    for resource in ["cpu", "memory"] {
        let request = c.pointer(&format!("/resources/requests/{resource}"));
        let limit = c.pointer(&format!("/resources/limits/{resource}"));
        match (request.and_then(quantity), limit.and_then(quantity)) {
            (Some(r), Some(l)) if r > l => {
                p.add(o, format!("container {cname}: the {resource} request exceeds its limit"))
            }
            (Some(_), Some(_)) => {}
            _ => p.add(o, format!("container {cname} needs a {resource} request and limit (quantities such as 100m, 128Mi)")),
        }
    }

    // Named ports the probes use.
    let ports: BTreeSet<&str> = ports_of(c).filter_map(|p| p["name"].as_str()).collect();
    let numbers: BTreeSet<i64> = ports_of(c)
        .filter_map(|p| p["containerPort"].as_i64())
        .collect();
    for probe in ["livenessProbe", "readinessProbe", "startupProbe"] {
        for action in ["httpGet", "tcpSocket", "grpc"] {
            match c.pointer(&format!("/{probe}/{action}/port")) {
                Some(Value::String(name)) if !ports.contains(name.as_str()) => {
                    p.add(o, format!("container {cname}: {probe} uses port {name:?}, which the container does not declare"))
                }
                Some(Value::Number(n)) if !numbers.contains(&n.as_i64().unwrap_or(-1)) => {
                    p.add(o, format!("container {cname}: {probe} uses port {n}, which the container does not declare"))
                }
                _ => {}
            }
        }
    }

    for m in c["volumeMounts"].as_array().into_iter().flatten() {
        let vname = m["name"].as_str().unwrap_or("");
        if !volumes.contains(vname) {
            p.add(
                o,
                format!("container {cname} mounts volume {vname:?}, which the pod does not have"),
            );
        }
    }

    // Secrets and ConfigMaps the environment reads.
    for env in c["env"].as_array().into_iter().flatten() {
        let var = env["name"].as_str().unwrap_or("?");
        if let Some(r) = env.pointer("/valueFrom/secretKeyRef") {
            secret_key(o, cname, var, r, index, p);
        }
        if let Some(r) = env.pointer("/valueFrom/configMapKeyRef") {
            let (name, key) = (
                r["name"].as_str().unwrap_or(""),
                r["key"].as_str().unwrap_or(""),
            );
            if r["optional"] != true
                && !index
                    .config_maps
                    .get(name)
                    .is_some_and(|keys| keys.contains(key))
            {
                p.add(o, format!("container {cname}: {var} reads key {key:?} of ConfigMap {name:?}, which is not defined"));
            }
        }
    }
    for from in c["envFrom"].as_array().into_iter().flatten() {
        if let Some(name) = from.pointer("/secretRef/name").and_then(Value::as_str)
            && !index.secrets.contains_key(name)
            && from.pointer("/secretRef/optional") != Some(&Value::Bool(true))
        {
            p.add(
                o,
                format!("container {cname}: envFrom Secret {name:?} is not defined"),
            );
        }
        if let Some(name) = from.pointer("/configMapRef/name").and_then(Value::as_str)
            && !index.config_maps.contains_key(name)
            && from.pointer("/configMapRef/optional") != Some(&Value::Bool(true))
        {
            p.add(
                o,
                format!("container {cname}: envFrom ConfigMap {name:?} is not defined"),
            );
        }
    }
}

pub(super) fn secret_key(
    o: &Object,
    cname: &str,
    var: &str,
    r: &Value,
    index: &Index<'_>,
    p: &mut Problems,
) {
    let (name, key) = (
        r["name"].as_str().unwrap_or(""),
        r["key"].as_str().unwrap_or(""),
    );
    if r["optional"] == true {
        return;
    }
    match index.secrets.get(name) {
        None => p.add(o, format!("container {cname}: {var} reads Secret {name:?}, which is not defined")),
        Some(keys) if !keys.contains_key(key) => p.add(
            o,
            format!("container {cname}: {var} reads key {key:?} of Secret {name:?}, which has only {:?}", keys.keys().collect::<Vec<_>>()),
        ),
        Some(_) => {}
    }
}

pub(super) fn service(o: &Object, index: &Index<'_>, p: &mut Problems) {
    if o.kind() != "Service" {
        return;
    }
    if let Some(t) = o.str_at("/spec/type")
        && !matches!(
            t,
            "ClusterIP" | "NodePort" | "LoadBalancer" | "ExternalName"
        )
    {
        p.add(
            o,
            format!("spec.type {t:?} is not ClusterIP, NodePort, LoadBalancer or ExternalName"),
        );
    }
    let Some(selector) = o.at("/spec/selector").and_then(Value::as_object) else {
        return;
    };
    let pods = index.selected_workloads(selector);
    if pods.is_empty() {
        p.add(
            o,
            format!(
                "spec.selector {} selects no pod template here",
                Value::Object(selector.clone())
            ),
        );
        return;
    }
    for port in o
        .at("/spec/ports")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        if let Some(protocol) = port["protocol"].as_str()
            && !matches!(protocol, "TCP" | "UDP" | "SCTP")
        {
            p.add(
                o,
                format!("port protocol {protocol:?} is not TCP, UDP or SCTP"),
            );
        }
        if let Some(target) = port["targetPort"].as_str() {
            for w in &pods {
                let declared = w
                    .containers()
                    .iter()
                    .any(|c| ports_of(c).any(|p| p["name"] == target));
                if !declared {
                    p.add(
                        o,
                        format!("targetPort {target:?} is not a port name of the pods of {w}"),
                    );
                }
            }
        }
    }
}
