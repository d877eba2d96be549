//! Finding the programs the stack runs: on `PATH`, Java under `JAVA_HOME`, and PostgreSQL,
//! which Debian keeps off `PATH`. A leaf: it knows nothing of what runs them.

use std::env;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context as _, Result, bail};

/// The first `program` on `PATH`.
pub(crate) fn which(program: &str) -> Option<PathBuf> {
    env::split_paths(&env::var_os("PATH")?)
        .map(|dir| dir.join(program))
        .find(|candidate| candidate.is_file())
}

/// The directory holding `postgres`, `initdb` and `psql` of one PostgreSQL version:
/// `$DEVSTACK_PG_BINDIR`, else the newest `/usr/lib/postgresql/<major>/bin` (Debian's
/// layout, which keeps them off PATH), else wherever `postgres` is on PATH.
pub(crate) fn postgres_bindir() -> Result<PathBuf> {
    let complete = |dir: &Path| {
        ["postgres", "initdb", "psql"]
            .iter()
            .all(|tool| dir.join(tool).is_file())
    };
    if let Some(dir) = env::var_os("DEVSTACK_PG_BINDIR") {
        let dir = PathBuf::from(dir);
        if complete(&dir) {
            return Ok(dir);
        }
        bail!(
            "DEVSTACK_PG_BINDIR={} has no postgres, initdb and psql",
            dir.display()
        );
    }
    let mut versions: Vec<(u32, PathBuf)> = fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let major = entry.file_name().to_str()?.parse().ok()?;
            let bin = entry.path().join("bin");
            complete(&bin).then_some((major, bin))
        })
        .collect();
    versions.sort();
    if let Some((_, bin)) = versions.pop() {
        return Ok(bin);
    }
    if let Some(dir) = which("postgres").and_then(|p| p.parent().map(Path::to_path_buf))
        && complete(&dir)
    {
        return Ok(dir);
    }
    bail!(
        "PostgreSQL is not installed (no /usr/lib/postgresql/*/bin/postgres): run \
         `cargo xtask provision` or `apt-get install postgresql`"
    )
}

/// `java` from `$JAVA_HOME/bin` when that is set, else from PATH.
pub(crate) fn java_command() -> Command {
    let java = env::var_os("JAVA_HOME")
        .map(|home| PathBuf::from(home).join("bin").join("java"))
        .filter(|java| java.is_file())
        .unwrap_or_else(|| PathBuf::from("java"));
    Command::new(java)
}

/// Copies a directory tree, making the copy writable (module cache files are read-only).
pub(crate) fn copy_tree(from: &Path, to: &Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    fs::create_dir_all(to).with_context(|| format!("creating {}", to.display()))?;
    fs::set_permissions(to, fs::Permissions::from_mode(0o755))
        .with_context(|| format!("making {} writable", to.display()))?;
    for entry in fs::read_dir(from).with_context(|| format!("reading {}", from.display()))? {
        let entry = entry.with_context(|| format!("reading {}", from.display()))?;
        let (source, target) = (entry.path(), to.join(entry.file_name()));
        let kind = entry.file_type().context("reading a file type")?;
        if kind.is_dir() {
            copy_tree(&source, &target)?;
        } else if kind.is_file() {
            fs::copy(&source, &target)
                .with_context(|| format!("copying {} to {}", source.display(), target.display()))?;
            fs::set_permissions(&target, fs::Permissions::from_mode(0o644))
                .with_context(|| format!("making {} writable", target.display()))?;
        }
    }
    Ok(())
}
