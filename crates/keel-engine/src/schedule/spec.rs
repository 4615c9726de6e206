//! When a schedule acts: Temporal's `ScheduleSpec` — structured calendars (ranges with
//! steps, in a time zone), intervals (with a phase, aligned to the Unix epoch), calendar
//! exclusions, start and end bounds, and a deterministic jitter — evaluated purely.
//!
//! The frontend turns Temporal's other spellings (calendar strings, cron strings) into these
//! structured calendars; apply and `ListScheduleMatchingTimes` both call [`next_after`].

use std::str::FromStr;

use chrono::{Datelike, NaiveDate, NaiveDateTime, NaiveTime, TimeZone, Timelike};

/// `start..=end` every `step` (Temporal's `Range`; `end < start` means `start` alone, a
/// step of 0 means 1).
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct Range {
    #[prost(int32, tag = "1")]
    pub start: i32,
    #[prost(int32, tag = "2")]
    pub end: i32,
    #[prost(int32, tag = "3")]
    pub step: i32,
}

impl Range {
    fn contains(&self, v: i32) -> bool {
        let end = self.end.max(self.start);
        let step = self.step.max(1);
        v >= self.start && v <= end && (v - self.start) % step == 0
    }
}

/// Temporal's `StructuredCalendarSpec`. An empty field takes Temporal's default: second,
/// minute and hour 0; every day of the month, month, year and day of the week.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct Calendar {
    #[prost(message, repeated, tag = "1")]
    pub second: Vec<Range>,
    #[prost(message, repeated, tag = "2")]
    pub minute: Vec<Range>,
    #[prost(message, repeated, tag = "3")]
    pub hour: Vec<Range>,
    /// 1..=31.
    #[prost(message, repeated, tag = "4")]
    pub day_of_month: Vec<Range>,
    /// 1..=12.
    #[prost(message, repeated, tag = "5")]
    pub month: Vec<Range>,
    #[prost(message, repeated, tag = "6")]
    pub year: Vec<Range>,
    /// 0 (Sunday) ..= 6.
    #[prost(message, repeated, tag = "7")]
    pub day_of_week: Vec<Range>,
}

fn any(ranges: &[Range], v: i32, default_all: bool) -> bool {
    if ranges.is_empty() {
        return default_all || v == 0;
    }
    ranges.iter().any(|r| r.contains(v))
}

impl Calendar {
    fn day_matches(&self, d: NaiveDate) -> bool {
        any(&self.year, d.year(), true)
            && any(&self.month, d.month() as i32, true)
            && any(&self.day_of_month, d.day() as i32, true)
            && any(
                &self.day_of_week,
                d.weekday().num_days_from_sunday() as i32,
                true,
            )
    }

    /// The matching times of day, ascending.
    fn times(&self) -> impl Iterator<Item = NaiveTime> + '_ {
        (0..24)
            .filter(|h| any(&self.hour, *h, false))
            .flat_map(move |h| {
                (0..60)
                    .filter(|m| any(&self.minute, *m, false))
                    .flat_map(move |m| {
                        (0..60)
                            .filter(|s| any(&self.second, *s, false))
                            .map(move |s| (h, m, s))
                    })
            })
            .filter_map(|(h, m, s)| NaiveTime::from_hms_opt(h as u32, m as u32, s as u32))
    }

    fn matches(&self, t: NaiveDateTime) -> bool {
        self.day_matches(t.date())
            && any(&self.hour, t.hour() as i32, false)
            && any(&self.minute, t.minute() as i32, false)
            && any(&self.second, t.second() as i32, false)
    }
}

/// Times where `(t - phase) % every == 0` (ms since the epoch).
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct Interval {
    #[prost(uint64, tag = "1")]
    pub every_ms: u64,
    #[prost(uint64, tag = "2")]
    pub phase_ms: u64,
}

