//! The practice's roles (admin, provider, front-desk, billing, patient) as data: which
//! resource types each may read and write. A user's request is allowed when a scope of its
//! token permits it and the user's role does too, so a `user/` scope never grants more
//! than the role. The defaults here are what a new tenant starts with.

use serde::{Deserialize, Serialize};

use crate::scope::{Context, Permission, Scopes};

/// A set of resource types.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Types {
    /// Every type.
    All,
    /// Every type but these (AuditEvent is outside every wildcard but the admin's).
    AllBut(Vec<String>),
    /// Only these.
    Only(Vec<String>),
}

impl Types {
    pub fn contains(&self, resource_type: &str) -> bool {
        match self {
            Types::All => true,
            Types::AllBut(left_out) => !left_out.iter().any(|t| t == resource_type),
            Types::Only(listed) => listed.iter().any(|t| t == resource_type),
        }
    }
}

/// A role: what its users may read (read, vread, history, search) and write (create,
/// update, patch, delete). Writing a type does not imply reading it; the defaults list
/// written types among the read ones.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Role {
    pub name: String,
    pub read: Types,
    pub write: Types,
}

impl Role {
    /// Whether the role allows `permission` on `resource_type`.
    pub fn allows(&self, resource_type: &str, permission: Permission) -> bool {
        match permission {
            Permission::Read | Permission::Search => self.read.contains(resource_type),
            Permission::Create | Permission::Update | Permission::Delete => {
                self.write.contains(resource_type)
            }
        }
    }
}

/// One way a request is permitted: through a scope of this context, limited to this
/// scope's constraint (empty: none). A patient/ permit is further limited, by the server,
/// to the patient's compartment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Permit<'a> {
    pub context: Context,
    pub constraint: &'a [(String, String)],
}

/// The ways `scopes` permit `permission` on `resource_type` for a user of `role` (`None`
/// for a backend service, whose system/ scopes were bounded by its client's allowance when
/// granted). A user's patient/ and user/ scopes count only as far as the role allows.
/// Empty: the request is refused.
pub fn permits<'a>(
    scopes: &'a Scopes,
    role: Option<&Role>,
    resource_type: &str,
    permission: Permission,
) -> Vec<Permit<'a>> {
    let role_allows = role.is_none_or(|role| role.allows(resource_type, permission));
    scopes
        .resources()
        .filter(|scope| scope.permits(scope.context, resource_type, permission))
        .filter(|scope| match scope.context {
            Context::System => role.is_none(),
            Context::User | Context::Patient => role.is_some() && role_allows,
        })
        .map(|scope| Permit {
            context: scope.context,
            constraint: &scope.constraint,
        })
        .collect()
}

fn list(types: &[&str]) -> Vec<String> {
    types.iter().map(|t| (*t).to_owned()).collect()
}

/// The front desk's types, read and written.
const FRONT_DESK_WRITES: &[&str] = &[
    "Patient",
    "RelatedPerson",
    "Appointment",
    "Schedule",
    "Slot",
    "Coverage",
    "Communication",
    "CommunicationRequest",
    "Task",
];
const FRONT_DESK_READS: &[&str] = &[
    "Practitioner",
    "PractitionerRole",
    "Location",
    "HealthcareService",
    "Organization",
    "Encounter",
];
const BILLING_WRITES: &[&str] = &[
    "Claim",
    "ClaimResponse",
    "Coverage",
    "ExplanationOfBenefit",
    "PaymentReconciliation",
    "Account",
    "ChargeItem",
    "Invoice",
    "Binary",
];
const BILLING_READS: &[&str] = &[
    "Patient",
    "Encounter",
    "Appointment",
    "Organization",
    "Practitioner",
    "PractitionerRole",
    "Location",
];
/// The clinical types a provider writes (the README lists them).
pub const CLINICAL_TYPES: &[&str] = &[
    "Encounter",
    "Condition",
    "Observation",
    "Procedure",
    "MedicationRequest",
    "MedicationStatement",
    "MedicationAdministration",
    "AllergyIntolerance",
    "DiagnosticReport",
    "DocumentReference",
    "CarePlan",
    "CareTeam",
    "Goal",
    "ServiceRequest",
    "Immunization",
    "ClinicalImpression",
    "FamilyMemberHistory",
    "Specimen",
    "QuestionnaireResponse",
    "Communication",
];
/// What a patient may write about themselves.
const PATIENT_WRITES: &[&str] = &["Appointment", "Communication", "QuestionnaireResponse"];

