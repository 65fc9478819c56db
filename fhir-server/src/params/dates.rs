//! FHIR dates as ranges. A date is as precise as it is written: `2024` is the whole year,
//! `2024-03-01T10:00` the whole minute. Indexed values and search values both become
//! `[low, high]` in microseconds since the epoch (UTC), and date prefixes compare ranges.

use time::{Date, Month, PrimitiveDateTime, Time, UtcOffset};

/// The earliest and latest instants a range may have (open ends of a Period).
pub const MIN: i64 = i64::MIN / 2;
pub const MAX: i64 = i64::MAX / 2;

/// The longest range indexed as "short": one day. For a short range, `high >= d` implies
/// `low >= d - SHORT_RANGE`, which turns lower bounds on `high` into ranges on `low`, the
/// column the date index is ordered by.
pub const SHORT_RANGE: i64 = 86_400_000_000;

/// Parses `YYYY`, `YYYY-MM`, `YYYY-MM-DD`, or a date-time with hours and minutes, optional
/// seconds and fraction, and a zone (`Z`, `+hh:mm`; without one, UTC is assumed) into the
/// range it covers. `None` when it is not such a date.
pub fn range(text: &str) -> Option<(i64, i64)> {
    let text = text.trim();
    let (date_part, time_part) = match text.split_once('T') {
        Some((date, time)) => (date, Some(time)),
        None => (text, None),
    };
    let mut fields = date_part.split('-');
    let year: i32 = parse_digits(fields.next()?, 4)?;
    // A field that is present must be well-formed.
    let month = match fields.next() {
        Some(m) => Some(parse_digits::<u8>(m, 2)?),
        None => None,
    };
    let day = match fields.next() {
        Some(d) => Some(parse_digits::<u8>(d, 2)?),
        None => None,
    };
    if fields.next().is_some() {
        return None;
    }
    match (month, day, time_part) {
        (None, None, None) => {
            let start = Date::from_calendar_date(year, Month::January, 1).ok()?;
            let end = Date::from_calendar_date(year + 1, Month::January, 1).ok()?;
            Some((
                micros(start, Time::MIDNIGHT, UtcOffset::UTC),
                micros(end, Time::MIDNIGHT, UtcOffset::UTC) - 1,
            ))
        }
        (Some(month), None, None) => {
            let month = Month::try_from(month).ok()?;
            let start = Date::from_calendar_date(year, month, 1).ok()?;
            let (next_year, next_month) = if month == Month::December {
                (year + 1, Month::January)
            } else {
                (year, month.next())
            };
            let end = Date::from_calendar_date(next_year, next_month, 1).ok()?;
            Some((
                micros(start, Time::MIDNIGHT, UtcOffset::UTC),
                micros(end, Time::MIDNIGHT, UtcOffset::UTC) - 1,
            ))
        }
        (Some(month), Some(day), None) => {
            let date = Date::from_calendar_date(year, Month::try_from(month).ok()?, day).ok()?;
            let start = micros(date, Time::MIDNIGHT, UtcOffset::UTC);
            Some((start, start + 86_400_000_000 - 1))
        }
        (Some(month), Some(day), Some(time)) => {
            let date = Date::from_calendar_date(year, Month::try_from(month).ok()?, day).ok()?;
            date_time_range(date, time)
        }
        _ => None,
    }
}

/// `hh:mm[:ss[.fff]][zone]` on `date`.
fn date_time_range(date: Date, text: &str) -> Option<(i64, i64)> {
    let zone_at = text.find(['Z', '+', '-']).unwrap_or(text.len());
    let (clock, zone) = text.split_at(zone_at);
    let offset = match zone {
        "" | "Z" => UtcOffset::UTC,
        zone => {
            let sign: i8 = if zone.starts_with('-') { -1 } else { 1 };
            let (hours, minutes) = zone[1..].split_once(':')?;
            UtcOffset::from_hms(
                sign * parse_digits::<i8>(hours, 2)?,
                sign * parse_digits::<i8>(minutes, 2)?,
                0,
            )
            .ok()?
        }
    };
    let mut parts = clock.split(':');
    let hour: u8 = parse_digits(parts.next()?, 2)?;
    let minute: u8 = parse_digits(parts.next()?, 2)?;
    let (second, fraction, width) = match parts.next() {
        None => (0, 0, 60_000_000),
        Some(seconds) => {
            let (whole, fraction) = seconds.split_once('.').unwrap_or((seconds, ""));
            let second: u8 = parse_digits(whole, 2)?;
            if fraction.is_empty() {
                (second, 0, 1_000_000)
            } else {
                if !fraction.bytes().all(|b| b.is_ascii_digit()) {
                    return None;
                }
                let digits = fraction.len().min(6);
                let value: i64 = fraction[..digits].parse().ok()?;
                let scale = 10_i64.pow(6 - digits as u32);
                (second, value * scale, scale)
            }
        }
    };
    if parts.next().is_some() {
        return None;
    }
    let time = Time::from_hms(hour, minute, second.min(59)).ok()?;
    let start = micros(date, time, offset) + fraction;
    Some((start, start + width - 1))
}

fn micros(date: Date, time: Time, offset: UtcOffset) -> i64 {
    let moment = PrimitiveDateTime::new(date, time).assume_offset(offset);
    (moment.unix_timestamp_nanos() / 1000) as i64
}

fn parse_digits<T: std::str::FromStr>(text: &str, width: usize) -> Option<T> {
    if text.len() == width && text.bytes().all(|b| b.is_ascii_digit()) {
        text.parse().ok()
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: i64 = 86_400_000_000;

    #[test]
    fn precision_sets_the_width() {
        let (low, high) = range("2024").unwrap();
        assert_eq!(high - low + 1, 366 * DAY);
        let (low, high) = range("2024-02").unwrap();
        assert_eq!(high - low + 1, 29 * DAY);
        let (low, high) = range("2024-02-29").unwrap();
        assert_eq!(high - low + 1, DAY);
        let (low, high) = range("2024-02-29T10:00").unwrap();
        assert_eq!(high - low + 1, 60_000_000);
        let (low, high) = range("2024-02-29T10:00:05Z").unwrap();
        assert_eq!(high - low + 1, 1_000_000);
        let (low, high) = range("2024-02-29T10:00:05.25Z").unwrap();
        assert_eq!(high - low + 1, 10_000);
    }

    #[test]
    fn zones_shift_the_instant() {
        let utc = range("2024-01-01T10:00:00Z").unwrap().0;
        assert_eq!(range("2024-01-01T11:00:00+01:00").unwrap().0, utc);
        assert_eq!(range("2024-01-01T05:00:00-05:00").unwrap().0, utc);
        assert_eq!(range("2024-01-01").unwrap().0 + 10 * 3_600_000_000, utc);
    }

    #[test]
    fn malformed_dates_are_refused() {
        for bad in [
            "",
            "notadate",
            "2024-13",
            "2024-02-30",
            "24-01-01",
            "2024-01-01T25:00",
            "2024-01-01Tx",
        ] {
            assert!(range(bad).is_none(), "{bad}");
        }
    }
}
