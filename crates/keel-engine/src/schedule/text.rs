//! Temporal's text spellings of a schedule's times, turned into the structured forms of
//! [`super::spec`]: a `CalendarSpec`'s fields (`"*/15"`, `"MON-FRI"`, `"1,15"`) and
//! `cron_string`s (5, 6 or 7 fields, `@daily`-style nicknames, `@every <interval>[/<phase>]`,
//! a `CRON_TZ=` / `TZ=` prefix and a `#` comment). Also the bounds every field is checked
//! against.

use super::spec::{Calendar, Interval, Range};

/// The fields of a calendar, with their bounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    Second,
    Minute,
    Hour,
    DayOfMonth,
    Month,
    Year,
    DayOfWeek,
}

impl Field {
    /// Inclusive bounds of the field's values.
    pub fn bounds(self) -> (i32, i32) {
        match self {
            Field::Second | Field::Minute => (0, 59),
            Field::Hour => (0, 23),
            Field::DayOfMonth => (1, 31),
            Field::Month => (1, 12),
            Field::Year => (1970, 2999),
            // 7 is Sunday too, as in cron.
            Field::DayOfWeek => (0, 7),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Field::Second => "second",
            Field::Minute => "minute",
            Field::Hour => "hour",
            Field::DayOfMonth => "day_of_month",
            Field::Month => "month",
            Field::Year => "year",
            Field::DayOfWeek => "day_of_week",
        }
    }

    /// The value of an empty field: `0` for second, minute and hour, every value otherwise.
    fn default_text(self) -> &'static str {
        match self {
            Field::Second | Field::Minute | Field::Hour => "0",
            _ => "*",
        }
    }
}

const MONTHS: [&str; 12] = [
    "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
];
const DAYS: [&str; 7] = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"];

fn value(field: Field, s: &str) -> Result<i32, String> {
    let lower = s.to_ascii_lowercase();
    let named = match field {
        Field::Month => MONTHS
            .iter()
            .position(|m| lower.starts_with(m) && lower.len() >= 3)
            .map(|i| i as i32 + 1),
        Field::DayOfWeek => DAYS
            .iter()
            .position(|d| lower.starts_with(d) && lower.len() >= 3)
            .map(|i| i as i32),
        _ => None,
    };
    let v = match named {
        Some(v) => v,
        None => s
            .parse::<i32>()
            .map_err(|_| format!("invalid {} value {s:?}", field.name()))?,
    };
    check(field, v)?;
    Ok(v)
}

fn check(field: Field, v: i32) -> Result<(), String> {
    let (lo, hi) = field.bounds();
    if v < lo || v > hi {
        return Err(format!(
            "{} value {v} is out of range {lo}-{hi}",
            field.name()
        ));
    }
    Ok(())
}

/// Checks a structured range against its field's bounds (Temporal's validation).
pub fn check_range(field: Field, r: &Range) -> Result<(), String> {
    check(field, r.start)?;
    // An end of 0 (or below the start) means the start alone.
    if r.end > r.start {
        check(field, r.end)?;
    }
    if r.step < 0 {
        return Err(format!("{} step {} is negative", field.name(), r.step));
    }
    Ok(())
}

/// One calendar field's text as ranges. `*` is the whole range (no ranges at all for the
/// year: every year); an empty text is the field's default.
pub fn parse_field(field: Field, text: &str) -> Result<Vec<Range>, String> {
    let text = match text.trim() {
        "" => field.default_text(),
        t => t,
    };
    let (lo, hi) = field.bounds();
    let hi = if field == Field::DayOfWeek { 6 } else { hi };
    let mut out = Vec::new();
    for item in text.split(',') {
        let (span, step) = match item.split_once('/') {
            Some((span, step)) => {
                let step: i32 = step
                    .parse()
                    .map_err(|_| format!("invalid {} step {step:?}", field.name()))?;
                if step <= 0 {
                    return Err(format!("{} step must be positive", field.name()));
                }
                (span, step)
            }
            None => (item, 0),
        };
        let r = if span == "*" {
            if field == Field::Year && step == 0 {
                continue;
            }
            Range {
                start: lo,
                end: hi,
                step: step.max(1),
            }
        } else if let Some((a, b)) = span.split_once('-') {
            Range {
                start: value(field, a)?,
                end: value(field, b)?,
                step: step.max(1),
            }
        } else {
            let start = value(field, span)?;
            Range {
                start,
                // `5/10` is 5 and every 10th after it, to the field's end.
                end: if step > 0 { hi } else { start },
                step,
            }
        };
        out.push(r);
    }
    Ok(out)
}

/// What a cron string compiles to.
#[derive(Debug, Clone, PartialEq)]
pub enum Cron {
    Calendar(Calendar, String),
    Interval(Interval),
}

/// A parsed cron string: its calendar or interval, its time zone prefix and its comment.
#[derive(Debug, Clone, PartialEq)]
pub struct ParsedCron {
    pub cron: Cron,
    pub time_zone: Option<String>,
}

/// A Go-style duration with one or more `<integer><unit>` parts, units s, m, h, d.
fn interval_ms(s: &str) -> Result<u64, String> {
    let mut total = 0u64;
    let mut digits = String::new();
    for c in s.chars() {
        if c.is_ascii_digit() {
            digits.push(c);
            continue;
        }
        let unit = match c {
            's' => 1_000,
            'm' => 60_000,
            'h' => 3_600_000,
            'd' => 86_400_000,
            _ => return Err(format!("invalid interval {s:?} (units: s, m, h, d)")),
        };
        let n: u64 = digits
            .parse()
            .map_err(|_| format!("invalid interval {s:?}"))?;
        total = total.saturating_add(n.saturating_mul(unit));
        digits.clear();
    }
    if !digits.is_empty() || total == 0 {
        return Err(format!("invalid interval {s:?} (e.g. 30s, 5m, 1h, 2d)"));
    }
    Ok(total)
}

