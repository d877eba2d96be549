//! The reminders users set, through the scan in-process on every configured database: each
//! fires once at its time (not before, not again), a change re-arms them, DST keeps a day
//! offset at the same local time, all-day tasks fire at local times, and two replicas send
//! each reminder once.

#![allow(clippy::unwrap_used)]

mod support;

use std::sync::Arc;

use chrono::{DateTime, Duration as Span, NaiveDate, Utc};
use reminder_cron::{ScanSettings, Tick};
use support::*;
use todo_domain::{
    Description, Due, Priority, ReminderEvent, Reminders, Tags, TaskSnapshot, TimeZone, Title,
    time::resolve_local,
};
use todo_store::{NewTask, TaskPatch};

fn published(tick: Tick) -> u64 {
    match tick {
        Tick::Ran(report) => report.published,
        Tick::Skipped => panic!("the tick was skipped"),
    }
}

async fn task(bed: &Bed, title: &str, due: Due, tz: &str, reminders: &[&str]) -> TaskSnapshot {
    let new = NewTask {
        title: Title::parse(title).unwrap(),
        description: Description::default(),
        priority: Priority::Medium,
        tags: Tags::default(),
        due: Some(due),
        time_zone: TimeZone::parse(tz).unwrap(),
        recurrence: None,
        reminders: Reminders::parse(reminders).unwrap(),
    };
    bed.tasks
        .create(&user("alice"), new, now() - Span::days(7))
        .await
        .unwrap()
}

fn timed(tz: &str, at: DateTime<Utc>) -> Due {
    let tz = TimeZone::parse(tz).unwrap().tz();
    Due::at(at, at.with_timezone(&tz).naive_local())
}

/// (offset, fires_at) of everything published so far.
fn sent(bed: &Bed) -> Vec<(Option<String>, Option<DateTime<Utc>>)> {
    bed.publisher
        .published()
        .into_iter()
        .map(|s| (s.event.offset, s.event.fires_at))
        .collect()
}

#[tokio::test]
async fn each_reminder_fires_once_at_its_time_and_replaces_the_default_one() {
    for bed in beds().await {
        let due = now() + Span::hours(2);
        let t = task(&bed, "Dentist", timed("UTC", due), "UTC", &["1h", "15m"]).await;
        let scanner = bed.scanner(ScanSettings::default()).await;
        // Due within the window, but it has reminders of its own: no default reminder.
        assert_eq!(published(scanner.tick(now()).await), 0, "[{}]", bed.label);
        let one_hour = due - Span::hours(1);
        assert_eq!(
            published(scanner.tick(one_hour - Span::seconds(1)).await),
            0
        );
        assert_eq!(
            published(scanner.tick(one_hour + Span::seconds(5)).await),
            1
        );
        assert_eq!(
            published(scanner.tick(one_hour + Span::seconds(35)).await),
            0
        );
        let quarter = due - Span::minutes(15);
        assert_eq!(published(scanner.tick(quarter + Span::seconds(2)).await), 1);
        // Another replica, or this one restarted, later: nothing again.
        let other = bed.scanner(ScanSettings::default()).await;
        assert_eq!(published(other.tick(quarter + Span::seconds(30)).await), 0);
        assert_eq!(
            sent(&bed),
            [
                (Some("1h".to_owned()), Some(one_hour)),
                (Some("15m".to_owned()), Some(quarter)),
            ],
            "[{}]",
            bed.label
        );
        let events = bed.publisher.published();
        assert_eq!(
            events[0].event_id,
            ReminderEvent::id_for_offset(t.id, due, "1h")
        );
        assert_eq!(events[0].event.window_seconds, 3600);
        assert_eq!(events[1].event.due_at, due);
    }
}

