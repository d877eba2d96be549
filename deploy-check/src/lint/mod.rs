//! Checks a schema cannot make: names the API server would refuse, references between
//! objects (a Secret, key, port, Service, Configuration or component that is not there),
//! and the rules this system's deployment depends on (Dapr tokens and app ports, consumer
//! groups, topics and partitions, one autoscaler per workload, where each service's
//! metrics are scraped).
//!
//! Each problem is one line, `Kind namespace/name: what is wrong`.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde_json::Value;

use crate::manifest::Object;

mod addresses;
mod autoscaling;
mod component_secrets;
mod dapr;
mod kafka;
mod metrics;
mod names;
mod parsers;
mod workloads;

use addresses::*;
use autoscaling::*;
use component_secrets::*;
use dapr::*;
use kafka::*;
use metrics::*;
use names::*;
pub use parsers::quantity;
use parsers::*;
use workloads::*;

/// Every problem found in one rendered set of objects.
pub fn check(objects: &[Object]) -> Vec<String> {
    let index = Index::new(objects);
    let mut p = Problems::default();
    for object in objects {
        names(object, &mut p);
        labels(object, &mut p);
        workload(object, &index, &mut p);
        metrics(object, &mut p);
        service(object, &index, &mut p);
    }
    namespaces(objects, &mut p);
    duplicates(objects, &mut p);
    autoscaling(objects, &index, &mut p);
    dapr(objects, &index, &mut p);
    component_secrets(&index, &mut p);
    kafka(objects, &index, &mut p);
    cluster_dns_names(objects, &index, &mut p);
    database_credentials(objects, &index, &mut p);
    p.0
}

/// The `ports` a container declares.
fn ports_of(container: &Value) -> impl Iterator<Item = &Value> {
    container["ports"].as_array().into_iter().flatten()
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
