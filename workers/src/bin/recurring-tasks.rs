//! `recurring-tasks`: creates the next instance of a recurring task when one is completed.

use workers::recurring::{self, Settings};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let _telemetry = service_kit::telemetry::init("recurring-tasks")?;
    let settings = Settings::from_env()?;
    let app = recurring::build(&settings).await?;
    app.run_until(service_kit::shutdown::signal()).await
}
