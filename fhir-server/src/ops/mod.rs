//! FHIR operations (`$name`), one file each, registered once in [`OPERATIONS`]: its name,
//! where it may be invoked, its parameters and its handler. Dispatch, the
//! CapabilityStatement and the OperationDefinitions served at `OperationDefinition/[id]`
//! all read that one list, so they cannot disagree.

pub mod access_log;
pub mod appointment_arrive;
pub mod appointment_book;
pub mod appointment_book_series;
pub mod appointment_cancel;
pub mod appointment_check_in;
pub mod appointment_complete;
pub mod appointment_find;
pub mod appointment_hold;
pub mod appointment_no_show;
pub mod appointment_reschedule;
pub mod broadcast;
pub mod claim_submit;
pub mod definition;
pub mod erase;
pub mod everything;
pub mod export;
pub mod import_835;
pub mod meta;
pub mod reminder_stats;
pub mod secure_message;
pub mod validate;

use axum::http::Method;
use futures::future::BoxFuture;

use crate::app::App;
use crate::error::FhirError;
use crate::ids::{Id, ResourceType};
use crate::rest::request::FhirRequest;
use crate::rest::response::FhirResponse;

/// Where an operation was invoked: on the system, a type, or one resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target<'a> {
    System,
    Type(ResourceType),
    Instance(ResourceType, Id<'a>),
}

impl<'a> Target<'a> {
    /// The resource type, at the type and instance levels.
    pub fn resource_type(self) -> Option<ResourceType> {
        match self {
            Target::System => None,
            Target::Type(resource_type) | Target::Instance(resource_type, _) => Some(resource_type),
        }
    }

    /// The resource id, at the instance level.
    pub fn id(self) -> Option<&'a str> {
        match self {
            Target::Instance(_, id) => Some(id.as_str()),
            _ => None,
        }
    }
}

/// An operation's handler.
pub type Handler = for<'a> fn(
    &'a App,
    &'a FhirRequest,
    Target<'a>,
) -> BoxFuture<'a, Result<FhirResponse, FhirError>>;

/// Every resource type (for `Operation::types`).
pub const ANY_TYPE: &[&str] = &["Resource"];

/// One parameter of an operation, as its OperationDefinition lists it.
pub struct Param {
    pub name: &'static str,
    /// `in` or `out`.
    pub use_: &'static str,
    pub min: u32,
    /// `1`, `*`, ...
    pub max: &'static str,
    /// The FHIR type; `""` for a resource of any type.
    pub type_: &'static str,
    pub documentation: &'static str,
}

/// An input parameter.
pub const fn in_param(
    name: &'static str,
    (min, max): (u32, &'static str),
    type_: &'static str,
    documentation: &'static str,
) -> Param {
    Param {
        name,
        use_: "in",
        min,
        max,
        type_,
        documentation,
    }
}

/// The one output, `return`, of type `type_`.
pub const fn returns(type_: &'static str, documentation: &'static str) -> Param {
    Param {
        name: "return",
        use_: "out",
        min: 1,
        max: "1",
        type_,
        documentation,
    }
}

/// `_since`, as the operations that take it define it.
pub const SINCE: Param = Param {
    name: "_since",
    use_: "in",
    min: 0,
    max: "1",
    type_: "instant",
    documentation: "Only resources updated since this instant",
};

/// An operation the server offers.
pub struct Operation {
    /// The name without `$`.
    pub name: &'static str,
    /// The id of its OperationDefinition, served at `OperationDefinition/[id]`.
    pub id: &'static str,
    /// The OperationDefinition's canonical URL (the spec's, for the spec's operations).
    pub url: &'static str,
    pub title: &'static str,
    pub description: &'static str,
    /// The types it applies to ([`ANY_TYPE`] for all); empty at the system level only.
    pub types: &'static [&'static str],
    pub system: bool,
    pub type_level: bool,
    pub instance: bool,
    /// Whether it changes anything: then only POST invokes it (FHIR allows GET for the
    /// others).
    pub affects_state: bool,
    pub parameters: &'static [Param],
    pub handler: Handler,
}

impl Operation {
    /// Whether the operation may be invoked at `target`.
    fn applies(&self, target: Target<'_>) -> bool {
        let on_type =
            |resource_type: &str| self.types == ANY_TYPE || self.types.contains(&resource_type);
        match target {
            Target::System => self.system,
            Target::Type(resource_type) => self.type_level && on_type(&resource_type),
            Target::Instance(resource_type, _) => self.instance && on_type(&resource_type),
        }
    }

    /// Whether it applies to `resource_type` at the type or instance level.
    pub fn on_type(&self, resource_type: &str) -> bool {
        (self.type_level || self.instance)
            && (self.types == ANY_TYPE || self.types.contains(&resource_type))
    }

    /// The methods that invoke it (for `Allow`).
    pub fn methods(&self) -> &'static str {
        if self.affects_state {
            "POST"
        } else {
            "GET, POST"
        }
    }
}

