//! Installs what the stack needs, idempotently: fast when everything is there, and
//! complete on a fresh machine that has only the toolchains (Go, Java 17, Maven, Rust).
//!
//! Each step prints `==> step` before, and `    done in 12.3s` or `    cached` after. Several
//! processes may provision at once (tests in parallel, xtask beside them): every step runs
//! under a lock file in the cache and checks again once it holds it.

use std::env;
use std::ffi::OsStr;
use std::fs::{self, File, OpenOptions};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::dapr_install::{self, ANY_DAPR_ENV, UserInstall, installed_version};
use crate::kafka;
use crate::paths::Paths;
use crate::process::{describe_command, tail_lines};
use crate::tools::{copy_tree, java_command, postgres_bindir, which};
use crate::versions::{
    DAPR_CLI_BUILD_RUNTIME, DAPR_CLI_VERSION, DAPR_RUNTIME_VERSION, DAPRD_BUILD_TAGS,
    KAFKA_VERSION, OTELCOL_VERSION,
};

mod cluster;
mod go;

pub use cluster::{
    DAPR_CONTROL_PLANE, KUBERNETES_BINARIES, cluster_bin, cluster_parts, dapr_chart,
    dapr_control_plane, keda, metrics_server,
};

use go::*;

/// The dependency list for the Kafka jars; see the comment at its top.
const KAFKA_POM: &str = include_str!("../../kafka/pom.xml");

/// The Collector builder's manifest; see the comment at its top.
const OTELCOL_MANIFEST: &str = include_str!("../../otelcol/builder.yaml");

const HEARTBEAT: Duration = Duration::from_secs(30);

/// Runs every step: system packages, Kafka jars, `daprd`, the `dapr` CLI, the Dapr install's
/// files.
pub fn all(paths: &Paths) -> Result<()> {
    system_packages()?;
    kafka(paths)?;
    daprd(paths)?;
    dapr_cli(paths)?;
    dapr_home(paths)?;
    otel_collector(paths)?;
    Ok(())
}

/// [`all`], run at most once per process: later calls (other tests in the same test
/// binary) wait for the first and share its outcome.
pub fn all_once(paths: &Paths) -> Result<()> {
    static OUTCOME: std::sync::OnceLock<Result<(), String>> = std::sync::OnceLock::new();
    OUTCOME
        .get_or_init(|| all(paths).map_err(|err| format!("{err:#}")))
        .clone()
        .map_err(|err| anyhow::anyhow!("provisioning failed: {err}"))
}

enum Outcome {
    Done,
    Cached,
}

fn step(title: &str, body: impl FnOnce() -> Result<Outcome>) -> Result<()> {
    println!("==> {title}");
    let started = Instant::now();
    match body() {
        Ok(Outcome::Cached) => {
            println!("    cached");
            Ok(())
        }
        Ok(Outcome::Done) => {
            println!("    done in {:.1}s", started.elapsed().as_secs_f64());
            Ok(())
        }
        Err(err) => Err(err.context(format!("provisioning step `{title}` failed"))),
    }
}

/// Installs the Debian packages the stack runs (`redis-server`, `postgresql`, and a Java
/// runtime and Maven if those are missing) with `apt-get`, only when something is missing.
pub fn system_packages() -> Result<()> {
    apt_step(
        "system packages (redis-server, postgresql)",
        missing_packages,
    )
}

/// A step that installs the Debian packages `missing` names, if any, then asks again.
fn apt_step(title: &str, missing: impl Fn() -> Vec<&'static str>) -> Result<()> {
    step(title, || {
        let needed = missing();
        if needed.is_empty() {
            return Ok(Outcome::Cached);
        }
        apt_install(&needed)?;
        let still = missing();
        if !still.is_empty() {
            bail!("apt-get finished but {} is still missing", still.join(", "));
        }
        Ok(Outcome::Done)
    })
}

