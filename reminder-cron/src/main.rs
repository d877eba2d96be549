//! `reminder-cron`: on each cron tick, publishes reminders for tasks due soon.

use reminder_cron::Settings;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let _telemetry = service_kit::telemetry::init("reminder-cron")?;
    let settings = Settings::from_env()?;
    let app = reminder_cron::build(&settings).await?;
    app.run_until(service_kit::shutdown::signal()).await
}
