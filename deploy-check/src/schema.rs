//! The API schemas the manifests are checked against, and the checking itself.
//!
//! Sources, all from the Go module proxy (a package registry, reachable from CI) and pinned:
//!
//! - Kubernetes: the OpenAPI v3 documents the API server itself serves, as shipped in the
//!   `k8s.io/kubernetes` module (`api/openapi-spec/v3/*.json`);
//! - Dapr: the CRDs of the Dapr release the project runs (`github.com/dapr/dapr`,
//!   `charts/dapr/crds/*.yaml`), i.e. what `dapr init -k` installs;
//! - KEDA: the CRDs of the KEDA release `cargo xtask minikube` installs
//!   (`github.com/kedacore/keda/v2`, `config/crd/bases/*.yaml`).
//!
//! `go mod download` fetches them into the Go module cache; the schemas are then merged into
//! one bundle (descriptions dropped) cached under `~/.cache/todo-eda/kube-schemas/`, so a
//! warm check reads one file and needs no Go at all.
//!
//! The checking is what the API server's own schema validation does with
//! `fieldValidation=Strict` (kubectl's default): every field must exist in the schema (an
//! unknown or misspelt field is an error, except under `x-kubernetes-preserve-unknown-fields`),
//! types must match (a number where a string belongs is an error), required fields must be
//! there, and CRD constraints (`enum`, `minimum`, `minItems`, ...) hold. Checks the API
//! server makes in Go code (name formats, immutable fields, CEL rules) are not schema;
//! [`crate::lint`] covers the ones that matter here.

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};

use anyhow::{Context as _, Result, bail};
use serde_json::{Map, Value, json};

use crate::manifest::{Object, parse_yaml_stream};

/// The Kubernetes release whose API the manifests target (`cargo xtask minikube` starts
/// Minikube with it).
pub const KUBERNETES_VERSION: &str = "1.34.4";
/// The Dapr release: the runtime the project is built and tested against.
pub const DAPR_VERSION: &str = devstack::DAPR_RUNTIME_VERSION;
/// The KEDA release `cargo xtask minikube` installs.
pub const KEDA_VERSION: &str = "2.20.2";

const OBJECT_META: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta";

/// One Go module holding schemas.
struct Source {
    module: &'static str,
    version: String,
}

fn sources() -> [Source; 3] {
    [
        Source {
            module: "k8s.io/kubernetes",
            version: format!("v{KUBERNETES_VERSION}"),
        },
        Source {
            module: "github.com/dapr/dapr",
            version: format!("v{DAPR_VERSION}"),
        },
        Source {
            module: "github.com/kedacore/keda/v2",
            version: format!("v{KEDA_VERSION}"),
        },
    ]
}

/// Where the merged bundle of these versions is cached.
pub fn bundle_path(cache: &Path) -> PathBuf {
    // The leading number is the bundle's own format: bump it when build_bundle changes.
    cache.join("kube-schemas").join(format!(
        "2_k8s-{KUBERNETES_VERSION}_dapr-{DAPR_VERSION}_keda-{KEDA_VERSION}.json"
    ))
}

/// The bundle file, built first if it is not cached yet (needs Go and the module proxy).
pub fn provision(cache: &Path) -> Result<PathBuf> {
    let path = bundle_path(cache);
    if path.is_file() {
        return Ok(path);
    }
    let dirs = download_modules(cache)?;
    let bundle = build_bundle(&dirs[0], &dirs[1], &dirs[2])?;
    let parent = path.parent().context("bundle path without a parent")?;
    fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
    // Write then rename: a concurrent test process never reads half a file.
    let tmp = parent.join(format!(".{}.{}", std::process::id(), "tmp"));
    fs::write(&tmp, serde_json::to_vec(&bundle)?)
        .with_context(|| format!("writing {}", tmp.display()))?;
    fs::rename(&tmp, &path).with_context(|| format!("renaming to {}", path.display()))?;
    Ok(path)
}

