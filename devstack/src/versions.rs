//! The pinned versions of what devstack provisions and runs: the Dapr runtime and CLI,
//! Kafka and the OpenTelemetry Collector.

/// The Dapr runtime (`daprd`) version the project is built and tested against: the newest
/// 1.18 patch whose every dependency the Go module proxy serves (v1.18.3 needs
/// `github.com/dapr/durabletask-go` v0.12.4, which it refuses).
pub const DAPR_RUNTIME_VERSION: &str = "1.18.2";
/// The build tags of the project's `daprd`: its flavour. `stablecomponents` has no
/// `conversation.*` component; `allcomponents` has every one (what official releases ship).
pub const DAPRD_BUILD_TAGS: &str = "allcomponents";
/// The `dapr` CLI version, built from `github.com/dapr/cli` at this tag: the newest the Go
/// module proxy serves (1.17.x and 1.18.x are refused there). It runs the 1.18 runtime.
pub const DAPR_CLI_VERSION: &str = "1.16.5";
/// The runtime release the CLI's own `go.mod` is built against (the CLI imports a few
/// runtime packages; its own choice, v1.16.2, needs modules the proxy does not serve).
pub(crate) const DAPR_CLI_BUILD_RUNTIME: &str = "1.16.5";
/// The Apache Kafka version; must match `kafka.version` in `devstack/kafka/pom.xml`.
pub const KAFKA_VERSION: &str = "4.1.1";
/// The OpenTelemetry Collector release the trace-export tests run (see
/// `devstack/otelcol/builder.yaml`): the newest whose file exporter the Go module proxy
/// serves and builds.
pub const OTELCOL_VERSION: &str = "0.161.0";
/// The Kubernetes release `cargo xtask cluster` runs: the one `deploy-check` validates the
/// manifests against (`deploy-check/src/schema.rs`, which a test keeps in step).
pub const KUBERNETES_VERSION: &str = "1.34.4";
/// etcd for that cluster (Debian's 3.4 is too old for Kubernetes 1.34).
pub const ETCD_VERSION: &str = "3.6.17";
/// CoreDNS for that cluster.
pub const COREDNS_VERSION: &str = "1.14.7";
/// Helm, which installs Dapr's chart into the cluster as `dapr init -k` does.
pub const HELM_VERSION: &str = "3.21.4";
/// KEDA, which scales the workers on Kafka lag: the release `deploy-check` validates the
/// ScaledObjects against and `cargo xtask minikube` installs.
pub const KEDA_VERSION: &str = "2.20.2";
/// metrics-server, which the chat-api HorizontalPodAutoscaler reads CPU from (Minikube's
/// addon on Minikube).
pub const METRICS_SERVER_VERSION: &str = "0.8.0";
