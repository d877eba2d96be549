//! The Kubernetes deployment, checked offline: the Minikube overlay renders, matches the
//! Kubernetes, Dapr and KEDA schemas and its references resolve; deliberately broken copies
//! fail; the Dapr resources match the self-hosted ones; the images exist for every service.
//!
//! Needs `kubectl` (rendering) and, the first time on a machine, `go` (the schemas come from
//! the Go module proxy and are cached in ~/.cache/todo-eda/kube-schemas).

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::LazyLock;

use deploy_check::manifest::{Object, load_dir, parse_objects};
use deploy_check::{Validator, check_objects, lint, parity, render, schema};
use serde_json::Value;

struct Fixture {
    root: PathBuf,
    validator: Validator,
}

static FIXTURE: LazyLock<Fixture> = LazyLock::new(|| {
    let paths = deploy_check::paths().expect("workspace paths");
    let started = std::time::Instant::now();
    let validator = Validator::pinned(&paths.cache).unwrap_or_else(|e| panic!("{e:#}"));
    eprintln!(
        "schemas ({}) ready in {:.1}s",
        validator.versions(),
        started.elapsed().as_secs_f64()
    );
    Fixture {
        root: paths.root,
        validator,
    }
});

fn overlay() -> PathBuf {
    FIXTURE.root.join("k8s/overlays/minikube")
}

fn render_overlay(dir: &Path) -> Vec<Object> {
    let text = render::kustomize(dir).unwrap_or_else(|e| panic!("{e:#}"));
    parse_objects(&text).unwrap_or_else(|e| panic!("{e:#}"))
}

fn problems_of(dir: &Path) -> Vec<String> {
    let objects = render_overlay(dir);
    check_objects(&FIXTURE.validator, &objects).unwrap_or_else(|e| panic!("{e:#}"))
}

fn minikube_objects() -> &'static [Object] {
    static OBJECTS: LazyLock<Vec<Object>> = LazyLock::new(|| render_overlay(&overlay()));
    &OBJECTS
}

fn self_hosted() -> Vec<Object> {
    load_dir(&FIXTURE.root.join("components")).unwrap_or_else(|e| panic!("{e:#}"))
}

fn dapr_run() -> Value {
    let text = fs::read_to_string(FIXTURE.root.join("dapr.yaml")).expect("dapr.yaml");
    deploy_check::manifest::parse_yaml_stream(&text)
        .expect("dapr.yaml parses")
        .remove(0)
}

fn scopes(o: &Object) -> Vec<&str> {
    o.at("/scopes")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect()
}

fn metadata_value<'a>(o: &'a Object, key: &str) -> Option<&'a str> {
    o.at("/spec/metadata")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .find(|m| m["name"] == key)
        .and_then(|m| m["value"].as_str())
}

// --- the real overlay -----------------------------------------------------------------------

