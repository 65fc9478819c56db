//! Sending one planned reminder (job `reminder-send`, due at the reminder's time): checked
//! again against the appointment (still booked, at the time planned, or the reminder is
//! revoked), held past quiet hours, written from the template in the patient's language,
//! and delivered by the first channel of the policy that can reach the patient. A channel
//! that fails before accepting the message is tried again with a growing wait; once it
//! accepted, the job records so before anything else, so that a process dying after that
//! point does not send it again. Then a Communication (completed, or not-done with the
//! reason) records what happened, and the CommunicationRequest is closed.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::outbound;
use super::render::{self, Facts};
use super::settings::{self, MessagingSettings, ReminderPolicy};
use super::{MESSAGE_KEY, patient_of, reminder_category};
use crate::app::{App, SharedApp};
use crate::channels::{Failure, Outgoing};
use crate::error::FhirError;
use crate::ids::TenantId;
use crate::jobs::runner::{self, Step};
use crate::resource::{format_instant, parse_instant};
use crate::store::jobs::ClaimedJob;
use crate::workflows::records;

pub const KIND: &str = "reminder-send";
/// Several at once: a delivery mostly waits on the far side.
const WORKERS: (usize, Duration) = (16, Duration::from_secs(120));
/// Failed deliveries tried again before the reminder is given up (about 4 hours of waits).
const MOST_ATTEMPTS: u32 = 8;

/// A send job's state.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SendJob {
    pub tenant: TenantId,
    /// The CommunicationRequest.
    pub request: String,
    pub appointment: String,
    /// The appointment's start when the reminder was planned.
    pub start: String,
    #[serde(default)]
    pub attempt: u32,
    /// Once a channel accepted the message: its name, the address and the receipt.
    #[serde(default)]
    pub sent: Option<(String, String, String)>,
    /// How many messages of this reminder went out before (escalations).
    #[serde(default)]
    pub step: u32,
    /// The first of the policy's channels this step may use (after an escalation, the
    /// one after the channel used before).
    #[serde(default)]
    pub from_channel: usize,
}

/// The key of the message of `step` of job `id`: the job's id, then `{id}.{step}`.
fn message_key(id: &str, step: u32) -> String {
    match step {
        0 => id.to_owned(),
        step => format!("{id}.{step}"),
    }
}

pub fn start(app: SharedApp) {
    runner::start(app, KIND, WORKERS, |app, claimed: ClaimedJob| async move {
        let Ok(job) = serde_json::from_str::<SendJob>(&claimed.state) else {
            return Step::Failed(claimed.state);
        };
        match run(&app, &claimed, job.clone()).await {
            Ok(step) => step,
            Err(error) => {
                tracing::warn!(?error, request = %job.request, "a reminder could not be sent");
                later(job, format!("{error:?}"))
            }
        }
    });
}

fn state(job: &SendJob) -> String {
    serde_json::to_string(job).unwrap_or_default()
}

/// Tries again later, or gives up after [`MOST_ATTEMPTS`].
fn later(mut job: SendJob, why: String) -> Step {
    job.attempt += 1;
    tracing::info!(request = %job.request, attempt = job.attempt, %why, "a reminder will be tried again");
    runner::again_or_give_up(state(&job), job.attempt, MOST_ATTEMPTS)
}

/// What the job found of the records it works on.
struct Found {
    settings: MessagingSettings,
    request: Value,
    appointment: Value,
    patient: Option<Value>,
    location: Option<Value>,
    practitioner: Option<Value>,
}

