//! Which interaction a request is, from its method and path below the FHIR base.
//!
//! FHIR's URL space is small and regular (`[type]`, `[type]/[id]`, `.../_history/[vid]`,
//! `_search`, `_history`, `metadata`), so it is matched here in one place rather than spread
//! over router patterns; an interaction file only sees requests that are its own.

use axum::http::Method;

use super::guard::Admitted;
use crate::app::App;
use crate::error::FhirError;
use crate::ids::{Id, ResourceType};
use crate::interaction::{
    create, delete, history, patch, read, search, transaction, update, vread,
};
use crate::ops::Target;
use crate::rest::request::FhirRequest;
use crate::rest::response::FhirResponse;

/// [`dispatch`] as the batch and transaction handler takes it (see
/// `interaction::transaction::Dispatch`): it answers each entry as the same request sent
/// alone, and is given the router rather than importing the layer above it.
fn dispatch_boxed<'a>(
    app: &'a App,
    request: &'a FhirRequest,
) -> futures::future::BoxFuture<'a, Result<FhirResponse, FhirError>> {
    Box::pin(dispatch(app, request))
}

/// Answers `request` once the gate (`guard`) lets it in; a patient's token gets its
/// searches run in the patient's compartment and its answers confined to it; no answer
/// holds a resource of a type the token may not read, nor a secure message (or its
/// attachment) whose thread is closed to a member of staff (`secure`); an attachment is
/// read as the resource it belongs to.
pub async fn dispatch(app: &App, request: &FhirRequest) -> Result<FhirResponse, FhirError> {
    let audited_before = crate::store::provenance::with_current(|a| {
        a.map_or(0, |a| a.audited.load(std::sync::atomic::Ordering::Relaxed))
    });
    let answered = answer(app, request).await;
    super::audit::record(app, request, &answered, audited_before);
    answered
}

async fn answer(app: &App, request: &FhirRequest) -> Result<FhirResponse, FhirError> {
    if let [patient_type, _, operation] = request.segments.as_slice()
        && patient_type == "Patient"
        && operation == "$access-log"
    {
        // A patient's accounting is AuditEvents, which no wildcard scope reads: the
        // operation decides who may have it (`ops::access_log`), once the gate let the
        // request reach the patient.
        super::guard::admit(app, request).await?;
        return route(app, request).await;
    }
    if let Some(response) = super::secure::attachment(app, request).await? {
        return Ok(response);
    }
    let response = admitted(app, request).await?;
    let response = super::guard::readable_only(request, response)?;
    super::secure::seen_only(app, request, response).await
}

async fn admitted(app: &App, request: &FhirRequest) -> Result<FhirResponse, FhirError> {
    match super::guard::admit(app, request).await? {
        Admitted::All => route(app, request).await,
        Admitted::Constrained(extra) => route(app, &request.with_params(&extra)).await,
        Admitted::Patient { patient, extra } => match search_type(request) {
            Some(resource_type) => {
                let request = request.with_params(&extra);
                let response =
                    search_in_compartment(app, &request, resource_type, &patient).await?;
                // The matches of a compartment search are the patient's by construction;
                // only what `_include` and `_revinclude` added needs checking.
                let matches_inside = resource_type == "Patient"
                    || !fhir_model::compartment::patient_compartment_params(&resource_type)
                        .is_empty();
                super::guard::confine(response, &patient, matches_inside)
            }
            None => super::guard::confine(route(app, request).await?, &patient, false),
        },
        Admitted::Versions {
            constraint,
            patient,
        } => {
            let mut response = route(app, request).await?;
            if let Some(patient) = &patient {
                response = super::guard::confine(response, patient, false)?;
            }
            super::guard::meeting(response, &constraint)
        }
    }
}

/// The type a type-level search is of.
fn search_type(request: &FhirRequest) -> Option<ResourceType> {
    match (request.segments.as_slice(), &request.method) {
        ([resource_type], &Method::GET) => ResourceType::parse(resource_type),
        ([resource_type, search], &Method::POST) if search == "_search" => {
            ResourceType::parse(resource_type)
        }
        _ => None,
    }
}

