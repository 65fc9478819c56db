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
    |app, request, target| Box::pin(move_to(app, request, target, "noshow")),
);
