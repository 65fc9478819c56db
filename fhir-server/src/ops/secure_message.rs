//! Secure messaging's operations (`workflows::messaging::secure`), on Communication:
//!
//! - `$send-message` (type, POST): a new thread (`subject`, `topic`, `recipient`s) or a
//!   reply (`inResponseTo`), with `text` and `attachment`s; 201 with the message;
//! - `$mailbox` (type): the signed-in user's threads and unread counts;
//! - `$thread` (instance): a thread, whole, as a Bundle; what came to the reader is
//!   marked read (`received`), which is the sender's read receipt.
//!
//! The gate asks that the token may write Communications for `$send-message` and read
//! them for the others; who may take part in which thread each checks itself
//! (`secure::access`). `$thread` writes read receipts only for a token that may update
//! Communications (a read-only app reads without marking anything).

use axum::http::StatusCode;
use serde_json::{Value, json};

use super::{Operation, Target, in_param, returns};
use crate::app::App;
use crate::error::FhirError;
use crate::rest::request::FhirRequest;
use crate::rest::response::FhirResponse;
use crate::workflows::messaging::secure::access::Seeing;
use crate::workflows::messaging::secure::compose::{self, Attachment, Draft, refused};
use crate::workflows::messaging::secure::{Party, mailbox};

pub const SEND: Operation = Operation {
    name: "send-message",
    id: "Communication-send-message",
    url: "urn:fhir-server:OperationDefinition/Communication-send-message",
    title: "Send a secure message",
    description: "Sends a secure message as the signed-in user: a new thread about a patient (subject, topic, recipients: the patient, practitioners, care teams or a role) or a reply (inResponseTo: to the other parties of the message answered). Attachments are stored as Binaries whose securityContext is the message. Recipients with an email address are told by an email that holds no part of the message.",
    types: &["Communication"],
    system: false,
    type_level: true,
    instance: false,
    affects_state: true,
    parameters: &[
        in_param(
            "inResponseTo",
            (0, "1"),
            "Reference",
            "The message answered (a reply)",
        ),
        in_param(
            "subject",
            (0, "1"),
            "Reference",
            "The patient of a new thread (a patient's own by default)",
        ),
        in_param("topic", (0, "1"), "string", "A new thread's topic"),
        in_param(
            "recipient",
            (0, "*"),
            "Reference",
            "A Patient, Practitioner, PractitionerRole or CareTeam, or a role: identifier urn:fhir-server:role|front-desk",
        ),
        in_param(
            "sender",
            (0, "1"),
            "Reference",
            "Who sends, for a backend service (else the signed-in user)",
        ),
        in_param("text", (0, "1"), "string", "The message"),
        in_param(
            "attachment",
            (0, "*"),
            "Attachment",
            "contentType, data (base64) and title",
        ),
        returns("Communication", "The message sent"),
    ],
    handler: |app, request, _| Box::pin(send(app, request)),
};

pub const MAILBOX: Operation = Operation {
    name: "mailbox",
    id: "Communication-mailbox",
    url: "urn:fhir-server:OperationDefinition/Communication-mailbox",
    title: "A user's secure messages",
    description: "The signed-in user's unread secure messages, and the threads they take part in (as themselves, a care team of theirs or their role), latest first: first message, topic, patient, messages, unread, last.",
    types: &["Communication"],
    system: false,
    type_level: true,
    instance: false,
    affects_state: false,
    parameters: &[
        in_param(
            "count",
            (0, "1"),
            "integer",
            "At most this many threads (1 to 200; 50)",
        ),
        returns("Parameters", "unread, then a thread part per thread"),
    ],
    handler: |app, request, _| Box::pin(inbox(app, request)),
};

pub const THREAD: Operation = Operation {
    name: "thread",
    id: "Communication-thread",
    url: "urn:fhir-server:OperationDefinition/Communication-thread",
    title: "Read a secure message's thread",
    description: "The thread of a secure message, first message first, as a Bundle; the messages that came to the reader are marked received (the sender's read receipt).",
    types: &["Communication"],
    system: false,
    type_level: false,
    instance: true,
    affects_state: false,
    parameters: &[returns("Bundle", "The thread's messages")],
    handler: |app, request, target| Box::pin(thread(app, request, target)),
};

/// The Parameters body's parameters (a POST without one has none).
fn parameters(request: &FhirRequest) -> Result<Vec<Value>, FhirError> {
    let body = request.parse_body()?;
    if body["resourceType"] != "Parameters" {
        return Err(FhirError::bad_request(
            "The operation takes a Parameters body",
        ));
    }
    Ok(body["parameter"].as_array().cloned().unwrap_or_default())
}

