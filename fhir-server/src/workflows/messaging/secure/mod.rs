//! Secure messaging between patients and their care team, every message a Communication
//! of category `urn:fhir-server:CodeSystem/communication-kind|secure-message`:
//!
//! - a thread is its first message (with a `topic`) and the replies to it (`partOf` the
//!   first, `inResponseTo` the one answered); every message of a thread is about one
//!   patient (`subject`), who takes part in it;
//! - a message's parties are its `sender` and `recipient`s: patients, practitioners, care
//!   teams, or a role of the tenant's users (a logical reference, `identifier` of system
//!   [`ROLE_SYSTEM`]: `front-desk`); a reply goes to every other party of the message it
//!   answers, so any message names the whole thread's parties as of then;
//! - attachments are Binaries whose `securityContext` is the message (reading one is
//!   allowed exactly when reading the message is);
//! - a message is marked `received` (with the time) when a recipient first reads it
//!   (`$thread`): the sender sees its read receipt, and unread counts come from it.
//!
//! Who may see a thread is `access`'s; sending is `compose`'s; the mailbox, threads and
//! read receipts are `mailbox`'s; the email that tells of a new message is `notice`'s.

pub mod access;
pub mod compose;
pub mod mailbox;
pub mod notice;

use serde_json::{Value, json};

pub use crate::resource::{COMMUNICATION_KIND, SECURE_MESSAGE, is_secure_message};

/// The system of a recipient that is a role of the tenant's users.
pub const ROLE_SYSTEM: &str = "urn:fhir-server:role";

/// The category of a secure message.
pub fn category() -> Value {
    json!([{"coding": [{"system": COMMUNICATION_KIND, "code": SECURE_MESSAGE}]}])
}

/// A party of a message.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Party {
    /// A resource: `Patient/p1`, `Practitioner/d1`, `CareTeam/t1`.
    Resource(String),
    /// A role of the tenant's users: `front-desk`.
    Role(String),
}

impl Party {
    /// The party a Reference names, if it names one this way.
    pub fn of(reference: &Value) -> Option<Party> {
        if let Some(reference) = reference["reference"].as_str() {
            return Some(Party::Resource(reference.to_owned()));
        }
        let identifier = &reference["identifier"];
        (identifier["system"] == ROLE_SYSTEM)
            .then(|| {
                identifier["value"]
                    .as_str()
                    .map(|v| Party::Role(v.to_owned()))
            })
            .flatten()
    }

    /// As a Reference.
    pub fn reference(&self) -> Value {
        match self {
            Party::Resource(reference) => json!({"reference": reference}),
            Party::Role(role) => {
                json!({"identifier": {"system": ROLE_SYSTEM, "value": role}, "display": role})
            }
        }
    }
}

/// The sender and the recipients of `message`.
pub fn parties(message: &Value) -> Vec<Party> {
    let mut parties: Vec<Party> = Party::of(&message["sender"]).into_iter().collect();
    for recipient in message["recipient"].as_array().into_iter().flatten() {
        if let Some(party) = Party::of(recipient)
            && !parties.contains(&party)
        {
            parties.push(party);
        }
    }
    parties
}

/// The recipients of `message`.
pub fn recipients(message: &Value) -> Vec<Party> {
    message["recipient"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Party::of)
        .collect()
}

/// The id of the first message of `message`'s thread (its own, for a first message).
pub fn thread_of(message: &Value) -> String {
    message["partOf"]
        .as_array()
        .into_iter()
        .flatten()
        .find_map(|r| r["reference"].as_str()?.strip_prefix("Communication/"))
        .or_else(|| message["id"].as_str())
        .unwrap_or_default()
        .to_owned()
}

/// The patient a message is about (`Patient/p1`).
pub fn subject_of(message: &Value) -> Option<&str> {
    message["subject"]["reference"]
        .as_str()
        .filter(|r| r.starts_with("Patient/"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parties_are_the_sender_and_the_recipients_once_each() {
        let message = json!({"sender": {"reference": "Patient/p1"},
            "recipient": [{"reference": "Practitioner/d1"}, {"reference": "Patient/p1"},
                {"identifier": {"system": ROLE_SYSTEM, "value": "front-desk"}},
                {"identifier": {"system": "urn:other", "value": "x"}}]});
        assert_eq!(
            parties(&message),
            vec![
                Party::Resource("Patient/p1".into()),
                Party::Resource("Practitioner/d1".into()),
                Party::Role("front-desk".into()),
            ]
        );
        assert_eq!(
            Party::of(&Party::Role("nurse".into()).reference()),
            Some(Party::Role("nurse".into()))
        );
    }

    #[test]
    fn a_reply_belongs_to_the_thread_of_its_first_message() {
        let first = json!({"id": "m1"});
        let reply = json!({"id": "m2", "partOf": [{"reference": "Communication/m1"}]});
        assert_eq!(thread_of(&first), "m1");
        assert_eq!(thread_of(&reply), "m1");
    }
}
