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

/// One app of the run file, with its ports as `dapr.yaml` gives them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunFileApp {
    pub id: &'static str,
    pub app_port: u16,
    pub dapr_http_port: u16,
    pub dapr_grpc_port: u16,
}

const fn app(
    id: &'static str,
    app_port: u16,
    dapr_http_port: u16,
    dapr_grpc_port: u16,
) -> RunFileApp {
    RunFileApp {
        id,
        app_port,
        dapr_http_port,
        dapr_grpc_port,
    }
}

/// The run file's apps (a test holds them to `dapr.yaml`), chat-api first. Every fixed port lies below
/// Linux's ephemeral range (32768-60999 by default), so no outbound connection of another
/// process can be holding one when `dapr run` checks it: the CLI refuses to start while
/// one of its ports is taken, and a long-lived connection (a broker's, an API server's to
/// etcd) took 50004 for good when the gRPC ports were 50001-50004.
pub const RUN_FILE_APPS: [RunFileApp; 4] = [
    app("chat-api", 3000, 3500, 3510),
    app("recurring-tasks", 3001, 3501, 3511),
    app("notifications", 3002, 3502, 3512),
    app("reminder-cron", 3003, 3503, 3513),
];

/// The run file's app `id`.
pub fn run_file_app(id: &str) -> Option<RunFileApp> {
    RUN_FILE_APPS.into_iter().find(|a| a.id == id)
}

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
    loop {
        let mut cmd = Command::new(cli);
        cmd.args(["run", "-f", "dapr.yaml"])
            .current_dir(&paths.root)
            .env(crate::dapr_install::RUNTIME_PATH_ENV, &runtime_path)
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())));
        let mut dapr = Managed::spawn("dapr run", cmd, log, Some(&pidfile))?
            .with_stop(Signal::SIGINT, Duration::from_secs(20));
        match ready(&mut dapr).await {
            Ok(()) => return Ok(dapr),
            // The CLI checks each fixed port by binding it for a moment before it starts
            // that app, and stops the apps it started when one is taken. The fixed ports
            // are outside the ephemeral range, but the ports the CLI picks for each
            // daprd's other listeners are free only when picked. Once more, whichever step
            // of the start noticed it. (Decided on the log alone: the CLI stops itself after
            // that message, and `shutdown` below waits for it whatever state it is in by
            // then.)
            Err(e) if attempt < 3 && dapr.log_text().contains("is not available") => {
                eprintln!(
                    "dapr run: {e:#}\nstarting it again (attempt {})",
                    attempt + 1
                );
                dapr.shutdown().await;
                attempt += 1;
            }
            Err(e) => return Err(e),
        }
    }
}

/// Waits until chat-api is ready and every sidecar of the run file has loaded its
/// components and can publish. (The run file turns the scheduler and placement off; the
/// app-facing /v1.0/healthz then answers 204 as well, but a service behind its health
/// check may take longer.)
async fn ready(dapr: &mut Managed) -> Result<()> {
    let api = RUN_FILE_APPS[0];
    dapr.wait_http_ok(
        &format!("http://127.0.0.1:{}/readyz", api.app_port),
        Duration::from_secs(60),
    )
    .await?;
    for app in RUN_FILE_APPS {
        dapr.wait_http_ok(
            &format!(
                "http://127.0.0.1:{}/v1.0/healthz/outbound",
                app.dapr_http_port
            ),
            Duration::from_secs(60),
        )
        .await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_apps_ports_are_those_of_dapr_yaml() {
        let text = include_str!("../../dapr.yaml");
        let blocks: Vec<&str> = text.split("  - appID: ").skip(1).collect();
        assert_eq!(blocks.len(), RUN_FILE_APPS.len());
        for app in RUN_FILE_APPS {
            let block = blocks
                .iter()
                .find(|b| b.starts_with(&format!("{}\n", app.id)))
                .unwrap_or_else(|| panic!("no app {} in dapr.yaml", app.id));
            for line in [
                format!("appPort: {}", app.app_port),
                format!("daprHTTPPort: {}", app.dapr_http_port),
                format!("daprGRPCPort: {}", app.dapr_grpc_port),
            ] {
                assert!(block.contains(&line), "dapr.yaml's {}: no `{line}`", app.id);
            }
        }
        assert_eq!(
            run_file_app("chat-api").map(|a| a.dapr_grpc_port),
            Some(3510)
        );
        assert_eq!(run_file_app("nobody"), None);
        assert_eq!(RUN_FILE_APPS[0].id, "chat-api", "readiness asks it first");
    }

    #[test]
    fn no_fixed_port_lies_in_the_ephemeral_range() {
        let range = fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
            .unwrap_or_else(|_| "32768 60999".into());
        let bounds: Vec<u16> = range
            .split_whitespace()
            .map(|n| n.parse().expect("a port number"))
            .collect();
        let low = bounds[0].min(32768);
        for app in RUN_FILE_APPS {
            for port in [app.app_port, app.dapr_http_port, app.dapr_grpc_port] {
                assert!(
                    port < low,
                    "{}'s port {port} is in the ephemeral range ({range:?})",
                    app.id
                );
            }
        }
    }
}
