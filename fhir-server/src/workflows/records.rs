//! The FHIR records a workflow keeps, written with the server's rights through the store
//! (every rule of a write holds: validation is the workflow's, by construction).

use serde_json::Value;

use crate::app::App;
use crate::error::FhirError;
use crate::ids::{ResourceType, TenantId};
use crate::index;
use crate::search::Query;
use crate::store::{Method, Outcome, WriteOp};

/// The current content of `resource_type/id`, if it exists (and was not deleted).
pub async fn read(
    app: &App,
    tenant: TenantId,
    resource_type: &str,
    id: &str,
) -> Result<Option<Value>, FhirError> {
    let version = app.store.read(tenant, resource_type, id).await?;
    Ok(version
        .and_then(|v| v.body)
        .and_then(|body| serde_json::from_slice(&body).ok()))
}

/// Creates `resource`; with `unless`, only when nothing matches that search (a retried
/// step must not write its record twice). The id written, or the one matched.
pub async fn create(
    app: &App,
    tenant: TenantId,
    resource: Value,
    unless: Option<&[(String, String)]>,
) -> Result<String, FhirError> {
    let resource_type = resource["resourceType"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let if_none_exist = match unless {
        Some(params) => Some(Query::parse(
            &ResourceType::from_path(&resource_type)?,
            params,
            true,
        )?),
        None => None,
    };
    let op = WriteOp::Create {
        index: index::extract(&resource_type, &resource),
        resource_type,
        resource,
        if_none_exist,
    };
    match app.store.write(tenant, op).await? {
        Outcome::Created(version) | Outcome::Matched(version) => Ok(version.id),
        _ => Err(FhirError::internal("a create answered otherwise")),
    }
}

/// Replaces the current content of a resource with `resource` (its `id` names it).
pub async fn replace(app: &App, tenant: TenantId, resource: Value) -> Result<(), FhirError> {
    let resource_type = resource["resourceType"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let id = resource["id"].as_str().unwrap_or_default().to_owned();
    let op = WriteOp::Update {
        index: index::extract(&resource_type, &resource),
        resource_type,
        id,
        resource,
        if_match: None,
        method: Method::Put,
    };
    app.store.write(tenant, op).await?;
    Ok(())
}
