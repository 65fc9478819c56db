//! `Appointment/$book`: books an opening (a proposed Appointment from `$find`, part
//! `appointment`) or a hold (`appointment-id`, or `Appointment/{id}/$book`) in one write:
//! booked, its participants accepted. 409 naming who clashed when the time is taken, on
//! this or any other server process: the store decides (`store::claims`).

use serde_json::Value;

use super::appointment_find::own_patient;
use super::appointment_hold::{APPOINTMENT, RETURN, appointment_part, checked_opening, create};
use super::{Operation, Param, Target, input, inputs};
use crate::app::App;
use crate::error::FhirError;
use crate::interaction::update::{Rewritten, rewrite};
use crate::rest::request::FhirRequest;
use crate::rest::response::FhirResponse;
use crate::store::{Method, Outcome, Version};
use crate::workflows::scheduling::booking::{self, confine_to_patient};

pub const OPERATION: Operation = Operation {
    name: "book",
    id: "Appointment-book",
    url: "urn:fhir-server:OperationDefinition/Appointment-book",
    title: "Book an appointment",
    description: "Books an opening (the part 'appointment', a proposed Appointment from $find) or a held Appointment (the part 'appointment-id', or invoked on it): booked, participants accepted. 409 naming who clashed when the time is taken.",
    types: &["Appointment"],
    system: false,
    type_level: true,
    instance: true,
    affects_state: true,
    parameters: &[
        APPOINTMENT,
        Param {
            name: "appointment-id",
            use_: "in",
            min: 0,
            max: "1",
            type_: "string",
            documentation: "A held (pending) Appointment to book",
        },
        RETURN,
    ],
    handler: |app, request, target| Box::pin(handle(app, request, target)),
};

async fn handle(
    app: &App,
    request: &FhirRequest,
    target: Target<'_>,
) -> Result<FhirResponse, FhirError> {
    let held = match target.id() {
        Some(id) => Some(id.to_owned()),
        None => input(&inputs(request)?, "appointment-id")
            .map(|id| id.strip_prefix("Appointment/").unwrap_or(id).to_owned()),
    };
    if let Some(id) = held {
        return change(app, request, &id, booking::booked).await;
    }
    let proposed = appointment_part(request)?.ok_or_else(|| {
        FhirError::bad_request("$book needs the part 'appointment' or 'appointment-id'")
            .at("Parameters.parameter")
    })?;
    let proposed = checked_opening(app, request, proposed).await?;
    create(app, request, booking::booked(proposed)?).await
}

/// Rewrites the stored `Appointment/{id}` by `next` (for the token's own patient only):
/// 200 with the new version.
pub async fn change(
    app: &App,
    request: &FhirRequest,
    id: &str,
    next: impl Fn(Value) -> Result<Value, FhirError>,
) -> Result<FhirResponse, FhirError> {
    let own = own_patient(request);
    let rewritten = rewrite(
        app,
        request,
        ("Appointment", id),
        (None, Method::Put),
        |current| {
            let value: Value = serde_json::from_slice(current.body.as_deref().unwrap_or_default())
                .map_err(|e| FhirError::internal(e.to_string()))?;
            if let Some(own) = &own {
                confine_to_patient(&value, own)?;
            }
            next(value).map(Some)
        },
    )
    .await?;
    let version: Version = match rewritten {
        Rewritten::Written(Outcome::Updated(version) | Outcome::Created(version))
        | Rewritten::Unchanged(version) => version,
        Rewritten::Written(_) => return Err(FhirError::internal("an update answered otherwise")),
    };
    Ok(FhirResponse::written(
        request,
        axum::http::StatusCode::OK,
        &version,
    ))
}

/// `Appointment/{id}/$arrive`, `$check-in`, `$complete`, `$no-show`: the appointment moved
/// to `status` (409 when the state machine forbids the move).
pub async fn move_to(
    app: &App,
    request: &FhirRequest,
    target: Target<'_>,
    status: &'static str,
) -> Result<FhirResponse, FhirError> {
    let id = target
        .id()
        .ok_or_else(|| FhirError::bad_request("This operation names one appointment"))?;
    change(app, request, id, |appointment| {
        Ok(booking::moved_to(appointment, status))
    })
    .await
}

/// The definition of an instance operation that moves an appointment to another status.
pub const fn status_operation(
    name: &'static str,
    id: &'static str,
    url: &'static str,
    title: &'static str,
    description: &'static str,
    handler: super::Handler,
) -> Operation {
    Operation {
        name,
        id,
        url,
        title,
        description,
        types: &["Appointment"],
        system: false,
        type_level: false,
        instance: true,
        affects_state: true,
        parameters: &[super::appointment_hold::RETURN],
        handler,
    }
}
