//! One `daprd` sidecar started directly (not through the `dapr` CLI), the way tests want
//! it: loopback only, no placement or scheduler, its own ports and resources directory.

use std::fs;
use std::net::{Ipv4Addr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use nix::sys::signal::Signal;

use crate::paths::Paths;
use crate::process::{Managed, free_port, kill_stale};

/// How long `Sidecar::start` waits for the components to load.
const OUTBOUND_TIMEOUT: Duration = Duration::from_secs(60);
/// daprd drains for up to `--dapr-graceful-shutdown-seconds` (5 by default) after SIGTERM.
const STOP_GRACE: Duration = Duration::from_secs(15);
/// Variables daprd reads from its environment that must come from [`SidecarConfig`] only,
/// not leak in from the shell that runs the tests.
const SCRUBBED_ENV: &[&str] = &[
    "APP_API_TOKEN",
    "DAPR_API_TOKEN",
    "DAPR_SCHEDULER_HOST_ADDRESS",
    "DAPR_SCHEDULER_HOST_ADDRESS_DNS_A",
    "DAPR_HOST_IP",
];

/// Prefix of the variables the chat model's component reads through its secret store
/// (`components/secretstore-chat-model.yaml`): a sidecar gets them from
/// [`SidecarConfig::env`] only, never from the shell.
pub const CHAT_MODEL_ENV_PREFIX: &str = "CHAT_MODEL_";

/// What one sidecar runs with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SidecarConfig {
    pub app_id: String,
    /// The app's HTTP port; `None` for a sidecar without an app (publishing only).
    pub app_port: Option<u16>,
    pub http_port: u16,
    pub grpc_port: u16,
    pub metrics_port: u16,
    /// Components, subscriptions and resiliency YAML (`--resources-path`).
    pub resources_dir: PathBuf,
    /// A Dapr Configuration file (`--config`).
    pub config_file: Option<PathBuf>,
    /// Sent by daprd to the app as `dapr-api-token` (env `APP_API_TOKEN`).
    pub app_api_token: Option<String>,
    /// Required by daprd on API calls (env `DAPR_API_TOKEN`).
    pub dapr_api_token: Option<String>,
    /// The app route daprd probes (`--enable-app-health-check`, every second, unhealthy after
    /// two failures): while the app fails it, daprd pauses its subscriptions and input
    /// bindings, so messages wait in the broker instead of being retried into a dead-letter
    /// topic. `None`: no app health check.
    pub app_health_check_path: Option<String>,
    /// daprd's stdout and stderr; its pidfile goes beside it (`.pid`).
    pub log_file: PathBuf,
    /// More environment variables for daprd (e.g. `CHAT_MODEL_*` for the chat's model).
    pub env: Vec<(String, String)>,
}

impl SidecarConfig {
    /// A configuration with free ports, no app, no configuration file and no tokens.
    pub fn new(app_id: &str, resources_dir: &Path, log_file: &Path) -> Self {
        Self {
            app_id: app_id.to_owned(),
            app_port: None,
            http_port: free_port(),
            grpc_port: free_port(),
            metrics_port: free_port(),
            resources_dir: resources_dir.to_path_buf(),
            config_file: None,
            app_api_token: None,
            dapr_api_token: None,
            app_health_check_path: None,
            log_file: log_file.to_path_buf(),
            env: Vec::new(),
        }
    }
}

/// A Dapr Configuration that resolves app ids from an in-memory SQLite table instead of
/// mDNS (UDP 5353 on every interface). Nothing here uses service invocation.
const NAME_RESOLUTION_CONFIG: &str = "apiVersion: dapr.io/v1alpha1\nkind: Configuration\nmetadata:\n  name: names\nspec:\n  nameResolution:\n    component: sqlite\n    version: v1\n    configuration:\n      connectionString: \":memory:\"\n";

/// A running `daprd`. Stopped by PID on [`Sidecar::stop`] or on drop.
#[derive(Debug)]
pub struct Sidecar {
    cfg: SidecarConfig,
    process: Managed,
}

