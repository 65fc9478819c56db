//! `Patient/[id]/$everything` (https://hl7.org/fhir/R4/patient-operation-everything.html):
//! the patient, every resource in the patient's compartment, and the Practitioners,
//! Organizations and Locations they reference, as a searchset Bundle in pages.
//!
//! Parameters: `_since` (only resources updated since that instant), `_type` (only these
//! types), `_count` (page size). The members are found by one lookup of the reference index
//! over every compartment parameter of every type (not one search per type), ordered by
//! the patient first and then by res_id, and paged by an opaque cursor on that order.

use std::collections::BTreeMap;

use axum::http::StatusCode;
use serde_json::{Map, json};

use super::{Operation, Param};
use crate::app::App;
use crate::error::FhirError;
use crate::ids::ResourceType;
use crate::rest::bundle::{Entry, Resource, bundle, full_url, link_url};
use crate::rest::request::FhirRequest;
use crate::rest::response::FhirResponse;
use crate::search::compartment;
use crate::search::cursor::{Cursor, KeyValue};
use crate::store::{Row, TenantId};

/// The types whose referenced resources join the patient's record.
const REFERENCED: &[&str] = &[
    "Practitioner",
    "PractitionerRole",
    "Organization",
    "Location",
];

/// How many res_ids go into one `IN (...)` list.
const CHUNK: usize = 500;

/// `Patient/[id]/$everything`, as registered in `ops::OPERATIONS`.
pub const OPERATION: Operation = Operation {
    name: "everything",
    id: "Patient-everything",
    url: "http://hl7.org/fhir/OperationDefinition/Patient-everything",
    title: "Fetch Patient Record",
    description: "The patient, every resource in the patient's compartment, and the Practitioners, PractitionerRoles, Organizations and Locations they reference, as a searchset Bundle in pages.",
    types: &["Patient"],
    system: false,
    type_level: false,
    instance: true,
    affects_state: false,
    parameters: &[
        super::SINCE,
        Param {
            name: "_type",
            use_: "in",
            min: 0,
            max: "*",
            type_: "code",
            documentation: "Only resources of these types (comma-separated)",
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
            documentation: "A searchset Bundle, paged",
        },
    ],
    handler: |app, request, target| Box::pin(handle(app, request, target.id().unwrap_or_default())),
};

pub async fn handle(app: &App, request: &FhirRequest, id: &str) -> Result<FhirResponse, FhirError> {
    crate::interaction::read::current(app, request, "Patient", id).await?;
    let asked = Asked::from(&request.params)?;
    let limits = app.page_limits();
    let page_size = asked
        .count
        .unwrap_or(limits.default_count)
        .clamp(1, limits.max_count);
    let (members, patient_res_id) = members(app, request, id, &asked).await?;
    // The patient first, then by res_id.
    let order = |res_id: i64| (i64::from(res_id != patient_res_id), res_id);
    let after = asked.cursor.as_ref().map(|c| {
        let rank = match c.keys.first() {
            Some(KeyValue::Int(rank)) => *rank,
            _ => 1,
        };
        (rank, c.res_id)
    });
    let start = after.map_or(0, |after| members.partition_point(|&r| order(r) <= after));
    let page: Vec<i64> = members[start..]
        .iter()
        .take(page_size + 1)
        .copied()
        .collect();
    let more = page.len() > page_size;
    let page = &page[..page.len().min(page_size)];
    let entries = entries(app, request, page).await?;
    let path = format!("Patient/{id}/$everything");
    let mut params: Vec<(String, String)> = request
        .params
        .iter()
        .filter(|(name, _)| name != "_page")
        .cloned()
        .collect();
    let mut links = vec![("self", link_url(request, &path, &request.params))];
    links.push(("first", link_url(request, &path, &params)));
    if more && let Some(&last) = page.last() {
        let next = Cursor {
            forward: true,
            keys: vec![KeyValue::Int(order(last).0)],
            res_id: last,
        };
        params.push(("_page".into(), next.encode()));
        links.push(("next", link_url(request, &path, &params)));
    }
    Ok(FhirResponse::bundle(
        StatusCode::OK,
        bundle("searchset", Some(members.len() as i64), links, entries),
    ))
}

/// The parameters of a `$everything`.
struct Asked {
    since: Option<i64>,
    types: Option<Vec<String>>,
    count: Option<usize>,
    cursor: Option<Cursor>,
}

