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
    ValidationError,
    time::{resolve_local, to_local},
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

/// How a task repeats, and which instance of its series it is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
pub struct Recurrence {
    pub frequency: Frequency,
    /// Shared by every instance of the series (the first instance's task id).
    pub series_id: Uuid,
    /// Local date and time (no offset) of the series' first due time; absent or null when
    /// the series has no due time.
    #[cfg_attr(
        feature = "utoipa",
        schema(value_type = Option<String>, nullable, examples("2026-12-01T09:00:00"))
    )]
    pub anchor: Option<NaiveDateTime>,
    /// 0 for the first instance, then 1, 2, ... Unique within a series.
    pub occurrence: u32,
}

/// The due time of the next instance.
///
/// - `scheduled_due`: the due time of the instance just completed, if it had one.
/// - `anchor`: the series' anchor (local); when absent the scheduled due's local time is used.
/// - `completed_at`: when the instance was completed.
///
/// With a due time, the next instance is the first occurrence of the series' schedule
/// strictly after both the scheduled due time and the completion time: completing early
/// keeps the schedule (a weekly task due Friday, done on Monday, is next due the Friday
/// after), completing late skips the occurrences that passed meanwhile rather than creating
/// an instance that is already overdue. Without a due time, it is one period after the
/// completion, at the completion's local time of day.
pub fn next_due(
    frequency: Frequency,
    tz: Tz,
    anchor: Option<NaiveDateTime>,
    scheduled_due: Option<DateTime<Utc>>,
    completed_at: DateTime<Utc>,
) -> DateTime<Utc> {
    let previous = scheduled_due.unwrap_or(completed_at);
    let base = to_local(tz, previous);
    let (mut date, time_of_day, anchor_day) = match (scheduled_due, anchor) {
        (Some(due), Some(anchor)) => (
            scheduled_date(frequency, tz, due, base, anchor),
            anchor.time(),
            anchor.day(),
        ),
        _ => (base.date(), base.time(), base.day()),
    };
    // Strictly after this instant: the scheduled due time, or the completion if later.
    let floor = previous.max(completed_at);
    // Occurrences long past (a late completion) are jumped over in one go, stopping short
    // of the floor so that the steps below still find the first occurrence after it.
    date = skip_towards(frequency, date, to_local(tz, floor).date(), anchor_day);
    // A step or two is enough except when a skipped local day made two occurrences collapse
    // onto the same instant (Samoa skipped 2011-12-30): then the next one is a step further.
    let mut next = previous;
    for _ in 0..8 {
        date = step(frequency, date, anchor_day);
        next = resolve_local(tz, date.and_time(time_of_day));
        if next > floor {
            break;
        }
    }
    next
}

/// The day the next instance of an all-day series is due: the first day of the schedule
/// after `scheduled` (the completed instance's day) that is not over when it was completed
/// (`completed_on`, the completion's local date). Monthly series keep `anchor_day`, capped
/// at the month's end. Like [`next_due`] with the due time read as the end of the day.
pub fn next_due_date(
    frequency: Frequency,
    anchor_day: u32,
    scheduled: NaiveDate,
    completed_on: NaiveDate,
) -> NaiveDate {
    let mut date = skip_towards(frequency, scheduled, completed_on, anchor_day);
    for _ in 0..8 {
        date = step(frequency, date, anchor_day);
        if date > scheduled && date >= completed_on {
            break;
        }
    }
    date
}

fn step(frequency: Frequency, date: NaiveDate, anchor_day: u32) -> NaiveDate {
    match frequency {
        Frequency::Daily => add_days(date, 1),
        Frequency::Weekly => add_days(date, 7),
        Frequency::Monthly => next_month_on(date, anchor_day),
    }
}

