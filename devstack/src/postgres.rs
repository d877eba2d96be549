//! PostgreSQL as a local process: its data directory (initdb once, owned by the `postgres`
//! account when run as root), the server on a loopback port, the services' role and
//! database.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use nix::sys::signal::Signal;
use nix::unistd::{Gid, Uid, User};

use crate::process::{Managed, READY_TIMEOUT, pid_alive, run_captured};
use crate::tools::postgres_bindir;

/// The database the services use, and its owner (password `todo`; loopback connections
/// are trusted, so the password is not checked).
pub const DATABASE: &str = "todo";
/// The database role the services use: a plain login role that owns [`DATABASE`] and may
/// create databases (tests make one per test). The superuser is `postgres`.
pub const DATABASE_USER: &str = "todo";
pub(crate) const DATABASE_PASSWORD: &str = "todo";

/// The account PostgreSQL runs as: itself when not root (PostgreSQL refuses root).
fn postgres_account() -> Result<Option<(Uid, Gid)>> {
    if !Uid::effective().is_root() {
        return Ok(None);
    }
    let user = User::from_name("postgres")
        .context("looking up the postgres user")?
        .context(
            "PostgreSQL refuses to run as root and there is no `postgres` user to run it as: \
             install the postgresql package (it creates one) or run as a normal user",
        )?;
    Ok(Some((user.uid, user.gid)))
}

/// Makes `dir` owned by the PostgreSQL account (when running as root) and private.
fn prepare_postgres_dir(dir: &Path, account: Option<(Uid, Gid)>, mode: u32) -> Result<()> {
    fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    if let Some((uid, gid)) = account {
        std::os::unix::fs::chown(dir, Some(uid.as_raw()), Some(gid.as_raw()))
            .with_context(|| format!("handing {} to the postgres user", dir.display()))?;
    }
    fs::set_permissions(dir, fs::Permissions::from_mode(mode))
        .with_context(|| format!("setting the mode of {}", dir.display()))
}

/// As root, PostgreSQL runs as `postgres`, which must be able to walk down to its data.
fn ensure_reachable_by_postgres(data_dir: &Path) -> Result<()> {
    let meta = fs::metadata(data_dir).with_context(|| format!("reading {}", data_dir.display()))?;
    let mode = meta.permissions().mode();
    if mode & 0o001 == 0 {
        fs::set_permissions(data_dir, fs::Permissions::from_mode(mode | 0o001))
            .with_context(|| format!("making {} traversable", data_dir.display()))?;
    }
    for ancestor in data_dir.ancestors().skip(1) {
        let mode = fs::metadata(ancestor)
            .with_context(|| format!("reading {}", ancestor.display()))?
            .permissions()
            .mode();
        if mode & 0o001 == 0 {
            bail!(
                "PostgreSQL runs as the postgres user (it refuses root), which cannot enter {}: \
                 `chmod o+x {}`, or put the stack's data directory elsewhere",
                ancestor.display(),
                ancestor.display()
            );
        }
    }
    Ok(())
}

fn as_account(cmd: &mut Command, account: Option<(Uid, Gid)>) {
    if let Some((uid, gid)) = account {
        cmd.uid(uid.as_raw()).gid(gid.as_raw());
    }
}

