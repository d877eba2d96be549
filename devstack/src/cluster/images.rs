//! Images made on this machine, without a registry: buildah (vfs storage in the cache) from
//! scratch or from a local base, saved as an archive and imported into the node's
//! containerd.

use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result};

use super::{config, host};

/// buildah with its storage under `store` (vfs: no overlay mounts to clean up).
fn buildah(store: &Path, args: &[&str]) -> Result<String> {
    let root = store.join("root");
    let runroot = store.join("run");
    let mut all = vec![
        "--root",
        root.to_str().context("store path")?,
        "--runroot",
        runroot.to_str().context("store path")?,
        "--storage-driver",
        "vfs",
    ];
    all.extend_from_slice(args);
    host::output("buildah", &all)
}

/// An image of `files` (host path, path in the image) with `entrypoint`, from scratch, run
/// as `user` (`uid:gid`) when given.
pub fn from_scratch(
    store: &Path,
    name: &str,
    files: &[(&Path, &str)],
    entrypoint: &str,
    user: Option<&str>,
) -> Result<()> {
    if buildah(store, &["inspect", "--type", "image", name]).is_ok() {
        return Ok(());
    }
    let container = buildah(store, &["from", "scratch"])?.trim().to_owned();
    for (from, to) in files {
        buildah(
            store,
            &["copy", &container, from.to_str().context("file path")?, to],
        )?;
    }
    buildah(store, &["config", "--entrypoint", entrypoint, &container])?;
    if let Some(user) = user {
        buildah(store, &["config", "--user", user, &container])?;
    }
    buildah(store, &["commit", "--rm", &container, name])?;
    Ok(())
}

/// Saves `name` from buildah's store and imports it into the node's containerd.
pub fn load(store: &Path, name: &str, ctr: &Path) -> Result<()> {
    let archive: PathBuf = store.join(format!("{}.tar", name.replace(['/', ':'], "_")));
    let _ = std::fs::remove_file(&archive);
    buildah(
        store,
        &[
            "push",
            name,
            &format!("docker-archive:{}:{name}", archive.display()),
        ],
    )?;
    host::run(
        ctr.to_str().context("ctr path")?,
        &[
            "--address",
            &config::containerd_socket(),
            "-n",
            "k8s.io",
            "images",
            "import",
            archive.to_str().context("archive path")?,
        ],
    )?;
    let _ = std::fs::remove_file(&archive);
    Ok(())
}
