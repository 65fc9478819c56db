//! Building Bundles (searchset, history): entries from stored versions, and paging links.

use serde_json::{Map, Value, json};

use crate::error::FhirError;
use crate::http::request::FhirRequest;
use crate::store::Version;

/// The stored JSON of a version as a value, for embedding in a Bundle.
pub fn resource_value(version: &Version) -> Result<Option<Value>, FhirError> {
    match &version.body {
        None => Ok(None),
        Some(body) => serde_json::from_slice(body)
            .map(Some)
            .map_err(|e| FhirError::internal(format!("stored resource is not JSON: {e}"))),
    }
}

/// The absolute URL of a resource: `[base]/[type]/[id]`.
pub fn full_url(request: &FhirRequest, version: &Version) -> String {
    format!("{}/{}/{}", request.base, version.resource_type, version.id)
}

/// A link URL: `[base]/[path]` with the given parameters, URL-encoded.
pub fn link_url(request: &FhirRequest, path: &str, params: &[(String, String)]) -> String {
    let mut url = if path.is_empty() {
        request.base.clone()
    } else {
        format!("{}/{path}", request.base)
    };
    if !params.is_empty() {
        let query = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(params)
            .finish();
        url.push('?');
        url.push_str(&query);
    }
    url
}

/// A Bundle of `kind` with `total`, `links` (relation, url) and `entries`.
pub fn bundle(
    kind: &str,
    total: Option<i64>,
    links: Vec<(&str, String)>,
    entries: Vec<Value>,
) -> Value {
    let mut bundle = Map::new();
    bundle.insert("resourceType".into(), json!("Bundle"));
    bundle.insert("id".into(), json!(uuid::Uuid::new_v4().to_string()));
    bundle.insert(
        "meta".into(),
        json!({"lastUpdated": crate::resource::format_instant(crate::resource::now_micros())}),
    );
    bundle.insert("type".into(), json!(kind));
    if let Some(total) = total {
        bundle.insert("total".into(), json!(total));
    }
    let links: Vec<Value> = links
        .into_iter()
        .map(|(relation, url)| json!({"relation": relation, "url": url}))
        .collect();
    if !links.is_empty() {
        bundle.insert("link".into(), Value::Array(links));
    }
    if !entries.is_empty() {
        bundle.insert("entry".into(), Value::Array(entries));
    }
    Value::Object(bundle)
}
