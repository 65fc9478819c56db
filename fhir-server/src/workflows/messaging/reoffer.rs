//! Auto-reschedule: a visit released at the confirmation deadline (`reminders.unconfirmed`
//! action `release`) is followed by an offer of the next openings with its practitioner
//! (`scheduling::moves::next_openings`, up to three) by the patient's channel: an SMS to
//! answer with the number of the time wanted, or an email with a signed link per time.
//! The answer books that time (a new appointment, `previousAppointment` the released one)
//! when it is still free.
//!
//! The offer is a Task (`intent` proposal, `focus` the released visit, `for` the patient,
//! an `input` of type `opening` per time, `restriction.period.end` the last time): it is
//! taken once (its status moves to `in-progress` by a write conditional on the version
//! read, so of several answers at once one books), then `completed` with the new
//! appointment as `output`; a time taken meanwhile puts it back to `requested`. The offer
//! is sent by a job (kind `reschedule-offer`) that the store queues in the same transaction
//! as the release (`store::outbox`).

use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::settings::{self, MessagingSettings};
use super::{MESSAGE_KEY, outbound, patient_of, render};
use crate::app::{App, SharedApp};
use crate::channels::{Failure, Outgoing};
use crate::error::FhirError;
use crate::ids::TenantId;
use crate::jobs::runner::{self, Step};
use crate::resource::{format_instant, parse_instant};
use crate::store::jobs::ClaimedJob;
use crate::workflows::records;
use crate::workflows::scheduling::availability::Span;
use crate::workflows::scheduling::booking;
use crate::workflows::scheduling::lookup;
use crate::workflows::scheduling::moves::{PREVIOUS_APPOINTMENT, next_openings, proposed_at};

pub use crate::store::outbox::RESCHEDULE_OFFER as KIND;
/// Names the offer Task of a released visit (the value: the visit's id).
pub const OFFER: &str = "urn:fhir-server:reschedule-offer";
/// How many times are offered.
const OFFERED: usize = 3;
const WORKERS: (usize, Duration) = (2, Duration::from_secs(120));
const MOST_ATTEMPTS: u32 = 8;

#[derive(Debug, Clone, Serialize, Deserialize)]
struct OfferJob {
    tenant: TenantId,
    /// The released visit.
    appointment: String,
    #[serde(default)]
    attempt: u32,
    /// The offer Task, once written.
    #[serde(default)]
    task: Option<String>,
    /// Once a channel accepted the offer: its name.
    #[serde(default)]
    sent: Option<String>,
}

pub fn start(app: SharedApp) {
    runner::start(app, KIND, WORKERS, |app, claimed: ClaimedJob| async move {
        let Ok(job) = serde_json::from_str::<OfferJob>(&claimed.state) else {
            return Step::Failed(claimed.state);
        };
        match run(&app, &claimed, job.clone()).await {
            Ok(step) => step,
            Err(error) => later(job, &format!("{error:?}")),
        }
    });
}

fn state(job: &OfferJob) -> String {
    serde_json::to_string(job).unwrap_or_default()
}

fn later(mut job: OfferJob, why: &str) -> Step {
    job.attempt += 1;
    tracing::info!(appointment = %job.appointment, attempt = job.attempt, %why, "an offer of new times will be tried again");
    runner::again_or_give_up(state(&job), job.attempt, MOST_ATTEMPTS)
}

/// The times of an offer Task.
fn openings_of(task: &Value) -> Vec<Span> {
    task["input"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|input| {
            let period = &input["valuePeriod"];
            Some(Span {
                start: parse_instant(period["start"].as_str()?)?,
                end: parse_instant(period["end"].as_str()?)?,
            })
        })
        .collect()
}

/// Writes the offer Task of `visit` (once: a retried step finds it); `None` when there is
/// no time to offer.
async fn offer_task(
    app: &App,
    tenant: TenantId,
    visit: &Value,
) -> Result<Option<String>, FhirError> {
    let released = crate::workflows::scheduling::busy::span_of(visit);
    let openings: Vec<Span> = next_openings(app, tenant, visit, OFFERED + 1)
        .await?
        .into_iter()
        .filter(|opening| released.is_none_or(|r| !r.overlaps(*opening)))
        .take(OFFERED)
        .collect();
    let Some(last) = openings.last() else {
        return Ok(None);
    };
    let id = visit["id"].as_str().unwrap_or_default();
    let inputs: Vec<Value> = openings
        .iter()
        .map(|o| {
            json!({"type": {"text": "opening"},
            "valuePeriod": {"start": format_instant(o.start), "end": format_instant(o.end)}})
        })
        .collect();
    let mut task = json!({"resourceType": "Task", "status": "requested", "intent": "proposal",
        "identifier": [{"system": OFFER, "value": id}],
        "code": {"text": "Offer of new times for a released visit"},
        "focus": {"reference": format!("Appointment/{id}")},
        "authoredOn": format_instant(crate::clock::now_micros()),
        "restriction": {"period": {"end": format_instant(last.start)}},
        "input": inputs});
    if let Some(patient) = patient_of(visit) {
        task["for"] = json!({"reference": patient});
    }
    let unless = [("identifier".to_owned(), format!("{OFFER}|{id}"))];
    records::create(app, tenant, task, Some(&unless))
        .await
        .map(Some)
}

