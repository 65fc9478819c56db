//! Planning an appointment's reminders (job `reminder-plan`, queued by the store with every
//! change of a booked appointment's status or time): one CommunicationRequest per
//! reminder of the tenant's policy still to come (`before_hours` before the visit), each
//! with a `reminder-send` job due at its time. Reminders planned for an earlier time, or
//! for an appointment no longer booked, are revoked (their jobs then find them so and end).

use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::{REMINDERS_OF, patient_of, reminder_category, settings};
use crate::app::{App, SharedApp};
use crate::error::FhirError;
use crate::ids::TenantId;
use crate::jobs::runner::{self, Step};
use crate::resource::{format_instant, parse_instant};
use crate::store::jobs::ClaimedJob;
use crate::workflows::records;
use crate::workflows::scheduling::lookup;

pub const KIND: &str = "reminder-plan";
const WORKERS: (usize, Duration) = (4, Duration::from_secs(120));

/// A plan job's state (what the store queues).
#[derive(Debug, Serialize, Deserialize)]
pub struct PlanJob {
    pub tenant: TenantId,
    pub appointment: String,
    #[serde(default)]
    pub attempt: u32,
}

pub fn start(app: SharedApp) {
    runner::start(app, KIND, WORKERS, |app, claimed: ClaimedJob| async move {
        let Ok(mut job) = serde_json::from_str::<PlanJob>(&claimed.state) else {
            return Step::Failed(claimed.state);
        };
        match plan(&app, &job).await {
            Ok(()) => Step::Done(claimed.state),
            Err(error) => {
                tracing::warn!(?error, appointment = %job.appointment, "cannot plan reminders");
                job.attempt += 1;
                let state = serde_json::to_string(&job).unwrap_or_default();
                match job.attempt {
                    ..8 => Step::Later {
                        state,
                        at: runner::retry_at(job.attempt, crate::clock::now_micros()),
                    },
                    _ => Step::Failed(state),
                }
            }
        }
    });
}

/// Brings the appointment's planned reminders in line with it and the policy.
async fn plan(app: &App, job: &PlanJob) -> Result<(), FhirError> {
    let settings = settings::load(&app.store, job.tenant).await?;
    let appointment = records::read(app, job.tenant, "Appointment", &job.appointment).await?;
    let now = crate::clock::now_micros();
    let wanted: Vec<i64> = match (&settings.reminders, &appointment) {
        (Some(policy), Some(appointment)) if appointment["status"] == "booked" => {
            let start = appointment["start"].as_str().and_then(parse_instant);
            let mut times: Vec<i64> = policy
                .before_hours
                .iter()
                .filter_map(|hours| Some(start? - i64::from(*hours) * 3_600_000_000))
                .filter(|at| *at > now)
                .collect();
            times.sort_unstable();
            times.dedup();
            times
        }
        _ => Vec::new(),
    };
    let params = vec![
        (
            "group-identifier".to_owned(),
            format!("{REMINDERS_OF}|{}", job.appointment),
        ),
        ("status".to_owned(), "active".to_owned()),
    ];
    let planned = lookup::all(app, job.tenant, "CommunicationRequest", &params).await?;
    let mut kept = Vec::new();
    for mut request in planned {
        let at = request["occurrenceDateTime"]
            .as_str()
            .and_then(parse_instant);
        match at.filter(|at| wanted.contains(at)) {
            Some(at) => kept.push(at),
            None => {
                request["status"] = json!("revoked");
                request["statusReason"] = json!({"text": "the appointment moved or was cancelled"});
                records::replace(app, job.tenant, request).await?;
            }
        }
    }
    let Some(appointment) = appointment else {
        return Ok(());
    };
    let fresh: Vec<i64> = wanted.into_iter().filter(|at| !kept.contains(at)).collect();
    for at in &fresh {
        plan_one(app, job, &appointment, *at).await?;
    }
    let deadline = settings
        .reminders
        .as_ref()
        .and_then(|p| p.unconfirmed.as_ref());
    if let (Some(deadline), false) = (deadline, fresh.is_empty()) {
        super::deadline::queue(app, job.tenant, &appointment, deadline).await?;
    }
    Ok(())
}

/// Queues the sending of a reminder at `at`, then writes the reminder it will send: a
/// plan cut short between the two (and run again) leaves a job whose reminder is missing,
/// which ends doing nothing, never a reminder that no job sends.
async fn plan_one(app: &App, job: &PlanJob, appointment: &Value, at: i64) -> Result<(), FhirError> {
    let id = crate::resource::new_id();
    let send = super::send::SendJob {
        tenant: job.tenant,
        request: id.clone(),
        appointment: job.appointment.clone(),
        start: appointment["start"].as_str().unwrap_or_default().to_owned(),
        attempt: 0,
        sent: None,
        step: 0,
        from_channel: 0,
    };
    let state = serde_json::to_string(&send).map_err(FhirError::internal)?;
    app.store
        .queue_job_at(job.tenant, super::send::KIND, &state, Some(at))
        .await?;
    let mut request = json!({"resourceType": "CommunicationRequest", "id": id, "status": "active",
        "groupIdentifier": {"system": REMINDERS_OF, "value": job.appointment},
        "category": reminder_category(),
        "about": [{"reference": format!("Appointment/{}", job.appointment)}],
        "occurrenceDateTime": format_instant(at),
        "authoredOn": format_instant(crate::clock::now_micros())});
    if let Some(patient) = patient_of(appointment) {
        request["subject"] = json!({"reference": patient});
        request["recipient"] = json!([{"reference": patient}]);
    }
    records::replace(app, job.tenant, request).await
}
