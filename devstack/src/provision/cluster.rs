//! The parts of a single-node Kubernetes for `cargo xtask cluster`, from registries only:
//! containerd, runc, the CNI plugins, buildah and debootstrap from Debian; the Kubernetes
//! binaries, etcd and CoreDNS built from their official Go modules at pinned versions,
//! into `cache/k8s-<version>/bin`.

use super::*;
use crate::versions::{
    COREDNS_VERSION, ETCD_VERSION, HELM_VERSION, KEDA_VERSION, KUBERNETES_VERSION,
    METRICS_SERVER_VERSION,
};

/// The wrapper module the Kubernetes binaries are built in; see the comment at its top.
const KUBERNETES_GO_MOD: &str = include_str!("../../k8s/go.mod");

/// The Kubernetes programs built from `k8s.io/kubernetes/cmd/<name>`.
pub const KUBERNETES_BINARIES: [&str; 7] = [
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
    "kubelet",
    "kube-proxy",
    "kubectl",
    "kubeadm",
];

/// Debian packages of the node: the container runtime, its networking, and the image tools.
const NODE_PACKAGES: [(&str, &str); 8] = [
    ("containerd", "containerd"),
    ("runc", "runc"),
    ("/usr/lib/cni/bridge", "containernetworking-plugins"),
    ("buildah", "buildah"),
    ("debootstrap", "debootstrap"),
    ("iptables", "iptables"),
    ("conntrack", "conntrack"),
    ("/bin/busybox", "busybox-static"),
];

/// Where the cluster's binaries are: `cache/k8s-<version>/bin`.
pub fn cluster_bin(paths: &Paths) -> PathBuf {
    paths
        .cache
        .join(format!("k8s-{KUBERNETES_VERSION}"))
        .join("bin")
}

/// Every part of the node, each skipped when present at its pinned version.
pub fn cluster_parts(paths: &Paths) -> Result<PathBuf> {
    node_packages()?;
    let bin = cluster_bin(paths);
    kubernetes(paths, &bin)?;
    etcd(paths, &bin)?;
    coredns(paths, &bin)?;
    helm(paths, &bin)?;
    Ok(bin)
}

/// Dapr's control plane as `dapr init -k` runs it, built from the same module and release
/// as `daprd`: operator, sidecar injector, sentry, placement, scheduler (and the project's
/// `daprd`, [`super::daprd`]). Answers the directory holding them.
pub const DAPR_CONTROL_PLANE: [&str; 5] =
    ["operator", "injector", "sentry", "placement", "scheduler"];

pub fn dapr_control_plane(paths: &Paths) -> Result<PathBuf> {
    super::daprd(paths)?;
    let dir = paths
        .cache
        .join(format!("dapr-{DAPR_RUNTIME_VERSION}-control-plane"));
    let programs: Vec<(String, &str)> = DAPR_CONTROL_PLANE
        .iter()
        .map(|name| (format!("./cmd/{name}"), *name))
        .collect();
    module_programs(
        paths,
        &format!("Dapr {DAPR_RUNTIME_VERSION} control plane"),
        ("github.com/dapr/dapr", DAPR_RUNTIME_VERSION),
        &programs,
        &format!("-s -w -X github.com/dapr/dapr/pkg/buildinfo.version={DAPR_RUNTIME_VERSION}"),
        &dir,
    )?;
    Ok(dir)
}

/// KEDA's three programs (`keda` the operator, `keda-adapter` the metrics API server,
/// `keda-admission-webhooks`) from the kedacore/keda module; answers their directory and
/// the module's directory (its `config/` holds the manifests a release is made from).
pub fn keda(paths: &Paths) -> Result<(PathBuf, PathBuf)> {
    let dir = paths.cache.join(format!("keda-{KEDA_VERSION}"));
    module_programs(
        paths,
        &format!("KEDA {KEDA_VERSION}"),
        ("github.com/kedacore/keda/v2", KEDA_VERSION),
        &[
            ("./cmd/operator".into(), "keda"),
            ("./cmd/adapter".into(), "keda-adapter"),
            ("./cmd/webhooks".into(), "keda-admission-webhooks"),
        ],
        &format!("-s -w -X github.com/kedacore/keda/v2/version.Version={KEDA_VERSION}"),
        &dir,
    )?;
    let module = download_module(paths, "github.com/kedacore/keda/v2", KEDA_VERSION)?;
    Ok((dir, module))
}

