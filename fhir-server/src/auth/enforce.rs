//! Whether a principal may do what a request asks, and how far its answer must be
//! confined: the scopes of its token, bounded by the user's role (see
//! `smart_auth::role::permits`); a patient/ scope confines every answer to the patient's
//! compartment, which this module also decides for a single resource.
//!
//! A resource outside the compartment is answered as if it did not exist (404, never 403):
//! a patient's app must not learn what else the server holds.

use axum::http::StatusCode;
use serde_json::Value;
use smart_auth::role::permits;
use smart_auth::scope::{Context, Permission};

use super::principal::Principal;
use crate::error::FhirError;

/// How far an allowed request's answer reaches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reach {
    /// Everything the permission covers (no token needed, a user/ or system/ scope).
    All,
    /// Only the compartment of this patient (a patient/ scope).
    Patient(String),
}

/// 403 with an OperationOutcome: the token does not cover the request.
pub fn forbidden(diagnostics: impl Into<String>) -> FhirError {
    FhirError::new(StatusCode::FORBIDDEN, "forbidden", diagnostics)
}

fn verb(permission: Permission) -> &'static str {
    match permission {
        Permission::Create => "create",
        Permission::Read => "read",
        Permission::Update => "update",
        Permission::Delete => "delete",
        Permission::Search => "search",
    }
}

/// A member of staff who breaks the glass (an emergency, with a reason given): the same
/// principal with the role's reading widened to every type but AuditEvent, for this one
/// request; writing stays as it was, the token's scopes still bound everything, and the
/// request is flagged in the audit trail (purposeOfUse BTG) for review. `None` for
/// anyone else (a patient, an admin, a backend service): their access has no glass.
pub fn break_glass(principal: &Principal) -> Option<Principal> {
    let role = principal
        .role
        .as_ref()
        .filter(|_| may_break_glass(principal))?;
    let mut widened = principal.clone();
    widened.role = Some(smart_auth::role::Role {
        read: smart_auth::role::Types::AllBut(vec!["AuditEvent".to_owned()]),
        ..role.clone()
    });
    Some(widened)
}

/// Whether `principal` is a signed-in member of staff (not a patient, not an admin).
pub fn may_break_glass(principal: &Principal) -> bool {
    principal.username.is_some()
        && principal
            .role
            .as_ref()
            .is_some_and(|role| role.name != "patient" && role.name != "admin")
}

/// Whether `principal` (`None`: the server's own rights, or `--auth none`) may do
/// `permission` on `resource_type`, and how far.
pub fn check(
    principal: Option<&Principal>,
    resource_type: &str,
    permission: Permission,
) -> Result<Reach, FhirError> {
    let Some(principal) = principal else {
        return Ok(Reach::All);
    };
    if resource_type == "AuditEvent" && !audit_entitled(principal, permission) {
        return Err(forbidden(
            "AuditEvent is outside every wildcard scope: it takes the admin role or a scope that names it",
        ));
    }
    if reaches_all(principal, resource_type, permission) {
        return Ok(Reach::All);
    }
    let found = permits(
        &principal.scopes,
        principal.role.as_ref(),
        resource_type,
        permission,
    );
    let refused = || {
        forbidden(format!(
            "The access token does not permit {} on {resource_type}",
            verb(permission)
        ))
    };
    if found.is_empty() {
        return Err(refused());
    }
    let unconstrained = |context: Context| {
        found
            .iter()
            .any(|permit| permit.context == context && permit.constraint.is_empty())
    };
    if unconstrained(Context::System) || unconstrained(Context::User) {
        return Ok(Reach::All);
    }
    if unconstrained(Context::Patient) {
        return match &principal.patient {
            Some(patient) => Ok(Reach::Patient(patient.clone())),
            None => Err(forbidden(
                "The access token has patient/ scopes but no patient in context",
            )),
        };
    }
    // Only scopes with query constraints permit it: the gate honours them by the shape
    // of the request (see `query_constraint` and `http::guard`).
    Err(refused())
}

/// Whether `principal` may read every type, AuditEvent included: then nothing in an
/// answer needs a check of its type.
pub fn reads_every_type(principal: &Principal) -> bool {
    audit_entitled(principal, Permission::Read)
        && matches!(
            check(Some(principal), "*", Permission::Read),
            Ok(Reach::All)
        )
}

