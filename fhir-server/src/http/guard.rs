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
use crate::auth::constraint::{Write, check_write, meets};
use crate::auth::enforce::{Reach, check, forbidden, in_compartment, query_constraint};
use crate::auth::messages::{check_write as check_message_write, writes_directly};
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
    /// A vread or history under a scope's query constraint: each version answered must
    /// meet it (judged in memory, `auth::constraint`), and be in the patient's
    /// compartment when there is one.
    Versions {
        constraint: Vec<(String, String)>,
        patient: Option<String>,
    },
}

/// Lets `request` in or refuses it (403); how far its answer reaches.
pub async fn admit(app: &App, request: &FhirRequest) -> Result<Admitted, FhirError> {
    let principal = request.principal.as_deref();
    if !writes_directly(principal)
        && let Some(resource_type @ ("Communication" | "Binary")) =
            request.segments.first().map(String::as_str)
    {
        let body = match (&request.method, request.segments.len()) {
            (&Method::POST, 1) | (&Method::PUT, 1 | 2) => request.resource(resource_type).ok(),
            _ => None,
        };
        let write = (&request.method, request.segments.as_slice());
        check_message_write(&app.store, request.tenant, principal, write, body.as_ref()).await?;
    }
    let Some((resource_type, permission)) = needs(request) else {
        return Ok(Admitted::All);
    };
    match check(principal, &resource_type, permission) {
        Ok(Reach::All) => Ok(Admitted::All),
        Ok(Reach::Patient(patient)) => {
            admit_patient(app, request, &patient, permission).await?;
            Ok(Admitted::Patient {
                patient,
                extra: Vec::new(),
            })
        }
        Err(refused) => match query_constraint(principal, &resource_type, permission) {
            Some(constraint) => {
                admit_constrained(app, request, (&resource_type, permission), constraint).await
            }
            None => Err(refused),
        },
    }
}

/// What a request is, as a query-constrained scope treats it.
enum Shape<'a> {
    Search,
    /// `GET [type]/[id]`.
    Read(&'a str),
    /// A vread, or the history of an instance or a type.
    Versions,
    Write(Write<'a>),
    /// An operation, a conditional write, a PATCH: not open to such scopes.
    Other,
}

/// The id of a plain read (`GET [type]/[id]`).
fn plain_read(request: &FhirRequest) -> Option<&str> {
    match (request.segments.as_slice(), &request.method) {
        ([_, id], &Method::GET) if !id.starts_with(['$', '_']) => Some(id.as_str()),
        _ => None,
    }
}

fn shape<'a>(
    request: &'a FhirRequest,
    resource: Option<&'a Value>,
    permission: Permission,
) -> Shape<'a> {
    if permission == Permission::Search {
        return Shape::Search;
    }
    if let Some(id) = plain_read(request) {
        return Shape::Read(id);
    }
    let segments: Vec<&str> = request.segments.iter().map(String::as_str).collect();
    if request.method == Method::GET
        && matches!(
            segments.as_slice(),
            [_, "_history"] | [_, _, "_history"] | [_, _, "_history", _]
        )
    {
        return Shape::Versions;
    }
    let if_none_exist = request.header("if-none-exist").is_some();
    match Write::of(&request.method, &request.segments, resource, if_none_exist) {
        Some(write) => Shape::Write(write),
        None => Shape::Other,
    }
}