/// `go mod download -json` of the three modules; their directories in the module cache.
fn download_modules(cache: &Path) -> Result<Vec<PathBuf>> {
    let work = cache.join("kube-schemas");
    fs::create_dir_all(&work).with_context(|| format!("creating {}", work.display()))?;
    let modules: Vec<String> = sources()
        .iter()
        .map(|s| format!("{}@{}", s.module, s.version))
        .collect();
    let mut go = Command::new("go");
    go.args(["mod", "download", "-json"])
        .args(&modules)
        // Outside any module, no workspace, no toolchain switch; the checksum database is
        // not reachable from these machines (an explicit GOSUMDB is honoured).
        .current_dir(&work)
        .env("GOWORK", "off")
        .env("GOTOOLCHAIN", "local")
        .env("GOFLAGS", "-mod=mod")
        .stdin(Stdio::null());
    if std::env::var_os("GOSUMDB").is_none() {
        go.env("GOSUMDB", "off");
    }
    let output = go.output().map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            anyhow::anyhow!(
                "Go is not installed (or not on PATH): the Kubernetes, Dapr and KEDA schemas \
                 are fetched once with `go mod download` ({})",
                modules.join(", ")
            )
        } else {
            anyhow::Error::new(e).context("running go mod download")
        }
    })?;
    // -json prints one object per module, concatenated, also when one of them failed.
    let mut dirs = Vec::new();
    let stream = serde_json::Deserializer::from_slice(&output.stdout).into_iter::<Value>();
    let mut infos = Vec::new();
    for info in stream {
        infos.push(info.with_context(|| {
            format!(
                "`go mod download -json {}` printed no JSON ({}): {}",
                modules.join(" "),
                output.status,
                String::from_utf8_lossy(&output.stderr)
            )
        })?);
    }
    for source in sources() {
        let info = infos
            .iter()
            .find(|i| i["Path"] == source.module)
            .with_context(|| {
                format!(
                    "`go mod download` said nothing about {}@{} ({}): {}",
                    source.module,
                    source.version,
                    output.status,
                    String::from_utf8_lossy(&output.stderr)
                )
            })?;
        if let Some(error) = info.get("Error").and_then(Value::as_str) {
            bail!(
                "cannot download {}@{}: {error}",
                source.module,
                source.version
            );
        }
        let dir = info["Dir"]
            .as_str()
            .with_context(|| format!("no Dir for {}@{}", source.module, source.version))?;
        dirs.push(PathBuf::from(dir));
    }
    Ok(dirs)
}

