//! `$broadcast` (on the system, the tenant; POST): one message to every patient a search
//! finds, at most `per-minute` a minute on each channel, or `sms-per-minute` and
//! `email-per-minute` (`workflows::messaging::broadcast`); answers 202
//! with the Task that stands for it, whose `$broadcast-report` counts what was sent.
//! `Task/{id}/$broadcast-report`: recipients, sent, failed, opted-out and pending.

use axum::http::StatusCode;

use super::{Operation, Target, in_param, input, inputs, invalid_input as invalid, returns};
use crate::app::App;
use crate::error::FhirError;
use crate::rest::request::FhirRequest;
use crate::rest::response::FhirResponse;
use crate::workflows::messaging::broadcast::{self, Ask};

pub const OPERATION: Operation = Operation {
    name: "broadcast",
    id: "broadcast",
    url: "urn:fhir-server:OperationDefinition/broadcast",
    title: "Broadcast a message",
    description: "Sends one message to every patient a search finds (Patient?..., or the patients of Appointment?...), by the first of the tenant's channels that reaches each, at most per-minute a minute on each channel (or sms-per-minute, email-per-minute); answers 202 with the Task that stands for the broadcast.",
    types: &[],
    system: true,
    type_level: false,
    instance: false,
    affects_state: true,
    parameters: &[
        in_param(
            "search",
            (1, "1"),
            "string",
            "Patient?... or Appointment?... (its patients)",
        ),
        in_param("subject", (1, "1"), "string", "The email subject"),
        in_param(
            "text",
            (1, "1"),
            "string",
            "The message (at most 1,000 characters)",
        ),
        in_param(
            "per-minute",
            (0, "1"),
            "integer",
            "At most this many messages a minute on each channel (1 to 600; 60)",
        ),
        in_param(
            "sms-per-minute",
            (0, "1"),
            "integer",
            "At most this many texts a minute (1 to 600; per-minute)",
        ),
        in_param(
            "email-per-minute",
            (0, "1"),
            "integer",
            "At most this many emails a minute (1 to 600; per-minute)",
        ),
    ],
    handler: |app, request, _| Box::pin(handle(app, request)),
};

pub const REPORT: Operation = Operation {
    name: "broadcast-report",
    id: "Task-broadcast-report",
    url: "urn:fhir-server:OperationDefinition/Task-broadcast-report",
    title: "What a broadcast did",
    description: "Counts a broadcast's recipients and what became of their messages: sent, failed, opted-out (texted STOP) and pending; the Task is completed once none is pending.",
    types: &["Task"],
    system: false,
    type_level: false,
    instance: true,
    affects_state: false,
    parameters: &[returns(
        "Parameters",
        "recipients, sent, failed, opted-out and pending, each an integer",
    )],
    handler: |app, request, target| Box::pin(report(app, request, target)),
};

async fn handle(app: &App, request: &FhirRequest) -> Result<FhirResponse, FhirError> {
    let inputs = inputs(request)?;
    let text_of = |name: &str, most: usize| -> Result<String, FhirError> {
        let text = input(&inputs, name).unwrap_or_default();
        match text.trim().is_empty() || text.chars().count() > most {
            true => Err(invalid(name, format!("'{name}' is 1 to {most} characters"))),
            false => Ok(text.to_owned()),
        }
    };
    let rate = |name: &str| -> Result<Option<u32>, FhirError> {
        input(&inputs, name)
            .map(|n| {
                n.parse::<u32>()
                    .ok()
                    .filter(|n| (1..=600).contains(n))
                    .ok_or_else(|| invalid(name, format!("'{name}' is 1 to 600")))
            })
            .transpose()
    };
    let mut per_channel = Vec::new();
    for channel in ["sms", "email"] {
        if let Some(rate) = rate(&format!("{channel}-per-minute"))? {
            per_channel.push((channel.to_owned(), rate));
        }
    }
    let ask = Ask {
        search: text_of("search", 2000)?,
        subject: text_of("subject", 200)?,
        text: text_of("text", 1000)?,
        per_minute: rate("per-minute")?.unwrap_or(60),
        per_channel,
    };
    let task = broadcast::start(app, request.tenant, &ask).await?;
    let outcome = serde_json::json!({"resourceType": "Parameters", "parameter": [
        {"name": "task", "valueReference": {"reference": format!("Task/{task}")}}]});
    Ok(FhirResponse::value(StatusCode::ACCEPTED, outcome))
}

async fn report(
    app: &App,
    request: &FhirRequest,
    target: Target<'_>,
) -> Result<FhirResponse, FhirError> {
    let id = target.id().unwrap_or_default();
    let counted = broadcast::report(app, request.tenant, id).await?;
    Ok(FhirResponse::value(StatusCode::OK, counted))
}
