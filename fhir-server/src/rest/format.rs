//! Content negotiation (`_format`, `Accept`, `Content-Type`, `_pretty`) and encoding of
//! answers as FHIR JSON or XML.

use axum::body::Body;
use axum::http::header::{ACCEPT, CONTENT_TYPE};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::Response;
use bytes::Bytes;
use serde_json::Value;

use crate::error::FhirError;

/// The answer's format.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Format {
    pub xml: bool,
    pub pretty: bool,
}

/// A request body's format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyFormat {
    Json,
    Xml,
    JsonPatch,
    Form,
}

const JSON_TYPE: &str = "application/fhir+json; charset=utf-8";
const XML_TYPE: &str = "application/fhir+xml; charset=utf-8";

/// Which of our formats a media type names, if any.
fn media_format(media: &str) -> Option<bool> {
    match media {
        "json"
        | "application/json"
        | "application/fhir+json"
        | "application/json+fhir"
        | "text/json" => Some(false),
        "xml"
        | "application/xml"
        | "application/fhir+xml"
        | "application/xml+fhir"
        | "text/xml" => Some(true),
        _ => None,
    }
}

/// Splits `type/subtype; a=b` into the lowercased type and whether its parameters are ones
/// we can serve (`fhirVersion`, when given, must be 4.0).
fn media_and_params(text: &str) -> (String, bool, f32) {
    let mut parts = text.split(';');
    let media = parts.next().unwrap_or("").trim().to_ascii_lowercase();
    let mut ok = true;
    let mut quality = 1.0;
    for param in parts {
        let (name, value) = param.split_once('=').unwrap_or((param, ""));
        let value = value.trim().trim_matches('"');
        match name.trim().to_ascii_lowercase().as_str() {
            "fhirversion" => ok &= value == "4.0" || value == "4.0.1",
            "q" => quality = value.parse().unwrap_or(0.0),
            _ => {}
        }
    }
    (media, ok, quality)
}

/// Negotiates the answer format: `_format` wins over `Accept`; no `Accept` means JSON.
pub fn negotiate(params: &[(String, String)], headers: &HeaderMap) -> Result<Format, FhirError> {
    let pretty = params
        .iter()
        .any(|(name, value)| name == "_pretty" && value == "true");
    if let Some((_, value)) = params.iter().find(|(name, _)| name == "_format") {
        // An unencoded `+` (`_format=application/fhir+xml`, as the spec writes it) arrives
        // as a space; no media type has a space, so it is always a `+`.
        let value = &value.replace(' ', "+");
        let (media, ok, _) = media_and_params(value);
        return match media_format(&media) {
            Some(xml) if ok => Ok(Format { xml, pretty }),
            _ => Err(not_acceptable(value)),
        };
    }
    let Some(accept) = headers.get(ACCEPT).and_then(|v| v.to_str().ok()) else {
        return Ok(Format { xml: false, pretty });
    };
    if accept.trim().is_empty() {
        return Ok(Format { xml: false, pretty });
    }
    let mut best: Option<(f32, bool)> = None;
    for range in accept.split(',') {
        let (media, ok, quality) = media_and_params(range);
        if !ok || quality <= 0.0 {
            continue;
        }
        let xml = match media.as_str() {
            // NDJSON is what bulk export files are; a client fetching them may say so.
            "*/*"
            | "application/*"
            | "text/*"
            | "application/fhir+ndjson"
            | "application/ndjson" => false,
            other => match media_format(other) {
                Some(xml) => xml,
                None => continue,
            },
        };
        if best.is_none_or(|(q, _)| quality > q) {
            best = Some((quality, xml));
        }
    }
    match best {
        Some((_, xml)) => Ok(Format { xml, pretty }),
        None => Err(not_acceptable(accept)),
    }
}

fn not_acceptable(what: &str) -> FhirError {
    FhirError::new(
        StatusCode::NOT_ACCEPTABLE,
        "not-supported",
        format!(
            "Cannot answer in '{what}': this server speaks application/fhir+json and application/fhir+xml (FHIR 4.0)"
        ),
    )
}

/// The format of a request body, from its Content-Type. A body without one is read as JSON.
pub fn body_format(headers: &HeaderMap) -> Result<BodyFormat, FhirError> {
    let Some(content_type) = headers.get(CONTENT_TYPE) else {
        return Ok(BodyFormat::Json);
    };
    let text = content_type.to_str().unwrap_or("");
    let (media, ok, _) = media_and_params(text);
    let format = match media.as_str() {
        "application/json-patch+json" => Some(BodyFormat::JsonPatch),
        "application/x-www-form-urlencoded" => Some(BodyFormat::Form),
        other => media_format(other).map(|xml| {
            if xml {
                BodyFormat::Xml
            } else {
                BodyFormat::Json
            }
        }),
    };
    match format {
        Some(format) if ok => Ok(format),
        _ => Err(FhirError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "not-supported",
            format!(
                "Cannot read a body of type '{text}': send application/fhir+json, application/fhir+xml or (for PATCH) application/json-patch+json"
            ),
        )),
    }
}

/// A response body: stored JSON bytes (served as is when possible), a Bundle (whose
/// stored resources are served as is when possible), a built value, or an NDJSON file
/// (a bulk export's output, streamed in any negotiated format).
#[derive(Debug)]
pub enum Payload {
    Stored(Bytes),
    Bundle(Box<crate::rest::bundle::Bundle>),
    Value(Value),
    Ndjson(tokio::fs::File),
    /// JSON that is not a FHIR resource (the bulk export manifest): `application/json`,
    /// whatever format was negotiated.
    PlainJson(Bytes),
}

const NDJSON_TYPE: &str = "application/fhir+ndjson";

