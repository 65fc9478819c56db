//! batch and transaction: `POST [base]` with a Bundle
//! (https://hl7.org/fhir/R4/http.html#transaction).
//!
//! A transaction is all or nothing: its writes run in one database transaction (see
//! `store::transaction` for the order and the rewriting of references), and any failing
//! entry fails the whole with one OperationOutcome naming that entry. Its reads (GET)
//! run after the commit, so they see its writes. A batch runs each entry on its own, as
//! the same request sent alone would run, and reports each entry's outcome.

use std::time::Duration;

use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use base64::Engine;
use futures::future::BoxFuture;
use serde_json::{Map, Value, json};

use smart_auth::scope::{Context, Permission};

use crate::app::App;
use crate::auth::constraint::{Write, check_write};
use crate::auth::enforce::{self, Reach};
use crate::error::FhirError;
use crate::fhir::patch::Patch;
use crate::ids::{ResourceType, is_valid_id};
use crate::resource::format_instant;
use crate::rest::bundle::{Entry, Resource, bundle};
use crate::rest::format::Payload;
use crate::rest::request::{FhirRequest, Return, check_resource, parse_etag, parse_query};
use crate::rest::response::{FhirResponse, etag};
use crate::store::StoreError;
use crate::store::transaction::{Target, Transaction, TxAction, TxEntry, TxFailure, TxResult};

/// How a batch entry, or a transaction's read, is answered: as the same request sent alone
/// would be. The router passes itself in (as Blaze injects its batch handler), so that this
/// layer does not import the one above it.
pub type Dispatch =
    for<'a> fn(&'a App, &'a FhirRequest) -> BoxFuture<'a, Result<FhirResponse, FhirError>>;

pub async fn handle(
    app: &App,
    request: &FhirRequest,
    dispatch: Dispatch,
) -> Result<FhirResponse, FhirError> {
    let bundle = request.parse_body()?;
    let (kind, entries) = read_bundle(bundle, &request.base, app.config.max_bundle_entries)?;
    match kind.as_str() {
        "transaction" => transaction(app, request, entries, dispatch).await,
        "batch" => Ok(batch(app, request, entries, dispatch).await),
        _ => Err(FhirError::bad_request(format!(
            "POST to the base URL takes a Bundle of type transaction or batch, not '{kind}'"
        ))
        .at("Bundle.type")),
    }
}

/// A Bundle's type and entries. The entries' resources are taken out (moved, not copied:
/// a Bundle may hold thousands), the Bundle itself is checked without them, and each
/// resource is checked later on its own (see `check_entry_resource`): a batch entry fails
/// alone, and an error names its entry. URLs on `base` are taken as relative to it.
pub fn read_bundle(
    mut bundle: Value,
    base: &str,
    max_entries: usize,
) -> Result<(String, Vec<Parsed>), FhirError> {
    let mut resources: Vec<Option<Value>> = Vec::new();
    if let Some(entries) = bundle.get_mut("entry").and_then(Value::as_array_mut) {
        for entry in entries {
            resources.push(entry.as_object_mut().and_then(|e| e.remove("resource")));
        }
    }
    check_resource(&bundle, "Bundle")?;
    let kind = bundle
        .get("type")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    let entries = match bundle.get_mut("entry") {
        Some(Value::Array(entries)) => std::mem::take(entries),
        _ => Vec::new(),
    };
    if entries.len() > max_entries {
        return Err(FhirError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too-costly",
            format!(
                "The Bundle has {} entries; this server takes at most {max_entries} per Bundle",
                entries.len()
            ),
        )
        .at("Bundle.entry"));
    }
    check_unique_full_urls(&entries, &resources)?;
    let entries = entries
        .into_iter()
        .zip(resources)
        .enumerate()
        .map(|(index, (entry, resource))| parse_entry(base, index, entry, resource))
        .collect();
    Ok((kind, entries))
}

