//! Cron schedules as Temporal reads them: five fields (minute hour day-of-month month
//! day-of-week, with lists, ranges, steps and names), the `@yearly` … `@hourly` nicknames,
//! `@every <duration>` (Go duration syntax: `90s`, `1h30m`), and an optional `CRON_TZ=<zone>`
//! or `TZ=<zone>` prefix (UTC otherwise). Pure: the next time is a function of the schedule
//! and the time given (the time zone database is compiled in).

use std::str::FromStr;

use chrono::{TimeZone, Utc};

/// The first scheduled time strictly after `after_ms` (Unix ms), or why the schedule is
/// invalid.
pub fn next_after(schedule: &str, after_ms: u64) -> Result<u64, String> {
    let schedule = schedule.trim();
    let (zone, spec) = match schedule
        .strip_prefix("CRON_TZ=")
        .or_else(|| schedule.strip_prefix("TZ="))
    {
        Some(rest) => {
            let (zone, spec) = rest
                .split_once(char::is_whitespace)
                .ok_or_else(|| format!("no schedule after the time zone in {schedule:?}"))?;
            let tz =
                chrono_tz::Tz::from_str(zone).map_err(|_| format!("unknown time zone {zone:?}"))?;
            (Some(tz), spec.trim())
        }
        None => (None, schedule),
    };
    if let Some(every) = spec.strip_prefix("@every") {
        let step = go_duration_ms(every.trim())?;
        if step == 0 {
            return Err("@every needs a positive duration".into());
        }
        // Whole seconds, as Temporal's scheduler rounds.
        let step = (step / 1000).max(1) * 1000;
        return Ok(after_ms.saturating_add(step) / 1000 * 1000);
    }
    let cron = croner::Cron::from_str(spec).map_err(|e| format!("{e}"))?;
    let after = Utc
        .timestamp_millis_opt(after_ms as i64)
        .single()
        .ok_or("time out of range")?;
    let next = match zone {
        Some(tz) => cron
            .find_next_occurrence(&after.with_timezone(&tz), false)
            .map(|t| t.timestamp_millis()),
        None => cron
            .find_next_occurrence(&after, false)
            .map(|t| t.timestamp_millis()),
    }
    .map_err(|e| format!("{e}"))?;
    Ok(next.max(0) as u64)
}

/// Go's duration syntax (`300ms`, `1.5h`, `2h45m`): a sequence of decimal numbers with units
/// ns, us, µs, ms, s, m, h.
fn go_duration_ms(s: &str) -> Result<u64, String> {
    let bad = || format!("invalid duration {s:?}");
    if s.is_empty() {
        return Err(bad());
    }
    let mut total_ns: f64 = 0.0;
    let mut rest = s;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(bad)?;
        let value: f64 = rest[..num_len].parse().map_err(|_| bad())?;
        rest = &rest[num_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let unit_ns = match &rest[..unit_len] {
            "ns" => 1.0,
            "us" | "µs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            _ => return Err(bad()),
        };
        total_ns += value * unit_ns;
        rest = &rest[unit_len..];
    }
    Ok((total_ns / 1e6) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 2026-01-01T00:00:30Z, a Thursday.
    const T0: u64 = 1_767_225_630_000;

    #[test]
    fn five_fields_nicknames_every_and_time_zones() {
        assert_eq!(next_after("* * * * *", T0), Ok(T0 + 30_000));
        assert_eq!(
            next_after("*/15 * * * *", T0),
            Ok(T0 - 30_000 + 15 * 60_000)
        );
        assert_eq!(next_after("@hourly", T0), Ok(T0 - 30_000 + 3_600_000));
        assert_eq!(next_after("@every 90s", T0), Ok(T0 + 90_000));
        assert_eq!(next_after("@every 1h30m", T0), Ok(T0 + 5_400_000));
        // Midnight in New York is 05:00 UTC in January.
        assert_eq!(
            next_after("CRON_TZ=America/New_York 0 0 * * *", T0),
            Ok(T0 - 30_000 + 5 * 3_600_000)
        );
        assert_eq!(
            next_after("TZ=America/New_York 0 0 * * *", T0),
            next_after("CRON_TZ=America/New_York 0 0 * * *", T0)
        );
        // Strictly after: a time on the schedule gives the next one.
        let on = T0 - 30_000;
        assert_eq!(next_after("0 * * * *", on), Ok(on + 3_600_000));
    }

    #[test]
    fn bad_schedules_say_why() {
        for bad in [
            "",
            "61 * * * *",
            "* * *",
            "@every",
            "@every 0s",
            "@every 5 parsecs",
            "CRON_TZ=Mars/Olympus 0 0 * * *",
            "CRON_TZ=UTC",
        ] {
            assert!(next_after(bad, T0).is_err(), "{bad:?} accepted");
        }
    }
}
