//! search: `GET [base]/[type]?params` and `POST [base]/[type]/_search` (form-encoded), which
//! give the same results, and the Patient compartment search `GET [base]/Patient/[id]/[type]`
//! (https://hl7.org/fhir/R4/http.html#search). Pages follow opaque keyset cursors, so they
//! stay stable while other clients write.

use axum::http::StatusCode;
use serde_json::{Map, Value, json};

use crate::app::App;
use crate::error::FhirError;
use crate::ids::{Id, ResourceType};
use crate::rest::bundle::{Entry, Resource, bundle, link_url, not_json};
use crate::rest::format::{BodyFormat, body_format};
use crate::rest::request::{FhirRequest, parse_query};
use crate::rest::response::FhirResponse;
use crate::search::Query;
use crate::search::query::{Clause, Condition, Summary, Table};
use crate::store::Row;
use crate::store::search::execute;

pub async fn handle(
    app: &App,
    request: &FhirRequest,
    resource_type: ResourceType,
) -> Result<FhirResponse, FhirError> {
    let params = search_params(request)?;
    let query = Query::parse(&resource_type, &params, request.strict_handling())?;
    respond(app, request, &resource_type, query).await
}

/// `GET [base]/Patient/[id]/[type]`: the search on `[type]`, limited to resources that
/// belong to the patient's compartment through any of the compartment's parameters.
pub async fn compartment(
    app: &App,
    request: &FhirRequest,
    compartment_type: ResourceType,
    id: Id<'_>,
    resource_type: ResourceType,
) -> Result<FhirResponse, FhirError> {
    let links = fhir_model::compartment::patient_compartment_params(&resource_type);
    if compartment_type != "Patient" || links.is_empty() {
        return Err(FhirError::not_found(format!(
            "{resource_type} is not in the {compartment_type} compartment"
        )));
    }
    let params = search_params(request)?;
    let mut query = Query::parse(&resource_type, &params, request.strict_handling())?;
    let membership = links
        .iter()
        .map(|param| Clause::Index {
            table: Table::Reference,
            param: param.clone(),
            any: vec![Condition::Reference {
                target_type: Some(compartment_type.to_string()),
                target_id: Some(id.to_string()),
                url: None,
            }],
            negate: false,
        })
        .collect();
    query.clauses.push(Clause::AnyOf(membership));
    let path = format!("{compartment_type}/{id}/{resource_type}");
    respond(app, request, &path, query).await
}

/// The query parameters, plus the form body of `POST _search`.
fn search_params(request: &FhirRequest) -> Result<Vec<(String, String)>, FhirError> {
    let mut params = request.params.clone();
    if request.method == axum::http::Method::POST && !request.body.is_empty() {
        if body_format(&request.headers)? != BodyFormat::Form {
            return Err(FhirError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "not-supported",
                "POST _search takes application/x-www-form-urlencoded parameters",
            ));
        }
        let form = std::str::from_utf8(&request.body)
            .map_err(|_| FhirError::bad_request("The form body is not UTF-8"))?;
        params.extend(parse_query(form));
    }
    Ok(params)
}

/// Runs the query and builds the searchset Bundle; `path` is what links are relative to.
async fn respond(
    app: &App,
    request: &FhirRequest,
    path: &str,
    query: Query,
) -> Result<FhirResponse, FhirError> {
    let limits = app.page_limits();
    let result = execute(&app.store, request.tenant, &query, limits).await?;
    let mut link_params = query.applied.clone();
    if query.count.is_some() {
        link_params.push(("_count".into(), query.page_size(limits).to_string()));
    }
    let with_page = |cursor: &crate::search::cursor::Cursor| {
        let mut params = link_params.clone();
        params.push(("_page".into(), cursor.encode()));
        link_url(request, path, &params)
    };
    let mut links = vec![(
        "self",
        match &query.cursor {
            Some(cursor) => with_page(cursor),
            None => link_url(request, path, &link_params),
        },
    )];
    links.push(("first", link_url(request, path, &link_params)));
    if let Some(previous) = &result.previous {
        links.push(("previous", with_page(previous)));
    }
    if let Some(next) = &result.next {
        links.push(("next", with_page(next)));
    }
    let mut entries = Vec::with_capacity(result.matches.len() + result.included.len());
    for (rows, mode) in [(&result.matches, "match"), (&result.included, "include")] {
        for row in rows {
            entries.push(entry(request, row, mode, &query)?);
        }
    }
    Ok(FhirResponse::bundle(
        StatusCode::OK,
        bundle("searchset", result.total, links, entries),
    ))
}

fn entry(request: &FhirRequest, row: &Row, mode: &str, query: &Query) -> Result<Entry, FhirError> {
    let version = &row.version;
    let mut resource = Resource::of(version);
    if query.summary != Summary::False || query.elements.is_some() {
        let mut value = match resource {
            Some(resource) => resource.into_value().map_err(not_json)?,
            None => Value::Null,
        };
        super::subset::subset(
            &mut value,
            &version.resource_type,
            query.summary,
            query.elements.as_deref(),
        );
        resource = Some(Resource::Value(value));
    }
    let mut rest = Map::new();
    rest.insert("search".into(), json!({"mode": mode}));
    Ok(Entry {
        full_url: Some(format!(
            "{}/{}/{}",
            request.base, version.resource_type, version.id
        )),
        resource,
        rest,
    })
}