/// A Bundle's `fullUrl`s are unique, or else the entries that share one differ in
/// `meta.versionId` (R4 invariant bdl-7): otherwise a reference to it names two resources.
fn check_unique_full_urls(entries: &[Value], resources: &[Option<Value>]) -> Result<(), FhirError> {
    let mut seen: std::collections::HashMap<(&str, Option<&str>), usize> =
        std::collections::HashMap::new();
    for (index, (entry, resource)) in entries.iter().zip(resources).enumerate() {
        let Some(full_url) = entry.get("fullUrl").and_then(Value::as_str) else {
            continue;
        };
        let version = resource
            .as_ref()
            .and_then(|r| r["meta"]["versionId"].as_str());
        if let Some(first) = seen.insert((full_url, version), index) {
            return Err(FhirError::bad_request(format!(
                "Entries {first} and {index} have the same fullUrl '{full_url}'; a fullUrl names one entry of a Bundle"
            ))
            .at(format!("Bundle.entry[{first}].fullUrl"))
            .at(format!("Bundle.entry[{index}].fullUrl")));
        }
    }
    Ok(())
}

/// Checks an entry's resource against R4; the issues name it inside the Bundle
/// (`Bundle.entry[2].resource.gender`).
fn check_entry_resource(index: usize, resource: &Value) -> Result<(), FhirError> {
    let resource_type = resource
        .get("resourceType")
        .and_then(Value::as_str)
        .unwrap_or_default();
    check_resource(resource, resource_type).map_err(|mut error| {
        let inside = format!("Bundle.entry[{index}].resource");
        for issue in &mut error.issues {
            for expression in &mut issue.expression {
                *expression = match expression.strip_prefix(resource_type) {
                    Some(rest) if !resource_type.is_empty() => format!("{inside}{rest}"),
                    _ => format!("{inside}.{expression}"),
                };
            }
        }
        error
    })
}

/// An entry as it was read: its request, the parts of its URL, and its resource.
pub struct Parsed {
    index: usize,
    full_url: Option<String>,
    /// The entry's request, or why it is not one.
    request: Result<EntryRequest, FhirError>,
}

struct EntryRequest {
    method: Method,
    /// The URL below the base, as given (for reads dispatched as requests).
    url: String,
    segments: Vec<String>,
    params: Vec<(String, String)>,
    headers: HeaderMap,
    resource: Option<Value>,
}

fn parse_entry(base: &str, index: usize, entry: Value, resource: Option<Value>) -> Parsed {
    let full_url = entry
        .get("fullUrl")
        .and_then(Value::as_str)
        .map(str::to_owned);
    let at = |error: FhirError| error.at(format!("Bundle.entry[{index}].request"));
    let parsed = (|| {
        let Some(entry_request) = entry.get("request") else {
            return Err(FhirError::bad_request("The entry has no request"));
        };
        let text = |key: &str| entry_request.get(key).and_then(Value::as_str);
        let method = match text("method") {
            Some("GET") => Method::GET,
            Some("HEAD") => Method::HEAD,
            Some("POST") => Method::POST,
            Some("PUT") => Method::PUT,
            Some("PATCH") => Method::PATCH,
            Some("DELETE") => Method::DELETE,
            other => {
                return Err(FhirError::bad_request(format!(
                    "Unknown request method {other:?}"
                )));
            }
        };
        let raw = text("url").unwrap_or_default();
        // An absolute URL on this server's base is taken as relative to it.
        let url = raw
            .strip_prefix(base)
            .unwrap_or(raw)
            .trim_start_matches('/')
            .to_owned();
        if url.is_empty()
            || url
                .split('?')
                .next()
                .is_some_and(|path| path.contains("://"))
        {
            return Err(FhirError::bad_request(format!(
                "The entry's request url '{raw}' is not a URL on this server"
            )));
        }
        let (path, query) = url.split_once('?').unwrap_or((&url, ""));
        let segments: Vec<String> = path
            .split('/')
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect();
        let mut headers = HeaderMap::new();
        for (key, header) in [
            ("ifMatch", "if-match"),
            ("ifNoneMatch", "if-none-match"),
            ("ifNoneExist", "if-none-exist"),
            ("ifModifiedSince", "if-modified-since"),
        ] {
            if let Some(value) = text(key)
                && let Ok(value) = HeaderValue::from_str(value)
            {
                headers.insert(HeaderName::from_static(header), value);
            }
        }
        Ok(EntryRequest {
            method,
            params: parse_query(query),
            url,
            segments,
            headers,
            resource,
        })
    })();
    Parsed {
        index,
        full_url,
        request: parsed.map_err(at),
    }
}

