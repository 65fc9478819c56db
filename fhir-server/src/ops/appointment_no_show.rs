//! `Appointment/{id}/$no-show`: The patient did not come (booked → noshow); the time stays used.
//! Whether the move is allowed is the state machine's to say (`fhir::appointment_status`),
//! as it is for a plain update.

use super::Operation;
use super::appointment_book::{move_to, status_operation};

pub const OPERATION: Operation = status_operation(
    "no-show",
    "Appointment-no-show",
    "urn:fhir-server:OperationDefinition/Appointment-no-show",
    "The patient did not come",
    "The patient did not come (booked → noshow); the time stays used.",
    |app, request, target| Box::pin(no_show(app, request, target)),
);

/// Marks the no-show, and offers what is left of its time to the waitlist.
async fn no_show(
    app: &crate::app::App,
    request: &crate::rest::request::FhirRequest,
    target: super::Target<'_>,
) -> Result<crate::rest::response::FhirResponse, crate::error::FhirError> {
    let answer = move_to(app, request, target, "noshow").await?;
    if let Some(id) = target.id() {
        super::appointment_cancel::offer_freed_time(app, request, id).await?;
    }
    Ok(answer)
}