/// A schedule's spec; see the module docs.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct Spec {
    #[prost(message, repeated, tag = "1")]
    pub calendars: Vec<Calendar>,
    #[prost(message, repeated, tag = "2")]
    pub intervals: Vec<Interval>,
    #[prost(message, repeated, tag = "3")]
    pub exclusions: Vec<Calendar>,
    /// No time before this (0: unbounded).
    #[prost(uint64, tag = "4")]
    pub start_ms: u64,
    /// No time after this (0: unbounded).
    #[prost(uint64, tag = "5")]
    pub end_ms: u64,
    /// Each action happens up to this long after its nominal time.
    #[prost(uint64, tag = "6")]
    pub jitter_ms: u64,
    /// IANA name of the calendars' time zone (empty: UTC).
    #[prost(string, tag = "7")]
    pub time_zone: String,
}

/// One time a schedule acts at: when it is due (`nominal_ms`) and when it acts, jitter
/// included (`actual_ms`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Time {
    pub nominal_ms: u64,
    pub actual_ms: u64,
}

/// How far ahead a calendar is searched (a calendar matching nothing sooner never fires).
const HORIZON_DAYS: i64 = 366 * 100;

/// The first calendar time strictly after `after_ms` (whole seconds, in `tz`).
fn calendar_next(c: &Calendar, tz: chrono_tz::Tz, after_ms: u64) -> Option<u64> {
    let after_s = i64::try_from(after_ms / 1000).ok()?;
    let local = tz.timestamp_opt(after_s, 0).single()?.naive_local();
    let mut day = local.date();
    let mut first = true;
    let last = day.checked_add_signed(chrono::Duration::days(HORIZON_DAYS))?;
    while day <= last {
        // Skip whole years and months that cannot match.
        if !any(&c.year, day.year(), true) {
            day = NaiveDate::from_ymd_opt(day.year() + 1, 1, 1)?;
            first = false;
            continue;
        }
        if !any(&c.month, day.month() as i32, true) {
            let (y, m) = if day.month() == 12 {
                (day.year() + 1, 1)
            } else {
                (day.year(), day.month() + 1)
            };
            day = NaiveDate::from_ymd_opt(y, m, 1)?;
            first = false;
            continue;
        }
        if c.day_matches(day) {
            for t in c.times() {
                let naive = day.and_time(t);
                if first && naive <= local {
                    continue;
                }
                // A local time a DST change skips does not exist; an ambiguous one is its
                // first occurrence.
                let Some(at) = tz.from_local_datetime(&naive).earliest() else {
                    continue;
                };
                let ms = u64::try_from(at.timestamp()).ok()? * 1000;
                if ms > after_ms {
                    return Some(ms);
                }
            }
        }
        day = day.succ_opt()?;
        first = false;
    }
    None
}

fn interval_next(i: &Interval, after_ms: u64) -> Option<u64> {
    if i.every_ms == 0 {
        return None;
    }
    let (every, phase, after) = (i.every_ms as i128, i.phase_ms as i128, after_ms as i128);
    let next = after - (after - phase).rem_euclid(every) + every;
    u64::try_from(next).ok()
}

