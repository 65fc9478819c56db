//! `POST Patient/{id}/$erase`: the right to erasure (GDPR article 17), and patients who
//! leave. Removes the patient and every resource that ever referenced it, with all their
//! history, permanently (`store::erase`), and the bulk export files that hold the patient.
//! The audit trail stays (kept for legal retention): the erasure is recorded in it by what
//! was erased (how many versions of which types, how many exports), never the data.
//! For admins only.

use axum::http::StatusCode;
use serde_json::{Value, json};

use super::{Operation, Param};
use crate::app::App;
use crate::error::FhirError;
use crate::rest::request::FhirRequest;
use crate::rest::response::FhirResponse;
use crate::store::audit::Entry;

/// `Patient/[id]/$erase`, as registered in `ops::OPERATIONS`.
pub const OPERATION: Operation = Operation {
    name: "erase",
    id: "Patient-erase",
    url: "urn:fhir-server:OperationDefinition/Patient-erase",
    title: "Erase a patient",
    description: "Removes the patient, every resource that ever referenced it and all their history, permanently, and deletes the bulk export files that hold the patient. AuditEvents are kept. Admins only.",
    types: &["Patient"],
    system: false,
    type_level: false,
    instance: true,
    affects_state: true,
    parameters: &[Param {
        name: "return",
        use_: "out",
        min: 1,
        max: "1",
        type_: "Parameters",
        documentation: "`erased`: versions removed per type; `exports-removed`: export folders deleted",
    }],
    handler: |app, request, target| Box::pin(handle(app, request, target.id().unwrap_or_default())),
};

pub async fn handle(app: &App, request: &FhirRequest, id: &str) -> Result<FhirResponse, FhirError> {
    let admin = request.principal.as_deref().is_none_or(|principal| {
        principal
            .role
            .as_ref()
            .is_some_and(|role| role.name == "admin")
    });
    if !admin {
        return Err(FhirError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            "Erasing a patient is for admins only",
        ));
    }
    crate::interaction::read::current(app, request, "Patient", id).await?;
    let erased = app.store.erase_patient(request.tenant, id).await?;
    let exports = remove_exports(&app.config.export_dir, id).await;
    let summary: Vec<String> = erased
        .iter()
        .map(|(resource_type, count)| format!("{resource_type}:{count}"))
        .collect();
    if let Some(agent) = crate::store::provenance::current().and_then(|a| a.agent) {
        app.audit.record(
            request.tenant,
            Entry {
                recorded: crate::clock::now_micros(),
                event: "erase".into(),
                action: "D",
                status: 200,
                agent,
                entity: Some(format!("Patient/{id}")),
                query: Some(format!("erased={};exports={exports}", summary.join(","))),
                via: Some("$erase".into()),
                patients: vec![id.to_owned()],
            },
        );
    }
    let parts: Vec<Value> = erased
        .iter()
        .map(|(resource_type, count)| json!({"name": resource_type, "valueInteger": count}))
        .collect();
    Ok(FhirResponse::value(
        StatusCode::OK,
        json!({"resourceType": "Parameters", "parameter": [
            {"name": "erased", "part": parts},
            {"name": "exports-removed", "valueInteger": exports},
        ]}),
    ))
}

/// Deletes every export folder with a file that holds the patient; how many.
async fn remove_exports(export_dir: &std::path::Path, id: &str) -> usize {
    let dir = export_dir.to_owned();
    let id = id.to_owned();
    tokio::task::spawn_blocking(move || {
        let Ok(exports) = std::fs::read_dir(&dir) else {
            return 0;
        };
        let reference = format!("Patient/{id}\"");
        let own = format!("\"resourceType\":\"Patient\",\"id\":\"{id}\"");
        let mut removed = 0;
        for export in exports.flatten() {
            let path = export.path();
            let holds = std::fs::read_dir(&path)
                .into_iter()
                .flatten()
                .flatten()
                .any(|file| {
                    std::fs::read_to_string(file.path())
                        .is_ok_and(|text| text.contains(&reference) || text.contains(&own))
                });
            if holds && std::fs::remove_dir_all(&path).is_ok() {
                removed += 1;
            }
        }
        removed
    })
    .await
    .unwrap_or(0)
}
