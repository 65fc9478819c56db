//! Any bytes through the JSON resource reader, the validator and the XML writer: each may
//! refuse, none may panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(resource) = fhir_model::json::parse(data) else {
        return;
    };
    let _ = fhir_model::validate::validate_resource(&resource);
    if let Ok(xml) = fhir_model::xml::json_to_xml(&resource, false) {
        let _ = fhir_model::xml::xml_to_json(&xml);
    }
});
