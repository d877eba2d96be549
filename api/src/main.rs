//! `chat-api` [serve] | migrate | token <user_id> [ttl_seconds] [--link <base_url>] |
//! outbox parked|retry |
//! dlq list [<dead-letter topic>] | dlq replay <dead-letter topic> [<topic>]
//! (`chat-api --help` says the same).

use anyhow::Context as _;
use api::{Application, Settings, auth::JwtKeys};
use clap::Parser as _;
use todo_domain::UserId;

/// The Todo REST API and MCP server, its outbox relay, and its administration commands.
#[derive(Debug, clap::Parser)]
#[command(name = "chat-api", version)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, clap::Subcommand)]
enum Command {
    /// Serve the API (the default).
    Serve,
    /// Apply the database migrations (DATABASE_URL) and exit.
    Migrate,
    /// Print a bearer token for a user (JWT_SECRET).
    Token {
        /// The user the token is for.
        user_id: String,
        /// Lifetime in seconds, 1 to 2592000 (30 days).
        #[arg(default_value_t = 24 * 3600)]
        ttl_seconds: u64,
        /// Print a sign-in link to the web page served at this address instead
        /// (`<base_url>/#token=...`: the token rides in the fragment, which browsers never
        /// send to a server).
        #[arg(long, value_name = "BASE_URL")]
        link: Option<String>,
    },
    /// Events the broker refused every time: list them, or queue them again.
    #[command(subcommand)]
    Outbox(OutboxCommand),
    /// Dead letters the consumers gave up on: list them, or publish them again.
    #[command(subcommand)]
    Dlq(DlqCommand),
}

#[derive(Debug, clap::Subcommand)]
enum OutboxCommand {
    /// List the parked events.
    Parked,
    /// Queue every parked event for the relay again.
    Retry,
}

