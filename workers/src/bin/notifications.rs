//! `notifications`: logs each reminder once.

use workers::notifications::{self, Settings};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let _telemetry = service_kit::telemetry::init("notifications")?;
    let settings = Settings::from_env()?;
    let app = notifications::build(&settings).await?;
    app.run_until(service_kit::shutdown::signal()).await
}
