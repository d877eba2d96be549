//! Dapr: annotations, tokens, app ports, Configurations, components and their scopes.

use super::*;

pub(super) fn dapr(objects: &[Object], index: &Index<'_>, p: &mut Problems) {
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
pub(super) fn sidecar<'a>(
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
            let app = containers
                .iter()
                .find(|c| ports_of(c).any(|x| x["containerPort"] == port));
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
