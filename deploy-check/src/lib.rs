//! `deploy-check`: the Kubernetes deployment (`k8s/`) checked offline, without a cluster.
//!
//! 1. **Render** an overlay with `kubectl kustomize` ([`render`]), exactly what
//!    `kubectl apply -k` would send.
//! 2. **Schemas** ([`schema`]): every object against the API schema of its kind, as the API
//!    server validates with strict field validation: the OpenAPI v3 documents of
//!    Kubernetes [`schema::KUBERNETES_VERSION`], the CRDs of Dapr [`schema::DAPR_VERSION`]
//!    and of KEDA [`schema::KEDA_VERSION`]. Unknown fields, wrong types, missing required
//!    fields and unknown kinds fail.
//! 3. **References and rules** ([`lint`]): names the API server refuses, Secrets, keys,
//!    ports, Services, Configurations and components that are referred to but not there,
//!    and this system's own rules (Dapr tokens, app ports, consumer groups, topics and
//!    partitions, one autoscaler per workload).
//! 4. **Parity** ([`parity`]): the Dapr resources against the self-hosted `components/` and
//!    `dapr.yaml`.
//!
//! The tests in `tests/` run all of it (`cargo test -p deploy-check`), and prove that a
//! broken manifest fails. `cargo run -p deploy-check -- [overlay dir ...]` checks overlays
//! by hand (`cargo xtask minikube` does this before it applies anything).
//!
//! What it may depend on: `devstack` (workspace paths, the pinned Dapr version), JSON/YAML
//! and JSON Schema crates; external tools `kubectl` (rendering) and, once per machine, `go`
//! (fetching the schemas from the Go module proxy). It knows nothing of the services' code.

pub mod lint;
pub mod manifest;
pub mod parity;
pub mod render;
pub mod schema;

use std::path::Path;

use anyhow::Result;

pub use manifest::Object;
pub use schema::Validator;

/// The workspace and the machine's download cache (`~/.cache/todo-eda`).
pub fn paths() -> Result<devstack::Paths> {
    devstack::Paths::discover()
}

/// Every problem of a set of rendered objects: schema problems, then the rest.
pub fn check_objects(validator: &Validator, objects: &[Object]) -> Result<Vec<String>> {
    let mut problems = validator.check_all(objects)?;
    problems.extend(lint::check(objects));
    Ok(problems)
}

/// Renders a kustomize directory and checks it; the objects and every problem.
pub fn check_overlay(validator: &Validator, dir: &Path) -> Result<(Vec<Object>, Vec<String>)> {
    let rendered = render::kustomize(dir)?;
    let objects = manifest::parse_objects(&rendered)?;
    let problems = check_objects(validator, &objects)?;
    Ok((objects, problems))
}