#[tokio::test]
async fn moving_the_due_time_or_changing_reminders_re_arms_them() {
    for bed in beds().await {
        let due = now() + Span::minutes(30);
        let t = task(&bed, "Call", timed("UTC", due), "UTC", &["10m"]).await;
        let scanner = bed.scanner(ScanSettings::default()).await;
        let fires = due - Span::minutes(10);
        assert_eq!(published(scanner.tick(fires).await), 1, "[{}]", bed.label);
        // Moved an hour later: the same reminder fires again, at its new time.
        bed.move_due("alice", t.id, due + Span::hours(1)).await;
        assert_eq!(published(scanner.tick(fires + Span::seconds(30)).await), 0);
        let refire = fires + Span::hours(1);
        assert_eq!(published(scanner.tick(refire).await), 1, "[{}]", bed.label);
        // A new reminder on the same due time fires; the one already sent does not.
        let patch = TaskPatch {
            reminders: Some(Reminders::parse(&["10m", "5m"]).unwrap()),
            ..TaskPatch::default()
        };
        bed.tasks
            .update(&user("alice"), t.id, patch, now())
            .await
            .unwrap();
        let five = due + Span::hours(1) - Span::minutes(5);
        assert_eq!(published(scanner.tick(five).await), 1);
        let offsets: Vec<Option<String>> = sent(&bed).into_iter().map(|(o, _)| o).collect();
        assert_eq!(
            offsets,
            [Some("10m".into()), Some("10m".into()), Some("5m".into())],
            "[{}]",
            bed.label
        );
        let ids: Vec<_> = bed
            .publisher
            .published()
            .iter()
            .map(|s| s.event_id)
            .collect();
        assert_ne!(ids[0], ids[1], "a new due time is a new reminder");
    }
}

#[tokio::test]
async fn completed_deleted_and_long_past_reminders_do_not_fire() {
    for bed in beds().await {
        let due = now() + Span::hours(1);
        let done = task(&bed, "Done", timed("UTC", due), "UTC", &["30m"]).await;
        let gone = task(&bed, "Gone", timed("UTC", due), "UTC", &["30m"]).await;
        let late = task(&bed, "Late", timed("UTC", due), "UTC", &["30m"]).await;
        bed.complete("alice", done.id).await;
        bed.delete("alice", gone.id).await;
        let scanner = bed.scanner(ScanSettings::default()).await;
        // Past its time by more than the grace (the service was down for hours): skipped.
        let fires = due - Span::minutes(30);
        let settings = ScanSettings::default();
        let beyond_grace =
            fires + Span::from_std(settings.overdue_grace).unwrap() + Span::seconds(1);
        assert_eq!(
            published(scanner.tick(beyond_grace).await),
            0,
            "[{}]",
            bed.label
        );
        // Within the grace it still goes out, once, for the live task only.
        let other = bed.scanner(ScanSettings::default()).await;
        assert_eq!(published(other.tick(fires + Span::minutes(5)).await), 1);
        assert_eq!(bed.publisher.published()[0].event.task_id, late.id);
    }
}

#[tokio::test]
async fn a_day_offset_fires_at_the_same_local_time_across_a_dst_change() {
    for bed in beds().await {
        // Berlin springs forward in the night to Sunday 2026-03-29: 08:00 that morning is
        // 06:00 UTC, and "1d" before it is Saturday 08:00 CET, 07:00 UTC (23 hours before).
        let berlin = chrono_tz::Europe::Berlin;
        let local = NaiveDate::from_ymd_opt(2026, 3, 29)
            .unwrap()
            .and_hms_opt(8, 0, 0)
            .unwrap();
        let due = Due::at(resolve_local(berlin, local), local);
        task(&bed, "Brunch", due, "Europe/Berlin", &["1d"]).await;
        let scanner = bed.scanner(ScanSettings::default()).await;
        let expected = utc("2026-03-28T07:00:00Z");
        assert_eq!(
            published(scanner.tick(expected - Span::seconds(1)).await),
            0
        );
        assert_eq!(
            published(scanner.tick(expected + Span::seconds(10)).await),
            1,
            "[{}]",
            bed.label
        );
        assert_eq!(sent(&bed), [(Some("1d".into()), Some(expected))]);
    }
}

