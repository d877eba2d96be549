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
    BrokerJvm, Managed, Paths, Ports, Stack, StackConfig, provision as prov,
    steps::{cargo, cargo_command, done, step},
};
use tokio::io::{AsyncBufReadExt as _, BufReader};

/// Every test: rustfmt, clippy (in the build), unit and in-process tests on SQLite and on a
/// real PostgreSQL started here, the end-to-end suite (each test of which starts its own real
/// stack, at most `E2E_STACKS` (2) at a time, `e2e::Env` holding the turn), the doc tests,
/// and property-based fuzzing of the API from its OpenAPI document.
///
/// With `extra` arguments (a package, a test, libtest's options), it runs
/// `cargo test --workspace <extra>` as it is (without `--workspace` when `extra` chooses a
/// package), then the fuzzing.
pub async fn test(extra: &[String]) -> Result<()> {
    let paths = Paths::discover()?;
    let t = step("cargo fmt --check: the tree is formatted with rustfmt's defaults");
    cargo(&paths, &["fmt", "--all", "--check"], &[])
        .context("the tree is not formatted: run `cargo fmt --all`")?;
    done(t);

    // On a new machine provisioning is mostly downloads and Go builds: it runs beside the
    // Rust build (their lines interleave), and the tests start once both are done.
    let lints = clippy_in_build()?;
    let provisioning = std::thread::spawn({
        let paths = paths.clone();
        move || prov::all(&paths)
    });
    let built = extra.is_empty().then(|| build(&paths, &lints));
    provisioning
        .join()
        .map_err(|_| anyhow::anyhow!("provisioning panicked"))??;
    let binaries = built.transpose()?;

    let t = step("starting PostgreSQL for the in-process suites");
    let tmp = paths.data.join("test-stack");
    let _ = fs::remove_dir_all(&tmp);
    let stack = Stack::start(
        &paths,
        StackConfig {
            data_dir: tmp.clone(),
            ports: Ports::free(),
            broker_jvm: BrokerJvm::QuickStart,
        },
    )
    .await?;
    done(t);
    let mut env = lints.clone();
    env.push(("TEST_POSTGRES_URL", stack.admin_database_url()));

    let result = if let Some(binaries) = binaries {
        every_suite(&paths, &stack, binaries, &env).await
    } else {
        // `--workspace` would override a package chosen with `-p`.
        let chosen = extra
            .iter()
            .take_while(|a| *a != "--")
            .any(|a| a.starts_with("-p") || a.starts_with("--package"));
        let mut args = vec!["test"];
        if !chosen {
            args.push("--workspace");
        }
        args.extend(extra.iter().map(String::as_str));
        let t = step(&format!("cargo {}", args.join(" ")));
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
    /// How the output names it: `<package directory> <kind> <name>`, e.g. `e2e test end_to_end`.
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

/// `cargo test --workspace --no-run` under `lints`: every test binary, built once.
fn build(paths: &Paths, lints: &[(&str, String)]) -> Result<Vec<TestBinary>> {
    let t = step(
        "cargo test --workspace --no-run: every crate and test built, clippy's lints denied in each",
    );
    let built = cargo_command()
        .args([
            "test",
            "--workspace",
            "--no-run",
            "--message-format=json-render-diagnostics",
        ])
        .envs(lints.iter().map(|(k, v)| (*k, v.as_str())))
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
    done(t);
    Ok(binaries)
}

/// The default run: the end-to-end suite beside the rest.
async fn every_suite(
    paths: &Paths,
    stack: &Stack,
    binaries: Vec<TestBinary>,
    env: &[(&str, String)],
) -> Result<()> {
    let (end_to_end, in_process): (Vec<_>, Vec<_>) =
        binaries.into_iter().partition(TestBinary::is_end_to_end);
    if end_to_end.is_empty() || in_process.is_empty() {
        bail!(
            "cargo reported {} end-to-end and {} in-process test binaries: expected some of each",
            end_to_end.len(),
            in_process.len()
        );
    }
    let t = step(&format!(
        "the end-to-end suite, and meanwhile {} in-process test binaries, the doc tests and the API fuzzing",
        in_process.len()
    ));
    let (e2e, rest) = tokio::join!(
        run_streamed(paths, &end_to_end, env),
        run_rest(paths, stack, &in_process, env)
    );
    let tally = e2e.and(rest);
    println!("{} passed, {} failed", tally.passed, tally.failed);
    if !tally.failures.is_empty() {
        bail!("failed: {}", tally.failures.join("; "));
    }
    done(t);
    Ok(())
}

/// What the test binaries said: libtest's counts, and what failed.
#[derive(Debug, Default)]
struct Tally {
    passed: usize,
    failed: usize,
    failures: Vec<String>,
}

impl Tally {
    /// Adds the counts of libtest's closing lines in `output`
    /// (`test result: ok. 3 passed; 0 failed; ...`).
    fn count(&mut self, output: &str) {
        for line in output.lines() {
            let Some(result) = line.trim_start().strip_prefix("test result: ") else {
                continue;
            };
            for part in result.split(';') {
                let mut words = part.split_whitespace().rev();
                let (Some(what), Some(n)) = (words.next(), words.next()) else {
                    continue;
                };
                let n: usize = n.parse().unwrap_or(0);
                match what {
                    "passed" => self.passed += n,
                    "failed" => self.failed += n,
                    _ => {}
                }
            }
        }
    }

    /// Prints how a run ended and keeps it when it failed.
    fn report(&mut self, label: &str, started: Instant, outcome: Result<std::process::ExitStatus>) {
        let took = started.elapsed().as_secs_f64();
        match outcome {
            Ok(status) if status.success() => println!("    {label}: passed in {took:.1}s"),
            Ok(status) => {
                println!("    {label}: FAILED ({status}) after {took:.1}s");
                self.failures.push(format!("{label} ({status})"));
            }
            Err(e) => {
                println!("    {label}: could not run: {e:#}");
                self.failures.push(format!("{label}: {e:#}"));
            }
        }
    }

    fn and(mut self, other: Tally) -> Tally {
        self.passed += other.passed;
        self.failed += other.failed;
        self.failures.extend(other.failures);
        self
    }
}

/// Runs each binary with its output streamed, line by line, prefixed `[e2e]`.
async fn run_streamed(paths: &Paths, binaries: &[TestBinary], env: &[(&str, String)]) -> Tally {
    let mut tally = Tally::default();
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
            let (status, out, err) =
                tokio::join!(child.wait(), prefixed(out, started), prefixed(err, started));
            anyhow::Ok((status?, out + &err))
        }
        .await;
        let outcome = outcome.map(|(status, output)| {
            tally.count(&output);
            status
        });
        tally.report(&label, started, outcome);
    }
    tally
}

