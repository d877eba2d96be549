//! The web page end to end, in a real headless Chromium driven through its WebDriver,
//! against chat-api and recurring-tasks beside their real sidecars, Kafka, Redis and
//! PostgreSQL, and a scripted OpenAI-compatible model for the chat. What the page shows is
//! checked against what the API then holds.
//!
//! With `WEB_SCREENSHOTS=<dir>` the main views are saved there as PNG files (the ones in
//! `docs/web/` come from this test).

use std::{path::PathBuf, time::Duration};

use anyhow::{Context as _, Result, ensure};
use e2e::{
    Env, Service,
    browser::Browser,
    model::{ScriptedModel, Step},
};
use serde_json::{Value, json};

const USER: &str = "web-alice";
const HOSTILE: &str = "<img src=x onerror=alert(1)>";

/// Fields drop in order: the browser, the services, the model, the stack last.
struct Page {
    browser: Browser,
    api: Service,
    worker: Service,
    model: ScriptedModel,
    client: reqwest::Client,
    env: Env,
    shots: Option<PathBuf>,
}

impl Page {
    async fn start() -> Result<Page> {
        let env = Env::start().await?;
        let db = env.database().await?;
        let model = ScriptedModel::start().await?;
        let api = env
            .start_chat_api_with_model(&db, Some(&model.endpoint), &[])
            .await?;
        let worker = env.start_recurring(&db).await?;
        let browser = Browser::start(&env.dir.path().join("logs"), 1280, 900).await?;
        Ok(Page {
            browser,
            api,
            worker,
            model,
            client: e2e::client(),
            env,
            shots: std::env::var_os("WEB_SCREENSHOTS").map(PathBuf::from),
        })
    }

    fn link(&self, token: &str) -> Result<String> {
        api::web::sign_in_link(&self.api.base, token)
    }

    async fn shot(&self, name: &str) -> Result<()> {
        if let Some(dir) = &self.shots {
            self.browser
                .script("window.scrollTo(0, 0); return true;", json!([]))
                .await?;
            self.browser
                .screenshot(&dir.join(format!("{name}.png")))
                .await?;
        }
        Ok(())
    }

    /// The user's tasks as the API holds them.
    async fn tasks(&self) -> Result<Vec<Value>> {
        let page: Value = self
            .client
            .get(format!("{}/api/{USER}/tasks?limit=200", self.api.base))
            .bearer_auth(self.env.token(USER)?)
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        Ok(page["items"].as_array().cloned().unwrap_or_default())
    }

    async fn task_titled(&self, title: &str) -> Result<Value> {
        self.tasks()
            .await?
            .into_iter()
            .find(|t| t["title"] == title)
            .with_context(|| format!("the API holds no task titled {title:?}"))
    }

    /// Waits until the list shows exactly `titles` (in any order).
    async fn list_shows(&self, titles: &[&str]) -> Result<()> {
        let mut want: Vec<&str> = titles.to_vec();
        want.sort_unstable();
        let script = "const seen = [...document.querySelectorAll('#task-list .task .title')] \
                      .map(e => e.textContent).sort(); \
                      return JSON.stringify(seen) === JSON.stringify(arguments[0]) || null;";
        self.browser
            .wait(&format!("the list showing {want:?}"), script, json!([want]))
            .await
            .map(drop)
    }

    /// The `.task` item whose title is `title`: a CSS selector for one of its buttons.
    async fn button_of(&self, title: &str, class: &str) -> Result<String> {
        let script = "const items = [...document.querySelectorAll('#task-list .task')]; \
                      const i = items.findIndex(li => li.querySelector('.title').textContent === arguments[0] \
                      && !li.classList.contains('done')); \
                      return i < 0 ? null : i + 1;";
        let index = self
            .browser
            .wait(
                &format!("a pending task titled {title:?}"),
                script,
                json!([title]),
            )
            .await?;
        Ok(format!(
            "#task-list .task:nth-child({index}) button.{class}"
        ))
    }

    /// Fills the open task form's fields.
    async fn fill(&self, fields: &[(&str, &str)]) -> Result<()> {
        for (name, value) in fields {
            match *name {
                "priority" | "recurrence" | "due_at" | "due_date" => {
                    self.browser
                        .set_value(&format!("#task-form [name={name}]"), value)
                        .await?;
                }
                "due_kind" => self.browser.click_css(&format!("#t-due-{value}")).await?,
                _ => {
                    self.browser
                        .type_into(&format!("#task-form [name={name}]"), value)
                        .await?;
                }
            }
        }
        Ok(())
    }

