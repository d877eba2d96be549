use std::{
    collections::HashSet,
    sync::Mutex,
    time::{Duration, Instant},
};

use sea_orm::ConnectionTrait as _;
use todo_domain::{Description, Priority, Tags, TimeZone, Title, UserId};
use todo_store::{NewTask, TaskStore};

use super::*;

/// Answers like daprd (1.16 to 1.18) with Kafka behind [`service_kit::DaprPublisher`]: a
/// bulk call with any refused event fails as a whole, which is no refusal of each; an event
/// published alone is refused as itself. Events of the users in `refused` are refused;
/// events of the users in `failing` fail with the error given; every call is recorded as
/// (user, task title).
#[derive(Default)]
struct ScriptedSidecar {
    calls: Mutex<Vec<Vec<(String, String)>>>,
    refused: Mutex<HashSet<String>>,
    failing: Mutex<std::collections::HashMap<String, PublishError>>,
    /// While set, every call of more than one event fails as a whole.
    bulk_refused: std::sync::atomic::AtomicBool,
    /// While set, every event fails with this (an outage).
    outage: Mutex<Option<PublishError>>,
    /// While set, every call hangs (a frozen sidecar without a deadline).
    hang: std::sync::atomic::AtomicBool,
    /// While set, the sidecar does not answer a check ([`Publisher::answers`]).
    silent: std::sync::atomic::AtomicBool,
    /// How long each call takes.
    latency: Mutex<Duration>,
    /// While set, each call is answered only once this has a permit (after `latency`).
    gate: Mutex<Option<Arc<tokio::sync::Semaphore>>>,
    /// How long each call with an event of one of these users takes, instead.
    slow: Mutex<std::collections::HashMap<String, Duration>>,
    in_flight: std::sync::atomic::AtomicUsize,
    max_in_flight: std::sync::atomic::AtomicUsize,
}

use service_kit::{PublishError, publish::OutgoingEvent};

fn guard<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

const TOO_LARGE: &str =
    "kafka server: Message was too large, server rejected it to avoid allocation error";

