//! What reminders did, per week (`$reminder-stats`): reminders sent per channel, how many
//! visits were reminded and confirmed, cancelled by a reply or a link, and the no-show
//! rate of reminded visits against visits not reminded. Counted from the records
//! themselves (the reminders' Communications, the Appointments), in the practice's time
//! zone, weeks starting on Monday.

use std::collections::{BTreeMap, HashSet};

use jiff::civil::Date;
use jiff::tz::TimeZone;
use serde_json::{Value, json};

use super::replies::CONFIRMED_URL;
use crate::app::App;
use crate::error::FhirError;
use crate::ids::TenantId;
use crate::resource::parse_instant;
use crate::workflows::scheduling::lookup;

/// How far before a visit its reminders may have gone out (the longest policy: 30 days).
const REMINDED_BEFORE: i64 = 31 * 86_400_000_000;

/// One week's figures.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Week {
    pub sent_email: u32,
    pub sent_sms: u32,
    pub appointments: u32,
    pub reminded: u32,
    pub confirmed: u32,
    pub cancelled_by_patient: u32,
    /// Visits that took place or were missed (not cancelled), reminded and not.
    pub held_reminded: u32,
    pub noshow_reminded: u32,
    pub held_not_reminded: u32,
    pub noshow_not_reminded: u32,
}

/// The Monday of the week of `micros`, in `zone`.
fn week_of(micros: i64, zone: &TimeZone) -> Option<Date> {
    let date = jiff::Timestamp::from_microsecond(micros)
        .ok()?
        .to_zoned(zone.clone())
        .date();
    let back = i64::from(date.weekday().to_monday_zero_offset());
    date.checked_sub(jiff::Span::new().days(back)).ok()
}

/// The figures of the weeks from `start` to `end` (instants, microseconds).
pub async fn weeks(
    app: &App,
    tenant: TenantId,
    (start, end): (i64, i64),
) -> Result<BTreeMap<Date, Week>, FhirError> {
    let settings = super::settings::load(&app.store, tenant).await?;
    let zone = TimeZone::get(&settings.time_zone).unwrap_or(TimeZone::UTC);
    let instant = crate::resource::format_instant;
    let sent_params = vec![
        ("category".to_owned(), "reminder".to_owned()),
        (
            "sent".to_owned(),
            format!("ge{}", instant(start - REMINDED_BEFORE)),
        ),
        ("sent".to_owned(), format!("lt{}", instant(end))),
    ];
    let sent = lookup::all(app, tenant, "Communication", &sent_params).await?;
    let mut weeks: BTreeMap<Date, Week> = BTreeMap::new();
    let mut reminded: HashSet<String> = HashSet::new();
    for message in sent.iter().filter(|m| m["status"] == "completed") {
        let Some(at) = message["sent"].as_str().and_then(parse_instant) else {
            continue;
        };
        for about in message["about"].as_array().into_iter().flatten() {
            if let Some(id) = about["reference"]
                .as_str()
                .and_then(|r| r.strip_prefix("Appointment/"))
            {
                reminded.insert(id.to_owned());
            }
        }
        if at < start {
            continue;
        }
        let Some(week) = week_of(at, &zone) else {
            continue;
        };
        let entry = weeks.entry(week).or_default();
        let channel = message["medium"][0]["coding"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|c| c["system"] == crate::channels::CHANNEL_SYSTEM)
            .and_then(|c| c["code"].as_str());
        match channel {
            Some("email") => entry.sent_email += 1,
            Some("sms") => entry.sent_sms += 1,
            _ => {}
        }
    }
    let visit_params = vec![
        ("date".to_owned(), format!("ge{}", instant(start))),
        ("date".to_owned(), format!("lt{}", instant(end))),
    ];
    for visit in lookup::all(app, tenant, "Appointment", &visit_params).await? {
        let Some(week) = visit["start"]
            .as_str()
            .and_then(parse_instant)
            .and_then(|s| week_of(s, &zone))
        else {
            continue;
        };
        count_visit(weeks.entry(week).or_default(), &visit, &reminded);
    }
    Ok(weeks)
}

