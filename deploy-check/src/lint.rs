//! Checks a schema cannot make: names the API server would refuse, references between
//! objects (a Secret, key, port, Service, Configuration or component that is not there),
//! and the rules this system's deployment depends on (Dapr tokens and app ports, consumer
//! groups, topics and partitions, one autoscaler per workload).
//!
//! Each problem is one line, `Kind namespace/name: what is wrong`.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde_json::Value;

use crate::manifest::Object;

/// Every problem found in one rendered set of objects.
pub fn check(objects: &[Object]) -> Vec<String> {
    let index = Index::new(objects);
    let mut p = Problems::default();
    for object in objects {
        names(object, &mut p);
        labels(object, &mut p);
        workload(object, &index, &mut p);
        service(object, &index, &mut p);
    }
    namespaces(objects, &mut p);
    duplicates(objects, &mut p);
    autoscaling(objects, &index, &mut p);
    dapr(objects, &index, &mut p);
    kafka(objects, &index, &mut p);
    cluster_dns_names(objects, &index, &mut p);
    database_credentials(objects, &index, &mut p);
    p.0
}

#[derive(Default)]
struct Problems(Vec<String>);

impl Problems {
    fn add(&mut self, object: &Object, message: impl AsRef<str>) {
        self.0.push(format!("{object}: {}", message.as_ref()));
    }
}

/// Lookups over the whole set.
struct Index<'a> {
    objects: &'a [Object],
    /// Secret name -> its keys and decoded values.
    secrets: HashMap<&'a str, BTreeMap<String, String>>,
    config_maps: HashMap<&'a str, BTreeSet<String>>,
}

impl<'a> Index<'a> {
    fn new(objects: &'a [Object]) -> Self {
        let mut secrets = HashMap::new();
        let mut config_maps = HashMap::new();
        for o in objects {
            match (o.api_version(), o.kind()) {
                ("v1", "Secret") => {
                    let mut keys = BTreeMap::new();
                    if let Some(data) = o.at("/data").and_then(Value::as_object) {
                        for (k, v) in data {
                            let decoded = v.as_str().and_then(base64_decode).unwrap_or_default();
                            keys.insert(k.clone(), decoded);
                        }
                    }
                    if let Some(data) = o.at("/stringData").and_then(Value::as_object) {
                        for (k, v) in data {
                            keys.insert(k.clone(), v.as_str().unwrap_or("").to_owned());
                        }
                    }
                    secrets.insert(o.name(), keys);
                }
                ("v1", "ConfigMap") => {
                    let keys = ["/data", "/binaryData"]
                        .iter()
                        .filter_map(|p| o.at(p).and_then(Value::as_object))
                        .flat_map(|m| m.keys().cloned())
                        .collect();
                    config_maps.insert(o.name(), keys);
                }
                _ => {}
            }
        }
        Self {
            objects,
            secrets,
            config_maps,
        }
    }

    fn find(&self, kind: &str, name: &str) -> Option<&'a Object> {
        self.objects
            .iter()
            .find(|o| o.kind() == kind && o.name() == name)
    }

    fn of_kind(&self, kind: &'a str) -> impl Iterator<Item = &'a Object> + 'a {
        self.objects.iter().filter(move |o| o.kind() == kind)
    }

    fn secret_value(&self, name: &str, key: &str) -> Option<&str> {
        self.secrets.get(name)?.get(key).map(String::as_str)
    }

    /// Dapr app ids of the workloads with a sidecar, and the workload of each.
    fn dapr_apps(&self) -> BTreeMap<&'a str, &'a Object> {
        self.objects
            .iter()
            .filter(|o| o.pod_annotation("dapr.io/enabled") == Some("true"))
            .filter_map(|o| o.pod_annotation("dapr.io/app-id").map(|id| (id, o)))
            .collect()
    }

    /// Pod templates whose labels include all of `selector`.
    fn selected_workloads(&self, selector: &serde_json::Map<String, Value>) -> Vec<&'a Object> {
        self.objects
            .iter()
            .filter(|o| {
                let Some(labels) = o
                    .pod_metadata()
                    .and_then(|m| m.get("labels"))
                    .and_then(Value::as_object)
                else {
                    return false;
                };
                !selector.is_empty() && selector.iter().all(|(k, v)| labels.get(k) == Some(v))
            })
            .collect()
    }
}

