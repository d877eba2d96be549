//! The task API in-process, on every configured database, up to the publish boundary.

#![allow(clippy::unwrap_used)]

mod support;

use reqwest::Method;
use serde_json::{Value, json};
use support::apps;
use todo_domain::EventType;

#[tokio::test]
async fn a_task_lifecycle_publishes_one_event_per_change_in_order() {
    for app in apps().await {
        let task = app
            .create("alice", json!({"title": " Water plants ", "priority": "high", "tags": ["Home", "garden"], "due_at": "2026-12-01T09:00", "time_zone": "Europe/Berlin", "recurrence": "weekly"}))
            .await;
        assert_eq!(task["title"], "Water plants");
        assert_eq!(task["tags"], json!(["home", "garden"]));
        assert_eq!(task["due_at"], "2026-12-01T08:00:00Z");
        assert_eq!(task["version"], 1);
        let id = task["id"].as_str().unwrap().to_owned();
        let path = format!("/api/alice/tasks/{id}");

        let (s, updated) = app
            .call(
                Method::PATCH,
                &path,
                "alice",
                Some(json!({"title": "Water all plants", "priority": "urgent"})),
            )
            .await;
        assert_eq!(s, 200, "{updated}");
        assert_eq!(updated["version"], 2);
        let (s, done) = app
            .call(Method::POST, &format!("{path}/complete"), "alice", None)
            .await;
        assert_eq!(s, 200);
        assert_eq!(done["completed"], true);
        let (s, _) = app.call(Method::DELETE, &path, "alice", None).await;
        assert_eq!(s, 204);
        let (s, _) = app.call(Method::GET, &path, "alice", None).await;
        assert_eq!(s, 404);

        let events = app.published(4).await;
        let types: Vec<EventType> = events.iter().map(|e| e.event.event_type).collect();
        assert_eq!(
            types,
            [
                EventType::TaskCreated,
                EventType::TaskUpdated,
                EventType::TaskCompleted,
                EventType::TaskDeleted
            ],
            "[{}]",
            app.db_label
        );
        for (i, e) in events.iter().enumerate() {
            assert_eq!(e.topic, "task-events");
            assert_eq!(e.partition_key, "alice");
            assert_eq!(e.event.user_id, "alice");
            assert_eq!(e.event_id, e.event.event_id);
            assert_eq!(e.event.task.id.to_string(), id);
            assert_eq!(e.event.task.version, i as i64 + 1);
        }
        let mut changed = events[1].event.changed_fields.clone();
        changed.sort();
        assert_eq!(changed, ["priority", "title"]);
        assert!(events[2].event.task.completed);
        let rec = events[0].event.task.recurrence.as_ref().unwrap();
        assert_eq!(rec.anchor.unwrap().to_string(), "2026-12-01 09:00:00");
    }
}

#[tokio::test]
async fn a_change_that_changes_nothing_publishes_nothing() {
    for app in apps().await {
        let task = app.create("bob", json!({"title": "Same"})).await;
        let path = format!("/api/bob/tasks/{}", task["id"].as_str().unwrap());
        let (s, same) = app
            .call(Method::PATCH, &path, "bob", Some(json!({"title": "Same"})))
            .await;
        assert_eq!(s, 200);
        assert_eq!(same["version"], 1);
        let (s, _) = app
            .call(Method::POST, &format!("{path}/reopen"), "bob", None)
            .await;
        assert_eq!(s, 200);
        app.published(1).await;
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        assert_eq!(
            app.published_now().len(),
            1,
            "[{}] only task.created",
            app.db_label
        );
    }
}

