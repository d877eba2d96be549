//! Which Dapr runtime the stack runs, and where it lives.
//!
//! The project pins one runtime release built with one set of components (the *flavour*).
//! A user's own install in `~/.dapr/bin/daprd` is used when it is exactly that release and
//! has every component the project uses; otherwise the project's build, kept in the
//! download cache under its own `.dapr/bin/daprd`, is used, and the user's install is only
//! ever read, never replaced. `dapr run` is pointed at the chosen one with
//! `DAPR_RUNTIME_PATH` (the directory holding `.dapr/`, as the CLI expects).

use std::env;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;

use anyhow::{Context, Result, bail};

use crate::paths::Paths;
use crate::versions::{DAPR_RUNTIME_VERSION, DAPRD_BUILD_TAGS};

/// Set to `1` to accept whatever `daprd` is in `~/.dapr/bin` (for example one put there by
/// `dapr init`, of any version) instead of the pinned build.
pub const ANY_DAPR_ENV: &str = "DEVSTACK_ANY_DAPR";

/// The environment variable that tells the `dapr` CLI which install to run
/// (`$DAPR_RUNTIME_PATH/.dapr/bin/daprd`, `.dapr/config.yaml`).
pub const RUNTIME_PATH_ENV: &str = "DAPR_RUNTIME_PATH";

/// The components a `daprd` must have to be used here, each with the Go package that
/// implements it: the ones `components/` uses (Kafka pub/sub, Redis state store, cron
/// binding) and the conversation providers the chat can be pointed at. A `daprd` binary
/// keeps the names of its functions (for stack traces), so a build without one of these
/// packages does not contain its path.
pub const NEEDED_COMPONENTS: &[(&str, &str)] = &[
    ("pubsub.kafka", "components-contrib/pubsub/kafka."),
    ("state.redis", "components-contrib/state/redis."),
    ("bindings.cron", "components-contrib/bindings/cron."),
    (
        "conversation.openai",
        "components-contrib/conversation/openai.",
    ),
    (
        "conversation.anthropic",
        "components-contrib/conversation/anthropic.",
    ),
    (
        "conversation.ollama",
        "components-contrib/conversation/ollama.",
    ),
];

/// Where the runtime in use came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// The user's `~/.dapr/bin/daprd`: the pinned release with every needed component.
    UserInstall,
    /// The user's `~/.dapr/bin/daprd`, accepted as it is because `DEVSTACK_ANY_DAPR=1`.
    AnyAccepted,
    /// The project's own build in the download cache.
    Project,
}

/// The Dapr runtime the stack runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DaprRuntime {
    /// The directory holding `.dapr/` (what `DAPR_RUNTIME_PATH` names).
    pub runtime_path: PathBuf,
    /// `runtime_path/.dapr/bin/daprd`.
    pub daprd: PathBuf,
    /// What `daprd --version` prints.
    pub version: String,
    pub origin: Origin,
}

impl DaprRuntime {
    /// Version and flavour, for reports: `1.18.2 (allcomponents)`.
    pub fn short(&self) -> String {
        match self.origin {
            Origin::Project => format!("{} ({DAPRD_BUILD_TAGS})", self.version),
            Origin::UserInstall => format!("{} (the user's install)", self.version),
            Origin::AnyAccepted => format!("{} (any accepted)", self.version),
        }
    }

    /// One line for people: version, flavour and where it runs from.
    pub fn describe(&self) -> String {
        match self.origin {
            Origin::Project => format!(
                "Dapr runtime {} (built with -tags {DAPRD_BUILD_TAGS}) from {}",
                self.version,
                self.daprd.display()
            ),
            Origin::UserInstall => format!(
                "Dapr runtime {} (your install, with {}) from {}",
                self.version,
                NEEDED_COMPONENTS
                    .iter()
                    .map(|(name, _)| *name)
                    .collect::<Vec<_>>()
                    .join(", "),
                self.daprd.display()
            ),
            Origin::AnyAccepted => format!(
                "Dapr runtime {} (your install, accepted as it is: {ANY_DAPR_ENV}=1) from {}",
                self.version,
                self.daprd.display()
            ),
        }
    }
}