/// The roles a tenant starts with.
pub fn defaults() -> Vec<Role> {
    let joined = |a: &[&str], b: &[&str]| {
        let mut all = list(a);
        all.extend(list(b).into_iter().filter(|t| !a.contains(&t.as_str())));
        all
    };
    let no_audit = || Types::AllBut(list(&["AuditEvent"]));
    vec![
        Role {
            name: "admin".into(),
            read: Types::All,
            write: Types::All,
        },
        Role {
            name: "provider".into(),
            read: no_audit(),
            write: Types::Only(list(CLINICAL_TYPES)),
        },
        Role {
            name: "front-desk".into(),
            read: Types::Only(joined(FRONT_DESK_WRITES, FRONT_DESK_READS)),
            write: Types::Only(list(FRONT_DESK_WRITES)),
        },
        Role {
            name: "billing".into(),
            read: Types::Only(joined(BILLING_WRITES, BILLING_READS)),
            write: Types::Only(list(BILLING_WRITES)),
        },
        Role {
            name: "patient".into(),
            read: no_audit(),
            write: Types::Only(list(PATIENT_WRITES)),
        },
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn role(name: &str) -> Role {
        defaults().into_iter().find(|r| r.name == name).unwrap()
    }

    #[test]
    fn the_front_desk_books_but_does_not_bill() {
        let desk = role("front-desk");
        assert!(desk.allows("Appointment", Permission::Create));
        assert!(desk.allows("Practitioner", Permission::Search));
        assert!(!desk.allows("Practitioner", Permission::Update));
        assert!(!desk.allows("Claim", Permission::Read));
        assert!(!desk.allows("Observation", Permission::Read));
    }

    #[test]
    fn billing_bills_and_reads_what_a_claim_needs() {
        let billing = role("billing");
        assert!(billing.allows("Claim", Permission::Update));
        assert!(billing.allows("Patient", Permission::Read));
        assert!(!billing.allows("Patient", Permission::Update));
        assert!(!billing.allows("Observation", Permission::Read));
    }

    #[test]
    fn audit_events_are_the_admins_alone() {
        for name in ["provider", "front-desk", "billing", "patient"] {
            assert!(!role(name).allows("AuditEvent", Permission::Read), "{name}");
        }
        assert!(role("admin").allows("AuditEvent", Permission::Search));
        let provider = role("provider");
        assert!(provider.allows("Claim", Permission::Read));
        assert!(provider.allows("Observation", Permission::Create));
        assert!(!provider.allows("Claim", Permission::Create));
    }

    #[test]
    fn roles_are_data() {
        let text = serde_json::to_string(&defaults()).unwrap();
        let again: Vec<Role> = serde_json::from_str(&text).unwrap();
        assert_eq!(again, defaults());
        assert!(text.contains(r#""allBut":["AuditEvent"]"#), "{text}");
    }

    #[test]
    fn a_user_scope_never_grants_more_than_the_role() {
        let scopes = Scopes::parse("user/*.cruds").unwrap();
        let desk = role("front-desk");
        assert_eq!(
            permits(&scopes, Some(&desk), "Appointment", Permission::Update).len(),
            1
        );
        assert!(permits(&scopes, Some(&desk), "Claim", Permission::Read).is_empty());
        // A backend's system/ scopes stand alone; a user's system/ scope means nothing.
        let system = Scopes::parse("system/Claim.rs").unwrap();
        assert_eq!(permits(&system, None, "Claim", Permission::Search).len(), 1);
        assert!(permits(&system, Some(&role("admin")), "Claim", Permission::Search).is_empty());
        assert!(permits(&scopes, None, "Claim", Permission::Read).is_empty());
    }

    #[test]
    fn patient_scopes_carry_their_constraints() {
        let scopes =
            Scopes::parse("patient/Observation.rs?category=laboratory patient/Patient.r").unwrap();
        let patient = role("patient");
        let found = permits(&scopes, Some(&patient), "Observation", Permission::Search);
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].context, Context::Patient);
        assert_eq!(found[0].constraint[0].1, "laboratory");
        assert!(permits(&scopes, Some(&patient), "Observation", Permission::Create).is_empty());
        assert!(permits(&scopes, Some(&patient), "AuditEvent", Permission::Read).is_empty());
    }
}
