//! Redis as a local process on a loopback port, nothing persisted.

use std::fs;
use std::net::Ipv4Addr;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use nix::sys::signal::Signal;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::process::{Managed, READY_TIMEOUT};
use crate::tools::which;

pub(crate) async fn start_redis(data_dir: &Path, port: u16) -> Result<Managed> {
    let redis_server = which("redis-server").context(
        "redis-server is not installed: run `cargo xtask provision` or `apt-get install redis-server`",
    )?;
    let dir = data_dir.join("redis");
    fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut cmd = Command::new(redis_server);
    cmd.args(["--bind", "127.0.0.1", "--port", &port.to_string()])
        .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
        .args(["--protected-mode", "yes", "--logfile", ""])
        .arg("--dir")
        .arg(&dir)
        .current_dir(&dir);
    let mut redis = Managed::spawn(
        "redis",
        cmd,
        &data_dir.join("redis.log"),
        Some(&data_dir.join("redis.pid")),
    )?
    .with_stop(Signal::SIGTERM, Duration::from_secs(10));

    let deadline = Instant::now() + READY_TIMEOUT;
    loop {
        match redis_ping(port).await {
            Ok(()) => return Ok(redis),
            Err(err) => {
                if !redis.is_running() {
                    return Err(redis.exited_error());
                }
                if Instant::now() >= deadline {
                    return Err(err.context(format!(
                        "Redis did not answer PING on port {port}; end of {}:\n{}",
                        redis.log_file().display(),
                        redis.log_tail(30)
                    )));
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn redis_ping(port: u16) -> Result<()> {
    let mut stream = TcpStream::connect((Ipv4Addr::LOCALHOST, port)).await?;
    stream.write_all(b"PING\r\n").await?;
    let mut reply = [0u8; 7];
    stream.read_exact(&mut reply).await?;
    if &reply != b"+PONG\r\n" {
        bail!(
            "Redis answered {:?} to PING",
            String::from_utf8_lossy(&reply)
        );
    }
    Ok(())
}
