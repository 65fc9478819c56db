//! `Appointment/$find`: the openings, earliest first, as proposed Appointments in a
//! searchset Bundle, for one Schedule or several at once (a practitioner and a room: only
//! times when all are free), computed from the Schedules' availability, their Slots and
//! the appointments already holding time (`workflows::scheduling`); none is written.
//!
//! Inputs come from the URL (GET) or a Parameters body (POST). A patient's token may ask
//! only for its own patient, whose appointments then block too; the answer names no other
//! patient.

use axum::http::StatusCode;
use serde_json::{Map, Value, json};

use super::{Operation, Param, in_param, input as one, inputs, invalid_input as invalid};
use crate::app::App;
use crate::error::FhirError;
use crate::rest::bundle::{Entry, Resource, bundle};
use crate::rest::request::FhirRequest;
use crate::rest::response::FhirResponse;
use crate::workflows::scheduling::availability::Span;
use crate::workflows::scheduling::busy::{Calendar, actors};
use crate::workflows::scheduling::lookup;
use crate::workflows::scheduling::openings::{self, Ask, MOST_DAYS};

pub const OPERATION: Operation = Operation {
    name: "find",
    id: "Appointment-find",
    url: "urn:fhir-server:OperationDefinition/Appointment-find",
    title: "Find appointment openings",
    description: "The openings between start and end, earliest first, as proposed Appointments: for every Schedule named (or found for the practitioners and locations named) at once, from their SchedulingParameters availability, Slots and booked appointments; the patient's own appointments block too.",
    types: &["Appointment"],
    system: false,
    type_level: true,
    instance: false,
    affects_state: false,
    parameters: &[
        in_param("start", (1, "1"), "dateTime", "Openings from this time"),
        in_param(
            "end",
            (1, "1"),
            "dateTime",
            "Openings ending by this time (at most 62 days after start)",
        ),
        in_param(
            "schedule",
            (0, "*"),
            "string",
            "A Schedule (Schedule/id); several: only times when all are free",
        ),
        in_param(
            "practitioner",
            (0, "*"),
            "string",
            "A Practitioner whose Schedule counts (Practitioner/id)",
        ),
        in_param(
            "location",
            (0, "*"),
            "string",
            "A Location whose Schedule counts (Location/id)",
        ),
        in_param(
            "service-type",
            (0, "1"),
            "string",
            "Only Schedules of this service type (token), for practitioner and location",
        ),
        in_param(
            "specialty",
            (0, "1"),
            "string",
            "Only Schedules of this specialty (token), for practitioner and location",
        ),
        in_param(
            "service",
            (0, "1"),
            "string",
            "A HealthcareService (HealthcareService/id) whose scheduling parameters apply",
        ),
        in_param(
            "patient",
            (0, "1"),
            "string",
            "The patient (Patient/id): their own appointments block too",
        ),
        in_param(
            "_count",
            (0, "1"),
            "integer",
            "How many openings at most (default 10, at most 200)",
        ),
        Param {
            name: "return",
            use_: "out",
            min: 1,
            max: "1",
            type_: "Bundle",
            documentation: "A searchset of proposed Appointments",
        },
    ],
    handler: |app, request, _| Box::pin(handle(app, request)),
};

fn all<'a>(inputs: &'a [(String, String)], name: &'a str) -> impl Iterator<Item = &'a str> {
    inputs
        .iter()
        .filter(move |(n, _)| n == name)
        .map(|(_, v)| v.as_str())
}

/// A dateTime input as an instant: a full instant, or a date (midnight UTC).
fn time_input(inputs: &[(String, String)], name: &str) -> Result<i64, FhirError> {
    let text = one(inputs, name).ok_or_else(|| invalid(name, format!("'{name}' is required")))?;
    crate::resource::parse_instant(text)
        .or_else(|| crate::resource::parse_instant(&format!("{text}T00:00:00Z")))
        .ok_or_else(|| {
            invalid(
                name,
                format!("'{name}' is not a dateTime with a time zone, nor a date"),
            )
        })
}

/// `Type/id` or `id` of `resource_type`: the id.
fn id_of<'a>(reference: &'a str, resource_type: &str, name: &str) -> Result<&'a str, FhirError> {
    let id = reference
        .strip_prefix(resource_type)
        .and_then(|rest| rest.strip_prefix('/'))
        .unwrap_or(reference);
    if crate::ids::is_valid_id(id) {
        Ok(id)
    } else {
        Err(invalid(
            name,
            format!("'{reference}' is not a {resource_type} reference"),
        ))
    }
}

async fn handle(app: &App, request: &FhirRequest) -> Result<FhirResponse, FhirError> {
    let inputs = inputs(request)?;
    let within = Span {
        start: time_input(&inputs, "start")?,
        end: time_input(&inputs, "end")?,
    };
    if within.end <= within.start || within.end - within.start > MOST_DAYS * 86_400_000_000 {
        return Err(invalid(
            "end",
            format!("'end' must be after 'start', by at most {MOST_DAYS} days"),
        ));
    }
    let count = match one(&inputs, "_count") {
        Some(text) => text
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=200).contains(n))
            .ok_or_else(|| invalid("_count", "_count is 1 to 200"))?,
        None => 10,
    };
    let patient = patient_asked(request, &inputs)?;
    let schedules = schedules_asked(app, request, &inputs).await?;
    let service = match one(&inputs, "service") {
        Some(reference) => {
            let id = id_of(reference, "HealthcareService", "service")?;
            let resource = read(app, request, "HealthcareService", id, "service").await?;
            Some((format!("HealthcareService/{id}"), resource))
        }
        None => None,
    };
    let ask = Ask {
        within,
        schedules,
        service,
        patient: patient.clone(),
        count,
        not_before: crate::clock::now_micros(),
    };
    let (found, calendars) = openings::find(app, request.tenant, ask).await?;
    let entries = found
        .iter()
        .map(|visit| proposed(*visit, &calendars, patient.as_deref()))
        .collect::<Vec<_>>();
    let total = entries.len() as i64;
    Ok(FhirResponse::bundle(
        StatusCode::OK,
        bundle("searchset", Some(total), Vec::new(), entries),
    ))
}

