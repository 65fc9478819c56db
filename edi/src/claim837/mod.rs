//! 837P professional claims (005010X222A1): written from FHIR (`generate`) and read back
//! to FHIR (`parse`).

mod drug;
pub mod generate;
pub mod parse;
pub mod validate;

pub use generate::{Envelope, Problem, generate};
pub use parse::to_fhir;
pub use validate::validate;

use serde_json::Value;

/// The claim frequency code (CLM05-3) a Claim is sent with: 8 (void) when it is
/// cancelled, 7 (replacement) when it names a `prior` claim in `related`, else 1
/// (original). The server's submission rules and the 837P writer read it from here.
pub fn frequency_code(claim: &Value) -> &'static str {
    let replaces = claim["related"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|r| crate::fhir::any_code(&r["relationship"]) == Some("prior"));
    match (claim["status"].as_str(), replaces) {
        (Some("cancelled"), _) => "8",
        (_, true) => "7",
        _ => "1",
    }
}