fn text_of(parameter: &Value, name: &str) -> Result<String, FhirError> {
    parameter["valueString"]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| {
            refused(
                StatusCode::BAD_REQUEST,
                name,
                format!("'{name}' is a valueString"),
            )
        })
}

fn reference_of(parameter: &Value, name: &str) -> Result<Party, FhirError> {
    Party::of(&parameter["valueReference"]).ok_or_else(|| {
        refused(
            StatusCode::BAD_REQUEST,
            name,
            format!("'{name}' is a valueReference (a reference, or a role's identifier)"),
        )
    })
}

fn resource_reference(party: Party, name: &str) -> Result<String, FhirError> {
    match party {
        Party::Resource(reference) => Ok(reference),
        Party::Role(_) => Err(refused(
            StatusCode::BAD_REQUEST,
            name,
            format!("'{name}' is a reference to a resource"),
        )),
    }
}

/// The draft a `$send-message` body asks for.
fn draft_of(parameters: &[Value]) -> Result<Draft, FhirError> {
    let mut draft = Draft::default();
    for parameter in parameters {
        let name = parameter["name"].as_str().unwrap_or_default();
        match name {
            "inResponseTo" => {
                let reference = resource_reference(reference_of(parameter, name)?, name)?;
                let id = reference.strip_prefix("Communication/").ok_or_else(|| {
                    refused(
                        StatusCode::BAD_REQUEST,
                        name,
                        "'inResponseTo' is a Communication",
                    )
                })?;
                draft.in_response_to = Some(id.to_owned());
            }
            "subject" => {
                draft.subject = Some(resource_reference(reference_of(parameter, name)?, name)?);
            }
            "topic" => draft.topic = Some(text_of(parameter, name)?),
            "text" => draft.text = Some(text_of(parameter, name)?),
            "recipient" => draft.recipients.push(reference_of(parameter, name)?),
            "sender" => draft.sender = Some(reference_of(parameter, name)?),
            "attachment" => {
                let attachment = &parameter["valueAttachment"];
                let field = |key: &str| attachment[key].as_str().map(str::to_owned);
                let (Some(content_type), Some(data)) = (field("contentType"), field("data")) else {
                    return Err(refused(
                        StatusCode::BAD_REQUEST,
                        name,
                        "an attachment is a valueAttachment with contentType and data",
                    ));
                };
                draft.attachments.push(Attachment {
                    content_type,
                    data,
                    title: field("title"),
                });
            }
            other => {
                return Err(refused(
                    StatusCode::BAD_REQUEST,
                    other,
                    format!("$send-message has no parameter '{other}'"),
                ));
            }
        }
    }
    Ok(draft)
}

async fn send(app: &App, request: &FhirRequest) -> Result<FhirResponse, FhirError> {
    let draft = draft_of(&parameters(request)?)?;
    let seeing = Seeing::of(app, request.tenant, request.principal.as_deref()).await?;
    let message = compose::send(app, request, &seeing, draft).await?;
    Ok(FhirResponse::value(StatusCode::CREATED, message))
}

async fn inbox(app: &App, request: &FhirRequest) -> Result<FhirResponse, FhirError> {
    let inputs = super::inputs(request)?;
    let count = match super::input(&inputs, "count") {
        Some(n) => n
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=200).contains(n))
            .ok_or_else(|| super::invalid_input("count", "'count' is 1 to 200"))?,
        None => 50,
    };
    let seeing = Seeing::of(app, request.tenant, request.principal.as_deref()).await?;
    let found = mailbox::mailbox(app, request.tenant, &seeing, count).await?;
    Ok(FhirResponse::value(StatusCode::OK, found))
}

async fn thread(
    app: &App,
    request: &FhirRequest,
    target: Target<'_>,
) -> Result<FhirResponse, FhirError> {
    let id = target.id().unwrap_or_default();
    let seeing = Seeing::of(app, request.tenant, request.principal.as_deref()).await?;
    let receipts = crate::auth::enforce::check(
        request.principal.as_deref(),
        "Communication",
        smart_auth::scope::Permission::Update,
    )
    .is_ok();
    let messages = mailbox::open(app, request.tenant, &seeing, (id, receipts)).await?;
    let entries: Vec<Value> = messages
        .into_iter()
        .map(|message| {
            let url = format!(
                "{}/Communication/{}",
                request.base,
                message["id"].as_str().unwrap_or_default()
            );
            json!({"fullUrl": url, "resource": message, "search": {"mode": "match"}})
        })
        .collect();
    let bundle = json!({"resourceType": "Bundle", "type": "searchset",
        "total": entries.len(), "entry": entries});
    Ok(FhirResponse::value(StatusCode::OK, bundle))
}
