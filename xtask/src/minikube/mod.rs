//! `cargo xtask minikube`: the whole system on a local Minikube cluster, in one command.
//!
//! 1. checks that `minikube` and `kubectl` are installed, and validates the manifests
//!    offline (`deploy-check`, when Go is there to fetch the schemas);
//! 2. starts Minikube (Kubernetes [`KUBERNETES_VERSION`], the version the manifests are
//!    validated against) unless the profile already runs, with metrics-server for the HPA;
//! 3. builds the four service images inside Minikube (`minikube image build`, one
//!    Dockerfile target each, tag `dev`: the overlay never pulls them);
//! 4. installs Dapr with `dapr init -k` (runtime [`devstack::DAPR_RUNTIME_VERSION`]) and KEDA
//!    [`KEDA_VERSION`] if the cluster lacks them;
//! 5. applies `k8s/overlays/minikube` and waits: Kafka, Redis, PostgreSQL, the topics and
//!    migration Jobs, then every service (restarted when its image was rebuilt);
//! 6. smoke test through `kubectl port-forward`: mints a token with the chat-api binary in
//!    its pod (it holds the JWT secret), creates a daily task, completes it, and waits until
//!    the recurring-tasks worker has created the next instance;
//! 7. prints how to look around and how to clean up.
//!
//! Options: `--no-build` (reuse the images), `--no-smoke`, `--smoke-only` (just step 6),
//! `--no-validate`, `--profile <name>` (default `minikube`), `--cpus <n>` and
//! `--memory <size>` (for a new cluster; default 4 and 6g).
//!
//! Every step prints the command it runs, so a failing step can be rerun by hand.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{Context as _, Result, bail};
use devstack::Paths;

mod smoke;

pub(crate) use smoke::{Api, chat_api_token, mint_token, smoke_test};

/// The KEDA release installed when the cluster has none; deploy-check validates the
/// ScaledObjects against its CRDs.
use devstack::KEDA_VERSION;
/// The Kubernetes release of a new Minikube cluster; deploy-check validates the manifests
/// against this release's API schemas.
use devstack::KUBERNETES_VERSION;

const NAMESPACE: &str = "todo";
const OVERLAY: &str = "k8s/overlays/minikube";
/// Dockerfile target = image name (`todo-eda/<name>:dev`) = Deployment = Dapr app id.
const SERVICES: [&str; 4] = [
    "chat-api",
    "recurring-tasks",
    "notifications",
    "reminder-cron",
];
const IMAGE_TAG: &str = "dev";
const INFRA: [&str; 3] = ["kafka", "redis", "postgres"];
const JOBS: [&str; 2] = ["kafka-topics", "todo-migrate"];
const TIMEOUT: &str = "600s";

struct Options {
    build: bool,
    smoke: bool,
    deploy: bool,
    validate: bool,
    profile: String,
    cpus: String,
    memory: String,
}

/// The command line, as clap reads it.
#[derive(Debug, clap::Parser)]
#[command(
    name = "cargo xtask minikube",
    about = "The whole system on a local Minikube cluster: validate, start, build, install \
             Dapr and KEDA, deploy, smoke-test"
)]
struct Cli {
    /// Reuse the images already in Minikube.
    #[arg(long = "no-build")]
    no_build: bool,
    /// Skip the smoke test.
    #[arg(long = "no-smoke")]
    no_smoke: bool,
    /// Only the smoke test, against what is deployed.
    #[arg(long = "smoke-only")]
    smoke_only: bool,
    /// Skip the offline validation of the manifests.
    #[arg(long = "no-validate")]
    no_validate: bool,
    /// The Minikube profile (and kubectl context).
    #[arg(long, default_value = "minikube")]
    profile: String,
    /// CPUs of a new cluster.
    #[arg(long, default_value = "4")]
    cpus: String,
    /// Memory of a new cluster.
    #[arg(long, default_value = "6g")]
    memory: String,
}

/// Parses `cargo xtask minikube`'s arguments; `--help` prints the usage and exits.
fn options(args: &[String]) -> Result<Options> {
    use clap::Parser as _;
    let cli = match Cli::try_parse_from(
        std::iter::once("cargo xtask minikube").chain(args.iter().map(String::as_str)),
    ) {
        Ok(cli) => cli,
        Err(err) if !err.use_stderr() => err.exit(),
        Err(err) => bail!("{}", crate::args::clap_message(&err)),
    };
    Ok(Options {
        build: !cli.no_build && !cli.smoke_only,
        smoke: !cli.no_smoke,
        deploy: !cli.smoke_only,
        validate: !cli.no_validate && !cli.smoke_only,
        profile: cli.profile,
        cpus: cli.cpus,
        memory: cli.memory,
    })
}