/// The operations the server offers.
pub static OPERATIONS: &[Operation] = &[
    everything::OPERATION,
    access_log::OPERATION,
    erase::OPERATION,
    export::SYSTEM,
    export::PATIENT,
    export::GROUP,
    claim_submit::OPERATION,
    appointment_find::OPERATION,
    appointment_hold::OPERATION,
    appointment_book::OPERATION,
    appointment_book_series::OPERATION,
    appointment_cancel::OPERATION,
    appointment_arrive::OPERATION,
    appointment_check_in::OPERATION,
    appointment_complete::OPERATION,
    appointment_no_show::OPERATION,
    reminder_stats::OPERATION,
    broadcast::OPERATION,
    broadcast::REPORT,
    appointment_reschedule::OPERATION,
    secure_message::SEND,
    secure_message::MAILBOX,
    secure_message::THREAD,
    import_835::OPERATION,
    validate::OPERATION,
    meta::META,
    meta::META_ADD,
    meta::META_DELETE,
];

/// The operation named `name` (with its `$`) at `target`.
pub fn find(name: &str, target: Target<'_>) -> Option<&'static Operation> {
    let name = name.strip_prefix('$')?;
    OPERATIONS
        .iter()
        .find(|operation| operation.name == name && operation.applies(target))
}

/// Invokes the operation `name` at `target`: 404 when there is none, 405 when it changes
/// state and was not POSTed.
#[tracing::instrument(level = "debug", skip_all, fields(operation = name))]
pub async fn invoke(
    app: &App,
    request: &FhirRequest,
    name: &str,
    target: Target<'_>,
) -> Result<FhirResponse, FhirError> {
    let Some(operation) = find(name, target) else {
        let place = match target {
            Target::System => "the system".to_owned(),
            Target::Type(resource_type) => resource_type.to_string(),
            Target::Instance(resource_type, id) => format!("{resource_type}/{id}"),
        };
        return Err(FhirError::not_supported(format!(
            "Operation {name} is not supported on {place}"
        )));
    };
    let allowed = request.method == Method::POST
        || (request.method == Method::GET && !operation.affects_state);
    if !allowed {
        return Err(FhirError::method_not_allowed(format!(
            "${} is invoked with {}",
            operation.name,
            operation.methods()
        )));
    }
    (operation.handler)(app, request, target).await
}

/// `[base]/$op...`: system-level operations, and the status and files of exports.
pub async fn system(
    app: &App,
    request: &FhirRequest,
    segments: &[&str],
) -> Result<FhirResponse, FhirError> {
    match (segments, &request.method) {
        (["$export-status", id], &Method::GET | &Method::DELETE) => {
            export::status(app, request, id).await
        }
        (["$export-file", id, name], &Method::GET) => export::file(app, request, id, name).await,
        ([operation], _) => invoke(app, request, operation, Target::System).await,
        ([operation, ..], _) => Err(FhirError::not_supported(format!(
            "Operation {operation} is not supported on the system"
        ))),
        ([], _) => Err(FhirError::not_supported("No operation named")),
    }
}

/// 400 naming the input `name` of an operation.
pub fn invalid_input(name: &str, diagnostics: impl Into<String>) -> FhirError {
    FhirError::bad_request(diagnostics).at(format!("Parameters.parameter.where(name = '{name}')"))
}

/// An operation's inputs by name, as text: the URL's, then a POSTed Parameters' (each
/// `value[x]`: a string as it is, a Reference as its reference, anything else as JSON).
/// Parts that carry a resource are the operation's own to read.
pub fn inputs(request: &FhirRequest) -> Result<Vec<(String, String)>, FhirError> {
    let mut inputs = request.params.clone();
    if request.method != Method::POST || request.body.iter().all(u8::is_ascii_whitespace) {
        return Ok(inputs);
    }
    let body = request.parse_body()?;
    if body["resourceType"] != "Parameters" {
        return Err(FhirError::bad_request(
            "The operation takes a Parameters body",
        ));
    }
    for parameter in body["parameter"].as_array().into_iter().flatten() {
        let name = parameter["name"].as_str().unwrap_or_default();
        if parameter.get("resource").is_some() {
            continue;
        }
        let value = parameter.as_object().and_then(|p| {
            p.iter()
                .find(|(key, _)| key.starts_with("value"))
                .map(|(_, value)| match value {
                    serde_json::Value::String(text) => text.clone(),
                    serde_json::Value::Object(reference) => reference
                        .get("reference")
                        .and_then(serde_json::Value::as_str)
                        .unwrap_or_default()
                        .to_owned(),
                    other => other.to_string(),
                })
        });
        match value {
            Some(value) => inputs.push((name.to_owned(), value)),
            None => return Err(invalid_input(name, format!("'{name}' has no value"))),
        }
    }
    Ok(inputs)
}

/// The first input named `name`.
pub fn input<'a>(inputs: &'a [(String, String)], name: &str) -> Option<&'a str> {
    inputs
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
}
