//! When a Schedule is open, from its SchedulingParameters extension (the shape of
//! Medplum's, so that a practice configured for Medplum can move): weekly windows in the
//! Schedule's time zone, the visit's duration, buffers before and after, the alignment of
//! start times, and how many visits may share a time (group visits).
//!
//! Windows are local civil times: a 9:00 opening stays 9:00 local across a daylight saving
//! change. Start times step through real time from a window's start and must be aligned in
//! local time, so nothing is offered in the hour a spring change skips, and each of the two
//! instants of the hour an autumn change repeats is offered once.
//!
//! All times here are microseconds since the Unix epoch, as the search index keeps them.

use axum::http::StatusCode;
use jiff::civil::{Date, DateTime, Time, Weekday};
use jiff::tz::TimeZone;
use jiff::{SignedDuration, Timestamp};
use serde_json::Value;

use crate::error::FhirError;

/// The extension's URL (Medplum's).
pub use crate::index::claims::PARAMETERS_URL as EXTENSION;

const MINUTE: i64 = 60_000_000;

/// A weekly window: on these days, from `start` for `minutes` of local civil time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Window {
    pub days: Vec<Weekday>,
    pub start: Time,
    pub minutes: i64,
}

/// A Schedule's scheduling parameters.
#[derive(Debug, Clone)]
pub struct Parameters {
    /// When the Schedule is open; empty: at any time (only Slots and bookings restrict).
    pub windows: Vec<Window>,
    /// The visit's length, in minutes.
    pub duration: i64,
    pub buffer_before: i64,
    pub buffer_after: i64,
    /// Start times fall on this grid of local minutes, shifted by `alignment_offset`;
    /// `None`: visits follow each other from a window's start.
    pub alignment_interval: Option<i64>,
    pub alignment_offset: i64,
    pub time_zone: TimeZone,
    /// How many visits may share a time.
    pub capacity: u32,
}

/// A time span `[start, end)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span {
    pub start: i64,
    pub end: i64,
}

impl Span {
    pub fn overlaps(self, other: Span) -> bool {
        self.start < other.end && other.start < self.end
    }

    pub fn contains(self, other: Span) -> bool {
        self.start <= other.start && other.end <= self.end
    }
}

fn invalid(at: &str, diagnostics: impl Into<String>) -> FhirError {
    FhirError::new(
        StatusCode::UNPROCESSABLE_ENTITY,
        "business-rule",
        diagnostics,
    )
    .at(at)
}

/// A `Duration` in whole minutes (see `index::claims::minutes_of`), or 422 at `at`.
fn minutes_of(duration: &Value, at: &str) -> Result<i64, FhirError> {
    crate::index::claims::minutes_of(duration).map_err(|reason| invalid(at, reason))
}

fn weekday(code: &str) -> Option<Weekday> {
    Some(match code {
        "mon" => Weekday::Monday,
        "tue" => Weekday::Tuesday,
        "wed" => Weekday::Wednesday,
        "thu" => Weekday::Thursday,
        "fri" => Weekday::Friday,
        "sat" => Weekday::Saturday,
        "sun" => Weekday::Sunday,
        _ => return None,
    })
}

const EVERY_DAY: [Weekday; 7] = [
    Weekday::Monday,
    Weekday::Tuesday,
    Weekday::Wednesday,
    Weekday::Thursday,
    Weekday::Friday,
    Weekday::Saturday,
    Weekday::Sunday,
];

/// The windows of an `availability` Timing: each `timeOfDay` on each `dayOfWeek`, lasting
/// `duration` `durationUnit`.
fn windows_of(timing: &Value, at: &str) -> Result<Vec<Window>, FhirError> {
    let repeat = &timing["repeat"];
    let days = match repeat["dayOfWeek"].as_array() {
        Some(codes) => codes
            .iter()
            .map(|code| code.as_str().and_then(weekday))
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| invalid(at, "dayOfWeek is mon, tue, wed, thu, fri, sat or sun"))?,
        None => EVERY_DAY.to_vec(),
    };
    let length = json_duration(repeat, at)?;
    let times: Vec<Time> = match repeat["timeOfDay"].as_array() {
        Some(times) => times
            .iter()
            .map(|time| time.as_str().and_then(|t| t.parse::<Time>().ok()))
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| invalid(at, "timeOfDay is a time, such as 09:00:00"))?,
        None => vec![Time::midnight()],
    };
    Ok(times
        .into_iter()
        .map(|start| Window {
            days: days.clone(),
            start,
            minutes: length,
        })
        .collect())
}

