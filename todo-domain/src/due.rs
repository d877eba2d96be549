//! When a task is due (at a time, or on a day), and the reminders a user sets for it.
//!
//! An all-day task is due on a local date in its time zone. It sorts, filters and counts as
//! overdue by the last second of that day ([`end_of_day`]), so "due before Friday 00:00"
//! finds a task due on Thursday, and a task due today is not overdue until tomorrow.
//!
//! Reminders are either offsets before a due time (`15m`, `1h30m`, `1d`, ISO 8601 `PT15M`,
//! `P1D`) or, for an all-day task, local times relative to its day (`09:00` on the day,
//! `-1d 18:00` the evening before). Days are calendar days in the task's zone, hours and
//! minutes elapsed time: a `1d` reminder before a task due at 08:00 fires at 08:00 local the
//! day before, across a DST change too.

use std::fmt;

use chrono::{DateTime, Days, Duration, NaiveDate, NaiveDateTime, NaiveTime, Utc};
use chrono_tz::Tz;

use crate::{
    ValidationError,
    time::{resolve_local, to_local},
};

/// At most this many reminders per task.
pub const REMINDERS_MAX_COUNT: usize = 5;
/// No reminder earlier than this many days before its task is due.
pub const REMINDER_MAX_DAYS: u32 = 30;
const MINUTES_PER_DAY: u32 = 24 * 60;

/// When a task is due, as the user gave it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Due {
    /// The instant it sorts and filters by: the due time, or the end of the due day.
    pub at: DateTime<Utc>,
    /// The local wall time the user meant (midnight of the day for an all-day task): the
    /// anchor of a recurring series.
    pub local: NaiveDateTime,
    /// Due on the local day `local.date()`, with no time of day.
    pub all_day: bool,
}

impl Due {
    /// Due at `at`; `local` is the wall time the user meant in the task's zone.
    pub fn at(at: DateTime<Utc>, local: NaiveDateTime) -> Self {
        Self {
            at,
            local,
            all_day: false,
        }
    }

    /// Due on `date` in `tz`, all day.
    pub fn on_day(tz: Tz, date: NaiveDate) -> Self {
        Self {
            at: end_of_day(tz, date),
            local: date.and_time(NaiveTime::MIN),
            all_day: true,
        }
    }

    /// The day of an all-day task.
    pub fn date(&self) -> Option<NaiveDate> {
        self.all_day.then(|| self.local.date())
    }
}

/// The last second of the local day `date` in `tz`: one second before the next day starts
/// (which, where a zone skips midnight, is the first time that exists that day).
pub fn end_of_day(tz: Tz, date: NaiveDate) -> DateTime<Utc> {
    let next = date.checked_add_days(Days::new(1)).unwrap_or(date);
    resolve_local(tz, next.and_time(NaiveTime::MIN)) - Duration::seconds(1)
}

/// One reminder of a task.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Reminder {
    /// Before the due time: `days` calendar days in the task's zone, then `minutes` of
    /// elapsed time.
    Before { days: u32, minutes: u32 },
    /// For an all-day task: at local `time`, `days_before` days before its day (0: on it).
    OnDay { days_before: u32, time: NaiveTime },
}

impl Reminder {
    /// Reads `15m`, `1h30m`, `2d`, `1w`, ISO 8601 `PT15M`/`P1DT2H`/`P1W`, `09:00` or
    /// `-1d 18:00`.
    pub fn parse(raw: &str) -> Result<Self, ValidationError> {
        let text = raw.trim();
        let bad = || {
            ValidationError::new(
                "reminders",
                format!(
                    "reminder {raw:?} is not understood: give an offset before the due time (\"15m\", \"1h\", \"1d\", or ISO 8601 \"PT15M\") or, for an all-day task, a local time (\"09:00\", \"-1d 18:00\")"
                ),
            )
        };
        let reminder = if text.contains(':') {
            parse_on_day(text).ok_or_else(bad)?
        } else if let Some(iso) = text.strip_prefix(['P', 'p']) {
            parse_iso(iso).ok_or_else(bad)?
        } else {
            parse_compact(text).ok_or_else(bad)?
        };
        let too_early = match reminder {
            Self::Before { days, minutes } => {
                u64::from(days) * u64::from(MINUTES_PER_DAY) + u64::from(minutes)
                    > u64::from(REMINDER_MAX_DAYS * MINUTES_PER_DAY)
            }
            Self::OnDay { days_before, .. } => days_before > REMINDER_MAX_DAYS,
        };
        if too_early {
            return Err(ValidationError::new(
                "reminders",
                format!(
                    "reminder {raw:?} is too early: at most {REMINDER_MAX_DAYS} days before the task is due"
                ),
            ));
        }
        Ok(reminder)
    }

