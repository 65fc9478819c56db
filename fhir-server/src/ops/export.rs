//! Bulk Data export (FHIR Bulk Data Access 2.0, https://hl7.org/fhir/uv/bulkdata/export.html):
//! `[base]/$export`, `[base]/Patient/$export` and `[base]/Group/[id]/$export` start an
//! asynchronous export (202 with `Content-Location`); `[base]/$export-status/[job]` reports
//! its progress (202, `X-Progress`), its manifest (200) or its failure; `DELETE` on it
//! cancels; `[base]/$export-file/[job]/[Type].ndjson` serves a file. The work is a job of
//! `jobs`, which survives a restart.

use axum::http::header::{CONTENT_LOCATION, RETRY_AFTER};
use axum::http::{HeaderName, Method, StatusCode};
use serde_json::{Value, json};

use super::{Operation, Param};
use smart_auth::scope::Permission;

use crate::app::App;
use crate::auth::enforce::{self, Reach};
use crate::error::FhirError;
use crate::ids::ResourceType;
use crate::jobs::export::Scope;
use crate::jobs::{self, ExportJob, Status};
use crate::rest::format::Payload;
use crate::rest::request::FhirRequest;
use crate::rest::response::FhirResponse;

/// The formats `_outputFormat` may name; all mean FHIR NDJSON.
const NDJSON: &[&str] = &["application/fhir+ndjson", "application/ndjson", "ndjson"];

/// The most patients a Group export names: each page's query lists them all, and the
/// databases bind at most 32,766 (SQLite) and 65,535 (PostgreSQL) values per statement.
const MAX_GROUP_MEMBERS: usize = 20_000;

/// The parameters of every level of `$export`.
const EXPORT_PARAMETERS: &[Param] = &[
    Param {
        name: "_outputFormat",
        use_: "in",
        min: 0,
        max: "1",
        type_: "string",
        documentation: "application/fhir+ndjson (the default and only format)",
    },
    super::SINCE,
    Param {
        name: "_type",
        use_: "in",
        min: 0,
        max: "*",
        type_: "string",
        documentation: "Only resources of these types (comma-separated)",
    },
];

/// `[base]/$export`.
pub const SYSTEM: Operation = Operation {
    name: "export",
    id: "export",
    url: "http://hl7.org/fhir/uv/bulkdata/OperationDefinition/export",
    title: "FHIR Bulk Data System Level Export",
    description: "Every resource of the tenant as NDJSON files, one per type; asynchronous (Prefer: respond-async).",
    types: &[],
    system: true,
    type_level: false,
    instance: false,
    affects_state: false,
    parameters: EXPORT_PARAMETERS,
    handler: |app, request, _| Box::pin(kick_off(app, request, "system", None)),
};

/// `Patient/$export`.
pub const PATIENT: Operation = Operation {
    name: "export",
    id: "patient-export",
    url: "http://hl7.org/fhir/uv/bulkdata/OperationDefinition/patient-export",
    title: "FHIR Bulk Data Patient Level Export",
    description: "Every patient's compartment as NDJSON files; asynchronous (Prefer: respond-async).",
    types: &["Patient"],
    system: false,
    type_level: true,
    instance: false,
    affects_state: false,
    parameters: EXPORT_PARAMETERS,
    handler: |app, request, _| Box::pin(kick_off(app, request, "Patient", None)),
};

/// `Group/[id]/$export`.
pub const GROUP: Operation = Operation {
    name: "export",
    id: "group-export",
    url: "http://hl7.org/fhir/uv/bulkdata/OperationDefinition/group-export",
    title: "FHIR Bulk Data Group Level Export",
    description: "The compartments of a Group's patients as NDJSON files; asynchronous (Prefer: respond-async).",
    types: &["Group"],
    system: false,
    type_level: false,
    instance: true,
    affects_state: false,
    parameters: EXPORT_PARAMETERS,
    handler: |app, request, target| Box::pin(kick_off(app, request, "Group", target.id())),
};

