//! `chat-api` [serve] | migrate | token <user_id> [ttl_seconds] | outbox parked|retry |
//! dlq list [<dead-letter topic>] | dlq replay <dead-letter topic> [<topic>]

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
            let usage = "usage: chat-api dlq list [<dead-letter topic>] | \
                         chat-api dlq replay <dead-letter topic> [<topic>]";
            let database_url = chat_api::config::database_url_from_env()?;
            let db = todo_store::connect(database_url.expose(), 2)
                .await
                .context("cannot connect to the database (DATABASE_URL)")?;
            let store = todo_store::DeadLetterStore::new(db);
            match (args.get(1).map(String::as_str), args.get(2)) {
                (Some("list"), only) => {
                    for (dlq, n) in chat_api::dead_letters::held_per_topic(&store).await? {
                        if only.is_some_and(|o| o != dlq) {
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
                (Some("replay"), Some(dlq)) => {
                    let target = match args.get(3) {
                        Some(t) => t.clone(),
                        None => chat_api::dead_letters::origin_of(dlq)
                            .with_context(|| {
                                format!("{dlq} is not a dead-letter topic chat-api keeps; {usage}")
                            })?
                            .to_owned(),
                    };
                    let grpc_port = service_kit::env_or("DAPR_GRPC_PORT", 50001u16)?;
                    let token = service_kit::env_opt::<String>("DAPR_API_TOKEN")?
                        .map(service_kit::Secret::new);
                    let publisher = service_kit::DaprPublisher::new(grpc_port, token);
                    let mut replayed = 0u64;
                    // Up to what is held now: an event dead-lettered again during the replay
                    // waits for the next one instead of making this one go round for ever.
                    let up_to = store.newest_id(dlq).await?;
                    let mut after = 0;
                    loop {
                        let batch = store.pending(dlq, after, up_to, 500).await?;
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
                _ => anyhow::bail!(usage),
            }
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
            "unknown command {other:?}; use: serve | migrate | token <user_id> [ttl_seconds] | outbox parked|retry | dlq list|replay <dead-letter topic> [<topic>]"
        ),
    }
}
