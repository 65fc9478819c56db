//! Sending a secure message (`Communication/$send-message`): a new thread (a patient, a
//! topic, recipients) or a reply (to every other party of the message answered, and any
//! more named), with text and attachments. The message and its attachments (Binaries
//! whose `securityContext` is the message) are written in one transaction, with the
//! jobs that tell its recipients by email (`store::outbox`).
//!
//! Every refusal names the input at fault: a sender who is not the signed-in user, a
//! thread the sender cannot see (404), a recipient that does not exist, another patient,
//! a thread without its patient, an attachment of a type not allowed or too large (413).

use axum::http::StatusCode;
use base64::Engine;
use serde_json::{Value, json};

use super::access::{Reader, Seeing};
use super::{Party, category, parties, subject_of, thread_of};
use crate::app::App;
use crate::error::FhirError;
use crate::ids::TenantId;
use crate::resource::{format_instant, new_id};
use crate::rest::request::FhirRequest;
use crate::workflows::records;

/// The most characters of a message's text, and of a thread's topic.
pub const MOST_TEXT: usize = 10_000;
pub const MOST_TOPIC: usize = 200;
/// The most recipients a message names, and attachments it carries.
pub const MOST_RECIPIENTS: usize = 20;
pub const MOST_ATTACHMENTS: usize = 5;

/// A message as asked for.
#[derive(Debug, Default, Clone)]
pub struct Draft {
    /// The message answered (its id): a reply.
    pub in_response_to: Option<String>,
    /// The patient of a new thread (`Patient/p1`).
    pub subject: Option<String>,
    pub topic: Option<String>,
    pub recipients: Vec<Party>,
    /// Who sends, when the server's rights or a backend send (else the signed-in user).
    pub sender: Option<Party>,
    pub text: Option<String>,
    pub attachments: Vec<Attachment>,
}

/// An attachment as sent: its type, its content (base64) and its title.
#[derive(Debug, Clone)]
pub struct Attachment {
    pub content_type: String,
    pub data: String,
    pub title: Option<String>,
}

/// An error naming the operation's input `name`.
pub fn refused(status: StatusCode, name: &str, diagnostics: impl Into<String>) -> FhirError {
    let code = match status {
        StatusCode::FORBIDDEN => "forbidden",
        StatusCode::PAYLOAD_TOO_LARGE => "too-long",
        StatusCode::NOT_FOUND => "not-found",
        _ => "invalid",
    };
    FhirError::new(status, code, diagnostics)
        .at(format!("Parameters.parameter.where(name = '{name}')"))
}

fn invalid(name: &str, diagnostics: impl Into<String>) -> FhirError {
    refused(StatusCode::UNPROCESSABLE_ENTITY, name, diagnostics)
}

/// Sends `draft` as `seeing`'s reader; the stored message.
pub async fn send(
    app: &App,
    request: &FhirRequest,
    seeing: &Seeing,
    draft: Draft,
) -> Result<Value, FhirError> {
    let tenant = request.tenant;
    let sender = sender_of(&seeing.reader, draft.sender.clone())?;
    let mut message = match &draft.in_response_to {
        Some(id) => reply_to(app, tenant, seeing, id, &sender, &draft).await?,
        None => first_message(&seeing.reader, &sender, &draft)?,
    };
    check_parties(app, tenant, &message).await?;
    let settings = super::super::settings::load(&app.store, tenant).await?;
    let text = draft.text.as_deref().unwrap_or_default();
    if text.chars().count() > MOST_TEXT {
        return Err(invalid("text", format!("at most {MOST_TEXT} characters")));
    }
    if text
        .chars()
        .any(|c| c.is_control() && !matches!(c, '\n' | '\r' | '\t'))
    {
        return Err(invalid("text", "control characters are not allowed"));
    }
    if text.trim().is_empty() && draft.attachments.is_empty() {
        return Err(invalid("text", "a message has text, an attachment or both"));
    }
    let id = new_id();
    let binaries = binaries(&settings.secure, &id, &draft.attachments)?;
    let mut payload = Vec::new();
    if !text.trim().is_empty() {
        payload.push(json!({"contentString": text}));
    }
    for (binary, attachment) in binaries.iter().zip(&draft.attachments) {
        let mut content = json!({
            "contentType": attachment.content_type,
            "url": format!("Binary/{}", binary.0),
            "size": binary.1,
        });
        if let Some(title) = &attachment.title {
            content["title"] = json!(title);
        }
        payload.push(json!({"contentAttachment": content}));
    }
    message["id"] = json!(id);
    message["payload"] = Value::Array(payload);
    message["sent"] = json!(format_instant(crate::clock::now_micros()));
    write(app, request, &message, &binaries).await?;
    records::read(app, tenant, "Communication", &id)
        .await?
        .ok_or_else(|| FhirError::internal("the message was not written"))
}