    /// When this reminder fires for a task due at `due` in `tz`; `None` when it does not fit
    /// the task (a time of day for a task due at a time, or the other way round).
    pub fn fires_at(self, due: &Due, tz: Tz) -> Option<DateTime<Utc>> {
        match (self, due.all_day) {
            (Self::Before { days, minutes }, false) => {
                let local = to_local(tz, due.at).checked_sub_days(Days::new(days.into()))?;
                Some(resolve_local(tz, local) - Duration::minutes(minutes.into()))
            }
            (Self::OnDay { days_before, time }, true) => {
                let day = due
                    .local
                    .date()
                    .checked_sub_days(Days::new(days_before.into()))?;
                Some(resolve_local(tz, day.and_time(time)))
            }
            _ => None,
        }
    }
}

/// The canonical spelling, as stored and shown: `1d2h30m`, `0m`, `09:00`, `-1d 18:00`.
impl fmt::Display for Reminder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::Before { days, minutes } => {
                let (hours, minutes) = (minutes / 60, minutes % 60);
                if days > 0 {
                    write!(f, "{days}d")?;
                }
                if hours > 0 {
                    write!(f, "{hours}h")?;
                }
                if minutes > 0 || (days == 0 && hours == 0) {
                    write!(f, "{minutes}m")?;
                }
                Ok(())
            }
            Self::OnDay { days_before, time } => {
                if days_before > 0 {
                    write!(f, "-{days_before}d ")?;
                }
                write!(f, "{}", time.format("%H:%M"))
            }
        }
    }
}

/// `HH:MM` or `-Nd HH:MM`.
fn parse_on_day(text: &str) -> Option<Reminder> {
    let (days_before, time) = match text.strip_prefix('-') {
        Some(rest) => {
            let (days, time) = rest.split_once(char::is_whitespace)?;
            (days.strip_suffix(['d', 'D'])?.parse().ok()?, time.trim())
        }
        None => (0, text),
    };
    if time.len() != 5 {
        return None;
    }
    let time = NaiveTime::parse_from_str(time, "%H:%M").ok()?;
    Some(Reminder::OnDay { days_before, time })
}

/// A run of `<number><unit>`: units `w`, `d`, `h`, `m` in that order, each at most once.
fn parse_compact(text: &str) -> Option<Reminder> {
    let text: String = text
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect::<String>()
        .to_ascii_lowercase();
    if text.is_empty() {
        return None;
    }
    amounts(&text, &['w', 'd', 'h', 'm']).and_then(|a| to_reminder(a[0], a[1], a[2], a[3], 0))
}

/// ISO 8601 after the `P`: `nW`, or `nD` then `T` with `nH`, `nM`, `nS` (whole minutes).
fn parse_iso(text: &str) -> Option<Reminder> {
    let text = text.to_ascii_uppercase();
    let (date, time) = match text.split_once('T') {
        Some((date, time)) if !time.is_empty() => (date.to_owned(), time.to_owned()),
        Some(_) => return None,
        None => (text, String::new()),
    };
    if date.is_empty() && time.is_empty() {
        return None;
    }
    let d = amounts(&date, &['W', 'D'])?;
    let t = amounts(&time, &['H', 'M', 'S'])?;
    to_reminder(d[0], d[1], t[0], t[1], t[2])
}

/// The amounts of `units` in `text` (each once, in order), zero where absent; `None` when
/// the text is anything else.
fn amounts(text: &str, units: &[char]) -> Option<[u64; 4]> {
    let mut found = [0u64; 4];
    let mut next_unit = 0;
    let mut number = String::new();
    let mut any = false;
    for c in text.chars() {
        if c.is_ascii_digit() {
            number.push(c);
            continue;
        }
        let index = units.iter().position(|u| *u == c)?;
        if index < next_unit || number.is_empty() || number.len() > 6 {
            return None;
        }
        found[index] = number.parse().ok()?;
        number.clear();
        next_unit = index + 1;
        any = true;
    }
    (number.is_empty() && (any || text.is_empty())).then_some(found)
}

fn to_reminder(weeks: u64, days: u64, hours: u64, minutes: u64, seconds: u64) -> Option<Reminder> {
    if !seconds.is_multiple_of(60) {
        return None;
    }
    let days = weeks.checked_mul(7)?.checked_add(days)?;
    let minutes = hours
        .checked_mul(60)?
        .checked_add(minutes)?
        .checked_add(seconds / 60)?;
    // Bounds are checked by the caller; beyond the type is beyond them too.
    Some(Reminder::Before {
        days: u32::try_from(days).unwrap_or(u32::MAX),
        minutes: u32::try_from(minutes).unwrap_or(u32::MAX),
    })
}

