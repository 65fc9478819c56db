//! `Appointment/{id}/$check-in`: The patient is checked in (booked or arrived → checked-in).
//! Whether the move is allowed is the state machine's to say (`fhir::appointment_status`),
//! as it is for a plain update.

use super::Operation;
use super::appointment_book::{move_to, status_operation};

pub const OPERATION: Operation = status_operation(
    "check-in",
    "Appointment-check-in",
    "urn:fhir-server:OperationDefinition/Appointment-check-in",
    "The patient is checked in",
    "The patient is checked in (booked or arrived → checked-in).",
    |app, request, target| Box::pin(move_to(app, request, target, "checked-in")),
);
