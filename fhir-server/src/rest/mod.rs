//! The FHIR RESTful API as the interactions and operations see it, apart from any HTTP
//! framework: a parsed request ([`request::FhirRequest`]), the answer
//! ([`response::FhirResponse`]), the formats it is encoded in, and Bundles. The router
//! above (`http`) turns HTTP into these and back; everything between works on them.

pub mod bundle;
pub mod format;
pub mod request;
pub mod response;
