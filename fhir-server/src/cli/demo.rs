//! `fhir-server demo`: a small, realistic practice loaded into a tenant, so that a newcomer
//! can try `$find` and `$book` at once: three clinicians and two rooms with weekly hours
//! (a lunch break, a holiday next Wednesday), visit types with their lengths, patients,
//! and appointments in every state around next week, plus a waitlist entry. Every resource
//! has a fixed id and is written with PUT, so running it again brings the same practice
//! back (dates move with today).

use clap::Args;
use jiff::ToSpan;
use jiff::civil::{Date, Weekday};
use serde_json::{Value, json};

use super::open_tenant;
use crate::config::DatabaseConfig;
use crate::index;
use crate::store::{Method, Store, TenantId, WriteOp};

#[derive(Args)]
pub struct DemoConfig {
    /// The tenant to load the practice into.
    #[arg(long, default_value = "default")]
    tenant: String,
    #[command(flatten)]
    database: DatabaseConfig,
}

const PARAMETERS: &str = "https://medplum.com/fhir/StructureDefinition/SchedulingParameters";
const ZONE: &str = "America/New_York";

fn name(family: &str, given: &str) -> Value {
    json!([{"family": family, "given": [given]}])
}

fn hours(days: &[&str], from: &str, hours: u32) -> Value {
    json!({"url": "availability", "valueTiming": {"repeat": {"dayOfWeek": days, "timeOfDay": [from], "duration": hours, "durationUnit": "h"}}})
}

fn minutes(url: &str, value: u32) -> Value {
    json!({"url": url, "valueDuration": {"value": value, "unit": "min", "system": "http://unitsofmeasure.org", "code": "min"}})
}

/// A clinician's or a room's Schedule.
fn schedule(id: &str, actor: &str, windows: Vec<Value>) -> Value {
    let mut subs = windows;
    subs.extend([
        minutes("duration", 30),
        minutes("alignmentInterval", 15),
        json!({"url": "timezone", "valueCode": ZONE}),
    ]);
    json!({"resourceType": "Schedule", "id": id, "active": true, "actor": [{"reference": actor}],
        "extension": [{"url": PARAMETERS, "extension": subs}]})
}

fn service(id: &str, label: &str, length: u32) -> Value {
    json!({"resourceType": "HealthcareService", "id": id, "active": true, "name": label,
        "providedBy": {"reference": "Organization/maple-street"},
        "extension": [{"url": PARAMETERS, "extension": [minutes("duration", length), minutes("bufferAfter", 5)]}]})
}

/// `day` at `time` (`09:00`) in the practice's zone, as an instant.
fn at(day: Date, time: &str) -> String {
    let Ok(time) = time.parse::<jiff::civil::Time>() else {
        return String::new();
    };
    day.to_datetime(time)
        .in_tz(ZONE)
        .map(|zoned| zoned.strftime("%Y-%m-%dT%H:%M:%S%:z").to_string())
        .unwrap_or_default()
}

fn visit(id: &str, status: &str, (day, from, to): (Date, &str, &str), who: &[&str]) -> Value {
    let participant: Vec<Value> = who
        .iter()
        .map(|actor| json!({"actor": {"reference": actor}, "required": "required", "status": "accepted"}))
        .collect();
    json!({"resourceType": "Appointment", "id": id, "status": status,
        "serviceType": [{"text": "Office visit"}],
        "start": at(day, from), "end": at(day, to), "participant": participant})
}

/// The Monday after `today`.
fn next_monday(today: Date) -> Date {
    let mut day = today.checked_add(1.day()).unwrap_or(today);
    while day.weekday() != Weekday::Monday {
        day = day.checked_add(1.day()).unwrap_or(day);
    }
    day
}

/// The practice, with its appointments around the week after `today`.
fn practice(today: Date) -> Vec<Value> {
    let monday = next_monday(today);
    let day = |offset: i64| monday.checked_add(offset.days()).unwrap_or(monday);
    let mut resources = people_and_places();
    resources.extend(schedules());
    // Dr Lopez is away next Wednesday.
    resources.push(
        json!({"resourceType": "Slot", "id": "ana-lopez-holiday", "status": "busy-unavailable",
        "schedule": {"reference": "Schedule/ana-lopez-schedule"}, "comment": "Holiday",
        "start": at(day(2), "00:00"), "end": at(day(3), "00:00")}),
    );
    resources.extend(appointments(&day));
    resources
}

/// The organization, clinicians, rooms, visit types and patients.
fn people_and_places() -> Vec<Value> {
    let mut resources = vec![
        json!({"resourceType": "Organization", "id": "maple-street", "name": "Maple Street Family Practice"}),
        json!({"resourceType": "Practitioner", "id": "ana-lopez", "name": name("Lopez", "Ana")}),
        json!({"resourceType": "Practitioner", "id": "ben-okafor", "name": name("Okafor", "Ben")}),
        json!({"resourceType": "Practitioner", "id": "chen-wei", "name": name("Wei", "Chen")}),
        json!({"resourceType": "Location", "id": "room-1", "name": "Exam room 1"}),
        json!({"resourceType": "Location", "id": "room-2", "name": "Exam room 2"}),
        service("checkup", "Check-up", 30),
        service("new-patient", "New patient visit", 60),
        service("telehealth", "Telehealth follow-up", 15),
    ];
    let patients = [
        ("p-amy", "Rivera", "Amy", "1984-02-11"),
        ("p-omar", "Haddad", "Omar", "1979-07-30"),
        ("p-june", "Park", "June", "1992-11-05"),
        ("p-liam", "Novak", "Liam", "2015-04-21"),
        ("p-rosa", "Delgado", "Rosa", "1958-09-14"),
        ("p-sam", "Turner", "Sam", "2001-01-09"),
    ];
    for (id, family, given, born) in patients {
        resources.push(json!({"resourceType": "Patient", "id": id, "name": name(family, given), "birthDate": born,
            "telecom": [{"system": "phone", "value": "+1-555-0100", "use": "mobile"}]}));
    }
    resources
}

