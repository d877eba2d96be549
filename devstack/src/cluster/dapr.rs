//! Dapr on the cluster as `dapr init -k` installs it: the release's own Helm chart
//! (`charts/dapr` in the dapr module), mTLS on, with images made here from the binaries
//! built from the same module (the official ones come from ghcr.io, which this machine
//! cannot reach), like the official distroless ones ([`images::distroless_steps`]).

use std::fs;

use anyhow::{Context as _, Result};

use super::Cluster;
use crate::steps::timed;
use crate::{DAPR_RUNTIME_VERSION, Paths, provision};

/// The registry part of the images' names: `localhost/dapr/<name>:<release>`.
pub const REGISTRY: &str = "localhost/dapr";
pub const NAMESPACE: &str = "dapr-system";

impl Cluster {
    /// Builds the images, gives the scheduler its volumes and installs the chart; waits until
    /// every control-plane pod is ready.
    pub fn install_dapr(&self, paths: &Paths) -> Result<()> {
        let control_plane = provision::dapr_control_plane(paths)?;
        let daprd = paths.project_daprd();
        timed("Dapr's images", || {
            let mut binaries: Vec<(String, std::path::PathBuf)> = provision::DAPR_CONTROL_PLANE
                .iter()
                .map(|n| ((*n).to_owned(), control_plane.join(n)))
                .collect();
            binaries.push(("daprd".to_owned(), daprd.clone()));
            for (name, binary) in binaries {
                let image = format!("{REGISTRY}/{name}:{DAPR_RUNTIME_VERSION}");
                self.make_distroless_image(&image, &binary, &format!("/{name}"))?;
            }
            Ok(())
        })?;
        timed(
            "volumes for the Dapr scheduler and the system's stores",
            || self.volumes(),
        )?;
        timed("Dapr's chart (helm install, mTLS on)", || {
            let chart = provision::dapr_chart(paths)?;
            let status = self.helm(&["status", "dapr", "-n", NAMESPACE]);
            let installed = status
                .as_ref()
                .is_ok_and(|s| s.contains("STATUS: deployed"));
            if status.is_ok() && !installed {
                // An install that did not finish (interrupted, or timed out): start over.
                self.helm(&["uninstall", "dapr", "-n", NAMESPACE, "--wait"])?;
            }
            if !installed {
                self.helm(&[
                    "install",
                    "dapr",
                    chart.to_str().context("path")?,
                    "--namespace",
                    NAMESPACE,
                    "--create-namespace",
                    "--set",
                    &format!("global.registry={REGISTRY}"),
                    "--set",
                    &format!("global.tag={DAPR_RUNTIME_VERSION}"),
                    "--set",
                    "global.imagePullPolicy=Never",
                    "--set",
                    "global.mtls.enabled=true",
                    "--wait",
                    "--timeout",
                    "10m",
                ])?;
            }
            self.kubectl(&[
                "-n",
                NAMESPACE,
                "wait",
                "--for=condition=Ready",
                "pods",
                "--all",
                "--timeout=300s",
            ])
            .map(drop)
        })
    }

    /// hostPath PersistentVolumes without a class, which the claims without one bind to: three
    /// for the Dapr scheduler's replicas, three for Kafka, PostgreSQL and Redis.
    fn volumes(&self) -> Result<()> {
        let mut manifest = String::new();
        for (n, size) in ["16Gi", "16Gi", "16Gi", "2Gi", "2Gi", "2Gi"]
            .iter()
            .enumerate()
        {
            let dir = self.state.join("volumes").join(format!("pv-{n}"));
            fs::create_dir_all(&dir)?;
            // Writable by the pods' non-root users, as Minikube's hostPath provisioner makes
            // them (hostPath volumes ignore fsGroup).
            fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(0o777))?;
            manifest.push_str(&format!(
                "apiVersion: v1\nkind: PersistentVolume\nmetadata:\n  name: todo-eda-pv-{n}\nspec:\n  capacity:\n    storage: {size}\n  accessModes: [ReadWriteOnce]\n  persistentVolumeReclaimPolicy: Retain\n  hostPath:\n    path: {}\n    type: DirectoryOrCreate\n---\n",
                dir.display()
            ));
        }
        let file = self.state.join("volumes.yaml");
        fs::write(&file, manifest)?;
        self.kubectl(&["apply", "-f", file.to_str().context("path")?])
            .map(drop)
    }
}

/// A Deployment with Dapr's annotations, to see the injector at work (it injects only
/// into pods a controller creates, not into a pod a user creates directly).
const PROBE: &str = "apiVersion: apps/v1
kind: Deployment
metadata:
  name: dapr-probe
  namespace: default
spec:
  replicas: 1
  selector:
    matchLabels:
      app: dapr-probe
  template:
    metadata:
      labels:
        app: dapr-probe
      annotations:
        dapr.io/enabled: \"true\"
        dapr.io/app-id: dapr-probe
    spec:
      containers:
        - name: app
          image: localhost/todo-eda/pause:1
          imagePullPolicy: Never
";

impl Cluster {
    /// Starts a pod with Dapr's annotations and checks that it got a ready `daprd` beside its
    /// container (injector, sentry's certificate and the operator all working); removes it.
    pub fn check_injection(&self) -> Result<()> {
        let file = self.state.join("dapr-probe.yaml");
        fs::write(&file, PROBE)?;
        let file = file.to_str().context("path")?;
        let _ = self.kubectl(&["delete", "-f", file, "--now", "--ignore-not-found"]);
        self.kubectl(&["apply", "-f", file])?;
        let ready = self.kubectl(&[
            "rollout",
            "status",
            "deployment/dapr-probe",
            "--timeout=180s",
        ]);
        let containers = self.kubectl(&[
            "get",
            "pods",
            "-l",
            "app=dapr-probe",
            "-o",
            "jsonpath={.items[*].spec.containers[*].name}",
        ])?;
        let _ = self.kubectl(&["delete", "-f", file, "--now"]);
        ready.context("the probe with Dapr's annotations did not become ready")?;
        anyhow::ensure!(
            containers.split_whitespace().any(|c| c == "daprd"),
            "no daprd was injected beside the probe's container (containers: {containers})"
        );
        Ok(())
    }
}