pub(crate) async fn start_postgres(data_dir: &Path, port: u16) -> Result<Managed> {
    let bindir = postgres_bindir()?;
    let account = postgres_account()?;
    if account.is_some() {
        ensure_reachable_by_postgres(data_dir)?;
    }
    let pgdata = data_dir.join("postgres");
    if !pgdata.join("PG_VERSION").is_file() {
        // initdb into a side directory and rename, so an interrupted initdb is redone.
        let partial = data_dir.join("postgres.initdb");
        if partial.exists() {
            fs::remove_dir_all(&partial)
                .with_context(|| format!("removing {}", partial.display()))?;
        }
        if pgdata.exists() {
            fs::remove_dir_all(&pgdata)
                .with_context(|| format!("removing {}", pgdata.display()))?;
        }
        prepare_postgres_dir(&partial, account, 0o700)?;
        let mut initdb = Command::new(bindir.join("initdb"));
        initdb
            .arg("-D")
            .arg(&partial)
            .args([
                "-U",
                "postgres",
                "--auth=trust",
                "-E",
                "UTF8",
                "--no-locale",
                "--no-sync",
            ])
            .current_dir(&partial);
        as_account(&mut initdb, account);
        run_captured(
            &mut tokio::process::Command::from(initdb),
            "initdb failed; delete the stack's data directory to start afresh",
        )
        .await?;
        fs::rename(&partial, &pgdata)
            .with_context(|| format!("moving {} to {}", partial.display(), pgdata.display()))?;
    }
    remove_dead_postmaster_pid(&pgdata);

    let socket_dir = data_dir.join("postgres-run");
    prepare_postgres_dir(&socket_dir, account, 0o755)?;
    // A unix socket path has a ~107-byte limit; without one, PostgreSQL is TCP-only.
    let socket_arg = if socket_dir.as_os_str().len() + 20 < 107 {
        socket_dir.display().to_string()
    } else {
        String::new()
    };
    let mut cmd = Command::new(bindir.join("postgres"));
    cmd.arg("-D")
        .arg(&pgdata)
        .args(["-p", &port.to_string(), "-h", "127.0.0.1"])
        .arg("-c")
        .arg(format!("unix_socket_directories={socket_arg}"))
        // Test suites open a pool per test.
        .args(["-c", "max_connections=200", "-c", "logging_collector=off"])
        .current_dir(&pgdata);
    as_account(&mut cmd, account);
    // SIGINT is PostgreSQL's "fast" shutdown; SIGTERM would wait for every client to leave.
    let mut postgres = Managed::spawn(
        "postgres",
        cmd,
        &data_dir.join("postgres.log"),
        Some(&data_dir.join("postgres.pid")),
    )?
    .with_stop(Signal::SIGINT, Duration::from_secs(20));

    let psql = bindir.join("psql");
    let deadline = Instant::now() + READY_TIMEOUT;
    loop {
        let mut probe = psql_command(&psql, port, "postgres");
        probe.args(["-c", "SELECT 1"]);
        if run_captured(&mut probe, "").await.is_ok() {
            break;
        }
        if !postgres.is_running() {
            return Err(postgres.exited_error());
        }
        if Instant::now() >= deadline {
            bail!(
                "PostgreSQL did not answer a query on port {port} within {READY_TIMEOUT:?}; end of {}:\n{}",
                postgres.log_file().display(),
                postgres.log_tail(30)
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    let mut role = psql_command(&psql, port, "postgres");
    role.args([
        "-c",
        &format!(
            "DO $$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{DATABASE_USER}') \
             THEN CREATE ROLE {DATABASE_USER} LOGIN CREATEDB PASSWORD '{DATABASE_PASSWORD}'; \
             END IF; END $$;"
        ),
    ]);
    run_captured(&mut role, "creating the todo role failed").await?;
    create_database_if_absent(port, DATABASE).await?;
    Ok(postgres)
}

pub(crate) async fn create_database_if_absent(port: u16, name: &str) -> Result<()> {
    let psql = postgres_bindir()?.join("psql");
    let mut exists = psql_command(&psql, port, "postgres");
    exists.args([
        "-c",
        &format!("SELECT 1 FROM pg_database WHERE datname = '{name}'"),
    ]);
    let found = run_captured(&mut exists, "is PostgreSQL running?").await?;
    if found.trim() == "1" {
        return Ok(());
    }
    let mut create = psql_command(&psql, port, "postgres");
    create.args([
        "-c",
        &format!("CREATE DATABASE {name} OWNER {DATABASE_USER}"),
    ]);
    match run_captured(&mut create, "creating the database failed").await {
        Ok(_) => Ok(()),
        // Created meanwhile by a concurrent caller.
        Err(err) if format!("{err:#}").contains("already exists") => Ok(()),
        Err(err) => Err(err),
    }
}

fn psql_command(psql: &Path, port: u16, database: &str) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new(psql);
    cmd.args([
        "-h",
        "127.0.0.1",
        "-p",
        &port.to_string(),
        "-U",
        "postgres",
        "-d",
        database,
    ])
    .args(["-X", "-A", "-t", "-q", "-v", "ON_ERROR_STOP=1"])
    .env_remove("PGPASSWORD")
    .env_remove("PGSERVICE");
    cmd
}

/// After a SIGKILL, postmaster.pid stays behind; PostgreSQL refuses to start if its PID
/// now belongs to some other live process.
fn remove_dead_postmaster_pid(pgdata: &Path) {
    let lock = pgdata.join("postmaster.pid");
    let pid = fs::read_to_string(&lock).ok().and_then(|text| {
        text.lines()
            .next()
            .and_then(|l| l.trim().parse::<u32>().ok())
    });
    if let Some(pid) = pid {
        let is_postgres = fs::read(format!("/proc/{pid}/cmdline"))
            .is_ok_and(|cmd| String::from_utf8_lossy(&cmd).contains("postgres"));
        if !pid_alive(pid) || !is_postgres {
            let _ = fs::remove_file(&lock);
        }
    }
}