pub fn minikube(args: &[String]) -> Result<()> {
    let opts = options(args)?;
    let paths = Paths::discover()?;
    let started = Instant::now();

    let minikube = find_program("minikube").context(
        "minikube is not installed (or not on PATH): install it from \
         https://minikube.sigs.k8s.io/docs/start/ (any driver: docker, podman, kvm2, ...), \
         then run `cargo xtask minikube` again",
    )?;
    find_program("kubectl").context(
        "kubectl is not installed (or not on PATH): install it from \
         https://kubernetes.io/docs/tasks/tools/ (or link `minikube kubectl --` as kubectl)",
    )?;
    let kube = Kube::context(&opts.profile);
    let mk = |args: &[&str]| {
        let mut c = Command::new(&minikube);
        c.arg("-p")
            .arg(&opts.profile)
            .args(args)
            .current_dir(&paths.root);
        c
    };

    if opts.validate {
        validate(&paths)?;
    }
    if opts.deploy {
        ensure_cluster(&opts, &mk, &kube)?;
        if opts.build {
            build_images(&paths, &mk)?;
        }
        ensure_dapr(&paths, &kube)?;
        ensure_keda(&kube)?;
        deploy(&paths, &kube, OVERLAY, opts.build).inspect_err(|_| diagnose(&kube))?;
    }
    if opts.smoke {
        smoke_test(&kube).inspect_err(|_| diagnose(&kube))?;
    }
    println!("\nall done in {:.0}s", started.elapsed().as_secs_f64());
    print_next_steps(&opts.profile);
    Ok(())
}

// --- plumbing -----------------------------------------------------------------------------

fn step(what: &str) -> Instant {
    println!("\n==> {what}");
    Instant::now()
}

fn done(started: Instant) {
    println!("    done in {:.1}s", started.elapsed().as_secs_f64());
}

/// `program` on PATH.
fn find_program(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|p| p.is_file())
}

fn show(cmd: &Command) -> String {
    let program = Path::new(cmd.get_program())
        .file_name()
        .map(|p| p.to_string_lossy().into_owned())
        .unwrap_or_default();
    let args: Vec<String> = cmd
        .get_args()
        .map(|a| {
            let a = a.to_string_lossy();
            if a.contains([' ', '{', '}', '$']) {
                format!("'{a}'")
            } else {
                a.into_owned()
            }
        })
        .collect();
    format!("{program} {}", args.join(" "))
}

/// Runs a command with its output on the terminal; fails on a non-zero exit.
pub(crate) fn run(cmd: &mut Command) -> Result<()> {
    println!("    $ {}", show(cmd));
    let status = cmd
        .stdin(Stdio::null())
        .status()
        .with_context(|| format!("running {}", show(cmd)))?;
    if !status.success() {
        bail!("`{}` failed ({status})", show(cmd));
    }
    Ok(())
}

/// Runs a command quietly; its stdout when it succeeds, None otherwise.
fn output(cmd: &mut Command) -> Option<String> {
    let out = cmd
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// kubectl against one cluster, whatever context is current: Minikube's profile (`--context`)
/// or the cluster of `cargo xtask cluster` (its kubectl and kubeconfig).
pub(crate) struct Kube {
    program: PathBuf,
    global: Vec<String>,
    /// How a user types it, for messages: `kubectl --context minikube`.
    pub(crate) shown: String,
}

impl Kube {
    fn context(profile: &str) -> Kube {
        Kube {
            program: PathBuf::from("kubectl"),
            global: vec!["--context".into(), profile.into()],
            shown: format!("kubectl --context {profile}"),
        }
    }

    pub(crate) fn kubeconfig(kubectl: &Path, kubeconfig: &Path) -> Kube {
        Kube {
            program: kubectl.to_path_buf(),
            global: vec!["--kubeconfig".into(), kubeconfig.display().to_string()],
            shown: format!(
                "{} --kubeconfig {}",
                kubectl.display(),
                kubeconfig.display()
            ),
        }
    }

    pub(crate) fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(&self.program);
        c.args(&self.global).args(args);
        c
    }

    pub(crate) fn ns(&self, args: &[&str]) -> Command {
        let mut c = self.cmd(&["-n", NAMESPACE]);
        c.args(args);
        c
    }

    fn exists(&self, args: &[&str]) -> bool {
        output(&mut self.cmd(args)).is_some_and(|o| !o.is_empty())
    }
}

// --- steps --------------------------------------------------------------------------------

fn validate(paths: &Paths) -> Result<()> {
    let t = step("validating the manifests offline (deploy-check)");
    if find_program("go").is_none() && !deploy_check_cached(paths) {
        println!(
            "    skipped: Go is not installed (it fetches the API schemas once); `cargo test -p deploy-check` runs this check in CI"
        );
        return Ok(());
    }
    run(devstack::steps::cargo_command()
        .args(["run", "--quiet", "-p", "deploy-check", "--"])
        .arg(paths.root.join(OVERLAY))
        .current_dir(&paths.root))?;
    done(t);
    Ok(())
}

