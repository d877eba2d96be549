//! When the next instance of a recurring task is due.
//!
//! A series has an anchor: the local date and time of day of its first due time, in the
//! task's IANA time zone. The next due time is computed in local time from the anchor and
//! the scheduled due date of the instance just completed (never from the completion time when
//! there is a due time, and never from a DST-shifted instant), and only then turned into UTC,
//! so the local time of day survives DST changes and monthly series keep their anchor day.

use std::{fmt, str::FromStr};

use chrono::{DateTime, Datelike, Days, Months, NaiveDate, NaiveDateTime, Utc};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::{
    time::{resolve_local, to_local},
    ValidationError,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Frequency {
    Daily,
    Weekly,
    Monthly,
}

impl Frequency {
    pub const ALL: [Frequency; 3] = [Self::Daily, Self::Weekly, Self::Monthly];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Daily => "daily",
            Self::Weekly => "weekly",
            Self::Monthly => "monthly",
        }
    }
}

impl fmt::Display for Frequency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Frequency {
    type Err = ValidationError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|f| f.as_str() == s)
            .ok_or_else(|| {
                ValidationError::new("recurrence", "must be one of: daily, weekly, monthly")
            })
    }
}

/// How a task repeats, and which series (and which occurrence of it) a task is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Recurrence {
    pub frequency: Frequency,
    /// The id shared by every instance of the series (the first instance's task id).
    pub series_id: Uuid,
    /// Local date and time of the series' first due time; `None` when it has no due time.
    pub anchor: Option<NaiveDateTime>,
    /// 0 for the first instance, then 1, 2, ... Unique within a series.
    pub occurrence: u32,
}

/// The due time of the next instance.
///
/// - `scheduled_due`: the due time of the instance just completed, if it had one.
/// - `anchor`: the series' anchor (local); when absent the scheduled due's local time is used.
/// - `completed_at`: the base when there is no scheduled due time.
pub fn next_due(
    frequency: Frequency,
    tz: Tz,
    anchor: Option<NaiveDateTime>,
    scheduled_due: Option<DateTime<Utc>>,
    completed_at: DateTime<Utc>,
) -> DateTime<Utc> {
    let base = to_local(tz, scheduled_due.unwrap_or(completed_at));
    let time_of_day = match (scheduled_due, anchor) {
        (Some(_), Some(anchor)) => anchor.time(),
        _ => base.time(),
    };
    let anchor_day = match (scheduled_due, anchor) {
        (Some(_), Some(anchor)) => anchor.day(),
        _ => base.day(),
    };
    let next_date = match frequency {
        Frequency::Daily => add_days(base.date(), 1),
        Frequency::Weekly => add_days(base.date(), 7),
        Frequency::Monthly => next_month_on(base.date(), anchor_day),
    };
    resolve_local(tz, next_date.and_time(time_of_day))
}

fn add_days(date: NaiveDate, days: u64) -> NaiveDate {
    date.checked_add_days(Days::new(days)).unwrap_or(NaiveDate::MAX)
}

/// The first day of the month after `date`'s, moved to `day` or the month's last day if shorter.
fn next_month_on(date: NaiveDate, day: u32) -> NaiveDate {
    let first_of_next = date
        .with_day(1)
        .and_then(|d| d.checked_add_months(Months::new(1)))
        .unwrap_or(NaiveDate::MAX);
    let last_day = days_in_month(first_of_next);
    first_of_next
        .with_day(day.min(last_day))
        .unwrap_or(first_of_next)
}

/// The number of days in `date`'s month.
pub fn days_in_month(date: NaiveDate) -> u32 {
    let first = date.with_day(1).unwrap_or(date);
    match first.checked_add_months(Months::new(1)) {
        Some(next) => next.signed_duration_since(first).num_days() as u32,
        None => 31,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::NaiveTime;

    fn local(s: &str) -> NaiveDateTime {
        NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M").expect("test datetime")
    }

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).expect("test instant").with_timezone(&Utc)
    }

    /// Walks a series `n` steps from its anchor, as the recurring worker would.
    fn series(freq: Frequency, tz: Tz, anchor: &str, n: usize) -> Vec<NaiveDateTime> {
        let anchor = local(anchor);
        let mut due = resolve_local(tz, anchor);
        let mut out = vec![to_local(tz, due)];
        for _ in 0..n {
            due = next_due(freq, tz, Some(anchor), Some(due), utc("2000-01-01T00:00:00Z"));
            out.push(to_local(tz, due));
        }
        out
    }

    #[test]
    fn monthly_keeps_the_anchor_day_through_short_months() {
        let got = series(Frequency::Monthly, chrono_tz::UTC, "2026-01-31 09:00", 4);
        let want = ["2026-01-31 09:00", "2026-02-28 09:00", "2026-03-31 09:00", "2026-04-30 09:00", "2026-05-31 09:00"];
        assert_eq!(got, want.map(local));
    }

    #[test]
    fn monthly_uses_the_29th_of_february_in_leap_years() {
        let got = series(Frequency::Monthly, chrono_tz::UTC, "2028-01-30 08:00", 2);
        assert_eq!(got, ["2028-01-30 08:00", "2028-02-29 08:00", "2028-03-30 08:00"].map(local));
    }

    #[test]
    fn daily_keeps_local_time_across_spring_forward_and_fall_back() {
        let tz = chrono_tz::Europe::Berlin;
        let got = series(Frequency::Daily, tz, "2026-03-28 09:00", 3);
        assert!(got.iter().all(|t| t.time() == NaiveTime::from_hms_opt(9, 0, 0).unwrap_or_default()));
        let got = series(Frequency::Daily, tz, "2026-10-24 09:00", 3);
        assert!(got.iter().all(|t| t.time() == NaiveTime::from_hms_opt(9, 0, 0).unwrap_or_default()));
    }

    #[test]
    fn a_nonexistent_local_time_shifts_once_and_the_next_occurrence_returns_to_the_anchor() {
        let got = series(Frequency::Daily, chrono_tz::America::New_York, "2026-03-07 02:30", 2);
        assert_eq!(got, ["2026-03-07 02:30", "2026-03-08 03:30", "2026-03-09 02:30"].map(local));
    }

    #[test]
    fn weekly_adds_seven_local_days() {
        let got = series(Frequency::Weekly, chrono_tz::Australia::Sydney, "2026-03-29 10:00", 2);
        assert_eq!(got, ["2026-03-29 10:00", "2026-04-05 10:00", "2026-04-12 10:00"].map(local));
    }

    #[test]
    fn without_a_due_time_the_completion_time_is_the_base() {
        let next = next_due(Frequency::Daily, chrono_tz::UTC, None, None, utc("2026-05-10T17:45:00Z"));
        assert_eq!(next, utc("2026-05-11T17:45:00Z"));
    }

    #[test]
    fn days_in_month_knows_leap_years() {
        let d = |y, m| NaiveDate::from_ymd_opt(y, m, 1).expect("date");
        assert_eq!(days_in_month(d(2024, 2)), 29);
        assert_eq!(days_in_month(d(2100, 2)), 28);
        assert_eq!(days_in_month(d(2000, 2)), 29);
        assert_eq!(days_in_month(d(2026, 12)), 31);
    }
}
