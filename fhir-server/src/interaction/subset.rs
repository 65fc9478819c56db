//! `_summary` and `_elements` (https://hl7.org/fhir/R4/search.html#summary,
//! https://hl7.org/fhir/R4/search.html#elements): a resource cut down to the summary
//! elements, its text, its data or the elements named, on search, read and vread alike.

use serde_json::{Map, Value, json};

use crate::error::FhirError;
use crate::rest::format::Payload;
use crate::rest::response::FhirResponse;
use crate::search::query::{Summary, parse_elements};

/// What a read asks to see: its `_summary`, and the elements `_elements` names.
pub type Subset = (Summary, Option<Vec<String>>);

/// The `_summary` and `_elements` of a read's parameters; `None` when it asks for neither.
pub fn requested(params: &[(String, String)]) -> Result<Option<Subset>, FhirError> {
    let mut summary = Summary::False;
    let mut elements = None;
    for (name, value) in params {
        match name.as_str() {
            "_summary" => summary = Summary::parse(value).map_err(FhirError::bad_request)?,
            "_elements" => elements = Some(parse_elements(value)),
            _ => {}
        }
    }
    if summary == Summary::Count {
        return Err(
            FhirError::bad_request("_summary=count applies to searches, not to a read")
                .at("_summary"),
        );
    }
    Ok((summary != Summary::False || elements.is_some()).then_some((summary, elements)))
}

/// A read's answer cut down as its parameters ask (see [`requested`]).
pub fn read_answer(
    response: FhirResponse,
    resource_type: &str,
    params: &[(String, String)],
) -> Result<FhirResponse, FhirError> {
    let Some((summary, elements)) = requested(params)? else {
        return Ok(response);
    };
    let Some(Payload::Stored(bytes)) = &response.payload else {
        return Ok(response);
    };
    let mut value: Value = serde_json::from_slice(bytes)
        .map_err(|e| FhirError::internal(format!("a stored resource is not JSON: {e}")))?;
    subset(&mut value, resource_type, summary, elements.as_deref());
    Ok(FhirResponse {
        payload: Some(Payload::Value(value)),
        ..response
    })
}

/// Applies `_summary` and `_elements` to a resource's top-level elements. The id, meta and
/// mandatory elements always stay; a subsetted resource is tagged SUBSETTED.
pub fn subset(
    resource: &mut Value,
    resource_type: &str,
    summary: Summary,
    elements: Option<&[String]>,
) {
    if summary == Summary::False && elements.is_none() {
        return;
    }
    let Some(definition) = fhir_model::Definitions::r4().type_def(resource_type) else {
        return;
    };
    let Some(object) = resource.as_object_mut() else {
        return;
    };
    let keep = |key: &str| -> bool {
        if matches!(key, "resourceType" | "id" | "meta") {
            return true;
        }
        let name = key.strip_prefix('_').unwrap_or(key);
        let Some(child) = definition.child("", name) else {
            return false;
        };
        let element = child.element;
        if element.min > 0 {
            return true;
        }
        if let Some(elements) = elements {
            return elements.iter().any(|e| e == element.name());
        }
        match summary {
            Summary::True => element.summary,
            Summary::Text => name == "text",
            Summary::Data => name != "text",
            Summary::False | Summary::Count => true,
        }
    };
    let before = object.len();
    object.retain(|key, _| keep(key));
    if object.len() < before || summary == Summary::Text {
        tag_subsetted(object);
    }
}

fn tag_subsetted(object: &mut Map<String, Value>) {
    let meta = object.entry("meta").or_insert_with(|| json!({}));
    if let Some(meta) = meta.as_object_mut() {
        let tags = meta.entry("tag").or_insert_with(|| json!([]));
        if let Some(tags) = tags.as_array_mut() {
            tags.push(json!({
                "system": "http://terminology.hl7.org/CodeSystem/v3-ObservationValue",
                "code": "SUBSETTED",
                "display": "Resource encoded in summary mode"
            }));
        }
    }
}
