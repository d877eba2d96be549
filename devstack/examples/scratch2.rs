use devstack::*;
#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let paths = Paths::discover()?;
    let mut stack = Stack::start(&paths, StackConfig { data_dir: "/tmp/scratch-stack".into(), ports: Ports::free() }).await?;
    println!("pids {:?}", stack.pids());
    tokio::time::sleep(std::time::Duration::from_secs(600)).await;
    Ok(())
}