/// Who sends: the signed-in user (a patient, a member of staff, or their role when they
/// have no `fhirUser`); the input `sender` only for the server's rights or a backend.
fn sender_of(reader: &Reader, asked: Option<Party>) -> Result<Party, FhirError> {
    match (reader.as_party(), asked) {
        (Some(own), None) => Ok(own),
        (Some(own), Some(asked)) if asked == own => Ok(own),
        (Some(_), Some(_)) => Err(refused(
            StatusCode::FORBIDDEN,
            "sender",
            "a message is sent as the signed-in user",
        )),
        (None, Some(asked)) if *reader == Reader::Everyone => Ok(asked),
        (None, _) if *reader == Reader::Everyone => Err(invalid(
            "sender",
            "'sender' is required without a signed-in user",
        )),
        (None, _) => Err(refused(
            StatusCode::FORBIDDEN,
            "sender",
            "this user has no patient to send as",
        )),
    }
}

/// The first message of a new thread.
fn first_message(reader: &Reader, sender: &Party, draft: &Draft) -> Result<Value, FhirError> {
    let subject = match (reader, &draft.subject) {
        (Reader::Patient(own), None) => format!("Patient/{own}"),
        (Reader::Patient(own), Some(asked)) if *asked != format!("Patient/{own}") => {
            return Err(refused(
                StatusCode::FORBIDDEN,
                "subject",
                "a patient writes about themselves",
            ));
        }
        (_, Some(asked)) => asked.clone(),
        (_, None) => return Err(invalid("subject", "a new thread needs its patient")),
    };
    if !subject.starts_with("Patient/") {
        return Err(invalid("subject", "the subject is a Patient"));
    }
    let topic = draft.topic.as_deref().map(str::trim).unwrap_or_default();
    if topic.is_empty() || topic.chars().count() > MOST_TOPIC || topic.chars().any(char::is_control)
    {
        return Err(invalid(
            "topic",
            format!("a new thread has a topic of 1 to {MOST_TOPIC} characters, on one line"),
        ));
    }
    if draft.recipients.is_empty() {
        return Err(invalid("recipient", "a new thread needs a recipient"));
    }
    Ok(shell(
        sender,
        &subject,
        &json!({"text": topic}),
        &draft.recipients,
    ))
}

/// A reply to message `id`: in its thread, to its parties but the sender, and to any more
/// named.
async fn reply_to(
    app: &App,
    tenant: TenantId,
    seeing: &Seeing,
    id: &str,
    sender: &Party,
    draft: &Draft,
) -> Result<Value, FhirError> {
    let not_found = || {
        refused(
            StatusCode::NOT_FOUND,
            "inResponseTo",
            format!("there is no secure message Communication/{id}"),
        )
    };
    let answered = records::read(app, tenant, "Communication", id)
        .await?
        .filter(super::is_secure_message)
        .ok_or_else(not_found)?;
    let thread = super::mailbox::thread(app, tenant, &thread_of(&answered)).await?;
    if !seeing.sees(&thread) {
        return Err(not_found());
    }
    let subject = subject_of(&answered).unwrap_or_default().to_owned();
    if draft
        .subject
        .as_ref()
        .is_some_and(|asked| *asked != subject)
    {
        return Err(invalid("subject", "a reply is about its thread's patient"));
    }
    let mut recipients: Vec<Party> = parties(&answered)
        .into_iter()
        .filter(|party| party != sender)
        .collect();
    for party in &draft.recipients {
        if !recipients.contains(party) && party != sender {
            recipients.push(party.clone());
        }
    }
    let root = thread.first().cloned().unwrap_or_default();
    let mut message = shell(sender, &subject, &root["topic"], &recipients);
    message["partOf"] = json!([{"reference": format!("Communication/{}", thread_of(&answered))}]);
    message["inResponseTo"] = json!([{"reference": format!("Communication/{id}")}]);
    Ok(message)
}

fn shell(sender: &Party, subject: &str, topic: &Value, recipients: &[Party]) -> Value {
    json!({
        "resourceType": "Communication",
        "status": "completed",
        "category": category(),
        "subject": {"reference": subject},
        "topic": topic,
        "sender": sender.reference(),
        "recipient": recipients.iter().map(Party::reference).collect::<Vec<_>>(),
    })
}