/// A patient's search: the Patient compartment's search (`Patient/{id}/{type}`), so that
/// paging and totals count the patient's resources only; the patient itself by `_id`.
async fn search_in_compartment(
    app: &App,
    request: &FhirRequest,
    resource_type: ResourceType,
    patient: &str,
) -> Result<FhirResponse, FhirError> {
    if resource_type == "Patient" {
        let own = request.with_params(&[("_id".to_owned(), patient.to_owned())]);
        return search::handle(app, &own, resource_type).await;
    }
    if fhir_model::compartment::patient_compartment_params(&resource_type).is_empty() {
        // Nothing of this type is in a compartment: the confinement leaves none.
        return search::handle(app, request, resource_type).await;
    }
    let patient_type = ResourceType::from_path("Patient")?;
    search::compartment(
        app,
        request,
        patient_type,
        Id::parse(patient)?,
        resource_type,
    )
    .await
}

pub(super) async fn route(app: &App, request: &FhirRequest) -> Result<FhirResponse, FhirError> {
    let segments: Vec<&str> = request.segments.iter().map(String::as_str).collect();
    let method = &request.method;
    match segments.as_slice() {
        [] => match *method {
            Method::POST => transaction::handle(app, request, dispatch_boxed).await,
            _ => Err(not_allowed(method, "the base URL")),
        },
        ["metadata"] => match *method {
            Method::GET => Ok(super::capabilities::handle(
                request,
                app.config.auth == crate::config::AuthMode::Smart,
            )),
            _ => Err(not_allowed(method, "metadata")),
        },
        [operation, ..] if operation.starts_with('$') => {
            crate::ops::system(app, request, &segments).await
        }
        ["_history"] => match *method {
            Method::GET => history::handle(app, request, None, None).await,
            _ => Err(not_allowed(method, "_history")),
        },
        ["AuditEvent", rest @ ..] => super::audit_events::handle(app, request, rest).await,
        [resource_type, rest @ ..] => {
            let resource_type = ResourceType::from_path(resource_type)?;
            on_type(app, request, resource_type, rest).await
        }
    }
}

/// `[type]...`: the type-level interactions, or on to one resource.
async fn on_type(
    app: &App,
    request: &FhirRequest,
    resource_type: ResourceType,
    rest: &[&str],
) -> Result<FhirResponse, FhirError> {
    let method = &request.method;
    match (rest, method) {
        ([], &Method::GET) => search::handle(app, request, resource_type).await,
        ([], &Method::POST) => create::handle(app, request, resource_type).await,
        ([], &Method::PUT) => update::conditional(app, request, resource_type).await,
        ([], &Method::PATCH) => patch::conditional(app, request, resource_type).await,
        ([], &Method::DELETE) => delete::conditional(app, request, resource_type).await,
        (["_search"], &Method::POST) => search::handle(app, request, resource_type).await,
        (["_history"], &Method::GET) => {
            history::handle(app, request, Some(resource_type), None).await
        }
        ([id, rest @ ..], _) if !id.starts_with('$') && !id.starts_with('_') => {
            on_instance(app, request, (resource_type, Id::parse(id)?), rest).await
        }
        ([operation], _) if operation.starts_with('$') => {
            let target = Target::Type(resource_type);
            crate::ops::invoke(app, request, operation, target).await
        }
        ([op, ..], _) if op.starts_with('$') => Err(FhirError::not_supported(format!(
            "Operation {op} is not supported on {resource_type}"
        ))),
        ([] | ["_search"] | ["_history"], _) => Err(not_allowed(method, &resource_type)),
        _ => Err(unknown_path(request)),
    }
}