fn count_visit(week: &mut Week, visit: &Value, reminded: &HashSet<String>) {
    let was_reminded = visit["id"].as_str().is_some_and(|id| reminded.contains(id));
    let status = visit["status"].as_str().unwrap_or_default();
    week.appointments += 1;
    if was_reminded {
        week.reminded += 1;
    }
    let confirmed = visit["extension"]
        .as_array()
        .is_some_and(|e| e.iter().any(|e| e["url"] == CONFIRMED_URL));
    if confirmed {
        week.confirmed += 1;
    }
    let by_patient = visit["cancelationReason"]["text"]
        .as_str()
        .is_some_and(|t| t.starts_with("cancelled by the patient"));
    if status == "cancelled" && by_patient {
        week.cancelled_by_patient += 1;
    }
    if matches!(status, "fulfilled" | "noshow" | "arrived" | "checked-in") {
        let noshow = u32::from(status == "noshow");
        match was_reminded {
            true => {
                week.held_reminded += 1;
                week.noshow_reminded += noshow;
            }
            false => {
                week.held_not_reminded += 1;
                week.noshow_not_reminded += noshow;
            }
        }
    }
}

fn rate(part: u32, whole: u32) -> Value {
    match whole {
        0 => Value::Null,
        whole => json!((f64::from(part) / f64::from(whole) * 1000.0).round() / 1000.0),
    }
}

/// The figures as a Parameters resource: a `week` parameter per week.
pub fn parameters(weeks: &BTreeMap<Date, Week>) -> Value {
    let mut parameter = Vec::new();
    for (monday, week) in weeks {
        let mut part = vec![json!({"name": "start", "valueDate": monday.to_string()})];
        for (name, value) in [
            ("sent-email", week.sent_email),
            ("sent-sms", week.sent_sms),
            ("appointments", week.appointments),
            ("reminded", week.reminded),
            ("confirmed", week.confirmed),
            ("cancelled-by-patient", week.cancelled_by_patient),
        ] {
            part.push(json!({"name": name, "valueInteger": value}));
        }
        for (name, value) in [
            ("confirmation-rate", rate(week.confirmed, week.reminded)),
            (
                "no-show-rate-reminded",
                rate(week.noshow_reminded, week.held_reminded),
            ),
            (
                "no-show-rate-not-reminded",
                rate(week.noshow_not_reminded, week.held_not_reminded),
            ),
        ] {
            if !value.is_null() {
                part.push(json!({"name": name, "valueDecimal": value}));
            }
        }
        parameter.push(json!({"name": "week", "part": part}));
    }
    json!({"resourceType": "Parameters", "parameter": parameter})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weeks_start_on_monday_in_the_practice_zone() {
        let zone = TimeZone::get("America/New_York").unwrap();
        // Monday 2027-03-15 01:00 UTC is Sunday evening in New York.
        let sunday_evening = "2027-03-15T01:00:00Z".parse::<jiff::Timestamp>().unwrap();
        assert_eq!(
            week_of(sunday_evening.as_microsecond(), &zone)
                .unwrap()
                .to_string(),
            "2027-03-08"
        );
        let monday = "2027-03-15T14:00:00Z".parse::<jiff::Timestamp>().unwrap();
        assert_eq!(
            week_of(monday.as_microsecond(), &zone).unwrap().to_string(),
            "2027-03-15"
        );
    }

    #[test]
    fn visits_count_by_what_happened() {
        let reminded: HashSet<String> = ["a1".to_owned(), "a2".to_owned()].into();
        let mut week = Week::default();
        for visit in [
            json!({"id": "a1", "status": "noshow"}),
            json!({"id": "a2", "status": "fulfilled", "extension": [{"url": CONFIRMED_URL, "valueDateTime": "2027-03-14T10:00:00Z"}]}),
            json!({"id": "a3", "status": "fulfilled"}),
            json!({"id": "a4", "status": "cancelled", "cancelationReason": {"text": "cancelled by the patient (SMS reply)"}}),
        ] {
            count_visit(&mut week, &visit, &reminded);
        }
        assert_eq!(
            (
                week.appointments,
                week.reminded,
                week.confirmed,
                week.cancelled_by_patient
            ),
            (4, 2, 1, 1)
        );
        assert_eq!((week.noshow_reminded, week.held_reminded), (1, 2));
        assert_eq!((week.noshow_not_reminded, week.held_not_reminded), (0, 1));
        let shown = parameters(&[(Date::constant(2027, 3, 15), week)].into());
        assert_eq!(shown["parameter"][0]["part"][7]["valueDecimal"], json!(0.5));
    }
}