/// Whether `principal` may touch AuditEvents: a user of the admin role, or a scope that
/// names AuditEvent itself (a wildcard never reaches the audit trail).
fn audit_entitled(principal: &Principal, permission: Permission) -> bool {
    let admin = principal
        .role
        .as_ref()
        .is_some_and(|role| role.name == "admin");
    admin
        || principal.scopes.resources().any(|scope| {
            scope.resource_type.as_deref() == Some("AuditEvent")
                && scope.permits(scope.context, "AuditEvent", permission)
        })
}

/// The common case, decided without allocating: an unconstrained system/ scope of a
/// backend, or an unconstrained user/ scope of a user whose role allows the permission.
/// (Anything else goes through `smart_auth::role::permits`.)
fn reaches_all(principal: &Principal, resource_type: &str, permission: Permission) -> bool {
    let role_allows = |role: &smart_auth::role::Role| role.allows(resource_type, permission);
    principal.scopes.resources().any(|scope| {
        scope.constraint.is_empty()
            && scope.permits(scope.context, resource_type, permission)
            && match (scope.context, &principal.role) {
                (Context::System, None) => true,
                (Context::User, Some(role)) => role_allows(role),
                _ => false,
            }
    })
}

/// The query constraint a request must meet when only constrained scopes permit it
/// (`patient/Observation.rs?category=laboratory`): the first such scope's, which is never
/// wider than what the scopes grant together. A search gets it as parameters; a read, a
/// vread, a history and a write are judged against it. `None`: no constraint applies.
pub fn query_constraint(
    principal: Option<&Principal>,
    resource_type: &str,
    permission: Permission,
) -> Option<(Context, Vec<(String, String)>)> {
    let principal = principal?;
    let found = permits(
        &principal.scopes,
        principal.role.as_ref(),
        resource_type,
        permission,
    );
    if found.is_empty() || found.iter().any(|permit| permit.constraint.is_empty()) {
        return None;
    }
    found
        .first()
        .map(|permit| (permit.context, permit.constraint.to_vec()))
}

/// The types `principal` may read, for a bulk export: `None` when every type (a wildcard
/// scope the role allows, or no token at all).
pub fn readable_types(principal: Option<&Principal>) -> Option<Vec<String>> {
    let principal = principal?;
    if check(Some(principal), "*", Permission::Read).is_ok() {
        return None;
    }
    let mut types: Vec<String> = principal
        .scopes
        .resources()
        .filter_map(|scope| scope.resource_type.clone())
        .filter(|t| check(Some(principal), t, Permission::Read).is_ok())
        .collect();
    types.sort();
    types.dedup();
    Some(types)
}

/// Whether `resource` is in the compartment of `Patient/{patient}`: the patient itself, or
/// a resource that points at it through one of the compartment's parameters.
pub fn in_compartment(patient: &str, resource: &Value) -> bool {
    let Some(resource_type) = resource["resourceType"].as_str() else {
        return false;
    };
    if resource_type == "Patient" && resource["id"].as_str() == Some(patient) {
        return true;
    }
    let links = fhir_model::compartment::patient_compartment_params(resource_type);
    if links.is_empty() {
        return false;
    }
    crate::index::references_of(resource_type, resource, links)
        .iter()
        .any(|row| {
            row.target_type == "Patient" && row.target_id == patient && links.contains(&row.param)
        })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn a_patient_is_in_its_own_compartment_and_not_in_anothers() {
        let patient = json!({"resourceType": "Patient", "id": "p1"});
        assert!(in_compartment("p1", &patient));
        assert!(!in_compartment("p2", &patient));
    }

    #[test]
    fn a_resource_is_in_the_compartment_of_the_patient_it_is_about() {
        let observation = json!({"resourceType": "Observation", "id": "o1", "status": "final",
            "code": {"text": "x"}, "subject": {"reference": "Patient/p1"}});
        assert!(in_compartment("p1", &observation));
        assert!(!in_compartment("p2", &observation));
        let practitioner = json!({"resourceType": "Practitioner", "id": "d1"});
        assert!(!in_compartment("p1", &practitioner));
    }
}