#[tokio::test]
async fn requests_succeed_while_publishing_fails_and_events_follow_when_it_recovers() {
    for app in apps().await {
        app.publisher.failing(true);
        for i in 0..5 {
            app.create("carol", json!({"title": format!("task {i}")}))
                .await;
        }
        // The relay tried (and failed): nothing reached the broker, all five wait.
        app.publish_calls(1).await;
        assert!(app.published_now().is_empty());
        assert_eq!(
            app.outbox_rows(Some("carol")).await,
            5,
            "[{}]",
            app.db_label
        );
        let (s, status) = app.call(Method::GET, "/relay/status", "carol", None).await;
        assert_eq!(s, 200);
        assert_eq!(status["pending"], 5);
        // A broker outage is no reason for the relay to hand its lock over.
        assert_eq!(status["publishing_here"], true, "{status}");
        assert_eq!(status["parked"], 0, "an outage parks nothing: {status}");
        assert_eq!(
            status["stalled"], false,
            "a known outage is no stall: {status}"
        );
        assert!(
            status["publisher"]
                .as_str()
                .is_some_and(|h| h.starts_with("relay-")),
            "{status}"
        );
        app.publisher.failing(false);
        let events = app.published(5).await;
        let titles: Vec<&str> = events.iter().map(|e| e.event.task.title.as_str()).collect();
        assert_eq!(
            titles,
            ["task 0", "task 1", "task 2", "task 3", "task 4"],
            "[{}] commit order kept",
            app.db_label
        );
    }
}

#[tokio::test]
async fn authentication_and_user_isolation_are_enforced() {
    for app in apps().await {
        let task = app.create("dave", json!({"title": "Private"})).await;
        let id = task["id"].as_str().unwrap();
        // No token.
        let res = app
            .client
            .get(app.url("/api/dave/tasks"))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 401);
        assert_eq!(
            res.headers()
                .get("www-authenticate")
                .and_then(|v| v.to_str().ok()),
            Some("Bearer"),
            "a 401 names the scheme"
        );
        let body: Value = res.json().await.unwrap();
        assert_eq!(body["error"]["code"], "unauthorized");
        // Garbage token.
        let res = app
            .client
            .get(app.url("/api/dave/tasks"))
            .bearer_auth("not.a.jwt")
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 401);
        // Another user's path.
        let (s, _) = app.call(Method::GET, "/api/dave/tasks", "eve", None).await;
        assert_eq!(s, 403);
        // Another user's task through one's own path: not found, never revealed.
        let (s, _) = app
            .call(Method::GET, &format!("/api/eve/tasks/{id}"), "eve", None)
            .await;
        assert_eq!(s, 404);
        let (s, _) = app
            .call(Method::DELETE, &format!("/api/eve/tasks/{id}"), "eve", None)
            .await;
        assert_eq!(s, 404);
        let (s, list) = app.call(Method::GET, "/api/eve/tasks", "eve", None).await;
        assert_eq!(s, 200);
        assert_eq!(list["items"], json!([]));
        let (s, still) = app
            .call(Method::GET, &format!("/api/dave/tasks/{id}"), "dave", None)
            .await;
        assert_eq!(s, 200);
        assert_eq!(still["title"], "Private");
    }
}

#[tokio::test]
async fn bad_input_gets_a_clear_4xx_and_writes_nothing() {
    for app in apps().await {
        let cases: Vec<(Value, u16, &str)> = vec![
            (json!({"title": ""}), 400, "title"),
            (json!({"title": 5}), 400, "title"),
            (json!({"title": "x", "colour": "red"}), 400, "colour"),
            (
                json!({"title": "x", "time_zone": "Mars/Olympus"}),
                400,
                "time_zone",
            ),
            (
                json!({"title": "x", "recurrence": "hourly"}),
                400,
                "recurrence",
            ),
            (
                json!({"title": "x", "priority": "critical"}),
                400,
                "priority",
            ),
            (json!({"title": "x", "due_at": "tomorrow"}), 400, "due_at"),
            // Years are bounded (1900 to 2999), in UTC and in the task's zone.
            (
                json!({"title": "x", "due_at": "9999-12-31T09:00:00Z", "recurrence": "monthly"}),
                400,
                "due_at",
            ),
            (
                json!({"title": "x", "due_at": "1899-12-31T23:00", "time_zone": "UTC"}),
                400,
                "due_at",
            ),
            (
                json!({"title": "x", "due_at": "2999-12-31T23:30:00-05:00"}),
                400,
                "due_at",
            ),
            (json!({"title": "x".repeat(201)}), 400, "title"),
            (json!({"title": "x", "tags": ["a;b"]}), 400, "tags"),
            (
                json!({"title": "x", "description": "d".repeat(70_000)}),
                413,
                "",
            ),
        ];
        for (body, status, field) in cases {
            let (s, err) = app
                .call(
                    Method::POST,
                    "/api/frank/tasks",
                    "frank",
                    Some(body.clone()),
                )
                .await;
            assert_eq!(s, status, "[{}] {body}: {err}", app.db_label);
            assert!(
                err["error"]["message"]
                    .as_str()
                    .is_some_and(|m| !m.is_empty()),
                "{err}"
            );
            if !field.is_empty() {
                assert_eq!(err["error"]["field"], field, "{err}");
            }
        }
        let res = app
            .client
            .post(app.url("/api/frank/tasks"))
            .bearer_auth(app.token("frank"))
            .header("content-type", "application/json")
            .body("{\"title\": ")
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 400);
        let body: Value = res.json().await.unwrap();
        assert_eq!(body["error"]["code"], "invalid_json");
        let (s, list) = app
            .call(Method::GET, "/api/frank/tasks", "frank", None)
            .await;
        assert_eq!(s, 200);
        assert_eq!(list["items"], json!([]), "nothing was written");
        assert_eq!(
            app.outbox_rows(Some("frank")).await,
            0,
            "[{}] no event for a failed request",
            app.db_label
        );
    }
}

