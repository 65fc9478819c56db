//! `Appointment/{id}/$complete`: The visit took place (→ fulfilled).
//! Whether the move is allowed is the state machine's to say (`fhir::appointment_status`),
//! as it is for a plain update.

use super::Operation;
use super::appointment_book::{move_to, status_operation};

pub const OPERATION: Operation = status_operation(
    "complete",
    "Appointment-complete",
    "urn:fhir-server:OperationDefinition/Appointment-complete",
    "The visit took place",
    "The visit took place (→ fulfilled).",
    |app, request, target| Box::pin(move_to(app, request, target, "fulfilled")),
);
