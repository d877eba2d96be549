//! Recurring tasks: completion to next instance.

use super::*;

pub(super) struct Recurring {
    pub(super) completions: usize,
    pub(super) errors: usize,
    pub(super) measured: usize,
    pub(super) missing: usize,
    pub(super) latency: Quantiles,
}

pub(super) async fn recurring_scenario(
    ctx: &Ctx<'_>,
    db: &DatabaseConnection,
) -> Result<Recurring> {
    let total = ((RECURRING_WARMUP + RECURRING_MEASURE).as_millis()
        / RECURRING_INTERVAL.as_millis()) as usize;
    let users: Vec<(String, String)> = (0..RECURRING_USERS)
        .map(|u| {
            let id = format!("rec-{u}");
            Ok((
                ctx.env.token(&id)?,
                format!("{}/api/{id}/tasks", ctx.api_base),
            ))
        })
        .collect::<Result<_>>()?;
    // Create them 8 at a time.
    let mut tasks: Vec<(usize, String)> = Vec::with_capacity(total);
    for chunk in (0..total).collect::<Vec<_>>().chunks(8) {
        let mut handles = Vec::new();
        for &i in chunk {
            let u = i % users.len();
            let (token, url) = users[u].clone();
            let client = ctx.client.clone();
            handles.push(tokio::spawn(async move {
                let body = json!({"title": format!("recurring {i}"), "recurrence": "daily", "due_at": "2030-01-07T09:00:00Z"});
                let v: Value = client.post(&url).bearer_auth(&token).json(&body).send().await?.error_for_status()?.json().await?;
                anyhow::Ok((u, v["id"].as_str().context("created task without id")?.to_owned()))
            }));
        }
        for h in handles {
            tasks.push(h.await??);
        }
    }
    settle(ctx).await?;

    // Completions paced at a fixed rate; the first RECURRING_WARMUP of them are warm-up.
    let t0 = Instant::now();
    let wall0 = Utc::now();
    let mut handles = Vec::new();
    for (n, (u, id)) in tasks.into_iter().enumerate() {
        tokio::time::sleep_until((t0 + RECURRING_INTERVAL * n as u32).into()).await;
        let (token, url) = users[u].clone();
        let client = ctx.client.clone();
        handles.push(tokio::spawn(async move {
            client
                .post(format!("{url}/{id}/complete"))
                .bearer_auth(&token)
                .send()
                .await
                .is_ok_and(|r| r.status().is_success())
        }));
    }
    let mut ok = 0usize;
    for h in handles {
        ok += usize::from(h.await.unwrap_or(false));
    }
    let measure_from = wall0 + chrono::Duration::from_std(RECURRING_WARMUP).unwrap_or_default();

    // Every successful completion must get its next instance.
    let count_sql = "SELECT count(*) FROM tasks WHERE user_id LIKE 'rec-%' AND occurrence = 1";
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut created = 0;
    while Instant::now() < deadline {
        created = scalar_i64(db, count_sql).await?;
        if created as usize >= ok {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let rows = db
        .query_all_raw(Statement::from_string(
            DbBackend::Postgres,
            format!(
                "SELECT (EXTRACT(EPOCH FROM (n.created_at - p.completed_at)) * 1000)::float8 AS ms \
                 FROM tasks p JOIN tasks n ON n.series_id = p.series_id AND n.occurrence = p.occurrence + 1 \
                 WHERE p.user_id LIKE 'rec-%' AND p.occurrence = 0 AND p.completed_at >= '{}'",
                measure_from.to_rfc3339()
            ),
        ))
        .await?;
    let latencies: Vec<f64> = rows
        .iter()
        .filter_map(|r| r.try_get::<f64>("", "ms").ok())
        .collect();
    Ok(Recurring {
        completions: ok,
        errors: total - ok,
        measured: latencies.len(),
        missing: ok.saturating_sub(created as usize),
        latency: Quantiles::of(latencies),
    })
}

pub(super) async fn scalar_i64(db: &DatabaseConnection, sql: &str) -> Result<i64> {
    let row = db
        .query_one_raw(Statement::from_string(DbBackend::Postgres, sql))
        .await?
        .context("no row")?;
    Ok(row.try_get_by_index::<i64>(0)?)
}