#[tokio::test]
async fn listing_filters_sorts_and_pages() {
    for app in apps().await {
        let u = "grace";
        app.create(u, json!({"title": "Buy milk", "priority": "low", "tags": ["shop"], "due_at": "2026-01-02T10:00:00Z"})).await;
        app.create(u, json!({"title": "Call mum", "priority": "urgent", "due_at": "2026-01-01T10:00:00Z", "recurrence": "weekly"})).await;
        let t3 = app
            .create(
                u,
                json!({"title": "Milk the cow", "priority": "medium", "tags": ["farm"]}),
            )
            .await;
        let (s, _) = app
            .call(
                Method::POST,
                &format!("/api/{u}/tasks/{}/complete", t3["id"].as_str().unwrap()),
                u,
                None,
            )
            .await;
        assert_eq!(s, 200);
        let titles = |v: &Value| -> Vec<String> {
            v["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|t| t["title"].as_str().unwrap().to_owned())
                .collect()
        };
        let get = |q: &'static str| {
            let app = &app;
            async move {
                let (s, v) = app
                    .call(Method::GET, &format!("/api/{u}/tasks?{q}"), u, None)
                    .await;
                assert_eq!(s, 200, "{q}: {v}");
                v
            }
        };
        assert_eq!(
            titles(&get("q=MILK&sort=title").await),
            ["Buy milk", "Milk the cow"]
        );
        assert_eq!(titles(&get("status=completed").await), ["Milk the cow"]);
        assert_eq!(
            titles(&get("status=pending&sort=priority&order=desc").await),
            ["Call mum", "Buy milk"]
        );
        assert_eq!(titles(&get("tag=shop").await), ["Buy milk"]);
        // `_` is a character of a tag, not a wildcard (`sho_` is not `shop`).
        assert!(titles(&get("tag=sho_").await).is_empty());
        assert_eq!(titles(&get("recurring=true").await), ["Call mum"]);
        assert_eq!(
            titles(&get("sort=due").await),
            ["Call mum", "Buy milk", "Milk the cow"]
        );
        assert_eq!(
            titles(&get("due_before=2026-01-01T12:00:00Z").await),
            ["Call mum"]
        );
        assert_eq!(
            titles(&get("overdue=true&sort=due").await),
            ["Call mum", "Buy milk"]
        );
        let first = get("limit=2&sort=title").await;
        assert_eq!(titles(&first), ["Buy milk", "Call mum"]);
        let cursor = first["next_cursor"].as_str().unwrap().to_owned();
        let (s, second) = app
            .call(
                Method::GET,
                &format!("/api/{u}/tasks?limit=2&sort=title&cursor={cursor}"),
                u,
                None,
            )
            .await;
        assert_eq!(s, 200);
        assert_eq!(titles(&second), ["Milk the cow"]);
        assert!(second["next_cursor"].is_null());
        for bad in [
            "sort=colour",
            "limit=0",
            "limit=1000",
            "status=maybe",
            "cursor=zz",
            "unknown=1",
            "due_before=yesterday",
        ] {
            let (s, err) = app
                .call(Method::GET, &format!("/api/{u}/tasks?{bad}"), u, None)
                .await;
            assert_eq!(s, 400, "[{}] {bad}: {err}", app.db_label);
        }
    }
}

