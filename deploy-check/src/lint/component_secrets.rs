//! Where components take their secrets from (`secretKeyRef` entries): the secret store they
//! name must be a component here, and each secret must reach the sidecars of the apps the
//! component is scoped to.
//!
//! - A `secretstores.local.env` store reads the sidecar's environment (with its `prefix`):
//!   each app's pod must set the variable from a Secret with `dapr.io/env-from-secret`
//!   (`VAR=secret:key`), and that Secret must have that key.
//! - The Kubernetes store (`secretstores.kubernetes`, or no `auth` at all) reads Secrets of
//!   the namespace: the Secret and key must be here.

use super::*;

/// `dapr.io/env-from-secret`: `VAR=secret` or `VAR=secret:key`, comma-separated; the key
/// defaults to the secret's name.
fn env_from_secret(annotation: &str) -> BTreeMap<String, (String, String)> {
    annotation
        .split(',')
        .filter_map(|entry| {
            let (var, source) = entry.trim().split_once('=')?;
            let (secret, key) = source.split_once(':').unwrap_or((source, source));
            Some((
                var.trim().to_owned(),
                (secret.trim().to_owned(), key.trim().to_owned()),
            ))
        })
        .collect()
}

pub(super) fn component_secrets(index: &Index<'_>, p: &mut Problems) {
    let apps = index.dapr_apps();
    let components: BTreeMap<&str, &Object> = index
        .of_kind("Component")
        .filter(|o| o.api_version().starts_with("dapr.io/"))
        .map(|o| (o.name(), o))
        .collect();
    for c in components.values() {
        let refs: Vec<(String, String, String)> = c
            .at("/spec/metadata")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|m| {
                let r = m.get("secretKeyRef")?;
                let name = r["name"].as_str()?.to_owned();
                let key = r["key"].as_str().unwrap_or(&name).to_owned();
                Some((m["name"].as_str().unwrap_or("?").to_owned(), name, key))
            })
            .collect();
        if refs.is_empty() {
            continue;
        }
        let store_name = c.str_at("/auth/secretStore");
        let store = store_name.and_then(|s| components.get(s));
        let store_type = store.and_then(|s| s.str_at("/spec/type"));
        match (store_name, store_type) {
            (Some(s), None) => {
                p.add(c, format!("auth.secretStore {s:?} names no Component"));
            }
            (Some(s), Some(t)) if !t.starts_with("secretstores.") => {
                p.add(
                    c,
                    format!("auth.secretStore {s:?} is a {t}, not a secret store"),
                );
            }
            (Some(_), Some("secretstores.local.env")) => {
                let prefix = store
                    .and_then(|s| {
                        s.at("/spec/metadata")
                            .and_then(Value::as_array)
                            .into_iter()
                            .flatten()
                            .find(|m| m["name"] == "prefix")
                            .and_then(|m| m["value"].as_str())
                    })
                    .unwrap_or("");
                let scopes: Vec<&str> = c
                    .at("/scopes")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .filter_map(Value::as_str)
                    .collect();
                if scopes.is_empty() {
                    p.add(c, "reads its secrets from the sidecar's environment but has no scopes: every app's sidecar would need them; scope it");
                }
                for app in scopes {
                    let Some(workload) = apps.get(app) else {
                        continue;
                    };
                    let from = env_from_secret(
                        workload
                            .pod_annotation("dapr.io/env-from-secret")
                            .unwrap_or(""),
                    );
                    for (field, name, _) in &refs {
                        let var = format!("{prefix}{name}");
                        match from.get(&var) {
                            None => p.add(workload, format!("Component {}'s {field} is read from the sidecar's {var}, which dapr.io/env-from-secret does not set", c.name())),
                            Some((secret, key)) if index.secret_value(secret, key).is_none() => p.add(workload, format!("dapr.io/env-from-secret sets {var} from Secret {secret:?} key {key:?}, which is not defined")),
                            Some(_) => {}
                        }
                    }
                }
            }
            (None, _) | (Some(_), Some("secretstores.kubernetes")) => {
                for (field, name, key) in &refs {
                    if index.secret_value(name, key).is_none() {
                        p.add(
                            c,
                            format!("{field} comes from Secret {name:?} key {key:?}, which is not defined"),
                        );
                    }
                }
            }
            // Other stores (a vault, a cloud secret manager) are outside this set.
            (Some(_), Some(_)) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_from_secret_entries_default_the_key_to_the_secret_name() {
        let parsed = env_from_secret("A=one:k, B=two");
        assert_eq!(parsed["A"], ("one".to_owned(), "k".to_owned()));
        assert_eq!(parsed["B"], ("two".to_owned(), "two".to_owned()));
    }
}
