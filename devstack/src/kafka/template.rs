//! A broker's data directory, formatted and holding a set of topics, made once per machine
//! and copied for each fresh stack: such a stack starts without the format tool's JVM and
//! one topic tool JVM per topic (about 4 s of every end-to-end test).

use std::{
    fs,
    hash::{Hash as _, Hasher as _},
    path::{Path, PathBuf},
};

use anyhow::{Context as _, Result};

use super::{
    BrokerJvm, BrokerPorts, RETENTION_MS, admin::create_topics, broker::BrokerDirs, start_broker,
    tools::unique_suffix,
};
use crate::{Paths, process::free_port, tools::copy_tree};

/// Bumped when what a template holds changes in a way its key does not show.
const LAYOUT: u32 = 1;

/// Where the template for `topics` with `partitions` each lives (made by [`seed`]).
fn template_dir(paths: &Paths, topics: &[&str], partitions: u32) -> PathBuf {
    // The key names everything the directory depends on: Kafka's jars, the topics, their
    // partitions and retention.
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    (LAYOUT, paths.kafka_home(), topics, partitions, RETENTION_MS).hash(&mut hasher);
    paths
        .cache
        .join(format!("kafka-template-{:016x}", hasher.finish()))
}

/// Puts a formatted broker directory holding `topics` (each with `partitions`) where a
/// stack in `data_dir` keeps its broker, so its first start needs neither a format nor
/// topic creation. Makes the template first if this machine has none: a broker started
/// on free ports, the topics created, the broker stopped in order.
pub async fn seed(paths: &Paths, data_dir: &Path, topics: &[&str], partitions: u32) -> Result<()> {
    let template = template_dir(paths, topics, partitions);
    if !template.join("complete").is_file() {
        make(paths, &template, topics, partitions)
            .await
            .with_context(|| format!("making the broker template {}", template.display()))?;
    }
    let target = BrokerDirs::new(data_dir);
    copy_tree(&BrokerDirs::new(&template).root, &target.root)
        .with_context(|| format!("copying the broker template to {}", target.root.display()))
}

async fn make(paths: &Paths, template: &Path, topics: &[&str], partitions: u32) -> Result<()> {
    // Made beside its final place and renamed into it: a crash leaves no half template, and
    // a second maker at the same time (another process, or another test of this one) only
    // wastes its own work.
    let building = template.with_extension(format!("building-{}", unique_suffix()));
    fs::create_dir_all(&building)?;
    let ports = BrokerPorts {
        kafka: free_port(),
        controller: free_port(),
    };
    let mut broker = start_broker(
        paths,
        &building,
        ports,
        &building.join("kafka.log"),
        &building.join("kafka.pid"),
        BrokerJvm::QuickStart,
    )
    .await?;
    let created = create_topics(
        paths,
        &format!("127.0.0.1:{}", ports.kafka),
        topics,
        partitions,
    )
    .await;
    broker.shutdown().await;
    created?;
    fs::write(building.join("complete"), "")?;
    match fs::rename(&building, template) {
        Ok(()) => Ok(()),
        Err(_) if template.join("complete").is_file() => {
            fs::remove_dir_all(&building)?;
            Ok(())
        }
        Err(e) => Err(e).with_context(|| format!("renaming to {}", template.display())),
    }
}
