//! The system's images on the cluster, made here because this machine reaches no public
//! registry: the four services from the repository's Dockerfile ([`dockerfile`]), and
//! stand-ins for the official Kafka, PostgreSQL and Redis images, from Debian packages and the
//! Kafka jars the project already takes from Maven Central. The stand-ins carry what the
//! manifests rely on (the programs on `PATH` or at the official image's path, the users the
//! manifests run as); the manifests give every command and setting explicitly, so the same
//! manifests run on the official images too.

use std::path::Path;

use anyhow::{Context as _, Result};

use super::{
    Cluster, dockerfile,
    images::{self, DEBIAN_BASE, Step},
};
use crate::{KAFKA_VERSION, OTELCOL_VERSION, Paths, provision};

/// The services: Dockerfile target = Deployment = Dapr app id.
pub const SERVICES: [&str; 4] = [
    "chat-api",
    "recurring-tasks",
    "notifications",
    "reminder-cron",
];

/// A service's image, named as the kubelet reads the Minikube overlay's `todo-eda/<name>:dev`.
pub fn service_image(service: &str) -> String {
    format!("docker.io/todo-eda/{service}:dev")
}

/// The stand-ins, named apart from the official images (the cluster overlay maps them).
pub const KAFKA_IMAGE: &str = "localhost/todo-eda/kafka:4.1.1";
pub const POSTGRES_IMAGE: &str = "localhost/todo-eda/postgres:15";
pub const REDIS_IMAGE: &str = "localhost/todo-eda/redis:7.0";

/// The OpenTelemetry Collector the cluster overlay runs for the tracing component to export
/// to (`otel-collector.observability`): the build the trace-export tests use, an OTLP
/// receiver and the file exporter.
pub fn collector_image() -> String {
    format!("localhost/todo-eda/otelcol:{OTELCOL_VERSION}")
}

/// Installs Debian packages in an image and drops the package lists.
fn apt_install(packages: &str) -> String {
    format!(
        "export DEBIAN_FRONTEND=noninteractive && apt-get update \
         && apt-get install -y --no-install-recommends {packages} \
         && rm -rf /var/lib/apt/lists/*"
    )
}

fn stand_ins(paths: &Paths) -> Vec<(&'static str, Vec<Step>)> {
    vec![
        (
            // apache/kafka: Kafka's jars in /opt/kafka/libs, `java` on PATH, user 1000.
            KAFKA_IMAGE,
            vec![
                Step::Run(format!(
                    "{} && useradd --uid 1000 --user-group --create-home --home-dir \
                     /home/appuser --shell /bin/bash appuser && mkdir -p /var/lib/kafka/data \
                     && chown 1000:1000 /var/lib/kafka/data",
                    apt_install("openjdk-17-jre-headless")
                )),
                Step::Copy(paths.kafka_libs(), "/opt/kafka/libs".into()),
                Step::Env("KAFKA_VERSION".into(), KAFKA_VERSION.into()),
                Step::User("1000:1000".into()),
            ],
        ),
        (
            // postgres:17-alpine: initdb, postgres, pg_isready on PATH, user postgres = 70.
            // Debian bookworm packages PostgreSQL 15: the schema needs nothing newer.
            POSTGRES_IMAGE,
            vec![
                Step::Run(format!(
                    "groupadd --gid 70 postgres && useradd --uid 70 --gid 70 --home-dir \
                     /var/lib/postgresql --shell /bin/bash postgres \
                     && mkdir -p /etc/postgresql-common/createcluster.d \
                     && echo 'create_main_cluster = false' \
                        > /etc/postgresql-common/createcluster.d/no-main-cluster.conf \
                     && {} && mkdir -p /var/run/postgresql \
                     && chown 70:70 /var/run/postgresql",
                    apt_install("postgresql-15")
                )),
                Step::Env(
                    "PATH".into(),
                    "/usr/lib/postgresql/15/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
                        .into(),
                ),
                Step::User("70:70".into()),
            ],
        ),
        (
            // redis:7.4-alpine: redis-server and redis-cli on PATH, user 999.
            REDIS_IMAGE,
            vec![
                Step::Run(format!(
                    "groupadd --gid 1000 redis && useradd --uid 999 --gid 1000 --home-dir \
                     /data --shell /usr/sbin/nologin redis && {} && mkdir -p /data \
                     && chown 999:1000 /data",
                    apt_install("redis-server")
                )),
                Step::User("999:1000".into()),
                Step::Cmd(r#"["redis-server"]"#.into()),
            ],
        ),
    ]
}

impl Cluster {
    /// Makes the system's images (each only when its inputs changed) and loads them into the
    /// node; `binaries` holds the services' release binaries. Answers whether a service's
    /// image changed (its pods run the old one until restarted: the tag stays `dev`).
    pub fn system_images(&self, paths: &Paths, binaries: &Path) -> Result<bool> {
        images::debian_base(&self.store, &self.image_log())?;
        let text = std::fs::read_to_string(paths.root.join("Dockerfile"))
            .context("reading the Dockerfile")?;
        let mut services_changed = false;
        for service in SERVICES {
            let steps = dockerfile::service_steps(&text, service, binaries)?;
            services_changed |= self.make_image(&service_image(service), DEBIAN_BASE, &steps)?;
        }
        for (name, steps) in stand_ins(paths) {
            self.make_image(name, DEBIAN_BASE, &steps)?;
        }
        provision::otel_collector(paths)?;
        self.make_image(
            &collector_image(),
            DEBIAN_BASE,
            &[
                Step::Copy(paths.otel_collector(), "/usr/local/bin/otelcol".into()),
                Step::User("10001:10001".into()),
                Step::Entrypoint(r#"["/usr/local/bin/otelcol"]"#.into()),
            ],
        )?;
        Ok(services_changed)
    }
}

/// The scripted OpenAI-compatible model the cluster's chat test runs (`e2e`'s
/// `scripted-model`), on the Debian base.
pub const SCRIPTED_MODEL_IMAGE: &str = "localhost/todo-eda/scripted-model:test";

impl Cluster {
    /// Makes and loads [`SCRIPTED_MODEL_IMAGE`] from the `scripted-model` binary.
    pub fn scripted_model_image(&self, binary: &Path) -> Result<()> {
        images::debian_base(&self.store, &self.image_log())?;
        self.make_image(
            SCRIPTED_MODEL_IMAGE,
            DEBIAN_BASE,
            &[
                Step::Copy(binary.to_path_buf(), "/usr/local/bin/scripted-model".into()),
                Step::User("10001:10001".into()),
                Step::Entrypoint(r#"["/usr/local/bin/scripted-model", "0.0.0.0:8080"]"#.into()),
            ],
        )
        .map(drop)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cluster_overlay_runs_the_collector_image_made_here() {
        let manifest = include_str!("../../../k8s/overlays/cluster/collector/otel-collector.yaml");
        assert!(
            manifest.contains(&format!("image: {}", collector_image())),
            "k8s/overlays/cluster/collector/otel-collector.yaml must name {}",
            collector_image()
        );
    }
}
