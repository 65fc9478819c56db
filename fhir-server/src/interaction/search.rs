//! search: `GET [base]/[type]?params` and `POST [base]/[type]/_search` (form-encoded), both
//! giving the same results (https://hl7.org/fhir/R4/http.html#search). Pages follow an
//! opaque keyset cursor, so they stay stable while other clients write.

use axum::http::StatusCode;
use serde_json::json;

use super::bundle::{bundle, full_url, link_url, resource_value};
use crate::app::App;
use crate::error::FhirError;
use crate::http::format::{BodyFormat, body_format};
use crate::http::request::{FhirRequest, parse_query};
use crate::http::response::FhirResponse;
use crate::search::Query;

pub async fn handle(
    app: &App,
    request: &FhirRequest,
    resource_type: &str,
) -> Result<FhirResponse, FhirError> {
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
    let query = Query::parse(resource_type, &params, request.strict_handling())?;
    let summary_count = params.iter().any(|(k, v)| k == "_summary" && v == "count");
    let page = app
        .store
        .search(&request.tenant, resource_type, &query)
        .await?;

    let mut self_params = query.applied.clone();
    if let Some(count) = query.count {
        self_params.push(("_count".into(), count.to_string()));
    }
    let mut links = vec![(
        "self",
        link_url(
            request,
            resource_type,
            &with_cursor(&self_params, query.after),
        ),
    )];
    if query.after.is_some() {
        links.push(("first", link_url(request, resource_type, &self_params)));
    }
    if summary_count {
        return Ok(FhirResponse::value(
            StatusCode::OK,
            bundle("searchset", Some(page.total), links, Vec::new()),
        ));
    }
    if page.entries.len() == query.page_size()
        && let Some((last, _)) = page.entries.last()
    {
        links.push((
            "next",
            link_url(
                request,
                resource_type,
                &with_cursor(&self_params, Some(*last)),
            ),
        ));
    }
    let mut entries = Vec::with_capacity(page.entries.len());
    for (_, version) in &page.entries {
        entries.push(json!({
            "fullUrl": full_url(request, version),
            "resource": resource_value(version)?,
            "search": {"mode": "match"},
        }));
    }
    Ok(FhirResponse::value(
        StatusCode::OK,
        bundle("searchset", Some(page.total), links, entries),
    ))
}

fn with_cursor(params: &[(String, String)], after: Option<i64>) -> Vec<(String, String)> {
    let mut params = params.to_vec();
    if let Some(after) = after {
        params.push(("_page".into(), after.to_string()));
    }
    params
}