/// The cluster overlay (`cargo xtask cluster`) is the Minikube overlay with the tracing
/// component, but for the images of Kafka, PostgreSQL and Redis and their pull policy:
/// everything else renders the same. The collector applied beside it (`collector/`) is the
/// one the component's addresses name.
#[test]
fn the_cluster_overlay_is_the_traced_minikube_overlay_but_for_the_stand_in_images() {
    let cluster = render_overlay(&FIXTURE.root.join("k8s/overlays/cluster"));
    let problems = check_objects(&FIXTURE.validator, &cluster).unwrap_or_else(|e| panic!("{e:#}"));
    // Only the collector is missing, which the overlay leaves to `collector/`.
    assert_eq!(problems.len(), 5, "k8s/overlays/cluster: {problems:#?}");
    assert!(
        problems
            .iter()
            .all(|p| p.contains("no Service \"otel-collector\" in namespace \"observability\"")),
        "k8s/overlays/cluster: {problems:#?}"
    );
    let collector = render_overlay(&FIXTURE.root.join("k8s/overlays/cluster/collector"));
    let problems =
        check_objects(&FIXTURE.validator, &collector).unwrap_or_else(|e| panic!("{e:#}"));
    assert!(
        problems.is_empty(),
        "k8s/overlays/cluster/collector: {problems:#?}"
    );
    let mut kinds: Vec<&str> = collector.iter().map(Object::kind).collect();
    kinds.sort_unstable();
    assert_eq!(kinds, ["ConfigMap", "Deployment", "Namespace", "Service"]);
    let service = collector
        .iter()
        .find(|o| o.kind() == "Service")
        .expect("the collector's Service");
    assert_eq!(
        (service.name(), service.namespace()),
        ("otel-collector", Some("observability"))
    );
    assert_eq!(service.at("/spec/ports/0/port"), Some(&Value::from(4317)));
    let traced = traced_objects();
    assert_eq!(cluster.len(), traced.len());
    let mut differing = 0;
    for (mut c, mut m) in cluster
        .into_iter()
        .map(|o| o.0)
        .zip(traced.into_iter().map(|o| o.0))
    {
        let blank = |v: &mut Value| {
            for path in ["/spec/template/spec/containers"] {
                if let Some(containers) = v.pointer_mut(path).and_then(Value::as_array_mut) {
                    for container in containers {
                        let image = container["image"].as_str().unwrap_or("").to_owned();
                        if [
                            "apache/kafka:",
                            "postgres:",
                            "redis:",
                            "localhost/todo-eda/",
                        ]
                        .iter()
                        .any(|p| image.starts_with(p))
                        {
                            container["image"] = Value::Null;
                            container["imagePullPolicy"] = Value::Null;
                        }
                    }
                }
            }
        };
        if c != m {
            differing += 1;
        }
        blank(&mut c);
        blank(&mut m);
        assert_eq!(c, m, "the cluster overlay differs beyond images");
    }
    // Kafka, the topics Job, PostgreSQL, Redis.
    assert_eq!(differing, 4);
}

/// The Minikube overlay with the tracing component added, rendered from a copy of `k8s/`.
fn traced_objects() -> Vec<Object> {
    let tmp = tempfile::tempdir().expect("tempdir");
    copy_tree(&FIXTURE.root.join("k8s"), &tmp.path().join("k8s"));
    let dir = tmp.path().join("k8s/overlays/traced");
    fs::create_dir_all(&dir).expect("mkdir");
    fs::write(
        dir.join("kustomization.yaml"),
        "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\n\
         resources:\n  - ../minikube\ncomponents:\n  - ../../components/tracing\n",
    )
    .expect("write");
    render_overlay(&dir)
}

#[test]
fn the_minikube_overlay_renders_matches_the_api_schemas_and_its_references_resolve() {
    let objects = minikube_objects();
    let problems = check_objects(&FIXTURE.validator, objects).unwrap_or_else(|e| panic!("{e:#}"));
    assert!(
        problems.is_empty(),
        "k8s/overlays/minikube has problems:\n  {}",
        problems.join("\n  ")
    );

    // What the deployment is made of, so an overlay that silently lost a part fails here.
    let count = |kind: &str| objects.iter().filter(|o| o.kind() == kind).count();
    for (kind, expected) in [
        ("Namespace", 1),
        ("Deployment", 4),
        ("StatefulSet", 3),
        ("Job", 2),
        ("HorizontalPodAutoscaler", 1),
        ("ScaledObject", 2),
        ("Configuration", 1),
        ("Resiliency", 1),
        ("Secret", 6),
    ] {
        assert_eq!(count(kind), expected, "number of {kind} objects");
    }
    assert!(
        objects
            .iter()
            .all(|o| o.kind() == "Namespace" || o.namespace() == Some("todo"))
    );
}