/// Prints each line of `stream` prefixed `[e2e <seconds since started>s]`, so it stands out
/// among the other binaries' blocks and shows when each test ended; answers the lines.
async fn prefixed(stream: Option<impl tokio::io::AsyncRead + Unpin>, started: Instant) -> String {
    let mut seen = String::new();
    let Some(stream) = stream else { return seen };
    let mut lines = BufReader::new(stream).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        println!("[e2e {:3.0}s] {line}", started.elapsed().as_secs_f64());
        seen.push_str(&line);
        seen.push('\n');
    }
    seen
}

/// Runs `cmd` to its end and prints its output whole under `label`; counts its tests.
async fn run_whole(tally: &mut Tally, label: &str, cmd: &mut tokio::process::Command) {
    let started = Instant::now();
    let outcome = cmd
        .output()
        .await
        .with_context(|| format!("running {label}"))
        .map(|out| {
            let output = format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            println!("--- {label}:\n{output}");
            tally.count(&output);
            out.status
        });
    tally.report(label, started, outcome);
}

/// The in-process test binaries one after another, each one's output printed whole when it
/// ends; then the doc tests; then the fuzzing.
async fn run_rest(
    paths: &Paths,
    stack: &Stack,
    binaries: &[TestBinary],
    env: &[(&str, String)],
) -> Tally {
    let mut tally = Tally::default();
    for binary in binaries {
        run_whole(
            &mut tally,
            &binary.label(&paths.root),
            &mut binary.command(env),
        )
        .await;
    }
    let mut doc = tokio::process::Command::from(cargo_command());
    doc.args(["test", "--workspace", "--doc"])
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .current_dir(&paths.root)
        .stdin(Stdio::null());
    run_whole(&mut tally, "the doc tests", &mut doc).await;

    if let Err(e) = fuzz_both(paths, stack).await {
        tally.failures.push(format!("{e:#}"));
    }
    tally
}

/// The API fuzzing on SQLite and on PostgreSQL, one after the other (each is bounded in time
/// and uses about one core; the end-to-end suite runs beside them).
async fn fuzz_both(paths: &Paths, stack: &Stack) -> Result<()> {
    let t = step(
        "property-based API fuzzing from the OpenAPI document (schemathesis; SQLite, then PostgreSQL)",
    );
    // Beside the stack's own files, removed with them.
    let sqlite = format!("sqlite://{}/fuzz.db", stack.config().data_dir.display());
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

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::{Tally, test_binaries};

    #[test]
    fn the_tally_adds_libtests_closing_lines_and_nothing_else() {
        let mut tally = Tally::default();
        tally.count(
            "running 4 tests\ntest a ... ok\n\
             test result: FAILED. 3 passed; 1 failed; 0 ignored; 0 measured; 0 filtered out; finished in 0.01s\n\
             test result: ok. 34 passed; 0 failed; 2 ignored; 0 measured; 0 filtered out; finished in 390.24s\n\
             the test result: of nothing\n",
        );
        assert_eq!((tally.passed, tally.failed), (37, 1));
    }

    #[test]
    fn test_binaries_are_the_artifacts_built_for_testing_with_an_executable() {
        let messages = [
            r#"{"reason":"compiler-artifact","manifest_path":"/w/e2e/Cargo.toml","target":{"kind":["test"],"name":"end_to_end"},"profile":{"test":true},"executable":"/w/target/debug/deps/end_to_end-1"}"#,
            r#"{"reason":"compiler-artifact","manifest_path":"/w/api/Cargo.toml","target":{"kind":["bin"],"name":"chat-api"},"profile":{"test":false},"executable":"/w/target/debug/chat-api"}"#,
            r#"{"reason":"compiler-artifact","manifest_path":"/w/api/Cargo.toml","target":{"kind":["lib"],"name":"api"},"profile":{"test":true},"executable":"/w/target/debug/deps/api-2"}"#,
            r#"{"reason":"compiler-artifact","manifest_path":"/w/api/Cargo.toml","target":{"kind":["lib"],"name":"api"},"profile":{"test":false},"executable":null}"#,
            r#"{"reason":"build-finished","success":true}"#,
        ]
        .join("\n");
        let found = test_binaries(&messages).expect("cargo's messages parse");
        let seen: Vec<(PathBuf, &str, bool)> = found
            .iter()
            .map(|b| (b.path.clone(), b.kind.as_str(), b.is_end_to_end()))
            .collect();
        assert_eq!(
            seen,
            [
                (PathBuf::from("/w/target/debug/deps/api-2"), "lib", false),
                (
                    PathBuf::from("/w/target/debug/deps/end_to_end-1"),
                    "test",
                    true
                ),
            ]
        );
    }
}
