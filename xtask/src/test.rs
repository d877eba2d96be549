//! `cargo xtask test`: every test, the way CI runs it.

use std::{fs, process::Command, time::Duration};

use anyhow::{Context as _, Result, bail};
use devstack::{
    Managed, Paths, Ports, Stack, StackConfig, provision as prov,
    steps::{cargo, done, step},
};

/// Every test, in one `cargo test --workspace` (one build, one feature resolution): unit
/// and in-process tests on SQLite and on a real PostgreSQL started here, and the end-to-end
/// suite, each test of which starts its own real stack. Then property-based fuzzing of the
/// API from its OpenAPI document. Tests run in parallel within each test binary; those of
/// the end-to-end binary start a whole stack each (Kafka, PostgreSQL, Redis and sidecars),
/// at most `E2E_STACKS` (2) at a time (`e2e::Env` holds the turn).
pub async fn test(extra: &[String]) -> Result<()> {
    let paths = Paths::discover()?;
    prov::all(&paths)?;

    let t = step("cargo clippy: no warnings in any crate or test");
    cargo(
        &paths,
        &[
            "clippy",
            "--workspace",
            "--all-targets",
            "--",
            "-D",
            "warnings",
        ],
        &[],
    )
    .context("clippy found problems (see above)")?;
    done(t);

    let t = step("cargo fmt --check: the tree is formatted with rustfmt's defaults");
    cargo(&paths, &["fmt", "--all", "--check"], &[])
        .context("the tree is not formatted: run `cargo fmt --all`")?;
    done(t);

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

    let t = step(
        "cargo test --workspace: unit, in-process (SQLite and PostgreSQL) and end-to-end tests",
    );
    let mut args = vec!["test", "--workspace"];
    args.extend(extra.iter().map(String::as_str));
    let result = cargo(
        &paths,
        &args,
        &[("TEST_POSTGRES_URL", stack.admin_database_url())],
    );
    let result = match result {
        Ok(()) => {
            done(t);
            let t = step(
                "property-based API fuzzing from the OpenAPI document (schemathesis; SQLite and PostgreSQL)",
            );
            // Side by side: each run is bounded in time and uses about one core. Both run to
            // their end (neither is left running when the other fails).
            let sqlite = format!("sqlite://{}/fuzz.db", tmp.display());
            let (on_sqlite, on_postgres) =
                tokio::join!(fuzz_api(&paths, "sqlite", &sqlite), async {
                    fuzz_api(&paths, "postgres", &stack.create_database("fuzz").await?).await
                });
            let fuzzed = on_sqlite.and(on_postgres);
            if fuzzed.is_ok() {
                done(t);
            }
            fuzzed
        }
        Err(e) => Err(e),
    };
    stack.stop().await?;
    let _ = fs::remove_dir_all(&tmp);
    result?;
    println!("all tests passed");
    Ok(())
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