/// A request that only query-constrained scopes permit
/// (`patient/Observation.rs?category=laboratory`): a search gets the constraint's
/// parameters; a plain read is allowed when the constrained search finds the resource; a
/// vread or a history answers only the versions that meet it; a write must leave a
/// resource that meets it and may only replace or remove one that does. Operations,
/// conditional writes and PATCH (whose result is known only once written) are refused.
async fn admit_constrained(
    app: &App,
    request: &FhirRequest,
    (resource_type, permission): (&str, Permission),
    (context, constraint): (Context, Vec<(String, String)>),
) -> Result<Admitted, FhirError> {
    let patient = match (context, request.principal.as_deref()) {
        (Context::Patient, Some(principal)) => {
            Some(principal.patient.clone().ok_or_else(|| {
                forbidden("The access token has patient/ scopes but no patient in context")
            })?)
        }
        _ => None,
    };
    if let Some(patient) = &patient {
        admit_patient(app, request, patient, permission).await?;
    }
    let body = match (&request.method, request.segments.len()) {
        (&Method::POST, 1) | (&Method::PUT, 2) => Some(request.resource(resource_type)?),
        _ => None,
    };
    let unconstrained = |patient: Option<String>| match patient {
        Some(patient) => Admitted::Patient {
            patient,
            extra: Vec::new(),
        },
        None => Admitted::All,
    };
    match shape(request, body.as_ref(), permission) {
        Shape::Search => Ok(match patient {
            Some(patient) => Admitted::Patient {
                patient,
                extra: constraint,
            },
            None => Admitted::Constrained(constraint),
        }),
        Shape::Read(id) => {
            read_within(app, request, (resource_type, id), &constraint).await?;
            Ok(unconstrained(patient))
        }
        Shape::Versions => Ok(Admitted::Versions {
            constraint,
            patient,
        }),
        Shape::Write(write) => {
            check_write(
                &app.store,
                request.tenant,
                resource_type,
                write,
                &constraint,
            )
            .await?;
            Ok(unconstrained(patient))
        }
        Shape::Other => Err(forbidden(
            "A scope with a query constraint does not cover operations, conditional writes or PATCH",
        )),
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
        // These confine a patient's token to its own patient themselves.
        ["Appointment", "$hold" | "$book"] | ["Communication", "$send-message"] => Ok(()),
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
/// gone and cannot be placed). `matches_inside`: the Bundle is a compartment search's,
/// whose `match` entries need no check.
pub fn confine(
    response: FhirResponse,
    patient: &str,
    matches_inside: bool,
) -> Result<FhirResponse, FhirError> {
    retain(response, matches_inside, |value| {
        in_compartment(patient, value)
    })
}

/// Keeps of an answer (a vread, a history) only the versions that meet a scope's query
/// constraint: a single one that does not is 404, a Bundle loses the others (and
/// deletions, which cannot be judged).
pub fn meeting(
    response: FhirResponse,
    constraint: &[(String, String)],
) -> Result<FhirResponse, FhirError> {
    retain(response, false, |value| {
        let resource_type = value["resourceType"].as_str().unwrap_or_default();
        meets(resource_type, value, constraint) == Ok(true)
    })
}

/// Keeps out of an answer the resources of types its principal may not read, where an
/// answer can hold types other than the one admitted: what `_include` and `_revinclude`
/// add, a system-level search or history, and an operation's Bundle (`$everything`). A
/// user's role bounds them all, and AuditEvent stays outside every wildcard scope. A
/// read, a vread or the history of one type need no check (their type was admitted); a
/// batch's or transaction's entries were each admitted.
pub fn readable_only(
    request: &FhirRequest,
    response: FhirResponse,
) -> Result<FhirResponse, FhirError> {
    let Some(principal) = request.principal.as_deref() else {
        return Ok(response);
    };
    if !matches!(response.payload, Some(Payload::Bundle(_)))
        || crate::auth::enforce::reads_every_type(principal)
    {
        return Ok(response);
    }
    let segments: Vec<&str> = request.segments.iter().map(String::as_str).collect();
    let matches_admitted = match (segments.as_slice(), &request.method) {
        ([], &Method::GET) => false,
        ([], _) => return Ok(response),
        ([first, ..], _) if first.starts_with('$') || *first == "_history" => false,
        ([.., last], _) if last.starts_with('$') => false,
        ([_, _, "_history", ..] | [_, "_history"], _) => return Ok(response),
        _ => true,
    };
    retain(response, matches_admitted, |value| {
        let resource_type = value["resourceType"].as_str().unwrap_or_default();
        check(Some(principal), resource_type, Permission::Read).is_ok()
    })
}

/// An answer without the resources `keep` does not keep (a single one is 404).
pub fn keep_only(
    response: FhirResponse,
    keep: impl Fn(&Value) -> bool,
) -> Result<FhirResponse, FhirError> {
    retain(response, false, keep)
}

/// An answer with only the resources `keep` keeps (answers that are not data, such as an
/// OperationOutcome, pass): a single resource it does not keep is 404; a Bundle loses
/// those entries, and its total, which would count them.
fn retain(
    response: FhirResponse,
    matches_kept: bool,
    keep: impl Fn(&Value) -> bool,
) -> Result<FhirResponse, FhirError> {
    let FhirResponse {
        status,
        headers,
        payload,
    } = response;
    let payload = match payload {
        Some(Payload::Stored(bytes)) => {
            let value: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
            if is_data(&value) && !keep(&value) {
                return Err(not_found());
            }
            Some(Payload::Stored(bytes))
        }
        Some(Payload::Value(value)) => {
            if is_data(&value) && !keep(&value) {
                return Err(not_found());
            }
            Some(Payload::Value(value))
        }
        Some(Payload::Bundle(bundle)) => Some(Payload::Bundle(Box::new(retain_entries(
            *bundle,
            matches_kept,
            &keep,
        )))),
        other => other,
    };
    Ok(FhirResponse {
        status,
        headers,
        payload,
    })
}

/// `matches_kept`: the Bundle's `match` entries are kept without a check.
fn retain_entries(
    mut bundle: Bundle,
    matches_kept: bool,
    keep: &impl Fn(&Value) -> bool,
) -> Bundle {
    let before = bundle.entries.len();
    bundle.entries.retain(|entry| {
        let mode = entry
            .rest
            .get("search")
            .and_then(|search| search.get("mode"));
        if matches_kept && mode.is_some_and(|mode| mode == "match") {
            return true;
        }
        let value = match &entry.resource {
            Some(Resource::Stored(bytes)) => serde_json::from_slice(bytes).unwrap_or(Value::Null),
            Some(Resource::Value(value)) => value.clone(),
            // A history entry of a deletion cannot be placed; a batch answer was confined
            // when its entry ran.
            None => return !entry.rest.contains_key("request"),
        };
        !is_data(&value) || keep(&value)
    });
    // A total counted over more than what is kept would disclose the others.
    if bundle.entries.len() != before {
        bundle.shell.remove("total");
    }
    bundle
}

fn not_found() -> FhirError {
    FhirError::not_found("No such resource")
}