/// `repeat.duration` with `repeat.durationUnit`, in minutes.
fn json_duration(repeat: &Value, at: &str) -> Result<i64, FhirError> {
    let value = repeat["duration"]
        .as_f64()
        .ok_or_else(|| invalid(at, "the availability Timing needs repeat.duration"))?;
    let unit = repeat["durationUnit"].as_str().unwrap_or("h");
    minutes_of(&serde_json::json!({"value": value, "code": unit}), at)
}

/// The SchedulingParameters extensions of `resource` (the first one whose `service`
/// matches `service`, else the one without a service), with where it is.
fn parameters_extension<'a>(
    resource: &'a Value,
    service: Option<&str>,
) -> Option<(usize, &'a Value)> {
    let extensions = resource["extension"].as_array()?;
    let ours = || {
        extensions
            .iter()
            .enumerate()
            .filter(|(_, e)| e["url"] == EXTENSION)
    };
    let service_of = |e: &Value| {
        e["extension"].as_array().and_then(|subs| {
            subs.iter()
                .find(|s| s["url"] == "service")
                .and_then(|s| s["valueReference"]["reference"].as_str().map(str::to_owned))
        })
    };
    service
        .and_then(|wanted| ours().find(|(_, e)| service_of(e).as_deref() == Some(wanted)))
        .or_else(|| ours().find(|(_, e)| service_of(e).is_none()))
}

/// One sub-extension's value, by url, with where it is.
fn sub<'a>(extension: &'a Value, url: &str, at: &str) -> Vec<(String, &'a Value)> {
    extension["extension"]
        .as_array()
        .map(|subs| {
            subs.iter()
                .enumerate()
                .filter(|(_, s)| s["url"] == url)
                .map(|(i, s)| (format!("{at}.extension[{i}]"), s))
                .collect()
        })
        .unwrap_or_default()
}

/// Whether the SchedulingParameters of `resource` (a Schedule or a HealthcareService) are
/// well formed: each value given parses (what is not given may come from elsewhere: a
/// Schedule's service, `$find`'s check). 422 naming the element otherwise. The store checks
/// it on every write of those types.
pub fn check(resource: &Value, resource_type: &str) -> Result<(), FhirError> {
    let extensions = resource["extension"]
        .as_array()
        .into_iter()
        .flatten()
        .enumerate();
    for (i, extension) in extensions.filter(|(_, e)| e["url"] == EXTENSION) {
        let subs = extension["extension"]
            .as_array()
            .into_iter()
            .flatten()
            .enumerate();
        for (j, sub) in subs {
            let at = format!("{resource_type}.extension[{i}].extension[{j}]");
            check_one(sub, &at, resource_type)?;
        }
    }
    Ok(())
}

/// One sub-extension of the SchedulingParameters, at `at`.
fn check_one(sub: &Value, at: &str, resource_type: &str) -> Result<(), FhirError> {
    match sub["url"].as_str().unwrap_or_default() {
        url @ ("duration" | "bufferBefore" | "bufferAfter" | "alignmentInterval"
        | "alignmentOffset") => {
            let place = format!("{at}.valueDuration");
            let minutes = minutes_of(&sub["valueDuration"], &place)?;
            if url == "duration" && minutes == 0 {
                return Err(invalid(&place, "a visit lasts at least a minute"));
            }
        }
        "timezone" => {
            let name = sub["valueCode"].as_str().unwrap_or_default();
            if TimeZone::get(name).is_err() {
                return Err(invalid(
                    &format!("{at}.valueCode"),
                    format!("'{name}' is not a time zone (IANA, such as America/New_York)"),
                ));
            }
        }
        "slotCapacity"
            if !sub["valueInteger"]
                .as_u64()
                .is_some_and(|n| (1..=1000).contains(&n)) =>
        {
            return Err(invalid(
                &format!("{at}.valueInteger"),
                "slotCapacity is 1 to 1000",
            ));
        }
        "availability" if resource_type == "HealthcareService" => {
            return Err(invalid(
                at,
                "a HealthcareService's hours are its availableTime; availability is a Schedule's",
            ));
        }
        "availability" => {
            windows_of(&sub["valueTiming"], &format!("{at}.valueTiming"))?;
        }
        _ => {}
    }
    Ok(())
}