/// Kick-off. `level` is `system`, `Patient` or `Group`; `group` the Group's id for a group
/// export.
pub async fn kick_off(
    app: &App,
    request: &FhirRequest,
    level: &str,
    group: Option<&str>,
) -> Result<FhirResponse, FhirError> {
    if !asks_respond_async(request) {
        return Err(FhirError::bad_request(
            "$export runs asynchronously: send 'Prefer: respond-async'",
        ));
    }
    let Selection { types, since } = parse_selection(&parameters(request)?)?;
    let types = readable(request, types)?;
    let scope = confine(request, export_scope(app, request, level, group).await?)?;
    let types = without_secure_messages(app, request, &scope, types).await?;
    let job = ExportJob {
        tenant: request.tenant,
        scope,
        types,
        since,
        request: format!("{}/{}", request.base, request.segments.join("/"))
            + &query_string(&request.params),
        base: request.base.clone(),
        transaction_time: crate::resource::now_micros(),
        progress: "queued".into(),
        output: Vec::new(),
        error: None,
        attempt: None,
        requested_by: request.principal.as_ref().map(|p| p.holder()),
    };
    let id = jobs::queue(&app.store, &job).await?;
    Ok(FhirResponse::new(StatusCode::ACCEPTED, None).header(
        CONTENT_LOCATION,
        &format!("{}/$export-status/{id}", request.base),
    ))
}

/// Whether the request has `Prefer: respond-async`, which Bulk Data requires of a
/// kick-off: the answer is a 202 with a status URL, not the data.
fn asks_respond_async(request: &FhirRequest) -> bool {
    request.header("prefer").is_some_and(|p| {
        p.split([',', ';'])
            .any(|part| part.trim() == "respond-async")
    })
}

/// What the kick-off parameters ask for: the resource types (none means all) and the
/// `_since` instant (microseconds).
struct Selection {
    types: Vec<String>,
    since: Option<i64>,
}

/// Reads the kick-off parameters into a [`Selection`]. An output format other than NDJSON
/// and the optional parameters this server does not implement are refused, not ignored:
/// the client would otherwise get a different export than it asked for.
fn parse_selection(parameters: &[(String, String)]) -> Result<Selection, FhirError> {
    let mut types: Vec<String> = Vec::new();
    let mut since = None;
    for (name, value) in parameters {
        match name.as_str() {
            "_outputFormat" if !NDJSON.contains(&value.replace(' ', "+").as_str()) => {
                return Err(FhirError::bad_request(format!(
                    "_outputFormat '{value}' is not supported: this server writes application/fhir+ndjson"
                )));
            }
            "_type" => add_types(&mut types, value)?,
            "_since" => {
                since = Some(crate::resource::parse_instant(value).ok_or_else(|| {
                    FhirError::bad_request(format!(
                        "_since must be an instant with a time zone, not '{value}'"
                    ))
                })?);
            }
            "_typeFilter" | "_elements" | "includeAssociatedData" | "patient" => {
                return Err(FhirError::not_supported(format!(
                    "The $export parameter {name} is not supported"
                )));
            }
            _ => {}
        }
    }
    Ok(Selection { types, since })
}

/// Adds the types of one `_type` value (comma-separated) to `types`, each once. An unknown
/// type is an error rather than a silently missing file.
fn add_types(types: &mut Vec<String>, value: &str) -> Result<(), FhirError> {
    for resource_type in value.split(',').map(str::trim) {
        if ResourceType::parse(resource_type).is_none() {
            return Err(FhirError::bad_request(format!(
                "_type names an unknown resource type '{resource_type}'"
            )));
        }
        if !types.iter().any(|t| t == resource_type) {
            types.push(resource_type.to_owned());
        }
    }
    Ok(())
}

/// The types a user's export holds: never Communication and Binary, since secure
/// messages and their attachments are open to them thread by thread
/// (`workflows::messaging::secure::access`), which a file of every resource cannot
/// follow; but a patient's export of their own compartment (their threads) holds them, and
/// an admin's, a backend's or the server's every type asked (none: all).
async fn without_secure_messages(
    app: &App,
    request: &FhirRequest,
    scope: &Scope,
    mut types: Vec<String>,
) -> Result<Vec<String>, FhirError> {
    use crate::workflows::messaging::secure::access::Reader;
    let own_compartment = match (Reader::of(request.principal.as_deref()), scope) {
        (Reader::Patient(own), Scope::Patients(Some(members))) => members.iter().all(|m| *m == own),
        _ => false,
    };
    if Reader::of(request.principal.as_deref()) == Reader::Everyone || own_compartment {
        return Ok(types);
    }
    if types.is_empty() {
        types = crate::jobs::export::default_types(&app.store, request.tenant, scope).await?;
    }
    types.retain(|t| t != "Communication" && t != "Binary");
    if types.is_empty() {
        return Err(crate::auth::enforce::forbidden(
            "A user's export leaves out Communication and Binary (secure messages): nothing else was asked for",
        ));
    }
    Ok(types)
}

