//! Kubernetes objects as JSON values, read from YAML streams.

use std::fmt;
use std::path::Path;

use anyhow::{Context as _, Result, bail};
use serde_json::Value;

/// One object of a rendered manifest (or of a Dapr resource file).
#[derive(Debug, Clone, PartialEq)]
pub struct Object(pub Value);

impl Object {
    pub fn api_version(&self) -> &str {
        self.str_at("/apiVersion").unwrap_or("")
    }

    pub fn kind(&self) -> &str {
        self.str_at("/kind").unwrap_or("")
    }

    pub fn name(&self) -> &str {
        self.str_at("/metadata/name").unwrap_or("")
    }

    pub fn namespace(&self) -> Option<&str> {
        self.str_at("/metadata/namespace")
    }

    /// `Kind namespace/name`, for messages.
    pub fn id(&self) -> String {
        match self.namespace() {
            Some(ns) => format!("{} {ns}/{}", self.kind(), self.name()),
            None => format!("{} {}", self.kind(), self.name()),
        }
    }

    pub fn at(&self, pointer: &str) -> Option<&Value> {
        self.0.pointer(pointer)
    }

    pub fn str_at(&self, pointer: &str) -> Option<&str> {
        self.0.pointer(pointer).and_then(Value::as_str)
    }

    /// The pod template's spec of a workload (`/spec/template/spec`), if it has one.
    pub fn pod_spec(&self) -> Option<&Value> {
        match self.kind() {
            "Deployment" | "StatefulSet" | "DaemonSet" | "ReplicaSet" | "Job" => {
                self.at("/spec/template/spec")
            }
            "CronJob" => self.at("/spec/jobTemplate/spec/template/spec"),
            "Pod" => self.at("/spec"),
            _ => None,
        }
    }

    /// The pod template's metadata of a workload.
    pub fn pod_metadata(&self) -> Option<&Value> {
        match self.kind() {
            "Deployment" | "StatefulSet" | "DaemonSet" | "ReplicaSet" | "Job" => {
                self.at("/spec/template/metadata")
            }
            "CronJob" => self.at("/spec/jobTemplate/spec/template/metadata"),
            "Pod" => self.at("/metadata"),
            _ => None,
        }
    }

    /// A pod template annotation (`dapr.io/app-id`, ...).
    pub fn pod_annotation(&self, key: &str) -> Option<&str> {
        self.pod_metadata()?.get("annotations")?.get(key)?.as_str()
    }

    /// Every container of the pod template, init containers first.
    pub fn containers(&self) -> Vec<&Value> {
        let Some(spec) = self.pod_spec() else {
            return Vec::new();
        };
        ["initContainers", "containers"]
            .iter()
            .filter_map(|list| spec.get(*list).and_then(Value::as_array))
            .flatten()
            .collect()
    }
}

impl fmt::Display for Object {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.id())
    }
}

/// Every non-empty document of a YAML stream, as JSON values.
pub fn parse_yaml_stream(text: &str) -> Result<Vec<Value>> {
    let mut docs = Vec::new();
    for (index, doc) in serde_yaml_ng::Deserializer::from_str(text).enumerate() {
        let value: serde_yaml_ng::Value = serde::Deserialize::deserialize(doc)
            .with_context(|| format!("YAML document {} does not parse", index + 1))?;
        if value.is_null() {
            continue;
        }
        let json = serde_json::to_value(&value)
            .with_context(|| format!("YAML document {} is not plain JSON data", index + 1))?;
        docs.push(json);
    }
    Ok(docs)
}

/// The objects of a YAML stream; each must be a mapping with `apiVersion` and `kind`.
pub fn parse_objects(text: &str) -> Result<Vec<Object>> {
    let mut objects = Vec::new();
    for (index, doc) in parse_yaml_stream(text)?.into_iter().enumerate() {
        if !doc.is_object() {
            bail!("YAML document {} is not a mapping", index + 1);
        }
        objects.push(Object(doc));
    }
    Ok(objects)
}

/// Every object of every `*.yaml`/`*.yml` file directly in `dir`, in file-name order.
pub fn load_dir(dir: &Path) -> Result<Vec<Object>> {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|path| {
            path.is_file()
                && path
                    .extension()
                    .is_some_and(|ext| ext == "yaml" || ext == "yml")
        })
        .collect();
    files.sort();
    let mut objects = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(&file)
            .with_context(|| format!("reading {}", file.display()))?;
        objects.extend(parse_objects(&text).with_context(|| format!("in {}", file.display()))?);
    }
    Ok(objects)
}
