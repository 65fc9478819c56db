//! The time a resource claims, for the store's rule that nobody is booked twice: an
//! Appointment that holds time (pending, booked, arrived, checked-in) claims its span for
//! each participant that is a practitioner, a room, a device or a patient (and has not
//! declined), and each Slot it names in `Appointment.slot` (so that a Slot someone is booked
//! into cannot be closed under them: `store::slots`); a Schedule sets its actors' buffers and capacity (its SchedulingParameters
//! extension, the set without a `service`). Pure functions of the resource, so that every
//! write path (create, update, patch, transaction, import) derives the same claims inside
//! its database transaction (`store::claims`).

use serde_json::Value;

/// The SchedulingParameters extension (Medplum's shape).
pub const PARAMETERS_URL: &str =
    "https://medplum.com/fhir/StructureDefinition/SchedulingParameters";

/// When a hold (`Appointment/$hold`) lapses: an instant on the held Appointment. After it
/// the hold claims nothing.
pub const HOLD_EXPIRES_URL: &str = "urn:fhir-server:StructureDefinition/hold-expires";

/// The appointment statuses that hold time.
pub const HOLDING: &[&str] = &["pending", "booked", "arrived", "checked-in"];

/// The actor types whose time can be double-booked.
const CLAIMANTS: &[&str] = &[
    "Practitioner",
    "PractitionerRole",
    "Location",
    "Device",
    "Patient",
];

/// The longest claim: an appointment holding time for longer is refused, so that a look
/// for overlaps needs to reach back only this far.
pub const LONGEST_CLAIM: i64 = 7 * 24 * 3600 * 1_000_000;

/// One actor's claim on `[start, end)`, until `expires` for a hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claim {
    pub actor: String,
    pub start: i64,
    pub end: i64,
    pub expires: Option<i64>,
}

/// What a Schedule sets for one actor: buffers (microseconds) and capacity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    pub actor: String,
    pub before: i64,
    pub after: i64,
    pub capacity: i64,
}

fn instant(value: &Value) -> Option<i64> {
    crate::resource::parse_instant(value.as_str()?)
}

/// The claims of an Appointment: none unless it holds time, has a start and an end, and
/// ends after `now` (a past appointment, as an EHR's history brings them, claims nothing).
pub fn appointment_claims(appointment: &Value, now: i64) -> Vec<Claim> {
    let holding = appointment["status"]
        .as_str()
        .is_some_and(|status| HOLDING.contains(&status));
    let (Some(start), Some(end)) = (instant(&appointment["start"]), instant(&appointment["end"]))
    else {
        return Vec::new();
    };
    if !holding || end <= start || end <= now {
        return Vec::new();
    }
    let expires = appointment["extension"].as_array().and_then(|extensions| {
        extensions
            .iter()
            .find(|e| e["url"] == HOLD_EXPIRES_URL)
            .and_then(|e| instant(&e["valueInstant"]))
    });
    let mut claims: Vec<Claim> = appointment["participant"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|p| p["status"] != "declined")
        .filter_map(|p| p["actor"]["reference"].as_str())
        .filter(|reference| {
            reference
                .split_once('/')
                .is_some_and(|(kind, id)| CLAIMANTS.contains(&kind) && !id.is_empty())
        })
        .map(|actor| Claim {
            actor: actor.to_owned(),
            start,
            end,
            expires,
        })
        .collect();
    let slots = appointment["slot"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|slot| slot["reference"].as_str())
        .filter(|reference| is_slot(reference));
    claims.extend(slots.map(|slot| Claim {
        actor: slot.to_owned(),
        start,
        end,
        expires,
    }));
    claims.sort_by(|a, b| a.actor.cmp(&b.actor));
    claims.dedup_by(|a, b| a.actor == b.actor);
    claims
}

/// Whether a claim's actor is a Slot (`Slot/{id}`): it records that the Slot is taken,
/// and has no capacity or buffers of its own.
pub fn is_slot(actor: &str) -> bool {
    actor
        .strip_prefix("Slot/")
        .is_some_and(|id| !id.is_empty() && !id.contains('/'))
}

/// Time an appointment held and holds no more.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Freed {
    pub start: String,
    pub end: String,
    /// Its practitioners, rooms and devices (not its patients or Slots).
    pub actors: Vec<String>,
}

/// The time `previous` (an appointment's version) held that `next` (the one replacing it;
/// `None`: deleted) does not: when it is cancelled, missed, deleted or moved, and the time
/// is still to come. What the waitlist is offered.
pub fn freed(previous: &Value, next: Option<&Value>, now: i64) -> Option<Freed> {
    let before = appointment_claims(previous, now);
    let first = before.first()?;
    let after = next.map(|n| appointment_claims(n, now)).unwrap_or_default();
    let same_time = after
        .first()
        .is_some_and(|a| a.start == first.start && a.end == first.end);
    if same_time || first.start <= now {
        return None;
    }
    Some(Freed {
        start: previous["start"].as_str()?.to_owned(),
        end: previous["end"].as_str()?.to_owned(),
        actors: before
            .iter()
            .filter(|c| !c.actor.starts_with("Patient/") && !is_slot(&c.actor))
            .map(|c| c.actor.clone())
            .collect(),
    })
}

