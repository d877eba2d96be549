//! Images made on this machine, without a registry: buildah (vfs storage in the cache) from
//! scratch, from a Debian base made here with debootstrap, or from another local image;
//! saved as an archive and imported into the node's containerd.

use std::{
    fs,
    io::Write as _,
    path::{Path, PathBuf},
    process::{Command, Stdio},
};

use anyhow::{Context as _, Result, bail};

use super::{config, host};

/// The Debian release of every image made from a base (the machine's own, so binaries built
/// here find the glibc they were linked against).
pub const DEBIAN_RELEASE: &str = "bookworm";
/// The Debian base: `debootstrap --variant=minbase`, as slim as `debian:<release>-slim`.
pub const DEBIAN_BASE: &str = "localhost/todo-eda/debian:bookworm-slim";
const DEBIAN_MIRROR: &str = "http://deb.debian.org/debian";

/// buildah's global options for its storage under `store` (vfs: no overlay mounts to clean
/// up).
fn storage_options(store: &Path) -> Result<[String; 6]> {
    let path = |dir: &str| {
        store
            .join(dir)
            .to_str()
            .map(str::to_owned)
            .context("store path")
    };
    Ok([
        "--root".into(),
        path("root")?,
        "--runroot".into(),
        path("run")?,
        "--storage-driver".into(),
        "vfs".into(),
    ])
}

/// buildah with its storage under `store`; its output.
fn buildah(store: &Path, args: &[&str]) -> Result<String> {
    let options = storage_options(store)?;
    let mut all: Vec<&str> = options.iter().map(String::as_str).collect();
    all.extend_from_slice(args);
    host::output("buildah", &all)
}

/// Runs `command` with its output appended to `log`; fails naming `what`.
fn run_logged(command: &mut Command, log: &Path, what: &str) -> Result<()> {
    let out = fs::OpenOptions::new().create(true).append(true).open(log)?;
    let status = command
        .stdin(Stdio::null())
        .stdout(out.try_clone()?)
        .stderr(out)
        .status()
        .with_context(|| format!("running {what}"))?;
    if !status.success() {
        bail!("{what} failed ({status}); its log: {}", log.display());
    }
    Ok(())
}

/// One instruction of an image's recipe, as a Dockerfile's does it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Step {
    /// `RUN`: a shell command in the image (chroot isolation, the machine's network), its
    /// output in the build log.
    Run(String),
    /// `COPY`: a file or directory of the machine to a path in the image.
    Copy(PathBuf, String),
    Env(String, String),
    /// `USER`, `uid[:gid]`.
    User(String),
    /// `ENTRYPOINT` and `CMD`, in JSON (exec) form.
    Entrypoint(String),
    Cmd(String),
    Expose(String),
}

/// What a distroless `nonroot` image has in /etc.
const PASSWD: &str = "root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n";
const GROUP: &str = "root:x:0:\nnonroot:x:65532:\n";

/// The directory of the distroless `passwd` and `group` files, written once (their
/// modification time is part of the images' inputs).
pub fn distroless_etc(store: &Path) -> Result<PathBuf> {
    let etc = store.join("distroless-etc");
    fs::create_dir_all(&etc)?;
    for (file, text) in [("passwd", PASSWD), ("group", GROUP)] {
        if fs::read_to_string(etc.join(file)).ok().as_deref() != Some(text) {
            fs::write(etc.join(file), text)?;
        }
    }
    Ok(etc)
}

