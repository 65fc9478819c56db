//! `Appointment/$hold`: an opening (a proposed Appointment, as `$find` offers it) held for
//! `--hold-seconds` (`FHIR_HOLD_SECONDS`, 5 minutes by default): written as a pending
//! Appointment whose participants are tentative, with the hold's end on it. Until then the
//! time is taken (409 for anyone else, on any write path); after it the hold claims
//! nothing and the time is simply free: a time comparison, no timer. `$book` turns it into
//! a booking.

use axum::http::StatusCode;
use serde_json::Value;

use super::appointment_find::{SCHEDULES_EXTENSION, own_patient};
use super::{Operation, Param};
use crate::app::App;
use crate::error::FhirError;
use crate::fhir::json::check_resource;
use crate::index;
use crate::rest::request::FhirRequest;
use crate::rest::response::FhirResponse;
use crate::store::{Outcome, WriteOp};
use crate::workflows::scheduling::booking::{self, confine_to_patient, visit_of};
use crate::workflows::scheduling::openings::{self, Ask};

/// The `appointment` input: a proposed Appointment.
pub const APPOINTMENT: Param = Param {
    name: "appointment",
    use_: "in",
    min: 0,
    max: "1",
    type_: "Appointment",
    documentation: "The opening, as the proposed Appointment $find answered",
};

pub const RETURN: Param = Param {
    name: "return",
    use_: "out",
    min: 1,
    max: "1",
    type_: "Appointment",
    documentation: "The Appointment written",
};

pub const OPERATION: Operation = Operation {
    name: "hold",
    id: "Appointment-hold",
    url: "urn:fhir-server:OperationDefinition/Appointment-hold",
    title: "Hold an appointment opening",
    description: "Holds an opening (a proposed Appointment from $find) for FHIR_HOLD_SECONDS: a pending Appointment that takes the time until then. 409 when the time is not free.",
    types: &["Appointment"],
    system: false,
    type_level: true,
    instance: false,
    affects_state: true,
    parameters: &[APPOINTMENT, RETURN],
    handler: |app, request, _| Box::pin(handle(app, request)),
};

async fn handle(app: &App, request: &FhirRequest) -> Result<FhirResponse, FhirError> {
    let proposed = appointment_part(request)?
        .ok_or_else(|| missing("$hold needs the opening as the part 'appointment'"))?;
    let proposed = checked_opening(app, request, proposed).await?;
    let expires = crate::resource::format_instant(
        crate::clock::now_micros() + app.config.hold_seconds.max(1) * 1_000_000,
    );
    create(app, request, booking::held(proposed, &expires)?).await
}

fn missing(diagnostics: &str) -> FhirError {
    FhirError::bad_request(diagnostics).at("Parameters.parameter.where(name = 'appointment')")
}

/// The `appointment` part of a Parameters body (its `resource`), if there is one.
pub fn appointment_part(request: &FhirRequest) -> Result<Option<Value>, FhirError> {
    if request.body.is_empty() {
        return Ok(None);
    }
    let body = request.parse_body()?;
    check_resource(&body, "Parameters")?;
    let part = body["parameter"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|part| part["name"] == "appointment");
    match part {
        Some(part) => {
            let resource = part
                .get("resource")
                .cloned()
                .ok_or_else(|| missing("The part 'appointment' carries an Appointment resource"))?;
            check_resource(&resource, "Appointment")
                .map_err(|e| e.at("Parameters.parameter.where(name = 'appointment').resource"))?;
            Ok(Some(resource))
        }
        None => Ok(None),
    }
}

/// A new opening to hold or book: the token's own patient's, with a start and an end, and
/// still an opening of every Schedule it names (its hours; taken time is refused by the
/// store in any case).
pub async fn checked_opening(
    app: &App,
    request: &FhirRequest,
    mut proposed: Value,
) -> Result<Value, FhirError> {
    if let Some(own) = own_patient(request) {
        confine_to_patient(&proposed, &own)?;
    }
    let visit = visit_of(&proposed)?;
    let schedules = schedules_named(app, request, &proposed).await?;
    if !schedules.is_empty() {
        let ask = Ask {
            within: visit,
            schedules,
            service: None,
            patient: None,
            count: 1,
            not_before: crate::clock::now_micros(),
        };
        let (found, _) = openings::find(app, request.tenant, ask).await?;
        if found.first() != Some(&visit) {
            return Err(FhirError::new(
                StatusCode::CONFLICT,
                "conflict",
                "The time is not an opening of the Schedules named (outside their hours, in the past, or taken)",
            ));
        }
    }
    if let Some(object) = proposed.as_object_mut() {
        object.shift_remove("id");
    }
    Ok(proposed)
}

/// The Schedules an opening names (the extension `$find` puts on it).
async fn schedules_named(
    app: &App,
    request: &FhirRequest,
    appointment: &Value,
) -> Result<Vec<(String, Value)>, FhirError> {
    let mut schedules = Vec::new();
    for extension in appointment["extension"].as_array().into_iter().flatten() {
        if extension["url"] != SCHEDULES_EXTENSION {
            continue;
        }
        let reference = extension["valueReference"]["reference"]
            .as_str()
            .unwrap_or_default();
        let id = reference.strip_prefix("Schedule/").unwrap_or(reference);
        let version = app.store.read(request.tenant, "Schedule", id).await?;
        let body = version.and_then(|v| v.body).ok_or_else(|| {
            FhirError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "business-rule",
                format!("The opening names {reference}, which does not exist"),
            )
            .at("Appointment.extension")
        })?;
        let schedule: Value =
            serde_json::from_slice(&body).map_err(|e| FhirError::internal(e.to_string()))?;
        schedules.push((id.to_owned(), schedule));
    }
    Ok(schedules)
}

/// Writes a new Appointment: 201 with it.
pub async fn create(
    app: &App,
    request: &FhirRequest,
    appointment: Value,
) -> Result<FhirResponse, FhirError> {
    let index = index::extract("Appointment", &appointment);
    let op = WriteOp::Create {
        resource_type: "Appointment".into(),
        resource: appointment,
        index,
        if_none_exist: None,
    };
    match app.store.write(request.tenant, op).await? {
        Outcome::Created(version) => Ok(FhirResponse::written(
            request,
            StatusCode::CREATED,
            &version,
        )),
        _ => Err(FhirError::internal("a create answered otherwise")),
    }
}