    async fn create(&self, fields: &[(&str, &str)]) -> Result<()> {
        self.browser.click_css("#new-task").await?;
        self.browser.visible("#task-dialog").await?;
        self.fill(fields).await?;
        self.browser.click_css("#task-save").await?;
        self.browser
            .wait(
                "the task dialog to close",
                "return !document.getElementById('task-dialog').open;",
                json!([]),
            )
            .await
            .map(drop)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_person_manages_tasks_and_chats_in_a_real_browser() -> Result<()> {
    let p = Page::start().await?;
    let b = &p.browser;

    // Without a token: the sign-in form, and nothing else.
    b.goto(&format!("{}/", p.api.base)).await?;
    b.visible("#sign-in-form").await?;
    ensure!(
        b.script(
            "return document.getElementById('tasks-view').hidden",
            json!([])
        )
        .await?
            == json!(true)
    );
    p.shot("sign-in").await?;

    // The sign-in link: the token is taken from the fragment, which is then removed.
    b.goto(&p.link(&p.env.token(USER)?)?).await?;
    b.visible("#tasks-view").await?;
    ensure!(b.text("#user-name").await? == USER);
    let address = b.script("return location.href", json!([])).await?;
    ensure!(
        !address.as_str().unwrap_or_default().contains("token"),
        "the token stays in the address bar: {address}"
    );

    // Create: every field, as a person types them.
    p.create(&[
        ("title", "Buy milk"),
        ("description", "Oat, two litres"),
        ("priority", "high"),
        ("tags", "shop, home"),
        ("due_kind", "day"),
        ("due_date", "2026-12-24"),
        ("time_zone", "Europe/Berlin"),
        ("reminders", "-1d 18:00"),
    ])
    .await?;
    p.list_shows(&["Buy milk"]).await?;
    let milk = p.task_titled("Buy milk").await?;
    ensure!(
        milk["priority"] == "high" && milk["description"] == "Oat, two litres",
        "{milk}"
    );
    ensure!(milk["tags"] == json!(["shop", "home"]), "{milk}");
    ensure!(
        milk["due_date"] == "2026-12-24" && milk["time_zone"] == "Europe/Berlin",
        "{milk}"
    );
    ensure!(milk["reminders"] == json!(["-1d 18:00"]), "{milk}");

    // API errors appear beside the field they name, and nothing is written.
    b.click_css("#new-task").await?;
    p.fill(&[
        ("title", "Zone trouble"),
        ("time_zone", "Mars/Olympus_Mons"),
    ])
    .await?;
    b.click_css("#task-save").await?;
    b.visible("#err-time_zone").await?;
    let said = b.text("#err-time_zone").await?;
    ensure!(said.contains("Mars/Olympus_Mons"), "the zone error: {said}");
    ensure!(
        b.script(
            "return document.getElementById('t-time-zone').getAttribute('aria-invalid')",
            json!([])
        )
        .await?
            == json!("true")
    );
    p.fill(&[("title", " "), ("time_zone", "UTC")]).await?;
    b.click_css("#task-save").await?;
    b.visible("#err-title").await?;
    ensure!(b.text("#err-title").await?.contains("title"));
    p.shot("task-form-error").await?;
    b.click_css("#task-cancel").await?;
    ensure!(p.tasks().await?.len() == 1, "a refused form wrote nothing");

    // A hostile title is shown as the characters it is.
    p.create(&[("title", HOSTILE)]).await?;
    p.list_shows(&["Buy milk", HOSTILE]).await?;
    let images = b
        .script(
            "return document.querySelectorAll('#task-list img').length",
            json!([]),
        )
        .await?;
    ensure!(
        images == json!(0),
        "the title became markup: {images} img elements"
    );
    ensure!(b.alert_text().await.is_none(), "the title's script ran");

    // A daily task due at a time in a zone.
    p.create(&[
        ("title", "Stretch"),
        ("due_kind", "time"),
        ("due_at", "2026-12-07T08:00"),
        ("time_zone", "Europe/Berlin"),
        ("recurrence", "daily"),
    ])
    .await?;
    p.list_shows(&["Buy milk", HOSTILE, "Stretch"]).await?;
    let stretch = p.task_titled("Stretch").await?;
    ensure!(
        stretch["due_local"]
            .as_str()
            .unwrap_or_default()
            .starts_with("2026-12-07T08:00:00+01:00"),
        "{stretch}"
    );
    ensure!(stretch["recurrence"]["frequency"] == "daily", "{stretch}");
    p.shot("tasks").await?;

    // Filters: text search, tag, priority, status; each from the whole list.
    let all = ["Buy milk", HOSTILE, "Stretch"];
    for (control, value) in [
        ("#f-q", "milk"),
        ("#f-tag", "home"),
        ("#f-priority", "high"),
    ] {
        if control == "#f-priority" {
            b.set_value(control, value).await?;
        } else {
            b.type_into(control, value).await?;
        }
        b.click_css("#filters button[type=submit]").await?;
        p.list_shows(&["Buy milk"]).await?;
        b.click_css("#filters button[type=reset]").await?;
        p.list_shows(&all).await?;
    }
    b.set_value("#f-sort", "title").await?;
    b.set_value("#f-limit", "10").await?;
    b.set_value("#f-status", "completed").await?;
    b.click_css("#filters button[type=submit]").await?;
    p.list_shows(&[]).await?;
    b.set_value("#f-status", "all").await?;
    b.click_css("#filters button[type=submit]").await?;
    p.list_shows(&all).await?;
    let order = b
        .script(
            "return [...document.querySelectorAll('#task-list .title')].map(e => e.textContent)",
            json!([]),
        )
        .await?;
    ensure!(
        order == json!([HOSTILE, "Buy milk", "Stretch"]),
        "sorted by title: {order}"
    );

    // Edit: a new title and priority; the other fields stay.
    b.click_css(&p.button_of("Buy milk", "edit").await?).await?;
    b.visible("#task-dialog").await?;
    ensure!(
        b.script("return document.getElementById('t-tags').value", json!([]))
            .await?
            == json!("shop, home")
    );
    p.fill(&[("title", "Buy oat milk"), ("priority", "low")])
        .await?;
    b.click_css("#task-save").await?;
    p.list_shows(&["Buy oat milk", HOSTILE, "Stretch"]).await?;
    let edited = p.task_titled("Buy oat milk").await?;
    ensure!(
        edited["id"] == milk["id"] && edited["priority"] == "low",
        "{edited}"
    );
    ensure!(
        edited["tags"] == milk["tags"] && edited["due_date"] == milk["due_date"],
        "{edited}"
    );

    // Complete the daily task: its next instance, made by recurring-tasks from the event,
    // appears in the list.
    b.click_css(&p.button_of("Stretch", "toggle").await?)
        .await?;
    b.wait_for(
        "the next instance of Stretch to be listed",
        "return [...document.querySelectorAll('#task-list .task:not(.done) .title')] \
         .some(e => e.textContent === 'Stretch') \
         && document.getElementById('notice').textContent.includes('next instance of');",
        json!([]),
        Duration::from_secs(40),
    )
    .await?;
    let stretches: Vec<Value> = p
        .tasks()
        .await?
        .into_iter()
        .filter(|t| t["title"] == "Stretch")
        .collect();
    ensure!(stretches.len() == 2, "{stretches:?}");
    let next = stretches
        .iter()
        .find(|t| t["completed"] == false)
        .context("a pending Stretch")?;
    ensure!(
        next["recurrence"]["series_id"] == stretch["recurrence"]["series_id"],
        "{next}"
    );
    ensure!(next["recurrence"]["occurrence"] == 1, "{next}");
    ensure!(
        next["due_at"].as_str() > stretch["due_at"].as_str(),
        "{next}"
    );
    p.shot("next-instance").await?;

    // Delete, after the confirmation.
    b.click_css(&p.button_of("Buy oat milk", "delete").await?)
        .await?;
    let mut asked = None;
    for _ in 0..50 {
        asked = b.alert_text().await;
        if asked.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let asked = asked.context("no confirmation was asked")?;
    ensure!(asked.contains("Buy oat milk"), "{asked}");
    b.accept_alert().await?;
    p.list_shows(&[HOSTILE, "Stretch", "Stretch"]).await?;
    ensure!(
        p.tasks()
            .await?
            .iter()
            .all(|t| t["title"] != "Buy oat milk")
    );

    // The chat: a turn adds a task; the changes are shown and the list follows.
    p.model.then([
        Step::Call(vec![(
            "add_task".into(),
            json!({"title": "Call mom", "priority": "high"}),
        )]),
        Step::Text("Added: call mom.".into()),
    ]);
    b.click_css("#show-chat").await?;
    b.type_into("#chat-input", "remind me to call mom").await?;
    b.click_css("#chat-send").await?;
    b.wait_for(
        "the assistant's answer and the change",
        "const t = document.getElementById('messages').textContent; \
         return t.includes('Added: call mom.') && t.includes('created: Call mom');",
        json!([]),
        Duration::from_secs(60),
    )
    .await?;
    b.wait(
        "the conversation listed",
        "return document.querySelectorAll('#conversation-list button').length === 1;",
        json!([]),
    )
    .await?;
    p.shot("chat").await?;
    b.click_css("#show-tasks").await?;
    p.list_shows(&[HOSTILE, "Stretch", "Stretch", "Call mom"])
        .await?;

    // A model that fails is explained, and the message stays in the box.
    p.model.then([Step::Fail(500)]);
    b.click_css("#show-chat").await?;
    b.type_into("#chat-input", "add bread").await?;
    b.click_css("#chat-send").await?;
    b.visible("#chat-error").await?;
    let said = b.text("#chat-error").await?;
    ensure!(
        said.contains("cannot answer") && said.contains("tasks still work"),
        "{said}"
    );
    ensure!(
        b.script(
            "return document.getElementById('chat-input').value",
            json!([])
        )
        .await?
            == json!("add bread")
    );

    // Pages: 12 more tasks, 10 to a page.
    for n in 1..=12 {
        p.client
            .post(format!("{}/api/{USER}/tasks", p.api.base))
            .bearer_auth(p.env.token(USER)?)
            .json(&json!({"title": format!("Errand {n:02}")}))
            .send()
            .await?
            .error_for_status()?;
    }
    b.click_css("#show-tasks").await?;
    b.type_into("#f-q", "errand").await?;
    b.click_css("#filters button[type=submit]").await?;
    let first: Vec<String> = (1..=10).map(|n| format!("Errand {n:02}")).collect();
    let first: Vec<&str> = first.iter().map(String::as_str).collect();
    p.list_shows(&first).await?;
    b.click_css("#next-page").await?;
    p.list_shows(&["Errand 11", "Errand 12"]).await?;
    b.visible("#first-page").await?;
    b.click_css("#first-page").await?;
    p.list_shows(&first).await?;
    b.click_css("#filters button[type=reset]").await?;

    // A phone-sized screen: nothing wider than the window.
    b.resize(390, 844).await?;
    b.set_value("#f-limit", "200").await?;
    b.click_css("#filters button[type=submit]").await?;
    b.wait(
        "the whole list",
        "return document.querySelectorAll('#task-list .task').length === 16;",
        json!([]),
    )
    .await?;
    let overflow = b
        .script(
            "return document.documentElement.scrollWidth - document.documentElement.clientWidth",
            json!([]),
        )
        .await?;
    ensure!(
        overflow.as_i64() == Some(0),
        "the page is wider than a phone: {overflow} px"
    );
    p.shot("tasks-phone").await?;
    b.resize(1280, 900).await?;

    // Sign out: back to sign-in, and the token is gone from the session.
    b.click_css("#sign-out").await?;
    b.visible("#sign-in-form").await?;
    ensure!(b.script("return sessionStorage.length", json!([])).await? == json!(0));
    b.goto(&format!("{}/", p.api.base)).await?;
    b.visible("#sign-in-form").await?;

    // An expired token: sent back to sign-in, told why.
    let now = jsonwebtoken::get_current_timestamp();
    let user = todo_domain::UserId::parse(USER).map_err(|e| anyhow::anyhow!("{e}"))?;
    let expired = p.env.jwt.mint(&user, now - 7200, 3600)?;
    b.goto(&p.link(&expired)?).await?;
    b.visible("#sign-in-message").await?;
    ensure!(b.text("#sign-in-message").await?.contains("expired"));
    // A token that expires while the page is open.
    let short = p.env.jwt.mint(&user, now, 4)?;
    b.goto(&p.link(&short)?).await?;
    b.visible("#tasks-view").await?;
    b.wait_for(
        "the page to end the expired session",
        "const m = document.getElementById('sign-in-message'); \
         return !m.hidden && m.textContent.includes('expired');",
        json!([]),
        Duration::from_secs(15),
    )
    .await?;
    // A token the API refuses (signed with another secret): the API's reason is shown.
    let forged = api::auth::JwtKeys::new(&service_kit::Secret::new("not-the-secret"))
        .mint(&user, now, 3600)?;
    b.goto(&p.link(&forged)?).await?;
    b.wait(
        "the refusal to be shown",
        "const m = document.getElementById('sign-in-message'); \
         return !m.hidden && m.textContent.includes('signature');",
        json!([]),
    )
    .await?;
    p.shot("expired").await?;

    let Page {
        browser,
        worker,
        api,
        ..
    } = p;
    let profile = browser.profile();
    browser.close().await;
    ensure!(
        e2e::browser::processes_using(&profile).is_empty(),
        "browser processes are left"
    );
    drop(worker);
    drop(api);
    Ok(())
}
