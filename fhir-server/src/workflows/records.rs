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

/// The current content of the resource `reference` names (`Patient/p1`), if it exists.
pub async fn read_reference(
    app: &App,
    tenant: TenantId,
    reference: &str,
) -> Result<Option<Value>, FhirError> {
    match reference.split_once('/') {
        Some((resource_type, id))
            if ResourceType::parse(resource_type).is_some() && crate::ids::is_valid_id(id) =>
        {
            read(app, tenant, resource_type, id).await
        }
        _ => Ok(None),
    }
}

/// Replaces `resource` if it is still at the version it was read at (its
/// `meta.versionId`): whether it was (`false`: someone changed it meanwhile).
pub async fn replace_unchanged(
    app: &App,
    tenant: TenantId,
    resource: Value,
) -> Result<bool, FhirError> {
    let resource_type = resource["resourceType"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let id = resource["id"].as_str().unwrap_or_default().to_owned();
    let if_match = resource["meta"]["versionId"]
        .as_str()
        .and_then(|v| v.parse().ok());
    let op = WriteOp::Update {
        index: index::extract(&resource_type, &resource),
        resource_type,
        id,
        resource,
        if_match,
        method: Method::Put,
    };
    match app.store.write(tenant, op).await.map_err(FhirError::from) {
        Ok(_) => Ok(true),
        Err(error) if error.status == axum::http::StatusCode::PRECONDITION_FAILED => Ok(false),
        Err(error) => Err(error),
    }
}