#[test]
fn the_tracing_component_exports_from_every_service_and_sidecar() {
    let objects = traced_objects();
    let problems = check_objects(&FIXTURE.validator, &objects).unwrap_or_else(|e| panic!("{e:#}"));
    // The collector is yours, not part of this deployment: the address check names it where
    // it is referred to (the four services and the Configuration), and nothing else is wrong.
    let (collector, other): (Vec<_>, Vec<_>) = problems
        .iter()
        .partition(|p| p.contains("no Service \"otel-collector\" in namespace \"observability\""));
    assert!(other.is_empty(), "{other:#?}");
    assert_eq!(collector.len(), 5, "{collector:#?}");
    let config = objects
        .iter()
        .find(|o| o.kind() == "Configuration")
        .expect("Configuration");
    assert_eq!(config.str_at("/spec/tracing/samplingRate"), Some("1"));
    let collector = config
        .str_at("/spec/tracing/otel/endpointAddress")
        .expect("otel endpoint");
    let services: Vec<&Object> = objects
        .iter()
        .filter(|o| o.pod_annotation("dapr.io/enabled") == Some("true") && o.kind() == "Deployment")
        .collect();
    assert_eq!(services.len(), 4);
    for o in services {
        let app = o
            .containers()
            .into_iter()
            .find(|c| c["name"] == o.name())
            .expect("app container");
        let endpoint = app["env"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|e| e["name"] == "OTEL_EXPORTER_OTLP_ENDPOINT")
            .and_then(|e| e["value"].as_str())
            .unwrap_or_else(|| panic!("{o}: no OTEL_EXPORTER_OTLP_ENDPOINT"))
            .to_owned();
        assert_eq!(endpoint, format!("http://{collector}"), "{o}");
    }
    // Without the component: nothing sampled, nothing exported.
    let base = minikube_objects();
    let config = base
        .iter()
        .find(|o| o.kind() == "Configuration")
        .expect("Configuration");
    assert_eq!(config.str_at("/spec/tracing/samplingRate"), Some("0"));
    assert!(base.iter().all(|o| {
        !o.containers()
            .iter()
            .any(|c| c.to_string().contains("OTEL_EXPORTER"))
    }));
}

#[test]
fn every_object_kind_is_known_to_the_pinned_schemas() {
    for o in minikube_objects() {
        assert!(
            FIXTURE.validator.knows(o.api_version(), o.kind()),
            "{o}: {} {} is not in the schemas of {}",
            o.api_version(),
            o.kind(),
            FIXTURE.validator.versions()
        );
    }
}

#[test]
fn every_service_deployment_has_a_sidecar_probes_resources_and_tokens() {
    let services: Vec<&Object> = minikube_objects()
        .iter()
        .filter(|o| o.kind() == "Deployment")
        .collect();
    let mut ids: Vec<&str> = services
        .iter()
        .filter_map(|d| d.pod_annotation("dapr.io/app-id"))
        .collect();
    ids.sort_unstable();
    assert_eq!(
        ids,
        [
            "chat-api",
            "notifications",
            "recurring-tasks",
            "reminder-cron"
        ]
    );
    for d in services {
        for (annotation, expected) in [
            ("dapr.io/enabled", Some("true")),
            ("dapr.io/app-protocol", Some("http")),
            ("dapr.io/config", Some("todo-config")),
            ("dapr.io/api-token-secret", Some("dapr-api-token")),
            ("dapr.io/app-token-secret", Some("dapr-app-token")),
        ] {
            assert_eq!(d.pod_annotation(annotation), expected, "{d}: {annotation}");
        }
        let app = &d
            .at("/spec/template/spec/containers/0")
            .expect("app container");
        assert_eq!(
            app.pointer("/livenessProbe/httpGet/path"),
            Some(&Value::from("/healthz")),
            "{d}"
        );
        assert_eq!(
            app.pointer("/readinessProbe/httpGet/path"),
            Some(&Value::from("/readyz")),
            "{d}"
        );
        assert_eq!(
            app.pointer("/securityContext/runAsUser"),
            Some(&Value::from(10001)),
            "{d}"
        );
        let host = app["env"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|e| e["name"] == "APP_HOST");
        assert_eq!(
            host.map(|e| &e["value"]),
            Some(&Value::from("0.0.0.0")),
            "{d}: APP_HOST"
        );
    }
}