/// Parses a `cron_string` (see the module docs).
pub fn parse_cron(text: &str) -> Result<ParsedCron, String> {
    let (body, comment) = match text.split_once('#') {
        Some((b, c)) => (b.trim(), c.trim().to_string()),
        None => (text.trim(), String::new()),
    };
    let (time_zone, body) = match body
        .strip_prefix("CRON_TZ=")
        .or_else(|| body.strip_prefix("TZ="))
    {
        Some(rest) => {
            let (tz, rest) = rest
                .split_once(char::is_whitespace)
                .ok_or_else(|| format!("nothing after the time zone in {text:?}"))?;
            (Some(tz.to_string()), rest.trim())
        }
        None => (None, body),
    };
    if let Some(every) = body.strip_prefix("@every") {
        let (every, phase) = match every.trim().split_once('/') {
            Some((e, p)) => (interval_ms(e)?, interval_ms(p)?),
            None => (interval_ms(every.trim())?, 0),
        };
        return Ok(ParsedCron {
            cron: Cron::Interval(Interval {
                every_ms: every,
                phase_ms: phase,
            }),
            time_zone,
        });
    }
    let expanded = match body {
        "@yearly" | "@annually" => "0 0 1 1 *",
        "@monthly" => "0 0 1 * *",
        "@weekly" => "0 0 * * 0",
        "@daily" | "@midnight" => "0 0 * * *",
        "@hourly" => "0 * * * *",
        other => other,
    };
    let fields: Vec<&str> = expanded.split_whitespace().collect();
    let (second, rest) = match fields.len() {
        5 | 6 => ("0", &fields[..]),
        7 => (fields[0], &fields[1..]),
        n => {
            return Err(format!(
                "invalid cron string {text:?}: {n} fields (5, 6 or 7 expected)"
            ))
        }
    };
    let calendar = Calendar {
        second: parse_field(Field::Second, second)?,
        minute: parse_field(Field::Minute, rest[0])?,
        hour: parse_field(Field::Hour, rest[1])?,
        day_of_month: parse_field(Field::DayOfMonth, rest[2])?,
        month: parse_field(Field::Month, rest[3])?,
        day_of_week: parse_field(Field::DayOfWeek, rest[4])?,
        year: parse_field(Field::Year, rest.get(5).copied().unwrap_or("*"))?,
    };
    Ok(ParsedCron {
        cron: Cron::Calendar(calendar, comment),
        time_zone,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(start: i32, end: i32, step: i32) -> Range {
        Range { start, end, step }
    }

    #[test]
    fn fields_parse_lists_ranges_steps_and_names() {
        assert_eq!(parse_field(Field::Second, "").unwrap(), vec![r(0, 0, 0)]);
        assert_eq!(
            parse_field(Field::DayOfMonth, "").unwrap(),
            vec![r(1, 31, 1)]
        );
        assert_eq!(parse_field(Field::Year, "*").unwrap(), vec![]);
        assert_eq!(
            parse_field(Field::Minute, "*/15").unwrap(),
            vec![r(0, 59, 15)]
        );
        assert_eq!(
            parse_field(Field::DayOfWeek, "MON-FRI,sun").unwrap(),
            vec![r(1, 5, 1), r(0, 0, 0)]
        );
        assert_eq!(
            parse_field(Field::Month, "jan,6-8/2").unwrap(),
            vec![r(1, 1, 0), r(6, 8, 2)]
        );
        assert_eq!(parse_field(Field::Hour, "5/6").unwrap(), vec![r(5, 23, 6)]);
        assert!(parse_field(Field::Hour, "24").is_err());
        assert!(parse_field(Field::Minute, "*/0").is_err());
        assert!(parse_field(Field::Month, "smarch").is_err());
    }

    #[test]
    fn cron_strings_compile_to_calendars_or_intervals() {
        let p = parse_cron("0 12 * * MON").unwrap();
        assert_eq!(p.time_zone, None);
        let Cron::Calendar(c, comment) = p.cron else {
            panic!("a calendar")
        };
        assert_eq!(comment, "");
        assert_eq!(c.second, vec![r(0, 0, 0)]);
        assert_eq!(c.minute, vec![r(0, 0, 0)]);
        assert_eq!(c.hour, vec![r(12, 12, 0)]);
        assert_eq!(c.day_of_month, vec![r(1, 31, 1)]);
        assert_eq!(c.month, vec![r(1, 12, 1)]);
        assert_eq!(c.day_of_week, vec![r(1, 1, 0)]);
        assert!(c.year.is_empty());

        let p = parse_cron("TZ=Europe/Paris 30 5 0 * * * 2030 # daily").unwrap();
        assert_eq!(p.time_zone.as_deref(), Some("Europe/Paris"));
        let Cron::Calendar(c, comment) = p.cron else {
            panic!("a calendar")
        };
        assert_eq!(comment, "daily");
        assert_eq!((c.second[0].start, c.minute[0].start), (30, 5));
        assert_eq!(c.year, vec![r(2030, 2030, 0)]);

        assert_eq!(
            parse_cron("@every 90m/15m").unwrap().cron,
            Cron::Interval(Interval {
                every_ms: 90 * 60_000,
                phase_ms: 15 * 60_000
            })
        );
        assert!(matches!(
            parse_cron("@daily").unwrap().cron,
            Cron::Calendar(..)
        ));
        assert!(parse_cron("* * *").is_err());
        assert!(parse_cron("@every 5x").is_err());
    }
}