impl Sidecar {
    /// Starts daprd for `cfg` and returns once its components are loaded
    /// (`/v1.0/healthz/outbound` answers 2xx): publishing and state calls work from then on.
    /// It does not wait for the app: daprd only becomes fully ready once the app listens
    /// on `app_port`, which is [`Sidecar::wait_ready`].
    pub async fn start(paths: &Paths, cfg: SidecarConfig) -> Result<Sidecar> {
        let daprd = {
            // Looking may read a large binary: off the async workers.
            let paths = paths.clone();
            tokio::task::spawn_blocking(move || crate::dapr_install::locate(&paths))
                .await
                .context("locating daprd")??
                .daprd
        };
        if !cfg.resources_dir.is_dir() {
            bail!(
                "the resources directory {} does not exist",
                cfg.resources_dir.display()
            );
        }
        let pidfile = cfg.log_file.with_extension("pid");
        kill_stale(&pidfile, "daprd", &cfg.resources_dir, Signal::SIGTERM)?;
        for (port, what) in [
            (cfg.http_port, "HTTP"),
            (cfg.grpc_port, "gRPC"),
            (cfg.metrics_port, "metrics"),
        ] {
            TcpListener::bind((Ipv4Addr::LOCALHOST, port))
                .map(drop)
                .with_context(|| {
                    format!("daprd {}: its {what} port {port} is in use", cfg.app_id)
                })?;
        }
        let workdir = cfg
            .log_file
            .parent()
            .map_or_else(|| PathBuf::from("."), Path::to_path_buf);
        fs::create_dir_all(&workdir).with_context(|| format!("creating {}", workdir.display()))?;

        let mut cmd = Command::new(&daprd);
        cmd.args(["--app-id", &cfg.app_id, "--mode", "standalone"])
            .args(["--dapr-http-port", &cfg.http_port.to_string()])
            .args(["--dapr-grpc-port", &cfg.grpc_port.to_string()])
            .args(["--dapr-internal-grpc-port", &free_port().to_string()])
            .args(["--dapr-listen-addresses", "127.0.0.1"])
            .args(["--dapr-internal-grpc-listen-address", "127.0.0.1"])
            .args(["--metrics-port", &cfg.metrics_port.to_string()])
            .args(["--metrics-listen-address", "127.0.0.1"])
            .args([
                "--app-protocol",
                "http",
                "--app-channel-address",
                "127.0.0.1",
            ])
            .args(["--log-level", "info"])
            .arg("--resources-path")
            .arg(&cfg.resources_dir)
            .current_dir(&workdir);
        // No --placement-host-address and no --scheduler-host-address: with neither, daprd
        // (1.16 to 1.18) disables actors and the scheduler client instead of retrying a
        // connection.
        if let Some(port) = cfg.app_port {
            cmd.args(["--app-port", &port.to_string()]);
        }
        // Name resolution without mDNS, which would listen on every interface (as in
        // dapr-config.yaml); a test's own configuration adds to it.
        let loopback_config = workdir.join(format!("{}-names.yaml", cfg.app_id));
        fs::write(&loopback_config, NAME_RESOLUTION_CONFIG)
            .with_context(|| format!("writing {}", loopback_config.display()))?;
        cmd.arg("--config").arg(&loopback_config);
        if let Some(config) = &cfg.config_file {
            cmd.arg("--config").arg(config);
        }
        if let Some(path) = &cfg.app_health_check_path {
            cmd.arg("--enable-app-health-check")
                .args(["--app-health-check-path", path])
                .args(["--app-health-probe-interval", "1"])
                .args(["--app-health-probe-timeout", "500"])
                .args(["--app-health-threshold", "2"]);
        }
        for name in SCRUBBED_ENV {
            cmd.env_remove(name);
        }
        for (name, _) in std::env::vars_os() {
            if name
                .to_str()
                .is_some_and(|n| n.starts_with(CHAT_MODEL_ENV_PREFIX))
            {
                cmd.env_remove(name);
            }
        }
        cmd.envs(cfg.env.iter().map(|(k, v)| (k, v)));
        if let Some(token) = &cfg.app_api_token {
            cmd.env("APP_API_TOKEN", token);
        }
        if let Some(token) = &cfg.dapr_api_token {
            cmd.env("DAPR_API_TOKEN", token);
        }
        let process = Managed::spawn(
            &format!("daprd {}", cfg.app_id),
            cmd,
            &cfg.log_file,
            Some(&pidfile),
        )?
        .with_stop(Signal::SIGTERM, STOP_GRACE);

        let sidecar = Sidecar { cfg, process };
        sidecar
            .wait_for("/v1.0/healthz/outbound", OUTBOUND_TIMEOUT)
            .await
            .context("daprd did not load its components")?;
        Ok(sidecar)
    }