/// The Bundle's writes, as the store's transaction entries; reads, by position, for after.
/// The write entries' resources are moved into the plan.
pub fn plan(entries: &mut [Parsed]) -> Result<(Vec<TxEntry>, Vec<usize>), FhirError> {
    let mut writes = Vec::new();
    let mut reads = Vec::new();
    for entry in entries.iter_mut() {
        let (index, full_url) = (entry.index, entry.full_url.clone());
        let at = |error| named(error, index, full_url.as_deref());
        let request = match &mut entry.request {
            Ok(request) => request,
            Err(error) => return Err(at(error.clone())),
        };
        if matches!(request.method, Method::GET | Method::HEAD) {
            reads.push(entry.index);
            continue;
        }
        if let Some(resource) = &request.resource
            && request.method != Method::PATCH
        {
            check_entry_resource(index, resource).map_err(at)?;
        }
        let action = action(index, request).map_err(at)?;
        writes.push(TxEntry {
            index,
            full_url,
            action,
        });
    }
    Ok((writes, reads))
}

/// What a write entry does.
fn action(index: usize, request: &mut EntryRequest) -> Result<TxAction, FhirError> {
    let [resource_type, rest @ ..] = request.segments.as_slice() else {
        return Err(FhirError::bad_request(
            "The entry's url names no resource type",
        ));
    };
    let resource_type = ResourceType::from_path(resource_type)?.to_string();
    let to_type = rest.is_empty();
    let target = || entry_target(request, &resource_type);
    let if_match = entry_if_match(request)?;
    if request.method == Method::POST && to_type {
        super::create::refuse_search_parameters(&request.params, &resource_type)
            .map_err(|error| error.at(format!("Bundle.entry[{index}].request.url")))?;
    }
    Ok(match request.method {
        Method::POST if to_type => TxAction::Create {
            if_none_exist: entry_if_none_exist(request, &resource_type)?,
            resource: entry_resource(request, &resource_type, index)?,
            resource_type,
        },
        Method::PUT => {
            let target = target()?;
            let resource = entry_resource(request, &resource_type, index)?;
            if let Target::Id(id) = &target
                && resource.get("id").and_then(Value::as_str) != Some(id)
            {
                return Err(FhirError::bad_request(format!(
                    "The resource's id must be '{id}', as in the entry's url"
                ))
                .at(format!("Bundle.entry[{index}].resource.id")));
            }
            TxAction::Update {
                target,
                resource,
                if_match,
                resource_type,
            }
        }
        Method::PATCH => TxAction::Patch {
            target: target()?,
            patch: entry_patch(request.resource.as_ref())?,
            if_match,
            resource_type,
        },
        Method::DELETE => TxAction::Delete {
            target: target()?,
            resource_type,
        },
        _ => {
            return Err(FhirError::bad_request(format!(
                "{} is not allowed on '{}' in a Bundle",
                request.method, request.url
            )));
        }
    })
}

/// What a PUT, PATCH or DELETE entry names: `[type]/[id]`, or `[type]?criteria`.
fn entry_target(request: &EntryRequest, resource_type: &str) -> Result<Target, FhirError> {
    match request.segments.get(1..).unwrap_or(&[]) {
        [id] if is_valid_id(id) => Ok(Target::Id(id.clone())),
        [] => {
            let what = format!("A conditional {}", request.method);
            super::conditional_criteria(resource_type, &request.params, &what)
                .map(|query| Target::Criteria(Box::new(query)))
        }
        _ => Err(FhirError::bad_request(format!(
            "'{}' is not a {} URL ([type]/[id] or [type]?criteria)",
            request.url, request.method
        ))),
    }
}

/// The entry's `ifMatch`, as a version number.
fn entry_if_match(request: &EntryRequest) -> Result<Option<i64>, FhirError> {
    request
        .headers
        .get("if-match")
        .map(|value| {
            value
                .to_str()
                .ok()
                .and_then(parse_etag)
                .ok_or_else(|| FhirError::bad_request("Malformed ifMatch: expected W/\"n\""))
        })
        .transpose()
}

/// The entry's `ifNoneExist` criteria, if any.
fn entry_if_none_exist(
    request: &EntryRequest,
    resource_type: &str,
) -> Result<Option<crate::search::Query>, FhirError> {
    let Some(value) = request.headers.get("if-none-exist") else {
        return Ok(None);
    };
    let criteria = value.to_str().unwrap_or_default().trim_start_matches('?');
    let criteria = criteria.rsplit_once('?').map_or(criteria, |(_, q)| q);
    super::conditional_criteria(resource_type, &parse_query(criteria), "ifNoneExist").map(Some)
}