async fn run(app: &App, claimed: &ClaimedJob, mut job: SendJob) -> Result<Step, FhirError> {
    let Some(found) = gather(app, &job).await? else {
        return Ok(Step::Done(state(&job)));
    };
    let Some(policy) = found.settings.reminders.clone() else {
        close(app, &job, found.request, "revoked", "reminders are off").await?;
        return Ok(Step::Done(state(&job)));
    };
    if job.step > 0
        && found.appointment["extension"]
            .as_array()
            .is_some_and(|e| e.iter().any(|e| e["url"] == super::replies::CONFIRMED_URL))
    {
        close(app, &job, found.request, "completed", "").await?;
        return Ok(Step::Done(state(&job)));
    }
    let key = message_key(&claimed.id, job.step);
    let now = crate::clock::now_micros();
    if job.sent.is_none() {
        let place = match render::zone_of(found.location.as_ref()) {
            Some(zone) => Some(zone),
            None => place_zone(app, &job, &found.appointment).await?,
        };
        let zone = render::zone_for(found.patient.as_ref(), place, &found.settings);
        let due = render::after_quiet_hours(now, policy.quiet_hours.as_ref(), &zone);
        let visit = parse_instant(&job.start).unwrap_or(now);
        if due >= visit {
            close(
                app,
                &job,
                found.request,
                "revoked",
                "only quiet hours were left before the visit",
            )
            .await?;
            return Ok(Step::Done(state(&job)));
        }
        if due > now {
            return Ok(Step::Later {
                state: state(&job),
                at: due,
            });
        }
        match deliver(app, (&key, &job), &found, &policy, &zone).await {
            Ok((channel, sent)) => {
                job.sent = Some(sent);
                job.from_channel = channel + 1;
                // Recorded before anything else: a retry must not send it again.
                app.store
                    .renew_job(&claimed.id, &claimed.owner, &state(&job))
                    .await?;
            }
            Err(Failure::Transient(why)) => return Ok(later(job, why)),
            Err(Failure::Permanent(why)) => {
                record(app, &key, &job, &found, Err(&why)).await?;
                close(app, &job, found.request, "revoked", &why).await?;
                return Ok(Step::Failed(state(&job)));
            }
        }
    }
    record(app, &key, &job, &found, Ok(())).await?;
    // Unconfirmed after the policy's wait, the next channel (the request stays open).
    let channels = policy.channels_for(found.patient.as_ref());
    let reachable_later = channels[job.from_channel.min(channels.len())..]
        .iter()
        .any(|channel| outbound::address_for(found.patient.as_ref(), channel).is_some());
    let escalation = policy.escalate_after_hours.filter(|_| reachable_later);
    if let Some(hours) = escalation {
        job.step += 1;
        job.sent = None;
        job.attempt = 0;
        let at = now + i64::from(hours) * 3_600_000_000;
        return Ok(Step::Later {
            state: state(&job),
            at,
        });
    }
    close(app, &job, found.request, "completed", "").await?;
    Ok(Step::Done(state(&job)))
}

/// The records the reminder is about; `None` when there is nothing to send (the request
/// gone or closed, or the appointment no longer booked at the time planned: then the
/// request is revoked). A message already sent is recorded even so.
async fn gather(app: &App, job: &SendJob) -> Result<Option<Found>, FhirError> {
    let tenant = job.tenant;
    let request = records::read(app, tenant, "CommunicationRequest", &job.request).await?;
    let Some(request) = request.filter(|r| r["status"] == "active") else {
        return Ok(None);
    };
    let appointment = records::read(app, tenant, "Appointment", &job.appointment).await?;
    // A message that went out is recorded, whatever the visit became since.
    let Some(appointment) = appointment.filter(|a| {
        job.sent.is_some()
            || (a["status"] == "booked"
                && a["start"].as_str().and_then(parse_instant) == parse_instant(&job.start))
    }) else {
        if job.sent.is_none() {
            close(
                app,
                job,
                request,
                "revoked",
                "the appointment moved or was cancelled",
            )
            .await?;
        }
        return Ok(None);
    };
    let settings = settings::load(&app.store, tenant).await?;
    let actor = |prefix: &str| -> Option<(String, String)> {
        let reference = appointment["participant"]
            .as_array()?
            .iter()
            .filter_map(|p| p["actor"]["reference"].as_str())
            .find(|r| r.starts_with(prefix))?;
        let (kind, id) = reference.split_once('/')?;
        Some((kind.to_owned(), id.to_owned()))
    };
    let mut read = Vec::new();
    for prefix in ["Patient/", "Location/", "Practitioner/"] {
        read.push(match actor(prefix) {
            Some((kind, id)) => records::read(app, tenant, &kind, &id).await?,
            None => None,
        });
    }
    let [patient, location, practitioner] =
        <[Option<Value>; 3]>::try_from(read).map_err(|_| FhirError::internal("three look-ups"))?;
    Ok(Some(Found {
        settings,
        request,
        appointment,
        patient,
        location,
        practitioner,
    }))
}

/// The zone of the Schedule of the visit's practitioner, when the patient and the
/// Location name none (looked up only then).
async fn place_zone(
    app: &App,
    job: &SendJob,
    visit: &Value,
) -> Result<Option<jiff::tz::TimeZone>, FhirError> {
    let Some(practitioner) = crate::workflows::scheduling::practitioner_of(visit) else {
        return Ok(None);
    };
    let search = [("actor".to_owned(), practitioner.to_owned())];
    let schedules =
        crate::workflows::scheduling::lookup::all(app, job.tenant, "Schedule", &search).await?;
    Ok(render::zone_of_schedule(schedules.first()))
}

