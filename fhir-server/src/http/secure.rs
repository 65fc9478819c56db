//! Secure messaging's rules where the REST API answers (`workflows::messaging::secure`):
//!
//! - an attachment (a Binary whose `securityContext` is a resource) is read exactly when
//!   the resource it belongs to may be read by the same token, as FHIR defines
//!   `securityContext`; whether the token may read Binaries does not matter;
//! - a user (anyone but the admin role, a backend service or the server) whose role lets
//!   them read every Communication still sees a secure message (and its attachments)
//!   only when its thread is open to them (`secure::access`): any answer (a read, a
//!   search, a history, an `_include`, cut down by `_elements` or not) loses the others,
//!   as if they did not exist, and a search of those types has no `total`.

use std::collections::{HashMap, HashSet};

use axum::http::Method;
use serde_json::Value;

use crate::app::App;
use crate::error::FhirError;
use crate::rest::bundle::Resource;
use crate::rest::format::Payload;
use crate::rest::request::FhirRequest;
use crate::rest::response::FhirResponse;
use crate::workflows::messaging::secure::access::{Reader, Seeing, opens};
use crate::workflows::messaging::secure::{is_secure_message, mailbox, thread_of};
use crate::workflows::records;

/// The answer to a read of a Binary that has a `securityContext`, under a token that is
/// not the server's own: 404 unless the token may read the resource it names. `None`:
/// not such a read (the usual gate decides).
pub async fn attachment(
    app: &App,
    request: &FhirRequest,
) -> Result<Option<FhirResponse>, FhirError> {
    if request.principal.is_none() || request.method != Method::GET {
        return Ok(None);
    }
    let id = match request.segments.as_slice() {
        [kind, id] | [kind, id, _, _] if kind == "Binary" && !id.starts_with(['$', '_']) => id,
        _ => return Ok(None),
    };
    let Some(binary) = records::read(app, request.tenant, "Binary", id).await? else {
        return Ok(None);
    };
    let Some((kind, context_id)) = binary["securityContext"]["reference"]
        .as_str()
        .and_then(|r| r.split_once('/'))
    else {
        return Ok(None);
    };
    let not_found = || FhirError::not_found("No such resource");
    if kind == "Binary" {
        return Err(not_found());
    }
    let probe = FhirRequest {
        tenant: request.tenant,
        base: request.base.clone(),
        method: Method::GET,
        segments: vec![kind.to_owned(), context_id.to_owned()],
        params: Vec::new(),
        headers: axum::http::HeaderMap::new(),
        body: bytes::Bytes::new(),
        principal: request.principal.clone(),
    };
    match Box::pin(super::route::dispatch(app, &probe)).await {
        Ok(_) => super::route::route(app, request).await.map(Some),
        Err(_) => Err(not_found()),
    }
}

/// Whether stored JSON may be a secure message or an attachment, whole or cut down by
/// `_elements` / `_summary` (tagged SUBSETTED): a cheap look before parsing it.
fn may_concern(bytes: &[u8]) -> bool {
    let holds = |needle: &[u8]| bytes.windows(needle.len()).any(|w| w == needle);
    holds(crate::resource::SECURE_MESSAGE.as_bytes())
        || holds(b"securityContext")
        || holds(b"SUBSETTED")
}

/// Whether `resource` was cut down by `_elements` or `_summary`.
fn subsetted(resource: &Value) -> bool {
    resource["meta"]["tag"]
        .as_array()
        .is_some_and(|tags| tags.iter().any(|t| t["code"] == "SUBSETTED"))
}

/// What a resource of an answer is to be judged by: itself, or, cut down, the stored
/// resource it was cut from (`None`: gone, so hidden).
async fn judged_as(
    app: &App,
    request: &FhirRequest,
    resource: &Value,
) -> Result<Option<Value>, FhirError> {
    let kind = resource["resourceType"].as_str().unwrap_or_default();
    if !subsetted(resource) || !matches!(kind, "Communication" | "Binary") {
        return Ok(Some(resource.clone()));
    }
    let id = resource["id"].as_str().unwrap_or_default();
    records::read(app, request.tenant, kind, id).await
}

/// Whether `resource` (as judged) falls under the thread rule: a secure message, or a
/// Binary whose `securityContext` is a Communication.
fn concerned(resource: &Value) -> bool {
    is_secure_message(resource)
        || resource["securityContext"]["reference"]
            .as_str()
            .is_some_and(|r| r.starts_with("Communication/"))
}