/// `date` moved forward by whole periods of the schedule, to at least two periods before
/// `target` (or left where it is if it is closer than that).
fn skip_towards(frequency: Frequency, date: NaiveDate, target: NaiveDate, day: u32) -> NaiveDate {
    let days = target.signed_duration_since(date).num_days();
    match frequency {
        Frequency::Daily if days > 2 => add_days(date, (days - 2) as u64),
        Frequency::Weekly if days > 14 => add_days(date, 7 * (days / 7 - 2) as u64),
        Frequency::Monthly => {
            let months =
                (target.year() - date.year()) * 12 + target.month() as i32 - date.month() as i32;
            if months > 2 {
                let first = date
                    .with_day(1)
                    .and_then(|d| d.checked_add_months(Months::new((months - 2) as u32)))
                    .unwrap_or(NaiveDate::MAX);
                first
                    .with_day(day.min(days_in_month(first)))
                    .unwrap_or(first)
            } else {
                date
            }
        }
        _ => date,
    }
}

/// The local date an instance was scheduled for: usually the local date of its due time.
///
/// When the anchor time did not exist that day and the due time moved forward onto the next
/// date (a gap across midnight, or a skipped day as in Samoa on 2011-12-30), the instance
/// belongs to the day before; stepping from the moved date would shift the rest of the series
/// by a day. An instant that is both a real time on its own date and the moved time of the
/// day before is attributed to whichever of the two dates is on the series' schedule.
fn scheduled_date(
    frequency: Frequency,
    tz: Tz,
    due: DateTime<Utc>,
    local: NaiveDateTime,
    anchor: NaiveDateTime,
) -> NaiveDate {
    let time = anchor.time();
    let names_due = |date: NaiveDate| resolve_local(tz, date.and_time(time)) == due;
    let on_schedule = |date: NaiveDate| match frequency {
        Frequency::Daily => true,
        Frequency::Weekly => {
            date.signed_duration_since(anchor.date())
                .num_days()
                .rem_euclid(7)
                == 0
        }
        Frequency::Monthly => date.day() == anchor.day().min(days_in_month(date)),
    };
    let own = local.date();
    if names_due(own) && on_schedule(own) {
        return own;
    }
    match own.pred_opt() {
        Some(day_before) if names_due(day_before) && on_schedule(day_before) => day_before,
        _ => own,
    }
}

