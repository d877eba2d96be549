//! The publishing lease: one holder at a time, taken over only after expiry or release.

#![allow(clippy::unwrap_used)]

use chrono::{Duration, TimeZone, Utc};
use todo_store::{OUTBOX_LEASE, OutboxStore};

#[tokio::test]
async fn only_one_relay_holds_the_lease_until_it_expires_or_is_released() {
    let tmp = tempfile::tempdir().unwrap();
    let db = todo_store::connect(&format!("sqlite://{}/t.db", tmp.path().display()), 2)
        .await
        .unwrap();
    todo_store::migrate(&db).await.unwrap();
    let outbox = OutboxStore::new(db);
    let t0 = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
    let ttl = Duration::seconds(30);

    assert!(
        outbox
            .acquire_lease(OUTBOX_LEASE, "a", t0, ttl)
            .await
            .unwrap()
    );
    assert!(
        !outbox
            .acquire_lease(OUTBOX_LEASE, "b", t0 + Duration::seconds(1), ttl)
            .await
            .unwrap()
    );
    // The holder renews.
    assert!(
        outbox
            .acquire_lease(OUTBOX_LEASE, "a", t0 + Duration::seconds(20), ttl)
            .await
            .unwrap()
    );
    assert!(
        !outbox
            .acquire_lease(OUTBOX_LEASE, "b", t0 + Duration::seconds(40), ttl)
            .await
            .unwrap()
    );
    // Expired: the other takes over, and the first cannot come back while it is held.
    assert!(
        outbox
            .acquire_lease(OUTBOX_LEASE, "b", t0 + Duration::seconds(51), ttl)
            .await
            .unwrap()
    );
    assert!(
        !outbox
            .acquire_lease(OUTBOX_LEASE, "a", t0 + Duration::seconds(52), ttl)
            .await
            .unwrap()
    );
    // Released: free at once.
    outbox.release_lease(OUTBOX_LEASE, "b").await.unwrap();
    assert!(
        outbox
            .acquire_lease(OUTBOX_LEASE, "a", t0 + Duration::seconds(53), ttl)
            .await
            .unwrap()
    );
}
