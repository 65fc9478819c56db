//! FHIR R4 (4.0.1) as data: the element facts extracted from the official definitions
//! (`conformance/r4/`), the validator and the JSON/XML codec that they drive.
//!
//! Non-generic on purpose: the server calls a few plain functions, so nothing here is
//! monomorphised (and rebuilt) in the calling crate.

pub mod compartment;
pub mod defs;
pub mod fhirpath;
pub mod fhirpath_patch;
pub mod json;
pub mod validate;
pub mod xml;

pub use defs::Definitions;