/// A `Duration` in whole minutes (`s` that make minutes, `min`, `h`, `d`, `wk`).
pub fn minutes_of(duration: &Value) -> Result<i64, String> {
    let value = duration["value"]
        .as_f64()
        .ok_or_else(|| "a Duration needs a value".to_owned())?;
    let unit = duration["code"]
        .as_str()
        .or_else(|| duration["unit"].as_str())
        .unwrap_or_default();
    let factor = match unit {
        "s" => 1.0 / 60.0,
        "min" => 1.0,
        "h" => 60.0,
        "d" => 1440.0,
        "wk" => 10080.0,
        other => {
            return Err(format!(
                "the Duration unit '{other}' is not one of s, min, h, d, wk"
            ));
        }
    };
    let minutes = value * factor;
    if !(0.0..=525_600.0).contains(&minutes) || minutes.fract() != 0.0 {
        return Err("a Duration here is whole minutes, up to a year".into());
    }
    Ok(minutes as i64)
}

/// The policies an active Schedule sets for its actors (nothing for an inactive one). A
/// malformed value counts as absent here; `$find` reports it.
pub fn schedule_policies(schedule: &Value) -> Vec<Policy> {
    if schedule["active"] == Value::Bool(false) {
        return Vec::new();
    }
    let set = schedule["extension"].as_array().and_then(|extensions| {
        extensions.iter().find(|e| {
            e["url"] == PARAMETERS_URL
                && !e["extension"]
                    .as_array()
                    .is_some_and(|subs| subs.iter().any(|s| s["url"] == "service"))
        })
    });
    let sub = |url: &str| {
        set.and_then(|set| set["extension"].as_array())
            .and_then(|subs| subs.iter().find(|s| s["url"] == url))
    };
    let buffer = |url: &str| {
        sub(url)
            .and_then(|s| minutes_of(&s["valueDuration"]).ok())
            .unwrap_or(0)
            * 60_000_000
    };
    let capacity = sub("slotCapacity")
        .and_then(|s| s["valueInteger"].as_i64())
        .filter(|n| (1..=1000).contains(n))
        .unwrap_or(1);
    let (before, after) = (buffer("bufferBefore"), buffer("bufferAfter"));
    schedule["actor"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|a| a["reference"].as_str())
        .map(|actor| Policy {
            actor: actor.to_owned(),
            before,
            after,
            capacity,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn a_booked_visit_claims_its_people_and_room_not_a_cancelled_or_past_one() {
        let mut appointment = json!({"resourceType": "Appointment", "status": "booked",
            "start": "2027-03-15T10:00:00Z", "end": "2027-03-15T10:30:00Z",
            "participant": [
                {"actor": {"reference": "Practitioner/dr1"}, "status": "accepted"},
                {"actor": {"reference": "Location/room1"}, "status": "accepted"},
                {"actor": {"reference": "Patient/p1"}, "status": "accepted"},
                {"actor": {"reference": "HealthcareService/x"}, "status": "accepted"},
                {"actor": {"reference": "Practitioner/dr2"}, "status": "declined"}],
            "slot": [{"reference": "Slot/s1"}, {"reference": "Slot/"}]});
        let actors: Vec<String> = appointment_claims(&appointment, 0)
            .into_iter()
            .map(|c| c.actor)
            .collect();
        assert_eq!(
            actors,
            [
                "Location/room1",
                "Patient/p1",
                "Practitioner/dr1",
                "Slot/s1"
            ]
        );
        let after = crate::resource::parse_instant("2027-03-15T11:00:00Z").unwrap();
        assert!(
            appointment_claims(&appointment, after).is_empty(),
            "a past visit"
        );
        appointment["status"] = json!("cancelled");
        assert!(appointment_claims(&appointment, 0).is_empty());
    }

    #[test]
    fn time_frees_when_cancelled_moved_or_deleted_not_when_unchanged() {
        let booked = json!({"resourceType": "Appointment", "status": "booked",
            "start": "2027-03-15T10:00:00Z", "end": "2027-03-15T10:30:00Z",
            "participant": [{"actor": {"reference": "Practitioner/dr1"}}, {"actor": {"reference": "Patient/p1"}}]});
        let mut cancelled = booked.clone();
        cancelled["status"] = json!("cancelled");
        let freed = freed(&booked, Some(&cancelled), 0).unwrap();
        assert_eq!(freed.actors, ["Practitioner/dr1"]);
        assert!(super::freed(&booked, None, 0).is_some(), "deleted");
        let mut moved = booked.clone();
        moved["start"] = json!("2027-03-15T11:00:00Z");
        moved["end"] = json!("2027-03-15T11:30:00Z");
        assert!(super::freed(&booked, Some(&moved), 0).is_some(), "moved");
        assert!(
            super::freed(&booked, Some(&booked), 0).is_none(),
            "unchanged"
        );
        assert!(super::freed(&cancelled, None, 0).is_none(), "held nothing");
    }

    #[test]
    fn a_schedule_sets_buffers_and_capacity() {
        let schedule = json!({"resourceType": "Schedule", "actor": [{"reference": "Location/gym"}],
            "extension": [{"url": PARAMETERS_URL, "extension": [
                {"url": "bufferAfter", "valueDuration": {"value": 10, "unit": "min"}},
                {"url": "slotCapacity", "valueInteger": 3}]}]});
        assert_eq!(
            schedule_policies(&schedule),
            [Policy {
                actor: "Location/gym".into(),
                before: 0,
                after: 600_000_000,
                capacity: 3
            }]
        );
    }
}