/// Writes the message and hands it to the first channel that can reach the patient
/// (and has not been told to stop): its medium, the address and the far side's receipt.
async fn deliver(
    app: &App,
    (key, job): (&str, &SendJob),
    found: &Found,
    policy: &ReminderPolicy,
    zone: &jiff::tz::TimeZone,
) -> Result<(usize, (String, String, String)), Failure> {
    let tenant = job.tenant;
    let template = render::template_for(policy, found.patient.as_ref())
        .ok_or_else(|| Failure::Permanent("no template".into()))?;
    let place = policy.detail == "time-and-place";
    let facts = Facts {
        patient: render::name_of(found.patient.as_ref()),
        start: found.appointment["start"]
            .as_str()
            .and_then(|s| s.parse::<jiff::Timestamp>().ok())
            .map(|t| t.to_zoned(zone.clone())),
        practice: found.settings.practice.clone(),
        practitioner: if place {
            render::name_of(found.practitioner.as_ref())
        } else {
            String::new()
        },
        location: if place {
            render::name_of(found.location.as_ref())
        } else {
            String::new()
        },
        confirm_link: link_to(found, job, "confirm", key),
        cancel_link: link_to(found, job, "cancel", key),
    };
    let settings = &found.settings;
    let channels = policy.channels_for(found.patient.as_ref());
    for (index, channel) in channels.iter().enumerate().skip(job.from_channel) {
        let Some(to) = outbound::address_for(found.patient.as_ref(), channel) else {
            continue;
        };
        let mut message = Outgoing {
            key: key.to_owned(),
            to: to.clone(),
            subject: render::fill(&template.subject, &facts),
            text: render::fill(&template.text, &facts),
            callback: None,
            reply_to: None,
        };
        if channel == "voice" {
            let said = template.voice.as_ref().unwrap_or(&template.text);
            message.text = format!("{} {}", render::fill(said, &facts), super::voice::KEYS);
            message.reply_to = super::voice::keys_url(settings, &found.appointment, key);
        }
        let Some(receipt) = outbound::send_by(app, (tenant, settings), channel, &message).await?
        else {
            continue;
        };
        return Ok((index, (channel.clone(), to, receipt)));
    }
    Err(Failure::Permanent(
        "no channel of the policy can reach the patient".into(),
    ))
}

/// The signed link that does `action` to the visit (`messaging::links`), valid until the
/// visit starts; empty without a public URL or a link key.
fn link_to(found: &Found, job: &SendJob, action: &str, key: &str) -> String {
    let (Some(base), Some(secret)) = (&found.settings.public_base, &found.settings.link_key) else {
        return String::new();
    };
    let Some(expires) = parse_instant(&job.start).map(|s| s / 1_000_000) else {
        return String::new();
    };
    let link = super::links::Link {
        appointment: job.appointment.clone(),
        action: action.to_owned(),
        expires,
        nonce: key.to_owned(),
    };
    format!(
        "{base}/messaging/link?t={}",
        super::links::token(secret, &link)
    )
}

/// The Communication of what happened (once per job: a retried step finds it written).
async fn record(
    app: &App,
    key: &str,
    job: &SendJob,
    found: &Found,
    outcome: Result<(), &str>,
) -> Result<(), FhirError> {
    let mut communication = json!({"resourceType": "Communication",
        "identifier": [{"system": MESSAGE_KEY, "value": key}],
        "basedOn": [{"reference": format!("CommunicationRequest/{}", job.request)}],
        "category": reminder_category(),
        "about": [{"reference": format!("Appointment/{}", job.appointment)}]});
    if let Some(patient) = patient_of(&found.appointment) {
        communication["subject"] = json!({"reference": patient});
        communication["recipient"] = json!([{"reference": patient}]);
    }
    match (&job.sent, outcome) {
        (Some((channel, _, receipt)), Ok(())) => {
            if let (true, Some(ids)) = (
                channel != "email" && !receipt.is_empty(),
                communication["identifier"].as_array_mut(),
            ) {
                ids.push(json!({"system": super::TWILIO_SID, "value": receipt}));
            }
            communication["status"] = json!("completed");
            communication["sent"] = json!(format_instant(crate::clock::now_micros()));
            communication["medium"] = crate::channels::medium(channel);
        }
        _ => {
            let why = outcome.err().unwrap_or("not sent");
            communication["status"] = json!("not-done");
            communication["statusReason"] = json!({"text": why});
        }
    }
    let unless = [("identifier".to_owned(), format!("{MESSAGE_KEY}|{key}"))];
    records::create(app, job.tenant, communication, Some(&unless)).await?;
    Ok(())
}

/// Closes the reminder's request with `status` (and the reason, when there is one).
async fn close(
    app: &App,
    job: &SendJob,
    mut request: Value,
    status: &str,
    why: &str,
) -> Result<(), FhirError> {
    request["status"] = json!(status);
    if !why.is_empty() {
        request["statusReason"] = json!({"text": why});
    }
    records::replace(app, job.tenant, request).await
}
