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

/// Runs `cargo <args>` in the workspace root, streaming its output (its input closed).
pub fn cargo(paths: &Paths, args: &[&str], envs: &[(&str, String)]) -> Result<()> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(cargo)
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
