//! Renders a kustomize directory with `kubectl kustomize`, exactly as `kubectl apply -k` would.

use std::path::Path;
use std::process::{Command, Stdio};

use anyhow::{Context as _, Result, bail};

/// The rendered YAML stream of a kustomization directory.
pub fn kustomize(dir: &Path) -> Result<String> {
    let output = Command::new("kubectl")
        .arg("kustomize")
        .arg(dir)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                anyhow::anyhow!(
                    "kubectl is not installed (or not on PATH): it renders the kustomize \
                     overlays (`kubectl kustomize`); install kubectl 1.27 or newer"
                )
            } else {
                anyhow::Error::new(e).context("running kubectl kustomize")
            }
        })?;
    if !output.status.success() {
        bail!(
            "`kubectl kustomize {}` failed ({}):\n{}",
            dir.display(),
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
    }
    String::from_utf8(output.stdout).context("kubectl kustomize printed non-UTF-8 output")
}