/// The browser the web page's tests drive: Chromium and its WebDriver (chromedriver) from
/// Debian, with a font to render text in, installed with `apt-get` only when missing.
/// Answers where the two programs are.
pub fn browser() -> Result<Browser> {
    fn missing() -> Vec<&'static str> {
        let mut missing = Vec::new();
        if which("chromium").is_none() {
            missing.push("chromium");
        }
        if which("chromedriver").is_none() {
            missing.push("chromium-driver");
        }
        if !Path::new("/usr/share/fonts/truetype/dejavu").is_dir() {
            missing.push("fonts-dejavu-core");
        }
        missing
    }
    apt_step("browser (chromium, chromium-driver)", missing)?;
    Ok(Browser {
        chromium: which("chromium").context("chromium is not on PATH")?,
        chromedriver: which("chromedriver").context("chromedriver is not on PATH")?,
    })
}

/// Where [`browser`] found Chromium and its WebDriver.
pub struct Browser {
    pub chromium: PathBuf,
    pub chromedriver: PathBuf,
}

/// Installs `packages` with apt-get (as root only; otherwise says what to install).
fn apt_install(packages: &[&str]) -> Result<()> {
    if !nix::unistd::geteuid().is_root() {
        bail!(
            "missing {}: install them with `sudo apt-get install {}` (devstack only \
             runs apt-get itself as root)",
            packages.join(", "),
            packages.join(" ")
        );
    }
    println!("    installing {} with apt-get", packages.join(", "));
    let mut update = Command::new("apt-get");
    update.args(["-q", "update"]);
    run_streamed(
        &mut update,
        "check that the Debian package mirrors are reachable",
    )?;
    let mut install = Command::new("apt-get");
    install
        .env("DEBIAN_FRONTEND", "noninteractive")
        .args(["-q", "install", "-y", "--no-install-recommends"])
        .args(packages);
    run_streamed(
        &mut install,
        "see apt-get's message above; `apt-get install` by hand shows the same",
    )
}

fn missing_packages() -> Vec<&'static str> {
    let mut missing = Vec::new();
    if which("redis-server").is_none() {
        missing.push("redis-server");
    }
    if postgres_bindir().is_err() {
        missing.push("postgresql");
    }
    if !command_works(&mut java_command(), &["-version"]) {
        missing.push("default-jre-headless");
    }
    if which("mvn").is_none() {
        missing.push("maven");
    }
    missing
}

/// Downloads the Kafka broker and tools jars (and an SLF4J binding, without which the
/// broker logs nothing) from Maven Central into `cache/kafka-<version>/libs`, using
/// `devstack/kafka/pom.xml`. Skipped when a previous run completed with the same pom.
pub fn kafka(paths: &Paths) -> Result<()> {
    step(&format!("Kafka {KAFKA_VERSION} jars"), || {
        let home = paths.kafka_home();
        let marker = home.join(".complete");
        let libs = paths.kafka_libs();
        let is_complete = || fs::read_to_string(&marker).is_ok_and(|text| text == KAFKA_POM);
        if is_complete() && libs.is_dir() {
            kafka::write_tools_log_config(paths)?;
            return Ok(Outcome::Cached);
        }
        let _lock = lock(paths)?;
        if is_complete() && libs.is_dir() {
            kafka::write_tools_log_config(paths)?;
            return Ok(Outcome::Cached);
        }
        if which("mvn").is_none() {
            bail!("Maven (`mvn`) is not on PATH: install it (`apt-get install maven`)");
        }
        fs::create_dir_all(&home).with_context(|| format!("creating {}", home.display()))?;
        let pom = home.join("pom.xml");
        fs::write(&pom, KAFKA_POM).with_context(|| format!("writing {}", pom.display()))?;
        let staging = home.join("libs.partial");
        remove_dir_if_exists(&staging)?;
        let mut mvn = Command::new("mvn");
        mvn.current_dir(&home)
            .args(["-B", "--no-transfer-progress", "-f"])
            .arg(&pom)
            .arg("dependency:copy-dependencies")
            .arg(format!("-DoutputDirectory={}", staging.display()))
            .arg("-DincludeScope=runtime");
        run_logged(
            &mut mvn,
            &paths.provision_logs().join("kafka-jars.log"),
            "downloading the Kafka jars",
            "check that Maven Central is reachable (mvn uses ~/.m2/settings.xml for mirrors and proxies)",
        )?;
        let broker_jar = staging.join(format!("kafka_2.13-{KAFKA_VERSION}.jar"));
        if !broker_jar.is_file() {
            bail!(
                "Maven finished but {} is missing: is devstack/kafka/pom.xml in step with KAFKA_VERSION?",
                broker_jar.display()
            );
        }
        remove_dir_if_exists(&libs)?;
        fs::rename(&staging, &libs)
            .with_context(|| format!("moving {} to {}", staging.display(), libs.display()))?;
        fs::write(&marker, KAFKA_POM).with_context(|| format!("writing {}", marker.display()))?;
        kafka::write_tools_log_config(paths)?;
        Ok(Outcome::Done)
    })
}

