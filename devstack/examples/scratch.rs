use std::time::{Duration, Instant};
use devstack::*;
#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let paths = Paths::discover()?;
    let dir = std::path::PathBuf::from("/tmp/scratch-stack");
    let t = Instant::now();
    let stack = Stack::start(&paths, StackConfig { data_dir: dir.clone(), ports: Ports::free() }).await?;
    println!("started in {:?}", t.elapsed());
    let t = Instant::now();
    stack.create_topics(&["task-events", "reminders", "task-events-dlq", "reminders-dlq"], 3).await?;
    println!("4 topics in {:?}", t.elapsed());
    let t = Instant::now();
    let r = consume(&stack.kafka_bootstrap(), &paths, "reminders", 1, Duration::from_secs(3)).await?;
    println!("empty consume {:?} in {:?}", r, t.elapsed());
    let res = dir.join("res"); std::fs::create_dir_all(&res)?;
    let mut sc = Sidecar::start(&paths, SidecarConfig::new("x", &res, &dir.join("daprd.log"))).await?;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let t = Instant::now();
    sc.stop();
    println!("daprd stop {:?}", t.elapsed());
    let t = Instant::now();
    stack.stop().await?;
    println!("stopped in {:?}", t.elapsed());
    Ok(())
}