/// FNV-1a: a stable hash for the deterministic jitter.
pub(crate) fn fnv1a(parts: &[&[u8]]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for p in parts {
        for b in *p {
            h ^= u64::from(*b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        h ^= 0xff;
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// The time zone of `spec`, or why it is not one.
pub fn time_zone(spec: &Spec) -> Result<chrono_tz::Tz, String> {
    if spec.time_zone.is_empty() {
        return Ok(chrono_tz::UTC);
    }
    chrono_tz::Tz::from_str(&spec.time_zone)
        .map_err(|_| format!("unknown time zone {:?}", spec.time_zone))
}

/// The schedule's first time strictly after `after_ms` (nominal), or `None` when there is
/// none (past its end, or nothing matches). `schedule_id` seeds the jitter.
pub fn next_after(spec: &Spec, schedule_id: &str, after_ms: u64) -> Result<Option<Time>, String> {
    let tz = time_zone(spec)?;
    let mut from = if spec.start_ms > 0 {
        after_ms.max(spec.start_ms.saturating_sub(1))
    } else {
        after_ms
    };
    // Each excluded time moves the search past it; bound the walk.
    for _ in 0..10_000 {
        let candidates = spec
            .calendars
            .iter()
            .filter_map(|c| calendar_next(c, tz, from))
            .chain(spec.intervals.iter().filter_map(|i| interval_next(i, from)));
        let Some(nominal) = candidates.min() else {
            return Ok(None);
        };
        if spec.end_ms > 0 && nominal > spec.end_ms {
            return Ok(None);
        }
        let excluded = nominal % 1000 == 0
            && i64::try_from(nominal / 1000)
                .ok()
                .and_then(|s| tz.timestamp_opt(s, 0).single())
                .is_some_and(|t| spec.exclusions.iter().any(|x| x.matches(t.naive_local())));
        if excluded {
            from = nominal;
            continue;
        }
        let jitter = if spec.jitter_ms > 0 {
            fnv1a(&[schedule_id.as_bytes(), &nominal.to_be_bytes()]) % spec.jitter_ms
        } else {
            0
        };
        return Ok(Some(Time {
            nominal_ms: nominal,
            actual_ms: nominal.saturating_add(jitter),
        }));
    }
    Err("the schedule's exclusions leave no time in 10000 candidates".into())
}

/// Every time in `(after_ms, until_ms]`, at most `limit` of them.
pub fn times_between(
    spec: &Spec,
    schedule_id: &str,
    after_ms: u64,
    until_ms: u64,
    limit: usize,
) -> Result<Vec<Time>, String> {
    let mut out = Vec::new();
    let mut from = after_ms;
    while out.len() < limit {
        match next_after(spec, schedule_id, from)? {
            Some(t) if t.nominal_ms <= until_ms => {
                from = t.nominal_ms;
                out.push(t);
            }
            _ => break,
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(start: i32, end: i32, step: i32) -> Range {
        Range { start, end, step }
    }

    fn ms(s: &str) -> u64 {
        chrono::DateTime::parse_from_rfc3339(s)
            .unwrap()
            .timestamp_millis() as u64
    }

    fn iso(ms: u64) -> String {
        chrono::DateTime::from_timestamp_millis(ms as i64)
            .unwrap()
            .format("%Y-%m-%dT%H:%M:%SZ")
            .to_string()
    }

    fn next(spec: &Spec, after: &str) -> Option<String> {
        next_after(spec, "s", ms(after))
            .unwrap()
            .map(|t| iso(t.nominal_ms))
    }

    fn cal(c: Calendar) -> Spec {
        Spec {
            calendars: vec![c],
            ..Default::default()
        }
    }

    #[test]
    fn calendar_defaults_are_midnight_every_day() {
        let s = cal(Calendar::default());
        assert_eq!(
            next(&s, "2026-12-04T10:00:00Z").unwrap(),
            "2026-12-05T00:00:00Z"
        );
        // Strictly after: a time exactly on the boundary moves on.
        assert_eq!(
            next(&s, "2026-12-05T00:00:00Z").unwrap(),
            "2026-12-06T00:00:00Z"
        );
    }

    #[test]
    fn ranges_and_steps_pick_minutes_hours_and_weekdays() {
        // Every 15 minutes from 9:00 to 9:45, Monday to Friday.
        let s = cal(Calendar {
            minute: vec![r(0, 59, 15)],
            hour: vec![r(9, 9, 1)],
            day_of_week: vec![r(1, 5, 1)],
            ..Default::default()
        });
        // Friday 2026-12-04 9:31 → 9:45; 9:45 → Monday 9:00.
        assert_eq!(
            next(&s, "2026-12-04T09:31:00Z").unwrap(),
            "2026-12-04T09:45:00Z"
        );
        assert_eq!(
            next(&s, "2026-12-04T09:45:00Z").unwrap(),
            "2026-12-07T09:00:00Z"
        );
    }

    #[test]
    fn the_31st_skips_short_months_and_years_bound_the_search() {
        let s = cal(Calendar {
            day_of_month: vec![r(31, 31, 1)],
            ..Default::default()
        });
        assert_eq!(
            next(&s, "2027-01-31T00:00:00Z").unwrap(),
            "2027-03-31T00:00:00Z"
        );
        let past = cal(Calendar {
            year: vec![r(2020, 2021, 1)],
            ..Default::default()
        });
        assert_eq!(next(&past, "2026-01-01T00:00:00Z"), None);
    }

    #[test]
    fn calendars_follow_their_time_zone_across_dst() {
        // 2:30 local every day in New York: 2027-03-14 has no 2:30 (clocks jump 2→3).
        let mut s = cal(Calendar {
            minute: vec![r(30, 30, 1)],
            hour: vec![r(2, 2, 1)],
            ..Default::default()
        });
        s.time_zone = "America/New_York".into();
        assert_eq!(
            next(&s, "2027-03-13T08:00:00Z").unwrap(),
            "2027-03-15T06:30:00Z"
        );
        assert_eq!(
            next(&s, "2027-03-12T08:00:00Z").unwrap(),
            "2027-03-13T07:30:00Z"
        );
        s.time_zone = "Mars/Olympus".into();
        assert!(next_after(&s, "s", 0).is_err());
    }

    #[test]
    fn intervals_align_to_the_epoch_plus_their_phase() {
        let s = Spec {
            intervals: vec![Interval {
                every_ms: 3_600_000,
                phase_ms: 15 * 60_000,
            }],
            ..Default::default()
        };
        assert_eq!(
            next(&s, "2026-12-04T10:20:00Z").unwrap(),
            "2026-12-04T11:15:00Z"
        );
        assert_eq!(
            next(&s, "2026-12-04T10:14:59Z").unwrap(),
            "2026-12-04T10:15:00Z"
        );
    }

    #[test]
    fn exclusions_start_and_end_bound_the_times() {
        let mut s = Spec {
            intervals: vec![Interval {
                every_ms: 3_600_000,
                phase_ms: 0,
            }],
            exclusions: vec![Calendar {
                hour: vec![r(12, 13, 1)],
                minute: vec![r(0, 59, 1)],
                ..Default::default()
            }],
            start_ms: ms("2026-12-04T11:00:00Z"),
            end_ms: ms("2026-12-04T15:00:00Z"),
            ..Default::default()
        };
        let times: Vec<String> = times_between(&s, "s", 0, u64::MAX, 10)
            .unwrap()
            .iter()
            .map(|t| iso(t.nominal_ms))
            .collect();
        assert_eq!(
            times,
            [
                "2026-12-04T11:00:00Z",
                "2026-12-04T14:00:00Z",
                "2026-12-04T15:00:00Z"
            ]
        );
        s.end_ms = 0;
        assert_eq!(times_between(&s, "s", 0, u64::MAX, 10).unwrap().len(), 10);
    }

    #[test]
    fn jitter_is_deterministic_and_bounded() {
        let s = Spec {
            intervals: vec![Interval {
                every_ms: 60_000,
                phase_ms: 0,
            }],
            jitter_ms: 30_000,
            ..Default::default()
        };
        let a = times_between(&s, "sched-a", 0, 3_600_000, 60).unwrap();
        let again = times_between(&s, "sched-a", 0, 3_600_000, 60).unwrap();
        assert_eq!(a, again);
        assert!(a
            .iter()
            .all(|t| t.actual_ms >= t.nominal_ms && t.actual_ms < t.nominal_ms + 30_000));
        assert!(a.iter().any(|t| t.actual_ms != t.nominal_ms), "some jitter");
        let b = times_between(&s, "sched-b", 0, 3_600_000, 60).unwrap();
        assert_ne!(a, b, "another schedule jitters differently");
    }

    #[test]
    fn the_earliest_of_several_calendars_and_intervals_wins() {
        let s = Spec {
            calendars: vec![Calendar {
                hour: vec![r(18, 18, 1)],
                ..Default::default()
            }],
            intervals: vec![Interval {
                every_ms: 6 * 3_600_000,
                phase_ms: 0,
            }],
            ..Default::default()
        };
        let times: Vec<String> = times_between(
            &s,
            "s",
            ms("2026-12-04T13:00:00Z"),
            ms("2026-12-05T00:00:00Z"),
            10,
        )
        .unwrap()
        .iter()
        .map(|t| iso(t.nominal_ms))
        .collect();
        assert_eq!(
            times,
            ["2026-12-04T18:00:00Z", "2026-12-05T00:00:00Z"],
            "18:00 from both, counted once"
        );
    }
}