impl Asked {
    fn from(params: &[(String, String)]) -> Result<Asked, FhirError> {
        let bad = |message: String| FhirError::bad_request(message);
        let mut asked = Asked {
            since: None,
            types: None,
            count: None,
            cursor: None,
        };
        for (name, value) in params {
            match name.as_str() {
                "_since" => {
                    asked.since = Some(crate::resource::parse_instant(value).ok_or_else(|| {
                        bad(format!(
                            "_since must be an instant with a time zone, not '{value}'"
                        ))
                    })?);
                }
                "_type" => {
                    let listed: Vec<String> =
                        value.split(',').map(|t| t.trim().to_owned()).collect();
                    if let Some(unknown) = listed.iter().find(|t| ResourceType::parse(t).is_none())
                    {
                        return Err(bad(format!(
                            "_type names an unknown resource type '{unknown}'"
                        )));
                    }
                    asked.types.get_or_insert_with(Vec::new).extend(listed);
                }
                "_count" => {
                    asked.count = Some(
                        value
                            .parse::<usize>()
                            .map_err(|_| bad(format!("_count must be a number, not '{value}'")))?,
                    );
                }
                "_page" => {
                    asked.cursor = Some(
                        Cursor::decode(value)
                            .ok_or_else(|| bad(format!("Invalid paging cursor '{value}'")))?,
                    );
                }
                _ => {}
            }
        }
        Ok(asked)
    }

    /// Whether resources of `resource_type` are wanted (`_type`).
    fn wants(&self, resource_type: &str) -> bool {
        self.types
            .as_ref()
            .is_none_or(|list| list.iter().any(|w| w == resource_type))
    }
}

/// Every member's res_id, sorted (the patient first), and the patient's: the compartment,
/// the resources it and the patient reference, updated since `_since`.
async fn members(
    app: &App,
    request: &FhirRequest,
    id: &str,
    asked: &Asked,
) -> Result<(Vec<i64>, i64), FhirError> {
    let wanted = |t: &str| asked.wants(t);
    let patient_res_id = head_res_id(app, request.tenant, id).await?;
    let mut members = compartment(app, request.tenant, id, &wanted).await?;
    // What the patient references (e.g. its managing organization) joins too.
    members.push(patient_res_id);
    let referenced = referenced(app, request.tenant, &members, &wanted).await?;
    if !wanted("Patient") {
        members.retain(|&r| r != patient_res_id);
    }
    members.extend(referenced);
    members.sort_unstable();
    members.dedup();
    if let Some(since) = asked.since {
        members = updated_since(app, &members, since).await?;
    }
    members.sort_unstable_by_key(|&r| (i64::from(r != patient_res_id), r));
    Ok((members, patient_res_id))
}

/// The Bundle entries of a page of res_ids, in that order.
async fn entries(app: &App, request: &FhirRequest, page: &[i64]) -> Result<Vec<Entry>, FhirError> {
    let rows = app.store.current_by_res_ids(page).await?;
    let mut by_res_id: BTreeMap<i64, Row> = rows.into_iter().map(|r| (r.res_id, r)).collect();
    Ok(page
        .iter()
        .filter_map(|res_id| by_res_id.remove(res_id))
        .map(|row| {
            let mut rest = Map::new();
            rest.insert("search".into(), json!({"mode": "match"}));
            Entry {
                full_url: Some(full_url(request, &row.version)),
                resource: Resource::of(&row.version),
                rest,
            }
        })
        .collect())
}

/// The res_id of a current resource.
async fn head_res_id(app: &App, tenant: TenantId, id: &str) -> Result<i64, FhirError> {
    let rows = app
        .store
        .current_by_ids(tenant, "Patient", &[id.to_owned()])
        .await?;
    rows.first()
        .map(|row| row.res_id)
        .ok_or_else(|| FhirError::not_found(format!("Patient/{id} is not known")))
}

/// The res_ids of the resources in the patient's compartment (of the wanted types): one
/// lookup of the reference index over every compartment parameter.
async fn compartment(
    app: &App,
    tenant: TenantId,
    id: &str,
    wanted: &impl Fn(&str) -> bool,
) -> Result<Vec<i64>, FhirError> {
    let keys = compartment::compartment_keys(wanted);
    Ok(app.store.compartment_members(tenant, &keys, id).await?)
}

/// The res_ids of the Practitioners, Organizations and Locations the members reference.
async fn referenced(
    app: &App,
    tenant: TenantId,
    members: &[i64],
    wanted: &impl Fn(&str) -> bool,
) -> Result<Vec<i64>, FhirError> {
    let targets: Vec<&str> = REFERENCED.iter().copied().filter(|t| wanted(t)).collect();
    if targets.is_empty() {
        return Ok(Vec::new());
    }
    let mut by_type: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for chunk in members.chunks(CHUNK) {
        for (target_type, target_id) in app.store.referenced_targets(chunk, &targets).await? {
            by_type.entry(target_type).or_default().push(target_id);
        }
    }
    let mut found = Vec::new();
    for (target_type, mut ids) in by_type {
        ids.sort();
        ids.dedup();
        for chunk in ids.chunks(CHUNK) {
            let rows = app
                .store
                .current_by_ids(tenant, &target_type, chunk)
                .await?;
            found.extend(rows.into_iter().map(|row| row.res_id));
        }
    }
    Ok(found)
}

/// The members last updated at or after `since`.
async fn updated_since(app: &App, members: &[i64], since: i64) -> Result<Vec<i64>, FhirError> {
    let mut kept = Vec::new();
    for chunk in members.chunks(CHUNK) {
        for (res_id, time) in app.store.last_updated_of(chunk).await? {
            if time >= since {
                kept.push(res_id);
            }
        }
    }
    Ok(kept)
}
