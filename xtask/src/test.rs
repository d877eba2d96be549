//! `cargo xtask test`: every test, the way CI runs it.
//!
//! One build does two jobs: the workspace's own crates are compiled through `clippy-driver`
//! (what `cargo clippy` does, but with code generation), so clippy's lints, denied, hold for
//! every crate and test target, and the test binaries come out of the same build. Then the
//! end-to-end suite runs beside everything else: it spends most of its time waiting (for a
//! broker, a cron tick, a redelivery), so the in-process suites, the doc tests and the API
//! fuzzing run meanwhile, one at a time.

use std::{
    fs,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};
use devstack::{
    Managed, Paths, Ports, Stack, StackConfig, provision as prov,
    steps::{cargo, done, step},
};
use tokio::io::{AsyncBufReadExt as _, BufReader};

/// Every test: rustfmt, clippy (in the build), unit and in-process tests on SQLite and on a
/// real PostgreSQL started here, the end-to-end suite (each test of which starts its own real
/// stack, at most `E2E_STACKS` (2) at a time, `e2e::Env` holding the turn), the doc tests,
/// and property-based fuzzing of the API from its OpenAPI document.
///
/// With `extra` arguments (a package, a test, libtest's options), it runs
/// `cargo test --workspace <extra>` as it is, then the fuzzing.
pub async fn test(extra: &[String]) -> Result<()> {
    let paths = Paths::discover()?;
    prov::all(&paths)?;

    let t = step("cargo fmt --check: the tree is formatted with rustfmt's defaults");
    cargo(&paths, &["fmt", "--all", "--check"], &[])
        .context("the tree is not formatted: run `cargo fmt --all`")?;
    done(t);

    let lints = clippy_in_build()?;

    let t = step("starting PostgreSQL for the in-process suites");
    let tmp = paths.data.join("test-stack");
    let _ = fs::remove_dir_all(&tmp);
    let stack = Stack::start(
        &paths,
        StackConfig {
            data_dir: tmp.clone(),
            ports: Ports::free(),
        },
    )
    .await?;
    done(t);
    let mut env = lints.clone();
    env.push(("TEST_POSTGRES_URL", stack.admin_database_url()));

    let result = if extra.is_empty() {
        every_suite(&paths, &stack, &env).await
    } else {
        let t = step(&format!("cargo test --workspace {}", extra.join(" ")));
        let mut args = vec!["test", "--workspace"];
        args.extend(extra.iter().map(String::as_str));
        match cargo(&paths, &args, &env).context(CLIPPY_OR_TESTS) {
            Ok(()) => {
                done(t);
                fuzz_both(&paths, &stack).await
            }
            Err(e) => Err(e),
        }
    };
    stack.stop().await?;
    let _ = fs::remove_dir_all(&tmp);
    result?;
    println!("all tests passed");
    Ok(())
}

const CLIPPY_OR_TESTS: &str = "clippy's lints or the tests failed (see above)";

/// The environment under which cargo compiles the workspace's own crates with
/// `clippy-driver` and `-D warnings` (cargo-clippy's own protocol: `RUSTC_WORKSPACE_WRAPPER`
/// and `CLIPPY_ARGS`, which clippy-driver also records as an input of each crate, so a change
/// of lints rebuilds them). Dependencies are compiled by plain rustc, as under `cargo clippy`.
fn clippy_in_build() -> Result<Vec<(&'static str, String)>> {
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let sysroot = Command::new(&rustc)
        .args(["--print", "sysroot"])
        .output()
        .with_context(|| format!("running {rustc} --print sysroot"))?;
    if !sysroot.status.success() {
        bail!("{rustc} --print sysroot failed ({})", sysroot.status);
    }
    let driver = PathBuf::from(String::from_utf8_lossy(&sysroot.stdout).trim())
        .join("bin")
        .join("clippy-driver");
    if !driver.is_file() {
        bail!(
            "{} is missing: clippy is not installed for this toolchain (rust-toolchain.toml lists \
             it; `rustup component add clippy`)",
            driver.display()
        );
    }
    Ok(vec![
        ("RUSTC_WORKSPACE_WRAPPER", driver.display().to_string()),
        (
            "CLIPPY_ARGS",
            ["-D", "warnings"]
                .iter()
                .map(|a| format!("{a}__CLIPPY_HACKERY__"))
                .collect(),
        ),
    ])
}

/// A test binary of the workspace, as cargo built it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct TestBinary {
    /// The package's directory: cargo runs a package's tests there.
    dir: PathBuf,
    /// `lib`, `bin`, `test`.
    kind: String,
    name: String,
    path: PathBuf,
}

impl TestBinary {
    /// `e2e/tests/end_to_end`-style name for the output.
    fn label(&self, root: &Path) -> String {
        let dir = self.dir.strip_prefix(root).unwrap_or(&self.dir).display();
        format!("{dir} {} {}", self.kind, self.name)
    }