// --- names and labels ---------------------------------------------------------------------

fn is_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

fn is_dns_subdomain(s: &str) -> bool {
    !s.is_empty() && s.len() <= 253 && s.split('.').all(is_dns_label)
}

/// IANA service name: what a port name must be.
fn is_port_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 15
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && s.bytes().any(|b| b.is_ascii_lowercase())
        && !s.starts_with('-')
        && !s.ends_with('-')
        && !s.contains("--")
}

fn is_label_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        && s.as_bytes()[0].is_ascii_alphanumeric()
        && s.as_bytes()[s.len() - 1].is_ascii_alphanumeric()
}

fn is_label_key(s: &str) -> bool {
    match s.split_once('/') {
        Some((prefix, name)) => is_dns_subdomain(prefix) && is_label_name(name),
        None => is_label_name(s),
    }
}

fn is_label_value(s: &str) -> bool {
    s.is_empty() || is_label_name(s)
}

fn names(o: &Object, p: &mut Problems) {
    let name = o.name();
    let label_only = matches!(o.kind(), "Service" | "Namespace");
    if name.is_empty() {
        p.add(o, "metadata.name is missing");
    } else if label_only && !is_dns_label(name) {
        p.add(
            o,
            format!(
                "name {name:?} is not a DNS label (lower case letters, digits, '-', at most 63)"
            ),
        );
    } else if !is_dns_subdomain(name) {
        p.add(
            o,
            format!(
                "name {name:?} is not a DNS subdomain name (lower case letters, digits, '-', '.')"
            ),
        );
    }
    let mut port_names = BTreeSet::new();
    for c in o.containers() {
        let cname = c["name"].as_str().unwrap_or("");
        if !is_dns_label(cname) {
            p.add(o, format!("container name {cname:?} is not a DNS label"));
        }
        for port in c["ports"].as_array().into_iter().flatten() {
            if let Some(pname) = port["name"].as_str() {
                if !is_port_name(pname) {
                    p.add(o, format!("port name {pname:?} of container {cname} is not a valid port name (at most 15 lower case letters, digits, '-')"));
                }
                if !port_names.insert(pname.to_owned()) {
                    p.add(o, format!("port name {pname:?} is used twice in one pod"));
                }
            }
        }
    }
}

fn label_maps(o: &Object) -> Vec<(&'static str, &Value)> {
    let mut maps = Vec::new();
    if let Some(l) = o.at("/metadata/labels") {
        maps.push(("metadata.labels", l));
    }
    if let Some(l) = o.pod_metadata().and_then(|m| m.get("labels")) {
        maps.push(("the pod template's labels", l));
    }
    if let Some(l) = o.at("/spec/selector/matchLabels") {
        maps.push(("spec.selector.matchLabels", l));
    }
    if o.kind() == "Service"
        && let Some(l) = o.at("/spec/selector")
    {
        maps.push(("spec.selector", l));
    }
    maps
}

fn labels(o: &Object, p: &mut Problems) {
    for (what, map) in label_maps(o) {
        for (k, v) in map.as_object().into_iter().flatten() {
            if !is_label_key(k) {
                p.add(o, format!("{what}: {k:?} is not a valid label key"));
            }
            match v.as_str() {
                Some(v) if is_label_value(v) => {}
                _ => p.add(
                    o,
                    format!("{what}: the value {v} of {k:?} is not a valid label value"),
                ),
            }
        }
    }
    let annotations = [
        o.at("/metadata/annotations"),
        o.pod_metadata().and_then(|m| m.get("annotations")),
    ];
    for map in annotations.into_iter().flatten() {
        for k in map.as_object().into_iter().flatten().map(|(k, _)| k) {
            if !is_label_key(k) {
                p.add(o, format!("{k:?} is not a valid annotation key"));
            }
        }
    }
}