#[test]
fn the_self_hosted_components_are_valid_dapr_resources_too() {
    let objects = self_hosted();
    assert!(!objects.is_empty());
    let problems = FIXTURE
        .validator
        .check_all(&objects)
        .unwrap_or_else(|e| panic!("{e:#}"));
    assert!(
        problems.is_empty(),
        "components/ against the Dapr {} CRDs:\n  {}",
        schema::DAPR_VERSION,
        problems.join("\n  ")
    );
}

// --- parity with the self-hosted run --------------------------------------------------------

#[test]
fn dapr_resources_match_the_self_hosted_components_and_apps() {
    let result = parity::compare(&self_hosted(), minikube_objects(), &dapr_run());
    for note in &result.pending {
        eprintln!("note: {note}");
    }
    let mut problems = result.problems;
    problems.extend(parity::compare_apps(minikube_objects(), &dapr_run()));
    assert!(
        problems.is_empty(),
        "k8s/ and components/ differ:\n  {}",
        problems.join("\n  ")
    );
}

#[test]
fn the_cron_binding_is_scoped_to_reminder_cron_alone_in_both_sets() {
    let k8s_crons: Vec<&Object> = minikube_objects()
        .iter()
        .filter(|o| o.kind() == "Component" && o.str_at("/spec/type") == Some("bindings.cron"))
        .collect();
    assert_eq!(k8s_crons.len(), 1, "one cron binding in k8s/");
    assert_eq!(scopes(k8s_crons[0]), ["reminder-cron"]);
    // The route daprd calls is the binding's name (no `route` metadata).
    assert_eq!(k8s_crons[0].name(), "reminder-cron");
    assert_eq!(metadata_value(k8s_crons[0], "route"), None);

    for local in self_hosted()
        .iter()
        .filter(|o| o.str_at("/spec/type") == Some("bindings.cron"))
    {
        assert_eq!(scopes(local), ["reminder-cron"], "components/: {local}");
        assert_eq!(
            local.name(),
            k8s_crons[0].name(),
            "the cron binding's name (its route)"
        );
        assert_eq!(
            metadata_value(local, "schedule"),
            metadata_value(k8s_crons[0], "schedule")
        );
    }
}

#[test]
fn every_consumer_group_is_the_app_id_in_both_sets() {
    let self_hosted = self_hosted();
    let kafkas: Vec<&Object> = minikube_objects()
        .iter()
        .chain(self_hosted.iter())
        .filter(|o| o.str_at("/spec/type") == Some("pubsub.kafka"))
        .collect();
    assert!(kafkas.len() >= 2, "a Kafka pub/sub on each side");
    for c in kafkas {
        let group = metadata_value(c, "consumerGroup");
        assert!(
            matches!(group, None | Some("{appID}")),
            "{c}: consumerGroup {group:?}"
        );
    }
    // KEDA reads the lag of the group the worker's sidecar consumes in: its app id.
    for so in minikube_objects()
        .iter()
        .filter(|o| o.kind() == "ScaledObject")
    {
        let target = so.str_at("/spec/scaleTargetRef/name").expect("target");
        let group = so.str_at("/spec/triggers/0/metadata/consumerGroup");
        assert_eq!(group, Some(target), "{so}");
        assert!(
            so.at("/spec/maxReplicaCount")
                .and_then(Value::as_i64)
                .is_some_and(|m| m <= 3),
            "{so}"
        );
    }
}

// --- broken copies fail ---------------------------------------------------------------------

/// Copies k8s/ to a temporary directory, applies one textual edit to one file, renders the
/// Minikube overlay of the copy and returns every problem found.
fn problems_after_edit(file: &str, from: &str, to: &str) -> Vec<String> {
    let tmp = tempfile::tempdir().expect("tempdir");
    copy_tree(&FIXTURE.root.join("k8s"), &tmp.path().join("k8s"));
    let path = tmp.path().join("k8s").join(file);
    let text = fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert!(
        text.contains(from),
        "{file} no longer contains {from:?}: update this test"
    );
    fs::write(&path, text.replacen(from, to, 1)).expect("write");
    problems_of(&tmp.path().join("k8s/overlays/minikube"))
}