/// An image of one static Go program at `at`, as the official images of Dapr, KEDA and
/// metrics-server are (distroless `nonroot`): the user 65532 with its passwd and group
/// entries (Dapr's programs check them), CA certificates and time zones.
pub fn distroless_steps(binary: &Path, at: &str, etc: &Path) -> Vec<Step> {
    vec![
        Step::Copy(binary.to_path_buf(), at.to_owned()),
        Step::Copy(etc.join("passwd"), "/etc/passwd".into()),
        Step::Copy(etc.join("group"), "/etc/group".into()),
        Step::Copy(
            "/etc/ssl/certs/ca-certificates.crt".into(),
            "/etc/ssl/certs/ca-certificates.crt".into(),
        ),
        Step::Copy("/usr/share/zoneinfo".into(), "/usr/share/zoneinfo".into()),
        Step::Entrypoint(format!(r#"["{at}"]"#)),
        Step::User("65532:65532".into()),
    ]
}

/// The label that records what an image was made of ([`inputs_stamp`]).
const INPUTS_LABEL: &str = "todo-eda.inputs";

/// A digest of an image's inputs: the image it starts from (its id), every step, and each
/// copied file's size and modification time (a directory's own).
fn inputs_stamp(from_id: &str, steps: &[Step]) -> String {
    use std::hash::{Hash as _, Hasher as _};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    from_id.hash(&mut hasher);
    for step in steps {
        step.hash(&mut hasher);
        if let Step::Copy(from, _) = step
            && let Ok(meta) = fs::metadata(from)
        {
            meta.len().hash(&mut hasher);
            meta.modified().ok().hash(&mut hasher);
        }
    }
    format!("{:016x}", hasher.finish())
}

/// The id of image `name` in the store, if it is there.
fn image_id(store: &Path, name: &str) -> Option<String> {
    buildah(
        store,
        &[
            "images",
            "--noheading",
            "--no-trunc",
            "--format",
            "{{.ID}}",
            name,
        ],
    )
    .ok()
    .map(|id| id.trim().to_owned())
    .filter(|id| !id.is_empty())
}

/// Makes image `name` from `from` (`scratch` or an image in the store) by `steps`, unless the
/// store has it made from the same inputs (answers whether it made it); `RUN` output goes to
/// `log`.
pub fn build(store: &Path, name: &str, from: &str, steps: &[Step], log: &Path) -> Result<bool> {
    let from_id = if from == "scratch" {
        "scratch".to_owned()
    } else {
        image_id(store, from)
            .with_context(|| format!("{name} starts from {from}, which is not made"))?
    };
    let inputs = inputs_stamp(&from_id, steps);
    let made = buildah(
        store,
        &[
            "inspect",
            "--type",
            "image",
            "--format",
            &format!("{{{{index .OCIv1.Config.Labels \"{INPUTS_LABEL}\"}}}}"),
            name,
        ],
    );
    if made.is_ok_and(|label| label.trim() == inputs) {
        return Ok(false);
    }
    let container = buildah(store, &["from", "--pull-never", from])?
        .trim()
        .to_owned();
    let result = apply(store, &container, steps, log);
    let result = result.and_then(|()| {
        buildah(
            store,
            &[
                "config",
                "--label",
                &format!("{INPUTS_LABEL}={inputs}"),
                &container,
            ],
        )?;
        buildah(store, &["commit", "--rm", &container, name]).map(drop)
    });
    if result.is_err() {
        let _ = buildah(store, &["rm", &container]);
    }
    result
        .map(|()| true)
        .with_context(|| format!("making image {name} (build log: {})", log.display()))
}

fn apply(store: &Path, container: &str, steps: &[Step], log: &Path) -> Result<()> {
    for step in steps {
        match step {
            Step::Run(command) => run_in(store, container, command, log)?,
            Step::Copy(from, to) => {
                buildah(
                    store,
                    &["copy", container, from.to_str().context("file path")?, to],
                )?;
            }
            Step::Env(key, value) => {
                buildah(
                    store,
                    &["config", "--env", &format!("{key}={value}"), container],
                )?;
            }
            Step::User(user) => {
                buildah(store, &["config", "--user", user, container])?;
            }
            Step::Entrypoint(json) => {
                buildah(store, &["config", "--entrypoint", json, container])?;
            }
            Step::Cmd(json) => {
                buildah(store, &["config", "--cmd", json, container])?;
            }
            Step::Expose(port) => {
                buildah(store, &["config", "--port", port, container])?;
            }
        }
    }
    Ok(())
}

/// `buildah run` of a shell command, as a Dockerfile's `RUN` (`/bin/sh -c`, the image's
/// environment).
fn run_in(store: &Path, container: &str, command: &str, log: &Path) -> Result<()> {
    let mut out = fs::OpenOptions::new().create(true).append(true).open(log)?;
    writeln!(out, "\n$ RUN {command}")?;
    let mut run = Command::new("buildah");
    run.args(storage_options(store)?)
        .args(["run", "--isolation", "chroot", "--network", "host"])
        .args([container, "--", "/bin/sh", "-c", command]);
    run_logged(&mut run, log, &format!("`RUN {command}`"))
}

/// The Debian base image ([`DEBIAN_BASE`]): debootstrap's minimal variant from the Debian
/// archive, without the downloaded packages; made once (about 90 s).
pub fn debian_base(store: &Path, log: &Path) -> Result<()> {
    if image_id(store, DEBIAN_BASE).is_some() {
        return Ok(());
    }
    let work = store.join("work");
    let rootfs = work.join("debian-rootfs");
    let _ = fs::remove_dir_all(&rootfs);
    fs::create_dir_all(&work)?;
    run_logged(
        Command::new("debootstrap")
            .args(["--variant=minbase", DEBIAN_RELEASE])
            .arg(&rootfs)
            .arg(DEBIAN_MIRROR),
        log,
        &format!("debootstrap of Debian {DEBIAN_RELEASE}"),
    )?;
    // As in container builds: no package starts its service in the image.
    let policy = rootfs.join("usr/sbin/policy-rc.d");
    fs::write(&policy, "#!/bin/sh\nexit 101\n")?;
    fs::set_permissions(&policy, std::os::unix::fs::PermissionsExt::from_mode(0o755))?;
    for dir in ["var/cache/apt/archives", "var/lib/apt/lists"] {
        if let Ok(entries) = fs::read_dir(rootfs.join(dir)) {
            for entry in entries.flatten() {
                if entry.file_type().is_ok_and(|t| t.is_file()) {
                    let _ = fs::remove_file(entry.path());
                }
            }
        }
    }
    let tar = work.join("debian-rootfs.tar");
    host::run(
        "tar",
        &[
            "-C",
            rootfs.to_str().context("path")?,
            "-cf",
            tar.to_str().context("path")?,
            ".",
        ],
    )?;
    let container = buildah(store, &["from", "scratch"])?.trim().to_owned();
    let made = buildah(
        store,
        &["add", &container, tar.to_str().context("path")?, "/"],
    )
    .and_then(|_| buildah(store, &["config", "--cmd", r#"["bash"]"#, &container]))
    .and_then(|_| buildah(store, &["commit", "--rm", &container, DEBIAN_BASE]));
    if made.is_err() {
        let _ = buildah(store, &["rm", &container]);
    }
    let _ = fs::remove_file(&tar);
    let _ = fs::remove_dir_all(&rootfs);
    made.map(drop)
}

/// Saves `name` from buildah's store and imports it into the node's containerd, unless
/// that containerd has it already: `loaded` (a directory of the node's state, gone with
/// `down` as containerd's images are) records the buildah image id each name was loaded as.
pub fn load(store: &Path, name: &str, ctr: &Path, loaded: &Path) -> Result<()> {
    let id = image_id(store, name).with_context(|| format!("image {name} is not made"))?;
    let stamp_name = name.replace(['/', ':'], "_");
    let stamp = loaded.join(&stamp_name);
    if std::fs::read_to_string(&stamp).is_ok_and(|s| s == id) {
        return Ok(());
    }
    let archive: PathBuf = store.join(format!("{}.tar", stamp_name));
    let _ = std::fs::remove_file(&archive);
    buildah(
        store,
        &[
            "push",
            name,
            &format!("docker-archive:{}:{name}", archive.display()),
        ],
    )?;
    host::run(
        ctr.to_str().context("ctr path")?,
        &[
            "--address",
            &config::containerd_socket(),
            "-n",
            "k8s.io",
            "images",
            "import",
            archive.to_str().context("archive path")?,
        ],
    )?;
    let _ = std::fs::remove_file(&archive);
    std::fs::create_dir_all(loaded)?;
    std::fs::write(&stamp, id)?;
    Ok(())
}
