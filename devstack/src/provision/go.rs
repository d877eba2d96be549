//! Building a Go binary (`daprd`, the `dapr` CLI) from an official module at a pinned
//! tag: the module download, the Go version its `go.mod` asks for, the build, and the
//! check that the result reports the pinned version.

use super::*;

/// A Go binary built from an official module at a pinned tag.
pub(super) struct GoBinary<'a> {
    pub(super) what: &'a str,
    pub(super) module: &'a str,
    pub(super) version: &'a str,
    pub(super) package: &'a str,
    pub(super) tags: Option<&'a str>,
    pub(super) ldflags: String,
    pub(super) output: PathBuf,
    pub(super) version_args: &'a [&'a str],
    /// Pulls the version out of what `version_args` print.
    pub(super) parse_version: fn(&str) -> Option<String>,
    /// `go mod edit` arguments applied to a writable copy of the module before building;
    /// empty to build the module as published.
    pub(super) go_mod_edits: Vec<String>,
}

pub(super) fn go_installed() -> bool {
    command_works(&mut Command::new("go"), &["version"])
}

/// Builds `bin` unless its output already reports the pinned version.
pub(super) fn go_binary(paths: &Paths, bin: &GoBinary<'_>) -> Result<Outcome> {
    let usable = || {
        installed_version(&bin.output, bin.version_args, bin.parse_version)
            .is_some_and(|found| found == bin.version)
    };
    if usable() {
        return Ok(Outcome::Cached);
    }
    let _lock = lock(paths)?;
    if usable() {
        return Ok(Outcome::Cached);
    }
    go_build(paths, bin)?;
    match installed_version(&bin.output, bin.version_args, bin.parse_version) {
        Some(found) if found == bin.version => Ok(Outcome::Done),
        other => bail!(
            "built {} but `{} {}` reports {other:?}, not {}",
            bin.output.display(),
            bin.what,
            bin.version_args.join(" "),
            bin.version
        ),
    }
}

/// Environment for every `go` command: no checksum database (not reachable from these
/// machines; the module's own go.sum still pins every dependency), no toolchain download,
/// no go.work from an enclosing directory, and a static binary like upstream's.
pub(super) fn go_command(args: &[&str]) -> Command {
    let mut go = Command::new("go");
    go.args(args);
    go_env(&mut go);
    go
}

/// The environment of [`go_command`], for a program that runs `go` itself (the Collector's
/// builder).
pub(super) fn go_env(command: &mut Command) {
    command
        .env("GOTOOLCHAIN", "local")
        .env("GOWORK", "off")
        .env("CGO_ENABLED", "0");
    if env::var_os("GOSUMDB").is_none() {
        command.env("GOSUMDB", "off");
    }
}

pub(super) fn go_build(paths: &Paths, bin: &GoBinary<'_>) -> Result<()> {
    if !go_installed() {
        bail!(
            "Go is not installed (`go version` fails): install Go 1.26.5 or newer to build \
             {} {} into {}{}",
            bin.what,
            bin.version,
            bin.output.display(),
            if bin.what == "daprd" {
                format!(
                    ", or install Dapr {DAPR_RUNTIME_VERSION} yourself (`dapr init \
                     --runtime-version {DAPR_RUNTIME_VERSION}`; with {ANY_DAPR_ENV}=1 any \
                     installed version is accepted)"
                )
            } else {
                ", or install the Dapr CLI yourself".to_owned()
            }
        );
    }
    let logs = paths.provision_logs();
    fs::create_dir_all(&logs).with_context(|| format!("creating {}", logs.display()))?;
    let log_name = bin.what.replace(' ', "-").to_lowercase();

    // A module download, not `go install module@version`: dapr's go.mod has replace
    // directives, which only apply when building inside the module itself.
    println!("    downloading {}@v{}", bin.module, bin.version);
    let module_dir = download_module(paths, bin.module, bin.version)?;

    let build_dir = if bin.go_mod_edits.is_empty() {
        module_dir
    } else {
        // The module cache is read-only: edit a copy.
        let copy = paths
            .cache
            .join("build")
            .join(format!("{log_name}-{}", bin.version));
        remove_dir_if_exists(&copy)?;
        copy_tree(&module_dir, &copy)?;
        let mut edit = go_command(&["mod", "edit"]);
        edit.args(&bin.go_mod_edits).current_dir(&copy);
        run_logged(
            &mut edit,
            &logs.join(format!("{log_name}-go-mod-edit.log")),
            &format!("adjusting {}'s go.mod", bin.what),
            "see the log",
        )?;
        copy
    };

    let bin_dir = bin.output.parent().context("output path has no parent")?;
    fs::create_dir_all(bin_dir).with_context(|| format!("creating {}", bin_dir.display()))?;
    let file_name = bin.output.file_name().unwrap_or(OsStr::new("bin"));
    let partial = bin_dir.join(format!(
        ".{}.partial-{}",
        file_name.to_string_lossy(),
        std::process::id()
    ));
    println!(
        "    building {} (log: {})",
        bin.what,
        logs.join(format!("{log_name}-build.log")).display()
    );
    let mut build = go_command(&["build", "-trimpath", "-buildvcs=false"]);
    if !bin.go_mod_edits.is_empty() {
        // Lets go record the sums of the requirements the edits brought in.
        build.arg("-mod=mod");
    }
    if let Some(tags) = bin.tags {
        build.args(["-tags", tags]);
    }
    build
        .args(["-ldflags", &bin.ldflags, "-o"])
        .arg(&partial)
        .arg(bin.package)
        .current_dir(&build_dir);
    let built = run_logged(
        &mut build,
        &logs.join(format!("{log_name}-build.log")),
        &format!("building {}", bin.what),
        "the Go module proxy must serve every dependency of the module (go env GOPROXY)",
    );
    if let Err(err) = built {
        let _ = fs::remove_file(&partial);
        return Err(err);
    }
    fs::rename(&partial, &bin.output)
        .with_context(|| format!("moving {} to {}", partial.display(), bin.output.display()))
}

