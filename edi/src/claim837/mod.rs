//! 837P professional claims (005010X222A1): written from FHIR (`generate`) and read back
//! to FHIR (`parse`).

pub mod generate;
pub mod parse;
pub mod validate;

pub use generate::{Envelope, Problem, generate};
pub use parse::to_fhir;
pub use validate::validate;