    /// The end-to-end suite: the `e2e` package's integration test.
    fn is_end_to_end(&self) -> bool {
        self.kind == "test" && self.dir.file_name().is_some_and(|d| d == "e2e")
    }

    fn command(&self, env: &[(&str, String)]) -> tokio::process::Command {
        let mut cmd = tokio::process::Command::new(&self.path);
        cmd.current_dir(&self.dir)
            .env("CARGO_MANIFEST_DIR", &self.dir)
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .stdin(Stdio::null())
            .kill_on_drop(true);
        cmd
    }
}

/// The test binaries cargo reports in its JSON messages (`compiler-artifact` with a test
/// profile and an executable).
fn test_binaries(messages: &str) -> Result<Vec<TestBinary>> {
    let mut found = Vec::new();
    for line in messages.lines().filter(|l| l.starts_with('{')) {
        let message: serde_json::Value =
            serde_json::from_str(line).with_context(|| format!("cargo's message {line:?}"))?;
        if message["reason"] != "compiler-artifact" || message["profile"]["test"] != true {
            continue;
        }
        let (Some(path), Some(manifest)) = (
            message["executable"].as_str(),
            message["manifest_path"].as_str(),
        ) else {
            continue;
        };
        let dir = Path::new(manifest)
            .parent()
            .context("a manifest path without a directory")?;
        found.push(TestBinary {
            dir: dir.to_path_buf(),
            kind: message["target"]["kind"][0]
                .as_str()
                .unwrap_or("?")
                .to_owned(),
            name: message["target"]["name"].as_str().unwrap_or("?").to_owned(),
            path: PathBuf::from(path),
        });
    }
    found.sort();
    found.dedup();
    Ok(found)
}

/// The default run: one build, then the end-to-end suite beside the rest.
async fn every_suite(paths: &Paths, stack: &Stack, env: &[(&str, String)]) -> Result<()> {
    let t = step(
        "cargo test --workspace --no-run: every crate and test built, clippy's lints denied in each",
    );
    let cargo_bin = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let built = Command::new(cargo_bin)
        .args([
            "test",
            "--workspace",
            "--no-run",
            "--message-format=json-render-diagnostics",
        ])
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .current_dir(&paths.root)
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .context("running cargo test --no-run")?;
    if !built.status.success() {
        bail!(
            "the build failed ({}): clippy's lints or a compile error, see above",
            built.status
        );
    }
    let binaries = test_binaries(&String::from_utf8_lossy(&built.stdout))?;
    let (end_to_end, in_process): (Vec<_>, Vec<_>) =
        binaries.into_iter().partition(TestBinary::is_end_to_end);
    if end_to_end.is_empty() || in_process.is_empty() {
        bail!("cargo reported no end-to-end or no in-process test binary: {built:?}");
    }
    done(t);

    let t = step(&format!(
        "the end-to-end suite, and meanwhile {} in-process test binaries, the doc tests and the API fuzzing",
        in_process.len()
    ));
    let (e2e, rest) = tokio::join!(
        run_streamed(paths, &end_to_end, env),
        run_rest(paths, stack, &in_process, env)
    );
    let failures: Vec<String> = e2e.into_iter().chain(rest).collect();
    if !failures.is_empty() {
        bail!("failed: {}", failures.join("; "));
    }
    done(t);
    Ok(())
}

/// Runs each binary with its output streamed, line by line, prefixed `[e2e]`. Answers what
/// failed.
async fn run_streamed(
    paths: &Paths,
    binaries: &[TestBinary],
    env: &[(&str, String)],
) -> Vec<String> {
    let mut failures = Vec::new();
    for binary in binaries {
        let label = binary.label(&paths.root);
        let started = Instant::now();
        let outcome = async {
            let mut child = binary
                .command(env)
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .with_context(|| format!("starting {}", binary.path.display()))?;
            let (out, err) = (child.stdout.take(), child.stderr.take());
            let (status, (), ()) = tokio::join!(child.wait(), prefixed(out), prefixed(err));
            anyhow::Ok(status?)
        }
        .await;
        report(&label, started, outcome, &mut failures);
    }
    failures
}

/// Prints each line of `stream` prefixed `[e2e] `, so it stands out among the other
/// binaries' blocks.
async fn prefixed(stream: Option<impl tokio::io::AsyncRead + Unpin>) {
    let Some(stream) = stream else { return };
    let mut lines = BufReader::new(stream).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        println!("[e2e] {line}");
    }
}

