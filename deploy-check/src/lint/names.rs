//! Names and labels the API server would refuse, namespaces, duplicate objects.

use super::*;

pub(super) fn is_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

pub(super) fn is_dns_subdomain(s: &str) -> bool {
    !s.is_empty() && s.len() <= 253 && s.split('.').all(is_dns_label)
}

/// IANA service name: what a port name must be.
pub(super) fn is_port_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 15
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && s.bytes().any(|b| b.is_ascii_lowercase())
        && !s.starts_with('-')
        && !s.ends_with('-')
        && !s.contains("--")
}

pub(super) fn is_label_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        && s.as_bytes()[0].is_ascii_alphanumeric()
        && s.as_bytes()[s.len() - 1].is_ascii_alphanumeric()
}

pub(super) fn is_label_key(s: &str) -> bool {
    match s.split_once('/') {
        Some((prefix, name)) => is_dns_subdomain(prefix) && is_label_name(name),
        None => is_label_name(s),
    }
}

pub(super) fn is_label_value(s: &str) -> bool {
    s.is_empty() || is_label_name(s)
}

pub(super) fn names(o: &Object, p: &mut Problems) {
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
        for port in ports_of(c) {
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

pub(super) fn label_maps(o: &Object) -> Vec<(&'static str, &Value)> {
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

pub(super) fn labels(o: &Object, p: &mut Problems) {
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

pub(super) fn namespaces(objects: &[Object], p: &mut Problems) {
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

pub(super) fn duplicates(objects: &[Object], p: &mut Problems) {
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
