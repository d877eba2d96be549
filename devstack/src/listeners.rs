//! Which sockets a set of processes listens on, as `ss` reports them: to check that
//! nothing the project starts is reachable from outside the machine.

use std::{collections::BTreeSet, fs, process::Command};

use anyhow::{Context as _, Result, ensure};

/// One listening socket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listener {
    /// `tcp` or `udp`.
    pub protocol: String,
    /// As `ss` prints it: `127.0.0.1:3500`, `[::1]:5432`, `*:9090`, `0.0.0.0:50001`.
    pub local: String,
    pub pid: u32,
    pub process: String,
}

impl Listener {
    /// Reachable only from this machine.
    pub fn on_loopback(&self) -> bool {
        let host = self
            .local
            .rsplit_once(':')
            .map_or(self.local.as_str(), |(h, _)| h);
        let host = host.split('%').next().unwrap_or(host);
        host.starts_with("127.") || host == "[::1]" || host.starts_with("[::ffff:127.")
    }
}

/// `pid` and every process below it.
pub fn with_descendants(pid: u32) -> BTreeSet<u32> {
    let mut parents: Vec<(u32, u32)> = Vec::new();
    if let Ok(entries) = fs::read_dir("/proc") {
        for entry in entries.flatten() {
            let Some(child) = entry
                .file_name()
                .to_str()
                .and_then(|n| n.parse::<u32>().ok())
            else {
                continue;
            };
            let Ok(stat) = fs::read_to_string(entry.path().join("stat")) else {
                continue;
            };
            // "pid (comm) state ppid ...": comm may hold spaces and parentheses.
            let ppid = stat
                .rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().nth(1))
                .and_then(|p| p.parse::<u32>().ok());
            if let Some(ppid) = ppid {
                parents.push((child, ppid));
            }
        }
    }
    let mut found = BTreeSet::from([pid]);
    loop {
        let before = found.len();
        for &(child, parent) in &parents {
            if found.contains(&parent) {
                found.insert(child);
            }
        }
        if found.len() == before {
            return found;
        }
    }
}

/// Every TCP and UDP socket the processes `pids` listen on (`ss -ltunpH`).
pub fn listeners_of(pids: &BTreeSet<u32>) -> Result<Vec<Listener>> {
    let out = Command::new("ss")
        .args(["-ltunpH"])
        .output()
        .context("running ss (Debian package iproute2)")?;
    ensure!(
        out.status.success(),
        "ss failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let mut found = Vec::new();
    for line in text.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        // netid state recv-q send-q local peer users:(("name",pid=1,fd=3),...)
        let (Some(protocol), Some(local), Some(users)) =
            (fields.first(), fields.get(4), fields.get(6))
        else {
            continue;
        };
        for user in users.split("),(") {
            let name = user.split('"').nth(1).unwrap_or_default();
            let pid = user
                .split("pid=")
                .nth(1)
                .and_then(|p| p.split(|c: char| !c.is_ascii_digit()).next())
                .and_then(|p| p.parse::<u32>().ok());
            if let Some(pid) = pid.filter(|p| pids.contains(p)) {
                found.push(Listener {
                    protocol: (*protocol).to_owned(),
                    local: (*local).to_owned(),
                    pid,
                    process: name.to_owned(),
                });
            }
        }
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(local: &str) -> Listener {
        Listener {
            protocol: "tcp".into(),
            local: local.into(),
            pid: 1,
            process: "daprd".into(),
        }
    }

    #[test]
    fn only_loopback_addresses_count_as_loopback() {
        for local in [
            "127.0.0.1:3500",
            "[::1]:5432",
            "[::ffff:127.0.0.1]:9092",
            "127.0.0.53%lo:53",
        ] {
            assert!(at(local).on_loopback(), "{local}");
        }
        for local in ["*:9090", "0.0.0.0:50001", "[::]:41234", "10.0.2.15:3000"] {
            assert!(!at(local).on_loopback(), "{local}");
        }
    }

    #[test]
    fn this_test_process_and_what_it_listens_on_are_found() {
        let socket = std::net::TcpListener::bind(("127.0.0.1", 0)).expect("bind");
        let port = socket.local_addr().expect("addr").port();
        let me = with_descendants(std::process::id());
        let found = listeners_of(&me).expect("ss");
        assert!(
            found.iter().any(|l| l.local == format!("127.0.0.1:{port}")),
            "{found:?}"
        );
    }
}
