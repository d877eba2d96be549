//! The whole system as `cargo xtask up` runs it: `dapr run -f dapr.yaml`, every service
//! beside its own sidecar, every listener on loopback.
//!
//! The run file puts each daprd's HTTP and gRPC APIs on loopback (`apiListenAddresses`),
//! but the CLI has no field for the other two listeners daprd opens: its internal gRPC
//! API (unauthenticated in self-hosted mode, which has no mTLS) and its metrics. Both
//! default to every interface. So the CLI is pointed (`DAPR_RUNTIME_PATH`) at a runtime
//! directory of the project's whose `daprd` is a launcher: it runs the real daprd with the
//! CLI's arguments and `--dapr-internal-grpc-listen-address 127.0.0.1
//! --metrics-listen-address 127.0.0.1`. The rest of that directory links to the real one.

use std::{
    fs,
    os::unix::fs::PermissionsExt as _,
    path::{Path, PathBuf},
    process::Command,
    time::Duration,
};

use anyhow::{Context as _, Result};
use nix::sys::signal::Signal;

use crate::{DaprRuntime, Managed, Paths};

/// The run file's apps: (app id, app port, daprd HTTP port), as in `dapr.yaml`.
pub const RUN_FILE_APPS: [(&str, u16, u16); 4] = [
    ("chat-api", 3000, 3500),
    ("recurring-tasks", 3001, 3501),
    ("notifications", 3002, 3502),
    ("reminder-cron", 3003, 3503),
];

/// Flags the launcher adds to every daprd the CLI starts.
const LOOPBACK_FLAGS: &str =
    "--dapr-internal-grpc-listen-address 127.0.0.1 --metrics-listen-address 127.0.0.1";

/// Writes the launcher runtime directory under `dir` for `runtime`, and answers the path
/// to give the CLI as `DAPR_RUNTIME_PATH`.
pub fn loopback_runtime(runtime: &DaprRuntime, dir: &Path) -> Result<PathBuf> {
    let real = runtime.runtime_path.join(".dapr");
    let dapr = dir.join(".dapr");
    let bin = dapr.join("bin");
    fs::create_dir_all(&bin).with_context(|| format!("creating {}", bin.display()))?;
    for entry in fs::read_dir(&real).with_context(|| format!("reading {}", real.display()))? {
        let entry = entry?;
        let name = entry.file_name();
        if name == "bin" {
            continue;
        }
        let link = dapr.join(&name);
        let _ = fs::remove_file(&link);
        std::os::unix::fs::symlink(entry.path(), &link)
            .with_context(|| format!("linking {}", link.display()))?;
    }
    let launcher = bin.join("daprd");
    let _ = fs::remove_file(&launcher);
    fs::write(
        &launcher,
        format!(
            "#!/bin/sh\n# Written by devstack (run_file.rs): daprd with every listener on loopback.\nexec '{}' \"$@\" {LOOPBACK_FLAGS}\n",
            runtime.daprd.display()
        ),
    )
    .with_context(|| format!("writing {}", launcher.display()))?;
    fs::set_permissions(&launcher, fs::Permissions::from_mode(0o755))?;
    Ok(dir.to_path_buf())
}

/// Starts `dapr run -f dapr.yaml` in the workspace root with `env` (for the apps and the
/// sidecars alike), logging to `log`, and waits until chat-api is ready and every sidecar
/// has loaded its components. Stopped with SIGINT, as Ctrl-C would.
pub async fn start(
    paths: &Paths,
    runtime: &DaprRuntime,
    cli: &Path,
    env: &[(&str, String)],
    log: &Path,
) -> Result<Managed> {
    let runtime_path = loopback_runtime(runtime, &paths.data.join("dapr-runtime"))?;
    let pidfile = log.with_extension("pid");
    let mut attempt = 1;
    let dapr = loop {
        let mut cmd = Command::new(cli);
        cmd.args(["run", "-f", "dapr.yaml"])
            .current_dir(&paths.root)
            .env(crate::dapr_install::RUNTIME_PATH_ENV, &runtime_path)
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())));
        let mut dapr = Managed::spawn("dapr run", cmd, log, Some(&pidfile))?
            .with_stop(Signal::SIGINT, Duration::from_secs(20));
        match dapr
            .wait_http_ok("http://127.0.0.1:3000/readyz", Duration::from_secs(60))
            .await
        {
            Ok(()) => break dapr,
            // The CLI checks each fixed port by binding it for a moment before it starts
            // that app; now and then the check fails on a port that is free (seen for the
            // fourth app's gRPC port), and the CLI stops the apps it started. Once more.
            Err(e)
                if attempt < 3
                    && !dapr.is_running()
                    && dapr.log_text().contains("is not available") =>
            {
                eprintln!(
                    "dapr run: {e:#}\nstarting it again (attempt {})",
                    attempt + 1
                );
                dapr.shutdown().await;
                attempt += 1;
            }
            Err(e) => return Err(e),
        }
    };
    // Outbound health: components loaded, publishing works. (The run file turns the
    // scheduler and placement off; the app-facing /v1.0/healthz then answers 204 as well,
    // but a service behind its health check may take longer.)
    for (_, _, port) in RUN_FILE_APPS {
        dapr.wait_http_ok(
            &format!("http://127.0.0.1:{port}/v1.0/healthz/outbound"),
            Duration::from_secs(60),
        )
        .await?;
    }
    Ok(dapr)
}