fn copy_tree(from: &Path, to: &Path) {
    fs::create_dir_all(to).expect("mkdir");
    for entry in fs::read_dir(from).expect("read_dir") {
        let entry = entry.expect("entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("file type").is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            fs::copy(entry.path(), &target).expect("copy");
        }
    }
}

/// The edit must be caught, by a problem that says what is wrong and where.
fn assert_caught(case: &str, problems: &[String], expected: &[&str]) {
    eprintln!("{case}:\n  {}", problems.join("\n  "));
    assert!(
        problems
            .iter()
            .any(|p| expected.iter().all(|e| p.contains(e))),
        "{case}: expected a problem mentioning {expected:?}, got:\n  {}",
        problems.join("\n  ")
    );
}

#[test]
fn a_misspelt_field_in_a_deployment_fails_validation() {
    let problems = problems_after_edit(
        "base/services/notifications.yaml",
        "terminationGracePeriodSeconds: 30",
        "terminationGracePeriodSecond: 30",
    );
    assert_caught(
        "misspelt field",
        &problems,
        &[
            "Deployment todo/notifications",
            "/spec/template/spec",
            "'terminationGracePeriodSecond' was unexpected",
        ],
    );
}

#[test]
fn a_field_of_the_wrong_type_fails_validation() {
    let problems = problems_after_edit(
        "base/services/recurring-tasks.yaml",
        "containerPort: 3001",
        "containerPort: \"3001\"",
    );
    assert_caught(
        "wrong type",
        &problems,
        &[
            "Deployment todo/recurring-tasks",
            "/spec/template/spec/containers/0/ports/0/containerPort",
            "not of type \"integer\"",
        ],
    );
}

#[test]
fn an_env_value_that_yaml_reads_as_a_number_fails_validation() {
    let problems = problems_after_edit(
        "base/services/chat-api.yaml",
        "value: \"3000\"",
        "value: 3000",
    );
    assert_caught(
        "unquoted number",
        &problems,
        &[
            "Deployment todo/chat-api",
            "/env/",
            "not of type \"string\"",
        ],
    );
}

#[test]
fn an_unknown_api_version_fails_validation() {
    let problems = problems_after_edit(
        "base/services/chat-api.yaml",
        "apiVersion: autoscaling/v2",
        "apiVersion: autoscaling/v2beta2",
    );
    assert_caught(
        "unknown apiVersion",
        &problems,
        &[
            "HorizontalPodAutoscaler todo/chat-api",
            "no API has apiVersion \"autoscaling/v2beta2\"",
        ],
    );
}

#[test]
fn a_misspelt_field_in_a_dapr_component_fails_validation() {
    let problems = problems_after_edit(
        "base/dapr/components.yaml",
        "scopes:\n  - reminder-cron",
        "scope:\n  - reminder-cron",
    );
    assert_caught(
        "Dapr Component",
        &problems,
        &["Component todo/reminder-cron", "'scope' was unexpected"],
    );
}

#[test]
fn a_subscription_without_its_topic_fails_validation() {
    let problems = problems_after_edit(
        "base/dapr/subscriptions.yaml",
        "  topic: reminders",
        "  topics: reminders",
    );
    assert_caught(
        "Dapr Subscription",
        &problems,
        &[
            "Subscription todo/notifications-reminders",
            "\"topic\" is a required property",
        ],
    );
}

#[test]
fn a_keda_trigger_setting_that_is_not_a_string_fails_validation() {
    let problems = problems_after_edit(
        "components/keda/scaledobjects.yaml",
        "lagThreshold: \"50\"",
        "lagThreshold: 50",
    );
    assert_caught(
        "KEDA ScaledObject",
        &problems,
        &[
            "ScaledObject todo/recurring-tasks",
            "/spec/triggers/0/metadata/lagThreshold",
            "not of type \"string\"",
        ],
    );
}

