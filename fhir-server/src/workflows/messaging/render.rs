//! What a reminder says and when it may be sent: its template in the patient's language,
//! filled with no more than the practice allows, and the quiet hours in the patient's time
//! zone (their `tz-code` extension, else the visit's Location's, else its practitioner's
//! Schedule's, else the practice's).

use jiff::Timestamp;
use jiff::tz::TimeZone;
use serde_json::Value;

use super::TIME_ZONE_URL;
use super::settings::{MessagingSettings, QuietHours, ReminderPolicy, Template, minute_of_day};

/// The time zone named by a resource's `tz-code` extension, if it names a known one.
pub fn zone_of(resource: Option<&Value>) -> Option<TimeZone> {
    let extensions = resource?["extension"].as_array()?;
    let code = extensions
        .iter()
        .find(|e| e["url"] == TIME_ZONE_URL)?
        .get("valueCode")?
        .as_str()?;
    TimeZone::get(code).ok()
}

/// The zone a Schedule keeps its hours in (its scheduling parameters' `timezone`, or its
/// `tz-code` extension).
pub fn zone_of_schedule(schedule: Option<&Value>) -> Option<TimeZone> {
    let schedule = schedule?;
    crate::workflows::scheduling::availability::Parameters::of(schedule, None, None)
        .ok()
        .map(|parameters| parameters.time_zone)
        .or_else(|| zone_of(Some(schedule)))
}

/// The zone a patient is reached in: theirs, else the visit's place's (its Location, else
/// its practitioner's Schedule), else the practice's.
pub fn zone_for(
    patient: Option<&Value>,
    place: Option<TimeZone>,
    settings: &MessagingSettings,
) -> TimeZone {
    zone_of(patient)
        .or(place)
        .or_else(|| TimeZone::get(&settings.time_zone).ok())
        .unwrap_or(TimeZone::UTC)
}

/// When a message due at `now` may go: `now`, or the end of the quiet hours it falls in.
pub fn after_quiet_hours(now: i64, quiet: Option<&QuietHours>, zone: &TimeZone) -> i64 {
    let Some((start, end)) =
        quiet.and_then(|q| Some((minute_of_day(&q.start)?, minute_of_day(&q.end)?)))
    else {
        return now;
    };
    let Ok(instant) = Timestamp::from_microsecond(now) else {
        return now;
    };
    let local = instant.to_zoned(zone.clone());
    let minute =
        u32::from(local.hour().unsigned_abs()) * 60 + u32::from(local.minute().unsigned_abs());
    let quiet_now = match start <= end {
        true => (start..end).contains(&minute),
        false => minute >= start || minute < end,
    };
    if !quiet_now {
        return now;
    }
    // The quiet hours end today, or tomorrow when they started before midnight.
    let day = match minute >= end {
        true => local.date().tomorrow().unwrap_or(local.date()),
        false => local.date(),
    };
    let end_time = jiff::civil::Time::new((end / 60) as i8, (end % 60) as i8, 0, 0)
        .unwrap_or(jiff::civil::Time::midnight());
    day.to_datetime(end_time)
        .to_zoned(zone.clone())
        .map(|z| z.timestamp().as_microsecond())
        .unwrap_or(now)
}

/// The patient's languages, preferred first (`es-MX`, then `es`).
fn languages(patient: Option<&Value>) -> Vec<String> {
    let mut communication: Vec<&Value> = patient
        .and_then(|p| p["communication"].as_array())
        .map(|c| c.iter().collect())
        .unwrap_or_default();
    communication.sort_by_key(|c| c["preferred"] != true);
    let mut wanted = Vec::new();
    for code in communication
        .iter()
        .filter_map(|c| c["language"]["coding"][0]["code"].as_str())
    {
        wanted.push(code.to_owned());
        if let Some((primary, _)) = code.split_once('-') {
            wanted.push(primary.to_owned());
        }
    }
    wanted
}

/// The template for the patient's language, else `en`.
pub fn template_for<'p>(
    policy: &'p ReminderPolicy,
    patient: Option<&Value>,
) -> Option<&'p Template> {
    languages(patient)
        .iter()
        .find_map(|language| policy.templates.get(language))
        .or_else(|| policy.templates.get("en"))
}

/// What fills a template's placeholders.
pub struct Facts {
    pub patient: String,
    /// The visit's start, in the patient's zone.
    pub start: Option<jiff::Zoned>,
    pub practice: String,
    pub practitioner: String,
    pub location: String,
    /// The signed links that confirm and cancel the visit (empty without a public URL).
    pub confirm_link: String,
    pub cancel_link: String,
}

