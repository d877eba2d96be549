//! The machine and the versions of every part, for the report.

use super::*;

pub(super) struct Machine {
    pub(super) cpus: usize,
    pub(super) model: String,
    pub(super) memory_gib: f64,
    pub(super) kernel: String,
    pub(super) load_at_start: String,
}

impl Machine {
    pub(super) fn read() -> Machine {
        let cpuinfo = fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let model = cpuinfo
            .lines()
            .find(|l| l.starts_with("model name"))
            .and_then(|l| l.split_once(':'))
            .map_or_else(|| "unknown".to_owned(), |(_, v)| v.trim().to_owned());
        let meminfo = fs::read_to_string("/proc/meminfo").unwrap_or_default();
        let mem_kb: f64 = meminfo
            .lines()
            .find(|l| l.starts_with("MemTotal:"))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0);
        Machine {
            cpus: std::thread::available_parallelism().map_or(0, |n| n.get()),
            model,
            memory_gib: mem_kb / 1024.0 / 1024.0,
            kernel: fs::read_to_string("/proc/sys/kernel/osrelease")
                .unwrap_or_default()
                .trim()
                .to_owned(),
            load_at_start: read_loadavg(),
        }
    }
}

pub(super) fn read_loadavg() -> String {
    fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

pub(super) struct Versions {
    pub(super) dapr: String,
    pub(super) postgres: String,
    pub(super) redis: String,
    pub(super) rustc: String,
    pub(super) java: String,
    pub(super) release_profile: String,
}

impl Versions {
    pub(super) async fn read(paths: &Paths, db: &DatabaseConnection) -> Versions {
        let postgres = match db
            .query_one_raw(Statement::from_string(
                DbBackend::Postgres,
                "SHOW server_version",
            ))
            .await
        {
            Ok(Some(row)) => row
                .try_get_by_index::<String>(0)
                .unwrap_or_else(|_| "unknown".into()),
            _ => "unknown".into(),
        };
        let redis = first_line(Command::new("redis-server").arg("--version"));
        let redis = redis
            .split_whitespace()
            .find_map(|w| w.strip_prefix("v="))
            .map_or(redis.clone(), str::to_owned);
        let cargo_toml = fs::read_to_string(paths.root.join("Cargo.toml")).unwrap_or_default();
        Versions {
            dapr: devstack::dapr_install::locate(paths).map_or_else(
                |err| format!("unknown ({err:#})"),
                |runtime| runtime.short(),
            ),
            postgres,
            redis,
            rustc: first_line(
                Command::new("rustc")
                    .arg("--version")
                    .current_dir(&paths.root),
            ),
            java: first_line(Command::new("java").arg("-version")),
            release_profile: if cargo_toml.contains("[profile.release") {
                "`--release` with the workspace's `[profile.release]`".into()
            } else {
                "`--release` (Cargo's defaults: opt-level 3, no LTO, 16 codegen units)".into()
            },
        }
    }
}

/// The first line a command prints (stdout, else stderr), or "unknown".
pub(super) fn first_line(cmd: &mut Command) -> String {
    cmd.output()
        .ok()
        .and_then(|o| {
            let out = if o.stdout.is_empty() {
                o.stderr
            } else {
                o.stdout
            };
            String::from_utf8_lossy(&out)
                .lines()
                .next()
                .map(|l| l.trim().to_owned())
        })
        .filter(|l| !l.is_empty())
        .unwrap_or_else(|| "unknown".into())
}