fn deploy_check_cached(paths: &Paths) -> bool {
    std::fs::read_dir(paths.cache.join("kube-schemas"))
        .map(|mut d| d.any(|e| e.is_ok_and(|e| e.path().extension().is_some_and(|x| x == "json"))))
        .unwrap_or(false)
}

fn ensure_cluster(opts: &Options, mk: &dyn Fn(&[&str]) -> Command, kube: &Kube) -> Result<()> {
    let t = step(&format!("Minikube profile {:?}", opts.profile));
    let status = output(&mut mk(&["status", "--format", "{{.Host}}/{{.APIServer}}"]));
    if status.as_deref() == Some("Running/Running") {
        println!("    already running");
    } else {
        run(&mut mk(&[
            "start",
            &format!("--kubernetes-version=v{KUBERNETES_VERSION}"),
            &format!("--cpus={}", opts.cpus),
            &format!("--memory={}", opts.memory),
        ]))
        .context("`minikube start` failed; see its message above (`minikube delete` resets a broken profile)")?;
    }
    // `dapr init -k` installs into the current context: make it this profile.
    run(&mut mk(&["update-context"]))?;
    if let Some(version) = output(&mut kube.cmd(&["version", "-o", "json"])) {
        let server = version
            .split("\"gitVersion\"")
            .nth(2)
            .and_then(|s| s.split('"').nth(1));
        if let Some(server) = server.filter(|s| !s.starts_with(&format!("v{KUBERNETES_VERSION}"))) {
            println!(
                "    note: the cluster runs Kubernetes {server}; the manifests are validated against \
                 v{KUBERNETES_VERSION} (they use only stable APIs, so this usually works)"
            );
        }
    }
    run(&mut mk(&["addons", "enable", "metrics-server"]))?;
    done(t);
    Ok(())
}

fn build_images(paths: &Paths, mk: &dyn Fn(&[&str]) -> Command) -> Result<()> {
    for service in SERVICES {
        let t = step(&format!(
            "building image todo-eda/{service}:{IMAGE_TAG} inside Minikube \
             (the first one compiles the workspace in release mode: minutes; the others reuse it)"
        ));
        run(&mut mk(&[
            "image",
            "build",
            "-t",
            &format!("todo-eda/{service}:{IMAGE_TAG}"),
            &format!("--build-opt=target={service}"),
            ".",
        ]))
        .with_context(|| {
            format!(
                "building the {service} image failed; the Dockerfile is at {}",
                paths.root.join("Dockerfile").display()
            )
        })?;
        done(t);
    }
    Ok(())
}

fn ensure_dapr(paths: &Paths, kube: &Kube) -> Result<()> {
    let t = step(&format!(
        "Dapr {} on the cluster",
        devstack::DAPR_RUNTIME_VERSION
    ));
    let installed = kube.exists(&["get", "crd", "components.dapr.io", "-o", "name"])
        && kube.exists(&[
            "-n",
            "dapr-system",
            "get",
            "deployment",
            "dapr-operator",
            "-o",
            "name",
        ]);
    if installed {
        let image = output(&mut kube.cmd(&[
            "-n",
            "dapr-system",
            "get",
            "deployment",
            "dapr-operator",
            "-o",
            "jsonpath={.spec.template.spec.containers[0].image}",
        ]))
        .unwrap_or_default();
        println!("    already installed ({image})");
        if !image.ends_with(&format!(":{}", devstack::DAPR_RUNTIME_VERSION)) {
            println!(
                "    note: the project is tested with Dapr {}; `dapr upgrade -k --runtime-version {}` aligns it",
                devstack::DAPR_RUNTIME_VERSION,
                devstack::DAPR_RUNTIME_VERSION
            );
        }
    } else {
        let cli = devstack::dapr_install::cli(paths).context(
            "the Dapr CLI is missing: `cargo xtask provision` builds it, or install it from \
             https://docs.dapr.io/getting-started/install-dapr-cli/",
        )?;
        run(Command::new(cli).args([
            "init",
            "-k",
            "--runtime-version",
            devstack::DAPR_RUNTIME_VERSION,
            "--wait",
            "--timeout",
            "600",
        ]))
        .context(
            "`dapr init -k` failed (it downloads Dapr's Helm chart and images: is the network up?)",
        )?;
    }
    run(&mut kube.cmd(&[
        "-n",
        "dapr-system",
        "wait",
        "--for=condition=Ready",
        "pod",
        "--all",
        "--timeout",
        TIMEOUT,
    ]))?;
    done(t);
    Ok(())
}

