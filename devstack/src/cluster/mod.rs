//! A real single-node Kubernetes on this machine, from registries only
//! (`cargo xtask cluster up | status | down`): etcd, the control plane, the kubelet and
//! kube-proxy as processes of the machine, containerd with runc and the bridge CNI plugin
//! for the pods, CoreDNS as a pod. Everything lives under `.data/cluster` (and containerd's
//! sockets under `/run/todo-eda`); `down` stops every process by PID and puts back what the
//! cluster changed on the machine ([`host`]).
//!
//! Nothing listens on the machine's external interface: etcd, the controllers' and the
//! kubelet's health ports and containerd's stream server on loopback; the API server, the
//! kubelet's API and NodePorts on [`config::NODE_IP`], an address on a bridge of the
//! cluster's own.

mod addons;
pub mod config;
mod dapr;
mod dockerfile;
mod host;
mod images;
pub mod system;

use std::{
    fs,
    os::unix::process::CommandExt as _,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail, ensure};
use nix::{
    sys::signal::{Signal, kill},
    unistd::Pid,
};

use crate::steps::timed;
use crate::{
    Paths, listeners_of,
    process::{kill_stale, pidfile_process},
    provision,
};
use config::{API_PORT, CONTAINERD_RUN, NODE_IP, NODE_NAME, PAUSE_IMAGE};

/// The node's processes, in start order (stopped in reverse).
const PROCESSES: [&str; 7] = [
    "etcd",
    "containerd",
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
    "kubelet",
    "kube-proxy",
];

/// The CoreDNS image, made locally from the binary built in the cache.
const COREDNS_IMAGE: &str = "localhost/todo-eda/coredns:1";

/// Where the cluster keeps its state, and the binaries it runs.
pub struct Cluster {
    pub state: PathBuf,
    pub bin: PathBuf,
    /// buildah's image store (kept across `down`: images are a cache).
    store: PathBuf,
}

impl Cluster {
    pub fn new(paths: &Paths) -> Self {
        let bin = provision::cluster_bin(paths);
        Self {
            state: paths.data.join("cluster"),
            store: bin
                .parent()
                .map_or_else(|| bin.clone(), Path::to_path_buf)
                .join("images"),
            bin,
        }
    }

    /// The admin kubeconfig (`KUBECONFIG` for kubectl and helm).
    pub fn kubeconfig(&self) -> PathBuf {
        self.state.join("kubeconfig/admin.conf")
    }

    pub fn kubectl(&self, args: &[&str]) -> Result<String> {
        let kubectl = self.bin.join("kubectl");
        let kubeconfig = self.kubeconfig();
        let mut all = vec![
            "--kubeconfig",
            kubeconfig.to_str().context("kubeconfig path")?,
        ];
        all.extend_from_slice(args);
        host::output(kubectl.to_str().context("kubectl path")?, &all)
    }

    /// helm against the cluster.
    pub fn helm(&self, args: &[&str]) -> Result<String> {
        let helm = self.bin.join("helm");
        let kubeconfig = self.kubeconfig();
        let mut all = vec![
            "--kubeconfig",
            kubeconfig.to_str().context("kubeconfig path")?,
        ];
        all.extend_from_slice(args);
        host::output(helm.to_str().context("helm path")?, &all)
    }

    /// Makes image `name` from `from` by `steps` when its inputs changed ([`images::build`],
    /// answering whether it did) and imports it into the node's containerd when that lacks
    /// it ([`images::load`]).
    fn make_image(&self, name: &str, from: &str, steps: &[images::Step]) -> Result<bool> {
        let made = images::build(&self.store, name, from, steps, &self.image_log())?;
        images::load(
            &self.store,
            name,
            Path::new("/usr/bin/ctr"),
            &self.loaded_images(),
        )?;
        Ok(made)
    }

    /// [`Cluster::make_image`] of one static program at `at`, as distroless images are
    /// ([`images::distroless_steps`]).
    fn make_distroless_image(&self, name: &str, binary: &Path, at: &str) -> Result<()> {
        let etc = images::distroless_etc(&self.store)?;
        self.make_image(name, "scratch", &images::distroless_steps(binary, at, &etc))
            .map(drop)
    }

    /// Which images the node's containerd has (see [`images::load`]).
    fn loaded_images(&self) -> PathBuf {
        self.state.join("loaded-images")
    }

    fn pidfile(&self, name: &str) -> PathBuf {
        self.state.join("pids").join(format!("{name}.pid"))
    }