#[tokio::test]
async fn deleting_an_account_deletes_its_tasks_with_events_and_refuses_later_writes() {
    for app in apps().await {
        let one = app.create("heidi", json!({"title": "one"})).await;
        app.create("heidi", json!({"title": "two"})).await;
        let (s, _) = app.call(Method::DELETE, "/api/heidi", "heidi", None).await;
        assert_eq!(s, 204);
        let events = app.published(4).await;
        let deleted = events
            .iter()
            .filter(|e| e.event.event_type == EventType::TaskDeleted)
            .count();
        assert_eq!(deleted, 2);
        let (s, err) = app
            .call(
                Method::POST,
                "/api/heidi/tasks",
                "heidi",
                Some(json!({"title": "three"})),
            )
            .await;
        assert_eq!(s, 410, "{err}");
        // Every kind of write to one of its former tasks, not only creates.
        let path = format!("/api/heidi/tasks/{}", one["id"].as_str().unwrap());
        for (method, path, body) in [
            (Method::PATCH, path.clone(), Some(json!({"title": "again"}))),
            (Method::PUT, path.clone(), Some(json!({"title": "again"}))),
            (Method::POST, format!("{path}/complete"), None),
            (Method::DELETE, path.clone(), None),
        ] {
            let (s, err) = app.call(method.clone(), &path, "heidi", body).await;
            assert_eq!(s, 410, "[{}] {method} {path}: {err}", app.db_label);
            assert_eq!(err["error"]["code"], "user_deleted", "{err}");
        }
    }
}

#[tokio::test]
async fn health_and_readiness_answer() {
    for app in apps().await {
        let res = app.client.get(app.url("/healthz")).send().await.unwrap();
        assert_eq!(res.status(), 200);
        let res = app.client.get(app.url("/readyz")).send().await.unwrap();
        assert_eq!(res.status(), 200);
    }
}

#[tokio::test]
async fn put_replaces_every_field_and_patch_null_clears() {
    for app in apps().await {
        let task = app.create("ivan", json!({"title": "Old", "priority": "high", "tags": ["a"], "due_at": "2026-02-01T10:00:00Z", "recurrence": "daily"})).await;
        let path = format!("/api/ivan/tasks/{}", task["id"].as_str().unwrap());
        let (s, put) = app
            .call(Method::PUT, &path, "ivan", Some(json!({"title": "New"})))
            .await;
        assert_eq!(s, 200, "{put}");
        assert_eq!(put["title"], "New");
        assert_eq!(
            put["priority"], "medium",
            "PUT resets omitted fields to defaults"
        );
        assert_eq!(put["tags"], json!([]));
        assert!(put["due_at"].is_null());
        assert!(put["recurrence"].is_null());
        assert_eq!(put["version"], 2);
        let (s, missing) = app
            .call(Method::PUT, &path, "ivan", Some(json!({"priority": "low"})))
            .await;
        assert_eq!(s, 400, "PUT needs a title: {missing}");
        assert_eq!(missing["error"]["field"], "title");

        let (s, due) = app
            .call(
                Method::PATCH,
                &path,
                "ivan",
                Some(json!({"due_at": "2026-03-01T12:00:00+01:00", "recurrence": "monthly"})),
            )
            .await;
        assert_eq!(s, 200);
        assert_eq!(due["due_at"], "2026-03-01T11:00:00Z");
        // Changing the zone keeps the instant and moves the local time.
        let (s, zoned) = app
            .call(
                Method::PATCH,
                &path,
                "ivan",
                Some(json!({"time_zone": "Asia/Tokyo"})),
            )
            .await;
        assert_eq!(s, 200);
        assert_eq!(zoned["due_at"], "2026-03-01T11:00:00Z");
        assert_eq!(zoned["due_local"], "2026-03-01T20:00:00+09:00");
        assert_eq!(zoned["recurrence"]["anchor"], "2026-03-01T20:00:00");
        let (s, cleared) = app
            .call(
                Method::PATCH,
                &path,
                "ivan",
                Some(json!({"due_at": null, "recurrence": null})),
            )
            .await;
        assert_eq!(s, 200);
        assert!(
            cleared["due_at"].is_null() && cleared["recurrence"].is_null(),
            "{cleared}"
        );

        let events = app.published(5).await;
        assert_eq!(
            events.len(),
            5,
            "[{}] create, put, patch, patch, patch",
            app.db_label
        );
        assert!(
            events[1..]
                .iter()
                .all(|e| e.event.event_type == EventType::TaskUpdated)
        );
        let mut put_fields = events[1].event.changed_fields.clone();
        put_fields.sort();
        assert_eq!(
            put_fields,
            ["due_at", "priority", "recurrence", "tags", "title"]
        );
        // The zone change moved the series' anchor to the new local time.
        assert_eq!(events[3].event.changed_fields, ["time_zone", "recurrence"]);
    }
}

