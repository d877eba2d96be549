//! Provisioning never writes to a user's own Dapr install (`~/.dapr`): one of another
//! release or flavour stays byte for byte as it was and the project's build runs instead;
//! one of exactly the pinned release with every needed component is used as it is.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use devstack::dapr_install::{self, Origin, UserInstall};
use devstack::{DAPR_RUNTIME_VERSION, Paths, provision};

/// The real workspace and cache, with `~/.dapr` in `home`.
fn paths_with_home(home: &Path) -> Paths {
    assert!(
        std::env::var_os(dapr_install::ANY_DAPR_ENV).is_none(),
        "run without {}",
        dapr_install::ANY_DAPR_ENV
    );
    let real = Paths::discover().expect("paths");
    Paths {
        dapr_home: home.join(".dapr"),
        ..real
    }
}

/// Every directory and file under `dir`, files with their bytes, with permissions and
/// modification times.
fn snapshot(dir: &Path) -> Vec<(PathBuf, Vec<u8>, u32, SystemTime)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in fs::read_dir(&dir).expect("read_dir") {
            let path = entry.expect("entry").path();
            let meta = fs::symlink_metadata(&path).expect("metadata");
            if meta.is_dir() {
                out.push((
                    path.clone(),
                    Vec::new(),
                    meta.permissions().mode(),
                    meta.modified().expect("mtime"),
                ));
                stack.push(path);
            } else {
                let bytes = fs::read(&path).expect("read");
                out.push((
                    path,
                    bytes,
                    meta.permissions().mode(),
                    meta.modified().expect("mtime"),
                ));
            }
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

fn write_executable(path: &Path, text: &str) {
    fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
    fs::write(path, text).expect("write");
    fs::set_permissions(path, fs::Permissions::from_mode(0o755)).expect("chmod");
    // Another test thread forking while the file was open for writing leaves a child with
    // the write handle until it execs; running the file meanwhile fails with ETXTBSY.
    // Wait until it runs, so the code under test sees the file as it will stay.
    for _ in 0..200 {
        match std::process::Command::new(path).arg("--version").output() {
            Err(err) if err.raw_os_error() == Some(26) => {
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            _ => return,
        }
    }
    panic!("{} stayed busy", path.display());
}

fn provision_dapr(paths: &Paths) {
    provision::daprd(paths).expect("provision daprd");
    provision::dapr_cli(paths).expect("provision the CLI");
    provision::dapr_home(paths).expect("provision the install files");
}

#[test]
fn a_user_daprd_of_another_release_is_left_byte_for_byte_and_the_project_build_runs() {
    let home = tempfile::tempdir().expect("tempdir");
    let paths = paths_with_home(home.path());
    // A daprd of another release, answering `--version` as daprd does, and a CLI beside it.
    write_executable(&paths.user_daprd(), "#!/bin/sh\necho 1.15.3\n");
    write_executable(
        &paths.dapr_home.join("bin").join("dapr"),
        "#!/bin/sh\necho 'CLI version: 1.15.1'\n",
    );
    fs::write(paths.dapr_home.join("config.yaml"), "mine: true\n").expect("config");
    let before = snapshot(&paths.dapr_home);

    assert_eq!(
        dapr_install::user_install(&paths),
        UserInstall::Unfit {
            reason: "daprd 1.15.3".to_owned()
        }
    );
    provision_dapr(&paths);

    assert!(
        snapshot(&paths.dapr_home) == before,
        "provisioning changed {}",
        paths.dapr_home.display()
    );
    let runtime = dapr_install::locate(&paths).expect("locate");
    assert_eq!(runtime.origin, Origin::Project);
    assert_eq!(runtime.daprd, paths.project_daprd());
    assert_eq!(runtime.version, DAPR_RUNTIME_VERSION);
    assert_eq!(runtime.runtime_path, paths.project_dapr_root());
    assert!(
        runtime.describe().contains(DAPR_RUNTIME_VERSION)
            && runtime.describe().contains(devstack::DAPRD_BUILD_TAGS),
        "{}",
        runtime.describe()
    );
    assert_eq!(
        dapr_install::cli(&paths).expect("cli"),
        paths.project_dapr_cli()
    );
}

#[test]
fn a_user_daprd_of_the_pinned_release_without_the_needed_components_is_left_alone() {
    let home = tempfile::tempdir().expect("tempdir");
    let paths = paths_with_home(home.path());
    // The pinned release, but a flavour without the conversation components (this script
    // holds none of the component packages).
    write_executable(
        &paths.user_daprd(),
        &format!(
            "#!/bin/sh\necho {DAPR_RUNTIME_VERSION}\n# github.com/dapr/components-contrib/pubsub/kafka.New\n"
        ),
    );
    let before = snapshot(&paths.dapr_home);

    match dapr_install::user_install(&paths) {
        UserInstall::Unfit { reason } => {
            assert!(
                reason.contains("conversation.openai") && !reason.contains("pubsub.kafka"),
                "{reason}"
            );
        }
        other => panic!("a daprd without conversation components was taken: {other:?}"),
    }
    provision_dapr(&paths);
    assert!(snapshot(&paths.dapr_home) == before);
    assert_eq!(
        dapr_install::locate(&paths).expect("locate").origin,
        Origin::Project
    );
}

#[test]
fn a_user_install_of_the_pinned_release_with_every_component_is_used_as_it_is() {
    let home = tempfile::tempdir().expect("tempdir");
    let paths = paths_with_home(home.path());
    provision::daprd(&paths).expect("provision daprd");
    // The user's install is the very build the project makes (as a link, not a copy).
    fs::create_dir_all(paths.user_daprd().parent().expect("parent")).expect("mkdir");
    std::os::unix::fs::symlink(paths.project_daprd(), paths.user_daprd()).expect("symlink");

    assert_eq!(
        dapr_install::user_install(&paths),
        UserInstall::Fits {
            version: DAPR_RUNTIME_VERSION.to_owned()
        }
    );
    let runtime = dapr_install::locate(&paths).expect("locate");
    assert_eq!(runtime.origin, Origin::UserInstall);
    assert_eq!(runtime.daprd, paths.user_daprd());
    assert_eq!(runtime.runtime_path, home.path());
}

#[test]
fn without_a_user_install_provisioning_creates_nothing_in_its_place() {
    let home = tempfile::tempdir().expect("tempdir");
    let paths = paths_with_home(home.path());
    assert_eq!(dapr_install::user_install(&paths), UserInstall::Missing);
    provision_dapr(&paths);
    assert!(
        !paths.dapr_home.exists(),
        "provisioning created {}",
        paths.dapr_home.display()
    );
    assert_eq!(
        dapr_install::locate(&paths).expect("locate").origin,
        Origin::Project
    );
}
