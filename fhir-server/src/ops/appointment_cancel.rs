//! `Appointment/{id}/$cancel`: cancelled, with the reason given (text or a
//! CodeableConcept), which frees its time for anyone (its claims go in the same write).
//! A fulfilled, no-show, cancelled or entered-in-error appointment cannot be cancelled
//! (409). With `rest-of-series` true, the later occurrences of its series (see
//! `$book-series`) are cancelled too.

use serde_json::{Value, json};

use super::appointment_book::change;
use super::{Operation, Param, Target, input, inputs};
use crate::app::App;
use crate::error::FhirError;
use crate::rest::request::FhirRequest;
use crate::rest::response::FhirResponse;
use crate::workflows::scheduling::booking;
use crate::workflows::scheduling::lookup;

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
        Param {
            name: "rest-of-series",
            use_: "in",
            min: 0,
            max: "1",
            type_: "boolean",
            documentation: "Cancel the later occurrences of its series too",
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
    let answer = change(app, request, id, |appointment| {
        booking::cancelled(appointment, reason.clone())
    })
    .await?;
    if input(&inputs(request)?, "rest-of-series") == Some("true") {
        for later in later_occurrences(app, request, id).await? {
            change(app, request, &later, |appointment| {
                booking::cancelled(appointment, reason.clone())
            })
            .await?;
        }
    }
    Ok(answer)
}

/// The ids of the occurrences of the series of `Appointment/{id}` that start after it and
/// still hold time.
async fn later_occurrences(
    app: &App,
    request: &FhirRequest,
    id: &str,
) -> Result<Vec<String>, FhirError> {
    let Some(this) =
        crate::workflows::records::read(app, request.tenant, "Appointment", id).await?
    else {
        return Ok(Vec::new());
    };
    let id = this["id"].as_str().unwrap_or_default();
    let series = originating(&this).unwrap_or_else(|| format!("Appointment/{id}"));
    let (Some(actor), Some(start)) = (
        this["participant"][0]["actor"]["reference"].as_str(),
        this["start"].as_str(),
    ) else {
        return Ok(Vec::new());
    };
    let params = vec![
        ("actor".to_owned(), actor.to_owned()),
        ("date".to_owned(), format!("gt{start}")),
        ("status".to_owned(), crate::index::claims::HOLDING.join(",")),
    ];
    let found = lookup::all(app, request.tenant, "Appointment", &params).await?;
    Ok(found
        .iter()
        .filter(|a| originating(a).as_deref() == Some(series.as_str()))
        .filter_map(|a| a["id"].as_str().map(str::to_owned))
        .collect())
}

/// The series an occurrence belongs to (`Appointment/id` of its first), if it names one.
fn originating(appointment: &Value) -> Option<String> {
    appointment["extension"]
        .as_array()?
        .iter()
        .find(|e| e["url"] == super::appointment_book_series::ORIGINATING_APPOINTMENT)
        .and_then(|e| e["valueReference"]["reference"].as_str())
        .map(str::to_owned)
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
    Ok(input(&inputs(request)?, "reason").map(|text| json!({"text": text})))
}