#[tokio::test]
async fn an_all_day_task_is_reminded_at_local_times_of_its_day() {
    for bed in beds().await {
        let tokyo = chrono_tz::Asia::Tokyo;
        let day = NaiveDate::from_ymd_opt(2026, 6, 2).unwrap();
        task(
            &bed,
            "Rent",
            Due::on_day(tokyo, day),
            "Asia/Tokyo",
            &["09:00", "-1d 18:00"],
        )
        .await;
        let scanner = bed.scanner(ScanSettings::default()).await;
        // 18:00 JST on June 1st is 09:00 UTC; 09:00 JST on June 2nd is 00:00 UTC.
        let eve = utc("2026-06-01T09:00:00Z");
        let morning = utc("2026-06-02T00:00:00Z");
        assert_eq!(published(scanner.tick(eve - Span::seconds(1)).await), 0);
        assert_eq!(published(scanner.tick(eve + Span::seconds(20)).await), 1);
        assert_eq!(published(scanner.tick(morning - Span::seconds(1)).await), 0);
        assert_eq!(published(scanner.tick(morning).await), 1, "[{}]", bed.label);
        assert_eq!(
            sent(&bed),
            [
                (Some("-1d 18:00".into()), Some(eve)),
                (Some("09:00".into()), Some(morning)),
            ]
        );
        let event = &bed.publisher.published()[0].event;
        assert_eq!(event.due_date, Some(day));
        assert_eq!(event.due_at, utc("2026-06-02T14:59:59Z"));
    }
}

#[tokio::test]
async fn two_replicas_ticking_together_send_each_reminder_once() {
    for bed in beds().await {
        let due = now() + Span::hours(3);
        for i in 0..20 {
            task(
                &bed,
                &format!("t{i}"),
                timed("UTC", due),
                "UTC",
                &["2h", "1h"],
            )
            .await;
        }
        bed.publisher.set_delay(std::time::Duration::from_millis(2));
        let a = Arc::new(bed.scanner(ScanSettings::default()).await);
        let b = Arc::new(bed.scanner(ScanSettings::default()).await);
        for at in [due - Span::hours(2), due - Span::hours(1)] {
            let (ra, rb) =
                tokio::join!(a.tick(at + Span::seconds(1)), b.tick(at + Span::seconds(1)));
            assert_eq!(published(ra) + published(rb), 20, "[{}] at {at}", bed.label);
        }
        let mut ids: Vec<_> = bed
            .publisher
            .published()
            .iter()
            .map(|s| s.event_id)
            .collect();
        assert_eq!(ids.len(), 40);
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), 40, "[{}] no reminder sent twice", bed.label);
    }
}

#[tokio::test]
async fn each_tick_is_a_trace_of_its_own_that_its_reminders_carry() {
    for bed in beds().await {
        let due = now() + Span::hours(1);
        for title in ["a", "b"] {
            task(&bed, title, timed("UTC", due), "UTC", &["30m"]).await;
        }
        task(
            &bed,
            "c",
            timed("UTC", due + Span::minutes(1)),
            "UTC",
            &["30m"],
        )
        .await;
        let scanner = bed.scanner(ScanSettings::default()).await;
        let fires = due - Span::minutes(30);
        assert_eq!(published(scanner.tick(fires).await), 2, "[{}]", bed.label);
        assert_eq!(published(scanner.tick(fires + Span::minutes(1)).await), 1);
        let trace = |i: usize| {
            let tp = bed.publisher.published()[i].traceparent.clone().unwrap();
            assert!(service_kit::TraceContext::parse(&tp).is_some(), "{tp}");
            tp.split('-').nth(1).unwrap().to_owned()
        };
        assert_eq!(trace(0), trace(1), "[{}] one tick, one trace", bed.label);
        assert_ne!(
            trace(1),
            trace(2),
            "[{}] another tick, another trace",
            bed.label
        );
    }
}
