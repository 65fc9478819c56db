//! Practice workflows as rules over FHIR data: scheduling (availability, openings).
//! The operations that expose them are in `ops`.

pub mod scheduling;
