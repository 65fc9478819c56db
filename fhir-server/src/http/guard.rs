//! The gate every FHIR request passes (batch entries and a transaction's reads included,
//! as they are dispatched the same way): what the request does, as a permission on a
//! resource type; whether the principal's token covers it (`auth::enforce`); and, for a
//! patient's token, the answer confined to the patient's compartment.
//!
//! Writes by a patient's token must stay inside the compartment too: the resource sent,
//! and the one it replaces or removes (`check_write`).

use axum::http::Method;
use serde_json::Value;
use smart_auth::scope::{Context, Permission};

use crate::app::App;
use crate::auth::enforce::{Reach, check, forbidden, in_compartment, search_constraint};
use crate::error::FhirError;
use crate::ids::{Id, ResourceType};
use crate::ops::Target;
use crate::rest::bundle::{Bundle, Resource};
use crate::rest::format::Payload;
use crate::rest::request::FhirRequest;
use crate::rest::response::FhirResponse;

/// The type only wildcard scopes (and roles over every type) cover: what a system-level
/// request (the history of everything, a system-level operation) needs.
pub const EVERY_TYPE: &str = "*";

/// The permission an operation needs: to read, unless it changes something.
fn operation(name: &str, target: Target<'_>) -> Permission {
    match crate::ops::find(name, target) {
        Some(op) if !op.affects_state => Permission::Read,
        _ => Permission::Create,
    }
}

/// What `request` does: the type it acts on and the permission it needs; `None` when it
/// needs none (the CapabilityStatement; a Bundle, whose entries are each checked).
pub fn needs(request: &FhirRequest) -> Option<(String, Permission)> {
    let segments: Vec<&str> = request.segments.iter().map(String::as_str).collect();
    let (resource_type, rest) = match segments.as_slice() {
        // An export's status and files: its owner's alone (checked by the operation).
        [] | ["metadata"] | ["$export-status" | "$export-file", ..] => return None,
        [name, ..] if name.starts_with('$') => {
            return Some((EVERY_TYPE.into(), operation(name, Target::System)));
        }
        ["_history"] => return Some((EVERY_TYPE.into(), Permission::Read)),
        [resource_type, rest @ ..] => (*resource_type, rest),
    };
    let typed = ResourceType::parse(resource_type);
    let method = &request.method;
    let permission = match rest {
        [] => match *method {
            Method::POST => Permission::Create,
            Method::PUT | Method::PATCH => Permission::Update,
            Method::DELETE => Permission::Delete,
            _ => Permission::Search,
        },
        ["_search"] => Permission::Search,
        [name] if name.starts_with('$') => match typed {
            Some(typed) => operation(name, Target::Type(typed)),
            None => Permission::Read,
        },
        [id, name] if name.starts_with('$') => match (typed, Id::parse(id)) {
            (Some(typed), Ok(id)) => operation(name, Target::Instance(typed, id)),
            _ => Permission::Read,
        },
        [_] => match *method {
            Method::PUT | Method::PATCH => Permission::Update,
            Method::DELETE => Permission::Delete,
            _ => Permission::Read,
        },
        [_, "_history", ..] => Permission::Read,
        [_, compartment_type] => {
            return Some(((*compartment_type).to_owned(), Permission::Search));
        }
        _ => Permission::Read,
    };
    Some((resource_type.to_owned(), permission))
}

/// How a request was let in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Admitted {
    /// As asked.
    All,
    /// As a search that must also meet these parameters (a scope's query constraint).
    Constrained(Vec<(String, String)>),
    /// Confined to this patient's compartment, and to `extra` search parameters (a
    /// patient/ scope's query constraint).
    Patient {
        patient: String,
        extra: Vec<(String, String)>,
    },
}

