//! `Appointment/{id}/$reschedule`: moves a booking to another opening (the part
//! `appointment`, a proposed Appointment from `$find`) in one database transaction
//! (`workflows::scheduling::moves`): the old one is kept, cancelled, and the new one is
//! booked with the R5 cross-version extension `previousAppointment` pointing at it. Either
//! both happen or neither (409 naming who clashed when the new time is taken).

use axum::http::StatusCode;
use serde_json::Value;

use super::appointment_find::own_patient;
use super::appointment_hold::{RETURN, appointment_part, checked_opening};
use super::{Operation, Target};
use crate::app::App;
use crate::error::FhirError;
use crate::rest::request::FhirRequest;
use crate::rest::response::FhirResponse;
use crate::workflows::scheduling::booking::{confine_to_patient, visit_of};
use crate::workflows::scheduling::moves;

pub use crate::workflows::scheduling::moves::PREVIOUS_APPOINTMENT;

pub const OPERATION: Operation = Operation {
    name: "reschedule",
    id: "Appointment-reschedule",
    url: "urn:fhir-server:OperationDefinition/Appointment-reschedule",
    title: "Reschedule an appointment",
    description: "Moves the appointment to another opening (the part 'appointment', a proposed Appointment from $find) at once: the old one cancelled, the new one booked and linked to it by previousAppointment.",
    types: &["Appointment"],
    system: false,
    type_level: false,
    instance: true,
    affects_state: true,
    parameters: &[super::appointment_hold::APPOINTMENT, RETURN],
    handler: |app, request, target| Box::pin(handle(app, request, target)),
};

async fn handle(
    app: &App,
    request: &FhirRequest,
    target: Target<'_>,
) -> Result<FhirResponse, FhirError> {
    let id = target
        .id()
        .ok_or_else(|| FhirError::bad_request("$reschedule names one appointment"))?;
    let proposed = appointment_part(request)?.ok_or_else(|| {
        FhirError::bad_request("$reschedule needs the new opening as the part 'appointment'")
            .at("Parameters.parameter.where(name = 'appointment')")
    })?;
    let current = app
        .store
        .read(request.tenant, "Appointment", id)
        .await?
        .filter(|version| !version.is_deleted())
        .ok_or_else(|| FhirError::not_found(format!("No Appointment/{id}")))?;
    let old: Value = serde_json::from_slice(current.body.as_deref().unwrap_or_default())
        .map_err(|e| FhirError::internal(e.to_string()))?;
    if let Some(own) = own_patient(request) {
        confine_to_patient(&old, &own)?;
    }
    // A move onto time the old booking holds cannot be checked against the Schedules'
    // openings (the old booking fills them); the store still refuses any clash.
    let overlaps_old = visit_of(&old)?.overlaps(visit_of(&proposed)?);
    let proposed = if overlaps_old {
        proposed
    } else {
        checked_opening(app, request, proposed).await?
    };
    let version = moves::move_to(app, request.tenant, (id, current.version), old, proposed).await?;
    Ok(FhirResponse::written(
        request,
        StatusCode::CREATED,
        &version,
    ))
}
