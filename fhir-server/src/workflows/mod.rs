//! Practice workflows as rules over FHIR data: scheduling (availability, openings) and
//! messaging (reminders). The operations that expose them are in `ops`.

pub mod messaging;
pub mod records;
pub mod scheduling;
