//! What the cluster changes on the machine, recorded before `up` and put back by `down`:
//! sysctls (the kubelet's and kube-proxy's, and the two the pod network needs), iptables
//! rules, the bridges, mounts, cgroups and the processes of the pods.

use std::{
    collections::BTreeMap,
    fs,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context as _, Result, bail};
use serde::{Deserialize, Serialize};

use super::config::{CONTAINERD_RUN, NODE_LINK, POD_BRIDGE};

/// Sysctls the node's processes set (the kubelet: overcommit, panic, keys; kube-proxy:
/// conntrack, route_localnet), the pod network needs (forwarding, bridged traffic
/// through iptables).
const SYSCTLS: [&str; 12] = [
    "net/ipv4/ip_forward",
    "net/bridge/bridge-nf-call-iptables",
    "net/bridge/bridge-nf-call-ip6tables",
    "vm/overcommit_memory",
    "kernel/panic",
    "kernel/panic_on_oops",
    "kernel/keys/root_maxkeys",
    "kernel/keys/root_maxbytes",
    "net/ipv4/conf/all/route_localnet",
    "net/netfilter/nf_conntrack_max",
    "net/netfilter/nf_conntrack_tcp_timeout_established",
    "net/netfilter/nf_conntrack_tcp_timeout_close_wait",
];

/// The machine as it was before `up`.
#[derive(Debug, Serialize, Deserialize)]
pub struct Before {
    pub sysctls: BTreeMap<String, String>,
    pub iptables: String,
    pub ip6tables: String,
}

fn sysctl_path(name: &str) -> PathBuf {
    Path::new("/proc/sys").join(name)
}

pub fn record() -> Result<Before> {
    let mut sysctls = BTreeMap::new();
    for name in SYSCTLS {
        if let Ok(value) = fs::read_to_string(sysctl_path(name)) {
            sysctls.insert(name.to_owned(), value.trim().to_owned());
        }
    }
    Ok(Before {
        sysctls,
        iptables: output("iptables-save", &[])?,
        ip6tables: output("ip6tables-save", &[]).unwrap_or_default(),
    })
}

/// Sets a sysctl, as `echo value > /proc/sys/...` would (an empty value, too, is written).
pub fn set_sysctl(name: &str, value: &str) -> Result<()> {
    fs::write(sysctl_path(name), format!("{value}\n"))
        .with_context(|| format!("setting {name} to {value}"))
}

/// Puts back what [`record`] saw; answers what could not be restored. The rules of both
/// address families are emptied first (each table flushed, its own chains deleted), so
/// what the node added goes even where the record is empty: `ip6tables-save` printed
/// nothing before `up` on a machine without IPv6 rules, and there was nothing to restore
/// over kube-proxy's and the kubelet's IPv6 chains.
pub fn restore(before: &Before) -> Vec<String> {
    let mut failed = Vec::new();
    for program in ["iptables", "ip6tables"] {
        for table in ["filter", "nat", "mangle", "raw"] {
            let _ = run(program, &["-t", table, "-F"]);
            let _ = run(program, &["-t", table, "-X"]);
        }
    }
    for (name, value) in &before.sysctls {
        let now = fs::read_to_string(sysctl_path(name)).unwrap_or_default();
        if now.trim() != value && set_sysctl(name, value).is_err() {
            failed.push(format!("sysctl {name} (was {value}, is {})", now.trim()));
        }
    }
    for (restore, saved) in [
        ("iptables-restore", &before.iptables),
        ("ip6tables-restore", &before.ip6tables),
    ] {
        if saved.is_empty() {
            continue;
        }
        if let Err(e) = input(restore, saved) {
            failed.push(format!("{restore}: {e:#}"));
        }
    }
    for (save, saved) in [
        ("iptables-save", &before.iptables),
        ("ip6tables-save", &before.ip6tables),
    ] {
        let now = output(save, &[]).unwrap_or_default();
        if kube_chains(&now) > kube_chains(saved) {
            failed.push(format!("{save}: KUBE-* chains the machine did not have"));
        }
    }
    failed
}

/// How many chains named `KUBE-*` an `iptables-save` text declares.
fn kube_chains(save: &str) -> usize {
    save.lines().filter(|l| l.starts_with(":KUBE-")).count()
}

/// Adds the bridge holding the node's address.
pub fn add_node_link(ip: &str) -> Result<()> {
    if !link_exists(NODE_LINK) {
        run("ip", &["link", "add", NODE_LINK, "type", "bridge"])?;
    }
    let addresses = output("ip", &["-o", "addr", "show", "dev", NODE_LINK])?;
    if !addresses.contains(&format!(" {ip}/")) {
        run(
            "ip",
            &["addr", "add", &format!("{ip}/32"), "dev", NODE_LINK],
        )?;
    }
    run("ip", &["link", "set", NODE_LINK, "up"])
}