/// The patient of a patient's token (`Patient/id`): what the scheduling operations
/// confine it to.
pub(super) fn own_patient(request: &FhirRequest) -> Option<String> {
    request
        .principal
        .as_deref()
        .filter(|principal| {
            principal.role.as_ref().is_some_and(|r| r.name == "patient")
                || principal.scopes.needs_patient()
        })
        .and_then(|principal| principal.patient.as_deref())
        .map(|id| format!("Patient/{id}"))
}

/// The patient asked about: for a patient's token, its own (another is refused).
fn patient_asked(
    request: &FhirRequest,
    inputs: &[(String, String)],
) -> Result<Option<String>, FhirError> {
    let asked = match one(inputs, "patient") {
        Some(reference) => Some(format!(
            "Patient/{}",
            id_of(reference, "Patient", "patient")?
        )),
        None => None,
    };
    let own = own_patient(request);
    match (own, asked) {
        (Some(own), Some(asked)) if own != asked => Err(crate::auth::enforce::forbidden(
            "A patient's token may look for openings for its own patient only",
        )
        .at("Parameters.parameter.where(name = 'patient')")),
        (Some(own), _) => Ok(Some(own)),
        (None, asked) => Ok(asked),
    }
}

async fn read(
    app: &App,
    request: &FhirRequest,
    resource_type: &str,
    id: &str,
    name: &str,
) -> Result<Value, FhirError> {
    let version = app.store.read(request.tenant, resource_type, id).await?;
    let body = version
        .and_then(|v| v.body)
        .ok_or_else(|| invalid(name, format!("there is no {resource_type}/{id}")))?;
    serde_json::from_slice(&body).map_err(|e| FhirError::internal(e.to_string()))
}

/// The Schedules named, and those of the practitioners and locations named (the first
/// active one of each that has the service type and specialty asked).
async fn schedules_asked(
    app: &App,
    request: &FhirRequest,
    inputs: &[(String, String)],
) -> Result<Vec<(String, Value)>, FhirError> {
    let mut schedules = Vec::new();
    for reference in all(inputs, "schedule") {
        let id = id_of(reference, "Schedule", "schedule")?;
        schedules.push((
            id.to_owned(),
            read(app, request, "Schedule", id, "schedule").await?,
        ));
    }
    for (name, resource_type) in [("practitioner", "Practitioner"), ("location", "Location")] {
        for reference in all(inputs, name) {
            let actor = format!("{resource_type}/{}", id_of(reference, resource_type, name)?);
            let mut params = vec![
                ("actor".to_owned(), actor.clone()),
                ("active".to_owned(), "true".to_owned()),
            ];
            for filter in ["service-type", "specialty"] {
                if let Some(value) = one(inputs, filter) {
                    params.push((filter.to_owned(), value.to_owned()));
                }
            }
            params.push(("_sort".to_owned(), "_id".to_owned()));
            let found = lookup::all(app, request.tenant, "Schedule", &params).await?;
            let schedule = found.into_iter().next().ok_or_else(|| {
                invalid(name, format!("{actor} has no active Schedule that fits"))
            })?;
            let id = schedule["id"].as_str().unwrap_or_default().to_owned();
            schedules.push((id, schedule));
        }
    }
    if schedules.is_empty() {
        return Err(invalid(
            "schedule",
            "name a schedule, practitioner or location",
        ));
    }
    if schedules.len() > 20 {
        return Err(invalid("schedule", "at most 20 Schedules at once"));
    }
    Ok(schedules)
}

/// A proposed Appointment for `visit`: every Schedule's actors, and the patient.
fn proposed(visit: Span, calendars: &[Calendar], patient: Option<&str>) -> Entry {
    let parameters = &calendars[0].parameters;
    let mut participants: Vec<Value> = calendars
        .iter()
        .flat_map(|calendar| actors(&calendar.schedule))
        .map(|actor| json!({"actor": {"reference": actor}, "required": "required", "status": "needs-action"}))
        .collect();
    if let Some(patient) = patient {
        participants.push(json!({"actor": {"reference": patient}, "required": "required", "status": "needs-action"}));
    }
    let schedules: Vec<Value> = calendars
        .iter()
        .map(|c| json!({"reference": format!("Schedule/{}", c.id)}))
        .collect();
    let appointment = json!({
        "resourceType": "Appointment",
        "status": "proposed",
        "start": parameters.format(visit.start),
        "end": parameters.format(visit.end),
        "minutesDuration": (visit.end - visit.start) / 60_000_000,
        "participant": participants,
        "extension": [{"url": SCHEDULES_EXTENSION, "valueReference": schedules[0]}],
    });
    let mut appointment = appointment;
    if let Some(extensions) = appointment["extension"].as_array_mut() {
        extensions.extend(
            schedules[1..]
                .iter()
                .map(|s| json!({"url": SCHEDULES_EXTENSION, "valueReference": s})),
        );
    }
    let mut rest = Map::new();
    rest.insert("search".into(), json!({"mode": "match"}));
    Entry {
        full_url: None,
        resource: Some(Resource::Value(appointment)),
        rest,
    }
}

/// Names a Schedule an opening was found on (what `$book` books it on).
pub const SCHEDULES_EXTENSION: &str = "urn:fhir-server:StructureDefinition/appointment-schedule";