fn ensure_keda(kube: &Kube) -> Result<()> {
    let t = step(&format!(
        "KEDA {KEDA_VERSION} on the cluster (lag-based scaling of the workers)"
    ));
    if kube.exists(&["get", "crd", "scaledobjects.keda.sh", "-o", "name"]) {
        println!("    already installed");
    } else {
        let url = format!(
            "https://github.com/kedacore/keda/releases/download/v{KEDA_VERSION}/keda-{KEDA_VERSION}.yaml"
        );
        // Server-side: KEDA's CRDs are too large for the last-applied annotation.
        run(&mut kube.cmd(&["apply", "--server-side", "-f", &url]))?;
    }
    run(&mut kube.cmd(&[
        "-n",
        "keda",
        "wait",
        "--for=condition=Available",
        "deployment",
        "--all",
        "--timeout",
        TIMEOUT,
    ]))?;
    done(t);
    Ok(())
}

/// Applies `overlay` and waits for the system to run; `rebuilt`: the service images changed
/// under the same tag (the running pods are restarted onto them).
pub(crate) fn deploy(paths: &Paths, kube: &Kube, overlay: &str, rebuilt: bool) -> Result<()> {
    let t = step(&format!("applying {overlay}"));
    let had_services = kube.exists(&["-n", NAMESPACE, "get", "deployment", "-o", "name"]);
    // A finished Job never runs again: delete them so the topics are re-asserted and a new
    // image's migrations run.
    let mut delete = kube.ns(&["delete", "job", "--ignore-not-found"]);
    delete.args(JOBS);
    run(&mut delete)?;
    run(kube.cmd(&["apply", "-k"]).arg(paths.root.join(overlay)))?;
    done(t);

    let t = step("waiting for Kafka, Redis and PostgreSQL");
    for name in INFRA {
        run(&mut kube.ns(&[
            "rollout",
            "status",
            &format!("statefulset/{name}"),
            "--timeout",
            TIMEOUT,
        ]))?;
    }
    done(t);

    let t = step("waiting for the topics and the database migrations");
    let mut wait = kube.ns(&["wait", "--for=condition=complete", "--timeout", TIMEOUT]);
    wait.args(JOBS.map(|j| format!("job/{j}")));
    run(&mut wait).inspect_err(|_| {
        for job in JOBS {
            let _ = run(&mut kube.ns(&[
                "logs",
                &format!("job/{job}"),
                "--all-containers",
                "--tail=40",
            ]));
        }
    })?;
    done(t);

    if rebuilt && had_services {
        // Same tag, new image: only a restart makes the pods use it.
        let t = step("restarting the services on their new images");
        run(&mut kube.ns(&["rollout", "restart", "deployment"]))?;
        done(t);
    }
    let t = step("waiting for the services (each with its Dapr sidecar)");
    for service in SERVICES {
        run(&mut kube.ns(&[
            "rollout",
            "status",
            &format!("deployment/{service}"),
            "--timeout",
            TIMEOUT,
        ]))?;
    }
    run(&mut kube.ns(&["get", "pods", "-o", "wide"]))?;
    done(t);
    Ok(())
}

/// What a user needs to see when a step failed.
pub(crate) fn diagnose(kube: &Kube) {
    println!("\n==> diagnostics");
    let _ = run(&mut kube.ns(&["get", "pods", "-o", "wide"]));
    let _ = run(&mut kube.ns(&["get", "events", "--sort-by=.lastTimestamp"]));
    println!(
        "    more: {kubectl} -n {NAMESPACE} describe pod <pod>; \
         {kubectl} -n {NAMESPACE} logs deploy/<service> -c <service> (or -c daprd)",
        kubectl = kube.shown
    );
}

fn print_next_steps(profile: &str) {
    let ctx = format!("--context {profile}");
    println!(
        "
The system runs in namespace {NAMESPACE}:
  kubectl {ctx} -n {NAMESPACE} get pods,hpa,scaledobjects
  kubectl {ctx} -n {NAMESPACE} port-forward svc/chat-api 3000:3000      # the API on http://127.0.0.1:3000
  TOKEN=$(kubectl {ctx} -n {NAMESPACE} exec deploy/chat-api -c chat-api -- chat-api token alice)
  kubectl {ctx} -n {NAMESPACE} logs deploy/notifications -c notifications -f

Clean up:
  kubectl {ctx} delete namespace {NAMESPACE}   # the system, its data volumes included
  dapr uninstall -k   # Dapr (from the current context, which is {profile})
  kubectl {ctx} delete -f https://github.com/kedacore/keda/releases/download/v{KEDA_VERSION}/keda-{KEDA_VERSION}.yaml
  minikube -p {profile} delete   # or the whole cluster at once"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_parse() {
        let o =
            options(&["--no-build".into(), "--profile".into(), "todo".into()]).expect("options");
        assert!(!o.build && o.smoke && o.deploy);
        assert_eq!(o.profile, "todo");
        assert!(options(&["--bogus".into()]).is_err());
    }
}
