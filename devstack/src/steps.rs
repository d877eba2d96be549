//! How the developer tasks (`cargo xtask`, the bench) show their progress: a title per
//! step and how long it took; and `cargo` run from them in the workspace.

use std::{
    process::{Command, Stdio},
    time::Instant,
};

use anyhow::{Context as _, Result, bail};

use crate::Paths;

/// Prints the step's title; pass what it answers to [`done`].
pub fn step(what: &str) -> Instant {
    println!("==> {what}");
    Instant::now()
}

/// Prints how long the step begun at `started` took.
pub fn done(started: Instant) {
    println!("    done in {:.1}s", started.elapsed().as_secs_f64());
}

/// `body` as one step: its title, then how long it took (nothing more when it fails).
pub fn timed<T>(what: &str, body: impl FnOnce() -> Result<T>) -> Result<T> {
    let started = step(what);
    let out = body()?;
    done(started);
    Ok(out)
}

/// What `cargo run` sets for the program it runs and a cargo started from it must not
/// inherit: build scripts that watch one of these (`ring`'s watches `CARGO_MANIFEST_DIR`)
/// would otherwise see it change between a cargo started by hand and one started from a
/// developer task, and rebuild, with everything that depends on them, each time.
const SET_BY_CARGO_RUN: &[&str] = &[
    "CARGO_MANIFEST_DIR",
    "CARGO_MANIFEST_PATH",
    "CARGO_CRATE_NAME",
    "CARGO_BIN_NAME",
    "CARGO_PRIMARY_PACKAGE",
];

/// `cargo` (the one running this task, if any), without what `cargo run` set for this
/// program ([`SET_BY_CARGO_RUN`], and every `CARGO_PKG_*`).
pub fn cargo_command() -> Command {
    let mut cmd = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    for (name, _) in std::env::vars_os() {
        let name = name.to_string_lossy();
        if name.starts_with("CARGO_PKG_") || SET_BY_CARGO_RUN.contains(&name.as_ref()) {
            cmd.env_remove(name.as_ref());
        }
    }
    cmd
}

/// Runs `cargo <args>` in the workspace root, streaming its output (its input closed).
pub fn cargo(paths: &Paths, args: &[&str], envs: &[(&str, String)]) -> Result<()> {
    let status = cargo_command()
        .args(args)
        .envs(envs.iter().map(|(k, v)| (*k, v.as_str())))
        .current_dir(&paths.root)
        .stdin(Stdio::null())
        .status()
        .with_context(|| format!("running cargo {}", args.join(" ")))?;
    if !status.success() {
        bail!("cargo {} failed ({status})", args.join(" "));
    }
    Ok(())
}
