//! All-day tasks and the reminders users set, through the REST API in-process, on every
//! configured database: what is stored and shown, how sorting and filters read a day, and
//! that every unfit combination is refused with a clear error and nothing written.

#![allow(clippy::unwrap_used)]

mod support;

use reqwest::Method;
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder};
use serde_json::{Value, json};
use support::{TestApp, apps};

/// The reminder rows of a task: (reminder, fires_at as RFC 3339 UTC), sorted.
async fn reminder_rows(app: &TestApp, task_id: &str) -> Vec<(String, String)> {
    use todo_store::entity::task_reminders;
    task_reminders::Entity::find()
        .filter(task_reminders::Column::TaskId.eq(uuid::Uuid::parse_str(task_id).unwrap()))
        .order_by_asc(task_reminders::Column::Reminder)
        .all(&app.db)
        .await
        .unwrap()
        .into_iter()
        .map(|r| {
            (
                r.reminder,
                r.fires_at
                    .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            )
        })
        .collect()
}

fn id(task: &Value) -> String {
    task["id"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn a_date_alone_makes_an_all_day_task_due_at_the_end_of_its_local_day() {
    for app in apps().await {
        let rent = app
            .create(
                "alice",
                json!({"title": "Pay rent", "due_at": "2026-12-01", "time_zone": "Asia/Tokyo"}),
            )
            .await;
        assert_eq!(rent["due_date"], "2026-12-01", "[{}] {rent}", app.db_label);
        assert_eq!(rent["due_at"], "2026-12-01T14:59:59Z", "[{}]", app.db_label);
        assert_eq!(rent["due_local"], "2026-12-01T23:59:59+09:00");
        let timed = app
            .create(
                "alice",
                json!({"title": "Call", "due_at": "2026-12-01T20:00", "time_zone": "Asia/Tokyo"}),
            )
            .await;
        assert!(timed.get("due_date").is_none(), "{timed}");
        // The day sorts after a time on that day and is in "before the next day".
        let (s, page) = app
            .call(Method::GET, "/api/alice/tasks?sort=due", "alice", None)
            .await;
        assert_eq!(s, 200);
        let titles: Vec<&str> = page["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["title"].as_str().unwrap())
            .collect();
        assert_eq!(titles, ["Call", "Pay rent"], "[{}]", app.db_label);
        let (_, before) = app
            .call(
                Method::GET,
                "/api/alice/tasks?due_before=2026-12-01T15:00:00Z",
                "alice",
                None,
            )
            .await;
        assert_eq!(before["items"].as_array().unwrap().len(), 2);
        let (_, after) = app
            .call(
                Method::GET,
                "/api/alice/tasks?due_after=2026-12-01T12:00:00Z",
                "alice",
                None,
            )
            .await;
        assert_eq!(after["items"][0]["title"], "Pay rent");
        // The event carries the day too.
        let events = app.published(2).await;
        assert_eq!(
            events[0]
                .event
                .task
                .due_date
                .map(|d| d.to_string())
                .as_deref(),
            Some("2026-12-01")
        );

        // Changing only the zone keeps the day; its end moves with the zone.
        let path = format!("/api/alice/tasks/{}", id(&rent));
        let (s, moved) = app
            .call(
                Method::PATCH,
                &path,
                "alice",
                Some(json!({"time_zone": "Europe/Berlin"})),
            )
            .await;
        assert_eq!(s, 200, "{moved}");
        assert_eq!(moved["due_date"], "2026-12-01");
        assert_eq!(moved["due_at"], "2026-12-01T22:59:59Z");
        // A due time replaces the day; a day replaces a time.
        let (_, at_time) = app
            .call(
                Method::PATCH,
                &path,
                "alice",
                Some(json!({"due_at": "2026-12-02T09:00"})),
            )
            .await;
        assert!(at_time.get("due_date").is_none(), "{at_time}");
        assert_eq!(at_time["due_at"], "2026-12-02T08:00:00Z");
        let (_, on_day) = app
            .call(
                Method::PATCH,
                &path,
                "alice",
                Some(json!({"due_at": "2026-12-03"})),
            )
            .await;
        assert_eq!(on_day["due_date"], "2026-12-03");
    }
}

#[tokio::test]
async fn an_all_day_series_steps_by_date_and_keeps_its_reminders() {
    for app in apps().await {
        let task = app
            .create(
                "alice",
                json!({"title": "Rent", "due_at": "2027-01-31", "time_zone": "Europe/Berlin",
                       "recurrence": "monthly", "reminders": ["-1d 18:00", "09:00"]}),
            )
            .await;
        assert_eq!(task["reminders"], json!(["-1d 18:00", "09:00"]));
        let completed = app
            .call(
                Method::POST,
                &format!("/api/alice/tasks/{}/complete", id(&task)),
                "alice",
                None,
            )
            .await
            .1;
        let snapshot: todo_domain::TaskSnapshot =
            serde_json::from_value(completed.clone()).unwrap();
        let store = todo_store::TaskStore::new(app.db.clone());
        let next = match store
            .create_next_instance(&snapshot, chrono::Utc::now())
            .await
            .unwrap()
        {
            todo_store::NextInstance::Created(next) => next,
            other => panic!("[{}] {other:?}", app.db_label),
        };
        assert_eq!(
            next.due_date.map(|d| d.to_string()).as_deref(),
            Some("2027-02-28"),
            "[{}] the anchor day capped at February's end",
            app.db_label
        );
        assert_eq!(next.reminders, ["-1d 18:00", "09:00"]);
        assert_eq!(
            reminder_rows(&app, &next.id.to_string()).await,
            [
                ("-1d 18:00".to_owned(), "2027-02-27T17:00:00Z".to_owned()),
                ("09:00".to_owned(), "2027-02-28T08:00:00Z".to_owned()),
            ],
            "[{}]",
            app.db_label
        );
        assert!(
            reminder_rows(&app, &id(&task)).await.is_empty(),
            "a completed task keeps no reminder rows"
        );
    }
}

#[tokio::test]
async fn reminders_are_stored_in_one_spelling_and_re_armed_by_every_change() {
    for app in apps().await {
        let task = app
            .create(
                "alice",
                json!({"title": "Dentist", "due_at": "2026-12-01T09:00", "time_zone": "Europe/Berlin",
                       "reminders": ["PT15M", "1d", "15m"]}),
            )
            .await;
        assert_eq!(
            task["reminders"],
            json!(["15m", "1d"]),
            "[{}]",
            app.db_label
        );
        let task_id = id(&task);
        assert_eq!(
            reminder_rows(&app, &task_id).await,
            [
                ("15m".to_owned(), "2026-12-01T07:45:00Z".to_owned()),
                ("1d".to_owned(), "2026-11-30T08:00:00Z".to_owned()),
            ]
        );
        let path = format!("/api/alice/tasks/{task_id}");
        let (s, moved) = app
            .call(
                Method::PATCH,
                &path,
                "alice",
                Some(json!({"due_at": "2026-12-02T10:00", "reminders": ["1h"]})),
            )
            .await;
        assert_eq!(s, 200, "{moved}");
        assert_eq!(moved["reminders"], json!(["1h"]));
        assert_eq!(
            reminder_rows(&app, &task_id).await,
            [("1h".to_owned(), "2026-12-02T08:00:00Z".to_owned())]
        );
        let events = app.published(2).await;
        let mut changed = events[1].event.changed_fields.clone();
        changed.sort();
        assert_eq!(changed, ["due_at", "reminders"]);
        // Clearing them: back to the default reminder, no rows.
        let (s, cleared) = app
            .call(
                Method::PATCH,
                &path,
                "alice",
                Some(json!({"reminders": null})),
            )
            .await;
        assert_eq!(s, 200, "{cleared}");
        assert!(cleared.get("reminders").is_none(), "{cleared}");
        assert!(reminder_rows(&app, &task_id).await.is_empty());
        // Completed or deleted: none.
        app.call(
            Method::PATCH,
            &path,
            "alice",
            Some(json!({"reminders": ["5m"]})),
        )
        .await;
        assert_eq!(reminder_rows(&app, &task_id).await.len(), 1);
        app.call(Method::POST, &format!("{path}/complete"), "alice", None)
            .await;
        assert!(reminder_rows(&app, &task_id).await.is_empty());
        app.call(Method::POST, &format!("{path}/reopen"), "alice", None)
            .await;
        assert_eq!(
            reminder_rows(&app, &task_id).await.len(),
            1,
            "reopened: armed again"
        );
        app.call(Method::DELETE, &path, "alice", None).await;
        assert!(reminder_rows(&app, &task_id).await.is_empty());
    }
}

#[tokio::test]
async fn unfit_reminders_and_dates_are_refused_with_the_reason_and_nothing_written() {
    for app in apps().await {
        let timed = app
            .create(
                "alice",
                json!({"title": "Timed", "due_at": "2026-12-01T09:00", "reminders": ["1h"]}),
            )
            .await;
        let day = app
            .create(
                "alice",
                json!({"title": "Day", "due_at": "2026-12-01", "reminders": ["09:00"]}),
            )
            .await;
        let before = app.outbox_rows(Some("alice")).await;
        for (body, needle) in [
            (
                json!({"title": "x", "due_at": "2026-12-01T09:00", "reminders": ["soon"]}),
                "not understood",
            ),
            (
                json!({"title": "x", "due_at": "2026-12-01T09:00", "reminders": ["1m", "2m", "3m", "4m", "5m", "6m"]}),
                "at most 5",
            ),
            (
                json!({"title": "x", "due_at": "2026-12-01T09:00", "reminders": ["31d"]}),
                "at most 30 days",
            ),
            (
                json!({"title": "x", "due_at": "2026-12-01T09:00", "reminders": ["09:00"]}),
                "all-day",
            ),
            (
                json!({"title": "x", "due_at": "2026-12-01", "reminders": ["15m"]}),
                "all-day task takes local times",
            ),
            (
                json!({"title": "x", "reminders": ["15m"]}),
                "needs a due date or time",
            ),
            (json!({"title": "x", "due_at": "2026-13-01"}), "due_at"),
            (
                json!({"title": "x", "due_at": "0999-12-01"}),
                "out of range",
            ),
            (
                json!({"title": "x", "due_at": "2026-12-01T09:00", "reminders": "15m"}),
                "reminders",
            ),
            (
                json!({"title": "x", "due_at": "2026-12-01T09:00", "reminders": ["1h\u{0}"]}),
                "NUL",
            ),
        ] {
            let (s, err) = app
                .call(
                    Method::POST,
                    "/api/alice/tasks",
                    "alice",
                    Some(body.clone()),
                )
                .await;
            assert_eq!(s, 400, "[{}] {body} -> {err}", app.db_label);
            let message = err["error"]["message"].as_str().unwrap_or_default();
            assert!(message.contains(needle), "[{}] {body}: {err}", app.db_label);
        }
        // Patches that would leave the task's reminders unfit.
        for (task, patch, needle) in [
            (&timed, json!({"due_at": null}), "needs a due date or time"),
            (
                &timed,
                json!({"due_at": "2026-12-05"}),
                "all-day task takes local times",
            ),
            (&day, json!({"due_at": "2026-12-05T10:00"}), "all-day"),
            (
                &day,
                json!({"reminders": ["1h"]}),
                "all-day task takes local times",
            ),
        ] {
            let path = format!("/api/alice/tasks/{}", id(task));
            let (s, err) = app
                .call(Method::PATCH, &path, "alice", Some(patch.clone()))
                .await;
            assert_eq!(s, 400, "[{}] {patch} -> {err}", app.db_label);
            assert_eq!(err["error"]["field"], "reminders", "{err}");
            assert!(
                err["error"]["message"].as_str().unwrap().contains(needle),
                "{err}"
            );
            let (_, now) = app.call(Method::GET, &path, "alice", None).await;
            assert_eq!(
                now["version"], 1,
                "[{}] nothing written: {now}",
                app.db_label
            );
        }
        assert_eq!(
            app.outbox_rows(Some("alice")).await,
            before,
            "no event for a refused change"
        );
        // Changing both together is fine.
        let path = format!("/api/alice/tasks/{}", id(&timed));
        let (s, both) = app
            .call(
                Method::PATCH,
                &path,
                "alice",
                Some(json!({"due_at": "2026-12-05", "reminders": ["08:00"]})),
            )
            .await;
        assert_eq!(s, 200, "{both}");
        assert_eq!(both["due_date"], "2026-12-05");
    }
}
