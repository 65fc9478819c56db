//! `Appointment/{id}/$cancel`: cancelled, with the reason given (text or a
//! CodeableConcept), which frees its time for anyone (its claims go in the same write).
//! A fulfilled, no-show, cancelled or entered-in-error appointment cannot be cancelled
//! (409).

use serde_json::{Value, json};

use super::appointment_book::change;
use super::appointment_find::{inputs, one};
use super::{Operation, Param, Target};
use crate::app::App;
use crate::error::FhirError;
use crate::rest::request::FhirRequest;
use crate::rest::response::FhirResponse;
use crate::workflows::scheduling::booking;

pub const OPERATION: Operation = Operation {
    name: "cancel",
    id: "Appointment-cancel",
    url: "urn:fhir-server:OperationDefinition/Appointment-cancel",
    title: "Cancel an appointment",
    description: "Cancels the appointment with a reason, which frees its time.",
    types: &["Appointment"],
    system: false,
    type_level: false,
    instance: true,
    affects_state: true,
    parameters: &[
        Param {
            name: "reason",
            use_: "in",
            min: 0,
            max: "1",
            type_: "string",
            documentation: "Why (text, or valueCodeableConcept)",
        },
        super::appointment_hold::RETURN,
    ],
    handler: |app, request, target| Box::pin(handle(app, request, target)),
};

async fn handle(
    app: &App,
    request: &FhirRequest,
    target: Target<'_>,
) -> Result<FhirResponse, FhirError> {
    let id = target
        .id()
        .ok_or_else(|| FhirError::bad_request("$cancel names one appointment"))?;
    let reason = reason_of(request)?;
    change(app, request, id, |appointment| {
        booking::cancelled(appointment, reason.clone())
    })
    .await
}

/// The reason as a CodeableConcept: a `valueCodeableConcept` part as it is, text as `text`.
fn reason_of(request: &FhirRequest) -> Result<Option<Value>, FhirError> {
    if !request.body.is_empty() {
        let body = request.parse_body()?;
        let coded = body["parameter"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|part| part["name"] == "reason")
            .and_then(|part| part.get("valueCodeableConcept").cloned());
        if coded.is_some() {
            return Ok(coded);
        }
    }
    Ok(one(&inputs(request)?, "reason").map(|text| json!({"text": text})))
}
