//! `Appointment/$book-series`: books a visit again every N days (weekly: 7) for a number of
//! occurrences or until a date, at the same local time in the first Schedule's zone, in
//! one call. Each occurrence is booked on its own (a clash refuses that one, not the
//! others); the answer lists each occurrence, booked (with its Appointment) or not (with
//! the reason). Every occurrence after the first booked one names it by the R5
//! cross-version extension `originatingAppointment`; `$cancel` with `rest-of-series` cancels
//! an occurrence and the later ones.

use jiff::tz::TimeZone;
use serde_json::{Value, json};

use super::appointment_find::SCHEDULES_EXTENSION;
use super::appointment_hold::{APPOINTMENT, appointment_part, checked_opening, create};
use super::{Operation, Param, input as given, inputs, invalid_input as invalid};
use crate::app::App;
use crate::error::FhirError;
use crate::rest::format::Payload;
use crate::rest::request::FhirRequest;
use crate::rest::response::FhirResponse;
use crate::workflows::scheduling::availability::Parameters;
use crate::workflows::scheduling::booking::{self, visit_of};
use crate::workflows::scheduling::series::{self, Repeat};

/// The R5 cross-version extension naming the first appointment of a series.
pub const ORIGINATING_APPOINTMENT: &str =
    "http://hl7.org/fhir/5.0/StructureDefinition/extension-Appointment.originatingAppointment";

const fn input(name: &'static str, type_: &'static str, documentation: &'static str) -> Param {
    Param {
        name,
        use_: "in",
        min: 0,
        max: "1",
        type_,
        documentation,
    }
}

pub const OPERATION: Operation = Operation {
    name: "book-series",
    id: "Appointment-book-series",
    url: "urn:fhir-server:OperationDefinition/Appointment-book-series",
    title: "Book a recurring series",
    description: "Books the opening (the part 'appointment') and its repeats every every-days days, count times or until a date, at the same local time; answers each occurrence, booked or refused with the reason.",
    types: &["Appointment"],
    system: false,
    type_level: true,
    instance: false,
    affects_state: true,
    parameters: &[
        APPOINTMENT,
        input(
            "every-days",
            "integer",
            "Days between occurrences (7: weekly; default 7)",
        ),
        input(
            "count",
            "integer",
            "How many occurrences, the first included (at most 104)",
        ),
        input("until", "dateTime", "No occurrence after this time"),
        Param {
            name: "occurrence",
            use_: "out",
            min: 0,
            max: "*",
            type_: "",
            documentation: "Each occurrence: start, outcome (booked or refused), appointment or reason",
        },
    ],
    handler: |app, request, _| Box::pin(handle(app, request)),
};

fn repeat_of(request: &FhirRequest) -> Result<Repeat, FhirError> {
    let inputs = inputs(request)?;
    let number = |name: &str| -> Result<Option<i64>, FhirError> {
        given(&inputs, name)
            .map(|text| {
                text.parse::<i64>()
                    .map_err(|_| invalid(name, format!("{name} is a whole number")))
            })
            .transpose()
    };
    let until = match given(&inputs, "until") {
        Some(text) => Some(
            crate::resource::parse_instant(text)
                .or_else(|| crate::resource::parse_instant(&format!("{text}T23:59:59Z")))
                .ok_or_else(|| invalid("until", "until is a dateTime or a date"))?,
        ),
        None => None,
    };
    let count = match number("count")? {
        Some(count) => {
            Some(u32::try_from(count).map_err(|_| invalid("count", "count is 1 to 104"))?)
        }
        None => None,
    };
    Ok(Repeat {
        every_days: number("every-days")?.unwrap_or(7),
        count,
        until,
    })
}

/// The zone of the first Schedule the opening names (UTC when it names none).
async fn zone_of(app: &App, request: &FhirRequest, opening: &Value) -> Result<TimeZone, FhirError> {
    let named = opening["extension"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|e| e["url"] == SCHEDULES_EXTENSION)
        .and_then(|e| e["valueReference"]["reference"].as_str());
    let Some(reference) = named else {
        return Ok(TimeZone::UTC);
    };
    let id = reference.strip_prefix("Schedule/").unwrap_or(reference);
    let version = app.store.read(request.tenant, "Schedule", id).await?;
    let body = version
        .and_then(|v| v.body)
        .ok_or_else(|| invalid("appointment", format!("there is no {reference}")))?;
    let schedule: Value =
        serde_json::from_slice(&body).map_err(|e| FhirError::internal(e.to_string()))?;
    Ok(Parameters::of(&schedule, None, None)?.time_zone)
}

async fn handle(app: &App, request: &FhirRequest) -> Result<FhirResponse, FhirError> {
    let first = appointment_part(request)?.ok_or_else(|| {
        invalid(
            "appointment",
            "$book-series needs the first opening as the part 'appointment'",
        )
    })?;
    let repeat = repeat_of(request)?;
    let zone = zone_of(app, request, &first).await?;
    let spans = series::occurrences(visit_of(&first)?, repeat, &zone)?;
    let format = |at: i64| {
        jiff::Timestamp::from_microsecond(at)
            .map(|t| {
                t.to_zoned(zone.clone())
                    .strftime("%Y-%m-%dT%H:%M:%S%:z")
                    .to_string()
            })
            .unwrap_or_default()
    };
    let mut originating: Option<String> = None;
    let mut parts = Vec::with_capacity(spans.len());
    for span in spans {
        let mut occurrence = first.clone();
        occurrence["start"] = json!(format(span.start));
        occurrence["end"] = json!(format(span.end));
        if let Some(origin) = &originating {
            let mut extensions = occurrence["extension"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            extensions.push(json!({"url": ORIGINATING_APPOINTMENT, "valueReference": {"reference": format!("Appointment/{origin}")}}));
            occurrence["extension"] = Value::Array(extensions);
        }
        let booked = book_one(app, request, occurrence).await;
        let mut part = vec![json!({"name": "start", "valueDateTime": format(span.start)})];
        match booked {
            Ok(id) => {
                part.push(json!({"name": "outcome", "valueCode": "booked"}));
                part.push(json!({"name": "appointment", "valueReference": {"reference": format!("Appointment/{id}")}}));
                originating.get_or_insert(id);
            }
            Err(error) => {
                part.push(json!({"name": "outcome", "valueCode": "refused"}));
                let reason = error
                    .issues
                    .first()
                    .map(|i| i.diagnostics.clone())
                    .unwrap_or_default();
                part.push(json!({"name": "reason", "valueString": reason}));
            }
        }
        parts.push(json!({"name": "occurrence", "part": part}));
    }
    let answer = json!({"resourceType": "Parameters", "parameter": parts});
    Ok(FhirResponse::new(
        axum::http::StatusCode::OK,
        Some(Payload::Value(answer)),
    ))
}

/// Books one occurrence: its id.
async fn book_one(
    app: &App,
    request: &FhirRequest,
    occurrence: Value,
) -> Result<String, FhirError> {
    let opening = checked_opening(app, request, occurrence).await?;
    let written = create(app, request, booking::booked(opening)?).await?;
    written
        .headers
        .iter()
        .find(|(name, _)| name.as_str() == "location")
        .and_then(|(_, value)| value.to_str().ok())
        .and_then(|location| location.split("/Appointment/").nth(1))
        .and_then(|rest| rest.split('/').next())
        .map(str::to_owned)
        .ok_or_else(|| FhirError::internal("the booking has no location"))
}
