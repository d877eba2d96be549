//! Nonsense settings are refused at start, with a message that names the variable.

use std::io::Read as _;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Starts `chat-api` with `vars`: whether it exited successfully, and its stderr. A server
/// that accepts the settings keeps running: after 15 s it is killed and counts as accepted.
fn start_with(vars: &[(&str, &str)]) -> (bool, String) {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut child = Command::new(env!("CARGO_BIN_EXE_chat-api"))
        .env_clear()
        .env("JWT_SECRET", "settings-secret-settings-secret-settings")
        .env(
            "DATABASE_URL",
            format!("sqlite://{}/todo.db", dir.path().display()),
        )
        .env("APP_PORT", "0")
        .envs(vars.iter().copied())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("chat-api runs");
    let deadline = Instant::now() + Duration::from_secs(15);
    let status = loop {
        if let Some(status) = child.try_wait().expect("waiting for chat-api") {
            break Some(status);
        }
        if Instant::now() > deadline {
            child.kill().expect("killing chat-api");
            child.wait().expect("reaping chat-api");
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .expect("piped stderr")
        .read_to_string(&mut stderr)
        .expect("reading stderr");
    match status {
        Some(status) => (status.success(), stderr),
        None => (true, format!("still serving after 15 s: {stderr}")),
    }
}

#[test]
fn nonsense_relay_and_pool_settings_are_refused_at_start_naming_the_variable() {
    for (name, value) in [
        ("RELAY_BATCH_SIZE", "0"),
        ("RELAY_BATCH_SIZE", "-5"),
        ("RELAY_CONCURRENCY", "0"),
        ("RELAY_BULK_SIZE", "100000"),
        ("RELAY_PER_USER", "0"),
        ("RELAY_PARK_AFTER", "0"),
        ("RELAY_STALL_AFTER_SECONDS", "1"),
        ("DB_MAX_CONNECTIONS", "0"),
    ] {
        let (ok, stderr) = start_with(&[(name, value)]);
        assert!(!ok, "{name}={value} was accepted");
        assert!(
            stderr.contains(name),
            "{name}={value}: the message does not name the variable: {stderr}"
        );
    }
}

#[test]
fn a_per_user_share_above_the_batch_is_refused() {
    let (ok, stderr) = start_with(&[("RELAY_BATCH_SIZE", "10"), ("RELAY_PER_USER", "11")]);
    assert!(!ok);
    assert!(
        stderr.contains("RELAY_PER_USER") && stderr.contains("1 to 10"),
        "{stderr}"
    );
}

#[test]
fn token_lifetimes_beyond_thirty_days_are_refused() {
    let run = |ttl: &str| {
        Command::new(env!("CARGO_BIN_EXE_chat-api"))
            .env_clear()
            .env("JWT_SECRET", "settings-secret-settings-secret-settings")
            .args(["token", "alice", ttl])
            .output()
            .expect("chat-api runs")
    };
    let month = run("2592000");
    assert!(
        month.status.success(),
        "30 days is the maximum, and allowed"
    );
    assert!(!String::from_utf8_lossy(&month.stdout).trim().is_empty());
    for ttl in ["2592001", "0"] {
        let out = run(ttl);
        assert!(!out.status.success(), "ttl {ttl} was accepted");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("ttl_seconds must be 1 to 2592000"),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
