//! What a Minikube user adds beside Dapr: KEDA, which scales the workers on Kafka lag (as its
//! release manifest installs it: the module's `config/default`, which the release YAML is
//! made from), and metrics-server, which the chat-api HorizontalPodAutoscaler reads CPU from
//! (its own Helm chart, with `--kubelet-insecure-tls` as Minikube's addon runs it: the
//! kubelet serves a self-signed certificate). Both from their modules, images made here.

use std::fs;

use anyhow::{Context as _, Result};

use super::{Cluster, host};
use crate::steps::timed;
use crate::{KEDA_VERSION, METRICS_SERVER_VERSION, Paths, provision};

/// KEDA's programs and the images the release manifest names (`ghcr.io/kedacore/<image>`).
const KEDA_IMAGES: [(&str, &str); 3] = [
    ("keda", "keda"),
    ("keda-adapter", "keda-metrics-apiserver"),
    ("keda-admission-webhooks", "keda-admission-webhooks"),
];

const METRICS_SERVER_IMAGE: &str = "localhost/todo-eda/metrics-server";

impl Cluster {
    pub fn install_keda(&self, paths: &Paths) -> Result<()> {
        let (bin, module) = provision::keda(paths)?;
        timed(
            &format!("KEDA {KEDA_VERSION} (its release manifests)"),
            || {
                let mut kustomization = String::from(
                    "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources:\n  - config/default\nimages:\n",
                );
                for (program, image) in KEDA_IMAGES {
                    let name = format!("localhost/todo-eda/{image}:{KEDA_VERSION}");
                    self.make_distroless_image(&name, &bin.join(program), &format!("/{program}"))?;
                    kustomization.push_str(&format!(
                    "  - name: ghcr.io/kedacore/{image}\n    newName: localhost/todo-eda/{image}\n    newTag: \"{KEDA_VERSION}\"\n"
                ));
                }
                kustomization.push_str(
                "patches:\n  - target:\n      kind: Deployment\n    patch: |-\n      - op: replace\n        path: /spec/template/spec/containers/0/imagePullPolicy\n        value: Never\n",
            );
                let dir = self.state.join("keda");
                let _ = fs::remove_dir_all(&dir);
                fs::create_dir_all(&dir)?;
                host::run(
                    "cp",
                    &[
                        "-r",
                        module.join("config").to_str().context("path")?,
                        dir.to_str().context("path")?,
                    ],
                )?;
                // The module cache's files are read-only; `down` removes this copy.
                host::run("chmod", &["-R", "u+w", dir.to_str().context("path")?])?;
                fs::write(dir.join("kustomization.yaml"), kustomization)?;
                // Server-side: KEDA's CRDs are too large for the last-applied annotation.
                self.kubectl(&[
                    "apply",
                    "--server-side",
                    "--force-conflicts",
                    "-k",
                    dir.to_str().context("path")?,
                ])?;
                self.kubectl(&[
                    "-n",
                    "keda",
                    "wait",
                    "--for=condition=Available",
                    "deployment",
                    "--all",
                    "--timeout=300s",
                ])
                .map(drop)
            },
        )
    }

    pub fn install_metrics_server(&self, paths: &Paths) -> Result<()> {
        let (bin, module) = provision::metrics_server(paths)?;
        timed(
            &format!("metrics-server {METRICS_SERVER_VERSION} (its chart)"),
            || {
                let name = format!("{METRICS_SERVER_IMAGE}:{METRICS_SERVER_VERSION}");
                self.make_distroless_image(&name, &bin.join("metrics-server"), "/metrics-server")?;
                let chart = module.join("charts/metrics-server");
                self.helm(&[
                    "upgrade",
                    "--install",
                    "metrics-server",
                    chart.to_str().context("path")?,
                    "--namespace",
                    "kube-system",
                    "--set",
                    &format!("image.repository={METRICS_SERVER_IMAGE}"),
                    "--set",
                    &format!("image.tag={METRICS_SERVER_VERSION}"),
                    "--set",
                    "image.pullPolicy=Never",
                    "--set",
                    "args={--kubelet-insecure-tls}",
                    "--wait",
                    "--timeout",
                    "5m",
                ])
                .map(drop)
            },
        )
    }
}