/// The types asked for (none: all), within what the token may read; 403 when that leaves
/// none.
fn readable(request: &FhirRequest, mut types: Vec<String>) -> Result<Vec<String>, FhirError> {
    let Some(readable) = enforce::readable_types(request.principal.as_deref()) else {
        return Ok(types);
    };
    if types.is_empty() {
        types = readable;
    } else {
        types.retain(|t| readable.contains(t));
    }
    if types.is_empty() {
        return Err(enforce::forbidden(
            "The access token permits reading none of the types asked for",
        ));
    }
    Ok(types)
}

/// A patient's token exports the patient's own compartment, whatever the level asked.
fn confine(request: &FhirRequest, scope: Scope) -> Result<Scope, FhirError> {
    let principal = request.principal.as_deref();
    let Reach::Patient(patient) = enforce::check(principal, "Patient", Permission::Read)? else {
        return Ok(scope);
    };
    Ok(match scope {
        Scope::Patients(Some(mut members)) => {
            members.retain(|member| *member == patient);
            Scope::Patients(Some(members))
        }
        _ => Scope::Patients(Some(vec![patient])),
    })
}

/// Whether the request may see `job`: the one who asked for it (under `--auth none`,
/// anyone).
fn may_see(request: &FhirRequest, job: &ExportJob) -> bool {
    match &job.requested_by {
        None => true,
        Some(owner) => request
            .principal
            .as_ref()
            .is_some_and(|principal| principal.holder() == *owner),
    }
}

/// Which resources the export covers at its level: all of them, every patient's
/// compartment, or the compartments of a Group's patients, whose number is bounded by
/// what one statement can bind (see [`MAX_GROUP_MEMBERS`]).
async fn export_scope(
    app: &App,
    request: &FhirRequest,
    level: &str,
    group: Option<&str>,
) -> Result<Scope, FhirError> {
    match (level, group) {
        ("system", _) => Ok(Scope::All),
        ("Patient", _) => Ok(Scope::Patients(None)),
        (_, Some(group)) => {
            let members = group_members(app, request, group).await?;
            if members.len() > MAX_GROUP_MEMBERS {
                return Err(FhirError::new(
                    axum::http::StatusCode::PAYLOAD_TOO_LARGE,
                    "too-costly",
                    format!(
                        "Group/{group} has {} patients; a group export takes at most {MAX_GROUP_MEMBERS} (export Patient/$export instead)",
                        members.len()
                    ),
                ));
            }
            Ok(Scope::Patients(Some(members)))
        }
        _ => Err(FhirError::not_found("No such export level")),
    }
}

/// The kick-off parameters: the query's and, for a POST with a body, those of its
/// Parameters resource (`valueString`, `valueInstant`, `valueCode`, ...).
fn parameters(request: &FhirRequest) -> Result<Vec<(String, String)>, FhirError> {
    let mut all = request.params.clone();
    if request.method == Method::POST && !request.body.is_empty() {
        let body = request.parse_body()?;
        if body["resourceType"] != "Parameters" {
            return Err(FhirError::bad_request(
                "A POST $export takes a Parameters resource (or no body)",
            ));
        }
        crate::rest::request::check_resource(&body, "Parameters")?;
        for parameter in body["parameter"].as_array().into_iter().flatten() {
            let name = parameter["name"].as_str().unwrap_or_default().to_owned();
            let value = parameter
                .as_object()
                .into_iter()
                .flatten()
                .find(|(key, _)| key.starts_with("value"))
                .and_then(|(_, value)| value.as_str())
                .unwrap_or_default()
                .to_owned();
            all.push((name, value));
        }
    }
    Ok(all)
}

fn query_string(params: &[(String, String)]) -> String {
    if params.is_empty() {
        return String::new();
    }
    let query = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(params)
        .finish();
    format!("?{query}")
}