/// Merges the Kubernetes OpenAPI documents and the CRDs into one bundle:
/// `{"versions": {...}, "kinds": {"<apiVersion> <kind>": "<schema name>"},
///   "components": {"schemas": {"<schema name>": <schema>}}}`.
/// References stay `#/components/schemas/<name>`, as in the Kubernetes documents.
pub fn build_bundle(kubernetes: &Path, dapr: &Path, keda: &Path) -> Result<Value> {
    let mut schemas = Map::new();
    let mut kinds = BTreeMap::new();

    let spec_dir = kubernetes.join("api/openapi-spec/v3");
    let mut files: Vec<PathBuf> = fs::read_dir(&spec_dir)
        .with_context(|| format!("reading {}", spec_dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            // One document per group version: api__v1_openapi.json, apis__apps__v1_openapi.json.
            let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
            name.ends_with("_openapi.json")
                && (name == "api__v1_openapi.json"
                    || (name.starts_with("apis__") && name.matches("__").count() == 2))
        })
        .collect();
    files.sort();
    if files.is_empty() {
        bail!("no OpenAPI v3 documents in {}", spec_dir.display());
    }
    for file in &files {
        let doc: Value = serde_json::from_slice(
            &fs::read(file).with_context(|| format!("reading {}", file.display()))?,
        )
        .with_context(|| format!("parsing {}", file.display()))?;
        let Some(defs) = doc
            .pointer("/components/schemas")
            .and_then(Value::as_object)
        else {
            continue;
        };
        for (name, schema) in defs {
            if schemas.contains_key(name) {
                continue;
            }
            for gvk in schema
                .get("x-kubernetes-group-version-kind")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                let group = gvk["group"].as_str().unwrap_or("");
                let version = gvk["version"].as_str().unwrap_or("");
                let kind = gvk["kind"].as_str().unwrap_or("");
                let api_version = if group.is_empty() {
                    version.to_owned()
                } else {
                    format!("{group}/{version}")
                };
                kinds
                    .entry(format!("{api_version} {kind}"))
                    .or_insert_with(|| name.clone());
            }
            let mut schema = schema.clone();
            make_strict(&mut schema);
            schemas.insert(name.clone(), schema);
        }
    }
    if !schemas.contains_key(OBJECT_META) {
        bail!(
            "the Kubernetes OpenAPI documents in {} have no {OBJECT_META}",
            spec_dir.display()
        );
    }

    let crd_files = [
        (dapr.join("charts/dapr/crds"), "Dapr"),
        (keda.join("config/crd/bases"), "KEDA"),
    ];
    for (dir, what) in crd_files {
        let mut found = 0;
        let mut files: Vec<PathBuf> = fs::read_dir(&dir)
            .with_context(|| format!("reading the {what} CRDs in {}", dir.display()))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
            .collect();
        files.sort();
        for file in files {
            let text =
                fs::read_to_string(&file).with_context(|| format!("reading {}", file.display()))?;
            for crd in parse_yaml_stream(&text).with_context(|| format!("in {}", file.display()))? {
                found += add_crd(&crd, &mut schemas, &mut kinds)
                    .with_context(|| format!("in {}", file.display()))?;
            }
        }
        if found == 0 {
            bail!("no {what} CRDs in {}", dir.display());
        }
    }

    let annotations = dapr_annotations(dapr)?;

    Ok(json!({
        "daprAnnotations": annotations,
        "versions": {
            "kubernetes": KUBERNETES_VERSION,
            "dapr": DAPR_VERSION,
            "keda": KEDA_VERSION,
        },
        "kinds": kinds,
        "components": { "schemas": schemas },
    }))
}

/// The pod annotations Dapr's sidecar injector reads (`dapr.io/...`), from its source: the
/// injector ignores any other, so a misspelt one silently does nothing.
fn dapr_annotations(dapr: &Path) -> Result<Vec<String>> {
    let file = dapr.join("pkg/injector/annotations/annotations.go");
    let source =
        fs::read_to_string(&file).with_context(|| format!("reading {}", file.display()))?;
    let mut keys: Vec<String> = source
        .lines()
        .filter_map(|line| {
            let (_, rest) = line.split_once("= \"dapr.io/")?;
            let (key, _) = rest.split_once('"')?;
            Some(format!("dapr.io/{key}"))
        })
        .collect();
    keys.sort();
    keys.dedup();
    if keys.len() < 20 {
        bail!(
            "found only {} annotation keys in {}",
            keys.len(),
            file.display()
        );
    }
    Ok(keys)
}