#[tokio::test]
async fn every_filter_and_sort_order_is_applied() {
    for app in apps().await {
        let u = "judy";
        app.create(
            u,
            json!({"title": "alpha", "priority": "low", "due_at": "2026-01-01T00:00:00Z"}),
        )
        .await;
        app.create(u, json!({"title": "beta", "priority": "urgent", "due_at": "2026-02-01T00:00:00Z", "recurrence": "daily"})).await;
        app.create(
            u,
            json!({"title": "gamma", "priority": "high", "description": "has ALPHA inside"}),
        )
        .await;
        let titles = |v: &Value| -> Vec<String> {
            v["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|t| t["title"].as_str().unwrap().to_owned())
                .collect()
        };
        let cases: Vec<(&str, Vec<&str>)> = vec![
            ("priority=high", vec!["gamma"]),
            ("due_after=2026-01-15T00:00:00Z", vec!["beta"]),
            ("recurring=false&sort=title", vec!["alpha", "gamma"]),
            ("q=alpha&sort=title", vec!["alpha", "gamma"]),
            ("sort=created&order=desc", vec!["gamma", "beta", "alpha"]),
            ("sort=created", vec!["alpha", "beta", "gamma"]),
            ("sort=title&order=desc", vec!["gamma", "beta", "alpha"]),
            ("sort=priority", vec!["alpha", "gamma", "beta"]),
            ("sort=due&order=desc", vec!["beta", "alpha", "gamma"]),
            ("q=%25", vec![]),
            ("q=_", vec![]),
        ];
        for (q, want) in cases {
            let (s, v) = app
                .call(Method::GET, &format!("/api/{u}/tasks?{q}"), u, None)
                .await;
            assert_eq!(s, 200, "{q}: {v}");
            assert_eq!(titles(&v), want, "[{}] {q}", app.db_label);
        }
        // Walking every page of one gives every task once.
        let mut seen = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let q = cursor
                .as_ref()
                .map_or(String::new(), |c| format!("&cursor={c}"));
            let (s, v) = app
                .call(
                    Method::GET,
                    &format!("/api/{u}/tasks?limit=1&sort=title{q}"),
                    u,
                    None,
                )
                .await;
            assert_eq!(s, 200);
            seen.extend(titles(&v));
            match v["next_cursor"].as_str() {
                Some(c) => cursor = Some(c.to_owned()),
                None => break,
            }
        }
        assert_eq!(seen, ["alpha", "beta", "gamma"]);
    }
}

