//! `deploy-check [kustomize dir ...]` (default `k8s/overlays/minikube`): renders each
//! directory and checks it against the pinned API schemas and the cross-reference rules.
//! Exit status 1 when anything is wrong.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

fn main() -> ExitCode {
    match run() {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("deploy-check: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> anyhow::Result<bool> {
    let paths = deploy_check::paths()?;
    let mut dirs: Vec<PathBuf> = std::env::args_os().skip(1).map(PathBuf::from).collect();
    if dirs.is_empty() {
        dirs.push(paths.root.join("k8s/overlays/minikube"));
    }
    let started = Instant::now();
    let validator = deploy_check::Validator::pinned(&paths.cache)?;
    let mut ok = true;
    for dir in dirs {
        let (objects, problems) = deploy_check::check_overlay(&validator, &dir)?;
        if problems.is_empty() {
            println!(
                "{}: {} objects match the API schemas ({}) and their references resolve ({:.1}s)",
                dir.display(),
                objects.len(),
                validator.versions(),
                started.elapsed().as_secs_f64()
            );
        } else {
            ok = false;
            eprintln!("{}: {} problems:", dir.display(), problems.len());
            for problem in problems {
                eprintln!("  {problem}");
            }
        }
    }
    Ok(ok)
}