fn namespaces(objects: &[Object], p: &mut Problems) {
    const CLUSTER_SCOPED: [&str; 8] = [
        "Namespace",
        "ClusterRole",
        "ClusterRoleBinding",
        "CustomResourceDefinition",
        "StorageClass",
        "PersistentVolume",
        "PriorityClass",
        "ClusterTriggerAuthentication",
    ];
    let declared: BTreeSet<&str> = objects
        .iter()
        .filter(|o| o.kind() == "Namespace")
        .map(Object::name)
        .collect();
    let used: BTreeSet<&str> = objects.iter().filter_map(Object::namespace).collect();
    if used.len() > 1
        && let Some(o) = objects.first()
    {
        p.add(
            o,
            format!(
                "the objects are spread over namespaces {used:?}; this deployment lives in one"
            ),
        );
    }
    for o in objects {
        let cluster_scoped = CLUSTER_SCOPED.contains(&o.kind());
        match (o.namespace(), cluster_scoped) {
            (Some(ns), true) => p.add(o, format!("is cluster-scoped but has namespace {ns:?}")),
            (None, false) => p.add(
                o,
                "has no namespace (the kustomization's `namespace:` sets it)",
            ),
            (Some(ns), false) if !declared.is_empty() && !declared.contains(ns) => p.add(
                o,
                format!("is in namespace {ns:?}, which no Namespace object here creates"),
            ),
            _ => {}
        }
    }
}

fn duplicates(objects: &[Object], p: &mut Problems) {
    let mut seen = BTreeSet::new();
    for o in objects {
        let group = o.api_version().rsplit_once('/').map_or("", |(g, _)| g);
        if !seen.insert((
            group.to_owned(),
            o.kind().to_owned(),
            o.namespace().map(str::to_owned),
            o.name().to_owned(),
        )) {
            p.add(o, "is defined twice");
        }
    }
}

// --- workloads ----------------------------------------------------------------------------

