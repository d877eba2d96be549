//! The service images as the repository's Dockerfile makes them, without a registry: its
//! `runtime` stage and each service's stage, read from the file and replayed with buildah on
//! the Debian base made here, with the binaries of this machine's `cargo build --release` in
//! place of the builder stage's (the same workspace, toolchain and Debian release).
//!
//! Only the instructions those stages use are understood; anything else fails loudly, so the
//! Dockerfile and the images made here cannot drift apart unnoticed.

use std::path::Path;

use anyhow::{Context as _, Result, bail, ensure};

use super::images::{DEBIAN_RELEASE, Step};

/// One `FROM ... AS name` stage: its base and its instructions (keyword, arguments).
#[derive(Debug)]
struct Stage {
    name: String,
    from: String,
    instructions: Vec<(String, String)>,
}

/// The Dockerfile's logical lines: continuations joined, comments and blank lines dropped.
fn logical_lines(text: &str) -> Vec<String> {
    let mut lines = Vec::new();
    let mut current = String::new();
    for line in text.lines() {
        let trimmed = line.trim();
        if trimmed.starts_with('#') || (trimmed.is_empty() && current.is_empty()) {
            continue;
        }
        match trimmed.strip_suffix('\\') {
            Some(head) => {
                current.push_str(head.trim_end());
                current.push(' ');
            }
            None => {
                current.push_str(trimmed);
                lines.push(std::mem::take(&mut current).trim().to_owned());
            }
        }
    }
    if !current.trim().is_empty() {
        lines.push(current.trim().to_owned());
    }
    lines
}

/// `(name, default)` of the global `ARG`s (before the first `FROM`).
type Args = Vec<(String, String)>;

/// The global `ARG`s with their defaults, and the stages.
fn parse(text: &str) -> Result<(Args, Vec<Stage>)> {
    let mut args = Vec::new();
    let mut stages: Vec<Stage> = Vec::new();
    for line in logical_lines(text) {
        let (keyword, rest) = line.split_once(char::is_whitespace).unwrap_or((&line, ""));
        let keyword = keyword.to_ascii_uppercase();
        let rest = rest.trim().to_owned();
        if keyword == "FROM" {
            let words: Vec<&str> = rest.split_whitespace().collect();
            let [from, as_, name] = words[..] else {
                bail!("Dockerfile: `FROM {rest}` has no `AS <name>`");
            };
            ensure!(as_.eq_ignore_ascii_case("as"), "Dockerfile: `FROM {rest}`");
            stages.push(Stage {
                name: name.to_owned(),
                from: from.to_owned(),
                instructions: Vec::new(),
            });
        } else if let Some(stage) = stages.last_mut() {
            stage.instructions.push((keyword, rest));
        } else if keyword == "ARG" {
            let (name, default) = rest.split_once('=').unwrap_or((&rest, ""));
            args.push((name.to_owned(), default.to_owned()));
        }
    }
    Ok((args, stages))
}

/// `K=V K2=V2` of an `ENV` (values without quotes or spaces, as this Dockerfile has them).
fn env_pairs(rest: &str) -> Result<Vec<(String, String)>> {
    ensure!(
        !rest.contains(['"', '\'']),
        "Dockerfile: quoted `ENV {rest}` is not understood here"
    );
    rest.split_whitespace()
        .map(|pair| {
            pair.split_once('=')
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .with_context(|| format!("Dockerfile: `ENV {rest}` is not in K=V form"))
        })
        .collect()
}

fn stage<'a>(stages: &'a [Stage], name: &str) -> Result<&'a Stage> {
    stages
        .iter()
        .find(|s| s.name == name)
        .with_context(|| format!("the Dockerfile has no stage `{name}`"))
}