#[tokio::test]
async fn expired_unsigned_and_foreign_tokens_are_refused() {
    use jsonwebtoken::{EncodingKey, Header, encode};
    for app in apps().await {
        let now = jsonwebtoken::get_current_timestamp();
        let sign = |secret: &str, exp: u64| {
            encode(
                &Header::default(),
                &json!({"sub": "kim", "exp": exp}),
                &EncodingKey::from_secret(secret.as_bytes()),
            )
            .unwrap()
        };
        let unsigned =
            "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.eyJzdWIiOiJraW0iLCJleHAiOjk5OTk5OTk5OTl9.";
        let not_yet = encode(
            &Header::default(),
            &json!({"sub": "kim", "exp": now + 7_200, "nbf": now + 3_600}),
            &EncodingKey::from_secret(support::SECRET.as_bytes()),
        )
        .unwrap();
        let res = app
            .client
            .get(app.url("/api/kim/tasks"))
            .bearer_auth(&not_yet)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 401, "a token whose nbf is an hour ahead");
        let body: Value = res.json().await.unwrap();
        assert!(
            body["error"]["message"].as_str().unwrap().contains("nbf"),
            "{body}"
        );
        for token in [
            sign(support::SECRET, now - 3_600),
            sign("another-secret-another-secret-another", now + 600),
            unsigned.to_owned(),
        ] {
            let res = app
                .client
                .get(app.url("/api/kim/tasks"))
                .bearer_auth(&token)
                .send()
                .await
                .unwrap();
            assert_eq!(res.status(), 401, "[{}] {token}", app.db_label);
        }
        let res = app
            .client
            .get(app.url("/api/kim/tasks"))
            .header("authorization", "Basic a2ltOnB3")
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 401);
        let res = app
            .client
            .post(app.url("/api/kim/tasks"))
            .bearer_auth(app.token("kim"))
            .body("{\"title\":\"x\"}")
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 415, "a body without a JSON content type");
    }
}

#[tokio::test]
async fn paging_neither_skips_nor_repeats_a_task_when_tasks_change_between_pages() {
    let orders = [
        "sort=created",
        "sort=created&order=desc",
        "sort=title",
        "sort=title&order=desc",
        "sort=due",
        "sort=due&order=desc",
        "sort=priority",
        "sort=priority&order=desc",
    ];
    for app in apps().await {
        let label = app.db_label;
        for (n, order) in orders.iter().enumerate() {
            let u = format!("pager{n}");
            // Ties in every key: titles equal but for case, shared priorities and due times,
            // and tasks without a due time.
            let mut originals = Vec::new();
            for i in 0..9 {
                let mut body = json!({
                    "title": (["Alpha", "alpha", "Beta"][i % 3]),
                    "priority": (["low", "high", "high"][(i / 3) % 3]),
                });
                if i % 4 != 0 {
                    body["due_at"] =
                        json!((["2026-05-01T09:00:00Z", "2026-06-01T09:00:00Z"][i % 2]));
                }
                originals.push(
                    app.create(&u, body).await["id"]
                        .as_str()
                        .unwrap()
                        .to_owned(),
                );
            }
            let page = |cursor: Option<String>| {
                let app = &app;
                let u = u.clone();
                async move {
                    let c = cursor.map_or(String::new(), |c| format!("&cursor={c}"));
                    let (s, v) = app
                        .call(
                            Method::GET,
                            &format!("/api/{u}/tasks?limit=3&{order}{c}"),
                            &u,
                            None,
                        )
                        .await;
                    assert_eq!(s, 200, "[{label}] {order}: {v}");
                    let ids: Vec<String> = v["items"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|t| t["id"].as_str().unwrap().to_owned())
                        .collect();
                    (ids, v["next_cursor"].as_str().map(str::to_owned))
                }
            };
            let (mut seen, mut cursor) = page(None).await;
            // Between the pages: a task of the first page is deleted and two are created.
            let (s, _) = app
                .call(
                    Method::DELETE,
                    &format!("/api/{u}/tasks/{}", seen[0]),
                    &u,
                    None,
                )
                .await;
            assert_eq!(s, 204, "[{label}] delete");
            for title in ["alpha", "Zulu"] {
                app.create(
                    &u,
                    json!({"title": title, "priority": "urgent", "due_at": "2026-05-01T09:00:00Z"}),
                )
                .await;
            }
            let mut pages = 1;
            while let Some(c) = cursor {
                pages += 1;
                assert!(
                    pages <= 6,
                    "[{label}] {order}: more pages than tasks: {seen:?}"
                );
                let (ids, next) = page(Some(c)).await;
                seen.extend(ids);
                cursor = next;
            }
            let mut unique = seen.clone();
            unique.sort();
            unique.dedup();
            assert_eq!(
                unique.len(),
                seen.len(),
                "[{label}] {order}: a task came twice: {seen:?}"
            );
            for id in &originals {
                assert!(
                    seen.contains(id),
                    "[{label}] {order}: task {id} was skipped: {seen:?}"
                );
            }
        }
    }
}