/// `[type]/[id]...`: the instance-level interactions, operations and compartments.
async fn on_instance(
    app: &App,
    request: &FhirRequest,
    (resource_type, id): (ResourceType, Id<'_>),
    rest: &[&str],
) -> Result<FhirResponse, FhirError> {
    let method = &request.method;
    let own_definition = resource_type == "OperationDefinition";
    match (rest, method) {
        ([], &Method::GET) if own_definition => {
            crate::ops::definition::read(app, request, id).await
        }
        ([], _) if own_definition && crate::ops::definition::is_reserved(&id) => {
            Err(FhirError::conflict(format!(
                "OperationDefinition/{id} is the server's own definition of one of its operations; it cannot be changed"
            )))
        }
        ([], &Method::GET) => read::handle(app, request, resource_type, id).await,
        ([], &Method::PUT) => update::handle(app, request, resource_type, id).await,
        ([], &Method::PATCH) => patch::handle(app, request, resource_type, id).await,
        ([], &Method::DELETE) => delete::handle(app, request, resource_type, id).await,
        (["_history"], &Method::GET) => {
            history::handle(app, request, Some(resource_type), Some(id)).await
        }
        (["_history", version], &Method::GET) => {
            vread::handle(app, request, resource_type, id, version).await
        }
        ([operation], _) if operation.starts_with('$') => {
            let target = Target::Instance(resource_type, id);
            crate::ops::invoke(app, request, operation, target).await
        }
        ([compartment_type], &Method::GET) if !compartment_type.starts_with(['_', '$']) => {
            let compartment_type = ResourceType::from_path(compartment_type)?;
            search::compartment(app, request, resource_type, id, compartment_type).await
        }
        ([] | ["_history"] | ["_history", _], _) => {
            Err(not_allowed(method, &format!("{resource_type}/{id}")))
        }
        _ => Err(unknown_path(request)),
    }
}

/// What a request is, for its log span: the FHIR interaction (`read`, `search-type`, ...)
/// or `operation` (the operation's name is in the path, which the log also has).
pub fn interaction_name(method: &Method, segments: &[String]) -> &'static str {
    let segments: Vec<&str> = segments.iter().map(String::as_str).collect();
    let is_op = |s: &str| s.starts_with('$');
    match (segments.as_slice(), method) {
        ([], &Method::POST) => "transaction",
        (["metadata"], _) => "capabilities",
        (["_history"], _) => "history-system",
        ([first, ..], _) if is_op(first) => "operation",
        ([_], &Method::GET) | ([_, "_search"], _) => "search-type",
        ([_], &Method::POST) => "create",
        ([_], &Method::PUT) => "update",
        ([_], &Method::PATCH) => "patch",
        ([_], &Method::DELETE) => "delete",
        ([_, "_history"], _) => "history-type",
        ([_, op], _) | ([_, _, op], _) if is_op(op) => "operation",
        ([_, _], &Method::GET) => "read",
        ([_, _], &Method::PUT) => "update",
        ([_, _], &Method::PATCH) => "patch",
        ([_, _], &Method::DELETE) => "delete",
        ([_, _, "_history"], _) => "history-instance",
        ([_, _, "_history", _], _) => "vread",
        ([_, _, _], _) => "search-compartment",
        _ => "unknown",
    }
}

/// The methods the path of `request` answers to, for the `Allow` header of a 405.
pub fn allowed_methods(request: &FhirRequest) -> String {
    let segments: Vec<&str> = request.segments.iter().map(String::as_str).collect();
    let operation = |name: &str, target: Option<Target<'_>>| {
        target
            .and_then(|target| crate::ops::find(name, target))
            .map_or("GET, POST", |op| op.methods())
    };
    let on_type = |resource_type: &str| ResourceType::parse(resource_type).map(Target::Type);
    let on_instance = |resource_type: &str, id| {
        let id = Id::parse(id).ok()?;
        ResourceType::parse(resource_type).map(|resource_type| Target::Instance(resource_type, id))
    };
    let methods = match segments.as_slice() {
        [] => "POST",
        ["metadata"] | ["_history"] => "GET",
        ["$export-status", _] => "GET, DELETE",
        ["$export-file", ..] => "GET",
        [name] if name.starts_with('$') => operation(name, Some(Target::System)),
        [_] => "GET, POST, PUT, PATCH, DELETE",
        [_, "_search"] => "POST",
        [resource_type, name] if name.starts_with('$') => operation(name, on_type(resource_type)),
        [_, "_history"] => "GET",
        [_, _] => "GET, PUT, PATCH, DELETE",
        [resource_type, id, name] if name.starts_with('$') => {
            operation(name, on_instance(resource_type, id))
        }
        _ => "GET",
    };
    methods.to_owned()
}

fn not_allowed(method: &Method, what: &str) -> FhirError {
    FhirError::method_not_allowed(format!("{method} is not allowed on {what}"))
}

fn unknown_path(request: &FhirRequest) -> FhirError {
    FhirError::not_found(format!(
        "No FHIR endpoint at /{}",
        request.segments.join("/")
    ))
}