/// Lets `request` in or refuses it (403); how far its answer reaches.
pub async fn admit(app: &App, request: &FhirRequest) -> Result<Admitted, FhirError> {
    let principal = request.principal.as_deref();
    let Some((resource_type, permission)) = needs(request) else {
        return Ok(Admitted::All);
    };
    let (reach, extra) = match check(principal, &resource_type, permission) {
        Ok(reach) => (reach, Vec::new()),
        Err(refused) => {
            let read = plain_read(request);
            let constrained = (permission == Permission::Search || read.is_some())
                .then(|| search_constraint(principal, &resource_type, permission))
                .flatten();
            match (constrained, principal, read) {
                (Some((context, extra)), Some(principal), Some(id)) => {
                    read_within(app, request, (&resource_type, id), &extra).await?;
                    match context {
                        Context::Patient => (
                            Reach::Patient(principal.patient.clone().ok_or(refused)?),
                            Vec::new(),
                        ),
                        _ => (Reach::All, Vec::new()),
                    }
                }
                (Some((Context::Patient, extra)), Some(principal), None) => {
                    let patient = principal.patient.clone().ok_or(refused)?;
                    (Reach::Patient(patient), extra)
                }
                (Some((_, extra)), _, _) => return Ok(Admitted::Constrained(extra)),
                (None, _, _) => return Err(refused),
            }
        }
    };
    match reach {
        Reach::All => Ok(Admitted::All),
        Reach::Patient(patient) => {
            admit_patient(app, request, &patient, permission).await?;
            Ok(Admitted::Patient { patient, extra })
        }
    }
}

/// The id of a plain read (`GET [type]/[id]`).
fn plain_read(request: &FhirRequest) -> Option<&str> {
    match (request.segments.as_slice(), &request.method) {
        ([_, id], &Method::GET) if !id.starts_with(['$', '_']) => Some(id.as_str()),
        _ => None,
    }
}

/// A read under a scope's query constraint (`patient/Observation.rs?category=laboratory`):
/// allowed when the resource is among what the constrained search `[type]?_id=[id]&...`
/// finds (run with the server's rights), else 404 as if it did not exist.
async fn read_within(
    app: &App,
    request: &FhirRequest,
    (resource_type, id): (&str, &str),
    constraint: &[(String, String)],
) -> Result<(), FhirError> {
    let typed = ResourceType::from_path(resource_type)?;
    let mut params = vec![("_id".to_owned(), id.to_owned())];
    params.extend_from_slice(constraint);
    let probe = FhirRequest {
        tenant: request.tenant,
        base: request.base.clone(),
        method: Method::GET,
        segments: vec![resource_type.to_owned()],
        params,
        headers: axum::http::HeaderMap::new(),
        body: bytes::Bytes::new(),
        principal: None,
    };
    let found = crate::interaction::search::handle(app, &probe, typed).await?;
    let matched = match &found.payload {
        Some(Payload::Bundle(bundle)) => !bundle.entries.is_empty(),
        _ => false,
    };
    if matched {
        Ok(())
    } else {
        Err(FhirError::not_found("No such resource"))
    }
}

/// What a patient's token may not do even where its scopes allow the type: act outside
/// the patient's compartment, or use the conditional and system-level forms whose reach
/// cannot be confined beforehand.
async fn admit_patient(
    app: &App,
    request: &FhirRequest,
    patient: &str,
    permission: Permission,
) -> Result<(), FhirError> {
    let segments: Vec<&str> = request.segments.iter().map(String::as_str).collect();
    match segments.as_slice() {
        [name, ..] if name.starts_with('$') => Err(forbidden(
            "System-level operations need a user/ or system/ scope",
        )),
        ["Patient", id, ..] if *id != patient && !id.starts_with(['$', '_']) => {
            Err(FhirError::not_found("No such resource"))
        }
        // A patient's export covers the patient's compartment only (see `ops::export`).
        ["Patient", "$export"] | ["Group", _, "$export"] => Ok(()),
        [_, name] if name.starts_with('$') && permission != Permission::Read => Err(forbidden(
            "Type-level operations that change data need a user/ or system/ scope",
        )),
        [_, name] if name.starts_with('$') => Ok(()),
        [resource_type, id, name] if name.starts_with('$') => {
            inside_or_not_found(app, request, patient, (resource_type, id), false).await
        }
        [resource_type] if permission == Permission::Create => {
            let resource = request.resource(resource_type)?;
            outside_unless(in_compartment(patient, &resource))
        }
        [_] if permission != Permission::Search => Err(forbidden(
            "Conditional writes are not open to patient/ scopes",
        )),
        [resource_type, id] if permission != Permission::Read => {
            if permission == Permission::Update && request.method == Method::PUT {
                let resource = request.resource(resource_type)?;
                outside_unless(in_compartment(patient, &resource))?;
            }
            // Nothing there yet: a PUT may create it (its body was checked).
            let creates = request.method == Method::PUT;
            inside_or_not_found(app, request, patient, (resource_type, id), creates).await
        }
        _ => Ok(()),
    }
}