/// `text` with its placeholders filled.
pub fn fill(text: &str, facts: &Facts) -> String {
    let (date, time) = match &facts.start {
        Some(start) => (
            start.strftime("%Y-%m-%d").to_string(),
            start.strftime("%H:%M").to_string(),
        ),
        None => (String::new(), String::new()),
    };
    text.replace("{patient}", &facts.patient)
        .replace("{date}", &date)
        .replace("{time}", &time)
        .replace("{practice}", &facts.practice)
        .replace("{practitioner}", &facts.practitioner)
        .replace("{location}", &facts.location)
        .replace("{confirm_link}", &facts.confirm_link)
        .replace("{cancel_link}", &facts.cancel_link)
}

/// A person's or place's name as a message says it: a Patient's first given name, a
/// Practitioner's full name, a Location's name.
pub fn name_of(resource: Option<&Value>) -> String {
    let Some(resource) = resource else {
        return String::new();
    };
    if let Some(name) = resource["name"].as_str() {
        return name.to_owned();
    }
    let name = &resource["name"][0];
    if let Some(text) = name["text"].as_str() {
        return text.to_owned();
    }
    let given = name["given"][0].as_str().unwrap_or_default();
    match resource["resourceType"].as_str() {
        Some("Patient") => given.to_owned(),
        _ => format!("{given} {}", name["family"].as_str().unwrap_or_default())
            .trim()
            .to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn micros(text: &str) -> i64 {
        text.parse::<Timestamp>().unwrap().as_microsecond()
    }

    #[test]
    fn quiet_hours_hold_a_message_until_morning_local_time() {
        let quiet = QuietHours {
            start: "21:00".into(),
            end: "08:00".into(),
        };
        let zone = TimeZone::get("America/New_York").unwrap();
        // 23:30 in New York (EST, UTC-5): held to 08:00 the next morning.
        let late = micros("2027-01-15T04:30:00Z");
        assert_eq!(
            after_quiet_hours(late, Some(&quiet), &zone),
            micros("2027-01-15T13:00:00Z")
        );
        // 06:00 local: held to 08:00 the same morning.
        let early = micros("2027-01-15T11:00:00Z");
        assert_eq!(
            after_quiet_hours(early, Some(&quiet), &zone),
            micros("2027-01-15T13:00:00Z")
        );
        let noon = micros("2027-01-15T17:00:00Z");
        assert_eq!(after_quiet_hours(noon, Some(&quiet), &zone), noon);
        assert_eq!(after_quiet_hours(late, None, &zone), late);
    }

    #[test]
    fn a_schedule_gives_its_zone_when_the_patient_and_the_place_do_not() {
        let schedule = json!({"resourceType": "Schedule", "extension": [{
            "url": "https://medplum.com/fhir/StructureDefinition/SchedulingParameters",
            "extension": [
                {"url": "availability", "valueTiming": {"repeat": {"duration": 8, "durationUnit": "h",
                    "timeOfDay": ["09:00:00"]}}},
                {"url": "duration", "valueDuration": {"value": 30, "unit": "min"}},
                {"url": "timezone", "valueCode": "America/Chicago"}]}]});
        let place = zone_of_schedule(Some(&schedule));
        assert_eq!(
            place.as_ref().and_then(|z| z.iana_name()),
            Some("America/Chicago")
        );
        let settings = MessagingSettings {
            time_zone: "UTC".into(),
            ..MessagingSettings::default()
        };
        let patient = json!({"resourceType": "Patient", "extension": [
            {"url": super::super::TIME_ZONE_URL, "valueCode": "Europe/Paris"}]});
        assert_eq!(
            zone_for(Some(&patient), place.clone(), &settings).iana_name(),
            Some("Europe/Paris")
        );
        assert_eq!(
            zone_for(None, place, &settings).iana_name(),
            Some("America/Chicago")
        );
        assert_eq!(zone_for(None, None, &settings).iana_name(), Some("UTC"));
    }

    #[test]
    fn the_preferred_language_is_used_else_english() {
        let mut policy: ReminderPolicy = serde_json::from_value(json!({"before_hours": [24],
            "templates": {"en": {"subject": "Visit", "text": "Hi"}, "es": {"subject": "Cita", "text": "Hola"}}}))
        .unwrap();
        let patient = json!({"resourceType": "Patient", "communication": [
            {"language": {"coding": [{"code": "fr"}]}},
            {"language": {"coding": [{"code": "es-MX"}]}, "preferred": true}]});
        assert_eq!(template_for(&policy, Some(&patient)).unwrap().text, "Hola");
        policy.templates.remove("es");
        assert_eq!(template_for(&policy, Some(&patient)).unwrap().text, "Hi");
    }
}
