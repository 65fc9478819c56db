//! A FHIR request, as the interactions see it: tenant, base URL, path, parameters, headers
//! and body, with the checks every interaction shares.

use std::sync::Arc;

use axum::http::{HeaderMap, Method};
use bytes::Bytes;
use serde_json::Value;

use super::format::{BodyFormat, body_format};
use crate::auth::Principal;
use crate::error::FhirError;
pub use crate::fhir::json::{check_resource, parse_json};
pub use crate::fhir::query::parse_query;
use crate::store::TenantId;

pub struct FhirRequest {
    /// The tenant, resolved from its name in the URL.
    pub tenant: TenantId,
    /// The absolute base URL of this tenant's FHIR API, e.g. `http://host/t/acme/fhir`.
    pub base: String,
    pub method: Method,
    /// The path below the base, split at `/`.
    pub segments: Vec<String>,
    /// Query (and, for `_search`, form body) parameters, in order.
    pub params: Vec<(String, String)>,
    pub headers: HeaderMap,
    pub body: Bytes,
    /// Who is asking: the holder of the request's access token; `None` under `--auth
    /// none`, and for the server's own reads on behalf of an operation.
    pub principal: Option<Arc<Principal>>,
}

/// `Prefer: return=...`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Return {
    Minimal,
    Representation,
    OperationOutcome,
}

impl FhirRequest {
    /// The same request with `extra` search parameters (a scope's query constraint, the
    /// patient of a patient's token) added to its own.
    pub fn with_params(&self, extra: &[(String, String)]) -> FhirRequest {
        let mut params = self.params.clone();
        params.extend_from_slice(extra);
        FhirRequest {
            tenant: self.tenant,
            base: self.base.clone(),
            method: self.method.clone(),
            segments: self.segments.clone(),
            params,
            headers: self.headers.clone(),
            body: self.body.clone(),
            principal: self.principal.clone(),
        }
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// `Prefer: return=...`, representation when absent.
    pub fn prefer_return(&self) -> Return {
        match self.prefer("return") {
            Some("minimal") => Return::Minimal,
            Some("OperationOutcome") => Return::OperationOutcome,
            _ => Return::Representation,
        }
    }

    /// `Prefer: handling=strict`: unknown search parameters are errors.
    pub fn strict_handling(&self) -> bool {
        self.prefer("handling") == Some("strict")
    }

    fn prefer(&self, key: &str) -> Option<&str> {
        self.headers
            .get_all("prefer")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split([',', ';']))
            .filter_map(|part| part.trim().split_once('='))
            .find(|(k, _)| k.trim() == key)
            .map(|(_, v)| v.trim().trim_matches('"'))
    }

    /// `If-Match: W/"3"` as a version number; a malformed value is 400.
    pub fn if_match(&self) -> Result<Option<i64>, FhirError> {
        match self.header("if-match") {
            None => Ok(None),
            Some(value) => parse_etag(value).map(Some).ok_or_else(|| {
                FhirError::bad_request(format!(
                    "Malformed If-Match '{value}': expected W/\"<version>\""
                ))
            }),
        }
    }

    /// The body as a resource of `resource_type`: parsed (JSON or XML), checked against the
    /// R4 definitions, and its `resourceType` checked against the URL.
    pub fn resource(&self, resource_type: &str) -> Result<Value, FhirError> {
        let resource = self.parse_body()?;
        check_resource(&resource, resource_type)?;
        Ok(resource)
    }

    /// The body parsed as JSON or XML, not yet validated.
    pub fn parse_body(&self) -> Result<Value, FhirError> {
        if self.body.is_empty() {
            return Err(FhirError::bad_request(
                "The request has no body; a resource is required",
            ));
        }
        match body_format(&self.headers)? {
            BodyFormat::Json => parse_json(&self.body),
            BodyFormat::Xml => {
                let text = std::str::from_utf8(&self.body)
                    .map_err(|_| FhirError::structure("The XML body is not valid UTF-8"))?;
                fhir_model::xml::xml_to_json(text).map_err(|e| {
                    let error = FhirError::structure(format!("Invalid FHIR XML: {}", e.message));
                    match e.expression {
                        Some(expression) => error.at(expression),
                        None => error,
                    }
                })
            }
            BodyFormat::JsonPatch | BodyFormat::Form => Err(FhirError::new(
                axum::http::StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "not-supported",
                "This interaction takes a resource (application/fhir+json or application/fhir+xml)",
            )),
        }
    }
}

/// Parses an ETag (`W/"3"`, `"3"` or `3`) into a version number.
pub fn parse_etag(value: &str) -> Option<i64> {
    let value = value.trim();
    let value = value.strip_prefix("W/").unwrap_or(value);
    value.trim_matches('"').parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn etags_parse_in_every_usual_form() {
        assert_eq!(parse_etag("W/\"3\""), Some(3));
        assert_eq!(parse_etag("\"12\""), Some(12));
        assert_eq!(parse_etag("7"), Some(7));
        assert_eq!(parse_etag("W/\"x\""), None);
    }
}
