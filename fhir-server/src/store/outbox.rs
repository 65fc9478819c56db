//! Work that a change causes, queued as a job in the change's own transaction (an
//! outbox): the work is done if and only if the change commits, and never lost when a
//! process dies after it. The waitlist's offers are queued by `store::claims::queue_freed`;
//! here, the planning of an appointment's reminders (`workflows::messaging::plan`).

use serde_json::{Value, json};

use super::StoreError;
use super::jobs::{insert_job, new_job_id};
use super::write::Tx;

/// The job kind that plans reminders (`workflows::messaging::plan::KIND`).
const REMINDER_PLAN: &str = "reminder-plan";

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
pub(super) async fn queue_reminder_plan<T: Tx>(
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
}