/// metrics-server from its module; answers its directory and the module's (its
/// `charts/metrics-server` is the release's Helm chart).
pub fn metrics_server(paths: &Paths) -> Result<(PathBuf, PathBuf)> {
    let dir = paths
        .cache
        .join(format!("metrics-server-{METRICS_SERVER_VERSION}"));
    module_programs(
        paths,
        &format!("metrics-server {METRICS_SERVER_VERSION}"),
        ("sigs.k8s.io/metrics-server", METRICS_SERVER_VERSION),
        &[("./cmd/metrics-server".into(), "metrics-server")],
        &format!(
            "-s -w -X sigs.k8s.io/metrics-server/pkg/version.gitVersion=v{METRICS_SERVER_VERSION}"
        ),
        &dir,
    )?;
    let module = download_module(paths, "sigs.k8s.io/metrics-server", METRICS_SERVER_VERSION)?;
    Ok((dir, module))
}

/// Builds `programs` (package in the module, binary name) of `module` at `version` as the
/// main module (its own go.mod, replaces included) into `dir`; skipped when `dir` has them
/// from that version. The build log goes to the provisioning logs.
fn module_programs(
    paths: &Paths,
    title: &str,
    (module, version): (&str, &str),
    programs: &[(String, &str)],
    ldflags: &str,
    dir: &Path,
) -> Result<()> {
    step(title, || {
        let stamp = dir.join(".built");
        let built = || {
            fs::read_to_string(&stamp).ok().as_deref() == Some(version)
                && programs.iter().all(|(_, b)| dir.join(b).is_file())
        };
        if built() {
            return Ok(Outcome::Cached);
        }
        let _lock = lock(paths)?;
        let module_dir = download_module(paths, module, version)?;
        fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let short = module
            .rsplit('/')
            .find(|p| !p.starts_with('v'))
            .unwrap_or(module);
        for (package, binary) in programs {
            let log = paths
                .provision_logs()
                .join(format!("{short}-{binary}-build.log"));
            let mut build = go_command(&["build", "-trimpath", "-buildvcs=false"]);
            build
                .args(["-ldflags", ldflags, "-o"])
                .arg(dir.join(binary))
                .arg(package)
                .current_dir(&module_dir);
            run_logged(
                &mut build,
                &log,
                &format!("building {binary} ({module} v{version})"),
                &format!("the Go module proxy must serve every dependency of {module}"),
            )?;
        }
        fs::write(&stamp, version)?;
        Ok(Outcome::Done)
    })
}

/// The Dapr Helm chart of the release (`charts/dapr` in the dapr module), as `dapr init -k`
/// installs it.
pub fn dapr_chart(paths: &Paths) -> Result<PathBuf> {
    Ok(download_module(paths, "github.com/dapr/dapr", DAPR_RUNTIME_VERSION)?.join("charts/dapr"))
}

fn helm(paths: &Paths, bin: &Path) -> Result<()> {
    step(&format!("Helm {HELM_VERSION}"), || {
        let output = bin.join("helm");
        let built = || {
            installed_version(&output, &["version", "--short"], |out| {
                out.trim()
                    .strip_prefix('v')
                    .and_then(|v| v.split('+').next())
                    .map(str::to_owned)
            })
            .is_some_and(|v| v == HELM_VERSION)
        };
        if built() {
            return Ok(Outcome::Cached);
        }
        let _lock = lock(paths)?;
        let mut install = go_command(&[
            "install",
            "-trimpath",
            "-ldflags",
            &format!("-s -w -X helm.sh/helm/v3/internal/version.version=v{HELM_VERSION}"),
            &format!("helm.sh/helm/v3/cmd/helm@v{HELM_VERSION}"),
        ]);
        install.env("GOBIN", bin).current_dir(&paths.cache);
        run_logged(
            &mut install,
            &paths.provision_logs().join("helm-build.log"),
            "building Helm",
            "the Go module proxy must serve helm.sh/helm/v3",
        )?;
        if !built() {
            bail!("built Helm, but it does not report {HELM_VERSION}");
        }
        Ok(Outcome::Done)
    })
}

