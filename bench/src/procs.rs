//! Processes: CPU and memory from /proc, sampled during the measured windows.

use super::*;

#[derive(Debug, Clone)]
pub(super) struct Proc {
    pub(super) name: String,
    pub(super) pid: u32,
    /// Count the whole process tree (PostgreSQL forks a backend per connection).
    pub(super) tree: bool,
    /// Count only the process's threads of this name: a part of a process counted in
    /// another row (not added to totals, see [`Proc::is_part`]).
    pub(super) threads: Option<&'static str>,
}

impl Proc {
    pub(super) fn new(name: &str, pid: u32, tree: bool) -> Proc {
        Proc {
            name: name.to_owned(),
            pid,
            tree,
            threads: None,
        }
    }

    /// The threads of `pid` named `comm`, as a row of their own: `name` starts with
    /// [`PART_PREFIX`].
    pub(super) fn threads(name: &str, pid: u32, comm: &'static str) -> Proc {
        Proc {
            name: format!("{PART_PREFIX}{name}"),
            pid,
            tree: false,
            threads: Some(comm),
        }
    }
}

/// The start of the name of a row that is a part of the row above it (a process's threads):
/// left out of every total.
pub(super) const PART_PREFIX: &str = "… of which ";

/// Whether a usage row named `name` is a part of another row.
pub(super) fn is_part(name: &str) -> bool {
    name.starts_with(PART_PREFIX)
}

/// CPU ticks of the threads of `pid` named `comm`.
fn thread_ticks(pid: u32, comm: &str) -> u64 {
    let Ok(tasks) = fs::read_dir(format!("/proc/{pid}/task")) else {
        return 0;
    };
    tasks
        .flatten()
        .filter(|task| {
            fs::read_to_string(task.path().join("comm")).is_ok_and(|name| name.trim() == comm)
        })
        .filter_map(|task| {
            let tid = task.file_name().to_str()?.parse::<u32>().ok()?;
            let stat = fs::read_to_string(format!("/proc/{pid}/task/{tid}/stat")).ok()?;
            let (_, rest) = stat.rsplit_once(')')?;
            let f: Vec<&str> = rest.split_whitespace().collect();
            Some(f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?)
        })
        .sum()
}

#[derive(Debug, Clone)]
pub(super) struct Usage {
    pub(super) name: String,
    pub(super) cpu_percent: f64,
    pub(super) rss_mb: Option<f64>,
}

/// (ppid, utime + stime in clock ticks) of a process.
pub(super) fn proc_stat(pid: u32) -> Option<(u32, u64)> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (_, rest) = stat.rsplit_once(')')?;
    // After the command name: field 3 (state) is index 0, so field n is index n - 3.
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
    Some((f.get(1)?.parse().ok()?, ticks))
}

pub(super) fn cpu_ticks(procs: &[Proc]) -> Vec<u64> {
    let needs_tree = procs.iter().any(|p| p.tree);
    let mut children: HashMap<u32, Vec<u32>> = HashMap::new();
    let mut ticks: HashMap<u32, u64> = HashMap::new();
    if needs_tree && let Ok(dir) = fs::read_dir("/proc") {
        for entry in dir.flatten() {
            let Some(pid) = entry
                .file_name()
                .to_str()
                .and_then(|n| n.parse::<u32>().ok())
            else {
                continue;
            };
            if let Some((ppid, t)) = proc_stat(pid) {
                children.entry(ppid).or_default().push(pid);
                ticks.insert(pid, t);
            }
        }
    }
    procs
        .iter()
        .map(|p| {
            if let Some(comm) = p.threads {
                return thread_ticks(p.pid, comm);
            }
            if !p.tree {
                return proc_stat(p.pid).map_or(0, |(_, t)| t);
            }
            let mut total = 0;
            let mut stack = vec![p.pid];
            while let Some(pid) = stack.pop() {
                total += ticks.get(&pid).copied().unwrap_or(0);
                stack.extend(children.get(&pid).into_iter().flatten().copied());
            }
            total
        })
        .collect()
}

pub(super) fn rss_kb(pid: u32) -> Option<u64> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// CPU over [start, end] and the highest RSS sampled in it, per process.
pub(super) fn spawn_sampler(
    procs: Arc<Vec<Proc>>,
    start: Instant,
    end: Instant,
    clk_tck: f64,
) -> JoinHandle<Vec<Usage>> {
    tokio::spawn(async move {
        tokio::time::sleep_until(start.into()).await;
        let t0 = Instant::now();
        let before = cpu_ticks(&procs);
        let mut rss_max = vec![0u64; procs.len()];
        loop {
            for (max, p) in rss_max.iter_mut().zip(procs.iter()) {
                *max = (*max).max(rss_kb(p.pid).unwrap_or(0));
            }
            let now = Instant::now();
            if now >= end {
                break;
            }
            tokio::time::sleep((end - now).min(Duration::from_millis(250))).await;
        }
        let after = cpu_ticks(&procs);
        let secs = t0.elapsed().as_secs_f64().max(1e-9);
        procs
            .iter()
            .enumerate()
            .map(|(i, p)| Usage {
                name: p.name.clone(),
                cpu_percent: after[i].saturating_sub(before[i]) as f64 / clk_tck / secs * 100.0,
                rss_mb: (!p.tree && p.threads.is_none()).then(|| rss_max[i] as f64 / 1024.0),
            })
            .collect()
    })
}

pub(super) fn clock_ticks_per_second() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .unwrap_or(100.0)
}