/// A file as a body, read in chunks as it is sent: memory stays flat whatever its size.
fn file_body(file: tokio::fs::File) -> Body {
    use tokio::io::AsyncReadExt;
    let chunks = futures::stream::unfold(file, |mut file| async move {
        let mut chunk = vec![0u8; 256 * 1024];
        match file.read(&mut chunk).await {
            Ok(0) => None,
            Ok(read) => {
                chunk.truncate(read);
                Some((Ok::<Bytes, std::io::Error>(Bytes::from(chunk)), file))
            }
            Err(error) => Some((Err(error), file)),
        }
    });
    Body::from_stream(chunks)
}

/// Encodes `payload` in `format` into a response with `status` and extra headers.
pub fn encode(status: StatusCode, payload: Option<Payload>, format: Format) -> Response {
    let payload = match payload {
        None => {
            return Response::builder()
                .status(status)
                .body(Body::empty())
                .unwrap_or_default();
        }
        Some(Payload::Ndjson(file)) => {
            return Response::builder()
                .status(status)
                .header(CONTENT_TYPE, NDJSON_TYPE)
                .body(file_body(file))
                .unwrap_or_default();
        }
        Some(Payload::PlainJson(bytes)) => {
            return Response::builder()
                .status(status)
                .header(CONTENT_TYPE, "application/json")
                .body(Body::from(bytes))
                .unwrap_or_default();
        }
        Some(payload) => payload,
    };
    let (body, content_type) = match render(payload, format) {
        Ok(rendered) => rendered,
        Err(error) => {
            tracing::error!(%error, "could not encode a response");
            let outcome = crate::error::FhirError::internal(error).outcome();
            let body = serde_json::to_vec(&outcome).unwrap_or_default();
            return Response::builder()
                .status(StatusCode::INTERNAL_SERVER_ERROR)
                .header(CONTENT_TYPE, JSON_TYPE)
                .body(Body::from(body))
                .unwrap_or_default();
        }
    };
    Response::builder()
        .status(status)
        .header(CONTENT_TYPE, HeaderValue::from_static(content_type))
        .body(Body::from(body))
        .unwrap_or_default()
}

fn render(payload: Payload, format: Format) -> Result<(Bytes, &'static str), String> {
    if !format.xml && !format.pretty {
        return Ok(match payload {
            Payload::Stored(bytes) => (bytes, JSON_TYPE),
            Payload::Bundle(bundle) => (Bytes::from(bundle.to_json()?), JSON_TYPE),
            Payload::Value(value) => (to_json(&value, false)?, JSON_TYPE),
            Payload::Ndjson(_) | Payload::PlainJson(_) => {
                return Err("an NDJSON file or plain JSON is not a resource".into());
            }
        });
    }
    let value = match payload {
        Payload::Stored(bytes) => serde_json::from_slice(&bytes).map_err(|e| e.to_string())?,
        Payload::Bundle(bundle) => bundle.into_value()?,
        Payload::Value(value) => value,
        Payload::Ndjson(_) | Payload::PlainJson(_) => {
            return Err("an NDJSON file or plain JSON is not a resource".into());
        }
    };
    if format.xml {
        let xml = fhir_model::xml::json_to_xml(&value, format.pretty).map_err(|e| e.message)?;
        Ok((Bytes::from(xml), XML_TYPE))
    } else {
        Ok((to_json(&value, true)?, JSON_TYPE))
    }
}

fn to_json(value: &Value, pretty: bool) -> Result<Bytes, String> {
    let bytes = if pretty {
        serde_json::to_vec_pretty(value)
    } else {
        serde_json::to_vec(value)
    };
    bytes.map(Bytes::from).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn accept(value: &str) -> Result<Format, FhirError> {
        let mut headers = HeaderMap::new();
        headers.insert(ACCEPT, HeaderValue::from_str(value).unwrap());
        negotiate(&[], &headers)
    }

    #[test]
    fn accept_picks_the_best_served_type() {
        assert!(!accept("application/fhir+json").unwrap().xml);
        assert!(accept("application/fhir+xml").unwrap().xml);
        assert!(accept("text/html, application/xml;q=0.9").unwrap().xml);
        assert!(!accept("*/*").unwrap().xml);
        assert!(
            !accept("application/fhir+json; fhirVersion=4.0")
                .unwrap()
                .xml
        );
        assert_eq!(
            accept("text/html").unwrap_err().status,
            StatusCode::NOT_ACCEPTABLE
        );
        assert!(accept("application/fhir+json; fhirVersion=3.0").is_err());
    }

    #[test]
    fn format_parameter_overrides_accept() {
        let mut headers = HeaderMap::new();
        headers.insert(ACCEPT, HeaderValue::from_static("application/fhir+json"));
        let params = vec![("_format".to_string(), "xml".to_string())];
        assert!(negotiate(&params, &headers).unwrap().xml);
        let unencoded_plus = vec![("_format".to_string(), "application/fhir xml".to_string())];
        assert!(negotiate(&unencoded_plus, &headers).unwrap().xml);
        let bad = vec![("_format".to_string(), "html".to_string())];
        assert!(negotiate(&bad, &headers).is_err());
    }

    #[test]
    fn content_types_are_recognised() {
        let mut headers = HeaderMap::new();
        assert_eq!(body_format(&headers).unwrap(), BodyFormat::Json);
        headers.insert(
            CONTENT_TYPE,
            HeaderValue::from_static("application/fhir+xml;charset=UTF-8"),
        );
        assert_eq!(body_format(&headers).unwrap(), BodyFormat::Xml);
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("text/plain"));
        assert_eq!(
            body_format(&headers).unwrap_err().status,
            StatusCode::UNSUPPORTED_MEDIA_TYPE
        );
    }
}