fn node_packages() -> Result<()> {
    apt_step(
        "node packages (containerd, runc, CNI plugins, buildah, debootstrap, iptables)",
        missing_node_packages,
    )
}

fn missing_node_packages() -> Vec<&'static str> {
    NODE_PACKAGES
        .iter()
        .filter(|(program, _)| {
            if program.starts_with('/') {
                !Path::new(program).exists()
            } else {
                which(program).is_none()
            }
        })
        .map(|(_, package)| *package)
        .collect()
}

/// `-X` flags that make the binaries report the release (without them `/version` says
/// v0.0.0).
fn kubernetes_ldflags() -> String {
    let (major, minor) = KUBERNETES_VERSION
        .split_once('.')
        .map(|(major, rest)| (major, rest.split('.').next().unwrap_or(rest)))
        .unwrap_or(("1", "0"));
    let mut flags = vec!["-s".to_owned(), "-w".to_owned()];
    for package in [
        "k8s.io/component-base/version",
        "k8s.io/client-go/pkg/version",
    ] {
        flags.push(format!("-X {package}.gitVersion=v{KUBERNETES_VERSION}"));
        flags.push(format!("-X {package}.gitMajor={major}"));
        flags.push(format!("-X {package}.gitMinor={minor}"));
        flags.push(format!("-X {package}.gitTreeState=clean"));
    }
    flags.join(" ")
}

fn kubernetes(paths: &Paths, bin: &Path) -> Result<()> {
    step(&format!("Kubernetes {KUBERNETES_VERSION} binaries"), || {
        let built = || {
            KUBERNETES_BINARIES.iter().all(|b| bin.join(b).is_file())
                && installed_version(&bin.join("kubectl"), &["version", "--client"], |out| {
                    out.lines()
                        .find_map(|l| l.strip_prefix("Client Version: v"))
                        .map(str::to_owned)
                })
                .is_some_and(|v| v == KUBERNETES_VERSION)
        };
        if built() {
            return Ok(Outcome::Cached);
        }
        let _lock = lock(paths)?;
        if built() {
            return Ok(Outcome::Cached);
        }
        let dir = wrapper_module(paths, "k8s", KUBERNETES_GO_MOD)?;
        fs::create_dir_all(bin).with_context(|| format!("creating {}", bin.display()))?;
        let mut build = go_command(&["build", "-trimpath", "-buildvcs=false", "-mod=mod"]);
        build
            .args(["-ldflags", &kubernetes_ldflags(), "-o"])
            .arg(format!("{}/", bin.display()));
        for name in KUBERNETES_BINARIES {
            build.arg(format!("k8s.io/kubernetes/cmd/{name}"));
        }
        build.current_dir(&dir);
        run_logged(
            &mut build,
            &paths.provision_logs().join("k8s-build.log"),
            "building the Kubernetes binaries",
            "the Go module proxy must serve k8s.io/kubernetes and its staging modules",
        )?;
        if !built() {
            bail!(
                "built the Kubernetes binaries, but kubectl does not report v{KUBERNETES_VERSION}"
            );
        }
        Ok(Outcome::Done)
    })
}