/// The resources of an answer that may be secure messages or their attachments, parsed.
fn resources_of(response: &FhirResponse) -> Vec<Value> {
    let parse = |bytes: &[u8]| {
        may_concern(bytes)
            .then(|| serde_json::from_slice::<Value>(bytes).ok())
            .flatten()
    };
    match &response.payload {
        Some(Payload::Stored(bytes)) => parse(bytes).into_iter().collect(),
        Some(Payload::Value(value)) => vec![value.clone()],
        Some(Payload::Bundle(bundle)) => bundle
            .entries
            .iter()
            .filter_map(|entry| match &entry.resource {
                Some(Resource::Stored(bytes)) => parse(bytes),
                Some(Resource::Value(value)) => Some(value.clone()),
                None => None,
            })
            .collect(),
        _ => Vec::new(),
    }
}

/// `(type, id)` of a resource.
fn key_of(resource: &Value) -> (String, String) {
    let text = |name: &str| resource[name].as_str().unwrap_or_default().to_owned();
    (text("resourceType"), text("id"))
}

/// Keeps out of a user's answer the secure messages, and their attachments, whose
/// threads are not open to them (a patient's: the threads about them). A search of
/// Communication or Binary by a user answers no `total` (it would count the others).
pub async fn seen_only(
    app: &App,
    request: &FhirRequest,
    response: FhirResponse,
) -> Result<FhirResponse, FhirError> {
    let principal = request.principal.as_deref();
    if Reader::of(principal) == Reader::Everyone {
        return Ok(response);
    }
    let response = without_total(request, response);
    let mut judged_resources = Vec::new();
    for resource in resources_of(&response) {
        if let Some(judged) = judged_as(app, request, &resource).await? {
            if concerned(&judged) {
                judged_resources.push((key_of(&resource), Some(judged)));
            }
        } else {
            judged_resources.push((key_of(&resource), None));
        }
    }
    if judged_resources.is_empty() {
        return Ok(response);
    }
    let seeing = Seeing::of(app, request.tenant, principal).await?;
    let mut judged = Judged::default();
    let mut hidden: HashSet<(String, String)> = HashSet::new();
    for (key, resource) in judged_resources {
        let open = match &resource {
            Some(resource) => judged.open(app, request, &seeing, resource).await?,
            None => false,
        };
        if !open {
            hidden.insert(key);
        }
    }
    if hidden.is_empty() {
        return Ok(response);
    }
    super::guard::keep_only(response, |value| !hidden.contains(&key_of(value)))
}

/// A user's search of Communication or Binary without its `total`.
fn without_total(request: &FhirRequest, mut response: FhirResponse) -> FhirResponse {
    let searched = matches!(
        request.segments.first().map(String::as_str),
        Some("Communication" | "Binary")
    );
    if let (true, Some(Payload::Bundle(bundle))) = (searched, &mut response.payload) {
        bundle.shell.remove("total");
    }
    response
}

/// Threads judged for one answer, by their first message's id.
#[derive(Default)]
struct Judged {
    threads: HashMap<String, bool>,
}

impl Judged {
    /// Whether `resource` (a secure message, or a Binary that may be an attachment of one)
    /// may be in the answer.
    async fn open(
        &mut self,
        app: &App,
        request: &FhirRequest,
        seeing: &Seeing,
        resource: &Value,
    ) -> Result<bool, FhirError> {
        let message = match resource["resourceType"].as_str() {
            Some("Binary") => {
                let Some(id) = resource["securityContext"]["reference"]
                    .as_str()
                    .and_then(|r| r.strip_prefix("Communication/"))
                else {
                    return Ok(true);
                };
                match records::read(app, request.tenant, "Communication", id).await? {
                    Some(message) if is_secure_message(&message) => message,
                    Some(_) => return Ok(true),
                    None => return Ok(false),
                }
            }
            _ => resource.clone(),
        };
        if opens(&seeing.reader, seeing.circle.as_ref(), &message) {
            return Ok(true);
        }
        let root = thread_of(&message);
        if let Some(open) = self.threads.get(&root) {
            return Ok(*open);
        }
        let thread = mailbox::thread(app, request.tenant, &root).await?;
        let open = seeing.sees(&thread);
        self.threads.insert(root, open);
        Ok(open)
    }
}