#[tokio::test]
async fn a_cursor_of_another_sort_or_order_or_not_from_this_api_is_a_400_naming_the_cursor() {
    for app in apps().await {
        let label = app.db_label;
        let u = "curious";
        for i in 0..3 {
            app.create(u, json!({"title": format!("t{i}")})).await;
        }
        let (_, first) = app
            .call(
                Method::GET,
                &format!("/api/{u}/tasks?limit=1&sort=title"),
                u,
                None,
            )
            .await;
        let cursor = first["next_cursor"].as_str().unwrap().to_owned();
        for bad in [
            format!("sort=created&cursor={cursor}"),
            // The same sort in the other order would start the wrong slice.
            format!("sort=title&order=desc&cursor={cursor}"),
            "cursor=k2_ta_zz_00000000000000000000000000000000".to_owned(),
            "cursor=k2_tx_41_00000000000000000000000000000000".to_owned(),
            "cursor=k2_ca_not-a-time_00000000000000000000000000000000".to_owned(),
            // A cursor of the earlier format.
            "cursor=k1_t_41_00000000000000000000000000000000".to_owned(),
            "cursor=k2_pa_whenever_00000000000000000000000000000000".to_owned(),
            "cursor=k2_da_-_nope".to_owned(),
            format!(
                "cursor=k2_ta_{}_00000000000000000000000000000000",
                "41".repeat(300)
            ),
            "cursor=c7fffffffffffffff".to_owned(),
        ] {
            let (s, err) = app
                .call(Method::GET, &format!("/api/{u}/tasks?{bad}"), u, None)
                .await;
            assert_eq!(s, 400, "[{label}] {bad}: {err}");
            assert_eq!(err["error"]["field"], "cursor", "[{label}] {bad}: {err}");
        }
        // Far ends of every kind are fine: an empty page or the whole list, never a 5xx.
        for edge in [
            "sort=created&cursor=k2_ca_9999-12-31T23:59:59.999999999Z_ffffffffffffffffffffffffffffffff",
            "sort=due&cursor=k2_da_0001-01-01T00:00:00Z_00000000000000000000000000000000",
            "sort=due&order=desc&cursor=k2_dd_-_ffffffffffffffffffffffffffffffff",
            "sort=priority&cursor=k2_pa_urgent_ffffffffffffffffffffffffffffffff",
        ] {
            let (s, page) = app
                .call(Method::GET, &format!("/api/{u}/tasks?{edge}"), u, None)
                .await;
            assert_eq!(s, 200, "[{label}] {edge}: {page}");
        }
    }
}

/// `q` ignores case for every letter, the same on SQLite and PostgreSQL (whose own `lower()`
/// folds ASCII only, on SQLite and in a PostgreSQL database with the C locale).
#[tokio::test]
async fn search_ignores_case_for_every_letter_on_every_database() {
    for app in apps().await {
        let u = "uma";
        app.create(u, json!({"title": "Ärger im Büro", "description": "ΣΟΦΙΑ"}))
            .await;
        let found = |q: &'static str| {
            let app = &app;
            async move {
                let (s, v) = app
                    .call(Method::GET, &format!("/api/{u}/tasks?q={q}"), u, None)
                    .await;
                assert_eq!(s, 200, "{q}: {v}");
                v["items"].as_array().unwrap().len()
            }
        };
        for q in [
            "IM%20B%C3%9CRO",
            "%C3%84rger",
            "%C3%A4rger",
            "%C3%A4RGER",
            "%CF%83%CE%BF%CF%86",
        ] {
            assert_eq!(found(q).await, 1, "[{}] q={q}", app.db_label);
        }
        // Title and description are not one run of text.
        assert_eq!(found("b%C3%BCro%20%CF%83").await, 0, "[{}]", app.db_label);
    }
}
