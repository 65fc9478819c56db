//! Secure messages (Communications of kind `secure-message`) and their attachments
//! (Binaries whose `securityContext` is a Communication) are written by secure messaging
//! itself (`Communication/$send-message`, the read receipts of `$thread`), never through
//! the REST API by a user: a patient or a member of staff must not rewrite what was said,
//! forge a sender, mark a message read for someone else, or swap an attachment. The
//! `admin` role, a backend service and the server itself may (a migration of messages from
//! another system). The conditional forms of writes on these types, and PATCH, are
//! refused to users too, since what they would match or leave cannot be judged
//! beforehand.

use axum::http::Method;
use serde_json::Value;

use super::enforce::forbidden;
use super::principal::Principal;
use crate::error::FhirError;
use crate::ids::TenantId;
use crate::resource::is_secure_message;
use crate::store::Store;

/// Whether `principal` may write secure messages and their attachments directly.
pub fn writes_directly(principal: Option<&Principal>) -> bool {
    match principal {
        None => true,
        Some(principal) => principal
            .role
            .as_ref()
            .is_none_or(|role| role.name == "admin"),
    }
}

/// Whether `resource` is a secure message or may be an attachment of one.
fn guarded(resource: &Value) -> bool {
    is_secure_message(resource)
        || (resource["resourceType"] == "Binary"
            && resource["securityContext"]["reference"]
                .as_str()
                .is_some_and(|r| r.starts_with("Communication/")))
}

fn refused() -> FhirError {
    forbidden(
        "Secure messages and their attachments are written by $send-message only (and read receipts by $thread)",
    )
}

/// Refuses a write (`method` on `segments`, with `body`) by `principal` that would create,
/// change or remove a secure message or an attachment of one.
pub async fn check_write(
    store: &Store,
    tenant: TenantId,
    principal: Option<&Principal>,
    (method, segments): (&Method, &[String]),
    body: Option<&Value>,
) -> Result<(), FhirError> {
    let writes = matches!(
        *method,
        Method::POST | Method::PUT | Method::PATCH | Method::DELETE
    );
    let Some(resource_type) = segments.first().map(String::as_str) else {
        return Ok(());
    };
    if !writes || !matches!(resource_type, "Communication" | "Binary") || writes_directly(principal)
    {
        return Ok(());
    }
    if body.is_some_and(guarded) {
        return Err(refused());
    }
    // What a patch leaves is known only once applied: a plain Communication patched into a
    // secure message would be a forged one.
    if *method == Method::PATCH {
        return Err(forbidden(format!(
            "PATCH of {resource_type} takes the admin role or a backend service (secure messages)"
        )));
    }
    match segments {
        [_] | [_, _] if *method == Method::POST => Ok(()),
        [_] => Err(forbidden(format!(
            "Conditional writes of {resource_type} take the admin role or a backend service"
        ))),
        [_, id] if !id.starts_with(['$', '_']) => {
            let current = store.read(tenant, resource_type, id).await?;
            let stored = current
                .and_then(|version| version.body)
                .and_then(|body| serde_json::from_slice::<Value>(&body).ok());
            if stored.as_ref().is_some_and(guarded) {
                Err(refused())
            } else {
                Ok(())
            }
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn attachments_and_secure_messages_are_guarded_and_other_resources_are_not() {
        let message = json!({"resourceType": "Communication", "category": [{"coding": [{
            "system": crate::resource::COMMUNICATION_KIND, "code": "secure-message"}]}]});
        let attachment = json!({"resourceType": "Binary",
            "securityContext": {"reference": "Communication/m1"}});
        let claim_file = json!({"resourceType": "Binary",
            "securityContext": {"reference": "Claim/c1"}});
        let reminder = json!({"resourceType": "Communication", "status": "completed"});
        assert!(guarded(&message) && guarded(&attachment));
        assert!(!guarded(&claim_file) && !guarded(&reminder));
    }
}