/// Downloads `module` at `v<version>` into the module cache (read-only) and answers its
/// directory, once the local Go is checked to be new enough for its `go.mod`.
pub(super) fn download_module(paths: &Paths, module: &str, version: &str) -> Result<PathBuf> {
    let module_at = format!("{module}@v{version}");
    let mut download = go_command(&["mod", "download", "-json", &module_at]);
    download.current_dir(&paths.cache);
    fs::create_dir_all(&paths.cache)
        .with_context(|| format!("creating {}", paths.cache.display()))?;
    let output = download
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running `go mod download {module_at}`"))?;
    let info: serde_json::Value = serde_json::from_slice(&output.stdout).with_context(|| {
        format!(
            "`go mod download -json {module_at}` printed no JSON ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        )
    })?;
    if let Some(error) = info.get("Error").and_then(|e| e.as_str()) {
        bail!(
            "`go mod download {module_at}` failed: {error}\ncheck that the Go module proxy \
             (go env GOPROXY) is reachable and serves this version"
        );
    }
    let module_dir = info
        .get("Dir")
        .and_then(|d| d.as_str())
        .map(PathBuf::from)
        .with_context(|| format!("`go mod download -json {module_at}` gave no Dir: {info}"))?;
    check_go_version(&module_dir, &module_at)?;
    Ok(module_dir)
}

/// Fails with a clear message when the local Go is older than the `go` line of the
/// module's `go.mod` (`GOTOOLCHAIN=local` keeps go from fetching a newer one).
pub(super) fn check_go_version(module_dir: &Path, module_at: &str) -> Result<()> {
    let go_mod = module_dir.join("go.mod");
    let text =
        fs::read_to_string(&go_mod).with_context(|| format!("reading {}", go_mod.display()))?;
    let Some(needed) = text
        .lines()
        .find_map(|line| line.trim().strip_prefix("go "))
        .map(str::trim)
    else {
        return Ok(());
    };
    let output = go_command(&["env", "GOVERSION"])
        .stdin(Stdio::null())
        .output()
        .context("running `go env GOVERSION`")?;
    let local = String::from_utf8_lossy(&output.stdout).trim().to_owned();
    let local_version = local.strip_prefix("go").unwrap_or(&local);
    if version_parts(local_version) < version_parts(needed) {
        bail!(
            "{module_at} needs Go {needed} or newer (its go.mod), and this machine has {local}: \
             install a newer Go"
        );
    }
    Ok(())
}

/// `1.26.5` as numbers, for comparing; a pre-release suffix (`1.27rc1`) counts as its base.
pub(super) fn version_parts(version: &str) -> Vec<u32> {
    version
        .split('.')
        .map(|part| {
            part.chars()
                .take_while(char::is_ascii_digit)
                .collect::<String>()
                .parse()
                .unwrap_or(0)
        })
        .collect()
}
