//! Who may see a secure message's thread:
//!
//! - a patient: the threads about them (every thread has its patient as a party);
//! - a member of staff (a user of any role but `admin`): the threads they take part in
//!   (as their `fhirUser`, through a care team they are a member of or a
//!   PractitionerRole of theirs, or through their role), and the threads about a
//!   patient of theirs: one whose care team they are in, or who has an appointment with
//!   them from 12 months ago on (booked, or held: arrived, checked-in, fulfilled,
//!   noshow; not a proposal or a hold);
//! - the `admin` role, a backend service (system/ scopes) and the server itself: all.
//!
//! A thread is seen whole or not at all: it is open when any of its messages is.

use std::collections::HashSet;

use serde_json::Value;

use super::{Party, parties, subject_of};
use crate::app::App;
use crate::auth::principal::Principal;
use crate::error::FhirError;
use crate::ids::TenantId;
use crate::resource::format_instant;
use crate::workflows::scheduling::{lookup, patient_of};

/// How far back an appointment makes its patient a practitioner's (12 months).
const RECENT: i64 = 365 * 86_400_000_000;

/// Who reads, as secure messaging sees them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reader {
    /// Sees every thread.
    Everyone,
    /// A patient (`p1`).
    Patient(String),
    /// A member of staff: their `fhirUser` (`Practitioner/d1`), if any, and their role.
    Staff { user: Option<String>, role: String },
    /// A user of the patient role with no patient: sees none.
    Nobody,
}

impl Reader {
    /// The reader a request's principal is (`None`: the server's own rights).
    pub fn of(principal: Option<&Principal>) -> Reader {
        let Some(principal) = principal else {
            return Reader::Everyone;
        };
        let Some(role) = &principal.role else {
            return Reader::Everyone;
        };
        let patient_user = principal
            .fhir_user
            .as_deref()
            .and_then(|user| user.strip_prefix("Patient/"));
        match (role.name.as_str(), patient_user, &principal.patient) {
            ("admin", _, _) => Reader::Everyone,
            (_, Some(patient), _) => Reader::Patient(patient.to_owned()),
            ("patient", None, Some(patient)) => Reader::Patient(patient.clone()),
            ("patient", None, None) => Reader::Nobody,
            (role, None, _) => Reader::Staff {
                user: principal.fhir_user.clone(),
                role: role.to_owned(),
            },
        }
    }

    /// The party the reader is, when they send (`None`: they say who sends).
    pub fn as_party(&self) -> Option<Party> {
        match self {
            Reader::Patient(patient) => Some(Party::Resource(format!("Patient/{patient}"))),
            Reader::Staff {
                user: Some(user), ..
            } => Some(Party::Resource(user.clone())),
            Reader::Staff { user: None, role } => Some(Party::Role(role.clone())),
            Reader::Everyone | Reader::Nobody => None,
        }
    }
}

/// What makes a message a member of staff's, beyond taking part in it by name: their
/// care teams and PractitionerRoles (`teams`), and their patients (`Patient/p1`).
#[derive(Debug, Default, Clone)]
pub struct Circle {
    pub teams: HashSet<String>,
    pub patients: HashSet<String>,
}

impl Circle {
    /// The circle of `user` (`Practitioner/d1`), now.
    pub async fn of(app: &App, tenant: TenantId, user: &str) -> Result<Circle, FhirError> {
        let mut circle = Circle::default();
        let member = [("participant".to_owned(), user.to_owned())];
        for team in lookup::all(app, tenant, "CareTeam", &member).await? {
            if matches!(
                team["status"].as_str(),
                Some("inactive" | "entered-in-error")
            ) {
                continue;
            }
            if let Some(id) = team["id"].as_str() {
                circle.teams.insert(format!("CareTeam/{id}"));
            }
            if let Some(patient) = team["subject"]["reference"]
                .as_str()
                .filter(|r| r.starts_with("Patient/"))
            {
                circle.patients.insert(patient.to_owned());
            }
        }
        // Their PractitionerRoles stand for them like their care teams do.
        let roles = [("practitioner".to_owned(), user.to_owned())];
        for role in lookup::all(app, tenant, "PractitionerRole", &roles).await? {
            if let Some(id) = role["id"].as_str() {
                circle.teams.insert(format!("PractitionerRole/{id}"));
            }
        }
        let since = format_instant(crate::clock::now_micros() - RECENT);
        let seen = [
            ("actor".to_owned(), user.to_owned()),
            ("date".to_owned(), format!("ge{since}")),
        ];
        for visit in lookup::all(app, tenant, "Appointment", &seen).await? {
            let held = matches!(
                visit["status"].as_str(),
                Some("booked" | "arrived" | "checked-in" | "fulfilled" | "noshow")
            );
            if !held {
                continue;
            }
            if let Some(patient) = patient_of(&visit) {
                circle.patients.insert(patient);
            }
        }
        Ok(circle)
    }
}

