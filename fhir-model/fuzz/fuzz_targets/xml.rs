//! Any text through the XML resource reader and the validator: each may refuse, none may
//! panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(resource) = fhir_model::xml::xml_to_json(text) {
        let _ = fhir_model::validate::validate_resource(&resource);
        let _ = fhir_model::xml::json_to_xml(&resource, true);
    }
});
