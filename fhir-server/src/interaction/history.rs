//! history: instance `GET [type]/[id]/_history`, type `GET [type]/_history` and system
//! `GET [base]/_history` (https://hl7.org/fhir/R4/http.html#history). Newest first, with
//! `_since` and `_count`, paging by an opaque cursor; deletes appear as entries with
//! `request.method` DELETE and no resource.

use axum::http::StatusCode;
use serde_json::{Map, json};

use crate::app::App;
use crate::error::FhirError;
use crate::ids::{Id, ResourceType};
use crate::resource::{format_instant, parse_instant};
use crate::rest::bundle::{Entry, Resource, bundle, full_url, link_url};
use crate::rest::request::FhirRequest;
use crate::rest::response::{FhirResponse, etag};
use crate::store::{HistoryQuery, Method, Version};

pub async fn handle(
    app: &App,
    request: &FhirRequest,
    resource_type: Option<ResourceType>,
    id: Option<Id<'_>>,
) -> Result<FhirResponse, FhirError> {
    let mut query = HistoryQuery {
        resource_type: resource_type.map(|t| t.to_string()),
        id: id.map(|id| id.to_string()),
        count: app.page_limits().default_count,
        ..HistoryQuery::default()
    };
    let mut applied = Vec::new();
    for (name, value) in &request.params {
        match name.as_str() {
            "_since" => {
                // A '+' in an unencoded query arrives as a space.
                let since = parse_instant(&value.replace(' ', "+")).ok_or_else(|| {
                    FhirError::bad_request(format!(
                        "Invalid _since '{value}': expected an instant such as 2024-01-31T12:00:00Z"
                    ))
                })?;
                query.since = Some(since);
                applied.push((name.clone(), value.clone()));
            }
            "_count" => {
                let count: usize = value
                    .parse()
                    .map_err(|_| FhirError::bad_request(format!("Invalid _count '{value}'")))?;
                query.count = count.clamp(1, app.page_limits().max_count);
                applied.push((name.clone(), query.count.to_string()));
            }
            "_page" => query.before = Some(parse_cursor(value)?),
            _ => {}
        }
    }
    let page = app.store.history(request.tenant, &query).await?;
    if let (Some(resource_type), Some(id)) = (resource_type, id)
        && page.total == 0
        && query.since.is_none()
    {
        return Err(FhirError::not_found(format!(
            "{resource_type}/{id} is not known"
        )));
    }
    let path = match (resource_type, id) {
        (Some(t), Some(i)) => format!("{t}/{i}/_history"),
        (Some(t), None) => format!("{t}/_history"),
        _ => "_history".to_owned(),
    };
    let mut self_params = applied.clone();
    if let Some((last_updated, seq)) = query.before {
        self_params.push(("_page".into(), format!("{last_updated}.{seq}")));
    }
    let mut links = vec![("self", link_url(request, &path, &self_params))];
    if query.before.is_some() {
        links.push(("first", link_url(request, &path, &applied)));
    }
    if page.entries.len() == query.count
        && let Some(((last_updated, seq), _)) = page.entries.last()
    {
        let mut next = applied.clone();
        next.push(("_page".into(), format!("{last_updated}.{seq}")));
        links.push(("next", link_url(request, &path, &next)));
    }
    let mut entries = Vec::with_capacity(page.entries.len());
    for (_, version) in &page.entries {
        entries.push(entry(request, version)?);
    }
    Ok(FhirResponse::bundle(
        StatusCode::OK,
        bundle("history", Some(page.total), links, entries),
    ))
}

fn parse_cursor(value: &str) -> Result<(i64, i64), FhirError> {
    value
        .split_once('.')
        .and_then(|(a, b)| Some((a.parse().ok()?, b.parse().ok()?)))
        .ok_or_else(|| FhirError::bad_request(format!("Invalid paging cursor '{value}'")))
}

fn entry(request: &FhirRequest, version: &Version) -> Result<Entry, FhirError> {
    let (url, status) = match version.method {
        Method::Post => (version.resource_type.clone(), "201 Created"),
        Method::Delete => (
            format!("{}/{}", version.resource_type, version.id),
            "204 No Content",
        ),
        _ if version.version == 1 => (
            format!("{}/{}", version.resource_type, version.id),
            "201 Created",
        ),
        _ => (
            format!("{}/{}", version.resource_type, version.id),
            "200 OK",
        ),
    };
    let mut rest = Map::new();
    rest.insert(
        "request".into(),
        json!({"method": version.method.as_str(), "url": url}),
    );
    rest.insert(
        "response".into(),
        json!({
            "status": status,
            "etag": etag(version.version),
            "lastModified": format_instant(version.last_updated),
        }),
    );
    Ok(Entry {
        full_url: Some(full_url(request, version)),
        resource: Resource::of(version),
        rest,
    })
}