/// The types a party may be.
const PARTY_TYPES: &[&str] = &["Patient", "Practitioner", "PractitionerRole", "CareTeam"];

/// Every party exists, the only patient is the thread's, and it takes part.
async fn check_parties(app: &App, tenant: TenantId, message: &Value) -> Result<(), FhirError> {
    let subject = subject_of(message).unwrap_or_default();
    let all = parties(message);
    if all.len() > MOST_RECIPIENTS + 1 {
        return Err(invalid(
            "recipient",
            format!("at most {MOST_RECIPIENTS} recipients"),
        ));
    }
    if records::read_reference(app, tenant, subject)
        .await?
        .is_none()
    {
        return Err(invalid("subject", format!("there is no {subject}")));
    }
    for party in &all {
        match party {
            Party::Resource(reference) => {
                let kind = reference.split('/').next().unwrap_or_default();
                if !PARTY_TYPES.contains(&kind) {
                    return Err(invalid(
                        "recipient",
                        format!(
                            "{reference}: a party is a Patient, Practitioner, PractitionerRole or CareTeam"
                        ),
                    ));
                }
                if kind == "Patient" && reference != subject {
                    return Err(invalid(
                        "recipient",
                        format!("{reference}: a thread is about one patient, {subject}"),
                    ));
                }
                if records::read_reference(app, tenant, reference)
                    .await?
                    .is_none()
                {
                    return Err(invalid("recipient", format!("there is no {reference}")));
                }
            }
            Party::Role(name) => {
                if crate::auth::accounts::role(&app.store, tenant, name)
                    .await?
                    .is_none()
                {
                    return Err(invalid("recipient", format!("there is no role '{name}'")));
                }
            }
        }
    }
    if !all.contains(&Party::Resource(subject.to_owned())) {
        return Err(invalid(
            "recipient",
            format!("a thread about {subject} includes the patient: name them as a recipient"),
        ));
    }
    Ok(())
}

/// The Binaries of `attachments` (id, decoded size, resource), checked against the
/// tenant's setting; their `securityContext` is message `id`.
fn binaries(
    setting: &super::super::settings::SecureMessaging,
    id: &str,
    attachments: &[Attachment],
) -> Result<Vec<(String, usize, Value)>, FhirError> {
    if attachments.len() > MOST_ATTACHMENTS {
        return Err(invalid(
            "attachment",
            format!("at most {MOST_ATTACHMENTS} attachments"),
        ));
    }
    let mut found = Vec::new();
    for attachment in attachments {
        if !setting
            .attachment_types
            .iter()
            .any(|t| t.eq_ignore_ascii_case(&attachment.content_type))
        {
            return Err(invalid(
                "attachment",
                format!(
                    "attachments of type '{}' are not allowed (allowed: {})",
                    attachment.content_type,
                    setting.attachment_types.join(", ")
                ),
            ));
        }
        let size = base64::engine::general_purpose::STANDARD
            .decode(attachment.data.as_bytes())
            .map_err(|_| invalid("attachment", "an attachment's data is not base64"))?
            .len();
        if size == 0 {
            return Err(invalid("attachment", "an attachment is empty"));
        }
        if size > setting.attachment_max_bytes {
            return Err(refused(
                StatusCode::PAYLOAD_TOO_LARGE,
                "attachment",
                format!(
                    "an attachment is {size} bytes; at most {} are allowed",
                    setting.attachment_max_bytes
                ),
            ));
        }
        let binary_id = new_id();
        let binary = json!({
            "resourceType": "Binary",
            "id": binary_id,
            "contentType": attachment.content_type,
            "securityContext": {"reference": format!("Communication/{id}")},
            "data": attachment.data,
        });
        found.push((binary_id, size, binary));
    }
    Ok(found)
}

/// Writes the message and its attachments in one transaction.
async fn write(
    app: &App,
    request: &FhirRequest,
    message: &Value,
    binaries: &[(String, usize, Value)],
) -> Result<(), FhirError> {
    let id = message["id"].as_str().unwrap_or_default();
    let mut entries: Vec<Value> = binaries
        .iter()
        .map(|(binary_id, _, binary)| {
            json!({"resource": binary, "request": {"method": "PUT", "url": format!("Binary/{binary_id}")}})
        })
        .collect();
    entries.push(json!({"resource": message,
        "request": {"method": "PUT", "url": format!("Communication/{id}")}}));
    crate::interaction::transaction::run(
        app,
        request,
        json!({"resourceType": "Bundle", "type": "transaction", "entry": entries}),
    )
    .await?;
    Ok(())
}