#[test]
fn a_misspelt_dapr_annotation_fails_validation() {
    // The injector ignores annotations it does not know: without this check the sidecar
    // would silently run without its Configuration.
    let problems = problems_after_edit(
        "base/services/chat-api.yaml",
        "dapr.io/config: todo-config",
        "dapr.io/configuration: todo-config",
    );
    assert_caught(
        "Dapr annotation",
        &problems,
        &[
            "Deployment todo/chat-api",
            "\"dapr.io/configuration\" is not one Dapr",
        ],
    );
}

#[test]
fn an_app_health_check_out_of_step_with_dapr_yaml_fails_the_parity_check() {
    let tmp = tempfile::tempdir().expect("tempdir");
    copy_tree(&FIXTURE.root.join("k8s"), &tmp.path().join("k8s"));
    let path = tmp.path().join("k8s/base/services/notifications.yaml");
    let text = fs::read_to_string(&path).expect("read");
    let from = "dapr.io/app-health-threshold: \"2\"";
    assert!(text.contains(from));
    fs::write(
        &path,
        text.replacen(from, "dapr.io/app-health-threshold: \"5\"", 1),
    )
    .expect("write");
    let objects = render_overlay(&tmp.path().join("k8s/overlays/minikube"));
    let problems = parity::compare_apps(&objects, &dapr_run());
    assert_caught(
        "app health check",
        &problems,
        &["app notifications", "appHealthThreshold", "\"5\""],
    );
}

#[test]
fn a_secret_key_that_does_not_exist_fails_the_reference_check() {
    let problems = problems_after_edit(
        "base/services/chat-api.yaml",
        "key: JWT_SECRET",
        "key: JWT_SECRT",
    );
    assert_caught(
        "missing Secret key",
        &problems,
        &[
            "Deployment todo/chat-api",
            "\"JWT_SECRT\"",
            "Secret \"todo-jwt\"",
        ],
    );
}

#[test]
fn a_dapr_token_secret_that_does_not_exist_fails_the_reference_check() {
    let problems = problems_after_edit(
        "base/services/reminder-cron.yaml",
        "dapr.io/api-token-secret: dapr-api-token",
        "dapr.io/api-token-secret: dapr-api-tokens",
    );
    assert_caught(
        "Dapr token Secret",
        &problems,
        &[
            "Deployment todo/reminder-cron",
            "dapr.io/api-token-secret names Secret \"dapr-api-tokens\"",
        ],
    );
}

#[test]
fn a_chat_model_key_the_sidecar_is_not_given_fails_the_secret_check() {
    let problems = problems_after_edit(
        "base/services/chat-api.yaml",
        "CHAT_MODEL_API_KEY=chat-model:api-key,",
        "",
    );
    assert_caught(
        "chat model key",
        &problems,
        &[
            "Deployment todo/chat-api",
            "Component chat-model's key is read from the sidecar's CHAT_MODEL_API_KEY",
        ],
    );
    let problems = problems_after_edit(
        "base/services/chat-api.yaml",
        "CHAT_MODEL_API_KEY=chat-model:api-key",
        "CHAT_MODEL_API_KEY=chat-model:apikey",
    );
    assert_caught(
        "chat model key's Secret",
        &problems,
        &[
            "Deployment todo/chat-api",
            "Secret \"chat-model\" key \"apikey\"",
        ],
    );
}

#[test]
fn an_app_port_that_no_container_listens_on_fails_the_reference_check() {
    let problems = problems_after_edit(
        "base/services/notifications.yaml",
        "dapr.io/app-port: \"3002\"",
        "dapr.io/app-port: \"3020\"",
    );
    assert_caught(
        "Dapr app port",
        &problems,
        &["Deployment todo/notifications", "dapr.io/app-port 3020"],
    );
}

#[test]
fn a_metrics_port_that_no_container_listens_on_fails_the_metrics_check() {
    let problems = problems_after_edit(
        "base/services/recurring-tasks.yaml",
        "prometheus.io/port: \"3001\"",
        "prometheus.io/port: \"9464\"",
    );
    assert_caught(
        "metrics port",
        &problems,
        &["Deployment todo/recurring-tasks", "prometheus.io/port 9464"],
    );
    let problems = problems_after_edit(
        "base/services/chat-api.yaml",
        "prometheus.io/scrape: \"true\"",
        "prometheus.io/scrape: \"false\"",
    );
    assert_caught(
        "metrics not scraped",
        &problems,
        &["Deployment todo/chat-api", "prometheus.io/scrape"],
    );
}