/// Adds every served version of one CRD; returns how many.
fn add_crd(
    crd: &Value,
    schemas: &mut Map<String, Value>,
    kinds: &mut BTreeMap<String, String>,
) -> Result<usize> {
    if crd["kind"] != "CustomResourceDefinition" {
        return Ok(0);
    }
    let group = crd["spec"]["group"]
        .as_str()
        .context("CRD without spec.group")?;
    let kind = crd["spec"]["names"]["kind"]
        .as_str()
        .context("CRD without spec.names.kind")?;
    let mut added = 0;
    for version in crd["spec"]["versions"].as_array().into_iter().flatten() {
        if version["served"] == false {
            continue;
        }
        let name = version["name"]
            .as_str()
            .context("CRD version without a name")?;
        let Some(schema) = version.pointer("/schema/openAPIV3Schema") else {
            continue;
        };
        let mut schema = schema.clone();
        make_strict(&mut schema);
        // A CRD's schema says only `metadata: {type: object}`; the API server validates the
        // metadata as the ObjectMeta it is.
        if let Some(props) = schema.get_mut("properties").and_then(Value::as_object_mut) {
            props.insert(
                "metadata".into(),
                json!({ "$ref": format!("#/components/schemas/{OBJECT_META}") }),
            );
        }
        let schema_name = format!("crd.{group}.{name}.{kind}");
        kinds.insert(format!("{group}/{name} {kind}"), schema_name.clone());
        schemas.insert(schema_name, schema);
        added += 1;
    }
    Ok(added)
}

/// Turns an OpenAPI (Kubernetes flavour) schema into the JSON Schema (draft 4) the API
/// server effectively enforces, in place: objects with declared properties accept no
/// others unless `x-kubernetes-preserve-unknown-fields`; `nullable` admits null;
/// int-or-string admits both. Descriptions and defaults are dropped (size only).
pub fn make_strict(schema: &mut Value) {
    let Some(map) = schema.as_object_mut() else {
        return;
    };
    let preserve = map.get("x-kubernetes-preserve-unknown-fields") == Some(&Value::Bool(true));
    if map.get("x-kubernetes-int-or-string") == Some(&Value::Bool(true))
        && !map.contains_key("type")
        && !map.contains_key("anyOf")
        && !map.contains_key("oneOf")
    {
        map.insert(
            "anyOf".into(),
            json!([{ "type": "integer" }, { "type": "string" }]),
        );
    }
    let nullable = map.remove("nullable") == Some(Value::Bool(true));
    if map.contains_key("properties") && !map.contains_key("additionalProperties") && !preserve {
        map.insert("additionalProperties".into(), Value::Bool(false));
    }
    map.retain(|key, _| {
        !matches!(
            key.as_str(),
            "description" | "default" | "example" | "externalDocs"
        ) && !key.starts_with("x-kubernetes-")
    });
    for (key, value) in map.iter_mut() {
        match key.as_str() {
            "properties" | "patternProperties" | "definitions" => {
                if let Some(props) = value.as_object_mut() {
                    for s in props.values_mut() {
                        make_strict(s);
                    }
                }
            }
            "additionalProperties" | "not" | "items" | "additionalItems" => match value {
                Value::Array(items) => items.iter_mut().for_each(make_strict),
                other => make_strict(other),
            },
            "allOf" | "anyOf" | "oneOf" => {
                if let Some(items) = value.as_array_mut() {
                    items.iter_mut().for_each(make_strict);
                }
            }
            _ => {}
        }
    }
    if nullable {
        match map.get("type").cloned() {
            Some(Value::String(t)) => {
                map.insert("type".into(), json!([t, "null"]));
            }
            _ => {
                let inner = Value::Object(std::mem::take(map));
                map.insert("anyOf".into(), json!([{ "type": "null" }, inner]));
            }
        }
    }
}

/// Checks objects against the bundle; compiles one validator per kind, on first use.
pub struct Validator {
    bundle: Arc<Value>,
    compiled: Mutex<HashMap<String, Arc<jsonschema::Validator>>>,
}

impl Validator {
    /// Provisions (if needed) and loads the bundle of the pinned versions.
    pub fn pinned(cache: &Path) -> Result<Self> {
        let path = provision(cache)?;
        Self::load(&path)
    }

    pub fn load(path: &Path) -> Result<Self> {
        let bundle: Value = serde_json::from_slice(
            &fs::read(path).with_context(|| format!("reading {}", path.display()))?,
        )
        .with_context(|| format!("parsing {} (delete it to rebuild it)", path.display()))?;
        Ok(Self::from_bundle(bundle))
    }

