//! The waitlist: an Appointment with status `waitlist`, a `requestedPeriod` and the patient
//! (and, optionally, the practitioner wanted). When time frees (an appointment cancelled,
//! missed, moved or deleted, by any write path), the earliest request it fits is offered it: the time is held for that
//! patient (a pending Appointment naming the request, lapsing after
//! `--waitlist-offer-seconds`) and a CommunicationRequest is written for the messaging
//! system to send. The patient takes it with `$book`; an offer not taken in time goes to
//! the next request. A booked offer closes its request (cancelled, with the reason).
//!
//! Each freed time is a job on the database's job queue (kind `waitlist-offer`), queued by
//! the store in the same transaction as the change that freed it (`store::claims`), so
//! that several server processes share the work, a process that dies mid-offer is relieved
//! when its lease goes stale, and an offer waiting for its patient survives a restart.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::lookup;
use crate::app::{App, SharedApp};
use crate::error::FhirError;
use crate::ids::TenantId;
use crate::index::claims::HOLD_EXPIRES_URL;
use crate::resource::{format_instant, parse_instant};
use crate::workflows::records;
use crate::workflows::scheduling::patient_of;

/// The job kind.
pub const KIND: &str = "waitlist-offer";
/// On an offer: the waitlist request it answers.
pub const ENTRY_EXTENSION: &str = "urn:fhir-server:StructureDefinition/waitlist-entry";

const POLL: Duration = Duration::from_secs(1);
const LEASE: Duration = Duration::from_secs(60);

/// A freed time being offered, as the job keeps it.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct OfferJob {
    tenant: TenantId,
    start: String,
    end: String,
    /// The practitioners, rooms and devices of the freed appointment.
    actors: Vec<String>,
    /// The requests offered it already.
    #[serde(default)]
    offered: Vec<String>,
    /// The current offer: the held Appointment, the request, and when it lapses.
    #[serde(default)]
    offer: Option<(String, String, i64)>,
}

/// Starts the worker that offers freed time.
pub fn start(app: SharedApp) {
    tokio::spawn(crate::store::limits::in_background(async move {
        loop {
            match app.store.claim_job(KIND, LEASE).await {
                Ok(Some(claimed)) => {
                    if let Err(error) = step(&app, &claimed).await {
                        tracing::warn!(?error, job = %claimed.id, "a waitlist offer failed");
                        let ended = Some(("{}", crate::clock::now_micros() + 86_400_000_000));
                        let _ = app
                            .store
                            .finish_job(&claimed.id, &claimed.owner, "failed", ended)
                            .await;
                    }
                    tokio::time::sleep(POLL).await;
                }
                Ok(None) => tokio::time::sleep(POLL).await,
                Err(error) => {
                    tracing::warn!(?error, "cannot look for waitlist offers");
                    tokio::time::sleep(POLL * 5).await;
                }
            }
        }
    }));
}

async fn read(app: &App, tenant: TenantId, id: &str) -> Result<Option<Value>, FhirError> {
    records::read(app, tenant, "Appointment", id).await
}

/// One look at a job: its offer taken (done), still open (back in the queue), lapsed or
/// absent (the next request is offered the time, or, with none left, done).
async fn step(app: &App, claimed: &crate::store::jobs::ClaimedJob) -> Result<(), FhirError> {
    let mut job: OfferJob =
        serde_json::from_str(&claimed.state).map_err(|e| FhirError::internal(e.to_string()))?;
    let now = crate::clock::now_micros();
    let done = Some(("{}", now + 86_400_000_000));
    if let Some((offer, entry, lapses)) = job.offer.clone() {
        let status = read(app, job.tenant, &offer)
            .await?
            .map(|o| o["status"].clone());
        if status.as_ref().and_then(Value::as_str) == Some("booked") {
            close(app, job.tenant, &entry, &offer).await?;
            app.store
                .finish_job(&claimed.id, &claimed.owner, "done", done)
                .await?;
            return Ok(());
        }
        if now < lapses {
            let state =
                serde_json::to_string(&job).map_err(|e| FhirError::internal(e.to_string()))?;
            app.store
                .requeue_job((&claimed.id, &claimed.owner), &state, None)
                .await?;
            return Ok(());
        }
        job.offered.push(entry);
        job.offer = None;
    }
    match offer_next(app, &mut job, now).await? {
        true => {
            let state =
                serde_json::to_string(&job).map_err(|e| FhirError::internal(e.to_string()))?;
            app.store
                .requeue_job((&claimed.id, &claimed.owner), &state, None)
                .await?;
        }
        false => {
            app.store
                .finish_job(&claimed.id, &claimed.owner, "done", done)
                .await?;
        }
    }
    Ok(())
}