#[test]
fn more_worker_replicas_than_partitions_fail_the_scaling_check() {
    let problems = problems_after_edit(
        "components/keda/scaledobjects.yaml",
        "maxReplicaCount: 3",
        "maxReplicaCount: 6",
    );
    assert_caught(
        "replicas beyond partitions",
        &problems,
        &[
            "ScaledObject todo/recurring-tasks",
            "maxReplicaCount 6 exceeds the 3 partitions",
        ],
    );
}

#[test]
fn a_fixed_consumer_group_fails_the_checks() {
    let problems = problems_after_edit(
        "base/dapr/components.yaml",
        "value: \"{appID}\"\n    - name: clientID",
        "value: \"todo\"\n    - name: clientID",
    );
    assert_caught(
        "shared consumer group",
        &problems,
        &["Component todo/pubsub", "consumerGroup \"todo\""],
    );
    // And the parity check names the difference from components/.
    let tmp_objects = {
        let tmp = tempfile::tempdir().expect("tempdir");
        copy_tree(&FIXTURE.root.join("k8s"), &tmp.path().join("k8s"));
        let path = tmp.path().join("k8s/base/dapr/components.yaml");
        let text = fs::read_to_string(&path).expect("read");
        fs::write(
            &path,
            text.replacen(
                "value: \"{appID}\"\n    - name: clientID",
                "value: \"todo\"\n    - name: clientID",
                1,
            ),
        )
        .expect("write");
        render_overlay(&tmp.path().join("k8s/overlays/minikube"))
    };
    let parity = parity::compare(&self_hosted(), &tmp_objects, &dapr_run());
    assert_caught(
        "shared consumer group (parity)",
        &parity.problems,
        &["Component pubsub", "consumerGroup"],
    );
}

#[test]
fn a_renamed_kafka_service_fails_the_address_check() {
    let problems = problems_after_edit(
        "base/infra/kafka.yaml",
        "kind: Service\nmetadata:\n  name: kafka\n",
        "kind: Service\nmetadata:\n  name: kafka-broker\n",
    );
    assert_caught(
        "dangling address",
        &problems,
        &[
            "kafka.todo.svc.cluster.local",
            "no Service \"kafka\" in namespace \"todo\"",
        ],
    );
}

#[test]
fn a_database_password_out_of_step_with_postgres_fails_the_credentials_check() {
    let problems = problems_after_edit(
        "overlays/minikube/kustomization.yaml",
        "POSTGRES_PASSWORD=dev-only-postgres-password",
        "POSTGRES_PASSWORD=another-password",
    );
    assert_caught(
        "password mismatch",
        &problems,
        &[
            "Secret todo/todo-database",
            "the password is not the POSTGRES_PASSWORD of StatefulSet todo/postgres",
        ],
    );
}

#[test]
fn an_overlay_object_outside_the_namespace_fails_the_namespace_check() {
    let problems = problems_after_edit(
        "overlays/minikube/kustomization.yaml",
        "namespace: todo\n",
        "",
    );
    assert_caught(
        "namespace",
        &problems,
        &["Secret dapr-api-token", "has no namespace"],
    );
}

// --- images -----------------------------------------------------------------------------------

