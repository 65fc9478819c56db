//! What an interaction answers: status, headers and an optional payload, encoded later in
//! the negotiated format.

use axum::http::header::{ETAG, LAST_MODIFIED, LOCATION};
use axum::http::{HeaderName, HeaderValue, StatusCode};
use serde_json::Value;

use super::format::Payload;
use super::request::{FhirRequest, Return};
use crate::resource::{format_http_date, format_instant};
use crate::store::Version;

pub struct FhirResponse {
    pub status: StatusCode,
    pub headers: Vec<(HeaderName, HeaderValue)>,
    pub payload: Option<Payload>,
}

impl FhirResponse {
    pub fn new(status: StatusCode, payload: Option<Payload>) -> Self {
        FhirResponse {
            status,
            headers: Vec::new(),
            payload,
        }
    }

    pub fn value(status: StatusCode, value: Value) -> Self {
        Self::new(status, Some(Payload::Value(value)))
    }

    pub fn bundle(status: StatusCode, bundle: crate::rest::bundle::Bundle) -> Self {
        Self::new(status, Some(Payload::Bundle(Box::new(bundle))))
    }

    pub fn header(mut self, name: HeaderName, value: &str) -> Self {
        if let Ok(value) = HeaderValue::from_str(value) {
            self.headers.push((name, value));
        }
        self
    }

    /// A stored version with its ETag and Last-Modified.
    pub fn version(status: StatusCode, version: &Version) -> Self {
        let payload = version.body.clone().map(Payload::Stored);
        Self::new(status, payload)
            .header(ETAG, &etag(version.version))
            .header(LAST_MODIFIED, &format_http_date(version.last_updated))
    }

    /// The answer to a write: Location, ETag, Last-Modified, and the body that
    /// `Prefer: return` asks for.
    pub fn written(request: &FhirRequest, status: StatusCode, version: &Version) -> Self {
        let location = format!(
            "{}/{}/{}/_history/{}",
            request.base, version.resource_type, version.id, version.version
        );
        let response = Self::version(status, version).header(LOCATION, &location);
        match request.prefer_return() {
            Return::Representation => response,
            Return::Minimal => FhirResponse {
                payload: None,
                ..response
            },
            Return::OperationOutcome => FhirResponse {
                payload: Some(Payload::Value(crate::error::information(format!(
                    "{}/{} version {} stored at {}",
                    version.resource_type,
                    version.id,
                    version.version,
                    format_instant(version.last_updated)
                )))),
                ..response
            },
        }
    }
}

/// The weak ETag of a version: `W/"3"`.
pub fn etag(version: i64) -> String {
    format!("W/\"{version}\"")
}
