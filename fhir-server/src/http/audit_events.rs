//! `AuditEvent` over FHIR: the audit trail, searched (`ops::access_log::search`) and
//! read, rendered as BALP AuditEvents. Nobody writes them: every create, update, patch or
//! delete is 405 (the trail is the server's own record). Who may read them is the gate's
//! affair: the admin role, or a scope that names AuditEvent (`auth::enforce`).

use axum::http::{Method, StatusCode};

use crate::app::App;
use crate::audit::render::audit_event;
use crate::error::FhirError;
use crate::ops::access_log::{filter, search};
use crate::rest::request::FhirRequest;
use crate::rest::response::FhirResponse;

/// `AuditEvent...`: read and search; every write is refused.
pub async fn handle(
    app: &App,
    request: &FhirRequest,
    rest: &[&str],
) -> Result<FhirResponse, FhirError> {
    match (rest, &request.method) {
        ([], &Method::GET) | (["_search"], &Method::POST) => {
            let filter = filter(&request.params)?;
            search(app, request, filter, "AuditEvent").await
        }
        ([id], &Method::GET) => read(app, request, id).await,
        _ => Err(FhirError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "not-supported",
            "AuditEvents are the server's own record of every access: they cannot be created, changed or deleted through the API",
        )),
    }
}

async fn read(app: &App, request: &FhirRequest, id: &str) -> Result<FhirResponse, FhirError> {
    let not_found = || FhirError::not_found(format!("AuditEvent/{id} is not known"));
    let seq: i64 = id.parse().map_err(|_| not_found())?;
    let record = app
        .store
        .audit_record(request.tenant, seq)
        .await?
        .ok_or_else(not_found)?;
    Ok(FhirResponse::value(StatusCode::OK, audit_event(&record)))
}