/// The entry's resource (taken out of it), which must be of the url's type.
fn entry_resource(
    request: &mut EntryRequest,
    resource_type: &str,
    index: usize,
) -> Result<Value, FhirError> {
    let resource = request
        .resource
        .take()
        .ok_or_else(|| FhirError::bad_request("The entry has no resource"))?;
    match resource.get("resourceType").and_then(Value::as_str) {
        Some(found) if found == resource_type => Ok(resource),
        found => Err(FhirError::bad_request(format!(
            "The entry's resource is a {}, but its url is for {resource_type}",
            found.unwrap_or("resource of no type")
        ))
        .at(format!("Bundle.entry[{index}].resource.resourceType"))),
    }
}

/// A PATCH entry's patch: a Binary of a JSON Patch document, or a Parameters resource that
/// is a FHIRPath Patch (how R4 carries patches in Bundles).
fn entry_patch(resource: Option<&Value>) -> Result<Patch, FhirError> {
    let kind = resource.and_then(|r| r.get("resourceType").and_then(Value::as_str));
    let binary = match (kind, resource) {
        (Some("Binary"), Some(binary)) => binary,
        (Some("Parameters"), Some(parameters)) => {
            check_resource(parameters, "Parameters")?;
            return Patch::fhirpath(parameters.clone());
        }
        _ => {
            return Err(FhirError::bad_request(
                "A PATCH entry takes a Binary holding a JSON Patch document, or a Parameters resource that is a FHIRPath Patch",
            ));
        }
    };
    let content_type = binary
        .get("contentType")
        .and_then(Value::as_str)
        .unwrap_or_default();
    if content_type != "application/json-patch+json" {
        return Err(FhirError::bad_request(format!(
            "A PATCH entry's Binary must be application/json-patch+json, not '{content_type}'"
        )));
    }
    let data = binary
        .get("data")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(data)
        .map_err(|e| FhirError::bad_request(format!("The Binary's data is not base64: {e}")))?;
    crate::fhir::patch::parse_patch_document(&bytes).map(Patch::Json)
}

/// Names the entry in an error about it: its index and fullUrl.
fn in_entry(error: FhirError, entry: &Parsed) -> FhirError {
    named(error, entry.index, entry.full_url.as_deref())
}

/// Names entry `index` (and its fullUrl) in an error about it.
fn named(mut error: FhirError, index: usize, full_url: Option<&str>) -> FhirError {
    let name = match full_url {
        Some(url) => format!("Bundle entry {index} ({url})"),
        None => format!("Bundle entry {index}"),
    };
    for issue in &mut error.issues {
        issue.diagnostics = format!("{name}: {}", issue.diagnostics);
        let expression = format!("Bundle.entry[{index}]");
        if !issue.expression.iter().any(|e| e.starts_with(&expression)) {
            issue.expression.push(expression);
        }
    }
    error
}

/// Runs a transaction Bundle that the server itself made (an operation's writes), with the
/// same checks, order and reference rewriting as a client's; each write's result. Its
/// reads, if any, are not answered.
pub async fn run(
    app: &App,
    request: &FhirRequest,
    bundle: Value,
) -> Result<Vec<TxResult>, FhirError> {
    let (_, mut entries) = read_bundle(bundle, &request.base, usize::MAX)?;
    let (writes, _) = plan(&mut entries)?;
    let transaction = Transaction::new(writes).by_server();
    write_all(app, request, transaction, &entries).await
}

/// The writes of a transaction, in one database transaction; an error names its entry.
async fn write_all(
    app: &App,
    request: &FhirRequest,
    mut transaction: Transaction,
    entries: &[Parsed],
) -> Result<Vec<TxResult>, FhirError> {
    transaction.settle_locally();
    match app.store.transaction(request.tenant, transaction).await {
        Ok(results) => Ok(results),
        Err(TxFailure { index, error }) => {
            let error = match error {
                StoreError::Rejected(error) => error,
                other => FhirError::from(other),
            };
            Err(match entries.get(index) {
                Some(entry) if error.status != StatusCode::INTERNAL_SERVER_ERROR => {
                    in_entry(error, entry)
                }
                _ => error,
            })
        }
    }
}

