//! Where the workspace, its run data, the Dapr install and the download cache live.

use std::env;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

use crate::versions::{DAPR_RUNTIME_VERSION, DAPRD_BUILD_TAGS, KAFKA_VERSION, OTELCOL_VERSION};

/// Where things live.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Paths {
    /// The workspace root: the directory whose `Cargo.toml` has a `[workspace]` table.
    pub root: PathBuf,
    /// Run data of local stacks: `root/.data` (git-ignored).
    pub data: PathBuf,
    /// The user's own Dapr install, as `dapr init` lays it out: `~/.dapr`. Only ever read:
    /// the project's runtime lives in the cache ([`Paths::project_dapr_root`]).
    pub dapr_home: PathBuf,
    /// Downloads shared by every checkout on this machine: `~/.cache/todo-eda`
    /// (`$XDG_CACHE_HOME/todo-eda` when that is set).
    pub cache: PathBuf,
}

impl Paths {
    /// Finds the workspace root by walking up from the running package's manifest
    /// directory (`CARGO_MANIFEST_DIR`, set by `cargo run` and `cargo test`), then from the
    /// current directory, then from this crate's own source location.
    pub fn discover() -> Result<Self> {
        let mut starts: Vec<PathBuf> = Vec::new();
        if let Some(dir) = env::var_os("CARGO_MANIFEST_DIR") {
            starts.push(PathBuf::from(dir));
        }
        if let Ok(dir) = env::current_dir() {
            starts.push(dir);
        }
        starts.push(PathBuf::from(env!("CARGO_MANIFEST_DIR")));

        let root = starts
            .iter()
            .find_map(|start| find_workspace_root(start))
            .with_context(|| {
                format!(
                    "no Cargo.toml with a [workspace] table above any of {starts:?}: \
                     run from inside the project checkout"
                )
            })?;
        let home = home_dir()?;
        let cache = match env::var_os("XDG_CACHE_HOME") {
            Some(dir) if !dir.is_empty() => PathBuf::from(dir).join("todo-eda"),
            _ => home.join(".cache").join("todo-eda"),
        };
        Ok(Self {
            data: root.join(".data"),
            root,
            dapr_home: home.join(".dapr"),
            cache,
        })
    }

    /// `~/.dapr/bin/daprd`, where `dapr init` puts the runtime. Only ever read: see
    /// [`crate::dapr_install`].
    pub fn user_daprd(&self) -> PathBuf {
        self.dapr_home.join("bin").join("daprd")
    }

    /// The project's own Dapr install in the cache,
    /// `cache/dapr-<version>-<build tags>`: what `DAPR_RUNTIME_PATH` names when it runs.
    pub fn project_dapr_root(&self) -> PathBuf {
        self.cache
            .join(format!("dapr-{DAPR_RUNTIME_VERSION}-{DAPRD_BUILD_TAGS}"))
    }

    /// The project's `daprd`: `project_dapr_root()/.dapr/bin/daprd`, where the CLI looks.
    pub fn project_daprd(&self) -> PathBuf {
        self.project_dapr_root()
            .join(".dapr")
            .join("bin")
            .join("daprd")
    }

    /// The project's `dapr` CLI, beside its `daprd`.
    pub fn project_dapr_cli(&self) -> PathBuf {
        self.project_dapr_root()
            .join(".dapr")
            .join("bin")
            .join("dapr")
    }

    /// The Kafka distribution root in the cache: `cache/kafka-<version>`.
    pub fn kafka_home(&self) -> PathBuf {
        self.cache.join(format!("kafka-{KAFKA_VERSION}"))
    }

    /// The directory holding every jar the broker and the tools need (`java -cp 'libs/*'`).
    pub fn kafka_libs(&self) -> PathBuf {
        self.kafka_home().join("libs")
    }

    /// Logs of provisioning steps (builds, downloads): `cache/logs`.
    /// The OpenTelemetry Collector the provisioning builds:
    /// `cache/otelcol-<version>/otelcol-todo`.
    pub fn otel_collector(&self) -> PathBuf {
        self.cache
            .join(format!("otelcol-{OTELCOL_VERSION}"))
            .join("otelcol-todo")
    }

    pub fn provision_logs(&self) -> PathBuf {
        self.cache.join("logs")
    }
}

fn home_dir() -> Result<PathBuf> {
    match env::var_os("HOME") {
        Some(home) if !home.is_empty() => Ok(PathBuf::from(home)),
        _ => bail!(
            "HOME is not set: devstack looks for a Dapr install in ~/.dapr and keeps downloads in ~/.cache"
        ),
    }
}

fn find_workspace_root(start: &Path) -> Option<PathBuf> {
    start.ancestors().find_map(|dir| {
        let manifest = dir.join("Cargo.toml");
        let text = std::fs::read_to_string(&manifest).ok()?;
        text.lines()
            .any(|line| line.trim() == "[workspace]")
            .then(|| dir.to_path_buf())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn discover_finds_the_workspace_root_above_this_crate() {
        let paths = Paths::discover().expect("discover");
        let manifest = std::fs::read_to_string(paths.root.join("Cargo.toml")).expect("manifest");
        assert!(manifest.contains("[workspace]"));
        assert!(paths.root.join("devstack").is_dir());
        assert_eq!(paths.data, paths.root.join(".data"));
        assert!(paths.kafka_libs().ends_with("kafka-4.1.1/libs"));
    }
}
