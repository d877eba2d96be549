//! The chat's own cost: turns of `POST /api/{user_id}/chat` through a chat-api replica whose
//! sidecar's `conversation.openai` component talks to a scripted OpenAI-compatible server
//! that answers at once ([`e2e::model::ScriptedModel`]), so what is measured is chat-api
//! and daprd, not a model. Against a REST create on the same replica, in the same run.

use e2e::model::{ScriptedModel, Step};

use super::*;

const WARMUP_TURNS: usize = 20;
const MEASURED_TURNS: usize = 200;
/// New conversations opened to see what an open conversation costs in chat-api's memory.
const CONVERSATIONS: usize = 1000;
const CONVERSATION_CONCURRENCY: usize = 8;

pub(super) struct ChatBench {
    /// A REST create, one at a time (the baseline).
    pub(super) create: Quantiles,
    /// A turn the model answers with text: one model call.
    pub(super) text_turn: Quantiles,
    /// A turn with one tool call (`add_task`): two model calls and a task write.
    pub(super) tool_turn: Quantiles,
    pub(super) errors: usize,
    /// chat-api's resident memory before and after opening [`CONVERSATIONS`] conversations.
    pub(super) rss_before_kb: u64,
    pub(super) rss_after_kb: u64,
    pub(super) conversations: usize,
}

async fn timed(client: &reqwest::Client, url: &str, token: &str, body: &Value) -> Result<Duration> {
    let started = Instant::now();
    let response = client
        .post(url)
        .bearer_auth(token)
        .json(body)
        .send()
        .await?;
    let status = response.status();
    let text = response.text().await?;
    if !status.is_success() {
        bail!("{url}: {status} {text}");
    }
    Ok(started.elapsed())
}

pub(super) async fn run(ctx: &Ctx<'_>, db_url: &str) -> Result<ChatBench> {
    let model = ScriptedModel::start().await?;
    model.otherwise(Step::Text("Noted.".into()));
    // A second replica for the chat, without a relay of its own (the first one publishes).
    let mut api = ctx
        .env
        .start_chat_api_with_model(
            db_url,
            Some(&model.endpoint),
            &[("RELAY_ENABLED", "false".to_owned())],
        )
        .await?;
    let result = measure(ctx, &api, &model).await;
    api.process.shutdown().await;
    api.sidecar.shutdown().await;
    result
}

async fn measure(ctx: &Ctx<'_>, api: &Service, model: &ScriptedModel) -> Result<ChatBench> {
    let user = "bench-chat";
    let token = ctx.env.token(user)?;
    let chat = format!("{}/api/{user}/chat", api.base);
    let create = format!("{}/api/{user}/tasks", api.base);
    let client = ctx.client;
    let mut errors = 0;
    let (mut creates, mut texts, mut tools) = (
        Vec::with_capacity(MEASURED_TURNS),
        Vec::with_capacity(MEASURED_TURNS),
        Vec::with_capacity(MEASURED_TURNS),
    );
    for i in 0..WARMUP_TURNS + MEASURED_TURNS {
        let measured = i >= WARMUP_TURNS;
        let task = json!({"title": format!("bench chat {i}")});
        match timed(client, &create, &token, &task).await {
            Ok(d) if measured => creates.push(ms(d)),
            Ok(_) => {}
            Err(_) => errors += 1,
        }
        let say = json!({"message": "what's on my list?", "time_zone": "Europe/Berlin"});
        match timed(client, &chat, &token, &say).await {
            Ok(d) if measured => texts.push(ms(d)),
            Ok(_) => {}
            Err(_) => errors += 1,
        }
        model.then([
            Step::Call(vec![(
                "add_task".into(),
                json!({"title": format!("chat task {i}"), "due_at": "2026-12-24T09:00",
                       "time_zone": "Europe/Berlin"}),
            )]),
            Step::Text("Added.".into()),
        ]);
        let say = json!({"message": "add a task", "time_zone": "Europe/Berlin"});
        match timed(client, &chat, &token, &say).await {
            Ok(d) if measured => tools.push(ms(d)),
            Ok(_) => {}
            Err(_) => errors += 1,
        }
        model.clear_requests();
    }

    // Memory: conversations live in the database, so chat-api should not grow with them.
    let pid = api.process.pid();
    let rss_before_kb = rss_kb(pid).unwrap_or(0);
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut openers = tokio::task::JoinSet::new();
    for _ in 0..CONVERSATION_CONCURRENCY {
        let (client, chat, token, next) =
            (client.clone(), chat.clone(), token.clone(), next.clone());
        openers.spawn(async move {
            let mut failed = 0;
            while next.fetch_add(1, std::sync::atomic::Ordering::Relaxed) < CONVERSATIONS {
                let say = json!({"message": "hello"});
                if timed(&client, &chat, &token, &say).await.is_err() {
                    failed += 1;
                }
            }
            failed
        });
    }
    while let Some(failed) = openers.join_next().await {
        errors += failed.unwrap_or(1);
    }
    model.clear_requests();
    let rss_after_kb = rss_kb(pid).unwrap_or(0);
    Ok(ChatBench {
        create: Quantiles::of(creates),
        text_turn: Quantiles::of(texts),
        tool_turn: Quantiles::of(tools),
        errors,
        rss_before_kb,
        rss_after_kb,
        conversations: CONVERSATIONS,
    })
}

impl ChatBench {
    pub(super) fn render(&self, s: &mut String) {
        let _ = writeln!(s, "### The chat's own cost per turn\n");
        let _ = writeln!(
            s,
            "One client, one request at a time, on a second chat-api replica whose daprd runs `conversation.openai` against a scripted OpenAI-compatible server on loopback that answers at once: the time is chat-api's and the sidecar's (prompt, tools, history, the conversation's write), not a model's. {MEASURED_TURNS} measured of each after {WARMUP_TURNS} warm-up; {} errors.\n",
            self.errors
        );
        let _ = writeln!(
            s,
            "| request | model calls | p50 ms | p95 ms | p95 ÷ REST create p95 |"
        );
        let _ = writeln!(s, "|---|---:|---:|---:|---:|");
        let base = self.create.p95;
        for (what, calls, q) in [
            ("REST create (baseline)", "0", &self.create),
            ("chat turn, text answer", "1", &self.text_turn),
            ("chat turn, one `add_task` call", "2", &self.tool_turn),
        ] {
            let _ = writeln!(
                s,
                "| {what} | {calls} | {:.1} | {:.1} | {} |",
                q.p50,
                q.p95,
                cell((base > 0.0).then(|| q.p95 / base), 2)
            );
        }
        let grown = self.rss_after_kb.saturating_sub(self.rss_before_kb);
        let _ = writeln!(
            s,
            "\nOpen conversations: chat-api's resident memory went from {:.1} MiB to {:.1} MiB over {} new conversations ({} concurrent), {:.0} bytes per conversation (their messages are in the database, not in the process).\n",
            self.rss_before_kb as f64 / 1024.0,
            self.rss_after_kb as f64 / 1024.0,
            self.conversations,
            CONVERSATION_CONCURRENCY,
            grown as f64 * 1024.0 / self.conversations as f64
        );
    }
}