/// The in-process test binaries one after another, each one's output printed whole when it
/// ends; then the doc tests; then the fuzzing. Answers what failed.
async fn run_rest(
    paths: &Paths,
    stack: &Stack,
    binaries: &[TestBinary],
    env: &[(&str, String)],
) -> Vec<String> {
    let mut failures = Vec::new();
    for binary in binaries {
        let label = binary.label(&paths.root);
        let started = Instant::now();
        let outcome = binary
            .command(env)
            .output()
            .await
            .with_context(|| format!("running {}", binary.path.display()));
        let outcome = outcome.map(|out| {
            println!(
                "--- {label}:\n{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            out.status
        });
        report(&label, started, outcome, &mut failures);
    }

    let started = Instant::now();
    let cargo_bin = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let doc = tokio::process::Command::new(cargo_bin)
        .args(["test", "--workspace", "--doc"])
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .current_dir(&paths.root)
        .stdin(Stdio::null())
        .output()
        .await
        .context("running cargo test --doc")
        .map(|out| {
            println!(
                "--- doc tests:\n{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            out.status
        });
    report("the doc tests", started, doc, &mut failures);

    if let Err(e) = fuzz_both(paths, stack).await {
        failures.push(format!("{e:#}"));
    }
    failures
}

/// Prints how a test binary ended and keeps it when it failed.
fn report(
    label: &str,
    started: Instant,
    outcome: Result<std::process::ExitStatus>,
    failures: &mut Vec<String>,
) {
    let took = started.elapsed().as_secs_f64();
    match outcome {
        Ok(status) if status.success() => println!("    {label}: passed in {took:.1}s"),
        Ok(status) => {
            println!("    {label}: FAILED ({status}) after {took:.1}s");
            failures.push(format!("{label} ({status})"));
        }
        Err(e) => {
            println!("    {label}: could not run: {e:#}");
            failures.push(format!("{label}: {e:#}"));
        }
    }
}

/// The API fuzzing on SQLite and on PostgreSQL, one after the other (each is bounded in time
/// and uses about one core; the end-to-end suite runs beside them).
async fn fuzz_both(paths: &Paths, stack: &Stack) -> Result<()> {
    let t = step(
        "property-based API fuzzing from the OpenAPI document (schemathesis; SQLite, then PostgreSQL)",
    );
    let sqlite = format!(
        "sqlite://{}/fuzz.db",
        paths.data.join("test-stack").display()
    );
    let on_sqlite = fuzz_api(paths, "sqlite", &sqlite).await;
    let on_postgres =
        async { fuzz_api(paths, "postgres", &stack.create_database("fuzz").await?).await }.await;
    let fuzzed = on_sqlite.and(on_postgres);
    if fuzzed.is_ok() {
        done(t);
    }
    fuzzed
}

/// Runs `tools/fuzz-api.sh` against a chat-api of its own on `database_url`: any 5xx fails.
/// Its output goes to `.data/fuzz-<name>.log` and is printed when it ends, whole, so two
/// runs at once do not interleave.
async fn fuzz_api(paths: &Paths, name: &str, database_url: &str) -> Result<()> {
    const SECRET: &str = "fuzz-secret-fuzz-secret-fuzz-secret-fuzz";
    const FUZZ_SECONDS: &str = "60";
    let port = devstack::free_port();
    let bin = paths.root.join("target/debug/chat-api");
    let env = [
        ("JWT_SECRET", SECRET.to_owned()),
        ("DATABASE_URL", database_url.to_owned()),
        ("MIGRATE_ON_START", "true".to_owned()),
        ("APP_PORT", port.to_string()),
        ("RELAY_ENABLED", "false".to_owned()),
        ("RUST_LOG", "warn".to_owned()),
    ];
    let mut cmd = Command::new(&bin);
    cmd.arg("serve")
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())));
    let server_log = paths.data.join(format!("fuzz-chat-api-{name}.log"));
    let mut server = Managed::spawn(
        &format!("chat-api (fuzz target, {name})"),
        cmd,
        &server_log,
        None,
    )?;
    let base = format!("http://127.0.0.1:{port}");
    server
        .wait_http_ok(&format!("{base}/readyz"), Duration::from_secs(30))
        .await?;
    let token = Command::new(&bin)
        .args(["token", "alice"])
        .env("JWT_SECRET", SECRET)
        .output()
        .context("minting the fuzzer's token")?;
    let token = String::from_utf8_lossy(&token.stdout).trim().to_owned();
    let fuzz_log = paths.data.join(format!("fuzz-{name}.log"));
    let out =
        fs::File::create(&fuzz_log).with_context(|| format!("creating {}", fuzz_log.display()))?;
    let status = tokio::process::Command::new("bash")
        .arg(paths.root.join("tools/fuzz-api.sh"))
        .args([base.as_str(), token.as_str(), FUZZ_SECONDS])
        .current_dir(&paths.root)
        .stdout(out.try_clone()?)
        .stderr(out)
        .status()
        .await
        .context("running tools/fuzz-api.sh")?;
    server.shutdown().await;
    println!("--- the fuzzer on {name} ({}):", fuzz_log.display());
    print!("{}", fs::read_to_string(&fuzz_log).unwrap_or_default());
    if !status.success() {
        bail!(
            "the API fuzzer found server errors on {name} ({status}); the server's log: {}",
            server_log.display()
        );
    }
    Ok(())
}
