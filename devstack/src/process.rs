//! Processes devstack starts: output to a log file, a pidfile, and a stop by PID that
//! always happens (explicitly, or on drop).

use std::collections::HashSet;
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, SeekFrom};
use std::net::{Ipv4Addr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

const POLL: Duration = Duration::from_millis(50);

/// How long a server devstack starts (PostgreSQL, Redis, the Collector) may take to serve.
pub(crate) const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// A running process we started. It is stopped by PID (its stop signal, then SIGKILL
/// after a grace period) on [`Managed::stop`] and on drop. Its stdout and stderr go to a
/// log file; its PID is written to a pidfile so a later run can clean up after a crash.
#[derive(Debug)]
pub struct Managed {
    name: String,
    child: Child,
    pid: u32,
    log_file: PathBuf,
    /// Length of the log file when this process started: its own output begins here.
    log_start: u64,
    pidfile: Option<PathBuf>,
    stop_signal: Signal,
    grace: Duration,
    status: Option<ExitStatus>,
    /// When the stop signal was sent, so a second stop waits instead of signalling again.
    stop_sent: Option<Instant>,
}

impl Managed {
    /// Spawns `cmd` with stdin closed and stdout/stderr appended to `log_file`, and writes
    /// its PID to `pidfile`. The process is stopped with SIGTERM and a 10 s grace period
    /// unless [`Managed::with_stop`] says otherwise.
    pub fn spawn(
        name: &str,
        mut cmd: Command,
        log_file: &Path,
        pidfile: Option<&Path>,
    ) -> Result<Self> {
        if let Some(dir) = log_file.parent() {
            fs::create_dir_all(dir)
                .with_context(|| format!("creating the log directory {}", dir.display()))?;
        }
        rotate_if_large(log_file);
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(log_file)
            .with_context(|| format!("opening the log file {}", log_file.display()))?;
        let log_start = log.metadata().map(|m| m.len()).unwrap_or(0);
        let log_err = log
            .try_clone()
            .with_context(|| format!("duplicating the log file handle {}", log_file.display()))?;
        cmd.stdin(Stdio::null())
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(log_err));
        let child = cmd.spawn().with_context(|| {
            format!(
                "starting {name} ({:?}): is it installed? `cargo xtask provision` installs everything",
                cmd.get_program()
            )
        })?;
        let pid = child.id();
        if let Some(pidfile) = pidfile {
            fs::write(pidfile, format!("{pid}\n"))
                .with_context(|| format!("writing the pidfile {}", pidfile.display()))?;
        }
        Ok(Self {
            name: name.to_owned(),
            child,
            pid,
            log_file: log_file.to_path_buf(),
            log_start,
            pidfile: pidfile.map(Path::to_path_buf),
            stop_signal: Signal::SIGTERM,
            grace: Duration::from_secs(10),
            status: None,
            stop_sent: None,
        })
    }

    /// Sets the signal that asks this process to stop, and how long to wait for it to exit
    /// before SIGKILL.
    pub fn with_stop(mut self, signal: Signal, grace: Duration) -> Self {
        self.stop_signal = signal;
        self.grace = grace;
        self
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// The name used in messages ("kafka", "daprd chat-api", ...).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The file its stdout and stderr are appended to.
    pub fn log_file(&self) -> &Path {
        &self.log_file
    }

    /// Whether the process is still running (reaps it if it has exited).
    pub fn is_running(&mut self) -> bool {
        if self.status.is_some() {
            return false;
        }
        match self.child.try_wait() {
            Ok(Some(status)) => {
                self.status = Some(status);
                false
            }
            Ok(None) => true,
            // Waiting failed: the child is not ours to wait for any more.
            Err(_) => false,
        }
    }

    /// How it exited, once it has.
    pub fn exit_status(&mut self) -> Option<ExitStatus> {
        self.is_running();
        self.status
    }

    /// Stops the process: its stop signal, then SIGKILL if it has not exited within the
    /// grace period. Blocks until it is gone. Does nothing if it already exited.
    pub fn stop(&mut self) {
        if let Some(deadline) = self.begin_stop() {
            while self.is_running() && Instant::now() < deadline {
                std::thread::sleep(POLL);
            }
        }
        self.kill9();
    }

    /// [`Managed::stop`] without blocking the async runtime while waiting.
    pub async fn shutdown(&mut self) {
        if let Some(deadline) = self.begin_stop() {
            while self.is_running() && Instant::now() < deadline {
                tokio::time::sleep(POLL).await;
            }
        }
        self.kill9();
    }

    /// Sends the stop signal (once) without waiting, so several processes can stop in
    /// parallel. Returns when the grace period ends, or `None` if the process is gone.
    pub fn begin_stop(&mut self) -> Option<Instant> {
        if !self.is_running() {
            return None;
        }
        let sent = *self.stop_sent.get_or_insert_with(|| {
            signal(self.pid, self.stop_signal);
            Instant::now()
        });
        Some(sent + self.grace)
    }

    /// Kills the process with SIGKILL (no clean-up on its side) and reaps it.
    pub fn kill9(&mut self) {
        if self.is_running() {
            signal(self.pid, Signal::SIGKILL);
            if let Ok(status) = self.child.wait() {
                self.status = Some(status);
            }
        }
        if let Some(pidfile) = self.pidfile.take() {
            let _ = fs::remove_file(pidfile);
        }
    }

    /// This run's output so far (the log file from where this process started).
    pub fn log_text(&self) -> String {
        read_from(&self.log_file, self.log_start).unwrap_or_default()
    }

    /// Polls `url` (GET) until it answers 2xx, every 100 ms: fails at once when this
    /// process exits, and after `timeout` with the last answer; both with the end of its
    /// log. The one readiness wait of the stack, the services and the sidecars.
    pub async fn wait_http_ok(&self, url: &str, timeout: Duration) -> Result<()> {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(2))
            .no_proxy()
            .build()
            .context("building an HTTP client")?;
        let deadline = Instant::now() + timeout;
        loop {
            let last = match client.get(url).send().await {
                Ok(response) if response.status().is_success() => return Ok(()),
                Ok(response) => format!("HTTP {}", response.status()),
                Err(err) => err.to_string(),
            };
            if !pid_alive(self.pid()) {
                bail!(
                    "{} exited; end of {}:\n{}",
                    self.name(),
                    self.log_file().display(),
                    self.log_tail(40)
                );
            }
            if Instant::now() >= deadline {
                bail!(
                    "GET {url} did not answer 2xx within {timeout:?} (last: {last}); end of {}:\n{}",
                    self.log_file().display(),
                    self.log_tail(40)
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The last `lines` lines of this run's output, for error messages.
    pub fn log_tail(&self, lines: usize) -> String {
        tail_lines(&self.log_text(), lines)
    }

    /// Waits until this run's output contains `needle`. Fails early, with the end of the
    /// log, if the process exits first.
    pub async fn wait_for_log(&mut self, needle: &str, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            if self.log_text().contains(needle) {
                return Ok(());
            }
            if !self.is_running() {
                bail!(
                    "{} exited ({}) before it was ready; end of {}:\n{}",
                    self.name,
                    describe_status(self.status),
                    self.log_file.display(),
                    self.log_tail(40)
                );
            }
            if Instant::now() >= deadline {
                bail!(
                    "{} did not log {needle:?} within {timeout:?}; end of {}:\n{}",
                    self.name,
                    self.log_file.display(),
                    self.log_tail(40)
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// An error for "exited before it was ready", with the end of the log.
    pub(crate) fn exited_error(&mut self) -> anyhow::Error {
        let status = self.exit_status();
        anyhow::anyhow!(
            "{} exited ({}) before it was ready; end of {}:\n{}",
            self.name,
            describe_status(status),
            self.log_file.display(),
            self.log_tail(40)
        )
    }
}

impl Drop for Managed {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Logs are appended across runs (a restarted process keeps its history); past this
/// size the old log moves to `<name>.1` so a long-lived data directory stays small.
const LOG_ROTATE_BYTES: u64 = 32 * 1024 * 1024;

fn rotate_if_large(log_file: &Path) {
    if fs::metadata(log_file).is_ok_and(|m| m.len() > LOG_ROTATE_BYTES) {
        let mut old = log_file.as_os_str().to_owned();
        old.push(".1");
        let _ = fs::rename(log_file, old);
    }
}

fn describe_status(status: Option<ExitStatus>) -> String {
    status.map_or_else(|| "still running".to_owned(), |s| s.to_string())
}

fn signal(pid: u32, sig: Signal) {
    if let Ok(pid) = i32::try_from(pid) {
        // ESRCH (already gone) is the only expected failure, and it means we are done.
        let _ = kill(Pid::from_raw(pid), sig);
    }
}

fn read_from(path: &Path, offset: u64) -> std::io::Result<String> {
    let mut file = File::open(path)?;
    file.seek(SeekFrom::Start(offset))?;
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes)?;
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

pub(crate) fn tail_lines(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// Whether `pid` names a live (not zombie) process, e.g. to assert that a stopped stack
/// left nothing running.
pub fn pid_alive(pid: u32) -> bool {
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state is the first field after the parenthesised command name.
        Ok(stat) => stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|state| state != "Z" && state != "X"),
        Err(_) => false,
    }
}

/// Kills a process left behind by an earlier, crashed run: the PID in `pidfile`, but only
/// if that process still looks like ours (its command line mentions `program`, and
/// mentions `dir` or runs inside it), since PIDs get reused. Removes the pidfile.
pub(crate) fn kill_stale(pidfile: &Path, program: &str, dir: &Path, stop: Signal) -> Result<()> {
    if !pidfile.exists() {
        return Ok(());
    }
    if let Some(pid) = pidfile_process(pidfile, program, dir) {
        eprintln!(
            "    stopping {program} (pid {pid}, recorded in {})",
            pidfile.display()
        );
        signal(pid, stop);
        if !wait_gone(pid, Duration::from_secs(15)) {
            signal(pid, Signal::SIGKILL);
            if !wait_gone(pid, Duration::from_secs(5)) {
                bail!(
                    "{program} (pid {pid}) from an earlier run does not die: kill it by hand \
                     (kill -9 {pid}) and try again"
                );
            }
        }
    }
    fs::remove_file(pidfile)
        .with_context(|| format!("removing the stale pidfile {}", pidfile.display()))
}

/// The PID in `pidfile` while that process runs and still looks like `program` started for
/// `dir` (see [`kill_stale`]), not a later process that got the same PID.
pub(crate) fn pidfile_process(pidfile: &Path, program: &str, dir: &Path) -> Option<u32> {
    let pid: u32 = fs::read_to_string(pidfile).ok()?.trim().parse().ok()?;
    (pid_alive(pid) && looks_like(pid, program, dir)).then_some(pid)
}

fn looks_like(pid: u32, program: &str, dir: &Path) -> bool {
    let cmdline = fs::read(format!("/proc/{pid}/cmdline"))
        .map(|bytes| String::from_utf8_lossy(&bytes).replace('\0', " "))
        .unwrap_or_default();
    if !cmdline.contains(program) {
        return false;
    }
    let dir_text = dir.to_string_lossy();
    cmdline.contains(dir_text.as_ref())
        || fs::read_link(format!("/proc/{pid}/cwd")).is_ok_and(|cwd| cwd.starts_with(dir))
}

fn wait_gone(pid: u32, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    while pid_alive(pid) {
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(POLL);
    }
    true
}

/// Ports this process already handed out, so two stacks in one test binary never get the
/// same one between "the OS said it is free" and "the server bound it".
static HANDED_OUT: Mutex<Option<HashSet<u16>>> = Mutex::new(None);

/// A free TCP port on 127.0.0.1 (asked of the OS, never the same twice in one process).
///
/// # Panics
/// When the OS cannot give a loopback port at all, which leaves nothing to test with.
pub fn free_port() -> u16 {
    let mut handed_out = HANDED_OUT.lock().unwrap_or_else(PoisonError::into_inner);
    let handed_out = handed_out.get_or_insert_with(HashSet::new);
    for _ in 0..1000 {
        let port = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .and_then(|listener| listener.local_addr())
            .map(|addr| addr.port());
        match port {
            Ok(port) if handed_out.insert(port) => return port,
            Ok(_) => continue,
            Err(err) => panic!("cannot bind a TCP port on 127.0.0.1: {err}"),
        }
    }
    panic!("the OS keeps handing out ports this process already used")
}

/// Runs a short command to completion and returns its stdout; on failure the error says
/// what ran, what it printed and `hint` (what to do about it).
pub(crate) async fn run_captured(cmd: &mut tokio::process::Command, hint: &str) -> Result<String> {
    let what = describe_command(cmd.as_std());
    let output = cmd
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output()
        .await
        .with_context(|| format!("running {what}: {hint}"))?;
    if !output.status.success() {
        bail!(
            "{what} failed ({}): {hint}\nstdout:\n{}\nstderr:\n{}",
            output.status,
            tail_lines(&String::from_utf8_lossy(&output.stdout), 30),
            tail_lines(&String::from_utf8_lossy(&output.stderr), 30),
        );
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// The program and its arguments, for messages.
pub(crate) fn describe_command(cmd: &Command) -> String {
    let mut text = cmd.get_program().to_string_lossy().into_owned();
    for arg in cmd.get_args() {
        text.push(' ');
        text.push_str(&arg.to_string_lossy());
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn free_port_never_repeats_within_a_process() {
        let ports: HashSet<u16> = (0..50).map(|_| free_port()).collect();
        assert_eq!(ports.len(), 50);
    }

    #[test]
    fn stop_ends_a_process_that_ignores_sigterm_and_removes_its_pidfile() {
        let dir = tempfile::tempdir().expect("tempdir");
        let pidfile = dir.path().join("sleeper.pid");
        let mut cmd = Command::new("sh");
        cmd.args([
            "-c",
            "trap '' TERM; echo up; while true; do sleep 0.1; done",
        ]);
        let mut proc = Managed::spawn("sleeper", cmd, &dir.path().join("s.log"), Some(&pidfile))
            .expect("spawn")
            .with_stop(Signal::SIGTERM, Duration::from_millis(300));
        let pid = proc.pid();
        assert!(pidfile.exists());
        assert!(proc.is_running());
        proc.stop();
        assert!(!proc.is_running());
        assert!(!pid_alive(pid));
        assert!(!pidfile.exists());
    }

    #[test]
    fn kill_stale_kills_only_processes_that_match() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut cmd = Command::new("sleep");
        cmd.arg("30").current_dir(dir.path());
        let child = cmd.spawn().expect("spawn");
        let pid = child.id();
        // spawn returns once exec has begun; the new command line shows up a moment later.
        let deadline = Instant::now() + Duration::from_secs(5);
        while !looks_like(pid, "sleep", dir.path()) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        let pidfile = dir.path().join("sleep.pid");

        fs::write(&pidfile, pid.to_string()).expect("write");
        kill_stale(&pidfile, "not-sleep", dir.path(), Signal::SIGTERM).expect("kill_stale");
        assert!(
            pid_alive(pid),
            "a process that does not match must be left alone"
        );
        assert!(!pidfile.exists());

        fs::write(&pidfile, pid.to_string()).expect("write");
        // `sleep` is our child here, so reap it in the background for pid_alive to see it go.
        let reaper = std::thread::spawn(move || {
            let mut child = child;
            child.wait()
        });
        let started = Instant::now();
        kill_stale(&pidfile, "sleep", dir.path(), Signal::SIGTERM).expect("kill_stale");
        assert!(started.elapsed() < Duration::from_secs(10));
        reaper.join().expect("join").expect("wait");
        assert!(!pid_alive(pid));
    }
}