#[derive(Debug, clap::Subcommand)]
enum DlqCommand {
    /// List the dead letters not replayed yet, per dead-letter topic.
    List {
        /// Only this dead-letter topic.
        dlq: Option<String>,
    },
    /// Publish a dead-letter topic's events again (through the sidecar, DAPR_GRPC_PORT).
    Replay {
        /// The dead-letter topic.
        dlq: String,
        /// Where to publish them (default: the topic it is the dead-letter topic of).
        topic: Option<String>,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    match Cli::parse().command.unwrap_or(Command::Serve) {
        Command::Serve => {
            let _telemetry = service_kit::telemetry::init("chat-api")?;
            let settings = Settings::from_env()?;
            let app = Application::build(&settings).await?;
            app.run_until(service_kit::shutdown::signal()).await
        }
        Command::Migrate => {
            let _telemetry = service_kit::telemetry::init("chat-api")?;
            // Only the database: migrating needs no JWT secret or sidecar settings.
            let db = connect().await?;
            todo_store::migrate(&db).await.context("migration failed")?;
            tracing::info!("migrations applied");
            Ok(())
        }
        Command::Outbox(command) => {
            let _telemetry = service_kit::telemetry::init("chat-api")?;
            outbox(command).await
        }
        Command::Dlq(command) => {
            let _telemetry = service_kit::telemetry::init("chat-api")?;
            dlq(command).await
        }
        Command::Token {
            user_id,
            ttl_seconds,
            link,
        } => token(&user_id, ttl_seconds, link.as_deref()),
    }
}

async fn connect() -> anyhow::Result<sea_orm::DatabaseConnection> {
    let database_url = api::config::database_url_from_env()?;
    todo_store::connect(database_url.expose(), 2)
        .await
        .context("cannot connect to the database (DATABASE_URL)")
}

async fn outbox(command: OutboxCommand) -> anyhow::Result<()> {
    let outbox = relay::OutboxStore::new(connect().await?);
    match command {
        OutboxCommand::Parked => {
            let parked = outbox.parked().await?;
            println!("{} parked event(s)", parked.len());
            for e in parked {
                println!(
                    "{} user={} type={} bytes={} attempts={} parked_at={} error={}",
                    e.event_id,
                    e.user_id,
                    e.event_type,
                    e.payload_bytes,
                    e.attempts,
                    e.parked_at.to_rfc3339(),
                    e.last_error.unwrap_or_default()
                );
            }
        }
        OutboxCommand::Retry => {
            let n = outbox.retry_parked().await?;
            println!("re-queued {n} parked event(s); the relay publishes them next");
        }
    }
    Ok(())
}

async fn dlq(command: DlqCommand) -> anyhow::Result<()> {
    let store = todo_store::DeadLetterStore::new(connect().await?);
    match command {
        DlqCommand::List { dlq: only } => {
            for (dlq, n) in api::dead_letters::held_per_topic(&store).await? {
                if only.as_deref().is_some_and(|o| o != dlq) {
                    continue;
                }
                println!("{dlq}: {n} dead letter(s) not replayed");
                for d in store.pending(dlq, 0, i64::MAX, 1_000).await? {
                    println!(
                        "  {} type={} key={} received_at={} bytes={}",
                        d.event_id,
                        d.event_type,
                        d.partition_key,
                        d.received_at.to_rfc3339(),
                        d.payload.len()
                    );
                }
            }
            Ok(())
        }
        DlqCommand::Replay { dlq, topic } => {
            let target = match topic {
                Some(t) => t,
                None => api::dead_letters::origin_of(&dlq)
                    .with_context(|| {
                        format!(
                            "{dlq} is not a dead-letter topic chat-api keeps; name the topic \
                             to publish to: chat-api dlq replay <dead-letter topic> <topic>"
                        )
                    })?
                    .to_owned(),
            };
            let sidecar = service_kit::ServiceSettings::from_env(
                api::config::DEFAULT_PORT,
                api::config::DEFAULT_DAPR_GRPC_PORT,
            )?;
            let grpc_port = sidecar.dapr_grpc_port;
            let publisher = sidecar.publisher();
            let mut replayed = 0u64;
            // Up to what is held now: an event dead-lettered again during the replay
            // waits for the next one instead of making this one go round for ever.
            let up_to = store.newest_id(&dlq).await?;
            let mut after = 0;
            loop {
                let batch = store.pending(&dlq, after, up_to, 500).await?;
                if batch.is_empty() {
                    break;
                }
                for d in batch {
                    after = d.id;
                    service_kit::dead_letters::republish(
                        &publisher,
                        service_kit::dead_letters::Republish {
                            topic: &target,
                            partition_key: &d.partition_key,
                            event_id: &d.event_id,
                            event_type: &d.event_type,
                            payload: &d.payload,
                        },
                    )
                    .await
                    .with_context(|| {
                        format!(
                            "publishing {} to {target} through the sidecar (DAPR_GRPC_PORT {grpc_port}); \
                             {replayed} replayed before it, the rest stay for the next run",
                            d.event_id
                        )
                    })?;
                    store.mark_replayed(&d, chrono::Utc::now()).await?;
                    replayed += 1;
                }
            }
            println!("replayed {replayed} event(s) from {dlq} to {target}");
            Ok(())
        }
    }
}

fn token(user: &str, ttl: u64, link: Option<&str>) -> anyhow::Result<()> {
    let settings = Settings::from_env()?;
    let user = UserId::parse(user).map_err(|e| anyhow::anyhow!("{e}"))?;
    if ttl == 0 || ttl > api::auth::TOKEN_TTL_MAX_SECONDS {
        anyhow::bail!(
            "ttl_seconds must be 1 to {} (30 days)",
            api::auth::TOKEN_TTL_MAX_SECONDS
        );
    }
    let token = JwtKeys::new(&settings.jwt_secret).mint(
        &user,
        jsonwebtoken::get_current_timestamp(),
        ttl,
    )?;
    match link {
        Some(base) => println!("{}", api::web::sign_in_link(base, &token)?),
        None => println!("{token}"),
    }
    Ok(())
}
