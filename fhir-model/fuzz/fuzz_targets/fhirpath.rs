//! Any text as a FHIRPath expression, parsed and evaluated (bounded) against a small
//! resource: it may be refused, never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(expression) = fhir_model::fhirpath::Expression::parse(text) else {
        return;
    };
    let resource = serde_json::json!({
        "resourceType": "Patient", "id": "p1", "active": true,
        "name": [{"family": "Quill", "given": ["Ada", "B"]}],
        "birthDate": "1980-02-29",
        "telecom": [{"system": "phone", "value": "+1 555"}],
        "extension": [{"url": "x", "valueInteger": 3}]
    });
    let _ = expression.evaluate_bounded(&resource, 100_000);
});