/// Whether `reader` (with `circle`, for staff with a `fhirUser`) may see `message`'s
/// thread because of `message` itself.
pub fn opens(reader: &Reader, circle: Option<&Circle>, message: &Value) -> bool {
    match reader {
        Reader::Everyone => true,
        Reader::Nobody => false,
        Reader::Patient(patient) => {
            subject_of(message).and_then(|s| s.strip_prefix("Patient/")) == Some(patient)
        }
        Reader::Staff { user, role } => {
            let by_name = parties(message).iter().any(|party| match party {
                Party::Resource(reference) => {
                    Some(reference) == user.as_ref()
                        || circle.is_some_and(|c| c.teams.contains(reference))
                }
                Party::Role(name) => name == role,
            });
            by_name
                || subject_of(message)
                    .is_some_and(|s| circle.is_some_and(|c| c.patients.contains(s)))
        }
    }
}

/// Whether `party` is one the reader receives as: themselves, their care team or role.
pub fn receives_as(reader: &Reader, circle: Option<&Circle>, party: &Party) -> bool {
    match (reader, party) {
        (Reader::Patient(patient), Party::Resource(reference)) => {
            reference.strip_prefix("Patient/") == Some(patient)
        }
        (Reader::Staff { user, .. }, Party::Resource(reference)) => {
            Some(reference) == user.as_ref() || circle.is_some_and(|c| c.teams.contains(reference))
        }
        (Reader::Staff { role, .. }, Party::Role(name)) => name == role,
        _ => false,
    }
}

/// A reader with their circle, worked out once (staff's needs two searches).
pub struct Seeing {
    pub reader: Reader,
    pub circle: Option<Circle>,
}

impl Seeing {
    pub async fn of(
        app: &App,
        tenant: TenantId,
        principal: Option<&Principal>,
    ) -> Result<Seeing, FhirError> {
        let reader = Reader::of(principal);
        let circle = match &reader {
            Reader::Staff {
                user: Some(user), ..
            } => Some(Circle::of(app, tenant, user).await?),
            _ => None,
        };
        Ok(Seeing { reader, circle })
    }

    /// Whether any of `thread`'s messages opens it to this reader.
    pub fn sees(&self, thread: &[Value]) -> bool {
        thread
            .iter()
            .any(|message| opens(&self.reader, self.circle.as_ref(), message))
    }

    /// Whether `message` waits to be read by this reader: sent to them (or their care
    /// team or role), not by them, and not read yet. A message to the patient waits for
    /// the patient: the staff it also went to do not mark it read (the sender's read
    /// receipt says the patient read it).
    pub fn unread(&self, message: &Value) -> bool {
        let me = self.reader.as_party();
        let recipients = super::recipients(message);
        let to_the_patient = recipients
            .iter()
            .any(|party| matches!(party, Party::Resource(r) if r.starts_with("Patient/")));
        message["received"].is_null()
            && Party::of(&message["sender"]) != me
            && (matches!(self.reader, Reader::Patient(_)) || !to_the_patient)
            && recipients
                .iter()
                .any(|party| receives_as(&self.reader, self.circle.as_ref(), party))
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn message() -> Value {
        json!({"resourceType": "Communication", "subject": {"reference": "Patient/p1"},
            "sender": {"reference": "Patient/p1"},
            "recipient": [{"reference": "Practitioner/d1"},
                {"identifier": {"system": super::super::ROLE_SYSTEM, "value": "front-desk"}}]})
    }

    fn staff(user: &str, role: &str) -> Reader {
        Reader::Staff {
            user: Some(user.into()),
            role: role.into(),
        }
    }

    #[test]
    fn a_patient_sees_the_threads_about_them_only() {
        assert!(opens(&Reader::Patient("p1".into()), None, &message()));
        assert!(!opens(&Reader::Patient("p2".into()), None, &message()));
        assert!(!opens(&Reader::Nobody, None, &message()));
    }

    #[test]
    fn staff_see_threads_they_are_in_of_their_role_or_of_their_patients() {
        let empty = Circle::default();
        assert!(opens(
            &staff("Practitioner/d1", "provider"),
            Some(&empty),
            &message()
        ));
        assert!(opens(
            &staff("Practitioner/f1", "front-desk"),
            Some(&empty),
            &message()
        ));
        let stranger = staff("Practitioner/d2", "provider");
        assert!(!opens(&stranger, Some(&empty), &message()));
        let mut circle = Circle::default();
        circle.patients.insert("Patient/p1".into());
        assert!(opens(&stranger, Some(&circle), &message()));
    }

    #[test]
    fn unread_is_what_came_to_the_reader_and_was_not_read() {
        let seeing = |reader| Seeing {
            reader,
            circle: Some(Circle::default()),
        };
        assert!(seeing(staff("Practitioner/d1", "provider")).unread(&message()));
        assert!(!seeing(Reader::Patient("p1".into())).unread(&message()));
        let mut read = message();
        read["received"] = json!("2027-01-01T00:00:00Z");
        assert!(!seeing(staff("Practitioner/d1", "provider")).unread(&read));
        // A message to the patient waits for the patient, not for the staff it also went to.
        let reply = json!({"resourceType": "Communication", "subject": {"reference": "Patient/p1"},
            "sender": {"reference": "Practitioner/d1"},
            "recipient": [{"reference": "Patient/p1"}, {"reference": "Practitioner/d2"}]});
        assert!(seeing(Reader::Patient("p1".into())).unread(&reply));
        assert!(!seeing(staff("Practitioner/d2", "provider")).unread(&reply));
    }
}