/// The clinicians' (mornings and afternoons, an hour for lunch) and rooms' Schedules.
fn schedules() -> Vec<Value> {
    let weekdays = ["mon", "tue", "wed", "thu", "fri"];
    let mut resources = Vec::new();
    for id in ["ana-lopez", "ben-okafor", "chen-wei"] {
        let windows = vec![
            hours(&weekdays, "09:00:00", 3),
            hours(&weekdays, "13:00:00", 4),
        ];
        resources.push(schedule(
            &format!("{id}-schedule"),
            &format!("Practitioner/{id}"),
            windows,
        ));
    }
    for room in ["room-1", "room-2"] {
        resources.push(schedule(
            &format!("{room}-schedule"),
            &format!("Location/{room}"),
            vec![hours(&weekdays, "08:00:00", 10)],
        ));
    }
    resources
}

/// Last week's appointments (what happened), next week's (what is planned), a waitlist
/// entry; `day(n)`: n days after next Monday.
fn appointments(day: &dyn Fn(i64) -> Date) -> Vec<Value> {
    let (ana, ben, chen) = (
        "Practitioner/ana-lopez",
        "Practitioner/ben-okafor",
        "Practitioner/chen-wei",
    );
    let (room1, room2) = ("Location/room-1", "Location/room-2");
    vec![
        visit(
            "demo-fulfilled",
            "fulfilled",
            (day(-7), "09:00", "09:30"),
            &[ana, room1, "Patient/p-amy"],
        ),
        visit(
            "demo-noshow",
            "noshow",
            (day(-7), "10:00", "10:30"),
            &[ben, room2, "Patient/p-omar"],
        ),
        visit(
            "demo-cancelled",
            "cancelled",
            (day(-6), "11:00", "11:30"),
            &[chen, "Patient/p-june"],
        ),
        visit(
            "demo-arrived",
            "arrived",
            (day(-5), "09:00", "09:30"),
            &[ana, room1, "Patient/p-rosa"],
        ),
        visit(
            "demo-checked-in",
            "checked-in",
            (day(-5), "10:00", "10:30"),
            &[ben, room2, "Patient/p-sam"],
        ),
        visit(
            "demo-error",
            "entered-in-error",
            (day(-4), "14:00", "14:30"),
            &[chen, "Patient/p-liam"],
        ),
        visit(
            "demo-booked",
            "booked",
            (day(0), "09:00", "09:30"),
            &[ana, room1, "Patient/p-amy"],
        ),
        visit(
            "demo-booked-2",
            "booked",
            (day(0), "09:30", "10:30"),
            &[ben, room2, "Patient/p-june"],
        ),
        visit(
            "demo-pending",
            "pending",
            (day(1), "13:00", "13:30"),
            &[chen, "Patient/p-omar"],
        ),
        visit(
            "demo-proposed",
            "proposed",
            (day(3), "15:00", "15:30"),
            &[ben, "Patient/p-rosa"],
        ),
        json!({"resourceType": "Appointment", "id": "demo-waitlist", "status": "waitlist",
            "serviceType": [{"text": "Check-up"}],
            "requestedPeriod": [{"start": at(day(0), "08:00"), "end": at(day(11), "18:00")}],
            "participant": [{"actor": {"reference": "Patient/p-liam"}, "status": "needs-action"},
                {"actor": {"reference": ana}, "required": "required", "status": "needs-action"}]}),
    ]
}

async fn put(store: &Store, tenant: TenantId, resource: Value) -> Result<(), String> {
    let resource_type = resource["resourceType"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let id = resource["id"].as_str().unwrap_or_default().to_owned();
    crate::fhir::json::check_resource(&resource, &resource_type)
        .map_err(|e| format!("{resource_type}/{id}: {e:?}"))?;
    let op = WriteOp::Update {
        index: index::extract(&resource_type, &resource),
        resource_type: resource_type.clone(),
        id: id.clone(),
        resource,
        if_match: None,
        method: Method::Put,
    };
    store
        .write(tenant, op)
        .await
        .map(|_| ())
        .map_err(|e| format!("{resource_type}/{id}: {e:?}"))
}

pub async fn run(config: DemoConfig) -> Result<(), String> {
    let (store, tenant) = open_tenant(&config.database, &config.tenant).await?;
    let today = jiff::Timestamp::from_microsecond(crate::clock::now_micros())
        .map_err(|e| e.to_string())?
        .in_tz(ZONE)
        .map_err(|e| e.to_string())?
        .date();
    let resources = practice(today);
    let count = resources.len();
    for resource in resources {
        put(&store, tenant, resource).await?;
    }
    println!(
        "loaded the Maple Street practice into tenant '{}': {count} resources",
        config.tenant
    );
    println!(
        "try: GET {{base}}/Appointment/$find?practitioner=Practitioner/ana-lopez&location=Location/room-1&start=<next Monday>&end=<next Saturday>"
    );
    Ok(())
}