impl Parameters {
    /// The parameters of `schedule` for `service` (a `HealthcareService/id` reference),
    /// each one the Schedule does not set taken from the service's own `defaults` (the
    /// HealthcareService), as Medplum does. 422 naming the element for what is missing or
    /// malformed.
    pub fn of(
        schedule: &Value,
        service: Option<&str>,
        defaults: Option<&Value>,
    ) -> Result<Parameters, FhirError> {
        let own = parameters_extension(schedule, service)
            .map(|(i, e)| (format!("Schedule.extension[{i}]"), e));
        let inherited = defaults
            .and_then(|d| parameters_extension(d, None))
            .map(|(i, e)| (format!("HealthcareService.extension[{i}]"), e));
        let Some((at, _)) = own.as_ref().or(inherited.as_ref()) else {
            return Err(invalid(
                "Schedule.extension",
                format!("the Schedule has no {EXTENSION} extension"),
            ));
        };
        let at = at.clone();
        // The first place that sets `url`: the Schedule, else the service.
        let find = |url: &str| -> Vec<(String, &Value)> {
            for (place, extension) in own.iter().chain(inherited.iter()) {
                let found = sub(extension, url, place);
                if !found.is_empty() {
                    return found;
                }
            }
            Vec::new()
        };
        let duration_of = |url: &str| -> Result<Option<i64>, FhirError> {
            match find(url).first() {
                Some((place, value)) => Ok(Some(minutes_of(
                    &value["valueDuration"],
                    &format!("{place}.valueDuration"),
                )?)),
                None => Ok(None),
            }
        };
        let duration = duration_of("duration")?
            .filter(|minutes| *minutes > 0)
            .ok_or_else(|| invalid(&at, "the scheduling parameters need a duration"))?;
        let mut windows = Vec::new();
        for (place, value) in sub(
            own.as_ref().map_or(&Value::Null, |o| o.1),
            "availability",
            &at,
        ) {
            windows.extend(windows_of(
                &value["valueTiming"],
                &format!("{place}.valueTiming"),
            )?);
        }
        let time_zone = match find("timezone").first() {
            Some((place, value)) => {
                let name = value["valueCode"].as_str().unwrap_or_default();
                TimeZone::get(name).map_err(|_| {
                    invalid(
                        &format!("{place}.valueCode"),
                        format!("'{name}' is not a time zone (IANA, such as America/New_York)"),
                    )
                })?
            }
            None => return Err(invalid(&at, "the scheduling parameters need a timezone")),
        };
        let capacity = match find("slotCapacity").first() {
            Some((place, value)) => value["valueInteger"]
                .as_u64()
                .filter(|n| (1..=1000).contains(n))
                .ok_or_else(|| {
                    invalid(
                        &format!("{place}.valueInteger"),
                        "slotCapacity is 1 to 1000",
                    )
                })? as u32,
            None => 1,
        };
        let alignment_interval = duration_of("alignmentInterval")?.filter(|m| *m > 0);
        Ok(Parameters {
            windows,
            duration,
            buffer_before: duration_of("bufferBefore")?.unwrap_or(0),
            buffer_after: duration_of("bufferAfter")?.unwrap_or(0),
            alignment_interval,
            alignment_offset: duration_of("alignmentOffset")?.unwrap_or(0),
            time_zone,
            capacity,
        })
    }

    /// The windows open within `within`, as real time spans (a Schedule without
    /// `availability` is open throughout).
    pub fn open_spans(&self, within: Span) -> Vec<Span> {
        if self.windows.is_empty() {
            return vec![within];
        }
        let (Some(first), Some(last)) =
            (self.local_date(within.start), self.local_date(within.end))
        else {
            return Vec::new();
        };
        let mut spans = Vec::new();
        // The day before too: a window that starts late may run past midnight.
        let mut day = first.yesterday().unwrap_or(first);
        while day <= last {
            for window in &self.windows {
                if !window.days.contains(&day.weekday()) {
                    continue;
                }
                let start = day.to_datetime(window.start);
                let end = start.checked_add(SignedDuration::from_mins(window.minutes));
                if let (Some(start), Some(end)) =
                    (self.instant(start), end.ok().and_then(|e| self.instant(e)))
                {
                    let span = Span { start, end };
                    if span.overlaps(within) {
                        spans.push(span);
                    }
                }
            }
            match day.tomorrow() {
                Ok(next) => day = next,
                Err(_) => break,
            }
        }
        spans.sort_by_key(|span| span.start);
        spans
    }

    /// The visits that fit in `span`: their start times, in order (see the module's note
    /// on alignment).
    pub fn starts_in(&self, span: Span) -> Vec<i64> {
        let length = self.duration * MINUTE;
        let mut starts = Vec::new();
        let step = self.alignment_interval.unwrap_or(self.duration) * MINUTE;
        let mut at = match self.alignment_interval {
            Some(_) => self.next_aligned(span.start),
            None => span.start,
        };
        while at + length <= span.end {
            starts.push(at);
            at += step;
            if self.alignment_interval.is_some() && !self.is_aligned(at) {
                at = self.next_aligned(at);
            }
        }
        starts
    }