/// What the user's own `~/.dapr/bin/daprd` is, as far as the project is concerned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UserInstall {
    Missing,
    /// The pinned release with every needed component: used as it is.
    Fits {
        version: String,
    },
    /// Anything else: left alone. The reason is for people.
    Unfit {
        reason: String,
    },
}

/// Looks at `~/.dapr/bin/daprd` without changing it.
pub fn user_install(paths: &Paths) -> UserInstall {
    let daprd = paths.user_daprd();
    if !daprd.is_file() {
        return UserInstall::Missing;
    }
    let Some(version) = daprd_version(&daprd) else {
        return UserInstall::Unfit {
            reason: "a daprd whose `--version` does not answer".to_owned(),
        };
    };
    if version != DAPR_RUNTIME_VERSION {
        return UserInstall::Unfit {
            reason: format!("daprd {version}"),
        };
    }
    match missing_components(&daprd) {
        Ok(missing) if missing.is_empty() => UserInstall::Fits { version },
        Ok(missing) => UserInstall::Unfit {
            reason: format!("daprd {version} without {}", missing.join(", ")),
        },
        Err(err) => UserInstall::Unfit {
            reason: format!("daprd {version} that could not be read ({err:#})"),
        },
    }
}

/// The runtime to run, without building anything: the user's install when it fits (or
/// with `DEVSTACK_ANY_DAPR=1`), else the project's build, which must be there
/// (`cargo xtask provision` makes it).
pub fn locate(paths: &Paths) -> Result<DaprRuntime> {
    // Checking the user's install reads its binary (hundreds of MB): once per process and
    // set of paths. The lock is not held while looking.
    type Key = (PathBuf, PathBuf, bool);
    static SEEN: Mutex<Vec<(Key, DaprRuntime)>> = Mutex::new(Vec::new());
    let key: Key = (paths.dapr_home.clone(), paths.cache.clone(), any_dapr());
    let cached = |seen: &Vec<(Key, DaprRuntime)>| {
        seen.iter()
            .find(|(k, _)| *k == key)
            .map(|(_, runtime)| runtime.clone())
    };
    if let Some(runtime) = cached(&SEEN.lock().unwrap_or_else(|p| p.into_inner())) {
        return Ok(runtime);
    }
    let runtime = locate_uncached(paths)?;
    let mut seen = SEEN.lock().unwrap_or_else(|p| p.into_inner());
    if cached(&seen).is_none() {
        seen.push((key, runtime.clone()));
    }
    Ok(runtime)
}

fn locate_uncached(paths: &Paths) -> Result<DaprRuntime> {
    let user = || DaprRuntime {
        runtime_path: paths
            .dapr_home
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_default(),
        daprd: paths.user_daprd(),
        version: String::new(),
        origin: Origin::UserInstall,
    };
    if any_dapr()
        && let Some(version) = daprd_version(&paths.user_daprd())
    {
        return Ok(DaprRuntime {
            version,
            origin: Origin::AnyAccepted,
            ..user()
        });
    }
    let user_install = user_install(paths);
    if let UserInstall::Fits { version } = user_install {
        return Ok(DaprRuntime { version, ..user() });
    }
    let daprd = paths.project_daprd();
    match daprd_version(&daprd) {
        Some(version) if version == DAPR_RUNTIME_VERSION => Ok(DaprRuntime {
            runtime_path: paths.project_dapr_root(),
            daprd,
            version,
            origin: Origin::Project,
        }),
        found => bail!(
            "no usable daprd {DAPR_RUNTIME_VERSION}: {} is {}{}: run `cargo xtask provision`",
            daprd.display(),
            match found {
                Some(other) => format!("version {other}"),
                None => "missing".to_owned(),
            },
            match user_install {
                UserInstall::Unfit { reason } => format!(
                    ", and {} is not used ({reason})",
                    paths.user_daprd().display()
                ),
                _ => String::new(),
            }
        ),
    }
}

