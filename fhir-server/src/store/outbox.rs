//! Work that a change causes, queued as a job in the change's own transaction (an
//! outbox): the work is done if and only if the change commits, and never lost when a
//! process dies after it. The waitlist's offers are queued by `store::claims::queue_freed`;
//! here, the planning of an appointment's reminders (`workflows::messaging::plan`) and
//! the email that tells the recipients of a new secure message that one is waiting
//! (`workflows::messaging::secure::notice`).

use serde_json::{Value, json};

use super::StoreError;
use super::jobs::{insert_job, new_job_id};
use super::write::Tx;

/// The job kind that plans reminders (`workflows::messaging::plan::KIND`).
const REMINDER_PLAN: &str = "reminder-plan";
/// The job kind that tells one recipient of a secure message that it is waiting
/// (`workflows::messaging::secure::notice::KIND`).
pub const MESSAGE_NOTICE: &str = "message-notice";

/// The job kind that offers new times after a visit was released
/// (`workflows::messaging::reoffer::KIND`).
pub const RESCHEDULE_OFFER: &str = "reschedule-offer";

/// Whether an appointment's change releases it: booked before, cancelled now with the
/// deadline's mark ([`crate::resource::RELEASED_URL`]), which it did not have before.
fn releases(previous: Option<&Value>, next: Option<&Value>) -> bool {
    let marked = |appointment: &Value| {
        appointment["extension"]
            .as_array()
            .is_some_and(|e| e.iter().any(|e| e["url"] == crate::resource::RELEASED_URL))
    };
    next.is_some_and(|next| next["status"] == "cancelled" && marked(next))
        && previous.is_some_and(|previous| previous["status"] == "booked" && !marked(previous))
}

/// Queues the work a change of `resource_type/id` from `previous` to `next` causes.
pub(super) async fn after_change<T: Tx>(
    tx: &mut T,
    (resource_type, id): (&str, &str),
    (previous, next): (Option<&Value>, Option<&Value>),
) -> Result<(), StoreError> {
    match resource_type {
        "Appointment" => {
            if releases(previous, next) {
                let state = json!({"tenant": tx.tenant().get(), "appointment": id}).to_string();
                let insert =
                    insert_job(&new_job_id(), tx.tenant(), (RESCHEDULE_OFFER, &state), None);
                tx.run(insert).await?;
            }
            queue_reminder_plan(tx, id, (previous, next)).await
        }
        "Communication" if previous.is_none() => match next {
            Some(message) => queue_message_notices(tx, id, message).await,
            None => Ok(()),
        },
        _ => Ok(()),
    }
}

/// The recipients of a new secure message who may be told of it by email: the patients
/// and practitioners it names (a role or a care team reads its unread count instead), not
/// its sender.
fn notified(message: &Value) -> Vec<&str> {
    if !crate::resource::is_secure_message(message) {
        return Vec::new();
    }
    let sender = message["sender"]["reference"].as_str();
    let mut recipients: Vec<&str> = message["recipient"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|r| r["reference"].as_str())
        .filter(|r| r.starts_with("Patient/") || r.starts_with("Practitioner/"))
        .filter(|r| Some(*r) != sender)
        .collect();
    recipients.sort_unstable();
    recipients.dedup();
    recipients
}

/// One notice job per recipient told of secure message `id` (so that one whose address
/// fails does not send the others' again).
async fn queue_message_notices<T: Tx>(
    tx: &mut T,
    id: &str,
    message: &Value,
) -> Result<(), StoreError> {
    for recipient in notified(message) {
        let state =
            json!({"tenant": tx.tenant().get(), "message": id, "recipient": recipient}).to_string();
        let insert = insert_job(&new_job_id(), tx.tenant(), (MESSAGE_NOTICE, &state), None);
        tx.run(insert).await?;
    }
    Ok(())
}

/// Whether an appointment's change from `previous` to `next` (`None`: absent, deleted)
/// changes what its reminders should be: it became booked, stopped being booked, or moved
/// while booked.
fn changes_reminders(previous: Option<&Value>, next: Option<&Value>) -> bool {
    let booked_at = |appointment: Option<&Value>| {
        appointment
            .filter(|a| a["status"] == "booked")
            .map(|a| a["start"].clone())
    };
    booked_at(previous) != booked_at(next)
}

/// Queues the planning of appointment `id`'s reminders when its change calls for it.
async fn queue_reminder_plan<T: Tx>(
    tx: &mut T,
    id: &str,
    (previous, next): (Option<&Value>, Option<&Value>),
) -> Result<(), StoreError> {
    if !changes_reminders(previous, next) {
        return Ok(());
    }
    let state = json!({"tenant": tx.tenant().get(), "appointment": id}).to_string();
    let insert = insert_job(&new_job_id(), tx.tenant(), (REMINDER_PLAN, &state), None);
    tx.run(insert).await.map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_booking_its_move_or_its_end_plans_reminders() {
        let booked = json!({"status": "booked", "start": "2027-03-15T09:00:00Z"});
        let mut moved = booked.clone();
        moved["start"] = json!("2027-03-16T09:00:00Z");
        let mut arrived = booked.clone();
        arrived["status"] = json!("arrived");
        let mut renamed = booked.clone();
        renamed["comment"] = json!("bring the forms");
        assert!(changes_reminders(None, Some(&booked)));
        assert!(changes_reminders(Some(&booked), Some(&moved)));
        assert!(changes_reminders(Some(&booked), Some(&arrived)));
        assert!(changes_reminders(Some(&booked), None));
        assert!(!changes_reminders(Some(&booked), Some(&renamed)));
        assert!(!changes_reminders(None, Some(&arrived)));
    }

    #[test]
    fn only_the_release_itself_offers_new_times() {
        let booked = json!({"status": "booked"});
        let mark = json!([{"url": crate::resource::RELEASED_URL, "valueDateTime": "2027-01-01T00:00:00Z"}]);
        let released = json!({"status": "cancelled", "extension": mark});
        let cancelled = json!({"status": "cancelled"});
        assert!(releases(Some(&booked), Some(&released)));
        assert!(
            !releases(Some(&booked), Some(&cancelled)),
            "a cancellation by the patient"
        );
        let mut rebooked = released.clone();
        rebooked["status"] = json!("booked");
        assert!(
            !releases(Some(&rebooked), Some(&released)),
            "released before: no second offer"
        );
        assert!(!releases(None, Some(&released)));
    }

    #[test]
    fn a_secure_message_notifies_its_people_but_not_its_sender() {
        let kind = json!([{"coding": [{"system": crate::resource::COMMUNICATION_KIND,
            "code": crate::resource::SECURE_MESSAGE}]}]);
        let message = json!({"resourceType": "Communication", "category": kind,
            "sender": {"reference": "Practitioner/d1"},
            "recipient": [{"reference": "Patient/p1"}, {"reference": "Practitioner/d1"},
                {"reference": "CareTeam/t1"}, {"reference": "Practitioner/d2"},
                {"identifier": {"system": "urn:fhir-server:role", "value": "front-desk"}}]});
        assert_eq!(notified(&message), vec!["Patient/p1", "Practitioner/d2"]);
        let mut reminder = message.clone();
        reminder["category"] = json!([{"text": "reminder"}]);
        assert!(notified(&reminder).is_empty());
    }
}