    /// Whether `at` falls on the alignment grid in local time.
    fn is_aligned(&self, at: i64) -> bool {
        let Some(interval) = self.alignment_interval else {
            return true;
        };
        let Ok(timestamp) = Timestamp::from_microsecond(at) else {
            return false;
        };
        let local = timestamp.to_zoned(self.time_zone.clone()).time();
        let minute = i64::from(local.hour()) * 60 + i64::from(local.minute());
        local.second() == 0
            && local.subsec_nanosecond() == 0
            && (minute - self.alignment_offset).rem_euclid(interval) == 0
    }

    /// The first aligned whole minute at or after `at`.
    fn next_aligned(&self, at: i64) -> i64 {
        let mut minute = at.div_euclid(MINUTE) * MINUTE;
        if minute < at {
            minute += MINUTE;
        }
        let limit = self.alignment_interval.unwrap_or(1).max(1) + 120;
        for _ in 0..limit {
            if self.is_aligned(minute) {
                return minute;
            }
            minute += MINUTE;
        }
        minute
    }

    fn local_date(&self, at: i64) -> Option<Date> {
        Timestamp::from_microsecond(at)
            .ok()
            .map(|t| t.to_zoned(self.time_zone.clone()).date())
    }

    /// A local civil time as an instant: in a gap (spring), the later reading; in a fold
    /// (autumn), the earlier one.
    fn instant(&self, local: DateTime) -> Option<i64> {
        self.time_zone
            .to_zoned(local)
            .ok()
            .map(|zoned| zoned.timestamp().as_microsecond())
    }