async fn run(app: &App, claimed: &ClaimedJob, mut job: OfferJob) -> Result<Step, FhirError> {
    let tenant = job.tenant;
    let Some(visit) = records::read(app, tenant, "Appointment", &job.appointment).await? else {
        return Ok(Step::Done(state(&job)));
    };
    let task_id = match &job.task {
        Some(task) => task.clone(),
        None => match offer_task(app, tenant, &visit).await? {
            Some(task) => {
                job.task = Some(task.clone());
                app.store
                    .renew_job(&claimed.id, &claimed.owner, &state(&job))
                    .await?;
                task
            }
            None => return Ok(Step::Done(state(&job))),
        },
    };
    let Some(task) = records::read(app, tenant, "Task", &task_id).await? else {
        return Ok(Step::Done(state(&job)));
    };
    let settings = settings::load(&app.store, tenant).await?;
    let patient = match patient_of(&visit) {
        Some(reference) => records::read_reference(app, tenant, &reference).await?,
        None => None,
    };
    if job.sent.is_none() {
        match deliver(
            app,
            (claimed, &job),
            &settings,
            (&visit, &task, patient.as_ref()),
        )
        .await
        {
            Ok(Some(channel)) => {
                job.sent = Some(channel);
                app.store
                    .renew_job(&claimed.id, &claimed.owner, &state(&job))
                    .await?;
            }
            // No channel reaches the patient: the Task stays for the front desk.
            Ok(None) => return Ok(Step::Done(state(&job))),
            Err(Failure::Transient(why)) => return Ok(later(job, &why)),
            Err(Failure::Permanent(why)) => {
                tracing::info!(appointment = %job.appointment, %why, "an offer of new times was refused");
                return Ok(Step::Failed(state(&job)));
            }
        }
    }
    record(app, (claimed, &job), &visit).await?;
    Ok(Step::Done(state(&job)))
}

/// The offer's words: the released visit and each time, numbered, in the patient's zone.
fn words(
    settings: &MessagingSettings,
    (visit, task, patient): (&Value, &Value, Option<&Value>),
) -> (String, Vec<String>) {
    let zone = render::zone_for(patient, None, settings);
    let local = |micros: i64| {
        jiff::Timestamp::from_microsecond(micros)
            .map(|t| {
                t.to_zoned(zone.clone())
                    .strftime("%a %Y-%m-%d %H:%M")
                    .to_string()
            })
            .unwrap_or_default()
    };
    let released = visit["start"]
        .as_str()
        .and_then(parse_instant)
        .map(local)
        .unwrap_or_default();
    let times = openings_of(task).iter().map(|o| local(o.start)).collect();
    (released, times)
}

/// Sends the offer by the first channel of the policy (SMS or email) that reaches the
/// patient; the channel's name, or `None` when none does.
async fn deliver(
    app: &App,
    (claimed, job): (&ClaimedJob, &OfferJob),
    settings: &MessagingSettings,
    (visit, task, patient): (&Value, &Value, Option<&Value>),
) -> Result<Option<String>, Failure> {
    let (released, times) = words(settings, (visit, task, patient));
    let desk = settings
        .sms
        .as_ref()
        .and_then(|s| s.front_desk.clone())
        .unwrap_or_else(|| "the practice".into());
    let channels = settings
        .reminders
        .as_ref()
        .map(|p| p.channels_for(patient))
        .unwrap_or_default();
    let task_id = task["id"].as_str().unwrap_or_default();
    for channel in channels.iter().filter(|c| *c == "sms" || *c == "email") {
        let Some(to) = outbound::address_for(patient, channel) else {
            continue;
        };
        // An email's links need the public URL and the link key.
        if channel == "email" && book_link(settings, (task, task_id), 1).is_none() {
            continue;
        }
        let choices: Vec<String> = times
            .iter()
            .enumerate()
            .map(|(n, time)| match channel.as_str() {
                "sms" => format!("{} for {time}", n + 1),
                _ => format!(
                    "{time}: {}",
                    book_link(settings, (task, task_id), n + 1).unwrap_or_default()
                ),
            })
            .collect();
        let text = match channel.as_str() {
            "sms" => format!(
                "Your visit on {released} was released as it was not confirmed. To book another time reply {}. Questions: {desk}.",
                choices.join(", ")
            ),
            _ => format!(
                "Your visit on {released} was released as it was not confirmed. To book another time, open its link:\n\n{}\n\nQuestions: {desk}.",
                choices.join("\n")
            ),
        };
        let outgoing = Outgoing {
            key: claimed.id.clone(),
            to,
            subject: "Choose a new time for your visit".into(),
            text,
            callback: None,
            reply_to: None,
        };
        match outbound::send_by(app, (job.tenant, settings), channel, &outgoing).await {
            Ok(Some(_)) => return Ok(Some(channel.clone())),
            Ok(None) | Err(Failure::Permanent(_)) => {}
            Err(transient) => return Err(transient),
        }
    }
    Ok(None)
}

