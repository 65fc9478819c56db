//! Searches the scheduling rules run with the server's rights, every page of them.

use serde_json::Value;

use crate::app::App;
use crate::error::FhirError;
use crate::ids::{ResourceType, TenantId};
use crate::search::Query;
use crate::store::search::execute;

/// The most resources one look-up gathers: a question that needs more is too wide (a
/// `$find` over years of a busy calendar) and is refused rather than allowed to take the
/// server's memory.
const MOST: usize = 20_000;

/// Every current resource of `resource_type` matching `params`.
pub async fn all(
    app: &App,
    tenant: TenantId,
    resource_type: &str,
    params: &[(String, String)],
) -> Result<Vec<Value>, FhirError> {
    let typed = ResourceType::from_path(resource_type)?;
    let mut params = params.to_vec();
    let limits = app.page_limits();
    params.push(("_count".into(), limits.max_count.to_string()));
    let mut query = Query::parse(&typed, &params, true)?;
    let mut found = Vec::new();
    loop {
        let page = execute(&app.store, tenant, &query, limits).await?;
        for row in &page.matches {
            if let Some(body) = &row.version.body {
                let value: Value = serde_json::from_slice(body).map_err(|e| {
                    FhirError::internal(format!("a stored resource is not JSON: {e}"))
                })?;
                found.push(value);
            }
        }
        if found.len() > MOST {
            return Err(FhirError::new(
                axum::http::StatusCode::UNPROCESSABLE_ENTITY,
                "too-costly",
                format!(
                    "The question needs more than {MOST} {resource_type} resources: ask for a shorter time"
                ),
            ));
        }
        match page.next {
            Some(next) => query.cursor = Some(next),
            None => return Ok(found),
        }
    }
}

/// An instant as a search value (`2026-03-09T14:00:00Z`).
pub fn instant(micros: i64) -> String {
    crate::resource::format_instant(micros)
}
