//! The next instance of a recurring series: when it is due and where it stands in the
//! series, from the instance just completed. The one rule the recurring worker applies
//! ([`next_occurrence`]); the date arithmetic is [`crate::recurrence`]'s.

use chrono::{Datelike, NaiveDateTime, NaiveTime};
use uuid::Uuid;

use crate::{
    Due, Frequency, TaskSnapshot,
    recurrence::{next_due, next_due_date},
    time::to_local,
};

/// What the next instance of a series takes from the instance just completed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NextOccurrence {
    pub frequency: Frequency,
    pub series_id: Uuid,
    pub due: Due,
    /// The series' anchor: kept, or set now for a series that had none (see
    /// [`next_occurrence`]).
    pub anchor: NaiveDateTime,
    /// One more than the completed instance's (saturating: the store refuses what it cannot
    /// keep).
    pub occurrence: u32,
}

/// The next instance of the recurring `task`, completed; `None` when it does not recur.
///
/// - A series without an anchor (no due time, or recurrence switched on later) is anchored
///   at the base of this step (the due day, the due time, or the completion), so a monthly
///   series keeps that day from now on.
/// - An all-day instance is followed by one due on a day ([`next_due_date`]), any other by
///   one due at a time ([`next_due`]).
/// - The completion time is `completed_at`, or the last update for a snapshot without one.
pub fn next_occurrence(task: &TaskSnapshot) -> Option<NextOccurrence> {
    let recurrence = task.recurrence.as_ref()?;
    let tz = task.time_zone.tz();
    let completed_at = task.completed_at.unwrap_or(task.updated_at);
    let anchor = recurrence.anchor.unwrap_or_else(|| {
        task.due_date.map_or_else(
            || to_local(tz, task.due_at.unwrap_or(completed_at)),
            |date| date.and_time(NaiveTime::MIN),
        )
    });
    let due = match task.due_date {
        Some(date) => Due::on_day(
            tz,
            next_due_date(
                recurrence.frequency,
                anchor.day(),
                date,
                to_local(tz, completed_at).date(),
            ),
        ),
        None => {
            let at = next_due(
                recurrence.frequency,
                tz,
                recurrence.anchor,
                task.due_at,
                completed_at,
            );
            Due::at(at, to_local(tz, at))
        }
    };
    Some(NextOccurrence {
        frequency: recurrence.frequency,
        series_id: recurrence.series_id,
        due,
        anchor,
        occurrence: recurrence.occurrence.saturating_add(1),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        Priority, Recurrence, TimeZone,
        recurrence::tests::{day, local, utc},
    };

    /// A completed instance of a series, due as given, completed at `done`.
    fn completed(
        zone: &str,
        due_at: Option<&str>,
        due_date: Option<&str>,
        recurrence: Recurrence,
        done: &str,
    ) -> TaskSnapshot {
        TaskSnapshot {
            id: Uuid::nil(),
            user_id: "alice".into(),
            title: "t".into(),
            description: String::new(),
            priority: Priority::Medium,
            tags: vec![],
            due_at: due_at.map(utc),
            due_date: due_date.map(day),
            reminders: vec![],
            time_zone: TimeZone::parse(zone).expect("zone"),
            recurrence: Some(recurrence),
            completed: true,
            completed_at: Some(utc(done)),
            version: 2,
            created_at: utc(done),
            updated_at: utc(done),
        }
    }

    fn recurrence(frequency: Frequency, anchor: Option<&str>, occurrence: u32) -> Recurrence {
        Recurrence {
            frequency,
            series_id: Uuid::from_u128(7),
            anchor: anchor.map(local),
            occurrence,
        }
    }

    #[test]
    fn the_next_occurrence_keeps_the_anchor_counts_on_and_keeps_all_day_series_all_day() {
        // Monthly on the 31st (anchored 09:00 Berlin), done on time in January: February's
        // end, at 09:00 local, the anchor kept, the occurrence counted on.
        let task = completed(
            "Europe/Berlin",
            Some("2026-01-31T08:00:00Z"),
            None,
            recurrence(Frequency::Monthly, Some("2026-01-31 09:00"), 4),
            "2026-01-31T07:00:00Z",
        );
        let next = next_occurrence(&task).expect("recurring");
        assert_eq!(next.due.at, utc("2026-02-28T08:00:00Z"));
        assert!(!next.due.all_day);
        assert_eq!(next.anchor, local("2026-01-31 09:00"));
        assert_eq!((next.occurrence, next.series_id), (5, Uuid::from_u128(7)));
        assert_eq!(next.frequency, Frequency::Monthly);

        // All day, no anchor yet: anchored at its day, the next one a day again.
        let task = completed(
            "Europe/Berlin",
            None,
            Some("2026-03-31"),
            recurrence(Frequency::Monthly, None, 0),
            "2026-03-30T10:00:00Z",
        );
        let next = next_occurrence(&task).expect("recurring");
        assert_eq!(next.anchor, local("2026-03-31 00:00"));
        assert!(next.due.all_day);
        assert_eq!(next.due.date(), Some(day("2026-04-30")));

        // No due at all: anchored at the completion's local time, one period after it.
        let task = completed(
            "Europe/Berlin",
            None,
            None,
            recurrence(Frequency::Daily, None, u32::MAX),
            "2026-06-01T10:00:00Z",
        );
        let next = next_occurrence(&task).expect("recurring");
        assert_eq!(next.anchor, local("2026-06-01 12:00"));
        assert_eq!(next.due.at, utc("2026-06-02T10:00:00Z"));
        assert_eq!(next.occurrence, u32::MAX, "saturates");

        let mut task = task;
        task.recurrence = None;
        assert_eq!(next_occurrence(&task), None);
    }
}