/// The `dapr` CLI to run: the project's build at [`crate::DAPR_CLI_VERSION`], else an installed
/// one (`~/.dapr/bin/dapr`, then `dapr` on `PATH`), only ever run.
pub fn cli(paths: &Paths) -> Result<PathBuf> {
    let project = paths.project_dapr_cli();
    if project.is_file() {
        return Ok(project);
    }
    installed_cli(paths).with_context(|| {
        format!(
            "the dapr CLI is missing ({} and none installed): run `cargo xtask provision`",
            project.display()
        )
    })
}

/// A `dapr` CLI the user installed: `~/.dapr/bin/dapr`, else `dapr` on `PATH`.
pub(crate) fn installed_cli(paths: &Paths) -> Option<PathBuf> {
    let user = paths.dapr_home.join("bin").join("dapr");
    if user.is_file() {
        return Some(user);
    }
    crate::tools::which("dapr")
}

pub(crate) fn any_dapr() -> bool {
    env::var(ANY_DAPR_ENV).is_ok_and(|v| v == "1" || v.eq_ignore_ascii_case("true"))
}

/// The first line `daprd --version` prints, if it runs.
pub(crate) fn daprd_version(daprd: &Path) -> Option<String> {
    installed_version(daprd, &["--version"], |out| {
        let line = out.lines().next()?.trim();
        (!line.is_empty()).then(|| line.to_owned())
    })
}

/// What `binary args` prints on success, read by `parse`; `None` when it is missing, does
/// not run or fails.
pub(crate) fn installed_version(
    binary: &Path,
    args: &[&str],
    parse: fn(&str) -> Option<String>,
) -> Option<String> {
    if !binary.is_file() {
        return None;
    }
    let output = Command::new(binary)
        .args(args)
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .ok()?;
    if !output.status.success() {
        return None;
    }
    parse(&String::from_utf8_lossy(&output.stdout))
}

/// The needed components (by name) whose implementation is not in the binary. Reads it in
/// chunks that overlap by the longest package path, so no match is split.
pub fn missing_components(daprd: &Path) -> Result<Vec<&'static str>> {
    use std::io::Read as _;
    const CHUNK: usize = 8 << 20;
    let overlap = NEEDED_COMPONENTS
        .iter()
        .map(|(_, package)| package.len())
        .max()
        .unwrap_or(0);
    let mut file = fs::File::open(daprd).with_context(|| format!("opening {}", daprd.display()))?;
    let mut missing: Vec<(&'static str, &'static str)> = NEEDED_COMPONENTS.to_vec();
    let mut buf = vec![0u8; CHUNK + overlap];
    let mut kept = 0;
    loop {
        let read = file
            .read(&mut buf[kept..])
            .with_context(|| format!("reading {}", daprd.display()))?;
        if read == 0 {
            break;
        }
        let filled = kept + read;
        missing.retain(|(_, package)| {
            memchr::memmem::find(&buf[..filled], package.as_bytes()).is_none()
        });
        if missing.is_empty() {
            break;
        }
        kept = overlap.min(filled);
        buf.copy_within(filled - kept..filled, 0);
    }
    Ok(missing.into_iter().map(|(name, _)| name).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_binary_without_the_component_packages_misses_them_all() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("daprd");
        fs::write(
            &file,
            b"github.com/dapr/components-contrib/pubsub/kafka.New\0junk",
        )
        .expect("write");
        let missing = missing_components(&file).expect("readable");
        assert!(!missing.contains(&"pubsub.kafka"), "{missing:?}");
        assert!(missing.contains(&"state.redis"), "{missing:?}");
        assert!(missing.contains(&"conversation.openai"), "{missing:?}");
        assert_eq!(missing.len(), NEEDED_COMPONENTS.len() - 1);
    }

    #[test]
    fn a_package_path_across_a_chunk_boundary_is_found() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("daprd");
        let mut bytes = vec![b'x'; (8 << 20) - 10];
        for (_, package) in NEEDED_COMPONENTS {
            bytes.extend_from_slice(package.as_bytes());
            bytes.extend_from_slice(&[0; 5]);
        }
        fs::write(&file, &bytes).expect("write");
        assert_eq!(
            missing_components(&file).expect("readable"),
            Vec::<&str>::new()
        );
    }
}