    pub fn from_bundle(bundle: Value) -> Self {
        Self {
            bundle: Arc::new(bundle),
            compiled: Mutex::new(HashMap::new()),
        }
    }

    /// "Kubernetes 1.34.4, Dapr 1.18.2, KEDA 2.20.2", for messages.
    pub fn versions(&self) -> String {
        let v = &self.bundle["versions"];
        format!(
            "Kubernetes {}, Dapr {}, KEDA {}",
            v["kubernetes"].as_str().unwrap_or("?"),
            v["dapr"].as_str().unwrap_or("?"),
            v["keda"].as_str().unwrap_or("?")
        )
    }

    /// Whether the bundle knows `apiVersion` + `kind`.
    pub fn knows(&self, api_version: &str, kind: &str) -> bool {
        self.bundle["kinds"]
            .get(format!("{api_version} {kind}"))
            .is_some()
    }

    fn validator_for(
        &self,
        api_version: &str,
        kind: &str,
    ) -> Result<Option<Arc<jsonschema::Validator>>> {
        let key = format!("{api_version} {kind}");
        let Some(name) = self.bundle["kinds"].get(&key).and_then(Value::as_str) else {
            return Ok(None);
        };
        let mut compiled = self.compiled.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(v) = compiled.get(&key) {
            return Ok(Some(v.clone()));
        }
        // The whole bundle is the document, so every #/components/schemas/... resolves; in
        // draft 4 a root $ref replaces the root's other keywords.
        let mut root = Map::new();
        root.insert("$ref".into(), json!(format!("#/components/schemas/{name}")));
        root.insert("components".into(), self.bundle["components"].clone());
        let validator = jsonschema::options()
            .with_draft(jsonschema::Draft::Draft4)
            .should_validate_formats(false)
            .build(&Value::Object(root))
            .map_err(|e| anyhow::anyhow!("the schema of {key} does not compile: {e}"))?;
        let validator = Arc::new(validator);
        compiled.insert(key, validator.clone());
        Ok(Some(validator))
    }

    /// The schema problems of one object, each as `Kind ns/name: /json/pointer: message`.
    pub fn check(&self, object: &Object) -> Result<Vec<String>> {
        let (api_version, kind) = (object.api_version(), object.kind());
        if api_version.is_empty() || kind.is_empty() {
            return Ok(vec![format!(
                "{object}: an object needs apiVersion and kind"
            )]);
        }
        let Some(validator) = self.validator_for(api_version, kind)? else {
            return Ok(vec![format!(
                "{object}: no API has apiVersion {api_version:?} with kind {kind:?} ({}): \
                 a typo, or a resource this check does not know",
                self.versions()
            )]);
        };
        let mut problems: Vec<String> = validator
            .iter_errors(&object.0)
            .map(|e| {
                let at = e.instance_path().to_string();
                let at = if at.is_empty() { "/".to_owned() } else { at };
                format!("{object}: {at}: {e}")
            })
            .collect();
        // Dapr's "schema" for a pod is its set of annotations.
        if let Some(annotations) = object
            .pod_metadata()
            .and_then(|m| m.get("annotations"))
            .and_then(Value::as_object)
        {
            let known = &self.bundle["daprAnnotations"];
            for key in annotations.keys().filter(|k| k.starts_with("dapr.io/")) {
                if !known
                    .as_array()
                    .is_some_and(|a| a.iter().any(|k| k == key.as_str()))
                {
                    problems.push(format!(
                        "{object}: pod annotation {key:?} is not one Dapr {} reads (the sidecar injector ignores it)",
                        self.bundle["versions"]["dapr"].as_str().unwrap_or("?")
                    ));
                }
            }
        }
        Ok(problems)
    }

    /// The schema problems of every object.
    pub fn check_all(&self, objects: &[Object]) -> Result<Vec<String>> {
        let mut problems = Vec::new();
        for object in objects {
            problems.extend(self.check(object)?);
        }
        Ok(problems)
    }
}
