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

/// The label that records what an image was made of ([`inputs_stamp`]).
const INPUTS_LABEL: &str = "todo-eda.inputs";

/// A digest of an image's inputs: each file's paths, size and modification time (a
/// directory's own), the entrypoint and the user.
fn inputs_stamp(files: &[(&Path, &str)], entrypoint: &str, user: Option<&str>) -> String {
    use std::hash::{Hash as _, Hasher as _};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    for (from, to) in files {
        from.hash(&mut hasher);
        to.hash(&mut hasher);
        if let Ok(meta) = std::fs::metadata(from) {
            meta.len().hash(&mut hasher);
            meta.modified().ok().hash(&mut hasher);
        }
    }
    entrypoint.hash(&mut hasher);
    user.hash(&mut hasher);
    format!("{:016x}", hasher.finish())
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
    // The image is made again when what it is made of changed (a rebuilt binary, another
    // entrypoint or user), not only when it is missing.
    let inputs = inputs_stamp(files, entrypoint, user);
    let made = buildah(
        store,
        &[
            "inspect",
            "--type",
            "image",
            "--format",
            &format!("{{{{index .OCIv1.Config.Labels \"{INPUTS_LABEL}\"}}}}"),
            name,
        ],
    );
    if made.is_ok_and(|label| label.trim() == inputs) {
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
    buildah(
        store,
        &[
            "config",
            "--label",
            &format!("{INPUTS_LABEL}={inputs}"),
            &container,
        ],
    )?;
    buildah(store, &["commit", "--rm", &container, name])?;
    Ok(())
}

/// Saves `name` from buildah's store and imports it into the node's containerd, unless
/// that containerd has it already: `loaded` (a directory of the node's state, gone with
/// `down` as containerd's images are) records the buildah image id each name was loaded as.
pub fn load(store: &Path, name: &str, ctr: &Path, loaded: &Path) -> Result<()> {
    let id = buildah(
        store,
        &[
            "images",
            "--noheading",
            "--no-trunc",
            "--format",
            "{{.ID}}",
            name,
        ],
    )?
    .trim()
    .to_owned();
    let stamp = loaded.join(name.replace(['/', ':'], "_"));
    if std::fs::read_to_string(&stamp).is_ok_and(|s| s == id) {
        return Ok(());
    }
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
    std::fs::create_dir_all(loaded)?;
    std::fs::write(&stamp, id)?;
    Ok(())
}