#[test]
fn the_dockerfile_has_a_non_root_target_per_service_on_the_pinned_toolchain() {
    let dockerfile = fs::read_to_string(FIXTURE.root.join("Dockerfile")).expect("Dockerfile");
    let toolchain =
        fs::read_to_string(FIXTURE.root.join("rust-toolchain.toml")).expect("rust-toolchain.toml");
    let channel = toolchain
        .lines()
        .find_map(|l| {
            l.trim().strip_prefix("channel").map(|v| {
                v.trim_start_matches([' ', '='])
                    .trim()
                    .trim_matches('"')
                    .to_owned()
            })
        })
        .expect("channel in rust-toolchain.toml");
    assert!(
        dockerfile.contains(&format!("ARG RUST_VERSION={channel}\n")),
        "the Dockerfile builds with Rust {channel}"
    );

    // Stages: `FROM <base> AS <name>`, with the lines of each.
    let mut stages: Vec<(String, String, Vec<String>)> = Vec::new();
    for line in dockerfile.lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        if words.first() == Some(&"FROM") {
            let name = if words.len() >= 4 && words[2].eq_ignore_ascii_case("AS") {
                words[3]
            } else {
                ""
            };
            stages.push((words[1].to_owned(), name.to_owned(), Vec::new()));
        } else if let Some(stage) = stages.last_mut() {
            stage.2.push(line.to_owned());
        }
    }
    let stage = |name: &str| stages.iter().find(|s| s.1 == name);
    let runtime = stage("runtime").expect("a runtime stage");
    assert!(
        runtime.0.starts_with("debian:"),
        "runtime on Debian slim (the init containers use its bash)"
    );
    assert!(
        runtime.2.iter().any(|l| l.trim() == "USER 10001:10001"),
        "runtime runs as uid 10001 (the manifests' runAsUser)"
    );

    let images: std::collections::BTreeSet<String> = minikube_objects()
        .iter()
        .flat_map(|o| o.containers())
        .filter_map(|c| c["image"].as_str())
        .filter_map(|i| i.strip_prefix("todo-eda/"))
        .map(|i| i.split(':').next().unwrap_or(i).to_owned())
        .collect();
    assert_eq!(images.len(), 4, "four service images: {images:?}");
    for service in images {
        let (base, _, lines) =
            stage(&service).unwrap_or_else(|| panic!("no Dockerfile target {service}"));
        assert_eq!(
            base, "runtime",
            "target {service} builds on the runtime stage"
        );
        assert!(
            lines.iter().any(|l| l.contains(&format!(
                "COPY --from=builder /out/{service} /usr/local/bin/{service}"
            ))),
            "{service}: copies its binary"
        );
        assert!(
            lines
                .iter()
                .any(|l| l.contains(&format!("ENTRYPOINT [\"/usr/local/bin/{service}\"]"))),
            "{service}: runs its binary"
        );
        assert!(
            dockerfile.contains(&format!("--bin {service}")),
            "{service}: the builder builds it"
        );
    }
}

#[test]
fn xtask_minikube_installs_the_versions_the_schemas_come_from() {
    let xtask = fs::read_to_string(FIXTURE.root.join("xtask/src/minikube/mod.rs"))
        .expect("xtask/src/minikube/mod.rs");
    // devstack's versions, which `the_cluster_runs_the_release_the_manifests_are_validated_against`
    // holds equal to the schemas'.
    for what in ["KUBERNETES_VERSION", "KEDA_VERSION"] {
        assert!(
            xtask.contains(&format!("use devstack::{what};")),
            "xtask/src/minikube/mod.rs must install devstack::{what}, the version deploy-check validates against"
        );
    }
    assert!(
        xtask.contains("devstack::DAPR_RUNTIME_VERSION"),
        "xtask installs the pinned Dapr runtime"
    );
}

#[test]
fn the_lint_accepts_no_object_without_a_name() {
    let objects = vec![Object(
        serde_json::json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"namespace": "x"}}),
    )];
    let problems = lint::check(&objects);
    assert!(
        problems
            .iter()
            .any(|p| p.contains("metadata.name is missing")),
        "{problems:?}"
    );
}

#[test]
fn the_cluster_runs_the_release_the_manifests_are_validated_against() {
    assert_eq!(
        schema::KUBERNETES_VERSION,
        devstack::KUBERNETES_VERSION,
        "`cargo xtask cluster` must run the Kubernetes release deploy-check validates against"
    );
    assert_eq!(
        schema::KEDA_VERSION,
        devstack::KEDA_VERSION,
        "`cargo xtask cluster` and `cargo xtask minikube` must install the KEDA release \
         deploy-check validates the ScaledObjects against"
    );
}
