//! The Patient compartment of FHIR R4 (4.0.1), loaded from
//! `conformance/r4/compartment-patient.json`: for each resource type, the search
//! parameters whose reference to a patient puts a resource in that patient's compartment.

use std::collections::HashMap;
use std::sync::LazyLock;

// The data is compiled in and checked by the crate's tests: it cannot fail at run time.
#[allow(clippy::expect_used)]
static PATIENT: LazyLock<HashMap<String, Vec<String>>> = LazyLock::new(|| {
    serde_json::from_str(include_str!(
        "../../conformance/r4/compartment-patient.json"
    ))
    .expect("conformance/r4/compartment-patient.json is valid (checked by tests)")
});

/// The search parameter codes that link `resource_type` to the Patient compartment
/// (`Appointment` -> `["actor"]`); empty for types that are never in it.
pub fn patient_compartment_params(resource_type: &str) -> &'static [String] {
    PATIENT.get(resource_type).map(Vec::as_slice).unwrap_or(&[])
}

/// Every resource type that can be in a Patient compartment, with its parameters.
pub fn patient_compartment() -> &'static HashMap<String, Vec<String>> {
    &PATIENT
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Definitions;

    #[test]
    fn patient_compartment_r4() {
        assert_eq!(patient_compartment_params("Appointment"), ["actor"]);
        assert_eq!(patient_compartment_params("Encounter"), ["patient"]);
        assert_eq!(patient_compartment_params("Patient"), ["link"]);
        assert_eq!(
            patient_compartment_params("Coverage"),
            ["policy-holder", "subscriber", "beneficiary", "payor"]
        );
        assert!(patient_compartment_params("Organization").is_empty());
        assert!(patient_compartment_params("Task").is_empty());
        assert!(patient_compartment_params("Nope").is_empty());
        assert_eq!(patient_compartment().len(), 66);
        for name in patient_compartment().keys() {
            assert!(Definitions::r4().is_resource_type(name), "{name}");
        }
    }
}