    /// Waits until daprd is fully ready (`/v1.0/healthz` answers 2xx): components loaded
    /// and, when it has an `app_port`, the app reachable.
    pub async fn wait_ready(&self, timeout: Duration) -> Result<()> {
        self.wait_for("/v1.0/healthz", timeout).await
    }

    async fn wait_for(&self, path: &str, timeout: Duration) -> Result<()> {
        let url = format!("{}{path}", self.http_url());
        self.process.wait_http_ok(&url, timeout).await
    }

    /// The configuration it runs with.
    pub fn config(&self) -> &SidecarConfig {
        &self.cfg
    }

    /// The Dapr HTTP API: `http://127.0.0.1:PORT`.
    pub fn http_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.cfg.http_port)
    }

    /// The Dapr gRPC API: `http://127.0.0.1:PORT` (the form the `dapr` crate's client takes).
    pub fn grpc_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.cfg.grpc_port)
    }

    pub fn pid(&self) -> u32 {
        self.process.pid()
    }

    pub fn is_running(&mut self) -> bool {
        self.process.is_running()
    }

    /// daprd's output so far in this run.
    pub fn log_text(&self) -> String {
        self.process.log_text()
    }

    /// SIGTERM (daprd drains for up to 5 s), then SIGKILL; blocks until it has exited.
    pub fn stop(&mut self) {
        self.process.stop();
    }

    /// [`Sidecar::stop`] without blocking the async runtime.
    pub async fn shutdown(&mut self) {
        self.process.shutdown().await;
    }

    /// SIGKILL: a crash, for fault-injection tests.
    pub fn kill9(&mut self) {
        self.process.kill9();
    }
}

/// Renders every `*.yaml` (and `*.yml`) file directly in `src_dir` into `dst_dir`
/// (created if needed), replacing each `(from, to)` pair textually, in order. Used to point
/// the component YAML at a test stack's ports.
pub fn render_components(
    src_dir: &Path,
    dst_dir: &Path,
    replacements: &[(&str, String)],
) -> Result<()> {
    fs::create_dir_all(dst_dir).with_context(|| format!("creating {}", dst_dir.display()))?;
    let entries =
        fs::read_dir(src_dir).with_context(|| format!("reading {}", src_dir.display()))?;
    for entry in entries {
        let path = entry
            .with_context(|| format!("reading {}", src_dir.display()))?
            .path();
        let is_yaml = path
            .extension()
            .is_some_and(|ext| ext == "yaml" || ext == "yml");
        if !is_yaml || !path.is_file() {
            continue;
        }
        let mut text =
            fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
        for (from, to) in replacements {
            text = text.replace(from, to);
        }
        let target = dst_dir.join(path.file_name().context("file without a name")?);
        fs::write(&target, text).with_context(|| format!("writing {}", target.display()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn render_components_replaces_text_in_yaml_files_only() {
        let src = tempfile::tempdir().expect("tempdir");
        let dst = tempfile::tempdir().expect("tempdir");
        fs::write(
            src.path().join("pubsub.yaml"),
            "brokers: localhost:9092\nredisHost: localhost:6379\n",
        )
        .expect("write");
        fs::write(src.path().join("state.yml"), "redisHost: localhost:6379\n").expect("write");
        fs::write(src.path().join("README.md"), "localhost:9092\n").expect("write");
        fs::create_dir(src.path().join("nested.yaml")).expect("mkdir");

        let out = dst.path().join("rendered");
        render_components(
            src.path(),
            &out,
            &[
                ("localhost:9092", "127.0.0.1:41000".to_owned()),
                ("localhost:6379", "127.0.0.1:41001".to_owned()),
            ],
        )
        .expect("render");

        assert_eq!(
            fs::read_to_string(out.join("pubsub.yaml")).expect("read"),
            "brokers: 127.0.0.1:41000\nredisHost: 127.0.0.1:41001\n"
        );
        assert_eq!(
            fs::read_to_string(out.join("state.yml")).expect("read"),
            "redisHost: 127.0.0.1:41001\n"
        );
        assert!(!out.join("README.md").exists());
        assert!(!out.join("nested.yaml").exists());
    }

    #[test]
    fn render_components_fails_on_a_missing_source_directory() {
        let dst = tempfile::tempdir().expect("tempdir");
        let err = render_components(Path::new("/nonexistent/components"), dst.path(), &[])
            .expect_err("must fail");
        assert!(format!("{err:#}").contains("/nonexistent/components"));
    }
}
