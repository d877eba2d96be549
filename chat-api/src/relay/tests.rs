use std::{
    collections::HashSet,
    sync::Mutex,
    time::{Duration, Instant},
};

use sea_orm::ConnectionTrait as _;
use todo_domain::{Description, Priority, Tags, TimeZone, Title, UserId};
use todo_store::{NewTask, TaskStore};

use super::*;

/// Answers like daprd (1.16 to 1.18) with Kafka: a bulk call with any refused event fails as a whole. Events
/// of the users in `refused` are refused; every call is recorded as (user, task title).
#[derive(Default)]
struct ScriptedSidecar {
    calls: Mutex<Vec<Vec<(String, String)>>>,
    refused: Mutex<HashSet<String>>,
    /// While set, every event fails with this (an outage).
    outage: Mutex<Option<PublishError>>,
    /// While set, every call hangs (a frozen sidecar without a deadline).
    hang: std::sync::atomic::AtomicBool,
}

use service_kit::{PublishError, publish::OutgoingEvent};

fn guard<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl ScriptedSidecar {
    async fn answer(&self, events: &[OutgoingEvent<'_>]) -> Vec<Result<(), PublishError>> {
        if self.hang.load(std::sync::atomic::Ordering::SeqCst) {
            std::future::pending::<()>().await;
        }
        let call = events
            .iter()
            .map(|e| {
                let v: serde_json::Value = serde_json::from_slice(e.payload).unwrap_or_default();
                (
                    e.partition_key.to_owned(),
                    v["task"]["title"].as_str().unwrap_or_default().to_owned(),
                )
            })
            .collect();
        guard(&self.calls).push(call);
        if let Some(e) = guard(&self.outage).clone() {
            return events.iter().map(|_| Err(e.clone())).collect();
        }
        let refused = guard(&self.refused);
        let any = events.iter().any(|e| refused.contains(e.partition_key));
        events
            .iter()
            .map(|_| {
                if any {
                    Err(PublishError::Failed("refused".into()))
                } else {
                    Ok(())
                }
            })
            .collect()
    }

    fn calls(&self) -> Vec<Vec<(String, String)>> {
        guard(&self.calls).clone()
    }

    fn sent(&self) -> Vec<(String, String)> {
        self.calls().into_iter().flatten().collect()
    }
}

impl Publisher for ScriptedSidecar {
    async fn publish(&self, event: OutgoingEvent<'_>) -> Result<(), PublishError> {
        self.answer(&[event]).await.remove(0)
    }

    async fn publish_all(&self, events: &[OutgoingEvent<'_>]) -> Vec<Result<(), PublishError>> {
        self.answer(events).await
    }
}

/// Settings short enough for a test.
fn quick() -> RelayConfig {
    RelayConfig {
        bulk_size: 2,
        sweep_interval: Duration::from_millis(20),
        backoff_initial: Duration::from_millis(10),
        backoff_max: Duration::from_millis(50),
        refusal_backoff_initial: Duration::from_millis(5),
        refusal_backoff_max: Duration::from_millis(20),
        handover_after: Duration::from_millis(300),
        handover_pause: Duration::from_millis(600),
        follow_interval: Duration::from_millis(20),
        stall_after: Duration::from_millis(400),
        ..RelayConfig::default()
    }
}

async fn create(tasks: &TaskStore, user: &str, title: &str) {
    let new = NewTask {
        title: Title::parse(title).expect("title"),
        description: Description::parse("").expect("description"),
        priority: Priority::Medium,
        tags: Tags::parse::<&str>(&[]).expect("tags"),
        due: None,
        time_zone: TimeZone::default(),
        recurrence: None,
        reminders: todo_domain::Reminders::default(),
    };
    tasks
        .create(&UserId::parse(user).expect("user"), new, Utc::now())
        .await
        .expect("create");
}

/// A migrated database and its URL.
struct Db {
    url: String,
    tasks: TaskStore,
    outbox: OutboxStore,
    _tmp: todo_store::testing::Scratch,
}

async fn migrated(url: String, tmp: todo_store::testing::Scratch) -> Db {
    let db = todo_store::connect(&url, 4).await.expect("database");
    todo_store::migrate(&db).await.expect("migrations");
    Db {
        url,
        tasks: TaskStore::new(db.clone()),
        outbox: OutboxStore::new(db),
        _tmp: tmp,
    }
}

/// Every test database (SQLite, and PostgreSQL when `TEST_POSTGRES_URL` is set), migrated.
async fn each_database() -> Vec<(&'static str, Db)> {
    let mut all = Vec::new();
    for (label, url, tmp) in todo_store::testing::databases().await {
        all.push((label, migrated(url, tmp).await));
    }
    all
}

/// A fresh SQLite database holding three events each of ann, bob and cy, committed
/// interleaved (ann 1, bob 1, cy 1, ann 2, ...).
async fn sqlite_with_events(dir: &std::path::Path) -> Db {
    let db = migrated(
        format!("sqlite://{}/relay.db", dir.display()),
        todo_store::testing::Scratch::default(),
    )
    .await;
    for n in 1..=3 {
        for user in ["ann", "bob", "cy"] {
            create(&db.tasks, user, &format!("{user} {n}")).await;
        }
    }
    db
}

fn relay_on(
    db: &Db,
    sidecar: &Arc<ScriptedSidecar>,
    config: RelayConfig,
) -> Relay<ScriptedSidecar> {
    let health = Arc::new(RelayHealth::new(
        Relay::<ScriptedSidecar>::new_holder_name(),
        config.stall_after,
    ));
    Relay::new(
        db.outbox.clone(),
        &db.url,
        sidecar.clone(),
        Arc::new(Notify::new()),
        config,
        health,
    )
}

async fn take_lock(db: &Db, holder: &str) -> PublisherLock {
    PublisherLock::try_acquire(&db.url, holder, Duration::from_secs(5))
        .await
        .expect("lock")
        .expect("nobody else holds it")
}

/// A relay running in the background.
struct Running {
    holder: String,
    shutdown: Shutdown,
    task: tokio::task::JoinHandle<()>,
}

impl Running {
    fn start(relay: Relay<ScriptedSidecar>) -> Self {
        let holder = relay.holder.clone();
        let shutdown = Shutdown::new();
        let task = tokio::spawn(relay.run(shutdown.clone()));
        Self {
            holder,
            shutdown,
            task,
        }
    }

    async fn stop(self) {
        self.shutdown.trigger();
        self.task.await.expect("relay task");
    }
}

async fn holder_of(db: &Db) -> Option<String> {
    PublisherLock::current_holder(db.tasks.db(), &db.url)
        .await
        .expect("holder")
}

async fn wait_until<F, Fut>(what: &str, within: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let started = Instant::now();
    while !check().await {
        assert!(started.elapsed() < within, "not within {within:?}: {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn a_round_that_gets_nothing_through_tells_an_unreachable_sidecar_from_a_broker_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = sqlite_with_events(dir.path()).await;
    let sidecar = Arc::new(ScriptedSidecar::default());
    let relay = relay_on(&db, &sidecar, RelayConfig::default());
    let lock = take_lock(&db, &relay.holder).await;
    for (error, unreachable) in [
        (PublishError::Unavailable("connection refused".into()), true),
        (PublishError::Failed("broker down".into()), false),
    ] {
        *guard(&sidecar.outage) = Some(error);
        let round = relay
            .round(&lock, &mut Vec::new(), relay.config.batch_size)
            .await;
        assert_eq!(
            round,
            Round {
                read: 9,
                failed: true,
                unreachable,
                ..Round::default()
            }
        );
        assert!(round.stalled());
    }
}

#[tokio::test]
async fn through_a_broker_outage_the_relay_keeps_the_lock_probes_with_small_rounds_and_catches_up()
{
    let dir = tempfile::tempdir().expect("tempdir");
    let db = sqlite_with_events(dir.path()).await;
    let sidecar = Arc::new(ScriptedSidecar::default());
    *guard(&sidecar.outage) = Some(PublishError::Failed("broker down".into()));
    let relay = Running::start(relay_on(&db, &sidecar, quick()));

    // Several hand-over periods of outage, during which the lock never changes hands.
    let outage = Instant::now();
    tokio::time::sleep(Duration::from_millis(50)).await;
    while outage.elapsed() < Duration::from_millis(1_200) {
        assert_eq!(
            holder_of(&db).await.as_ref(),
            Some(&relay.holder),
            "a broker outage is no reason to give up the lock"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let calls = sidecar.calls();
    assert!(calls.len() > 10, "the relay kept retrying: {calls:?}");
    // After the first round, only probes: one bulk call's worth (two events) each.
    assert!(
        calls.iter().skip(2).all(|c| c.len() <= 2),
        "probes are small: {calls:?}"
    );
    assert!(
        calls.iter().flatten().all(|(_, t)| t.ends_with(" 1")),
        "nothing overtakes a user's first event"
    );
    assert_eq!(
        db.outbox.backlog().await.expect("backlog").parked,
        0,
        "an outage parks nothing"
    );

    *guard(&sidecar.outage) = None;
    wait_until(
        "caught up after the broker came back",
        Duration::from_secs(2),
        || async { db.outbox.pending(0, 100).await.expect("pending").is_empty() },
    )
    .await;
    relay.stop().await;
}

#[tokio::test]
async fn a_relay_whose_sidecar_is_unreachable_hands_the_lock_over() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = sqlite_with_events(dir.path()).await;
    let sidecar = Arc::new(ScriptedSidecar::default());
    *guard(&sidecar.outage) = Some(PublishError::Unavailable("connection refused".into()));
    let relay = Running::start(relay_on(&db, &sidecar, quick()));

    let holder = relay.holder.clone();
    wait_until(
        "the relay holds the lock at first",
        Duration::from_secs(2),
        || async { holder_of(&db).await.as_ref() == Some(&holder) },
    )
    .await;
    wait_until(
        "the lock was handed over",
        Duration::from_secs(2),
        || async { holder_of(&db).await.is_none() },
    )
    .await;
    relay.stop().await;
}

#[tokio::test]
async fn a_crashed_publishers_successor_publishes_within_a_second_on_every_database() {
    for (label, db) in each_database().await {
        create(&db.tasks, "ann", "ann 1").await;
        let sidecar = Arc::new(ScriptedSidecar::default());
        *guard(&sidecar.outage) = Some(PublishError::Failed("broker down".into()));
        let first = relay_on(&db, &sidecar, quick());
        let first_holder = first.holder.clone();
        let crashed = tokio::spawn(first.run(Shutdown::new()));
        wait_until(
            &format!("{label}: the first relay holds the lock"),
            Duration::from_secs(3),
            || async { holder_of(&db).await.as_ref() == Some(&first_holder) },
        )
        .await;
        let working = Arc::new(ScriptedSidecar::default());
        let second = Running::start(relay_on(&db, &working, quick()));
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(
            working.calls().is_empty(),
            "{label}: only the lock holder publishes"
        );

        // The holder dies without a word: no shutdown, no release (its task is dropped,
        // and with it its session or file).
        crashed.abort();
        let _ = crashed.await;
        let died = Instant::now();
        wait_until(
            &format!("{label}: the successor published"),
            Duration::from_secs(3),
            || async { !working.calls().is_empty() },
        )
        .await;
        let took = died.elapsed();
        assert!(
            took < Duration::from_secs(1),
            "{label}: successor published after {took:?}"
        );
        assert_eq!(
            holder_of(&db).await.as_ref(),
            Some(&second.holder),
            "{label}"
        );
        second.stop().await;
    }
}

#[tokio::test]
async fn a_relay_that_lost_its_lock_session_publishes_nothing_more() {
    for (label, db) in each_database().await {
        if label != "postgres" {
            continue; // a SQLite lock is the process's own: it cannot be lost while it lives
        }
        create(&db.tasks, "ann", "ann 1").await;
        let sidecar = Arc::new(ScriptedSidecar::default());
        let relay = relay_on(&db, &sidecar, RelayConfig::default());
        let lock = take_lock(&db, &relay.holder).await;
        // The server ends the holder's session (as after `idle_session_timeout` while the
        // process was frozen); the relay has not noticed yet.
        db.tasks
            .db()
            .execute_unprepared(&format!(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = '{}'",
                relay.holder
            ))
            .await
            .expect("terminate");
        tokio::time::sleep(Duration::from_millis(2_100)).await; // past the confirmation

        let round = relay.round(&lock, &mut Vec::new(), 100).await;
        assert!(round.lost_lock, "{round:?}");
        assert!(
            sidecar.calls().is_empty(),
            "nothing published after the lock was lost"
        );
    }
}

#[tokio::test]
async fn a_round_sends_each_user_one_event_per_call_in_commit_order_and_holds_back_a_refused_users_rest()
 {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = sqlite_with_events(dir.path()).await;
    let sidecar = Arc::new(ScriptedSidecar::default());
    guard(&sidecar.refused).insert("bob".into());
    let relay = relay_on(&db, &sidecar, RelayConfig::default());
    let lock = take_lock(&db, &relay.holder).await;

    let mut unmarked = Vec::new();
    let round = relay
        .round(&lock, &mut unmarked, relay.config.batch_size)
        .await;
    assert_eq!(unmarked.len(), 6, "what was published waits to be marked");
    relay.flush_marks(&mut unmarked).await;

    assert_eq!(
        round,
        Round {
            read: 9,
            published: 6,
            failed: true,
            ..Round::default()
        }
    );
    for call in sidecar.calls() {
        let users: HashSet<&String> = call.iter().map(|(u, _)| u).collect();
        assert_eq!(
            users.len(),
            call.len(),
            "two events of one user in one call: {call:?}"
        );
    }
    let sent = sidecar.sent();
    for user in ["ann", "cy"] {
        // A bulk call refused as a whole may have written some of its events: resending
        // them repeats an event, never reorders.
        let mut order: Vec<&str> = Vec::new();
        for (_, title) in sent.iter().filter(|(u, _)| u == user) {
            if !order.contains(&title.as_str()) {
                order.push(title);
            }
        }
        assert_eq!(
            order,
            [
                format!("{user} 1"),
                format!("{user} 2"),
                format!("{user} 3")
            ],
            "{user}: in commit order"
        );
    }
    assert!(
        sent.iter().all(|(u, t)| u != "bob" || t == "bob 1"),
        "nothing of bob's overtakes his refused event: {sent:?}"
    );
    let pending = db.outbox.pending(0, 100).await.expect("pending");
    assert_eq!(pending.len(), 3, "bob's three events stay pending");
    assert!(pending.iter().all(|e| e.user_id == "bob"));
    assert_eq!(
        pending[0].attempts, 1,
        "the refused event's attempt is recorded"
    );

    // Bob waits out his own backoff; then his events go, in order.
    guard(&sidecar.refused).clear();
    tokio::time::sleep(relay.config.refusal_backoff_max).await;
    let again = relay
        .round(&lock, &mut unmarked, relay.config.batch_size)
        .await;
    assert_eq!(
        again,
        Round {
            read: 3,
            published: 3,
            ..Round::default()
        }
    );
    relay.flush_marks(&mut unmarked).await;
    let bob: Vec<String> = sidecar
        .sent()
        .into_iter()
        .filter(|(u, _)| u == "bob")
        .map(|(_, t)| t)
        .collect();
    assert_eq!(bob.last().map(String::as_str), Some("bob 3"));
    assert!(db.outbox.pending(0, 100).await.expect("pending").is_empty());
}

#[tokio::test]
async fn the_next_round_marks_the_previous_rounds_events_and_never_sends_them_again() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = sqlite_with_events(dir.path()).await;
    let sidecar = Arc::new(ScriptedSidecar::default());
    let relay = relay_on(&db, &sidecar, RelayConfig::default());
    let lock = take_lock(&db, &relay.holder).await;
    let mut unmarked = Vec::new();
    let first = relay
        .round(&lock, &mut unmarked, relay.config.batch_size)
        .await;
    assert_eq!(first.published, 9);
    assert_eq!(
        db.outbox.pending(0, 100).await.expect("pending").len(),
        9,
        "not marked yet"
    );

    let second = relay
        .round(&lock, &mut unmarked, relay.config.batch_size)
        .await;

    assert_eq!(
        second,
        Round::default(),
        "the unmarked events are not read as new ones"
    );
    assert!(unmarked.is_empty());
    assert!(
        db.outbox.pending(0, 100).await.expect("pending").is_empty(),
        "marked while reading"
    );
    assert_eq!(sidecar.sent().len(), 9, "each event sent once");
}

#[tokio::test]
async fn a_bulk_call_refused_as_a_whole_is_retried_event_by_event_so_only_the_refused_user_waits() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = sqlite_with_events(dir.path()).await;
    let sidecar = Arc::new(ScriptedSidecar::default());
    guard(&sidecar.refused).insert("cy".into());
    let relay = relay_on(&db, &sidecar, RelayConfig::default());
    let lock = take_lock(&db, &relay.holder).await;

    relay
        .round(&lock, &mut Vec::new(), relay.config.batch_size)
        .await;

    let calls = sidecar.calls();
    let first = calls.first().expect("a call");
    assert_eq!(
        first.len(),
        3,
        "the first wave goes out in one bulk call: {calls:?}"
    );
    assert!(
        calls.iter().any(|c| c.len() == 1 && c[0].1 == "ann 1"),
        "after the refusal, ann's event went on its own: {calls:?}"
    );
}

#[tokio::test]
async fn one_users_large_backlog_does_not_hold_up_the_other_users_events() {
    for (label, db) in each_database().await {
        // 600 events of one user (an account deletion), then one each of three others.
        for n in 0..600 {
            create(&db.tasks, "heavy", &format!("heavy {n}")).await;
        }
        for user in ["ann", "bob", "cy"] {
            create(&db.tasks, user, &format!("{user} 1")).await;
        }
        let sidecar = Arc::new(ScriptedSidecar::default());
        let config = RelayConfig {
            batch_size: 200,
            per_user: 16,
            ..RelayConfig::default()
        };
        let relay = relay_on(&db, &sidecar, config);
        let lock = take_lock(&db, &relay.holder).await;

        let round = relay.round(&lock, &mut Vec::new(), 200).await;

        let sent = sidecar.sent();
        for user in ["ann", "bob", "cy"] {
            assert!(
                sent.first_chunk::<4>()
                    .is_some_and(|first| first.iter().any(|(u, _)| u == user)),
                "{label}: {user}'s event went in the first wave, beside the heavy user's: {:?}",
                &sent[..sent.len().min(8)]
            );
        }
        let heavy = sent.iter().filter(|(u, _)| u == "heavy").count();
        assert_eq!(
            heavy, 16,
            "{label}: the heavy user got its share of the round"
        );
        assert_eq!(round.published, 19, "{label}: {round:?}");
    }
}

/// Once nobody else writes, one user's backlog larger than the per-user cap goes round
/// after round without waiting for the sweep interval in between (it did wait: a
/// 20,000-event account deletion drained at about 60 events/s).
#[tokio::test]
async fn a_backlog_beyond_the_per_user_cap_goes_on_without_waiting_for_the_sweep() {
    for (label, db) in each_database().await {
        for n in 0..120 {
            create(&db.tasks, "heavy", &format!("heavy {n}")).await;
        }
        let sidecar = Arc::new(ScriptedSidecar::default());
        let config = RelayConfig {
            per_user: 8,
            // Fifteen rounds of eight, each followed by a 10 s sweep, would take minutes.
            sweep_interval: Duration::from_secs(10),
            ..quick()
        };
        let running = Running::start(relay_on(&db, &sidecar, config));
        let started = std::time::Instant::now();
        wait_until(
            &format!("{label}: all 120 published"),
            Duration::from_secs(5),
            || {
                let sidecar = sidecar.clone();
                async move { sidecar.sent().len() >= 120 }
            },
        )
        .await;
        let sent: Vec<String> = sidecar.sent().into_iter().map(|(_, title)| title).collect();
        let want: Vec<String> = (0..120).map(|n| format!("heavy {n}")).collect();
        assert_eq!(sent, want, "{label}: each once, in commit order");
        eprintln!(
            "[{label}] 120 events of one user in {:?}",
            started.elapsed()
        );
        running.stop().await;
    }
}

#[tokio::test]
async fn an_event_the_broker_keeps_refusing_is_parked_its_users_later_events_wait_and_retry_requeues_it()
 {
    for (label, db) in each_database().await {
        for n in 1..=2 {
            for user in ["ann", "poison"] {
                create(&db.tasks, user, &format!("{user} {n}")).await;
            }
        }
        let sidecar = Arc::new(ScriptedSidecar::default());
        guard(&sidecar.refused).insert("poison".into());
        let relay = Running::start(relay_on(&db, &sidecar, quick()));
        // Others keep writing, so the broker is seen to work while it refuses poison's event.
        let started = Instant::now();
        let mut n = 3;
        while db.outbox.backlog().await.expect("backlog").parked == 0 {
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "{label}: never parked"
            );
            create(&db.tasks, "ann", &format!("ann {n}")).await;
            n += 1;
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let parked = db.outbox.parked().await.expect("parked");
        assert_eq!(parked.len(), 1, "{label}: {parked:?}");
        assert_eq!(parked[0].user_id, "poison");
        let attempts_at_park = parked[0].attempts;
        assert!(
            attempts_at_park >= i32::try_from(quick().park_after).unwrap_or(i32::MAX),
            "{label}: parked after {attempts_at_park} attempts"
        );
        // Parked: no more attempts, the user's later event waits, the others flow.
        create(&db.tasks, "ann", "ann last").await;
        create(&db.tasks, "poison", "poison 3").await;
        wait_until(
            &format!("{label}: ann's last event published"),
            Duration::from_secs(3),
            || async { sidecar.sent().iter().any(|(_, t)| t == "ann last") },
        )
        .await;
        tokio::time::sleep(Duration::from_millis(200)).await;
        let parked = db.outbox.parked().await.expect("parked");
        assert_eq!(
            parked[0].attempts, attempts_at_park,
            "{label}: a parked event is not retried"
        );
        assert!(
            sidecar
                .sent()
                .iter()
                .all(|(u, t)| u != "poison" || t == "poison 1"),
            "{label}: nothing of poison's overtakes the parked event"
        );

        // The cause fixed, one command re-queues it; the user's events follow in order.
        guard(&sidecar.refused).clear();
        assert_eq!(db.outbox.retry_parked().await.expect("retry"), 1);
        wait_until(
            &format!("{label}: poison's events published"),
            Duration::from_secs(3),
            || async { db.outbox.pending(0, 100).await.expect("pending").is_empty() },
        )
        .await;
        let poison: Vec<String> = sidecar
            .sent()
            .into_iter()
            .filter(|(u, _)| u == "poison")
            .map(|(_, t)| t)
            .collect();
        let tail: Vec<&str> = poison
            .iter()
            .rev()
            .take(3)
            .rev()
            .map(String::as_str)
            .collect();
        assert_eq!(
            tail,
            ["poison 1", "poison 2", "poison 3"],
            "{label}: in order"
        );
        relay.stop().await;
    }
}

#[tokio::test]
async fn the_watchdog_restarts_a_relay_that_makes_no_progress_and_readiness_fails_if_that_does_not_help()
 {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = sqlite_with_events(dir.path()).await;
    // A publisher that never answers (a call without a deadline): the relay hangs.
    let sidecar = Arc::new(ScriptedSidecar::default());
    sidecar
        .hang
        .store(true, std::sync::atomic::Ordering::SeqCst);
    let config = quick();
    let health = Arc::new(RelayHealth::new(
        Relay::<ScriptedSidecar>::new_holder_name(),
        config.stall_after,
    ));
    let starts = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let shutdown = Shutdown::new();
    let start = {
        let (url, outbox, sidecar, health, starts, stop) = (
            db.url.clone(),
            db.outbox.clone(),
            sidecar.clone(),
            health.clone(),
            starts.clone(),
            shutdown.clone(),
        );
        move || {
            starts.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let relay = Relay::new(
                outbox.clone(),
                &url,
                sidecar.clone(),
                Arc::new(Notify::new()),
                quick(),
                health.clone(),
            );
            let stop = stop.clone();
            async move { Ok(tokio::spawn(relay.run(stop))) }
        }
    };
    let watchdog = tokio::spawn(supervise(start, health.clone(), shutdown.clone()));

    wait_until("the stall shows", Duration::from_secs(5), || async {
        health.view().stalled_for.is_some()
    })
    .await;
    assert!(health.view().restarts >= 1);
    assert!(
        starts.load(std::sync::atomic::Ordering::SeqCst) >= 2,
        "restarted"
    );
    wait_until(
        "readiness fails once a restart did not help",
        Duration::from_secs(5),
        || async { !health.ready() },
    )
    .await;

    // The cause goes away: the restarted relay publishes and everything clears.
    sidecar
        .hang
        .store(false, std::sync::atomic::Ordering::SeqCst);
    wait_until(
        "published after the stall",
        Duration::from_secs(5),
        || async { db.outbox.pending(0, 100).await.expect("pending").is_empty() },
    )
    .await;
    wait_until("ready again", Duration::from_secs(5), || async {
        health.ready() && health.view().stalled_for.is_none()
    })
    .await;
    shutdown.trigger();
    watchdog.await.expect("watchdog");
}