pub fn link_exists(name: &str) -> bool {
    Path::new("/sys/class/net").join(name).exists()
}

/// Removes the cluster's bridges (the pods' veths went with their network namespaces).
pub fn remove_links() -> Vec<String> {
    let mut failed = Vec::new();
    for link in [POD_BRIDGE, NODE_LINK] {
        if link_exists(link)
            && let Err(e) = run("ip", &["link", "del", link])
        {
            failed.push(format!("{link}: {e:#}"));
        }
    }
    failed
}

/// Mount points under any of `roots`, deepest first.
pub fn mounts_under(roots: &[&Path]) -> Vec<PathBuf> {
    let text = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mut found: Vec<PathBuf> = text
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(|p| PathBuf::from(p.replace("\\040", " ")))
        .filter(|p| roots.iter().any(|r| p.starts_with(r)))
        .collect();
    found.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    found.dedup();
    found
}

/// Unmounts everything under `roots`; answers what stayed mounted.
pub fn unmount_under(roots: &[&Path]) -> Vec<String> {
    for _ in 0..3 {
        let mounts = mounts_under(roots);
        if mounts.is_empty() {
            return Vec::new();
        }
        for mount in mounts {
            let _ = nix::mount::umount2(&mount, nix::mount::MntFlags::MNT_DETACH);
        }
    }
    mounts_under(roots)
        .into_iter()
        .map(|m| format!("still mounted: {}", m.display()))
        .collect()
}

/// The network namespaces the CNI plugins made for pods (`/run/netns/cni-*`).
pub fn pod_netns() -> Vec<PathBuf> {
    fs::read_dir("/run/netns")
        .map(|entries| {
            entries
                .flatten()
                .map(|e| e.path())
                .filter(|p| {
                    p.file_name()
                        .and_then(|n| n.to_str())
                        .is_some_and(|n| n.starts_with("cni-"))
                })
                .collect()
        })
        .unwrap_or_default()
}

/// The processes of the pods and their shims: everything in a `kubepods` cgroup, and every
/// containerd shim serving the cluster's containerd.
pub fn pod_processes() -> Vec<u32> {
    let mut found = Vec::new();
    let Ok(entries) = fs::read_dir("/proc") else {
        return found;
    };
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        let cgroup = fs::read_to_string(entry.path().join("cgroup")).unwrap_or_default();
        let cmdline = fs::read(entry.path().join("cmdline")).unwrap_or_default();
        let cmdline = String::from_utf8_lossy(&cmdline);
        if cgroup.contains("/kubepods")
            || (cmdline.contains("containerd-shim") && cmdline.contains(CONTAINERD_RUN))
        {
            found.push(pid);
        }
    }
    found
}

/// The `kubepods` cgroups the kubelet made, deepest first, in every hierarchy.
pub fn pod_cgroups() -> Vec<PathBuf> {
    let mut found = Vec::new();
    let Ok(controllers) = fs::read_dir("/sys/fs/cgroup") else {
        return found;
    };
    for controller in controllers.flatten() {
        collect_dirs(&controller.path().join("kubepods"), &mut found);
        collect_dirs(&controller.path().join("kubepods.slice"), &mut found);
    }
    found.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    found
}

fn collect_dirs(dir: &Path, into: &mut Vec<PathBuf>) {
    if !dir.is_dir() {
        return;
    }
    into.push(dir.to_path_buf());
    if let Ok(entries) = fs::read_dir(dir) {
        for entry in entries.flatten() {
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                collect_dirs(&entry.path(), into);
            }
        }
    }
}

pub fn run(program: &str, args: &[&str]) -> Result<()> {
    let out = Command::new(program)
        .args(args)
        .output()
        .with_context(|| format!("running {program}"))?;
    if !out.status.success() {
        bail!(
            "`{program} {}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

pub fn output(program: &str, args: &[&str]) -> Result<String> {
    let out = Command::new(program)
        .args(args)
        .output()
        .with_context(|| format!("running {program}"))?;
    if !out.status.success() {
        bail!(
            "`{program} {}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn input(program: &str, text: &str) -> Result<()> {
    use std::io::Write as _;
    let mut child = Command::new(program)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .with_context(|| format!("running {program}"))?;
    child
        .stdin
        .take()
        .context("stdin")?
        .write_all(text.as_bytes())?;
    let out = child.wait_with_output()?;
    if !out.status.success() {
        bail!(
            "{program} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}