fn workload(o: &Object, index: &Index<'_>, p: &mut Problems) {
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

fn container(
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
    let ports: BTreeSet<&str> = c["ports"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|p| p["name"].as_str())
        .collect();
    let numbers: BTreeSet<i64> = c["ports"]
        .as_array()
        .into_iter()
        .flatten()
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

fn secret_key(o: &Object, cname: &str, var: &str, r: &Value, index: &Index<'_>, p: &mut Problems) {
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

fn service(o: &Object, index: &Index<'_>, p: &mut Problems) {
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
                let declared = w.containers().iter().any(|c| {
                    c["ports"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .any(|p| p["name"] == target)
                });
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

// --- autoscaling --------------------------------------------------------------------------

fn autoscaling(objects: &[Object], index: &Index<'_>, p: &mut Problems) {
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

// --- Dapr ---------------------------------------------------------------------------------

fn dapr(objects: &[Object], index: &Index<'_>, p: &mut Problems) {
    let apps = index.dapr_apps();
    let components: BTreeMap<&str, &Object> = index
        .of_kind("Component")
        .filter(|o| o.api_version().starts_with("dapr.io/"))
        .map(|o| (o.name(), o))
        .collect();

    let mut app_ids: BTreeMap<&str, String> = BTreeMap::new();
    for o in objects
        .iter()
        .filter(|o| o.pod_annotation("dapr.io/enabled").is_some())
    {
        sidecar(o, index, &mut app_ids, p);
    }

    let scopes_of = |o: &Object| -> Vec<String> {
        o.at("/scopes")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|s| s.as_str().map(str::to_owned))
            .collect()
    };
    for (name, c) in &components {
        let scopes = scopes_of(c);
        for app in &scopes {
            if !apps.contains_key(app.as_str()) {
                p.add(
                    c,
                    format!("is scoped to app id {app:?}, which no workload here has"),
                );
            }
        }
        let meta = |key: &str| -> Option<String> {
            c.at("/spec/metadata")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .find(|m| m["name"] == key)
                .and_then(|m| m["value"].as_str().map(str::to_owned))
        };
        let ty = c.str_at("/spec/type").unwrap_or("");
        if ty == "pubsub.kafka"
            && let Some(group) = meta("consumerGroup")
            && group != "{appID}"
        {
            p.add(c, format!("consumerGroup {group:?}: a fixed group shared by several apps splits every topic between them; use \"{{appID}}\" (or leave it unset)"));
        }
        if ty == "bindings.cron" && scopes.is_empty() {
            p.add(c, "a cron binding without scopes fires in the sidecar of every app; scope it to the app that handles it");
        }
        if ty.starts_with("bindings.") && meta("route").is_none() && !is_dns_label(name) {
            p.add(
                c,
                "the binding's name is the route daprd calls; make it a plain path segment",
            );
        }
    }

    for s in index
        .of_kind("Subscription")
        .filter(|o| o.api_version().starts_with("dapr.io/"))
    {
        let pubsub = s.str_at("/spec/pubsubname").unwrap_or("");
        let scopes = scopes_of(s);
        match components.get(pubsub) {
            None => p.add(s, format!("pubsubname {pubsub:?} names no Component")),
            Some(c) => {
                if !c.str_at("/spec/type").unwrap_or("").starts_with("pubsub.") {
                    p.add(
                        s,
                        format!("pubsubname {pubsub:?} names a Component that is not a pub/sub"),
                    );
                }
                let component_scopes = scopes_of(c);
                for app in &scopes {
                    if !component_scopes.is_empty() && !component_scopes.contains(app) {
                        p.add(s, format!("app {app:?} subscribes through {pubsub:?}, which is not scoped to it"));
                    }
                }
            }
        }
        if scopes.is_empty() {
            p.add(s, "a Subscription without scopes subscribes every app (each in its own consumer group); scope it");
        }
        for app in &scopes {
            if !apps.contains_key(app.as_str()) {
                p.add(
                    s,
                    format!("is scoped to app id {app:?}, which no workload here has"),
                );
            }
        }
        let routes: Vec<&str> = std::iter::once(s.str_at("/spec/routes/default"))
            .chain(
                s.at("/spec/routes/rules")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .map(|r| r["path"].as_str()),
            )
            .flatten()
            .collect();
        for route in routes {
            if !route.starts_with('/') {
                p.add(
                    s,
                    format!("route {route:?} is not a path (starts with '/')"),
                );
            }
        }
    }

    for r in index
        .of_kind("Resiliency")
        .filter(|o| o.api_version().starts_with("dapr.io/"))
    {
        for (name, target) in r
            .at("/spec/targets/components")
            .and_then(Value::as_object)
            .into_iter()
            .flatten()
        {
            if !components.contains_key(name.as_str()) {
                p.add(
                    r,
                    format!("targets component {name:?}, which is not defined"),
                );
            }
            for direction in ["outbound", "inbound"] {
                for (policy, kind) in [
                    ("timeout", "timeouts"),
                    ("retry", "retries"),
                    ("circuitBreaker", "circuitBreakers"),
                ] {
                    if let Some(policy_name) = target
                        .pointer(&format!("/{direction}/{policy}"))
                        .and_then(Value::as_str)
                        && r.at(&format!("/spec/policies/{kind}/{policy_name}"))
                            .is_none()
                    {
                        p.add(r, format!("{name}.{direction}.{policy} names {policy_name:?}, which spec.policies.{kind} does not define"));
                    }
                }
            }
        }
    }
}

/// One workload with a Dapr sidecar: its annotations against the rest.
fn sidecar<'a>(
    o: &'a Object,
    index: &Index<'_>,
    app_ids: &mut BTreeMap<&'a str, String>,
    p: &mut Problems,
) {
    let enabled = o.pod_annotation("dapr.io/enabled").unwrap_or("");
    if enabled != "true" && enabled != "false" {
        p.add(
            o,
            format!("dapr.io/enabled is {enabled:?}: daprd's injector expects \"true\""),
        );
        return;
    }
    if enabled != "true" {
        return;
    }
    let Some(app_id) = o.pod_annotation("dapr.io/app-id") else {
        p.add(o, "has a sidecar but no dapr.io/app-id");
        return;
    };
    if let Some(other) = app_ids.insert(app_id, o.id()) {
        p.add(o, format!("uses app id {app_id:?} like {other}"));
    }
    let containers: Vec<&Value> = o
        .pod_spec()
        .and_then(|s| s["containers"].as_array())
        .into_iter()
        .flatten()
        .collect();
    let env_of = |c: &Value, var: &str| -> Option<Value> {
        c["env"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|e| e["name"] == var)
            .cloned()
    };
    match o
        .pod_annotation("dapr.io/app-port")
        .map(|s| s.parse::<i64>())
    {
        None => {}
        Some(Err(_)) => p.add(o, "dapr.io/app-port is not a port number"),
        Some(Ok(port)) => {
            let app = containers.iter().find(|c| {
                c["ports"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|x| x["containerPort"] == port)
            });
            match app {
                None => p.add(o, format!("dapr.io/app-port {port} is no container's port: daprd would wait for an app that listens elsewhere")),
                Some(c) => {
                    if let Some(env) = env_of(c, "APP_PORT")
                        && env["value"].as_str() != Some(port.to_string().as_str()) {
                            p.add(o, format!("dapr.io/app-port is {port} but the app's APP_PORT is {}", env["value"]));
                        }
                }
            }
        }
    }
    if let Some(protocol) = o.pod_annotation("dapr.io/app-protocol")
        && !matches!(protocol, "http" | "https" | "grpc" | "grpcs" | "h2c")
    {
        p.add(
            o,
            format!("dapr.io/app-protocol {protocol:?} is not http, https, grpc, grpcs or h2c"),
        );
    }
    if let Some(config) = o.pod_annotation("dapr.io/config")
        && !index
            .of_kind("Configuration")
            .any(|c| c.name() == config && c.api_version().starts_with("dapr.io/"))
    {
        p.add(
            o,
            format!("dapr.io/config names Configuration {config:?}, which is not defined"),
        );
    }
    // The sidecar reads the key `token` of these Secrets; the app must hold the same token.
    for (annotation, var) in [
        ("dapr.io/api-token-secret", "DAPR_API_TOKEN"),
        ("dapr.io/app-token-secret", "APP_API_TOKEN"),
    ] {
        let Some(secret) = o.pod_annotation(annotation) else {
            continue;
        };
        if index.secret_value(secret, "token").is_none() {
            p.add(o, format!("{annotation} names Secret {secret:?}, which is not defined or has no key \"token\""));
        }
        for c in &containers {
            let from = env_of(c, var);
            let source = from
                .as_ref()
                .and_then(|e| e.pointer("/valueFrom/secretKeyRef"));
            let ok = source.is_some_and(|s| s["name"] == secret && s["key"] == "token");
            if !ok {
                p.add(o, format!("container {}: {annotation} is {secret:?}, so {var} must come from that Secret's key \"token\"", c["name"].as_str().unwrap_or("?")));
            }
        }
    }
}

// --- Kafka --------------------------------------------------------------------------------

/// The topics Job: its TOPICS and PARTITIONS variables.
fn topics_job<'a>(index: &Index<'a>) -> Option<(&'a Object, Vec<String>, Option<i64>)> {
    index.of_kind("Job").find_map(|job| {
        job.containers().into_iter().find_map(|c| {
            let env = |var: &str| {
                c["env"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .find(|e| e["name"] == var)
                    .and_then(|e| e["value"].as_str())
            };
            let topics = env("TOPICS")?;
            let partitions = env("PARTITIONS").and_then(|p| p.parse().ok());
            Some((
                job,
                topics.split_whitespace().map(str::to_owned).collect(),
                partitions,
            ))
        })
    })
}

fn kafka(_objects: &[Object], index: &Index<'_>, p: &mut Problems) {
    let kafka_pubsub = index
        .of_kind("Component")
        .any(|c| c.str_at("/spec/type") == Some("pubsub.kafka"));
    if !kafka_pubsub {
        return;
    }
    let Some((job, topics, partitions)) = topics_job(index) else {
        if let Some(c) = index
            .of_kind("Component")
            .find(|c| c.str_at("/spec/type") == Some("pubsub.kafka"))
        {
            p.add(c, "no Job creates the topics (a Job with TOPICS and PARTITIONS): Dapr never creates them");
        }
        return;
    };
    for s in index.of_kind("Subscription") {
        for key in ["/spec/topic", "/spec/deadLetterTopic"] {
            if let Some(topic) = s.str_at(key)
                && !topics.iter().any(|t| t == topic)
            {
                p.add(
                    s,
                    format!("uses topic {topic:?}, which {job} does not create"),
                );
            }
        }
    }
    let apps = index.dapr_apps();
    for so in index.of_kind("ScaledObject") {
        let target = so.str_at("/spec/scaleTargetRef/name").unwrap_or("");
        let max = so
            .at("/spec/maxReplicaCount")
            .and_then(Value::as_i64)
            .unwrap_or(100);
        for trigger in so
            .at("/spec/triggers")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            if trigger["type"] != "kafka" {
                continue;
            }
            let topic = trigger
                .pointer("/metadata/topic")
                .and_then(Value::as_str)
                .unwrap_or("");
            let group = trigger
                .pointer("/metadata/consumerGroup")
                .and_then(Value::as_str)
                .unwrap_or("");
            if !topics.iter().any(|t| t == topic) {
                p.add(
                    so,
                    format!("scales on topic {topic:?}, which {job} does not create"),
                );
            }
            if let Some(partitions) = partitions
                && max > partitions
            {
                p.add(so, format!("maxReplicaCount {max} exceeds the {partitions} partitions of {topic:?}: the extra replicas would get no partition"));
            }
            // The Kafka component's consumer group is the app id.
            let app = apps
                .iter()
                .find(|(_, w)| w.kind() == "Deployment" && w.name() == target)
                .map(|(id, _)| *id);
            match app {
                None => p.add(
                    so,
                    format!(
                        "scales {target:?}, which has no Dapr sidecar: whose consumer lag is it?"
                    ),
                ),
                Some(app) => {
                    if group != app {
                        p.add(so, format!("reads the lag of consumer group {group:?}, but {target}'s sidecar consumes as {app:?} (consumerGroup {{appID}})"));
                    }
                    let subscribed = index.of_kind("Subscription").any(|s| {
                        s.str_at("/spec/topic") == Some(topic)
                            && s.at("/scopes")
                                .and_then(Value::as_array)
                                .is_some_and(|a| a.iter().any(|x| x == app))
                    });
                    if !subscribed {
                        p.add(
                            so,
                            format!(
                                "scales on {topic:?}, but app {app:?} has no Subscription to it"
                            ),
                        );
                    }
                }
            }
        }
    }
}

// --- addresses ----------------------------------------------------------------------------

/// Every `host.svc.cluster.local[:port]` in any string must be a Service here (in its
/// namespace, with that port): the one place a namespace or Service rename hides.
fn cluster_dns_names(objects: &[Object], index: &Index<'_>, p: &mut Problems) {
    for o in objects {
        let mut strings = Vec::new();
        collect_strings(&o.0, &mut strings);
        if o.kind() == "Secret" {
            strings.extend(
                index
                    .secrets
                    .get(o.name())
                    .into_iter()
                    .flat_map(|m| m.values().cloned()),
            );
        }
        let mut reported = BTreeSet::new();
        for s in &strings {
            for token in s.split(|c: char| {
                c.is_whitespace() || matches!(c, ',' | '"' | '\'' | '/' | '@' | ';' | '=' | '?')
            }) {
                let Some(pos) = token.find(".svc.cluster.local") else {
                    continue;
                };
                let host = &token[..pos];
                let port = token[pos + ".svc.cluster.local".len()..]
                    .strip_prefix(':')
                    .and_then(|p| p.parse::<i64>().ok());
                let mut parts: Vec<&str> = host.split('.').collect();
                let (Some(ns), Some(svc)) = (parts.pop(), parts.pop()) else {
                    continue;
                };
                if !reported.insert(token.to_owned()) {
                    continue;
                }
                let service = objects.iter().find(|x| {
                    x.kind() == "Service" && x.name() == svc && x.namespace() == Some(ns)
                });
                match service {
                    None => p.add(o, format!("refers to {token}, but there is no Service {svc:?} in namespace {ns:?} here")),
                    Some(service) => {
                        if let Some(port) = port {
                            let has_port = service.at("/spec/ports").and_then(Value::as_array).into_iter().flatten().any(|x| x["port"] == port);
                            if !has_port {
                                p.add(o, format!("refers to {token}, but Service {svc} has no port {port}"));
                            }
                        }
                    }
                }
            }
        }
    }
}

fn collect_strings(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::String(s) => out.push(s.clone()),
        Value::Array(a) => a.iter().for_each(|x| collect_strings(x, out)),
        Value::Object(m) => m.values().for_each(|x| collect_strings(x, out)),
        _ => {}
    }
}

/// A `postgres://user:password@host:port/db` URL in a Secret must agree with the
/// PostgreSQL server it names (user, database and password of its container), or every
/// service fails to connect on its first start.
fn database_credentials(objects: &[Object], index: &Index<'_>, p: &mut Problems) {
    for secret in objects.iter().filter(|o| o.kind() == "Secret") {
        for (key, value) in index.secrets.get(secret.name()).into_iter().flatten() {
            let Some(rest) = value
                .strip_prefix("postgres://")
                .or_else(|| value.strip_prefix("postgresql://"))
            else {
                continue;
            };
            let Some((userinfo, hostpart)) = rest.split_once('@') else {
                continue;
            };
            let (user, password) = userinfo.split_once(':').unwrap_or((userinfo, ""));
            let (hostport, db) = hostpart.split_once('/').unwrap_or((hostpart, ""));
            let db = db.split('?').next().unwrap_or("");
            let host = hostport.split(':').next().unwrap_or("");
            let svc = host.split('.').next().unwrap_or("");
            let Some(service) = index.find("Service", svc) else {
                continue;
            };
            let Some(selector) = service.at("/spec/selector").and_then(Value::as_object) else {
                continue;
            };
            for server in index.selected_workloads(selector) {
                for c in server.containers() {
                    let env = |var: &str| {
                        c["env"]
                            .as_array()
                            .into_iter()
                            .flatten()
                            .find(|e| e["name"] == var)
                    };
                    let Some(pw) = env("POSTGRES_PASSWORD") else {
                        continue;
                    };
                    let server_password = match pw.pointer("/valueFrom/secretKeyRef") {
                        Some(r) => index
                            .secret_value(
                                r["name"].as_str().unwrap_or(""),
                                r["key"].as_str().unwrap_or(""),
                            )
                            .map(str::to_owned),
                        None => pw["value"].as_str().map(str::to_owned),
                    };
                    let server_user = env("POSTGRES_USER")
                        .and_then(|e| e["value"].as_str())
                        .unwrap_or("postgres");
                    let server_db = env("POSTGRES_DB")
                        .and_then(|e| e["value"].as_str())
                        .unwrap_or(server_user);
                    if server_password.as_deref() != Some(password) {
                        p.add(
                            secret,
                            format!("{key}: the password is not the POSTGRES_PASSWORD of {server}"),
                        );
                    }
                    if user != server_user {
                        p.add(
                            secret,
                            format!("{key}: user {user:?}, but {server} creates {server_user:?}"),
                        );
                    }
                    if db != server_db {
                        p.add(
                            secret,
                            format!("{key}: database {db:?}, but {server} creates {server_db:?}"),
                        );
                    }
                }
            }
        }
    }
}

// --- small parsers ------------------------------------------------------------------------

/// A Kubernetes quantity (`100m`, `1`, `0.5`, `128Mi`, `1G`, `1e3`) as a number.
pub fn quantity(v: &Value) -> Option<f64> {
    if let Some(n) = v.as_f64() {
        return Some(n);
    }
    let s = v.as_str()?;
    const SUFFIXES: [(&str, f64); 13] = [
        ("Ki", 1024.0),
        ("Mi", 1_048_576.0),
        ("Gi", 1_073_741_824.0),
        ("Ti", 1_099_511_627_776.0),
        ("Pi", 1_125_899_906_842_624.0),
        ("Ei", 1_152_921_504_606_846_976.0),
        ("n", 1e-9),
        ("u", 1e-6),
        ("m", 1e-3),
        ("k", 1e3),
        ("M", 1e6),
        ("G", 1e9),
        ("T", 1e12),
    ];
    for (suffix, factor) in SUFFIXES {
        if let Some(number) = s.strip_suffix(suffix) {
            return number
                .parse::<f64>()
                .ok()
                .filter(|n| n.is_finite())
                .map(|n| n * factor);
        }
    }
    s.parse::<f64>().ok().filter(|n| n.is_finite())
}

/// Standard base64 (what Secret `data` holds), to text.
fn base64_decode(s: &str) -> Option<String> {
    let mut bits: u32 = 0;
    let mut count = 0;
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    for c in s.bytes().filter(|c| !c.is_ascii_whitespace()) {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            b'=' => break,
            _ => return None,
        };
        bits = (bits << 6) | u32::from(v);
        count += 6;
        if count >= 8 {
            count -= 8;
            out.push((bits >> count) as u8);
            bits &= (1 << count) - 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantities_parse_as_kubernetes_reads_them() {
        assert_eq!(quantity(&Value::from("100m")), Some(0.1));
        assert_eq!(quantity(&Value::from("128Mi")), Some(134_217_728.0));
        assert_eq!(quantity(&Value::from("1")), Some(1.0));
        assert_eq!(quantity(&Value::from(2)), Some(2.0));
        assert_eq!(quantity(&Value::from("1G")), Some(1e9));
        assert_eq!(quantity(&Value::from("lots")), None);
    }

    #[test]
    fn base64_decodes_secret_data() {
        assert_eq!(base64_decode("dG9rZW4=").as_deref(), Some("token"));
        assert_eq!(
            base64_decode("cG9zdGdyZXM6Ly91OnBAaDo1NDMyL2Q=").as_deref(),
            Some("postgres://u:p@h:5432/d")
        );
        assert_eq!(base64_decode("not base64!"), None);
    }

    #[test]
    fn names_follow_the_api_servers_rules() {
        assert!(is_dns_label("chat-api"));
        assert!(!is_dns_label("Chat-API"));
        assert!(!is_dns_label("-x"));
        assert!(is_dns_subdomain("a.b-c"));
        assert!(is_port_name("http"));
        assert!(!is_port_name("a-very-long-port-name"));
        assert!(!is_port_name("8080"));
        assert!(is_label_key("app.kubernetes.io/name"));
        assert!(!is_label_key("bad key"));
    }
}