    /// `at` as an instant with the Schedule's local offset (`2026-03-09T09:00:00-04:00`).
    pub fn format(&self, at: i64) -> String {
        Timestamp::from_microsecond(at)
            .map(|t| {
                t.to_zoned(self.time_zone.clone())
                    .strftime("%Y-%m-%dT%H:%M:%S%:z")
                    .to_string()
            })
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn schedule(zone: &str, timing: Value, extra: Value) -> Value {
        let mut subs = vec![
            json!({"url": "availability", "valueTiming": timing}),
            json!({"url": "duration", "valueDuration": {"value": 30, "unit": "min"}}),
            json!({"url": "timezone", "valueCode": zone}),
        ];
        if let Some(more) = extra.as_array() {
            subs.extend(more.iter().cloned());
        }
        json!({"resourceType": "Schedule", "extension": [{"url": EXTENSION, "extension": subs}]})
    }

    fn at(text: &str) -> i64 {
        text.parse::<Timestamp>().unwrap().as_microsecond()
    }

    fn local(parameters: &Parameters, starts: &[i64]) -> Vec<String> {
        starts.iter().map(|s| parameters.format(*s)).collect()
    }

    fn nine_to_eleven() -> Value {
        json!({"repeat": {"dayOfWeek": ["mon", "tue", "wed", "thu", "fri", "sat", "sun"], "timeOfDay": ["09:00:00"], "duration": 2, "durationUnit": "h"}})
    }

    #[test]
    fn nine_stays_nine_local_across_the_spring_change() {
        // New York springs forward on Sunday 8 March 2026.
        let p = Parameters::of(
            &schedule("America/New_York", nine_to_eleven(), json!([])),
            None,
            None,
        )
        .unwrap();
        let spans = p.open_spans(Span {
            start: at("2026-03-07T00:00:00Z"),
            end: at("2026-03-10T00:00:00Z"),
        });
        let starts: Vec<String> = spans.iter().map(|s| p.format(s.start)).collect();
        assert_eq!(
            starts,
            [
                "2026-03-07T09:00:00-05:00",
                "2026-03-08T09:00:00-04:00",
                "2026-03-09T09:00:00-04:00"
            ]
        );
        assert_eq!(
            local(&p, &p.starts_in(spans[1])),
            [
                "2026-03-08T09:00:00-04:00",
                "2026-03-08T09:30:00-04:00",
                "2026-03-08T10:00:00-04:00",
                "2026-03-08T10:30:00-04:00"
            ]
        );
    }

    #[test]
    fn the_skipped_hour_is_never_offered_and_the_repeated_hour_twice() {
        // A night window 00:00 to 04:00 on the days New York changes its clocks.
        let night =
            json!({"repeat": {"timeOfDay": ["00:00:00"], "duration": 4, "durationUnit": "h"}});
        let p = Parameters::of(
            &schedule("America/New_York", night, json!([{"url": "alignmentInterval", "valueDuration": {"value": 60, "unit": "min"}}])),
            None,
            None,
        )
        .unwrap();
        let spring = p.open_spans(Span {
            start: at("2026-03-08T04:00:00Z"),
            end: at("2026-03-08T06:00:00Z"),
        });
        assert_eq!(
            local(&p, &p.starts_in(spring[0])),
            [
                "2026-03-08T00:00:00-05:00",
                "2026-03-08T01:00:00-05:00",
                "2026-03-08T03:00:00-04:00"
            ]
        );
        // 1 November 2026: 01:00 to 02:00 happens twice; both are offered, once each.
        let autumn = p.open_spans(Span {
            start: at("2026-11-01T04:00:00Z"),
            end: at("2026-11-01T06:00:00Z"),
        });
        assert_eq!(
            local(&p, &p.starts_in(autumn[0])),
            [
                "2026-11-01T00:00:00-04:00",
                "2026-11-01T01:00:00-04:00",
                "2026-11-01T01:00:00-05:00",
                "2026-11-01T02:00:00-05:00",
                "2026-11-01T03:00:00-05:00"
            ]
        );
    }

    #[test]
    fn berlin_changes_on_other_days() {
        // Berlin springs forward on 29 March 2026 at 02:00 and falls back on 25 October.
        let p = Parameters::of(
            &schedule("Europe/Berlin", nine_to_eleven(), json!([])),
            None,
            None,
        )
        .unwrap();
        let spans = p.open_spans(Span {
            start: at("2026-03-28T00:00:00Z"),
            end: at("2026-03-30T00:00:00Z"),
        });
        let starts: Vec<String> = spans.iter().map(|s| p.format(s.start)).collect();
        assert_eq!(
            starts,
            ["2026-03-28T09:00:00+01:00", "2026-03-29T09:00:00+02:00"]
        );
        let spans = p.open_spans(Span {
            start: at("2026-10-24T00:00:00Z"),
            end: at("2026-10-26T00:00:00Z"),
        });
        let starts: Vec<String> = spans.iter().map(|s| p.format(s.start)).collect();
        assert_eq!(
            starts,
            ["2026-10-24T09:00:00+02:00", "2026-10-25T09:00:00+01:00"]
        );
    }

    #[test]
    fn alignment_offsets_the_grid() {
        let p = Parameters::of(
            &schedule(
                "UTC",
                nine_to_eleven(),
                json!([
                {"url": "alignmentInterval", "valueDuration": {"value": 60, "unit": "min"}},
                {"url": "alignmentOffset", "valueDuration": {"value": 15, "unit": "min"}}]),
            ),
            None,
            None,
        )
        .unwrap();
        let span = Span {
            start: at("2026-06-01T09:00:00Z"),
            end: at("2026-06-01T11:00:00Z"),
        };
        assert_eq!(
            local(&p, &p.starts_in(span)),
            ["2026-06-01T09:15:00+00:00", "2026-06-01T10:15:00+00:00"]
        );
    }

    #[test]
    fn a_service_supplies_what_the_schedule_does_not_set() {
        let schedule = json!({"resourceType": "Schedule", "extension": [{"url": EXTENSION, "extension": [
            {"url": "timezone", "valueCode": "UTC"}]}]});
        let service = json!({"resourceType": "HealthcareService", "extension": [{"url": EXTENSION, "extension": [
            {"url": "duration", "valueDuration": {"value": 1, "unit": "h"}},
            {"url": "bufferAfter", "valueDuration": {"value": 10, "unit": "min"}}]}]});
        let p = Parameters::of(&schedule, None, Some(&service)).unwrap();
        assert_eq!((p.duration, p.buffer_after, p.capacity), (60, 10, 1));
        assert!(p.windows.is_empty());
    }

    #[test]
    fn bad_parameters_name_the_element() {
        let bad = schedule("Mars/Olympus", nine_to_eleven(), json!([]));
        let error = Parameters::of(&bad, None, None).unwrap_err();
        assert_eq!(
            error.issues[0].expression,
            ["Schedule.extension[0].extension[2].valueCode"]
        );
        let weird = schedule(
            "UTC",
            json!({"repeat": {"dayOfWeek": ["someday"], "duration": 1}}),
            json!([]),
        );
        let error = Parameters::of(&weird, None, None).unwrap_err();
        assert_eq!(
            error.issues[0].expression,
            ["Schedule.extension[0].extension[0].valueTiming"]
        );
        let none = json!({"resourceType": "Schedule"});
        assert!(Parameters::of(&none, None, None).is_err());
    }
}
