//! Turning local wall-clock times into instants, with one rule for DST edges everywhere.

use chrono::{DateTime, Duration, LocalResult, NaiveDateTime, Offset, TimeZone as _, Utc};
use chrono_tz::Tz;

/// The instant a local wall-clock time names in `tz`.
///
/// - An ambiguous time (clocks go back) takes the earlier instant.
/// - A time that does not exist (clocks go forward) moves forward by the gap: it is read
///   with the offset in force just before the transition, so 02:30 on a spring-forward
///   night in New York becomes 03:30 EDT.
pub fn resolve_local(tz: Tz, local: NaiveDateTime) -> DateTime<Utc> {
    match tz.from_local_datetime(&local) {
        LocalResult::Single(t) => t.with_timezone(&Utc),
        LocalResult::Ambiguous(a, b) => a.min(b).with_timezone(&Utc),
        LocalResult::None => {
            // Step back to the last valid local time before the gap (gaps are at most a day,
            // as when Samoa skipped 2011-12-30) and use its offset.
            let step = Duration::minutes(15);
            let mut probe = local - step;
            for _ in 0..(26 * 4) {
                if let Some(t) = tz.from_local_datetime(&probe).latest() {
                    let offset = t.offset().fix();
                    return (local - offset).and_utc();
                }
                probe -= step;
            }
            // No valid time within 26 hours cannot happen in the tz database; fall back to UTC
            // rather than panic.
            local.and_utc()
        }
    }
}

/// The local wall-clock time of `instant` in `tz`.
pub fn to_local(tz: Tz, instant: DateTime<Utc>) -> NaiveDateTime {
    instant.with_timezone(&tz).naive_local()
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::NaiveDate;

    fn local(y: i32, m: u32, d: u32, h: u32, min: u32) -> NaiveDateTime {
        NaiveDate::from_ymd_opt(y, m, d)
            .and_then(|d| d.and_hms_opt(h, min, 0))
            .expect("valid test date")
    }

    #[test]
    fn a_plain_local_time_maps_to_its_single_instant() {
        let t = resolve_local(chrono_tz::Europe::Berlin, local(2026, 1, 15, 9, 0));
        assert_eq!(t.to_rfc3339(), "2026-01-15T08:00:00+00:00");
    }

    #[test]
    fn a_spring_forward_gap_moves_forward_by_the_gap() {
        let t = resolve_local(chrono_tz::America::New_York, local(2026, 3, 8, 2, 30));
        assert_eq!(t.to_rfc3339(), "2026-03-08T07:30:00+00:00");
        assert_eq!(
            to_local(chrono_tz::America::New_York, t),
            local(2026, 3, 8, 3, 30)
        );
    }

    #[test]
    fn an_ambiguous_fall_back_time_takes_the_earlier_instant() {
        let t = resolve_local(chrono_tz::America::New_York, local(2026, 11, 1, 1, 30));
        assert_eq!(t.to_rfc3339(), "2026-11-01T05:30:00+00:00");
    }

    #[test]
    fn a_skipped_whole_day_resolves_past_the_gap() {
        let t = resolve_local(chrono_tz::Pacific::Apia, local(2011, 12, 30, 9, 0));
        assert_eq!(
            to_local(chrono_tz::Pacific::Apia, t),
            local(2011, 12, 31, 9, 0)
        );
    }
}