/// The signed link that books the `n`th time of offer `task` (valid until that time).
fn book_link(settings: &MessagingSettings, (task, id): (&Value, &str), n: usize) -> Option<String> {
    let (base, key) = (settings.public_base.as_ref()?, settings.link_key.as_ref()?);
    let opening = *openings_of(task).get(n - 1)?;
    let link = super::links::Link {
        appointment: task["focus"]["reference"]
            .as_str()?
            .strip_prefix("Appointment/")?
            .to_owned(),
        action: format!("book{n}"),
        expires: opening.start / 1_000_000,
        nonce: id.to_owned(),
    };
    Some(format!(
        "{base}/messaging/link?t={}",
        super::links::token(key, &link)
    ))
}

/// The Communication of the offer sent (once).
async fn record(
    app: &App,
    (claimed, job): (&ClaimedJob, &OfferJob),
    visit: &Value,
) -> Result<(), FhirError> {
    let mut communication = json!({"resourceType": "Communication", "status": "completed",
        "identifier": [{"system": MESSAGE_KEY, "value": claimed.id}],
        "category": super::reminder_category(),
        "about": [{"reference": format!("Appointment/{}", job.appointment)}],
        "sent": format_instant(crate::clock::now_micros()),
        "medium": crate::channels::medium(job.sent.as_deref().unwrap_or_default())});
    if let Some(task) = &job.task {
        communication["basedOn"] = json!([{"reference": format!("Task/{task}")}]);
    }
    if let Some(patient) = patient_of(visit) {
        communication["subject"] = json!({"reference": patient});
        communication["recipient"] = json!([{"reference": patient}]);
    }
    let unless = [(
        "identifier".to_owned(),
        format!("{MESSAGE_KEY}|{}", claimed.id),
    )];
    records::create(app, job.tenant, communication, Some(&unless)).await?;
    Ok(())
}

/// The patient's offer still open, if any.
pub async fn open_offer(
    app: &App,
    tenant: TenantId,
    patient: &str,
) -> Result<Option<Value>, FhirError> {
    let params = [
        ("patient".to_owned(), patient.to_owned()),
        ("identifier".to_owned(), format!("{OFFER}|")),
        ("status".to_owned(), "requested".to_owned()),
    ];
    let now = crate::clock::now_micros();
    Ok(lookup::all(app, tenant, "Task", &params)
        .await?
        .into_iter()
        .filter(|task| {
            task["restriction"]["period"]["end"]
                .as_str()
                .and_then(parse_instant)
                .is_some_and(|end| end > now)
        })
        .max_by(|a, b| a["authoredOn"].as_str().cmp(&b["authoredOn"].as_str())))
}

/// Books the `n`th time (from 1) of offer `task_id`: what to tell the patient.
pub async fn take(
    app: &App,
    tenant: TenantId,
    task_id: &str,
    n: usize,
) -> Result<String, FhirError> {
    let Some(mut task) = records::read(app, tenant, "Task", task_id).await? else {
        return Ok("This offer is no longer open.".into());
    };
    let Some(opening) = n
        .checked_sub(1)
        .and_then(|i| openings_of(&task).get(i).copied())
    else {
        return Ok(format!(
            "Please answer with the number of a time offered (1 to {}).",
            openings_of(&task).len()
        ));
    };
    if task["status"] != "requested" || opening.start <= crate::clock::now_micros() {
        return Ok("This offer is no longer open.".into());
    }
    let released = task["focus"]["reference"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let Some(visit) = records::read_reference(app, tenant, &released).await? else {
        return Ok("This offer is no longer open.".into());
    };
    let mut new = booking::booked(proposed_at(&visit, opening))?;
    new["extension"] =
        json!([{"url": PREVIOUS_APPOINTMENT, "valueReference": {"reference": released}}]);
    task["status"] = json!("in-progress");
    if !records::replace_unchanged(app, tenant, task.clone()).await? {
        return Ok("This offer is no longer open.".into());
    }
    let booked = records::create(app, tenant, new, None).await;
    let mut task = records::read(app, tenant, "Task", task_id)
        .await?
        .unwrap_or(task);
    let said = match booked {
        Ok(id) => {
            task["status"] = json!("completed");
            task["output"] = json!([{"type": {"text": "appointment"},
                "valueReference": {"reference": format!("Appointment/{id}")}}]);
            Ok(format!(
                "Booked: your visit is on {}.",
                format_instant(opening.start)
            ))
        }
        Err(error) => {
            // Open again for another answer.
            task["status"] = json!("requested");
            Err(error)
        }
    };
    records::replace(app, tenant, task).await?;
    match said {
        Err(error) if error.status.is_client_error() => {
            Ok("That time was just taken: please answer with another one.".to_owned())
        }
        said => said,
    }
}