/// A task's reminders: parsed, duplicates removed (first kept), at most
/// [`REMINDERS_MAX_COUNT`]. Empty means the default: one reminder within the scan window.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Reminders(Vec<Reminder>);

impl Reminders {
    pub fn parse<S: AsRef<str>>(raw: &[S]) -> Result<Self, ValidationError> {
        if raw.len() > REMINDERS_MAX_COUNT {
            return Err(ValidationError::new(
                "reminders",
                format!(
                    "at most {REMINDERS_MAX_COUNT} reminders are allowed, {} were given",
                    raw.len()
                ),
            ));
        }
        let mut list = Vec::with_capacity(raw.len());
        for r in raw {
            let reminder = Reminder::parse(r.as_ref())?;
            if !list.contains(&reminder) {
                list.push(reminder);
            }
        }
        Ok(Self(list))
    }

    pub fn as_slice(&self) -> &[Reminder] {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The canonical spellings, as stored and shown.
    pub fn to_strings(&self) -> Vec<String> {
        self.0.iter().map(Reminder::to_string).collect()
    }

    /// Whether these reminders fit a task due `due` (`None`: no due time): reminders need a
    /// due time; offsets need a due time of day, local times an all-day task.
    pub fn check_fits(&self, due: Option<&Due>) -> Result<(), ValidationError> {
        let Some(first) = self.0.first() else {
            return Ok(());
        };
        let field = "reminders";
        let Some(due) = due else {
            return Err(ValidationError::new(
                field,
                format!(
                    "reminder \"{first}\" needs a due date or time: set due_at too, or clear reminders"
                ),
            ));
        };
        for r in &self.0 {
            match (r, due.all_day) {
                (Reminder::OnDay { .. }, false) => {
                    return Err(ValidationError::new(
                        field,
                        format!(
                            "reminder \"{r}\" is a time of day, which only an all-day task (due_at a date such as 2026-12-01) takes; for a task due at a time give an offset such as \"15m\""
                        ),
                    ));
                }
                (Reminder::Before { .. }, true) => {
                    return Err(ValidationError::new(
                        field,
                        format!(
                            "reminder \"{r}\" is an offset before a due time; an all-day task takes local times such as \"09:00\" or \"-1d 18:00\""
                        ),
                    ));
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// Each reminder with the instant it fires for a task due `due` in `tz` (those that do
    /// not fit are left out; [`Reminders::check_fits`] refuses them on every write).
    pub fn firing(&self, due: &Due, tz: Tz) -> Vec<(Reminder, DateTime<Utc>)> {
        self.0
            .iter()
            .filter_map(|r| r.fires_at(due, tz).map(|at| (*r, at)))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn canonical(raw: &str) -> Result<String, String> {
        Reminder::parse(raw)
            .map(|r| r.to_string())
            .map_err(|e| e.message)
    }

    fn instant(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s)
            .map(|t| t.with_timezone(&Utc))
            .expect("test instant")
    }

    fn local(s: &str) -> NaiveDateTime {
        NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M").expect("test local time")
    }

    #[test]
    fn offsets_parse_in_short_and_iso_forms_to_one_spelling() {
        for (raw, want) in [
            ("15m", "15m"),
            ("1h", "1h"),
            ("90m", "1h30m"),
            ("1h30m", "1h30m"),
            (" 1H 30M ", "1h30m"),
            ("1d", "1d"),
            ("2w", "14d"),
            ("1d2h", "1d2h"),
            ("0m", "0m"),
            ("PT15M", "15m"),
            ("pt1h", "1h"),
            ("P1D", "1d"),
            ("P1DT12H", "1d12h"),
            ("P1W", "7d"),
            ("PT3600S", "1h"),
            ("09:00", "09:00"),
            ("-1d 18:00", "-1d 18:00"),
            ("-2D  07:30", "-2d 07:30"),
        ] {
            assert_eq!(canonical(raw).as_deref(), Ok(want), "{raw}");
        }
    }

    #[test]
    fn unknown_forms_and_far_offsets_are_refused_with_the_reason() {
        for raw in [
            "",
            "15",
            "m",
            "15x",
            "1m1h",
            "1h1h",
            "P",
            "PT",
            "P1M",
            "P1Y",
            "PT30S",
            "-15m",
            "9:00",
            "25:00",
            "09:60",
            "-1 09:00",
            "+1d 09:00",
            "1d 09:00",
            "soon",
            "99999999m",
        ] {
            let err = canonical(raw).expect_err(raw);
            assert!(
                err.contains("not understood") || err.contains("too early"),
                "{raw}: {err}"
            );
        }
        assert!(canonical("30d").is_ok());
        assert!(canonical("720h").is_ok());
        assert!(canonical("30d1m").expect_err("30d1m").contains("too early"));
        assert!(canonical("P31D").expect_err("P31D").contains("too early"));
        assert!(
            canonical("-31d 09:00")
                .expect_err("-31d 09:00")
                .contains("too early")
        );
        assert!(canonical("-30d 09:00").is_ok());
    }

    #[test]
    fn a_list_is_bounded_and_deduplicated() {
        let list = Reminders::parse(&["15m", "PT15M", "1h"]).expect("valid");
        assert_eq!(list.to_strings(), ["15m", "1h"]);
        let err = Reminders::parse(&["1m", "2m", "3m", "4m", "5m", "6m"]).expect_err("six");
        assert_eq!(err.field, "reminders");
        assert!(err.message.contains("at most 5"), "{}", err.message);
    }

    #[test]
    fn reminders_must_fit_the_kind_of_due() {
        let timed = Due::at(instant("2026-12-01T08:00:00Z"), local("2026-12-01T09:00"));
        let day = Due::on_day(
            chrono_tz::Europe::Berlin,
            NaiveDate::from_ymd_opt(2026, 12, 1).expect("date"),
        );
        let offsets = Reminders::parse(&["15m"]).expect("valid");
        let times = Reminders::parse(&["09:00"]).expect("valid");
        assert!(offsets.check_fits(Some(&timed)).is_ok());
        assert!(times.check_fits(Some(&day)).is_ok());
        assert!(
            times
                .check_fits(Some(&timed))
                .expect_err("unfit")
                .message
                .contains("all-day")
        );
        assert!(
            offsets
                .check_fits(Some(&day))
                .expect_err("unfit")
                .message
                .contains("all-day")
        );
        assert!(
            offsets
                .check_fits(None)
                .expect_err("unfit")
                .message
                .contains("due_at")
        );
        assert!(Reminders::default().check_fits(None).is_ok());
    }

    #[test]
    fn the_end_of_a_day_is_its_last_local_second() {
        let berlin = chrono_tz::Europe::Berlin;
        let d = NaiveDate::from_ymd_opt(2026, 12, 1).expect("date");
        assert_eq!(end_of_day(berlin, d), instant("2026-12-01T22:59:59Z"));
        // Spring forward in Berlin (2026-03-29): a 23-hour day still ends at 23:59:59 local.
        let d = NaiveDate::from_ymd_opt(2026, 3, 29).expect("date");
        assert_eq!(end_of_day(berlin, d), instant("2026-03-29T21:59:59Z"));
        // Santiago skips midnight when its clocks go forward (2026-09-06 00:00 -> 01:00).
        let santiago = chrono_tz::America::Santiago;
        let d = NaiveDate::from_ymd_opt(2026, 9, 5).expect("date");
        assert_eq!(
            to_local(santiago, end_of_day(santiago, d)),
            local("2026-09-05T23:59") + Duration::seconds(59)
        );
    }

    #[test]
    fn a_day_offset_keeps_the_local_time_across_a_dst_change() {
        // Berlin springs forward in the night to Sunday 2026-03-29. A task due Sunday 08:00
        // CEST (06:00 UTC) with "1d" fires Saturday 08:00 CET (07:00 UTC): 23 hours before.
        let berlin = chrono_tz::Europe::Berlin;
        let due = Due::at(
            resolve_local(berlin, local("2026-03-29T08:00")),
            local("2026-03-29T08:00"),
        );
        let fires = Reminder::parse("1d").expect("valid").fires_at(&due, berlin);
        assert_eq!(fires, Some(instant("2026-03-28T07:00:00Z")));
        // "24h" is elapsed time: 24 hours before, which is 07:00 local on Saturday.
        let fires = Reminder::parse("24h")
            .expect("valid")
            .fires_at(&due, berlin);
        assert_eq!(fires, Some(instant("2026-03-28T06:00:00Z")));
        // And back in autumn (2026-10-25): "1d" before Sunday 08:00 CET is Saturday 08:00 CEST.
        let due = Due::at(
            resolve_local(berlin, local("2026-10-25T08:00")),
            local("2026-10-25T08:00"),
        );
        let fires = Reminder::parse("1d").expect("valid").fires_at(&due, berlin);
        assert_eq!(fires, Some(instant("2026-10-24T06:00:00Z")));
    }

    #[test]
    fn day_reminders_fire_at_local_times_around_the_day() {
        let tokyo = chrono_tz::Asia::Tokyo;
        let due = Due::on_day(tokyo, NaiveDate::from_ymd_opt(2026, 12, 1).expect("date"));
        let at = |raw: &str| Reminder::parse(raw).expect("valid").fires_at(&due, tokyo);
        assert_eq!(at("09:00"), Some(instant("2026-12-01T00:00:00Z")));
        assert_eq!(at("-1d 18:00"), Some(instant("2026-11-30T09:00:00Z")));
        assert_eq!(at("15m"), None);
    }
}
