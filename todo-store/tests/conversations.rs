//! The chat's conversations: a turn's messages appended in one write, numbered without gaps
//! even when turns of one conversation race, visible to their user only, and gone with the
//! account. SQLite, and PostgreSQL when `TEST_POSTGRES_URL` is set.

#![allow(clippy::unwrap_used)]

use chrono::Utc;
use serde_json::json;
use todo_domain::UserId;
use todo_store::{ConversationStore, NewMessage, StoreError, TaskStore, conversations::Target};
use uuid::Uuid;

fn message(role: &str, text: &str) -> NewMessage {
    NewMessage {
        role: role.to_owned(),
        body: json!({"content": text}),
    }
}

fn user(id: &str) -> UserId {
    UserId::parse(id).unwrap()
}

#[tokio::test]
async fn racing_turns_of_one_conversation_never_interleave_or_leave_gaps() {
    for (label, url, _dir) in todo_store::testing::databases().await {
        let db = todo_store::connect(&url, 8).await.unwrap();
        todo_store::migrate(&db).await.unwrap();
        let store = ConversationStore::new(db);
        let alice = user("alice");
        let id = Uuid::now_v7();
        store
            .append(
                &alice,
                Target::New(id),
                vec![message("user", "first")],
                Utc::now(),
                None,
            )
            .await
            .unwrap();
        let turns = (0..8).map(|turn| {
            let (store, alice) = (store.clone(), alice.clone());
            tokio::spawn(async move {
                let messages = (0..3)
                    .map(|i| message("user", &format!("turn {turn} message {i}")))
                    .collect();
                store
                    .append(&alice, Target::Existing(id), messages, Utc::now(), None)
                    .await
            })
        });
        for turn in turns {
            turn.await.unwrap().unwrap();
        }
        let all = store
            .get(&alice, id, None, 10_000)
            .await
            .map(|(c, _)| c)
            .unwrap();
        let seqs: Vec<i32> = all.messages.iter().map(|m| m.seq).collect();
        assert_eq!(seqs, (0..25).collect::<Vec<_>>(), "{label}");
        // Each turn's three messages are consecutive.
        for chunk in all.messages[1..].chunks(3) {
            let turn = |m: &todo_store::StoredMessage| {
                m.body["content"]
                    .as_str()
                    .unwrap()
                    .split(' ')
                    .nth(1)
                    .unwrap()
                    .to_owned()
            };
            assert!(
                chunk.iter().all(|m| turn(m) == turn(&chunk[0])),
                "{label}: {chunk:?}"
            );
        }
        let (page, more) = store.get(&alice, id, Some(20), 3).await.unwrap();
        let page: Vec<i32> = page.messages.iter().map(|m| m.seq).collect();
        assert_eq!((page, more), (vec![21, 22, 23], true), "{label}");
        let (page, more) = store.get(&alice, id, Some(23), 3).await.unwrap();
        assert_eq!((page.messages.len(), more), (1, false), "{label}");
        let listed = store.list(&alice, 10).await.unwrap();
        assert_eq!(listed.len(), 1, "{label}");
        assert_eq!((listed[0].id, listed[0].message_count), (id, 25), "{label}");
        let recent = store.recent(&alice, id, 4).await.unwrap();
        assert_eq!(
            recent.iter().map(|m| m.seq).collect::<Vec<_>>(),
            [21, 22, 23, 24],
            "{label}: the last messages, oldest first"
        );
    }
}

