//! Addresses: in-cluster DNS names that resolve to a Service, database credentials
//! that agree.

use super::*;

/// Every `host.svc.cluster.local[:port]` in any string must be a Service here (in its
/// namespace, with that port): the one place a namespace or Service rename hides.
pub(super) fn cluster_dns_names(objects: &[Object], index: &Index<'_>, p: &mut Problems) {
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

pub(super) fn collect_strings(v: &Value, out: &mut Vec<String>) {
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
pub(super) fn database_credentials(objects: &[Object], index: &Index<'_>, p: &mut Problems) {
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