/// Makes the Dapr runtime at [`DAPR_RUNTIME_VERSION`] available (see
/// [`crate::dapr_install`]): the user's `~/.dapr/bin/daprd` when it is that release with
/// every needed component, else the project's build in the cache, built from
/// `github.com/dapr/dapr` with `-tags` [`DAPRD_BUILD_TAGS`] when missing (minutes on 2
/// cores). The user's install is never written to.
pub fn daprd(paths: &Paths) -> Result<()> {
    step(
        &format!("daprd {DAPR_RUNTIME_VERSION} ({DAPRD_BUILD_TAGS})"),
        || {
            let user = paths.user_daprd();
            if dapr_install::any_dapr()
                && let Some(found) = dapr_install::daprd_version(&user)
            {
                println!("    using {} {found} ({ANY_DAPR_ENV}=1)", user.display());
                return Ok(Outcome::Cached);
            }
            match dapr_install::user_install(paths) {
                UserInstall::Fits { version } => {
                    println!("    using your {} {version}", user.display());
                    return Ok(Outcome::Cached);
                }
                UserInstall::Unfit { reason } => println!(
                    "    your {} ({reason}) is left alone; the project's build in {} is used",
                    user.display(),
                    paths.project_dapr_root().display()
                ),
                UserInstall::Missing => {}
            }
            go_binary(
                paths,
                &GoBinary {
                    what: "daprd",
                    module: "github.com/dapr/dapr",
                    version: DAPR_RUNTIME_VERSION,
                    package: "./cmd/daprd",
                    // Without a components tag daprd registers no components and panics at
                    // start; only `allcomponents` has the conversation components.
                    tags: Some(DAPRD_BUILD_TAGS),
                    ldflags: format!(
                        "-s -w -X github.com/dapr/dapr/pkg/buildinfo.version={DAPR_RUNTIME_VERSION}"
                    ),
                    output: paths.project_daprd(),
                    version_args: &["--version"],
                    parse_version: |out| out.lines().next().map(|line| line.trim().to_owned()),
                    go_mod_edits: Vec::new(),
                },
            )
        },
    )
}

/// Makes the project's `dapr` CLI at [`DAPR_CLI_VERSION`] (beside its `daprd`), like
/// [`daprd`]. An installed CLI elsewhere is not touched.
pub fn dapr_cli(paths: &Paths) -> Result<()> {
    step(&format!("dapr CLI {DAPR_CLI_VERSION}"), || {
        let built = installed_version(&paths.project_dapr_cli(), &["--version"], cli_version)
            .is_some_and(|found| found == DAPR_CLI_VERSION);
        if !built
            && (dapr_install::any_dapr() || !go_installed())
            && let Some(installed) = dapr_install::installed_cli(paths)
        {
            println!(
                "    using {} ({})",
                installed.display(),
                if go_installed() {
                    format!("{ANY_DAPR_ENV}=1")
                } else {
                    "Go is not installed to build the pinned one".to_owned()
                }
            );
            return Ok(Outcome::Cached);
        }
        go_binary(
            paths,
            &GoBinary {
                what: "dapr CLI",
                module: "github.com/dapr/cli",
                version: DAPR_CLI_VERSION,
                package: ".",
                tags: None,
                ldflags: format!(
                    "-s -w -X main.version={DAPR_CLI_VERSION} -X main.apiVersion=1.0"
                ),
                output: paths.project_dapr_cli(),
                version_args: &["--version"],
                parse_version: cli_version,
                // cli v1.16.5 requires dapr v1.16.2, whose components-contrib v1.16.3 the Go
                // module proxy does not serve. Build it against dapr v1.16.5 (same minor,
                // later patch) instead; that in turn asks for go-etcd-cron v0.9.2, also not
                // served, while v0.9.1 (the CLI's own choice) is.
                go_mod_edits: vec![
                    format!("-require=github.com/dapr/dapr@v{DAPR_CLI_BUILD_RUNTIME}"),
                    format!(
                        "-require=github.com/dapr/components-contrib@v{DAPR_CLI_BUILD_RUNTIME}"
                    ),
                    "-replace=github.com/diagridio/go-etcd-cron=github.com/diagridio/go-etcd-cron@v0.9.1"
                        .to_owned(),
                ],
            },
        )
    })
}