#[tokio::test]
async fn a_conversation_is_its_users_only_and_goes_with_the_account() {
    for (label, url, _dir) in todo_store::testing::databases().await {
        let db = todo_store::connect(&url, 2).await.unwrap();
        todo_store::migrate(&db).await.unwrap();
        let store = ConversationStore::new(db.clone());
        let tasks = TaskStore::new(db);
        let (alice, bob) = (user("alice"), user("bob"));
        let (a, b) = (Uuid::now_v7(), Uuid::now_v7());
        let now = Utc::now();
        store
            .append(
                &alice,
                Target::New(a),
                vec![message("user", "a")],
                now,
                None,
            )
            .await
            .unwrap();
        store
            .append(&bob, Target::New(b), vec![message("user", "b")], now, None)
            .await
            .unwrap();

        for result in [
            store
                .get(&bob, a, None, 10_000)
                .await
                .map(|(c, _)| c)
                .map(drop),
            store.recent(&bob, a, 10).await.map(drop),
            store
                .append(
                    &bob,
                    Target::Existing(a),
                    vec![message("user", "x")],
                    now,
                    None,
                )
                .await,
            store.delete(&bob, a).await,
        ] {
            assert!(
                matches!(result, Err(StoreError::NotFound)),
                "{label}: {result:?}"
            );
        }
        assert!(
            matches!(
                store
                    .append(&bob, Target::New(a), vec![message("user", "x")], now, None)
                    .await,
                Err(StoreError::Conflict)
            ),
            "{label}: a new conversation may not take an existing id"
        );
        assert_eq!(
            store
                .get(&alice, a, None, 10_000)
                .await
                .map(|(c, _)| c)
                .unwrap()
                .messages
                .len(),
            1,
            "{label}"
        );

        tasks.delete_user(&alice, now).await.unwrap();
        assert!(
            matches!(
                store.get(&alice, a, None, 10_000).await.map(|(c, _)| c),
                Err(StoreError::NotFound)
            ),
            "{label}"
        );
        assert!(
            matches!(
                store
                    .append(
                        &alice,
                        Target::New(Uuid::now_v7()),
                        vec![message("user", "x")],
                        now,
                        None
                    )
                    .await,
                Err(StoreError::UserDeleted)
            ),
            "{label}: a deleted account starts no conversation"
        );
        assert_eq!(
            store
                .get(&bob, b, None, 10_000)
                .await
                .map(|(c, _)| c)
                .unwrap()
                .messages
                .len(),
            1,
            "{label}: bob's stays"
        );
        store.delete(&bob, b).await.unwrap();
        assert!(
            matches!(
                store.get(&bob, b, None, 10_000).await.map(|(c, _)| c),
                Err(StoreError::NotFound)
            ),
            "{label}"
        );
    }
}

#[tokio::test]
async fn one_turn_holds_a_conversation_at_a_time_until_it_ends_or_its_lease_runs_out() {
    for (label, url, _dir) in todo_store::testing::databases().await {
        let db = todo_store::connect(&url, 2).await.unwrap();
        todo_store::migrate(&db).await.unwrap();
        let store = ConversationStore::new(db);
        let (alice, bob) = (user("alice"), user("bob"));
        let id = Uuid::now_v7();
        let now = Utc::now();
        let lease = chrono::Duration::seconds(150);
        // Created by its first turn, which holds it.
        store
            .append(
                &alice,
                Target::New(id),
                vec![message("user", "hi")],
                now,
                Some(now + lease),
            )
            .await
            .unwrap();
        assert!(
            matches!(
                store.begin_turn(&alice, id, now, now + lease).await,
                Err(StoreError::Conflict)
            ),
            "{label}: a second turn while the first runs"
        );
        assert!(
            matches!(
                store.begin_turn(&bob, id, now, now + lease).await,
                Err(StoreError::NotFound)
            ),
            "{label}: another user's conversation"
        );
        store.end_turn(&alice, id).await.unwrap();
        store
            .begin_turn(&alice, id, now, now + lease)
            .await
            .unwrap();
        // A turn that never ended (its replica died) holds it only until its lease ends.
        let later = now + lease + chrono::Duration::seconds(1);
        store
            .begin_turn(&alice, id, later, later + lease)
            .await
            .unwrap();
        assert!(
            matches!(
                store.begin_turn(&alice, id, later, later + lease).await,
                Err(StoreError::Conflict)
            ),
            "{label}"
        );
    }
}

#[tokio::test]
async fn the_recent_messages_reach_back_to_the_start_of_the_turn_they_begin_in() {
    for (label, url, _dir) in todo_store::testing::databases().await {
        let db = todo_store::connect(&url, 2).await.unwrap();
        todo_store::migrate(&db).await.unwrap();
        let store = ConversationStore::new(db);
        let alice = user("alice");
        let id = Uuid::now_v7();
        let now = Utc::now();
        let mut turn = vec![message("user", "do many things")];
        turn.extend((0..10).map(|i| message("tool", &format!("result {i}"))));
        store
            .append(&alice, Target::New(id), turn, now, None)
            .await
            .unwrap();
        store
            .append(
                &alice,
                Target::Existing(id),
                vec![message("assistant", "done")],
                now,
                None,
            )
            .await
            .unwrap();
        let recent = store.recent(&alice, id, 3).await.unwrap();
        assert_eq!(recent.len(), 12, "{label}: back to the turn's user message");
        assert_eq!(recent[0].role, "user", "{label}");
        assert_eq!(recent.last().unwrap().body["content"], "done", "{label}");
    }
}
