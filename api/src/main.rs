//! `chat-api` [serve] | migrate | token <user_id> [ttl_seconds] | outbox parked|retry |
//! dlq replay <dead-letter topic> [<topic>]

use anyhow::Context as _;
use chat_api::{Application, Settings, auth::JwtKeys};
use todo_domain::UserId;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        None | Some("serve") => {
            service_kit::telemetry::init("chat-api");
            let settings = Settings::from_env()?;
            let app = Application::build(&settings).await?;
            app.run_until(service_kit::shutdown::signal()).await
        }
        Some("migrate") => {
            service_kit::telemetry::init("chat-api");
            // Only the database: migrating needs no JWT secret or sidecar settings.
            let database_url = chat_api::config::database_url_from_env()?;
            let db = todo_store::connect(database_url.expose(), 2)
                .await
                .context("cannot connect to the database")?;
            todo_store::migrate(&db).await.context("migration failed")?;
            tracing::info!("migrations applied");
            Ok(())
        }
        Some("outbox") => {
            service_kit::telemetry::init("chat-api");
            let database_url = chat_api::config::database_url_from_env()?;
            let db = todo_store::connect(database_url.expose(), 2)
                .await
                .context("cannot connect to the database (DATABASE_URL)")?;
            let outbox = todo_store::OutboxStore::new(db);
            match args.get(1).map(String::as_str) {
                Some("parked") => {
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
                Some("retry") => {
                    let n = outbox.retry_parked().await?;
                    println!("re-queued {n} parked event(s); the relay publishes them next");
                }
                _ => anyhow::bail!("usage: chat-api outbox parked | chat-api outbox retry"),
            }
            Ok(())
        }
        Some("dlq") => {
            service_kit::telemetry::init("chat-api");
            let usage = "usage: chat-api dlq replay <dead-letter topic> [<topic>] \
                         (e.g. chat-api dlq replay task-events-dlq)";
            let (Some("replay"), Some(dlq)) = (args.get(1).map(String::as_str), args.get(2)) else {
                anyhow::bail!(usage);
            };
            let target = match args.get(3) {
                Some(t) => t.clone(),
                None => dlq
                    .strip_suffix("-dlq")
                    .with_context(|| {
                        format!("{dlq} does not end in -dlq: name the topic ({usage})")
                    })?
                    .to_owned(),
            };
            let grpc_port = service_kit::env_or("DAPR_GRPC_PORT", 50001u16)?;
            let token =
                service_kit::env_opt::<String>("DAPR_API_TOKEN")?.map(service_kit::Secret::new);
            let idle = std::time::Duration::from_secs(service_kit::env_or(
                "DLQ_REPLAY_IDLE_SECONDS",
                10u64,
            )?);
            let done =
                service_kit::dead_letters::replay(grpc_port, token, dlq, &target, idle).await?;
            println!(
                "replayed {} event(s) from {dlq} to {target}{}",
                done.republished,
                if done.by_type.is_empty() {
                    String::new()
                } else {
                    let mut types: Vec<_> = done.by_type.iter().collect();
                    types.sort();
                    format!(
                        " ({})",
                        types
                            .iter()
                            .map(|(t, n)| format!("{t}: {n}"))
                            .collect::<Vec<_>>()
                            .join(", ")
                    )
                }
            );
            Ok(())
        }
        Some("token") => {
            let settings = Settings::from_env()?;
            let user = args
                .get(1)
                .context("usage: chat-api token <user_id> [ttl_seconds]")?;
            let user = UserId::parse(user).map_err(|e| anyhow::anyhow!("{e}"))?;
            let ttl: u64 = args
                .get(2)
                .map(|s| s.parse())
                .transpose()
                .context("ttl_seconds must be a number")?
                .unwrap_or(24 * 3600);
            if ttl == 0 || ttl > chat_api::auth::TOKEN_TTL_MAX_SECONDS {
                anyhow::bail!(
                    "ttl_seconds must be 1 to {} (30 days)",
                    chat_api::auth::TOKEN_TTL_MAX_SECONDS
                );
            }
            let token = JwtKeys::new(&settings.jwt_secret).mint(
                &user,
                jsonwebtoken::get_current_timestamp(),
                ttl,
            )?;
            println!("{token}");
            Ok(())
        }
        Some(other) => anyhow::bail!(
            "unknown command {other:?}; use: serve | migrate | token <user_id> [ttl_seconds] | outbox parked|retry | dlq replay <dead-letter topic> [<topic>]"
        ),
    }
}