/// The version `dapr --version` prints.
fn cli_version(out: &str) -> Option<String> {
    out.lines()
        .find_map(|line| line.trim().strip_prefix("CLI version:"))
        .map(|v| v.trim().to_owned())
}

/// Creates what `dapr init --slim` would besides the binaries, in the project's install:
/// `.dapr/components/` (empty) and a minimal `.dapr/config.yaml`, which `dapr run` reads
/// when `DAPR_RUNTIME_PATH` names that install. Existing files are left alone.
pub fn dapr_home(paths: &Paths) -> Result<()> {
    step("Dapr install files (components/, config.yaml)", || {
        let dot_dapr = paths.project_dapr_root().join(".dapr");
        let components = dot_dapr.join("components");
        let config = dot_dapr.join("config.yaml");
        if components.is_dir() && config.is_file() {
            return Ok(Outcome::Cached);
        }
        fs::create_dir_all(&components)
            .with_context(|| format!("creating {}", components.display()))?;
        if !config.exists() {
            fs::write(
                &config,
                "apiVersion: dapr.io/v1alpha1\nkind: Configuration\nmetadata:\n  name: daprConfig\nspec: {}\n",
            )
            .with_context(|| format!("writing {}", config.display()))?;
        }
        Ok(Outcome::Done)
    })
}

/// Builds the OpenTelemetry Collector the trace-export tests send spans to
/// ([`OTELCOL_VERSION`]; an OTLP receiver and the file exporter) with the Collector's official
/// builder, `ocb`, unless the cache has it: about two minutes on 2 cores, once per machine.
pub fn otel_collector(paths: &Paths) -> Result<()> {
    step(
        &format!("OpenTelemetry Collector {OTELCOL_VERSION} (OTLP receiver, file exporter)"),
        || {
            let output = paths.otel_collector();
            let usable = || {
                installed_version(&output, &["--version"], |out| {
                    out.split_whitespace().last().map(str::to_owned)
                })
                .is_some_and(|found| found == OTELCOL_VERSION)
            };
            if usable() {
                return Ok(Outcome::Cached);
            }
            let _lock = lock(paths)?;
            if usable() {
                return Ok(Outcome::Cached);
            }
            if !go_installed() {
                bail!(
                    "Go is not installed (`go version` fails): install Go 1.26 or newer to \
                     build the OpenTelemetry Collector {OTELCOL_VERSION} into {}",
                    output.display()
                );
            }
            let dir = output.parent().context("output path has no parent")?;
            let logs = paths.provision_logs();
            let builder_bin = dir.join("bin");
            println!("    installing the Collector builder (ocb) v{OTELCOL_VERSION}");
            let mut install = go_command(&[
                "install",
                &format!("go.opentelemetry.io/collector/cmd/builder@v{OTELCOL_VERSION}"),
            ]);
            fs::create_dir_all(&paths.cache)
                .with_context(|| format!("creating {}", paths.cache.display()))?;
            install.env("GOBIN", &builder_bin).current_dir(&paths.cache);
            run_logged(
                &mut install,
                &logs.join("otelcol-builder-install.log"),
                "installing the Collector builder",
                "the Go module proxy must serve go.opentelemetry.io/collector/cmd/builder \
                 (go env GOPROXY)",
            )?;
            let build_dir = dir.join("build");
            remove_dir_if_exists(&build_dir)?;
            fs::create_dir_all(&build_dir)
                .with_context(|| format!("creating {}", build_dir.display()))?;
            let manifest = build_dir.join("builder.yaml");
            fs::write(
                &manifest,
                OTELCOL_MANIFEST.replace("OUTPUT_PATH", &build_dir.display().to_string()),
            )
            .with_context(|| format!("writing {}", manifest.display()))?;
            println!(
                "    building the Collector (log: {})",
                logs.join("otelcol-build.log").display()
            );
            let mut build = Command::new(builder_bin.join("builder"));
            build.arg("--config").arg(&manifest).current_dir(&build_dir);
            go_env(&mut build);
            run_logged(
                &mut build,
                &logs.join("otelcol-build.log"),
                "building the OpenTelemetry Collector",
                "the Go module proxy must serve every module the manifest names \
                 (devstack/otelcol/builder.yaml)",
            )?;
            fs::rename(build_dir.join("otelcol-todo"), &output)
                .with_context(|| format!("moving the built Collector to {}", output.display()))?;
            remove_dir_if_exists(&build_dir)?;
            if !usable() {
                bail!(
                    "built {} but `--version` does not report {OTELCOL_VERSION}",
                    output.display()
                );
            }
            Ok(Outcome::Done)
        },
    )
}

