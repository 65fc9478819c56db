//! The policy's deadline for a confirmation (`reminders.unconfirmed`): a job due
//! `hours_before` the visit (queued when its reminders are planned) that, if the visit is
//! still booked at the time planned and the patient has not confirmed it, does what the
//! practice chose: `task`, a Task for the front desk to call the patient; `release`, the
//! visit cancelled (its time goes to the waitlist) and the patient offered the next
//! openings by their channel (`messaging::reoffer`). Once per visit and time: the Task is
//! written only if none with its identifier exists.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::replies::CONFIRMED_URL;
use super::settings::{self, Deadline};
use crate::app::{App, SharedApp};
use crate::error::FhirError;
use crate::ids::TenantId;
use crate::jobs::runner::{self, Step};
use crate::resource::{format_instant, parse_instant};
use crate::store::jobs::ClaimedJob;
use crate::workflows::records;
use crate::workflows::scheduling::patient_of;

pub const KIND: &str = "reminder-deadline";
const WORKERS: (usize, Duration) = (1, Duration::from_secs(120));
/// Names the Task of an unconfirmed visit (`{appointment}@{start}`).
pub const UNCONFIRMED: &str = "urn:fhir-server:unconfirmed-visit";

#[derive(Debug, Serialize, Deserialize)]
struct DeadlineJob {
    tenant: TenantId,
    appointment: String,
    start: String,
}

/// Queues the deadline of `appointment`'s confirmation, when it is still to come.
pub async fn queue(
    app: &App,
    tenant: TenantId,
    appointment: &Value,
    deadline: &Deadline,
) -> Result<(), FhirError> {
    let start = appointment["start"].as_str().unwrap_or_default();
    let Some(at) =
        parse_instant(start).map(|s| s - i64::from(deadline.hours_before) * 3_600_000_000)
    else {
        return Ok(());
    };
    if at <= crate::clock::now_micros() {
        return Ok(());
    }
    let job = DeadlineJob {
        tenant,
        appointment: appointment["id"].as_str().unwrap_or_default().to_owned(),
        start: start.to_owned(),
    };
    let state = serde_json::to_string(&job).map_err(FhirError::internal)?;
    app.store
        .queue_job_at(tenant, KIND, &state, Some(at))
        .await?;
    Ok(())
}

pub fn start(app: SharedApp) {
    runner::start(app, KIND, WORKERS, |app, claimed: ClaimedJob| async move {
        let Ok(job) = serde_json::from_str::<DeadlineJob>(&claimed.state) else {
            return Step::Failed(claimed.state);
        };
        match act(&app, &job).await {
            Ok(()) => Step::Done(claimed.state),
            Err(error) => {
                tracing::warn!(?error, appointment = %job.appointment, "a confirmation deadline failed");
                Step::Later {
                    state: claimed.state,
                    at: runner::retry_at(3, crate::clock::now_micros()),
                }
            }
        }
    });
}

async fn act(app: &App, job: &DeadlineJob) -> Result<(), FhirError> {
    let Some(mut visit) = records::read(app, job.tenant, "Appointment", &job.appointment).await?
    else {
        return Ok(());
    };
    let same_time = visit["start"].as_str().and_then(parse_instant) == parse_instant(&job.start);
    let confirmed = visit["extension"]
        .as_array()
        .is_some_and(|e| e.iter().any(|e| e["url"] == CONFIRMED_URL));
    if visit["status"] != "booked" || !same_time || confirmed {
        return Ok(());
    }
    let settings = settings::load(&app.store, job.tenant).await?;
    let action = settings
        .reminders
        .and_then(|p| p.unconfirmed)
        .map(|d| d.action)
        .unwrap_or_default();
    match action.as_str() {
        "task" => {
            let key = format!("{}@{}", job.appointment, job.start);
            let mut task = json!({"resourceType": "Task", "status": "requested", "intent": "order",
                "priority": "urgent",
                "identifier": [{"system": UNCONFIRMED, "value": key}],
                "code": {"text": "Call the patient to confirm the visit"},
                "description": format!("The visit on {} is not confirmed.", job.start),
                "focus": {"reference": format!("Appointment/{}", job.appointment)},
                "authoredOn": format_instant(crate::clock::now_micros())});
            if let Some(patient) = patient_of(&visit) {
                task["for"] = json!({"reference": patient});
            }
            let unless = [("identifier".to_owned(), format!("{UNCONFIRMED}|{key}"))];
            records::create(app, job.tenant, task, Some(&unless)).await?;
        }
        "release" => {
            visit["status"] = json!("cancelled");
            visit["cancelationReason"] =
                json!({"text": "not confirmed by the practice's deadline"});
            let mark = json!({"url": crate::resource::RELEASED_URL,
                "valueDateTime": format_instant(crate::clock::now_micros())});
            match visit["extension"].as_array_mut() {
                Some(extensions) => extensions.push(mark),
                None => visit["extension"] = json!([mark]),
            }
            // The store queues the offer of new times with it (`messaging::reoffer`).
            records::replace(app, job.tenant, visit).await?;
        }
        _ => {}
    }
    Ok(())
}