impl ScriptedSidecar {
    async fn answer(&self, events: &[OutgoingEvent<'_>]) -> Vec<Result<(), PublishError>> {
        use std::sync::atomic::Ordering::SeqCst;
        if self.hang.load(SeqCst) {
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
        let now = self.in_flight.fetch_add(1, SeqCst) + 1;
        self.max_in_flight.fetch_max(now, SeqCst);
        let latency = events
            .iter()
            .filter_map(|e| guard(&self.slow).get(e.partition_key).copied())
            .max()
            .unwrap_or(*guard(&self.latency));
        if !latency.is_zero() {
            tokio::time::sleep(latency).await;
        }
        let gate = guard(&self.gate).clone();
        if let Some(gate) = gate {
            drop(gate.acquire().await);
        }
        self.in_flight.fetch_sub(1, SeqCst);
        if let Some(e) = guard(&self.outage).clone() {
            return events.iter().map(|_| Err(e.clone())).collect();
        }
        let failing = guard(&self.failing);
        let refused = guard(&self.refused);
        let whole = if events.len() > 1 {
            if self.bulk_refused.load(SeqCst) {
                Some(PublishError::Failed(
                    "the bulk call was refused as a whole".into(),
                ))
            } else if events.iter().any(|e| refused.contains(e.partition_key)) {
                Some(PublishError::Failed(format!(
                    "the bulk call was refused as a whole: {TOO_LARGE}"
                )))
            } else {
                events
                    .iter()
                    .find_map(|e| failing.get(e.partition_key).cloned())
            }
        } else {
            None
        };
        events
            .iter()
            .map(|e| {
                if let Some(error) = &whole {
                    Err(error.clone())
                } else if refused.contains(e.partition_key) {
                    Err(PublishError::Refused(TOO_LARGE.into()))
                } else if let Some(error) = failing.get(e.partition_key) {
                    Err(error.clone())
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

    /// The titles of `user`'s events in the order they were sent, a retry in place counted
    /// once: a later event before an earlier one is out of order.
    fn sent_in_order(&self, user: &str) -> Vec<String> {
        let mut titles: Vec<String> = self
            .sent()
            .into_iter()
            .filter(|(u, _)| u == user)
            .map(|(_, title)| title)
            .collect();
        titles.dedup();
        titles
    }
}

impl Publisher for ScriptedSidecar {
    async fn publish(&self, event: OutgoingEvent<'_>) -> Result<(), PublishError> {
        self.answer(&[event]).await.remove(0)
    }

    async fn publish_all(&self, events: &[OutgoingEvent<'_>]) -> Vec<Result<(), PublishError>> {
        self.answer(events).await
    }

    async fn answers(&self) -> bool {
        !self.hang.load(std::sync::atomic::Ordering::SeqCst)
            && !self.silent.load(std::sync::atomic::Ordering::SeqCst)
            && !matches!(*guard(&self.outage), Some(PublishError::Unavailable(_)))
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
                // One bulk call with every user's first event.
                calls: 1,
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

/// The sidecar freezes in the middle of a round: one call went through, the next got no
/// answer, and the sidecar answers nothing since. Such a call's events are written when a
/// frozen sidecar wakes (its socket took them), so every further call to it is one more
/// copy written late, after the replica that took over published them: the relay sends
/// nothing more until the sidecar answers, and hands the lock over.
#[tokio::test]
async fn a_round_with_a_call_left_unanswered_sends_no_more_until_the_sidecar_answers() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = sqlite_with_events(dir.path()).await;
    let sidecar = Arc::new(ScriptedSidecar::default());
    // bob's calls get no answer (the call deadline); cy's go through; and from the start the
    // sidecar answers no check, which the relay asks only once a call went unanswered.
    guard(&sidecar.failing).insert(
        "bob".into(),
        PublishError::Unavailable("no answer within the call's deadline".into()),
    );
    sidecar
        .silent
        .store(true, std::sync::atomic::Ordering::SeqCst);
    let relay = Running::start(relay_on(&db, &sidecar, quick()));
    let holder = relay.holder.clone();
    let bob_calls = || {
        sidecar
            .calls()
            .iter()
            .filter(|call| call.iter().any(|(user, _)| user == "bob"))
            .count()
    };
    wait_until("bob's first call", Duration::from_secs(2), || async {
        bob_calls() >= 1
    })
    .await;
    let went = sidecar.sent().iter().filter(|(u, _)| u == "cy").count();
    assert!(
        went >= 1,
        "cy's events went beside bob's: {:?}",
        sidecar.calls()
    );
    // Well within `handover_after` + `handover_pause`, after which the relay may try again.
    tokio::time::sleep(Duration::from_millis(250)).await;
    assert_eq!(
        bob_calls(),
        1,
        "a call after one went unanswered: {:?}",
        sidecar.calls()
    );
    wait_until(
        "the lock was handed over",
        Duration::from_secs(2),
        || async { holder_of(&db).await.as_ref() != Some(&holder) },
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
            // ann's and bob's first events with cy's, then each one's second and third.
            calls: 3,
            failed: true,
            only_refusals: true,
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
            calls: 3,
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

/// The outbox holds only what waits: a published event's row is deleted, and so is a row a
/// relay of an earlier version marked published instead (a replica still running during an
/// upgrade), which is not sent again.
#[tokio::test]
async fn published_events_leave_the_outbox_and_rows_an_older_relay_marked_are_purged() {
    for (label, db) in each_database().await {
        for (user, title) in [("ann", "ann 1"), ("ann", "ann 2"), ("bob", "bob 1")] {
            create(&db.tasks, user, title).await;
        }
        let first = db.outbox.pending(0, 10).await.expect("pending")[0].seq;
        db.tasks
            .db()
            .execute_unprepared(&format!(
                "UPDATE outbox SET published_at = created_at WHERE id = {first}"
            ))
            .await
            .expect("marked as an older relay does");
        let sidecar = Arc::new(ScriptedSidecar::default());
        let relay = relay_on(&db, &sidecar, RelayConfig::default());
        let lock = take_lock(&db, &relay.holder).await;
        let mut unmarked = Vec::new();
        let round = relay
            .round(&lock, &mut unmarked, relay.config.batch_size)
            .await;
        relay.flush_marks(&mut unmarked).await;
        assert_eq!(round.published, 2, "{label}: {round:?}");
        let mut sent: Vec<String> = sidecar.sent().into_iter().map(|(_, t)| t).collect();
        sent.sort();
        assert_eq!(
            sent,
            ["ann 2", "bob 1"],
            "{label}: the marked row is not sent"
        );

        let rows = |db: &Db| {
            let conn = db.tasks.db().clone();
            async move {
                conn.query_one_raw(sea_orm::Statement::from_string(
                    conn.get_database_backend(),
                    "SELECT count(*) AS n FROM outbox",
                ))
                .await
                .expect("count")
                .expect("a row")
                .try_get::<i64>("", "n")
                .expect("a number")
            }
        };
        assert_eq!(rows(&db).await, 1, "{label}: only the marked row is left");
        relay.purge().await;
        assert_eq!(rows(&db).await, 0, "{label}: the marked row is purged");
    }
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
        "the first call carries every user: {calls:?}"
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
                "{label}: {user}'s event went in the first call, beside the heavy user's: {:?}",
                &sent[..sent.len().min(8)]
            );
        }
        // Everyone reached had their share first; then the heavy user's events already
        // read fill the round up to its size.
        let heavy: Vec<&str> = sent
            .iter()
            .filter(|(u, _)| u == "heavy")
            .map(|(_, t)| t.as_str())
            .collect();
        let expected: Vec<String> = (0..197).map(|n| format!("heavy {n}")).collect();
        assert_eq!(
            heavy, expected,
            "{label}: the heavy user's first events, in order"
        );
        assert_eq!(round.published, 200, "{label}: {round:?}");
    }
}

/// The round after one that got nothing through probes with one bulk call's worth: one
/// event per user, so a user whose partition is down and who has more than that pending
/// cannot fill the probe and make every later round look like an outage too.
#[tokio::test]
async fn a_probe_round_reaches_the_users_behind_one_users_failing_backlog() {
    for (label, db) in each_database().await {
        for n in 1..=5 {
            create(&db.tasks, "stuck", &format!("stuck {n}")).await;
        }
        create(&db.tasks, "ann", "ann 1").await;
        let sidecar = Arc::new(ScriptedSidecar::default());
        guard(&sidecar.failing).insert(
            "stuck".into(),
            PublishError::Failed("kafka server: Leader not available".into()),
        );
        let config = RelayConfig {
            bulk_size: 2,
            ..RelayConfig::default()
        };
        let relay = relay_on(&db, &sidecar, config);
        let lock = take_lock(&db, &relay.holder).await;

        let round = relay.probe(&lock, &mut Vec::new()).await;

        assert_eq!(round.published, 1, "{label}: {round:?}");
        assert!(
            sidecar.sent().iter().any(|(_, t)| t == "ann 1"),
            "{label}: the probe reached ann: {:?}",
            sidecar.sent()
        );
        assert!(
            sidecar
                .sent()
                .iter()
                .all(|(u, t)| u != "stuck" || t == "stuck 1"),
            "{label}: one event of stuck's in the probe: {:?}",
            sidecar.sent()
        );
    }
}

/// One whole round of a relay on `db` with `config`, and how long it took.
async fn timed_round(
    db: &Db,
    sidecar: &Arc<ScriptedSidecar>,
    config: RelayConfig,
) -> (Round, Duration) {
    let relay = relay_on(db, sidecar, config);
    let lock = take_lock(db, &relay.holder).await;
    let started = Instant::now();
    let round = relay
        .round(&lock, &mut Vec::new(), relay.config.batch_size)
        .await;
    (round, started.elapsed())
}

/// A round filled with one user's backlog still ends after [`ROUND_MAX`], and marks what
/// it published every few milliseconds as it goes: a round of a thousand slow publishes
/// marked only by the next round's read left the first of them (and other users' events)
/// shown as pending for seconds.
#[tokio::test]
async fn a_round_of_one_users_long_backlog_ends_in_time_for_its_events_to_be_marked() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = sqlite_with_events(dir.path()).await;
    for n in 0..300 {
        create(&db.tasks, "heavy", &format!("heavy {n}")).await;
    }
    let sidecar = Arc::new(ScriptedSidecar::default());
    *guard(&sidecar.latency) = Duration::from_millis(5);
    let (round, took) = timed_round(&db, &sidecar, RelayConfig::default()).await;

    assert!(round.cut_short, "{round:?}");
    assert!(
        took < ROUND_MAX * 3,
        "a round of 300 publishes of 5 ms ran {took:?}"
    );
    assert!(round.published >= 9 && round.published < 300, "{round:?}");
    // And it marked what it published as it went, not only at the next round's read.
    let pending = db.outbox.pending(0, 1000).await.expect("pending").len();
    assert!(
        pending < 300,
        "nothing marked during a round of {round:?}: {pending} pending"
    );
}

/// After a round that published little (one user's backlog going one event per round
/// trip while other users' commits cut the rounds short), the next reads a page of about
/// what it can publish, not a thousand rows again.
#[tokio::test]
async fn after_a_round_that_published_little_the_next_reads_a_small_page() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = sqlite_with_events(dir.path()).await;
    for n in 0..300 {
        create(&db.tasks, "heavy", &format!("heavy {n}")).await;
    }
    let sidecar = Arc::new(ScriptedSidecar::default());
    let config = RelayConfig {
        per_user: 4,
        ..RelayConfig::default()
    };
    let relay = relay_on(&db, &sidecar, config);
    let lock = take_lock(&db, &relay.holder).await;
    relay.pace.store(2, std::sync::atomic::Ordering::Relaxed);

    let round = relay
        .round(&lock, &mut Vec::new(), relay.config.batch_size)
        .await;

    // Pages of 16 rows (4 per user at least), five reads at most: ann's, bob's and cy's
    // events, and some of the heavy user's, not all 309.
    assert!(round.read < 309, "read everything: {round:?}");
    assert!(round.saturated, "more is waiting: {round:?}");
    assert_eq!(
        relay.pace.load(std::sync::atomic::Ordering::Relaxed),
        round.published
    );
    let sent = sidecar.sent();
    for user in ["ann", "bob", "cy"] {
        assert_eq!(
            sent.iter().filter(|(u, _)| u == user).count(),
            3,
            "{user}'s events went: {sent:?}"
        );
    }
}

/// Each user's events go as a pipeline of their own: a user whose every call is slow
/// (its partition's leader is far away) does not slow anybody else down, as a wave that
/// waits for its slowest call did.
#[tokio::test]
async fn a_slow_users_calls_do_not_hold_up_the_next_events_of_the_others() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = sqlite_with_events(dir.path()).await;
    for n in 4..=10 {
        create(&db.tasks, "ann", &format!("ann {n}")).await;
    }
    let sidecar = Arc::new(ScriptedSidecar::default());
    // Bob's three calls one after another stay inside one round (`ROUND_MAX`).
    let slow = Duration::from_millis(20);
    guard(&sidecar.slow).insert("bob".into(), slow);
    // One user per call, so that bob's calls are his own.
    let config = RelayConfig {
        bulk_size: 1,
        ..RelayConfig::default()
    };
    let (round, took) = timed_round(&db, &sidecar, config).await;

    assert_eq!(round.published, 16, "{round:?}");
    let sent = sidecar.sent();
    let ann: Vec<&str> = sent
        .iter()
        .filter(|(u, _)| u == "ann")
        .map(|(_, t)| t.as_str())
        .collect();
    let expected: Vec<String> = (1..=10).map(|n| format!("ann {n}")).collect();
    assert_eq!(ann, expected, "ann's events in commit order, each once");
    // ann's ten events and cy's three went while bob's first call was in flight.
    let first_bob = sent
        .iter()
        .position(|(u, _)| u == "bob")
        .expect("bob's first call");
    let second_bob = sent
        .iter()
        .enumerate()
        .filter(|(_, (u, _))| u == "bob")
        .nth(1)
        .map(|(i, _)| i)
        .expect("bob's second call");
    let between: Vec<&(String, String)> = sent[first_bob + 1..second_bob].iter().collect();
    assert!(
        between.iter().filter(|(u, _)| u == "ann").count() >= 9
            && between.iter().filter(|(u, _)| u == "cy").count() >= 2,
        "the others' next events waited for bob's slow call: {sent:?}"
    );
    assert!(
        took >= slow * 3,
        "bob's events went one at a time: {took:?}"
    );
}

/// What is committed while a round runs is read in and published in that round, beside a
/// heavy user's backlog, which keeps going: a round used to stop at the first commit after
/// 25 ms (its calls in flight finishing, then a new read), so a heavy user's events waited
/// for every other user's commits (a 2,000-event deletion went at a tenth of the sidecar's
/// round trip under 400 writes/s).
#[tokio::test]
async fn events_committed_during_a_round_join_it_beside_a_heavy_users_backlog() {
    for (label, db) in each_database().await {
        for n in 0..60 {
            create(&db.tasks, "heavy", &format!("heavy {n}")).await;
        }
        let sidecar = Arc::new(ScriptedSidecar::default());
        *guard(&sidecar.latency) = Duration::from_millis(4);
        let relay = relay_on(&db, &sidecar, RelayConfig::default());
        let lock = take_lock(&db, &relay.holder).await;
        let wake = relay.wake.clone();
        let writer = async {
            // Well inside the round (60 publishes of 4 ms), past ROUND_SLICE.
            tokio::time::sleep(ROUND_SLICE + Duration::from_millis(10)).await;
            create(&db.tasks, "ann", "ann 1").await;
            wake.notify_one();
        };
        let mut unmarked = Vec::new();
        let (round, ()) = tokio::join!(
            relay.round(&lock, &mut unmarked, relay.config.batch_size),
            writer
        );

        let sent = sidecar.sent();
        assert!(
            sent.iter().any(|(u, t)| u == "ann" && t == "ann 1"),
            "{label}: ann's event, committed during the round, went in it: {round:?}"
        );
        let heavy: Vec<&str> = sent
            .iter()
            .filter(|(u, _)| u == "heavy")
            .map(|(_, t)| t.as_str())
            .collect();
        let expected: Vec<String> = (0..heavy.len()).map(|n| format!("heavy {n}")).collect();
        assert_eq!(heavy, expected, "{label}: the heavy user's events in order");
        let after_ann = sent
            .iter()
            .position(|(u, _)| u == "ann")
            .map(|i| &sent[i + 1..]);
        assert!(
            after_ann.is_some_and(|rest| rest.iter().any(|(u, _)| u == "heavy")),
            "{label}: the heavy user's events went on after ann's commit: {round:?}"
        );
        assert_eq!(round.read, 61, "{label}: {round:?}");
    }
}

/// Under steady writes, the commits of one `ROUND_SLICE` go out together: a round whose
/// calls were all answered while commits came in waits for its next read instead of ending,
/// so they share one bulk call. It used to end, and the next round read and sent each
/// commit or two on its own: calls of about 25 events at 1,500 writes/s where this makes
/// 45, each costing the sidecar and the broker nearly as much whatever its size.
#[tokio::test]
async fn commits_while_a_round_waits_for_its_next_read_share_one_call() {
    for (label, db) in each_database().await {
        create(&db.tasks, "ann", "ann 1").await;
        let sidecar = Arc::new(ScriptedSidecar::default());
        // ann's call is answered before the round's next read is due, and not before the
        // four commits below are made (each with its wake): on a machine too busy to make
        // them within the call's latency, the round would otherwise end for want of a wake
        // before the later ones came, whatever the code.
        *guard(&sidecar.latency) = ROUND_SLICE / 2;
        let written = Arc::new(tokio::sync::Semaphore::new(0));
        *guard(&sidecar.gate) = Some(written.clone());
        let relay = relay_on(&db, &sidecar, RelayConfig::default());
        let lock = take_lock(&db, &relay.holder).await;
        let wake = relay.wake.clone();
        let writer = async {
            // While ann's call is in flight: a commit is coming.
            tokio::time::sleep(ROUND_SLICE / 10).await;
            wake.notify_one();
            let started = std::time::Instant::now();
            for user in ["bob", "cy", "dee", "eve"] {
                create(&db.tasks, user, &format!("{user} 1")).await;
                wake.notify_one();
            }
            written.add_permits(1);
            started.elapsed()
        };
        let mut unmarked = Vec::new();
        let (round, writing) = tokio::join!(
            relay.round(&lock, &mut unmarked, relay.config.batch_size),
            writer
        );

        assert_eq!(
            round.published, 5,
            "{label}: the commits went in the round: {round:?}"
        );
        let calls = sidecar.calls();
        assert_eq!(
            calls[0].len(),
            1,
            "{label}: ann's event went alone: {calls:?}"
        );
        // On a machine too busy to commit four rows within one slice, the round reads
        // them in more than once (still in this round, checked above).
        if writing < ROUND_SLICE / 2 {
            let mut rest: Vec<String> = calls[1..].concat().into_iter().map(|(u, _)| u).collect();
            rest.sort();
            assert_eq!(
                (calls.len(), rest),
                (
                    2,
                    vec!["bob".into(), "cy".into(), "dee".into(), "eve".into()]
                ),
                "{label}: the four commits went in one call: {calls:?}"
            );
        }
    }
}

/// A user whose event failed waits out a backoff, left out of the next round's first read;
/// when that backoff ends while the round runs and the user commits again, the round's
/// later read must not send the new event before the one that failed. The reads during a
/// round started at the round's oldest event, above the failed one, and did (seen after a
/// broker restart with two replicas: a user's events on Kafka out of commit order).
#[tokio::test]
async fn a_user_whose_backoff_ends_during_a_round_keeps_their_order() {
    for (label, db) in each_database().await {
        create(&db.tasks, "ann", "ann 1").await;
        create(&db.tasks, "bob", "bob 1").await;
        let sidecar = Arc::new(ScriptedSidecar::default());
        guard(&sidecar.failing).insert(
            "ann".into(),
            PublishError::Failed("kafka server: there is currently no leader".into()),
        );
        let backoff = Duration::from_millis(60);
        let config = RelayConfig {
            refusal_backoff_initial: backoff,
            refusal_backoff_max: backoff,
            ..RelayConfig::default()
        };
        let relay = relay_on(&db, &sidecar, config);
        let lock = take_lock(&db, &relay.holder).await;
        let mut unmarked = Vec::new();
        let first = relay
            .round(&lock, &mut unmarked, relay.config.batch_size)
            .await;
        assert_eq!(
            (first.published, first.failed),
            (1, true),
            "{label}: bob 1 went, ann 1 failed: {first:?}"
        );

        // The partition is back. The next round starts while ann waits, with bob's next
        // event, whose call outlasts ann's backoff; ann commits again meanwhile.
        guard(&sidecar.failing).clear();
        guard(&sidecar.slow).insert("bob".into(), 4 * backoff);
        create(&db.tasks, "bob", "bob 2").await;
        let wake = relay.wake.clone();
        let writer = async {
            tokio::time::sleep(2 * backoff).await;
            create(&db.tasks, "ann", "ann 2").await;
            wake.notify_one();
        };
        let (_, ()) = tokio::join!(
            relay.round(&lock, &mut unmarked, relay.config.batch_size),
            writer
        );
        guard(&sidecar.slow).clear();
        for _ in 0..3 {
            relay
                .round(&lock, &mut unmarked, relay.config.batch_size)
                .await;
        }
        relay.flush_marks(&mut unmarked).await;

        assert_eq!(
            sidecar.sent_in_order("ann"),
            ["ann 1", "ann 2"],
            "{label}: ann's events in commit order, the failed one first"
        );
        assert!(
            db.outbox.pending(0, 100).await.expect("pending").is_empty(),
            "{label}: everything published"
        );
    }
}

/// A round's first read takes its pages in statements of their own: an event that becomes
/// visible between two of them below where the later one starts is in neither, while its
/// user's next event, committed after it, can be in the later page. That one must not go
/// first.
#[tokio::test]
async fn an_event_that_becomes_visible_between_two_pages_of_a_read_still_goes_first() {
    for (label, db) in each_database().await {
        // A free number at the outbox's head, where ann's first event will show up late
        // (as a transaction that took its number early and committed late does).
        create(&db.tasks, "zed", "zed 1").await;
        let gap = db.outbox.pending(0, 10).await.expect("pending")[0].seq;
        db.tasks
            .db()
            .execute_unprepared("DELETE FROM outbox WHERE user_id = 'zed'")
            .await
            .expect("gap");
        for n in 1..=10 {
            create(&db.tasks, "bob", &format!("bob {n}")).await;
        }
        let sidecar = Arc::new(ScriptedSidecar::default());
        let config = RelayConfig {
            batch_size: 10,
            per_user: 2,
            ..RelayConfig::default()
        };
        let relay = relay_on(&db, &sidecar, config);
        // The first page is bob's ten events; before the second, ann's first event becomes
        // visible in the gap and her second commits after it.
        let tasks = db.tasks.clone();
        *guard(&relay.between_pages) = Some(Box::pin(async move {
            create(&tasks, "ann", "ann 1").await;
            tasks
                .db()
                .execute_unprepared(&format!(
                    "UPDATE outbox SET id = {gap} WHERE user_id = 'ann'"
                ))
                .await
                .expect("ann 1 into the gap");
            create(&tasks, "ann", "ann 2").await;
        }));
        let lock = take_lock(&db, &relay.holder).await;
        let mut unmarked = Vec::new();
        for _ in 0..4 {
            relay.round(&lock, &mut unmarked, 10).await;
        }
        relay.flush_marks(&mut unmarked).await;
        assert!(
            guard(&relay.between_pages).is_none(),
            "{label}: the read went past its first page"
        );

        assert_eq!(
            sidecar.sent_in_order("ann"),
            ["ann 1", "ann 2"],
            "{label}: ann's events in commit order"
        );
        assert!(
            db.outbox.pending(0, 100).await.expect("pending").is_empty(),
            "{label}: everything published"
        );
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

/// Two relays on one database, each with its own scripted sidecar.
fn two_relays(
    db: &Db,
    config: &RelayConfig,
) -> (
    Arc<ScriptedSidecar>,
    Running,
    Arc<ScriptedSidecar>,
    Relay<ScriptedSidecar>,
) {
    let first_sidecar = Arc::new(ScriptedSidecar::default());
    let first = Running::start(relay_on(db, &first_sidecar, config.clone()));
    let second_sidecar = Arc::new(ScriptedSidecar::default());
    let second = relay_on(db, &second_sidecar, config.clone());
    (first_sidecar, first, second_sidecar, second)
}

/// The publishing replica's sidecar dies while every pending user has a failure on record
/// (one user's events refused by the broker, another's failed on an answer): the calls
/// that get no answer are the sidecar's death, not more refusals. The holder backs off
/// and hands the lock over, and the other replica publishes everything.
#[tokio::test]
async fn a_dead_sidecar_beside_known_refusals_still_hands_the_lock_over() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = sqlite_with_events(dir.path()).await;
    let config = RelayConfig {
        park_after: 1000,
        ..quick()
    };
    let (dying, first, healthy, second) = two_relays(&db, &config);
    guard(&dying.refused).insert("ann".into());
    guard(&dying.failing).insert(
        "bob".into(),
        PublishError::Failed("Internal: kafka: client has run out of available brokers".into()),
    );
    // cy's events go, so ann's and bob's failures are seen while others get through.
    wait_until("cy's events went", Duration::from_secs(3), || async {
        dying.sent().iter().any(|(_, t)| t == "cy 3")
    })
    .await;
    wait_until(
        "ann and bob were tried again",
        Duration::from_secs(3),
        || async {
            let sent = dying.sent();
            sent.iter().filter(|(_, t)| t == "ann 1").count() >= 3
                && sent.iter().filter(|(_, t)| t == "bob 1").count() >= 3
        },
    )
    .await;

    // The sidecar dies: every call now ends without an answer.
    *guard(&dying.outage) = Some(PublishError::Unavailable(
        "Unknown: error reading a body from connection: broken pipe".into(),
    ));
    let died = Instant::now();
    let before = dying.calls().len();
    let second = Running::start(second);
    let second_holder = second.holder.clone();
    wait_until(
        "the replica with a working sidecar took over",
        Duration::from_secs(5),
        || async { holder_of(&db).await.as_ref() == Some(&second_holder) },
    )
    .await;
    let calls_while_dead = dying.calls().len() - before;
    let dead_for = died.elapsed();
    // With the backoff (at most 50 ms here), a few calls per 100 ms at most; without it,
    // one call per round, as fast as the database lets it.
    let bound = 10 + (dead_for.as_millis() / 10) as usize;
    assert!(
        calls_while_dead <= bound,
        "the dead sidecar was called {calls_while_dead} times in {dead_for:?}: no backoff"
    );
    wait_until(
        "everything published through the working sidecar",
        Duration::from_secs(5),
        || async { db.outbox.pending(0, 100).await.expect("pending").is_empty() },
    )
    .await;
    for user in ["ann", "bob"] {
        let titles: Vec<String> = healthy
            .sent()
            .into_iter()
            .filter(|(u, _)| u == user)
            .map(|(_, t)| t)
            .collect();
        assert_eq!(
            titles,
            [
                format!("{user} 1"),
                format!("{user} 2"),
                format!("{user} 3")
            ],
            "{user}'s events, in order, through the other replica"
        );
    }
    assert_eq!(db.outbox.backlog().await.expect("backlog").parked, 0);
    first.stop().await;
    second.stop().await;
}

/// One user's partition is unavailable (a leader election, its broker down) while every
/// other user's events go: that user waits, with backoff, far longer than the parking
/// threshold, and nothing is parked; when the partition is back the events go, in order.
#[tokio::test]
async fn a_partition_that_is_down_while_others_work_parks_nothing_and_its_events_go_when_it_is_back()
 {
    for (label, db) in each_database().await {
        for n in 1..=2 {
            for user in ["ann", "stuck"] {
                create(&db.tasks, user, &format!("{user} {n}")).await;
            }
        }
        let sidecar = Arc::new(ScriptedSidecar::default());
        guard(&sidecar.failing).insert(
            "stuck".into(),
            PublishError::Failed(
                "Internal: kafka server: In the middle of a leadership election, there is currently no leader for this partition and hence it is unavailable for writes"
                    .into(),
            ),
        );
        let config = RelayConfig {
            park_after: 3,
            ..quick()
        };
        let relay = Running::start(relay_on(&db, &sidecar, config));
        let mut n = 3;
        let started = Instant::now();
        while sidecar
            .sent()
            .iter()
            .filter(|(_, t)| t == "stuck 1")
            .count()
            < 12
        {
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "{label}: stuck's event was not retried: {:?}",
                sidecar.sent()
            );
            create(&db.tasks, "ann", &format!("ann {n}")).await;
            n += 1;
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(
            db.outbox.backlog().await.expect("backlog").parked,
            0,
            "{label}: an event whose partition is down is not parked"
        );
        let ann_last = format!("ann {}", n - 1);
        // Sent, then marked (the relay marks what went in batches, during and after a round).
        let others = ["stuck".to_owned()];
        wait_until(
            &format!("{label}: ann's events flow meanwhile"),
            Duration::from_secs(3),
            || async {
                sidecar.sent().iter().any(|(_, t)| *t == ann_last)
                    && db
                        .outbox
                        .pending_except(0, 100, &others)
                        .await
                        .expect("pending")
                        .is_empty()
            },
        )
        .await;
        let backlog = db.outbox.backlog().await.expect("backlog");
        assert_eq!(
            backlog.pending, 2,
            "{label}: stuck's events wait: {backlog:?}"
        );

        guard(&sidecar.failing).clear();
        wait_until(
            &format!("{label}: stuck's events went once the partition was back"),
            Duration::from_secs(3),
            || async { db.outbox.pending(0, 100).await.expect("pending").is_empty() },
        )
        .await;
        let stuck: Vec<String> = sidecar
            .sent()
            .into_iter()
            .filter(|(u, t)| u == "stuck" && t != "stuck 1")
            .map(|(_, t)| t)
            .collect();
        assert_eq!(stuck, ["stuck 2"], "{label}: after stuck 1, in order");
        relay.stop().await;
    }
}

/// A replica that stepped aside for its dead sidecar takes the lock back as soon as the
/// lock is free and its sidecar answers, not after its whole pause.
#[tokio::test]
async fn a_replica_that_stepped_aside_takes_the_lock_back_at_once_when_its_sidecar_answers() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = sqlite_with_events(dir.path()).await;
    let config = RelayConfig {
        handover_pause: Duration::from_secs(30),
        stall_after: Duration::from_secs(60),
        ..quick()
    };
    let (first_sidecar, first, _second_sidecar, second) = two_relays(&db, &config);
    let first_holder = first.holder.clone();
    wait_until(
        "the first relay publishes",
        Duration::from_secs(3),
        || async { holder_of(&db).await.as_ref() == Some(&first_holder) },
    )
    .await;
    *guard(&first_sidecar.outage) = Some(PublishError::Unavailable("connection refused".into()));
    create(&db.tasks, "ann", "ann during").await;
    let second = Running::start(second);
    let second_holder = second.holder.clone();
    wait_until(
        "the second relay took over",
        Duration::from_secs(5),
        || async { holder_of(&db).await.as_ref() == Some(&second_holder) },
    )
    .await;

    // The first sidecar is back; the new holder stops.
    *guard(&first_sidecar.outage) = None;
    second.stop().await;
    let stopped = Instant::now();
    wait_until(
        "the first relay publishes again, well inside its pause",
        Duration::from_secs(2),
        || async { holder_of(&db).await.as_ref() == Some(&first_holder) },
    )
    .await;
    eprintln!(
        "lock taken back {:?} after the holder stopped",
        stopped.elapsed()
    );
    create(&db.tasks, "ann", "ann after").await;
    wait_until("a new event goes", Duration::from_secs(2), || async {
        first_sidecar.sent().iter().any(|(_, t)| t == "ann after")
    })
    .await;
    first.stop().await;
}

/// Stepping aside is progress: the watchdog does not restart a relay that waits out its
/// handover pause, however long that pause is against the stall bound.
#[tokio::test]
async fn the_watchdog_leaves_a_relay_that_stepped_aside_alone() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = sqlite_with_events(dir.path()).await;
    let sidecar = Arc::new(ScriptedSidecar::default());
    *guard(&sidecar.outage) = Some(PublishError::Unavailable("connection refused".into()));
    let config = RelayConfig {
        handover_pause: Duration::from_secs(3),
        ..quick()
    };
    assert!(config.handover_pause > config.stall_after * 2);
    let health = Arc::new(RelayHealth::new(
        Relay::<ScriptedSidecar>::new_holder_name(),
        config.stall_after,
    ));
    let shutdown = Shutdown::new();
    let start = {
        let (url, outbox, sidecar, health, stop, config) = (
            db.url.clone(),
            db.outbox.clone(),
            sidecar.clone(),
            health.clone(),
            shutdown.clone(),
            config.clone(),
        );
        move || {
            let relay = Relay::new(
                outbox.clone(),
                &url,
                sidecar.clone(),
                Arc::new(Notify::new()),
                config.clone(),
                health.clone(),
            );
            let stop = stop.clone();
            async move { Ok(tokio::spawn(relay.run(stop))) }
        }
    };
    let watchdog = tokio::spawn(supervise(start, health.clone(), shutdown.clone()));
    wait_until(
        "the lock was handed over",
        Duration::from_secs(3),
        || async { holder_of(&db).await.is_none() },
    )
    .await;
    tokio::time::sleep(config.stall_after * 4).await;
    let view = health.view();
    assert_eq!(view.restarts, 0, "restarted during its pause: {view:?}");
    assert!(view.ready, "{view:?}");
    assert!(
        holder_of(&db).await.is_none(),
        "the pause holds while the sidecar is dead"
    );
    shutdown.trigger();
    watchdog.await.expect("watchdog");
}

/// Bulk calls refused as a whole are retried event by event, but never more than a bound
/// at once over the whole round.
#[tokio::test]
async fn single_publishes_after_refused_bulk_calls_are_bounded() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = migrated(
        format!("sqlite://{}/relay.db", dir.path().display()),
        todo_store::testing::Scratch::default(),
    )
    .await;
    for n in 0..80 {
        create(&db.tasks, &format!("user{n}"), "one").await;
    }
    let sidecar = Arc::new(ScriptedSidecar::default());
    sidecar
        .bulk_refused
        .store(true, std::sync::atomic::Ordering::SeqCst);
    *guard(&sidecar.latency) = Duration::from_millis(20);
    let relay = relay_on(
        &db,
        &sidecar,
        RelayConfig {
            bulk_size: 20,
            concurrency: 4,
            ..RelayConfig::default()
        },
    );
    let lock = take_lock(&db, &relay.holder).await;
    let round = relay.round(&lock, &mut Vec::new(), 1000).await;
    assert_eq!(round.published, 80, "{round:?}");
    let max = sidecar
        .max_in_flight
        .load(std::sync::atomic::Ordering::SeqCst);
    assert!(
        max <= round::FALLBACK_IN_FLIGHT + 4,
        "{max} calls in flight at once (bound {} singles beside 4 bulk calls)",
        round::FALLBACK_IN_FLIGHT
    );
}