fn etcd(paths: &Paths, bin: &Path) -> Result<()> {
    step(&format!("etcd {ETCD_VERSION}"), || {
        let output = bin.join("etcd");
        let built = || {
            installed_version(&output, &["--version"], |out| {
                out.lines()
                    .find_map(|l| l.strip_prefix("etcd Version: "))
                    .map(str::to_owned)
            })
            .is_some_and(|v| v == ETCD_VERSION)
        };
        if built() {
            return Ok(Outcome::Cached);
        }
        let _lock = lock(paths)?;
        let go_mod = format!(
            "// etcd for `cargo xtask cluster`, pinned.\nmodule todo-eda/etcd-build\n\ngo 1.24\n\nrequire go.etcd.io/etcd/server/v3 v{ETCD_VERSION}\n"
        );
        let dir = wrapper_module(paths, "etcd", &go_mod)?;
        fs::create_dir_all(bin).with_context(|| format!("creating {}", bin.display()))?;
        let mut build = go_command(&["build", "-trimpath", "-buildvcs=false", "-mod=mod"]);
        build
            .args(["-ldflags", "-s -w", "-o"])
            .arg(&output)
            .arg("go.etcd.io/etcd/server/v3")
            .current_dir(&dir);
        run_logged(
            &mut build,
            &paths.provision_logs().join("etcd-build.log"),
            "building etcd",
            "the Go module proxy must serve go.etcd.io/etcd/server/v3",
        )?;
        if !built() {
            bail!("built etcd, but it does not report {ETCD_VERSION}");
        }
        Ok(Outcome::Done)
    })
}

fn coredns(paths: &Paths, bin: &Path) -> Result<()> {
    step(&format!("CoreDNS {COREDNS_VERSION}"), || {
        let output = bin.join("coredns");
        let built = || {
            installed_version(&output, &["-version"], |out| {
                out.lines()
                    .find_map(|l| l.strip_prefix("CoreDNS-"))
                    .map(str::to_owned)
            })
            .is_some_and(|v| v == COREDNS_VERSION)
        };
        if built() {
            return Ok(Outcome::Cached);
        }
        let _lock = lock(paths)?;
        fs::create_dir_all(bin).with_context(|| format!("creating {}", bin.display()))?;
        let mut install = go_command(&[
            "install",
            "-trimpath",
            "-ldflags",
            "-s -w",
            &format!("github.com/coredns/coredns@v{COREDNS_VERSION}"),
        ]);
        install.env("GOBIN", bin).current_dir(&paths.cache);
        run_logged(
            &mut install,
            &paths.provision_logs().join("coredns-build.log"),
            "building CoreDNS",
            "the Go module proxy must serve github.com/coredns/coredns",
        )?;
        if !built() {
            bail!("built CoreDNS, but it does not report {COREDNS_VERSION}");
        }
        Ok(Outcome::Done)
    })
}

/// A directory in the cache holding `go_mod` as its `go.mod` (and the `go.sum` a previous
/// build left), to build required modules' programs in.
fn wrapper_module(paths: &Paths, name: &str, go_mod: &str) -> Result<PathBuf> {
    let dir = paths.cache.join("build").join(format!("{name}-wrapper"));
    fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let file = dir.join("go.mod");
    if fs::read_to_string(&file).ok().as_deref() != Some(go_mod) {
        fs::write(&file, go_mod).with_context(|| format!("writing {}", file.display()))?;
    }
    Ok(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_binaries_report_the_pinned_release() {
        let flags = kubernetes_ldflags();
        assert!(flags.contains(&format!(
            "-X k8s.io/component-base/version.gitVersion=v{KUBERNETES_VERSION}"
        )));
        assert!(flags.contains("-X k8s.io/client-go/pkg/version.gitMinor=34"));
    }

    #[test]
    fn the_wrapper_module_pins_every_staging_module_to_the_release() {
        assert!(
            KUBERNETES_GO_MOD.contains(&format!("require k8s.io/kubernetes v{KUBERNETES_VERSION}"))
        );
        let minor = KUBERNETES_VERSION.trim_start_matches("1.");
        let replaces = KUBERNETES_GO_MOD
            .lines()
            .filter(|l| l.contains(" => "))
            .collect::<Vec<_>>();
        assert_eq!(
            replaces.len(),
            31,
            "k8s.io/kubernetes has 31 staging modules"
        );
        assert!(
            replaces
                .iter()
                .all(|l| l.trim_end().ends_with(&format!("v0.{minor}"))),
            "{replaces:?}"
        );
    }
}