/// The steps of the image of `service` (a Dockerfile target), on the Debian base, with the
/// binaries taken from `binaries` (a `target/release` directory).
pub fn service_steps(text: &str, service: &str, binaries: &Path) -> Result<Vec<Step>> {
    let (args, stages) = parse(text)?;
    let target = stage(&stages, service)?;
    let runtime = stage(&stages, &target.from)?;
    let release = args
        .iter()
        .find(|(name, _)| name == "DEBIAN_RELEASE")
        .map(|(_, default)| default.as_str());
    ensure!(
        release == Some(DEBIAN_RELEASE) && runtime.from == "debian:${DEBIAN_RELEASE}-slim",
        "the Dockerfile's runtime stage is FROM {} with DEBIAN_RELEASE {release:?}; the images \
         made here start from debian {DEBIAN_RELEASE}-slim",
        runtime.from
    );
    let mut steps = Vec::new();
    let instructions = [runtime, target]
        .into_iter()
        .flat_map(|stage| stage.instructions.iter().map(move |i| (&stage.name, i)));
    for (stage, (keyword, rest)) in instructions {
        match keyword.as_str() {
            "RUN" => steps.push(Step::Run(rest.clone())),
            "ENV" => steps.extend(env_pairs(rest)?.into_iter().map(|(k, v)| Step::Env(k, v))),
            "USER" => steps.push(Step::User(rest.clone())),
            "EXPOSE" => steps.push(Step::Expose(rest.clone())),
            "ENTRYPOINT" => steps.push(Step::Entrypoint(rest.clone())),
            "CMD" => steps.push(Step::Cmd(rest.clone())),
            "COPY" => {
                let words: Vec<&str> = rest.split_whitespace().collect();
                let ["--from=builder", from, to] = words[..] else {
                    bail!("Dockerfile: `COPY {rest}` in stage {stage} is not understood here");
                };
                let binary = from
                    .strip_prefix("/out/")
                    .with_context(|| format!("Dockerfile: `COPY {rest}`: not from /out/"))?;
                steps.push(Step::Copy(binaries.join(binary), to.to_owned()));
            }
            other => bail!(
                "Dockerfile: `{other} {rest}` in stage {stage} is not understood by the images made here"
            ),
        }
    }
    Ok(steps)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dockerfile() -> String {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../Dockerfile");
        std::fs::read_to_string(path).expect("the repository's Dockerfile")
    }

    #[test]
    fn every_service_stage_of_the_dockerfile_is_understood() {
        let bin = Path::new("/release");
        for service in [
            "chat-api",
            "recurring-tasks",
            "notifications",
            "reminder-cron",
        ] {
            let steps = service_steps(&dockerfile(), service, bin).expect(service);
            assert!(
                steps.contains(&Step::Copy(
                    bin.join(service),
                    format!("/usr/local/bin/{service}")
                )),
                "{service}: {steps:?}"
            );
            assert!(
                steps.contains(&Step::User("10001:10001".into())),
                "{steps:?}"
            );
            assert!(steps.contains(&Step::Env("APP_HOST".into(), "0.0.0.0".into())));
            assert!(
                steps
                    .iter()
                    .any(|s| matches!(s, Step::Run(r) if r.contains("useradd"))),
                "{steps:?}"
            );
        }
        let api = service_steps(&dockerfile(), "chat-api", bin).expect("chat-api");
        assert!(api.contains(&Step::Cmd(r#"["serve"]"#.into())));
        assert!(api.contains(&Step::Env("APP_PORT".into(), "3000".into())));
    }

    #[test]
    fn what_is_not_understood_fails_loudly() {
        let base = "ARG DEBIAN_RELEASE=bookworm\nFROM debian:${DEBIAN_RELEASE}-slim AS runtime\n";
        let err = service_steps(
            &format!("{base}FROM runtime AS svc\nWORKDIR /x\n"),
            "svc",
            Path::new("/r"),
        )
        .expect_err("WORKDIR");
        assert!(format!("{err:#}").contains("WORKDIR /x"), "{err:#}");
        let err = service_steps(
            "ARG DEBIAN_RELEASE=trixie\nFROM debian:${DEBIAN_RELEASE}-slim AS runtime\nFROM runtime AS svc\n",
            "svc",
            Path::new("/r"),
        )
        .expect_err("another release");
        assert!(format!("{err:#}").contains("trixie"), "{err:#}");
        assert!(service_steps(base, "nope", Path::new("/r")).is_err());
        let joined = logical_lines("RUN a \\\n  # note\n  && b\nENV A=1 \\\n    B=2\n");
        assert_eq!(joined, ["RUN a && b", "ENV A=1 B=2"]);
    }
}