async fn transaction(
    app: &App,
    request: &FhirRequest,
    mut entries: Vec<Parsed>,
    dispatch: Dispatch,
) -> Result<FhirResponse, FhirError> {
    refuse_audit_writes(&entries)?;
    authorize_writes(app, request, &entries).await?;
    let (writes, reads) = plan(&mut entries)?;
    let limit = app.config.max_bundle_response_bytes;
    // The reads are answered after the commit, as the spec orders; a transaction whose
    // answer would be too large must be refused before anything is written, so its reads
    // are first measured against the state before it.
    if !reads.is_empty() {
        let mut budget = Budget::new(limit);
        for index in &reads {
            if let Ok(entry_request) = &entries[*index].request
                && !budget.fits(&read(app, request, entry_request, dispatch).await)
            {
                return Err(budget.too_large());
            }
        }
    }
    let results = write_all(app, request, Transaction::new(writes), &entries).await?;
    let representation =
        request.prefer_return() == Return::Representation && request.header("prefer").is_some();
    let mut budget = Budget::new(limit);
    let mut answers: Vec<Option<Entry>> = vec![None; entries.len()];
    for result in results {
        let index = result.index;
        answers[index] = Some(budget.charge(written(request, result, representation)));
    }
    for index in reads {
        if let Ok(entry_request) = &entries[index].request {
            // Only when the writes made a read larger than it was measured: the writes
            // are committed, so that read alone is answered 413.
            answers[index] = Some(budget.charge(read(app, request, entry_request, dispatch).await));
        }
    }
    let answers = answers.into_iter().map(Option::unwrap_or_default).collect();
    Ok(FhirResponse::bundle(
        StatusCode::OK,
        bundle("transaction-response", None, Vec::new(), answers),
    ))
}

/// A transaction entry's answer from what the store did.
fn written(request: &FhirRequest, result: TxResult, representation: bool) -> Entry {
    let mut response = Map::new();
    response.insert("status".into(), json!(status_line(result.status)));
    let mut entry = Entry::default();
    if let Some(version) = &result.version {
        response.insert(
            "location".into(),
            json!(format!(
                "{}/{}/_history/{}",
                version.resource_type, version.id, version.version
            )),
        );
        response.insert("etag".into(), json!(etag(version.version)));
        response.insert(
            "lastModified".into(),
            json!(format_instant(version.last_updated)),
        );
        entry.full_url = Some(crate::rest::bundle::full_url(request, version));
        if representation {
            entry.resource = Resource::of(version);
        }
    }
    entry
        .rest
        .insert("response".into(), Value::Object(response));
    entry
}

/// `201 Created`.
fn status_line(status: StatusCode) -> String {
    format!(
        "{} {}",
        status.as_u16(),
        status.canonical_reason().unwrap_or_default()
    )
}

/// Runs an entry as the request it describes, alone (a batch entry, or a read of a
/// transaction), and answers with what that request would have answered.
async fn read(app: &App, request: &FhirRequest, entry: &EntryRequest, dispatch: Dispatch) -> Entry {
    let mut headers = entry.headers.clone();
    let body = match &entry.resource {
        Some(resource) if entry.method == Method::PATCH => {
            match entry_patch(Some(resource)).and_then(|patch| patch.to_body()) {
                Ok((bytes, content_type)) => {
                    headers.insert(
                        axum::http::header::CONTENT_TYPE,
                        HeaderValue::from_static(content_type),
                    );
                    bytes.into()
                }
                Err(error) => return failed(&error),
            }
        }
        Some(resource) => {
            headers.insert(
                axum::http::header::CONTENT_TYPE,
                HeaderValue::from_static("application/fhir+json"),
            );
            serde_json::to_vec(resource).unwrap_or_default().into()
        }
        None => bytes::Bytes::new(),
    };
    for name in ["prefer"] {
        if let Some(value) = request.headers.get(name) {
            headers.insert(HeaderName::from_static(name), value.clone());
        }
    }
    if entry.segments.is_empty() {
        return failed(&FhirError::bad_request(
            "A Bundle entry cannot itself be a batch or transaction",
        ));
    }
    let alone = FhirRequest {
        tenant: request.tenant,
        base: request.base.clone(),
        method: entry.method.clone(),
        segments: entry.segments.clone(),
        params: entry.params.clone(),
        headers,
        body,
        principal: request.principal.clone(),
    };
    match dispatch(app, &alone).await {
        Ok(response) => answered(response),
        Err(error) => failed(&error),
    }
}