    fn log(&self, name: &str) -> PathBuf {
        self.state.join("logs").join(format!("{name}.log"))
    }

    /// The PID of `name` if it runs (and is the process this cluster started: every one of
    /// them names the state directory on its command line).
    fn running(&self, name: &str) -> Option<u32> {
        pidfile_process(&self.pidfile(name), name, &self.state)
    }

    /// Stops `name` (its stop signal, then SIGKILL) and removes its pidfile; answers what
    /// is left if it does not die.
    fn stop(&self, name: &str) -> Option<String> {
        kill_stale(&self.pidfile(name), name, &self.state, Signal::SIGTERM)
            .err()
            .map(|e| format!("{e:#}"))
    }

    /// Starts `program` from the cluster's binaries (or the machine's) in a process group of
    /// its own, so it outlives this command; its output goes to its log.
    fn spawn(&self, name: &str, program: &Path, args: &[String]) -> Result<u32> {
        fs::create_dir_all(self.state.join("pids"))?;
        fs::create_dir_all(self.state.join("logs"))?;
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log(name))
            .with_context(|| format!("opening {}", self.log(name).display()))?;
        let child = Command::new(program)
            .args(args)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .process_group(0)
            .spawn()
            .with_context(|| format!("starting {name} ({})", program.display()))?;
        fs::write(self.pidfile(name), format!("{}\n", child.id()))?;
        Ok(child.id())
    }

    fn wait_for(
        &self,
        what: &str,
        within: Duration,
        mut ready: impl FnMut() -> bool,
    ) -> Result<()> {
        let started = Instant::now();
        while !ready() {
            if started.elapsed() > within {
                bail!("{what} not within {within:?}");
            }
            std::thread::sleep(Duration::from_millis(250));
        }
        Ok(())
    }

    /// Brings the node up; what runs already (a node up, or half up after a failure) is
    /// kept, and the rest started.
    pub fn up(&self, paths: &Paths) -> Result<()> {
        ensure!(
            nix::unistd::geteuid().is_root(),
            "the cluster runs as root (it starts containerd and the kubelet)"
        );
        provision::cluster_parts(paths)?;
        fs::create_dir_all(&self.state)?;
        let before = self.state.join("host-before.json");
        if !before.exists() {
            // Kept from a run that crashed: that is the machine as it was.
            fs::write(&before, serde_json::to_vec_pretty(&host::record()?)?)?;
        }
        timed("the node's network (bridge, forwarding)", || {
            host::add_node_link(NODE_IP)?;
            host::set_sysctl("net/ipv4/ip_forward", "1")?;
            host::set_sysctl("net/bridge/bridge-nf-call-iptables", "1")
        })?;
        self.write_configs()?;
        timed("certificates and kubeconfigs (kubeadm phases)", || {
            self.pki()
        })?;
        timed("etcd", || self.start_etcd())?;
        timed("containerd", || self.start_containerd())?;
        timed("images made here (pause, CoreDNS)", || self.images())?;
        timed("control plane", || self.start_control_plane())?;
        timed("kubelet and kube-proxy; the node Ready", || {
            self.start_node()
        })?;
        timed("CoreDNS", || self.dns())?;
        self.install_dapr(paths)?;
        timed("a sidecar injected beside a pod", || self.check_injection())?;
        self.install_metrics_server(paths)?;
        self.install_keda(paths)?;
        self.check_listeners()?;
        println!(
            "The cluster is up: KUBECONFIG={} {}/kubectl get pods -A",
            self.kubeconfig().display(),
            self.bin.display()
        );
        Ok(())
    }

    fn write_configs(&self) -> Result<()> {
        let s = &self.state;
        for dir in [
            "cni/net.d",
            "cni/ipam",
            "kubelet",
            "etcd",
            "containerd",
            "kubeconfig",
        ] {
            fs::create_dir_all(s.join(dir))?;
        }
        for (file, text) in [
            ("kubeadm.yaml", config::kubeadm(s)),
            ("containerd.toml", config::containerd(s)),
            ("cni/net.d/10-todo-eda.conflist", config::cni(s)),
            ("kubelet.yaml", config::kubelet(s)),
            ("kube-proxy.yaml", config::kube_proxy(s)),
        ] {
            // Unchanged files are left alone: kube-proxy exits when its file changes.
            if fs::read_to_string(s.join(file)).ok().as_deref() != Some(text.as_str()) {
                fs::write(s.join(file), text).with_context(|| format!("writing {file}"))?;
            }
        }
        Ok(())
    }

    fn pki(&self) -> Result<()> {
        if self.state.join("pki/ca.crt").exists() && self.kubeconfig().exists() {
            return Ok(());
        }
        let kubeadm = self.bin.join("kubeadm");
        let config = self.state.join("kubeadm.yaml");
        let config = config.to_str().context("path")?;
        let kubeconfigs = self.state.join("kubeconfig");
        let kubeconfigs = kubeconfigs.to_str().context("path")?;
        let kubeadm = kubeadm.to_str().context("path")?;
        host::run(
            kubeadm,
            &["init", "phase", "certs", "all", "--config", config],
        )?;
        host::run(
            kubeadm,
            &[
                "init",
                "phase",
                "kubeconfig",
                "all",
                "--config",
                config,
                "--kubeconfig-dir",
                kubeconfigs,
            ],
        )
    }

    fn start_etcd(&self) -> Result<()> {
        if self.running("etcd").is_none() {
            let data = self.state.join("etcd");
            let args: Vec<String> = [
                "--name=todo-eda",
                &format!("--data-dir={}", data.display()),
                "--listen-client-urls=http://127.0.0.1:2379",
                "--advertise-client-urls=http://127.0.0.1:2379",
                "--listen-peer-urls=http://127.0.0.1:2380",
                "--initial-advertise-peer-urls=http://127.0.0.1:2380",
                "--initial-cluster=todo-eda=http://127.0.0.1:2380",
                "--listen-metrics-urls=http://127.0.0.1:2381",
            ]
            .iter()
            .map(|s| (*s).to_owned())
            .collect();
            self.spawn("etcd", &self.bin.join("etcd"), &args)?;
        }
        self.wait_for("etcd answering", Duration::from_secs(30), || {
            std::net::TcpStream::connect(("127.0.0.1", 2379)).is_ok()
        })
    }

    fn start_containerd(&self) -> Result<()> {
        if self.running("containerd").is_none() {
            fs::create_dir_all(CONTAINERD_RUN)?;
            let config = self.state.join("containerd.toml");
            self.spawn(
                "containerd",
                Path::new("/usr/bin/containerd"),
                &["--config".to_owned(), config.display().to_string()],
            )?;
        }
        self.wait_for("containerd's socket", Duration::from_secs(30), || {
            Path::new(&config::containerd_socket()).exists()
        })
    }

    /// The log of the images' builds (`RUN` output, debootstrap).
    fn image_log(&self) -> PathBuf {
        self.log("images")
    }

    fn images(&self) -> Result<()> {
        use images::Step;
        fs::create_dir_all(self.state.join("logs"))?;
        self.make_image(
            PAUSE_IMAGE,
            "scratch",
            &[
                Step::Copy("/bin/busybox".into(), "/bin/busybox".into()),
                Step::Entrypoint(
                    r#"["/bin/busybox", "sh", "-c", "trap 'exit 0' TERM INT; while :; do sleep 3600 & wait; done"]"#
                        .into(),
                ),
            ],
        )?;
        self.make_image(
            COREDNS_IMAGE,
            "scratch",
            // As root: port 53 needs it (the upstream deployment grants NET_BIND_SERVICE).
            &[
                Step::Copy(self.bin.join("coredns"), "/coredns".into()),
                Step::Entrypoint(r#"["/coredns"]"#.into()),
            ],
        )
        .map(drop)
    }

    fn start_control_plane(&self) -> Result<()> {
        let pki = |f: &str| self.state.join("pki").join(f).display().to_string();
        let kc = |f: &str| self.state.join("kubeconfig").join(f).display().to_string();
        if self.running("kube-apiserver").is_none() {
            let args = vec![
                format!("--advertise-address={NODE_IP}"),
                format!("--bind-address={NODE_IP}"),
                format!("--secure-port={API_PORT}"),
                "--etcd-servers=http://127.0.0.1:2379".to_owned(),
                format!("--service-cluster-ip-range={}", config::SERVICE_SUBNET),
                format!("--client-ca-file={}", pki("ca.crt")),
                format!("--tls-cert-file={}", pki("apiserver.crt")),
                format!("--tls-private-key-file={}", pki("apiserver.key")),
                format!(
                    "--kubelet-client-certificate={}",
                    pki("apiserver-kubelet-client.crt")
                ),
                format!(
                    "--kubelet-client-key={}",
                    pki("apiserver-kubelet-client.key")
                ),
                "--kubelet-preferred-address-types=InternalIP".to_owned(),
                "--service-account-issuer=https://kubernetes.default.svc.cluster.local".to_owned(),
                format!("--service-account-key-file={}", pki("sa.pub")),
                format!("--service-account-signing-key-file={}", pki("sa.key")),
                "--authorization-mode=Node,RBAC".to_owned(),
                "--enable-admission-plugins=NodeRestriction".to_owned(),
                "--allow-privileged=true".to_owned(),
                format!("--proxy-client-cert-file={}", pki("front-proxy-client.crt")),
                format!("--proxy-client-key-file={}", pki("front-proxy-client.key")),
                format!(
                    "--requestheader-client-ca-file={}",
                    pki("front-proxy-ca.crt")
                ),
                "--requestheader-allowed-names=front-proxy-client".to_owned(),
                "--requestheader-extra-headers-prefix=X-Remote-Extra-".to_owned(),
                "--requestheader-group-headers=X-Remote-Group".to_owned(),
                "--requestheader-username-headers=X-Remote-User".to_owned(),
                "--enable-aggregator-routing=true".to_owned(),
            ];
            self.spawn("kube-apiserver", &self.bin.join("kube-apiserver"), &args)?;
        }
        self.wait_for("the API server ready", Duration::from_secs(120), || {
            self.kubectl(&["get", "--raw", "/readyz"]).is_ok()
        })?;
        // What `kubeadm init` does after its phases: admin.conf's group gets cluster-admin
        // (only super-admin.conf, whose group bypasses authorization, can grant it).
        let kubectl = self.bin.join("kubectl");
        let super_admin = self.state.join("kubeconfig/super-admin.conf");
        let binding = host::output(
            kubectl.to_str().context("path")?,
            &[
                "--kubeconfig",
                super_admin.to_str().context("path")?,
                "create",
                "clusterrolebinding",
                "kubeadm:cluster-admins",
                "--clusterrole=cluster-admin",
                "--group=kubeadm:cluster-admins",
            ],
        );
        if let Err(e) = binding
            && !format!("{e:#}").contains("already exists")
        {
            return Err(e);
        }
        if self.running("kube-controller-manager").is_none() {
            let conf = kc("controller-manager.conf");
            let args = vec![
                format!("--kubeconfig={conf}"),
                format!("--authentication-kubeconfig={conf}"),
                format!("--authorization-kubeconfig={conf}"),
                "--bind-address=127.0.0.1".to_owned(),
                format!("--cluster-signing-cert-file={}", pki("ca.crt")),
                format!("--cluster-signing-key-file={}", pki("ca.key")),
                format!("--root-ca-file={}", pki("ca.crt")),
                format!("--service-account-private-key-file={}", pki("sa.key")),
                format!(
                    "--requestheader-client-ca-file={}",
                    pki("front-proxy-ca.crt")
                ),
                "--use-service-account-credentials=true".to_owned(),
                format!("--service-cluster-ip-range={}", config::SERVICE_SUBNET),
                "--cluster-name=todo-eda".to_owned(),
                "--leader-elect=false".to_owned(),
            ];
            self.spawn(
                "kube-controller-manager",
                &self.bin.join("kube-controller-manager"),
                &args,
            )?;
        }
        if self.running("kube-scheduler").is_none() {
            let conf = kc("scheduler.conf");
            let args = vec![
                format!("--kubeconfig={conf}"),
                format!("--authentication-kubeconfig={conf}"),
                format!("--authorization-kubeconfig={conf}"),
                "--bind-address=127.0.0.1".to_owned(),
                "--leader-elect=false".to_owned(),
            ];
            self.spawn("kube-scheduler", &self.bin.join("kube-scheduler"), &args)?;
        }
        Ok(())
    }

    fn start_node(&self) -> Result<()> {
        if self.running("kubelet").is_none() {
            let args = vec![
                format!("--config={}", self.state.join("kubelet.yaml").display()),
                format!(
                    "--kubeconfig={}",
                    self.state.join("kubeconfig/kubelet.conf").display()
                ),
                format!("--root-dir={}", self.state.join("kubelet").display()),
                format!("--cert-dir={}", self.state.join("kubelet/pki").display()),
                format!("--hostname-override={NODE_NAME}"),
                format!("--node-ip={NODE_IP}"),
            ];
            self.spawn("kubelet", &self.bin.join("kubelet"), &args)?;
        }
        if self.running("kube-proxy").is_none() {
            // -v=2: each sync of the rules, and the endpoints it saw, are in its log (read
            // when a Service stops answering after its pod was replaced).
            let args = vec![
                format!("--config={}", self.state.join("kube-proxy.yaml").display()),
                "--v=2".to_owned(),
            ];
            self.spawn("kube-proxy", &self.bin.join("kube-proxy"), &args)?;
        }
        self.wait_for("the node Ready", Duration::from_secs(180), || {
            self.kubectl(&[
                "get",
                "node",
                NODE_NAME,
                "-o",
                "jsonpath={.status.conditions[?(@.type==\"Ready\")].status}",
            ])
            .is_ok_and(|s| s.trim() == "True")
        })
    }

    fn dns(&self) -> Result<()> {
        let manifest = self.state.join("coredns.yaml");
        fs::write(&manifest, config::coredns_manifest(COREDNS_IMAGE))?;
        self.kubectl(&["apply", "-f", manifest.to_str().context("path")?])?;
        self.kubectl(&[
            "-n",
            "kube-system",
            "rollout",
            "status",
            "deployment/coredns",
            "--timeout=180s",
        ])
        .map(drop)
    }

    /// PIDs of the node's processes that run.
    pub fn pids(&self) -> Vec<u32> {
        PROCESSES.iter().filter_map(|p| self.running(p)).collect()
    }

    /// Fails when any of the node's processes listens beyond loopback and the cluster's own
    /// addresses.
    pub fn check_listeners(&self) -> Result<()> {
        let pids = self.pids().into_iter().collect();
        let exposed: Vec<String> = listeners_of(&pids)?
            .into_iter()
            .filter(|l| !l.on_loopback() && !l.local.starts_with(&format!("{NODE_IP}:")))
            .map(|l| format!("{} {} ({} PID {})", l.protocol, l.local, l.process, l.pid))
            .collect();
        ensure!(
            exposed.is_empty(),
            "the cluster listens beyond loopback and {NODE_IP}: {exposed:?}"
        );
        Ok(())
    }

    /// Stops every process by PID and puts the machine back as `up` found it; fails naming
    /// whatever is left.
    pub fn down(&self) -> Result<()> {
        let mut left = Vec::new();
        for name in PROCESSES
            .iter()
            .rev()
            .filter(|n| **n != "containerd" && **n != "etcd")
        {
            left.extend(self.stop(name));
        }
        // The pods' processes and their shims, now that the kubelet cannot restart them.
        for pid in host::pod_processes() {
            if let Ok(pid) = i32::try_from(pid) {
                let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
            }
        }
        let started = Instant::now();
        while !host::pod_processes().is_empty() && started.elapsed() < Duration::from_secs(10) {
            std::thread::sleep(Duration::from_millis(100));
        }
        for name in ["containerd", "etcd"] {
            left.extend(self.stop(name));
        }
        for pid in host::pod_processes() {
            left.push(format!("a pod's process {pid} survived SIGKILL"));
        }
        let netns = host::pod_netns();
        let run = Path::new("/run/todo-eda");
        let mut roots: Vec<&Path> = vec![&self.state, run];
        roots.extend(netns.iter().map(PathBuf::as_path));
        left.extend(host::unmount_under(&roots));
        for ns in &netns {
            let _ = fs::remove_file(ns);
        }
        for cgroup in host::pod_cgroups() {
            if fs::remove_dir(&cgroup).is_err() {
                left.push(format!("cgroup {}", cgroup.display()));
            }
        }
        left.extend(host::remove_links());
        let before_file = self.state.join("host-before.json");
        if let Ok(text) = fs::read(&before_file) {
            let before: host::Before = serde_json::from_slice(&text)?;
            left.extend(host::restore(&before));
        }
        if left.iter().all(|l| !l.starts_with("still mounted")) {
            let _ = fs::remove_dir_all(run);
            // Everything but the logs: the next `up` starts from a fresh cluster.
            if let Ok(entries) = fs::read_dir(&self.state) {
                for entry in entries.flatten() {
                    if entry.file_name() != "logs" {
                        let path = entry.path();
                        let _ = if path.is_dir() {
                            fs::remove_dir_all(&path)
                        } else {
                            fs::remove_file(&path)
                        };
                    }
                }
            }
        }
        for name in PROCESSES {
            if let Some(pid) = self.running(name) {
                left.push(format!("{name} (PID {pid}) still runs"));
            }
        }
        ensure!(left.is_empty(), "`cluster down` left behind: {left:#?}");
        println!("The cluster is down; the machine is as `up` found it.");
        Ok(())
    }
}