/// 404 unless the current `resource_type/id` is in the patient's compartment (or, when
/// `absent_ok`, there is none).
async fn inside_or_not_found(
    app: &App,
    request: &FhirRequest,
    patient: &str,
    (resource_type, id): (&str, &str),
    absent_ok: bool,
) -> Result<(), FhirError> {
    let current = app.store.read(request.tenant, resource_type, id).await?;
    let inside = match current.and_then(|v| v.body) {
        Some(body) => serde_json::from_slice::<Value>(&body)
            .is_ok_and(|value| in_compartment(patient, &value)),
        None => absent_ok,
    };
    if inside {
        Ok(())
    } else {
        Err(FhirError::not_found("No such resource"))
    }
}

fn outside_unless(inside: bool) -> Result<(), FhirError> {
    if inside {
        Ok(())
    } else {
        Err(forbidden(
            "A patient/ scope may only write resources in the patient's compartment",
        ))
    }
}

/// What a resource is, for the confinement check: not a resource of the patient's data
/// (an OperationOutcome, Parameters or a Bundle answered by an operation pass through).
fn is_data(resource: &Value) -> bool {
    !matches!(
        resource["resourceType"].as_str(),
        Some("OperationOutcome" | "Parameters" | "Bundle") | None
    )
}

/// Confines an answer to a patient's compartment: a single resource outside it is 404;
/// a Bundle loses the entries outside it (and deletions in history, whose resource is
/// gone and cannot be placed).
pub fn confine(
    response: FhirResponse,
    patient: &str,
    matches_inside: bool,
) -> Result<FhirResponse, FhirError> {
    let FhirResponse {
        status,
        headers,
        payload,
    } = response;
    let payload = match payload {
        Some(Payload::Stored(bytes)) => {
            let value: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
            if is_data(&value) && !in_compartment(patient, &value) {
                return Err(not_found());
            }
            Some(Payload::Stored(bytes))
        }
        Some(Payload::Value(value)) => {
            if is_data(&value) && !in_compartment(patient, &value) {
                return Err(not_found());
            }
            Some(Payload::Value(value))
        }
        Some(Payload::Bundle(bundle)) => Some(Payload::Bundle(Box::new(confine_bundle(
            *bundle,
            patient,
            matches_inside,
        )))),
        other => other,
    };
    Ok(FhirResponse {
        status,
        headers,
        payload,
    })
}

/// `matches_inside`: the Bundle is a compartment search's, whose `match` entries need no
/// check.
fn confine_bundle(mut bundle: Bundle, patient: &str, matches_inside: bool) -> Bundle {
    let before = bundle.entries.len();
    bundle.entries.retain(|entry| {
        let mode = entry
            .rest
            .get("search")
            .and_then(|search| search.get("mode"));
        if matches_inside && mode.is_some_and(|mode| mode == "match") {
            return true;
        }
        let value = match &entry.resource {
            Some(Resource::Stored(bytes)) => serde_json::from_slice(bytes).unwrap_or(Value::Null),
            Some(Resource::Value(value)) => value.clone(),
            // A history entry of a deletion cannot be placed; a batch answer was confined
            // when its entry ran.
            None => return !entry.rest.contains_key("request"),
        };
        !is_data(&value) || in_compartment(patient, &value)
    });
    // A total counted over more than the patient's resources would disclose the others.
    if bundle.entries.len() != before {
        bundle.shell.remove("total");
    }
    bundle
}

fn not_found() -> FhirError {
    FhirError::not_found("No such resource")
}