/// The ids of the Patients a Group's members reference.
async fn group_members(
    app: &App,
    request: &FhirRequest,
    id: &str,
) -> Result<Vec<String>, FhirError> {
    let group = app
        .store
        .read(request.tenant, "Group", id)
        .await?
        .filter(|v| !v.is_deleted())
        .ok_or_else(|| FhirError::not_found(format!("Group/{id} is not known")))?;
    let group: Value = crate::rest::request::parse_json(group.body.as_deref().unwrap_or_default())?;
    Ok(group["member"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|member| member["entity"]["reference"].as_str())
        .filter_map(crate::index::parse_reference)
        .filter(|(resource_type, _)| *resource_type == "Patient")
        .map(|(_, id)| id.to_owned())
        .collect())
}

/// `$export-status/[job]`: GET reports, DELETE cancels.
pub async fn status(app: &App, request: &FhirRequest, id: &str) -> Result<FhirResponse, FhirError> {
    let visible = match jobs::status(&app.store, request.tenant, id).await? {
        Some(Status::Running(job) | Status::Done(job) | Status::Failed(job)) => {
            may_see(request, &job)
        }
        None => false,
    };
    if !visible {
        return Err(unknown_job(id));
    }
    if request.method == Method::DELETE {
        let finished = matches!(
            jobs::status(&app.store, request.tenant, id).await?,
            Some(Status::Done(_) | Status::Failed(_))
        );
        if !jobs::cancel(&app.store, request.tenant, id).await? {
            return Err(unknown_job(id));
        }
        if finished {
            let _ = tokio::fs::remove_dir_all(jobs::job_dir(&app.config.export_dir, id)).await;
        }
        return Ok(FhirResponse::new(StatusCode::ACCEPTED, None));
    }
    match jobs::status(&app.store, request.tenant, id).await? {
        None => Err(unknown_job(id)),
        Some(Status::Running(job)) => Ok(FhirResponse::new(StatusCode::ACCEPTED, None)
            .header(HeaderName::from_static("x-progress"), &job.progress)
            .header(RETRY_AFTER, "2")),
        Some(Status::Failed(job)) => Err(FhirError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "exception",
            format!(
                "The export failed: {}",
                job.error.unwrap_or_else(|| "no reason recorded".into())
            ),
        )),
        Some(Status::Done(job)) => {
            let output: Vec<Value> = job
                .output
                .iter()
                .map(|file| {
                    json!({
                        "type": file.resource_type,
                        "url": format!("{}/$export-file/{id}/{}", job.base, file.file),
                        "count": file.count,
                    })
                })
                .collect();
            let manifest = json!({
                "transactionTime": crate::resource::format_instant(job.transaction_time),
                "request": job.request,
                // Under SMART the files are served to the token that asked, alone.
                "requiresAccessToken": job.requested_by.is_some(),
                "output": output,
                "error": [],
            });
            Ok(FhirResponse::new(
                StatusCode::OK,
                Some(Payload::PlainJson(
                    serde_json::to_vec(&manifest).unwrap_or_default().into(),
                )),
            )
            .header(
                HeaderName::from_static("expires"),
                &crate::resource::format_http_date(
                    job.transaction_time + app.config.export_ttl_seconds as i64 * 1_000_000,
                ),
            ))
        }
    }
}

fn unknown_job(id: &str) -> FhirError {
    FhirError::not_found(format!("No export job '{id}' (it may have expired)"))
}

/// `$export-file/[job]/[file]`: an output file of a finished job, streamed.
pub async fn file(
    app: &App,
    request: &FhirRequest,
    id: &str,
    name: &str,
) -> Result<FhirResponse, FhirError> {
    let Some(Status::Done(job)) = jobs::status(&app.store, request.tenant, id).await? else {
        return Err(unknown_job(id));
    };
    if !may_see(request, &job) {
        return Err(unknown_job(id));
    }
    if !job.output.iter().any(|file| file.file == name) {
        return Err(FhirError::not_found(format!(
            "Export {id} has no file '{name}'"
        )));
    }
    let path = jobs::files_dir(&app.config.export_dir, id, &job).join(name);
    let file = tokio::fs::File::open(&path)
        .await
        .map_err(|_| FhirError::not_found(format!("Export {id} has no file '{name}'")))?;
    Ok(FhirResponse::new(
        StatusCode::OK,
        Some(Payload::Ndjson(file)),
    ))
}
