//! Recurring series: the occurrences of a visit every N days (weekly: 7), for a number of
//! occurrences or until a date, at the same local time in the Schedule's time zone (a 9:00
//! visit stays 9:00 local across a daylight saving change).

use jiff::tz::TimeZone;
use jiff::{Span as CivilSpan, Timestamp, ToSpan};

use super::availability::Span;
use crate::error::FhirError;

/// The most occurrences one call books.
pub const MOST: u32 = 104;

/// How a series repeats.
#[derive(Debug, Clone, Copy)]
pub struct Repeat {
    pub every_days: i64,
    /// At most this many occurrences (the first included).
    pub count: Option<u32>,
    /// No occurrence starts after this instant.
    pub until: Option<i64>,
}

fn invalid(name: &str, diagnostics: &str) -> FhirError {
    FhirError::bad_request(diagnostics).at(format!("Parameters.parameter.where(name = '{name}')"))
}

/// The occurrences of `first` (the first one included), in `zone`.
pub fn occurrences(first: Span, repeat: Repeat, zone: &TimeZone) -> Result<Vec<Span>, FhirError> {
    if !(1..=366).contains(&repeat.every_days) {
        return Err(invalid("every-days", "every-days is 1 to 366"));
    }
    if repeat.count.is_none() && repeat.until.is_none() {
        return Err(invalid("count", "a series needs count or until"));
    }
    let count = repeat.count.unwrap_or(MOST);
    if !(1..=MOST).contains(&count) {
        return Err(invalid("count", "count is 1 to 104"));
    }
    let start = Timestamp::from_microsecond(first.start)
        .map_err(|_| invalid("appointment", "the start is out of range"))?
        .to_zoned(zone.clone());
    let length = first.end - first.start;
    let mut spans = Vec::new();
    for n in 0..i64::from(count) {
        let step: CivilSpan = (n * repeat.every_days).days();
        let Ok(next) = start.checked_add(step) else {
            break;
        };
        let at = next.timestamp().as_microsecond();
        if repeat.until.is_some_and(|until| at > until) {
            break;
        }
        spans.push(Span {
            start: at,
            end: at + length,
        });
    }
    Ok(spans)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> i64 {
        text.parse::<Timestamp>().unwrap().as_microsecond()
    }

    #[test]
    fn weekly_at_the_same_local_time_across_the_change() {
        let zone = TimeZone::get("America/New_York").unwrap();
        let first = Span {
            start: at("2027-03-01T14:00:00Z"),
            end: at("2027-03-01T14:30:00Z"),
        };
        let weekly = Repeat {
            every_days: 7,
            count: Some(3),
            until: None,
        };
        let spans = occurrences(first, weekly, &zone).unwrap();
        let starts: Vec<i64> = spans.iter().map(|s| s.start).collect();
        // 9:00 EST, then 9:00 EST, then 9:00 EDT (13:00 UTC) after 14 March.
        assert_eq!(
            starts,
            [
                at("2027-03-01T14:00:00Z"),
                at("2027-03-08T14:00:00Z"),
                at("2027-03-15T13:00:00Z")
            ]
        );
        assert!(spans.iter().all(|s| s.end - s.start == 30 * 60_000_000));
    }

    #[test]
    fn until_a_date_or_refused() {
        let zone = TimeZone::UTC;
        let first = Span {
            start: at("2027-01-04T09:00:00Z"),
            end: at("2027-01-04T09:30:00Z"),
        };
        let until = Repeat {
            every_days: 2,
            count: None,
            until: Some(at("2027-01-10T00:00:00Z")),
        };
        assert_eq!(occurrences(first, until, &zone).unwrap().len(), 3);
        let endless = Repeat {
            every_days: 7,
            count: None,
            until: None,
        };
        assert!(occurrences(first, endless, &zone).is_err());
        let zero = Repeat {
            every_days: 0,
            count: Some(2),
            until: None,
        };
        assert!(occurrences(first, zero, &zone).is_err());
    }
}