/// AuditEvents are the server's own record of every access: no entry writes one.
fn refuse_audit_writes(entries: &[Parsed]) -> Result<(), FhirError> {
    for parsed in entries {
        let Ok(entry) = &parsed.request else { continue };
        let writes = entry.method != Method::GET && entry.method != Method::HEAD;
        if writes && entry.segments.first().is_some_and(|t| t == "AuditEvent") {
            return Err(FhirError::new(
                axum::http::StatusCode::METHOD_NOT_ALLOWED,
                "not-supported",
                "AuditEvents cannot be created, changed or deleted through the API",
            )
            .at(format!("Bundle.entry[{}]", parsed.index)));
        }
    }
    Ok(())
}

/// Checks each write of a transaction against the request's token before anything is
/// written (its reads are dispatched, and so checked, like requests of their own). A
/// patient's token writes only inside the patient's compartment, and not by the
/// conditional, patch or delete forms, whose reach cannot be checked beforehand.
async fn authorize_writes(
    app: &App,
    request: &FhirRequest,
    entries: &[Parsed],
) -> Result<(), FhirError> {
    let Some(principal) = request.principal.as_deref() else {
        return Ok(());
    };
    for parsed in entries {
        let Ok(entry) = &parsed.request else { continue };
        let permission = match entry.method {
            Method::POST => Permission::Create,
            Method::PUT | Method::PATCH => Permission::Update,
            Method::DELETE => Permission::Delete,
            _ => continue,
        };
        let at = format!("Bundle.entry[{}]", parsed.index);
        let write = (&entry.method, entry.segments.as_slice());
        crate::auth::messages::check_write(
            &app.store,
            request.tenant,
            Some(principal),
            write,
            entry.resource.as_ref(),
        )
        .await
        .map_err(|e| e.at(at.clone()))?;
        let resource_type = entry
            .segments
            .first()
            .map(String::as_str)
            .unwrap_or_default();
        let reach = match enforce::check(Some(principal), resource_type, permission) {
            Ok(reach) => reach,
            Err(refused) => constrained_write(app, request, entry, permission, refused)
                .await
                .map_err(|e| e.at(at.clone()))?,
        };
        let Reach::Patient(patient) = reach else {
            continue;
        };
        let refused = || {
            enforce::forbidden("A patient/ scope may only write resources in the patient's compartment, by create or update").at(at.clone())
        };
        let body_inside = entry
            .resource
            .as_ref()
            .is_some_and(|r| enforce::in_compartment(&patient, r));
        match (&entry.method, entry.segments.as_slice()) {
            (&Method::POST, [_]) if body_inside => {}
            (&Method::PUT, [resource_type, id]) if body_inside => {
                let current = app.store.read(request.tenant, resource_type, id).await?;
                let inside = current.and_then(|v| v.body).is_none_or(|body| {
                    serde_json::from_slice::<Value>(&body)
                        .is_ok_and(|value| enforce::in_compartment(&patient, &value))
                });
                if !inside {
                    return Err(refused());
                }
            }
            _ => return Err(refused()),
        }
    }
    Ok(())
}

/// A write entry that only query-constrained scopes permit: allowed as `PUT [type]/[id]`,
/// `DELETE [type]/[id]` or a plain create when the resource it leaves, and the one it
/// replaces, meet the constraint (`auth::constraint`); how far it reaches. Anything else
/// keeps the refusal.
async fn constrained_write(
    app: &App,
    request: &FhirRequest,
    entry: &EntryRequest,
    permission: Permission,
    refused: FhirError,
) -> Result<Reach, FhirError> {
    let principal = request.principal.as_deref();
    let resource_type = entry
        .segments
        .first()
        .map(String::as_str)
        .unwrap_or_default();
    let Some((context, constraint)) =
        enforce::query_constraint(principal, resource_type, permission)
    else {
        return Err(refused);
    };
    let if_none_exist = entry.headers.contains_key("if-none-exist");
    let Some(write) = Write::of(
        &entry.method,
        &entry.segments,
        entry.resource.as_ref(),
        if_none_exist,
    ) else {
        return Err(refused);
    };
    check_write(
        &app.store,
        request.tenant,
        resource_type,
        write,
        &constraint,
    )
    .await?;
    match (context, principal.and_then(|p| p.patient.clone())) {
        (Context::Patient, Some(patient)) => Ok(Reach::Patient(patient)),
        (Context::Patient, None) => Err(refused),
        _ => Ok(Reach::All),
    }
}

