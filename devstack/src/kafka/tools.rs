//! Kafka's own command-line tools (topic, config, offset and consumer-group commands, the
//! console consumer), each run as `java -cp 'libs/*' <main class>` with a small heap and
//! their log output cut down to warnings.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

use crate::paths::Paths;
use crate::tools::java_command;

/// The command-line tools are short-lived: a small heap and a fast-starting JIT.
const TOOL_JVM: &[&str] = &[
    "-Xmx256m",
    "-XX:+UseSerialGC",
    "-XX:TieredStopAtLevel=1",
    "-Xshare:auto",
];
const TOOLS_LOG_CONFIG: &str = "\
# Written by devstack: Kafka's command-line tools only report warnings and errors.
status = warn
appender.err.type = Console
appender.err.name = STDERR
appender.err.target = SYSTEM_ERR
appender.err.layout.type = PatternLayout
appender.err.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = WARN
rootLogger.appenderRef.err.ref = STDERR
";

fn tools_log_config_path(paths: &Paths) -> PathBuf {
    paths.kafka_home().join("tools-log4j2.properties")
}

/// Writes the tools' log4j2 configuration into the Kafka home (atomically: parallel tests
/// may call this at once).
pub(crate) fn write_tools_log_config(paths: &Paths) -> Result<()> {
    let path = tools_log_config_path(paths);
    if fs::read_to_string(&path).is_ok_and(|text| text == TOOLS_LOG_CONFIG) {
        return Ok(());
    }
    write_atomically(&path, TOOLS_LOG_CONFIG)
}

pub(super) fn write_atomically(path: &Path, contents: &str) -> Result<()> {
    let dir = path.parent().context("path has no parent")?;
    fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let partial = dir.join(format!(
        ".{}.{}",
        path.file_name().unwrap_or_default().to_string_lossy(),
        unique_suffix()
    ));
    fs::write(&partial, contents).with_context(|| format!("writing {}", partial.display()))?;
    fs::rename(&partial, path).with_context(|| format!("writing {}", path.display()))
}

/// `<pid>-<uuid>`: a name no other process, or other caller in this one, uses at once.
pub(super) fn unique_suffix() -> String {
    format!("{}-{}", std::process::id(), uuid::Uuid::new_v4().simple())
}

pub(super) fn classpath(paths: &Paths) -> Result<String> {
    let libs = paths.kafka_libs();
    if !libs
        .join(format!("kafka_2.13-{}.jar", crate::versions::KAFKA_VERSION))
        .is_file()
    {
        bail!(
            "the Kafka jars are not in {}: run `cargo xtask provision` (devstack::provision::kafka)",
            libs.display()
        );
    }
    Ok(format!("{}/*", libs.display()))
}

/// `java … <main_class>` for one of Kafka's command-line tools.
pub(crate) fn tool_command(paths: &Paths, main_class: &str) -> Result<tokio::process::Command> {
    let classpath = classpath(paths)?;
    write_tools_log_config(paths)?;
    let mut cmd = java_command();
    cmd.args(TOOL_JVM)
        .arg(format!(
            "-Dlog4j2.configurationFile={}",
            tools_log_config_path(paths).display()
        ))
        .arg("-cp")
        .arg(classpath)
        .arg(main_class);
    Ok(tokio::process::Command::from(cmd))
}
