//! Any text as a search's query string, on a few types: parsed (it may be refused with an
//! OperationOutcome) and, when it parses, planned into SQL; neither may panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

use fhir_server::search::Query;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let params = fhir_server::fhir::query::parse_query(text);
    for resource_type in ["Patient", "Appointment", "Observation", "Slot"] {
        for strict in [false, true] {
            if let Ok(query) = Query::parse(resource_type, &params, strict) {
                let tenant = fhir_server::ids::TenantId::from_stored(1);
                let _ = fhir_server::search::sql::select_page(tenant, &query, 10);
                let _ = fhir_server::search::sql::count(tenant, &query);
            }
        }
    }
});