/// Holds the provisioning lock until dropped.
fn lock(paths: &Paths) -> Result<File> {
    fs::create_dir_all(&paths.cache)
        .with_context(|| format!("creating {}", paths.cache.display()))?;
    let path = paths.cache.join(".provision.lock");
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .with_context(|| format!("opening {}", path.display()))?;
    if file.try_lock().is_err() {
        println!(
            "    waiting for another provisioning run to finish (lock {})",
            path.display()
        );
        file.lock()
            .with_context(|| format!("locking {}", path.display()))?;
    }
    Ok(file)
}

/// Runs a long command with its output in `log` (truncated first), printing a heartbeat
/// every 30 s; on failure the error carries the end of the log and `hint`.
fn run_logged(cmd: &mut Command, log: &Path, what: &str, hint: &str) -> Result<()> {
    if let Some(dir) = log.parent() {
        fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let out = File::create(log).with_context(|| format!("creating {}", log.display()))?;
    let err = out.try_clone().context("duplicating a file handle")?;
    let described = describe_command(cmd);
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn()
        .with_context(|| format!("starting `{described}` ({what})"))?;
    let started = Instant::now();
    let mut next_beat = started + HEARTBEAT;
    let status = loop {
        if let Some(status) = child.try_wait().context("waiting for a child process")? {
            break status;
        }
        if Instant::now() >= next_beat {
            next_beat += HEARTBEAT;
            println!(
                "    … still {what} ({}s, log: {})",
                started.elapsed().as_secs(),
                log.display()
            );
        }
        std::thread::sleep(Duration::from_millis(250));
    };
    if !status.success() {
        let text = fs::read_to_string(log).unwrap_or_default();
        bail!(
            "{what} failed ({status}): `{described}`\n{}\n(full log: {})\nwhat to do: {hint}",
            tail_lines(&text, 40),
            log.display()
        );
    }
    Ok(())
}

/// Runs a command with its output shown as it comes (for apt-get).
fn run_streamed(cmd: &mut Command, hint: &str) -> Result<()> {
    let described = describe_command(cmd);
    let status = cmd
        .stdin(Stdio::null())
        .status()
        .with_context(|| format!("starting `{described}`"))?;
    if !status.success() {
        bail!("`{described}` failed ({status}): {hint}");
    }
    Ok(())
}

fn command_works(cmd: &mut Command, args: &[&str]) -> bool {
    cmd.args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn remove_dir_if_exists(dir: &Path) -> Result<()> {
    match fs::remove_dir_all(dir) {
        Ok(()) => Ok(()),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(err) => Err(err).with_context(|| format!("removing {}", dir.display())),
    }
}

#[cfg(test)]
mod tests {
    use super::version_parts;

    #[test]
    fn go_versions_compare_by_number() {
        assert!(version_parts("1.26.8") >= version_parts("1.26.5"));
        assert!(version_parts("1.26") < version_parts("1.26.5"));
        assert!(version_parts("1.9.1") < version_parts("1.26.5"));
        assert!(version_parts("1.27rc1") > version_parts("1.26.5"));
        assert!(version_parts("1.24.11") < version_parts("1.26.5"));
    }
}
