//! Building Bundles (searchset, history): entries from stored versions, and paging links.
//!
//! A Bundle's resources are embedded as they are stored: in JSON, their bytes are copied
//! into the answer, never parsed and written again (a page of 50 Patients is about 75 KB
//! of JSON that would otherwise be parsed and serialized once per request). Only XML,
//! `_pretty` and `_summary`/`_elements` need them as values.

use bytes::Bytes;
use serde_json::{Map, Value, json};

use crate::error::FhirError;
use crate::rest::request::FhirRequest;
use crate::store::Version;

/// A Bundle: its own elements, and its entries.
#[derive(Debug, Clone)]
pub struct Bundle {
    /// Every element but `entry`, in order.
    pub shell: Map<String, Value>,
    pub entries: Vec<Entry>,
}

/// One entry: `fullUrl`, `resource`, and the other elements (`search`, `request`,
/// `response`) in order.
#[derive(Debug, Clone, Default)]
pub struct Entry {
    pub full_url: Option<String>,
    pub resource: Option<Resource>,
    pub rest: Map<String, Value>,
}

/// An entry's resource: stored JSON bytes, or a value built or changed here.
#[derive(Debug, Clone)]
pub enum Resource {
    Stored(Bytes),
    Value(Value),
}

impl Resource {
    /// The resource of a stored version (none for a delete).
    pub fn of(version: &Version) -> Option<Resource> {
        version.body.clone().map(Resource::Stored)
    }

    pub fn into_value(self) -> Result<Value, String> {
        match self {
            Resource::Stored(bytes) => serde_json::from_slice(&bytes)
                .map_err(|e| format!("stored resource is not JSON: {e}")),
            Resource::Value(value) => Ok(value),
        }
    }
}

impl Entry {
    /// About how many bytes the entry adds to a Bundle in JSON: what a batch's answer is
    /// measured by (see `FHIR_MAX_BUNDLE_RESPONSE_BYTES`).
    pub fn approximate_size(&self) -> usize {
        let resource = match &self.resource {
            Some(Resource::Stored(bytes)) => bytes.len(),
            Some(Resource::Value(value)) => serde_json::to_vec(value).map_or(0, |v| v.len()),
            None => 0,
        };
        let rest = serde_json::to_vec(&self.rest).map_or(0, |v| v.len());
        resource + rest + self.full_url.as_ref().map_or(0, String::len) + 32
    }
}

impl Bundle {
    /// The whole Bundle as a value (for XML and pretty JSON).
    pub fn into_value(self) -> Result<Value, String> {
        let mut bundle = self.shell;
        if !self.entries.is_empty() {
            let mut entries = Vec::with_capacity(self.entries.len());
            for entry in self.entries {
                let mut object = Map::new();
                if let Some(url) = entry.full_url {
                    object.insert("fullUrl".into(), Value::String(url));
                }
                if let Some(resource) = entry.resource {
                    object.insert("resource".into(), resource.into_value()?);
                }
                object.extend(entry.rest);
                entries.push(Value::Object(object));
            }
            bundle.insert("entry".into(), Value::Array(entries));
        }
        Ok(Value::Object(bundle))
    }

    /// Compact JSON, with stored resources copied in as they are.
    pub fn to_json(&self) -> Result<Vec<u8>, String> {
        let stored: usize = self
            .entries
            .iter()
            .map(|e| match &e.resource {
                Some(Resource::Stored(bytes)) => bytes.len() + 128,
                _ => 256,
            })
            .sum();
        let mut out = serde_json::to_vec(&self.shell).map_err(|e| e.to_string())?;
        out.reserve(stored + 16);
        if self.entries.is_empty() {
            return Ok(out);
        }
        out.pop(); // the shell's closing brace
        out.extend_from_slice(br#","entry":["#);
        for (i, entry) in self.entries.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            out.push(b'{');
            let mut first = true;
            let mut field = |out: &mut Vec<u8>, name: &str| {
                if !first {
                    out.push(b',');
                }
                first = false;
                out.push(b'"');
                out.extend_from_slice(name.as_bytes());
                out.extend_from_slice(b"\":");
            };
            if let Some(url) = &entry.full_url {
                field(&mut out, "fullUrl");
                serde_json::to_writer(&mut out, url).map_err(|e| e.to_string())?;
            }
            match &entry.resource {
                Some(Resource::Stored(bytes)) => {
                    field(&mut out, "resource");
                    out.extend_from_slice(bytes);
                }
                Some(Resource::Value(value)) => {
                    field(&mut out, "resource");
                    serde_json::to_writer(&mut out, value).map_err(|e| e.to_string())?;
                }
                None => {}
            }
            for (name, value) in &entry.rest {
                field(&mut out, name);
                serde_json::to_writer(&mut out, value).map_err(|e| e.to_string())?;
            }
            out.push(b'}');
        }
        out.extend_from_slice(b"]}");
        Ok(out)
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
    // The next page comes in the format this one was asked for (`_format`, `_pretty`).
    let format = request.params.iter().filter(|(name, _)| {
        (name == "_format" || name == "_pretty") && !params.iter().any(|(n, _)| n == name)
    });
    let all: Vec<&(String, String)> = params.iter().chain(format).collect();
    if !all.is_empty() {
        let query = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(all.iter().map(|(name, value)| (name, value)))
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
    entries: Vec<Entry>,
) -> Bundle {
    let mut shell = Map::new();
    shell.insert("resourceType".into(), json!("Bundle"));
    shell.insert("id".into(), json!(uuid::Uuid::new_v4().to_string()));
    shell.insert(
        "meta".into(),
        json!({"lastUpdated": crate::resource::format_instant(crate::resource::now_micros())}),
    );
    shell.insert("type".into(), json!(kind));
    if let Some(total) = total {
        shell.insert("total".into(), json!(total));
    }
    let links: Vec<Value> = links
        .into_iter()
        .map(|(relation, url)| json!({"relation": relation, "url": url}))
        .collect();
    if !links.is_empty() {
        shell.insert("link".into(), Value::Array(links));
    }
    Bundle { shell, entries }
}

/// An internal error for a stored resource that is not JSON.
pub fn not_json(error: String) -> FhirError {
    FhirError::internal(error)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compact_json_splices_stored_resources_as_they_are() {
        let stored = Bytes::from_static(br#"{"resourceType":"Patient","id":"p1","x":72.50}"#);
        let mut rest = Map::new();
        rest.insert("search".into(), json!({"mode": "match"}));
        let entries = vec![
            Entry {
                full_url: Some("http://h/fhir/Patient/p\"1".into()),
                resource: Some(Resource::Stored(stored.clone())),
                rest,
            },
            Entry {
                full_url: None,
                resource: Some(Resource::Value(json!({"resourceType": "Basic"}))),
                rest: Map::new(),
            },
        ];
        let bundle = bundle("searchset", Some(2), vec![("self", "u".into())], entries);
        let text = String::from_utf8(bundle.to_json().unwrap()).unwrap();
        assert!(text.contains(r#""resource":{"resourceType":"Patient","id":"p1","x":72.50}"#));
        let parsed: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(parsed, bundle.clone().into_value().unwrap());
        assert_eq!(parsed["entry"][0]["fullUrl"], "http://h/fhir/Patient/p\"1");
        assert_eq!(parsed["entry"][0]["search"]["mode"], "match");
        assert_eq!(parsed["total"], 2);
    }
}