/// Whether `request` (a waitlist Appointment) wants the time of `job`: its requested period
/// covers it, and the practitioners it names are among those freed.
fn wants(request: &Value, job: &OfferJob, (start, end): (i64, i64)) -> bool {
    let covers = request["requestedPeriod"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|period| {
            let from = period["start"]
                .as_str()
                .and_then(parse_instant)
                .unwrap_or(i64::MIN);
            let to = period["end"]
                .as_str()
                .and_then(parse_instant)
                .unwrap_or(i64::MAX);
            from <= start && end <= to
        });
    let named_fit = request["participant"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|p| p["actor"]["reference"].as_str())
        .filter(|r| r.starts_with("Practitioner/") || r.starts_with("PractitionerRole/"))
        .all(|r| job.actors.iter().any(|a| a == r));
    covers && named_fit
}

/// Offers the time to the earliest request that wants it and was not offered it yet:
/// whether one was.
async fn offer_next(app: &App, job: &mut OfferJob, now: i64) -> Result<bool, FhirError> {
    let (Some(start), Some(end)) = (parse_instant(&job.start), parse_instant(&job.end)) else {
        return Ok(false);
    };
    let params = vec![("status".to_owned(), "waitlist".to_owned())];
    let mut requests = lookup::all(app, job.tenant, "Appointment", &params).await?;
    // The earliest request first: its `created`, else when it was last written.
    let since = |r: &Value| {
        r["created"]
            .as_str()
            .or_else(|| r["meta"]["lastUpdated"].as_str())
            .and_then(parse_instant)
            .unwrap_or(i64::MAX)
    };
    requests.sort_by_key(since);
    for request in requests {
        let id = request["id"].as_str().unwrap_or_default().to_owned();
        let Some(patient) = patient_of(&request) else {
            continue;
        };
        if job.offered.contains(&id) || !wants(&request, job, (start, end)) {
            continue;
        }
        let lapses = now + app.config.waitlist_offer_seconds.max(1) * 1_000_000;
        match hold_for(app, job, (&id, &patient), lapses).await {
            Ok(offer) => {
                job.offer = Some((offer, id, lapses));
                return Ok(true);
            }
            // Someone took the time meanwhile: nothing to offer.
            Err(error) if error.status == axum::http::StatusCode::CONFLICT => return Ok(false),
            Err(error) => return Err(error),
        }
    }
    Ok(false)
}

/// Holds the time for the request's patient, and asks the messaging system to tell them.
async fn hold_for(
    app: &App,
    job: &OfferJob,
    (request, patient): (&str, &str),
    lapses: i64,
) -> Result<String, FhirError> {
    let mut participant: Vec<Value> = job
        .actors
        .iter()
        .map(|a| json!({"actor": {"reference": a}, "required": "required", "status": "tentative"}))
        .collect();
    participant.push(
        json!({"actor": {"reference": patient}, "required": "required", "status": "needs-action"}),
    );
    let hold = json!({"resourceType": "Appointment", "status": "pending",
        "start": job.start, "end": job.end, "participant": participant,
        "extension": [
            {"url": HOLD_EXPIRES_URL, "valueInstant": format_instant(lapses)},
            {"url": ENTRY_EXTENSION, "valueReference": {"reference": format!("Appointment/{request}")}}]});
    let offer = records::create(app, job.tenant, hold, None).await?;
    let message = json!({"resourceType": "CommunicationRequest", "status": "active",
        "subject": {"reference": patient}, "recipient": [{"reference": patient}],
        "about": [{"reference": format!("Appointment/{offer}")}, {"reference": format!("Appointment/{request}")}],
        "authoredOn": format_instant(crate::clock::now_micros()),
        "payload": [{"contentString": format!(
            "An appointment time has opened for you: {}. It is kept for you until {}.",
            job.start, format_instant(lapses))}]});
    records::create(app, job.tenant, message, None).await?;
    Ok(offer)
}

/// Closes a request whose offer was booked.
async fn close(app: &App, tenant: TenantId, request: &str, offer: &str) -> Result<(), FhirError> {
    let Some(mut entry) = read(app, tenant, request).await? else {
        return Ok(());
    };
    if entry["status"] != "waitlist" {
        return Ok(());
    }
    entry["status"] = json!("cancelled");
    entry["cancelationReason"] = json!({"text": format!("booked as Appointment/{offer}")});
    records::replace(app, tenant, entry).await?;
    Ok(())
}