/// A batch entry's answer from an interaction's response.
fn answered(response: FhirResponse) -> Entry {
    let mut answer = Map::new();
    answer.insert("status".into(), json!(status_line(response.status)));
    for (header, key) in [
        ("location", "location"),
        ("etag", "etag"),
        ("last-modified", "lastModified"),
    ] {
        let value = response
            .headers
            .iter()
            .find(|(name, _)| name.as_str() == header)
            .and_then(|(_, value)| value.to_str().ok());
        if let Some(value) = value {
            let value = match key {
                // HTTP-date to FHIR instant.
                "lastModified" => httpdate::parse_http_date(value)
                    .ok()
                    .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                    .map(|d: Duration| format_instant(d.as_micros() as i64))
                    .unwrap_or_else(|| value.to_owned()),
                _ => value.to_owned(),
            };
            answer.insert(key.into(), json!(value));
        }
    }
    let mut entry = Entry::default();
    match response.payload {
        Some(Payload::Stored(bytes)) => entry.resource = Some(Resource::Stored(bytes)),
        Some(Payload::Value(value)) if response.status.is_success() => {
            entry.resource = Some(Resource::Value(value));
        }
        Some(Payload::Value(outcome)) => {
            answer.insert("outcome".into(), outcome);
        }
        // Kept as JSON bytes: a page of resources as values takes many times the memory.
        Some(Payload::Bundle(bundle)) => match bundle.to_json() {
            Ok(bytes) => entry.resource = Some(Resource::Stored(bytes.into())),
            Err(error) => return failed(&FhirError::internal(error)),
        },
        Some(Payload::Ndjson(_) | Payload::PlainJson(_)) | None => {}
    }
    entry.rest.insert("response".into(), Value::Object(answer));
    entry
}

/// What is left of the size a Bundle's answer may reach (`--max-bundle-response-bytes`):
/// one request must not take the server's memory, however many searches it bundles.
struct Budget {
    left: usize,
    limit: usize,
}

impl Budget {
    fn new(limit: usize) -> Budget {
        Budget { left: limit, limit }
    }

    /// Whether `entry` still fits (and, if so, takes its size).
    fn fits(&mut self, entry: &Entry) -> bool {
        let size = entry.approximate_size();
        match self.left.checked_sub(size) {
            Some(left) => {
                self.left = left;
                true
            }
            None => false,
        }
    }

    /// `entry`, or a 413 in its place when it does not fit.
    fn charge(&mut self, entry: Entry) -> Entry {
        if self.fits(&entry) {
            entry
        } else {
            failed(&self.too_large())
        }
    }

    fn too_large(&self) -> FhirError {
        FhirError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too-costly",
            format!(
                "The answer would pass the limit of {} bytes for a Bundle's answer; ask for less (a smaller _count, fewer entries)",
                self.limit
            ),
        )
    }
}

/// The answer of an entry that failed: its status and OperationOutcome.
fn failed(error: &FhirError) -> Entry {
    let mut entry = Entry::default();
    entry.rest.insert(
        "response".into(),
        json!({"status": status_line(error.status), "outcome": error.outcome()}),
    );
    entry
}

async fn batch(
    app: &App,
    request: &FhirRequest,
    entries: Vec<Parsed>,
    dispatch: Dispatch,
) -> FhirResponse {
    let mut budget = Budget::new(app.config.max_bundle_response_bytes);
    let mut answers = Vec::with_capacity(entries.len());
    for entry in &entries {
        let answer = match &entry.request {
            Ok(entry_request) => read(app, request, entry_request, dispatch).await,
            Err(error) => failed(&in_entry(error.clone(), entry)),
        };
        answers.push(budget.charge(answer));
    }
    FhirResponse::bundle(
        StatusCode::OK,
        bundle("batch-response", None, Vec::new(), answers),
    )
}
