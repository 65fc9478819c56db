//! `Patient/{id}/$access-log`: the accounting of disclosures (HIPAA 164.528), who
//! accessed a patient's record and when, for the patient (a token of that patient, or
//! the patient signed in) or an admin; and the search of the trail that it and
//! `AuditEvent?...` share.

use axum::http::StatusCode;

use super::{Operation, Param};
use crate::app::App;
use crate::audit::render::audit_event;
use crate::error::FhirError;
use crate::rest::bundle::{Entry, Resource, bundle, link_url};
use crate::rest::request::FhirRequest;
use crate::rest::response::FhirResponse;
use crate::store::audit::{Filter, Stored};

const DEFAULT_COUNT: usize = 50;
const MAX_COUNT: usize = 1000;

/// Parameters a search of the trail takes besides its filters.
const CONTROL: [&str; 4] = ["_count", "_format", "_pretty", "_before"];

/// `Patient/[id]/$access-log`, as registered in `ops::OPERATIONS`.
pub const OPERATION: Operation = Operation {
    name: "access-log",
    id: "Patient-access-log",
    url: "urn:fhir-server:OperationDefinition/Patient-access-log",
    title: "Accounting of disclosures",
    description: "Who accessed the patient's record, when, from where and how (read, search, change), newest first, as a searchset Bundle of AuditEvents in pages. For the patient and for admins.",
    types: &["Patient"],
    system: false,
    type_level: false,
    instance: true,
    affects_state: false,
    parameters: &[
        Param {
            name: "date",
            use_: "in",
            min: 0,
            max: "*",
            type_: "date",
            documentation: "Only accesses in this period (ge, gt, le, lt or eq prefix)",
        },
        Param {
            name: "_count",
            use_: "in",
            min: 0,
            max: "1",
            type_: "integer",
            documentation: "Page size",
        },
        Param {
            name: "return",
            use_: "out",
            min: 1,
            max: "1",
            type_: "Bundle",
            documentation: "A searchset Bundle of AuditEvents, newest first",
        },
    ],
    handler: |app, request, target| Box::pin(handle(app, request, target.id().unwrap_or_default())),
};

/// Whether the request's token may read the patient's accounting: no authorization
/// (`--auth none`), an admin, the patient's own token, or the patient signed in.
fn entitled(request: &FhirRequest, patient: &str) -> bool {
    let Some(principal) = request.principal.as_deref() else {
        return true;
    };
    let admin = principal
        .role
        .as_ref()
        .is_some_and(|role| role.name == "admin");
    let own_patient = principal.patient.as_deref() == Some(patient);
    let signed_in_as = principal.fhir_user.as_deref() == Some(&format!("Patient/{patient}"));
    admin || own_patient || signed_in_as
}

/// `GET Patient/{id}/$access-log`: who accessed the patient's record, newest first, in
/// pages (`_count`, `date`, `_before`).
pub async fn handle(
    app: &App,
    request: &FhirRequest,
    patient: &str,
) -> Result<FhirResponse, FhirError> {
    if !entitled(request, patient) {
        return Err(FhirError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            "The accounting of a patient's record is for the patient and for admins",
        ));
    }
    crate::interaction::read::current(app, request, "Patient", patient).await?;
    let mut filter = filter(
        &request
            .params
            .iter()
            .filter(|(name, _)| name == "date" || CONTROL.contains(&name.as_str()))
            .cloned()
            .collect::<Vec<_>>(),
    )?;
    filter.patient = Some(patient.to_owned());
    let path = format!("Patient/{patient}/$access-log");
    search(app, request, filter, &path).await
}

pub async fn search(
    app: &App,
    request: &FhirRequest,
    filter: Filter,
    path: &str,
) -> Result<FhirResponse, FhirError> {
    let mut asked = filter.clone();
    asked.limit = filter.limit + 1;
    let mut records: Vec<Stored> = app.store.audit_search(request.tenant, &asked).await?;
    let more = records.len() > filter.limit;
    records.truncate(filter.limit);
    let mut links = vec![("self", link_url(request, path, &request.params))];
    if more && let Some(last) = records.last() {
        let mut next: Vec<(String, String)> = request
            .params
            .iter()
            .filter(|(name, _)| name != "_before")
            .cloned()
            .collect();
        next.push(("_before".into(), last.seq.to_string()));
        links.push(("next", link_url(request, path, &next)));
    }
    let entries = records
        .iter()
        .map(|record| Entry {
            full_url: Some(format!("{}/AuditEvent/{}", request.base, record.seq)),
            resource: Some(Resource::Value(audit_event(record))),
            rest: [("search".to_owned(), serde_json::json!({"mode": "match"}))]
                .into_iter()
                .collect(),
        })
        .collect();
    Ok(FhirResponse::bundle(
        StatusCode::OK,
        bundle("searchset", None, links, entries),
    ))
}

/// The search's filters; an unknown parameter or a bad value is 400 naming it.
pub fn filter(params: &[(String, String)]) -> Result<Filter, FhirError> {
    let mut filter = Filter {
        limit: DEFAULT_COUNT,
        ..Filter::default()
    };
    for (name, value) in params {
        let bad = |why: &str| {
            FhirError::bad_request(format!("AuditEvent search parameter '{name}': {why}"))
        };
        let text = || Some(value.clone()).filter(|v| !v.is_empty());
        match name.as_str() {
            "patient" => {
                let id = value
                    .rsplit_once("Patient/")
                    .map_or(value.as_str(), |(_, id)| id);
                filter.patient = Some(id.to_owned()).filter(|id| !id.is_empty());
            }
            "agent" | "altid" => filter.agent = text(),
            "entity" => filter.entity = text(),
            "subtype" => {
                filter.event = text().map(|v| v.rsplit('|').next().unwrap_or("").to_owned())
            }
            "purpose" => {
                filter.purpose = text().map(|v| v.rsplit('|').next().unwrap_or("").to_owned())
            }
            "date" => date(&mut filter, value)
                .map_err(|_| bad("not a date with an optional ge, gt, le, lt or eq prefix"))?,
            "_count" => {
                let count: usize = value.parse().map_err(|_| bad("not a number"))?;
                filter.limit = count.clamp(1, MAX_COUNT);
            }
            "_before" => {
                filter.before = Some(value.parse().map_err(|_| bad("not a record number"))?)
            }
            "_format" | "_pretty" => {}
            _ => {
                return Err(bad(
                    "not supported (patient, agent, altid, entity, subtype, purpose, date, _count)",
                ));
            }
        }
    }
    Ok(filter)
}

/// Narrows the filter to a `date` value (`ge2026-01-01`, `2026-03`, ...).
fn date(filter: &mut Filter, value: &str) -> Result<(), ()> {
    let (prefix, text) = match value.get(..2) {
        Some(p @ ("ge" | "gt" | "le" | "lt" | "eq")) => (p, &value[2..]),
        _ => ("eq", value),
    };
    let (low, high) = crate::params::dates::range(text).ok_or(())?;
    let narrow_since =
        |since: &mut Option<i64>, at: i64| *since = Some(since.map_or(at, |s| s.max(at)));
    let narrow_until =
        |until: &mut Option<i64>, at: i64| *until = Some(until.map_or(at, |u| u.min(at)));
    match prefix {
        "ge" => narrow_since(&mut filter.since, low),
        "gt" => narrow_since(&mut filter.since, high + 1),
        "le" => narrow_until(&mut filter.until, high + 1),
        "lt" => narrow_until(&mut filter.until, low),
        _ => {
            narrow_since(&mut filter.since, low);
            narrow_until(&mut filter.until, high + 1);
        }
    }
    Ok(())
}
