//! The bottom layer: pure FHIR pieces that every layer above may use and that use none
//! of them (no storage, no HTTP framework).

pub mod appointment_status;
pub mod json;
pub mod patch;
pub mod query;
