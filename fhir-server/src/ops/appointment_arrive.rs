//! `Appointment/{id}/$arrive`: The patient is here (booked → arrived).
//! Whether the move is allowed is the state machine's to say (`fhir::appointment_status`),
//! as it is for a plain update.

use super::Operation;
use super::appointment_book::{move_to, status_operation};

pub const OPERATION: Operation = status_operation(
    "arrive",
    "Appointment-arrive",
    "urn:fhir-server:OperationDefinition/Appointment-arrive",
    "The patient has arrived",
    "The patient is here (booked → arrived).",
    |app, request, target| Box::pin(move_to(app, request, target, "arrived")),
);