fn add_days(date: NaiveDate, days: u64) -> NaiveDate {
    date.checked_add_days(Days::new(days))
        .unwrap_or(NaiveDate::MAX)
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
pub(crate) mod tests {
    use super::*;
    use chrono::NaiveTime;

    pub(crate) fn local(s: &str) -> NaiveDateTime {
        NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M").expect("test datetime")
    }

    pub(crate) fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s)
            .expect("test instant")
            .with_timezone(&Utc)
    }

    pub(crate) fn day(s: &str) -> NaiveDate {
        NaiveDate::parse_from_str(s, "%Y-%m-%d").expect("test date")
    }

    #[test]
    fn all_day_series_step_by_date_keep_the_anchor_day_and_skip_past_days() {
        use Frequency::*;
        let next = |f, anchor_day, scheduled: &str, done: &str| {
            next_due_date(f, anchor_day, day(scheduled), day(done)).to_string()
        };
        // Monthly on the 31st: capped at February's end, back on the 31st in March.
        assert_eq!(next(Monthly, 31, "2026-01-31", "2026-01-30"), "2026-02-28");
        assert_eq!(next(Monthly, 31, "2026-02-28", "2026-02-28"), "2026-03-31");
        assert_eq!(next(Monthly, 31, "2028-01-31", "2028-01-31"), "2028-02-29");
        // Completed on its day or early: the next one on schedule.
        assert_eq!(next(Weekly, 1, "2026-12-04", "2026-11-30"), "2026-12-11");
        assert_eq!(next(Daily, 1, "2026-12-04", "2026-12-04"), "2026-12-05");
        // Completed late: days already over are skipped, today's is not over yet.
        assert_eq!(next(Daily, 1, "2026-12-01", "2026-12-04"), "2026-12-04");
        assert_eq!(next(Weekly, 1, "2026-10-02", "2026-12-04"), "2026-12-04");
        assert_eq!(next(Weekly, 1, "2026-10-02", "2026-12-05"), "2026-12-11");
        assert_eq!(next(Monthly, 15, "2025-01-15", "2026-12-16"), "2027-01-15");
    }

    /// Walks a series `n` steps from its anchor, as the recurring worker would.
    fn series(freq: Frequency, tz: Tz, anchor: &str, n: usize) -> Vec<NaiveDateTime> {
        let anchor = local(anchor);
        let mut due = resolve_local(tz, anchor);
        let mut out = vec![to_local(tz, due)];
        for _ in 0..n {
            due = next_due(
                freq,
                tz,
                Some(anchor),
                Some(due),
                utc("2000-01-01T00:00:00Z"),
            );
            out.push(to_local(tz, due));
        }
        out
    }

    #[test]
    fn a_late_completion_skips_the_missed_occurrences() {
        let utc_tz = chrono_tz::UTC;
        // Daily, due three days ago, completed now: due tomorrow at the anchor time, not
        // two days ago.
        let next = next_due(
            Frequency::Daily,
            utc_tz,
            Some(local("2027-03-01 09:00")),
            Some(utc("2027-03-01T09:00:00Z")),
            utc("2027-03-04T12:00:00Z"),
        );
        assert_eq!(next, utc("2027-03-05T09:00:00Z"));
        // Completed before today's time of day: today's occurrence is still ahead.
        let next = next_due(
            Frequency::Daily,
            utc_tz,
            Some(local("2027-03-01 09:00")),
            Some(utc("2027-03-01T09:00:00Z")),
            utc("2027-03-04T08:00:00Z"),
        );
        assert_eq!(next, utc("2027-03-04T09:00:00Z"));
        // Monthly on the 31st, completed mid-March: March 31 keeps the anchor day.
        let next = next_due(
            Frequency::Monthly,
            utc_tz,
            Some(local("2027-01-31 09:00")),
            Some(utc("2027-01-31T09:00:00Z")),
            utc("2027-03-15T10:00:00Z"),
        );
        assert_eq!(next, utc("2027-03-31T09:00:00Z"));
        // Weekly on Fridays, two years late: the Friday after the completion.
        let next = next_due(
            Frequency::Weekly,
            utc_tz,
            Some(local("2027-01-01 18:00")),
            Some(utc("2027-01-01T18:00:00Z")),
            utc("2029-01-02T10:00:00Z"),
        );
        assert_eq!(next, utc("2029-01-05T18:00:00Z"));
    }

    #[test]
    fn an_early_completion_keeps_the_schedule() {
        // A weekly task due Friday 2027-01-08, done on Monday 2027-01-04: next Friday.
        let next = next_due(
            Frequency::Weekly,
            chrono_tz::Europe::Berlin,
            Some(local("2027-01-01 18:00")),
            Some(utc("2027-01-08T17:00:00Z")),
            utc("2027-01-04T08:00:00Z"),
        );
        assert_eq!(next, utc("2027-01-15T17:00:00Z"));
    }

    #[test]
    fn monthly_keeps_the_anchor_day_through_short_months() {
        let got = series(Frequency::Monthly, chrono_tz::UTC, "2026-01-31 09:00", 4);
        let want = [
            "2026-01-31 09:00",
            "2026-02-28 09:00",
            "2026-03-31 09:00",
            "2026-04-30 09:00",
            "2026-05-31 09:00",
        ];
        assert_eq!(got, want.map(local));
    }

    #[test]
    fn monthly_uses_the_29th_of_february_in_leap_years() {
        let got = series(Frequency::Monthly, chrono_tz::UTC, "2028-01-30 08:00", 2);
        assert_eq!(
            got,
            ["2028-01-30 08:00", "2028-02-29 08:00", "2028-03-30 08:00"].map(local)
        );
    }

    #[test]
    fn daily_keeps_local_time_across_spring_forward_and_fall_back() {
        let tz = chrono_tz::Europe::Berlin;
        let got = series(Frequency::Daily, tz, "2026-03-28 09:00", 3);
        assert!(
            got.iter()
                .all(|t| t.time() == NaiveTime::from_hms_opt(9, 0, 0).unwrap_or_default())
        );
        let got = series(Frequency::Daily, tz, "2026-10-24 09:00", 3);
        assert!(
            got.iter()
                .all(|t| t.time() == NaiveTime::from_hms_opt(9, 0, 0).unwrap_or_default())
        );
    }

    #[test]
    fn a_nonexistent_local_time_shifts_once_and_the_next_occurrence_returns_to_the_anchor() {
        let got = series(
            Frequency::Daily,
            chrono_tz::America::New_York,
            "2026-03-07 02:30",
            2,
        );
        assert_eq!(
            got,
            ["2026-03-07 02:30", "2026-03-08 03:30", "2026-03-09 02:30"].map(local)
        );
    }

    #[test]
    fn weekly_adds_seven_local_days() {
        let got = series(
            Frequency::Weekly,
            chrono_tz::Australia::Sydney,
            "2026-03-29 10:00",
            2,
        );
        assert_eq!(
            got,
            ["2026-03-29 10:00", "2026-04-05 10:00", "2026-04-12 10:00"].map(local)
        );
    }

    #[test]
    fn without_a_due_time_the_completion_time_is_the_base() {
        let next = next_due(
            Frequency::Daily,
            chrono_tz::UTC,
            None,
            None,
            utc("2026-05-10T17:45:00Z"),
        );
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

    #[test]
    fn a_weekly_series_over_a_skipped_day_keeps_its_weekday() {
        // Samoa skipped Friday 2011-12-30: that week's instance moves to Saturday the 31st,
        // the next is back on Friday.
        let got = series(
            Frequency::Weekly,
            chrono_tz::Pacific::Apia,
            "2011-12-23 09:00",
            2,
        );
        assert_eq!(
            got,
            ["2011-12-23 09:00", "2011-12-31 09:00", "2012-01-06 09:00"].map(local)
        );
    }

    #[test]
    fn a_weekly_series_on_the_day_after_a_skipped_day_stays_on_its_weekday() {
        // Saturday the 31st at 09:00 is the same instant as the skipped Friday's 09:00 moved
        // forward; for a Saturday series it is Saturday's own instance.
        let got = series(
            Frequency::Weekly,
            chrono_tz::Pacific::Apia,
            "2011-12-24 09:00",
            2,
        );
        assert_eq!(
            got,
            ["2011-12-24 09:00", "2011-12-31 09:00", "2012-01-07 09:00"].map(local)
        );
    }

    #[test]
    fn a_daily_series_over_a_skipped_day_has_one_instance_on_the_day_after() {
        let got = series(
            Frequency::Daily,
            chrono_tz::Pacific::Apia,
            "2011-12-29 09:00",
            2,
        );
        assert_eq!(
            got,
            ["2011-12-29 09:00", "2011-12-31 09:00", "2012-01-01 09:00"].map(local)
        );
    }

    #[test]
    fn a_monthly_series_over_a_skipped_day_returns_to_its_anchor_day() {
        let got = series(
            Frequency::Monthly,
            chrono_tz::Pacific::Apia,
            "2011-11-30 09:00",
            2,
        );
        assert_eq!(
            got,
            ["2011-11-30 09:00", "2011-12-31 09:00", "2012-01-30 09:00"].map(local)
        );
    }

    #[test]
    fn a_moved_instance_continues_from_the_day_it_was_moved_to() {
        // Anchored at 09:00; this instance was moved to 15:00 on Tuesday: the next is
        // Wednesday at the anchor time.
        let tz = chrono_tz::Europe::Berlin;
        let moved = resolve_local(tz, local("2026-06-02 15:00"));
        let next = next_due(
            Frequency::Daily,
            tz,
            Some(local("2026-06-01 09:00")),
            Some(moved),
            moved,
        );
        assert_eq!(to_local(tz, next), local("2026-06-03 09:00"));
    }

    /// Property tests over the zones whose rules are the hardest: DST north and south, a
    /// half-hour offset without DST, and Samoa (DST until 2021, and a skipped day).
    mod properties {
        use super::*;
        use proptest::prelude::*;

        const ZONES: [Tz; 6] = [
            chrono_tz::America::New_York,
            chrono_tz::Europe::Berlin,
            chrono_tz::Australia::Sydney,
            chrono_tz::Asia::Kolkata,
            chrono_tz::Pacific::Apia,
            chrono_tz::UTC,
        ];

        fn zone() -> impl Strategy<Value = Tz> {
            prop::sample::select(ZONES.to_vec())
        }

        fn frequency() -> impl Strategy<Value = Frequency> {
            prop::sample::select(Frequency::ALL.to_vec())
        }

        /// A local date-time between 2000 and 2036, biased towards month ends, the small
        /// hours where DST transitions happen, and late 2011.
        fn local_datetime() -> impl Strategy<Value = NaiveDateTime> {
            let day = prop_oneof![1u32..=31, 27u32..=31];
            let hour = prop_oneof![0u32..24, 0u32..4];
            // Some series start in the months before Samoa skipped 2011-12-30.
            let year = prop_oneof![6 => 2000i32..=2036, 1 => Just(2011)];
            let month = prop_oneof![3 => 1u32..=12, 1 => 10u32..=12];
            (
                year,
                month,
                day,
                hour,
                prop::sample::select(vec![0u32, 15, 30, 45, 59]),
            )
                .prop_map(|(y, m, d, h, min)| {
                    let first = NaiveDate::from_ymd_opt(y, m, 1).unwrap_or(NaiveDate::MIN);
                    let day = d.min(days_in_month(first));
                    first
                        .with_day(day)
                        .and_then(|date| date.and_hms_opt(h, min, 0))
                        .unwrap_or_default()
                })
        }

        fn instant() -> impl Strategy<Value = DateTime<Utc>> {
            // 2000-01-01 .. 2037-01-01
            (946_684_800i64..2_114_380_800)
                .prop_map(|s| DateTime::from_timestamp(s, 0).unwrap_or_default())
        }

        /// The local date-time of occurrence `k` of a series: `k` periods after the anchor,
        /// monthly on the anchor day or the month's last day.
        fn expected_local(freq: Frequency, anchor: NaiveDateTime, k: u32) -> NaiveDateTime {
            let date = match freq {
                Frequency::Daily => add_days(anchor.date(), u64::from(k)),
                Frequency::Weekly => add_days(anchor.date(), 7 * u64::from(k)),
                Frequency::Monthly => {
                    let first = anchor
                        .date()
                        .with_day(1)
                        .and_then(|d| d.checked_add_months(Months::new(k)));
                    let first = first.unwrap_or(NaiveDate::MAX);
                    first
                        .with_day(anchor.day().min(days_in_month(first)))
                        .unwrap_or(first)
                }
            };
            date.and_time(anchor.time())
        }

        fn exists(tz: Tz, local: NaiveDateTime) -> bool {
            !matches!(
                chrono::TimeZone::from_local_datetime(&tz, &local),
                chrono::LocalResult::None
            )
        }

        /// Walks a series `n` steps from its anchor, each instance completed at
        /// `completed_at` or at its due time, whichever is earlier (on time or early).
        fn walk(
            freq: Frequency,
            tz: Tz,
            anchor: NaiveDateTime,
            n: usize,
            completed_at: DateTime<Utc>,
        ) -> Vec<DateTime<Utc>> {
            let mut due = resolve_local(tz, anchor);
            let mut out = vec![due];
            for _ in 0..n {
                due = next_due(freq, tz, Some(anchor), Some(due), completed_at.min(due));
                out.push(due);
            }
            out
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(512))]

            #[test]
            fn the_next_due_time_is_after_the_scheduled_one(
                freq in frequency(), tz in zone(), anchor in local_datetime(),
                scheduled in instant(), completed in instant(),
            ) {
                let next = next_due(freq, tz, Some(anchor), Some(scheduled), completed);
                prop_assert!(next > scheduled, "{freq} {tz}: {next} is not after {scheduled}");
            }

            #[test]
            fn a_late_completion_gives_the_first_occurrence_after_it(
                freq in frequency(), tz in zone(), anchor in local_datetime(),
                k in 0u32..40, late_by in 0i64..(3 * 366 * 86_400),
            ) {
                // Occurrence `k` of the series (where it is an instant of its own), done late.
                let scheduled = resolve_local(tz, expected_local(freq, anchor, k));
                let completed = scheduled + chrono::Duration::seconds(late_by);
                let next = next_due(freq, tz, Some(anchor), Some(scheduled), completed);
                let mut want = None;
                for j in k..k + 2_000 {
                    let at = resolve_local(tz, expected_local(freq, anchor, j));
                    if at > completed && at > scheduled {
                        want = Some(at);
                        break;
                    }
                }
                prop_assert_eq!(Some(next), want, "{} {}: anchor {}, k {}, completed {}", freq, tz, anchor, k, completed);
            }

            #[test]
            fn without_a_due_time_the_next_is_after_the_completion(
                freq in frequency(), tz in zone(), anchor in prop::option::of(local_datetime()),
                completed in instant(),
            ) {
                let next = next_due(freq, tz, anchor, None, completed);
                prop_assert!(next > completed);
                // One period later in local time, at the completion's local time of day
                // where that exists.
                let want = expected_local(freq, to_local(tz, completed), 1);
                if exists(tz, want) {
                    prop_assert_eq!(to_local(tz, next), want);
                }
            }

            #[test]
            fn a_series_follows_its_anchor_in_local_time(
                freq in frequency(), tz in zone(), anchor in local_datetime(),
                n in 1usize..40, completed in instant(),
            ) {
                let got = walk(freq, tz, anchor, n, completed);
                for pair in got.windows(2) {
                    prop_assert!(pair[1] > pair[0], "{freq} {tz}: not increasing: {got:?}");
                }
                // The series is the anchor's local schedule turned into instants; occurrences
                // that collapse onto one instant (a skipped day) count once.
                let mut want: Vec<DateTime<Utc>> = Vec::new();
                let mut k = 0;
                while want.len() < got.len() {
                    let at = resolve_local(tz, expected_local(freq, anchor, k));
                    if want.last() != Some(&at) {
                        want.push(at);
                    }
                    k += 1;
                }
                prop_assert_eq!(&got, &want, "{} {}: anchor {}", freq, tz, anchor);
                for due in &got {
                    let local = to_local(tz, *due);
                    // Where the anchor's local time exists that day, it is kept exactly.
                    if local.time() != anchor.time() {
                        let day_before = local.date().pred_opt().unwrap_or(local.date());
                        prop_assert!(
                            !exists(tz, local.date().and_time(anchor.time()))
                                || !exists(tz, day_before.and_time(anchor.time())),
                            "{freq} {tz}: {local} lost the anchor time {}", anchor.time()
                        );
                    }
                }
            }

            #[test]
            fn monthly_lands_on_the_anchor_day_or_the_month_end(
                tz in zone(), anchor in local_datetime(), n in 1usize..30, completed in instant(),
            ) {
                let got = walk(Frequency::Monthly, tz, anchor, n, completed);
                for due in got {
                    let local = to_local(tz, due);
                    // Unless the anchor time did not exist and the instance moved to another day.
                    let day_before = local.date().pred_opt().unwrap_or(local.date());
                    let moved = !exists(tz, day_before.and_time(anchor.time()))
                        || local.time() != anchor.time();
                    if !moved {
                        prop_assert_eq!(local.day(), anchor.day().min(days_in_month(local.date())), "{} {}", tz, local);
                    }
                }
            }
        }
    }
}
