//! Broadcasts: one message to every patient a search finds (`Patient?...`, or the
//! patients of `Appointment?...`: all with a visit tomorrow at a closed location), by the
//! first of the tenant's channels that reaches each patient (numbers that texted STOP
//! passed over), at no more than a set number a minute on each channel (an SMS gateway's
//! and a mail relay's limits differ). A Task stands for the broadcast
//! (`code` broadcast, its search and text as inputs, `for` nobody); each recipient gets a
//! `broadcast-send` job due at their turn, and a Communication (`basedOn` the Task) says
//! what became of their message; `Task/{id}/$broadcast-report` counts them.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::{MESSAGE_KEY, outbound, settings};
use crate::app::{App, SharedApp};
use crate::channels::{Failure, Outgoing};
use crate::error::FhirError;
use crate::ids::TenantId;
use crate::jobs::runner::{self, Step};
use crate::resource::format_instant;
use crate::store::jobs::ClaimedJob;
use crate::workflows::records;
use crate::workflows::scheduling::lookup;

pub const KIND: &str = "broadcast-send";
const WORKERS: (usize, Duration) = (4, Duration::from_secs(120));
/// The most patients one broadcast reaches.
pub const MOST_RECIPIENTS: usize = 10_000;
/// Why a message was not sent to a patient who texted STOP.
const OPTED_OUT: &str = "the patient asked for no messages (STOP)";
/// Failed deliveries tried again before a recipient is given up.
const MOST_ATTEMPTS: u32 = 6;

/// What an admin asks.
pub struct Ask {
    /// `Patient?...` or `Appointment?...`.
    pub search: String,
    pub subject: String,
    pub text: String,
    /// At most this many a minute on each channel...
    pub per_minute: u32,
    /// ... unless set for the channel here (`sms`, `email`).
    pub per_channel: Vec<(String, u32)>,
}

impl Ask {
    /// The most messages a minute on `channel`.
    fn rate(&self, channel: &str) -> i64 {
        let rate = self
            .per_channel
            .iter()
            .find(|(name, _)| name == channel)
            .map_or(self.per_minute, |(_, rate)| *rate);
        i64::from(rate.max(1))
    }
}

/// The channels a broadcast tries, in order: the policy's but calls, else SMS then email.
fn channels_of(settings: &settings::MessagingSettings) -> Vec<String> {
    match &settings.reminders {
        Some(policy) => policy
            .channels
            .iter()
            .filter(|c| *c != "voice")
            .cloned()
            .collect(),
        None => vec!["sms".into(), "email".into()],
    }
}

/// When each patient's message is due: their channel's messages one after the other at
/// its rate, from `now` (a patient no channel reaches at once, to be recorded so).
async fn turns(
    app: &App,
    tenant: TenantId,
    (ask, now): (&Ask, i64),
    patients: &[String],
) -> Result<Vec<i64>, FhirError> {
    let channels = channels_of(&settings::load(&app.store, tenant).await?);
    let mut taken: std::collections::HashMap<String, i64> = std::collections::HashMap::new();
    let mut due = Vec::with_capacity(patients.len());
    for chunk in patients.chunks(100) {
        let ids = [("_id".to_owned(), chunk.join(","))];
        let found = lookup::all(app, tenant, "Patient", &ids).await?;
        for id in chunk {
            let patient = found.iter().find(|p| p["id"] == id.as_str());
            let Some(channel) = channels
                .iter()
                .find(|c| outbound::address_for(patient, c).is_some())
            else {
                due.push(now);
                continue;
            };
            let turn = taken.entry(channel.clone()).or_default();
            due.push(now + (*turn / ask.rate(channel)) * 60_000_000);
            *turn += 1;
        }
    }
    Ok(due)
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct SendJob {
    tenant: TenantId,
    task: String,
    patient: String,
    #[serde(default)]
    attempt: u32,
}

/// The patients `search` finds: a Patient search's, or the patients of an Appointment
/// search's visits (each once).
async fn recipients(app: &App, tenant: TenantId, search: &str) -> Result<Vec<String>, FhirError> {
    let invalid = |why: &str| {
        FhirError::bad_request(why.to_owned()).at("Parameters.parameter.where(name = 'search')")
    };
    let (resource_type, query) = search.split_once('?').unwrap_or((search, ""));
    let params: Vec<(String, String)> = form_urlencoded::parse(query.as_bytes())
        .into_owned()
        .collect();
    let found = match resource_type {
        "Patient" | "Appointment" => lookup::all(app, tenant, resource_type, &params).await?,
        _ => return Err(invalid("The search is Patient?... or Appointment?...")),
    };
    let mut patients: Vec<String> = match resource_type {
        "Patient" => found
            .iter()
            .filter_map(|p| p["id"].as_str())
            .map(str::to_owned)
            .collect(),
        _ => found
            .iter()
            .filter_map(crate::workflows::scheduling::patient_of)
            .filter_map(|r| r.strip_prefix("Patient/").map(str::to_owned))
            .collect(),
    };
    patients.sort();
    patients.dedup();
    if patients.len() > MOST_RECIPIENTS {
        return Err(invalid(&format!(
            "The search finds more than {MOST_RECIPIENTS} patients"
        )));
    }
    Ok(patients)
}

/// Starts a broadcast: its Task's id.
pub async fn start(app: &App, tenant: TenantId, ask: &Ask) -> Result<String, FhirError> {
    let patients = recipients(app, tenant, &ask.search).await?;
    let now = crate::clock::now_micros();
    let task = json!({"resourceType": "Task", "status": "in-progress", "intent": "order",
        "code": {"text": "broadcast"}, "description": ask.subject, "authoredOn": format_instant(now),
        "input": [
            {"type": {"text": "search"}, "valueString": ask.search},
            {"type": {"text": "subject"}, "valueString": ask.subject},
            {"type": {"text": "text"}, "valueString": ask.text},
            {"type": {"text": "recipients"}, "valueInteger": patients.len()}]});
    let due = turns(app, tenant, (ask, now), &patients).await?;
    let task = records::create(app, tenant, task, None).await?;
    for (patient, at) in patients.into_iter().zip(due) {
        let job = SendJob {
            tenant,
            task: task.clone(),
            patient,
            attempt: 0,
        };
        let state = serde_json::to_string(&job).map_err(FhirError::internal)?;
        app.store
            .queue_job_at(tenant, KIND, &state, Some(at))
            .await?;
    }
    Ok(task)
}

pub fn start_workers(app: SharedApp) {
    runner::start(app, KIND, WORKERS, |app, claimed: ClaimedJob| async move {
        let Ok(mut job) = serde_json::from_str::<SendJob>(&claimed.state) else {
            return Step::Failed(claimed.state);
        };
        match send(&app, &claimed.id, &job).await {
            Ok(()) => Step::Done(claimed.state),
            Err(why) if job.attempt + 1 >= MOST_ATTEMPTS => {
                let _ = record(&app, (&claimed.id, &job), Err(&why)).await;
                Step::Failed(claimed.state)
            }
            Err(why) => {
                tracing::info!(%why, task = %job.task, "a broadcast message will be tried again");
                job.attempt += 1;
                let at = runner::retry_at(job.attempt, crate::clock::now_micros());
                Step::Later {
                    state: serde_json::to_string(&job).unwrap_or_default(),
                    at,
                }
            }
        }
    });
}

/// Sends one recipient's message; `Err` is worth a retry.
async fn send(app: &App, key: &str, job: &SendJob) -> Result<(), String> {
    let fail = |e: FhirError| format!("{e:?}");
    let task = records::read(app, job.tenant, "Task", &job.task)
        .await
        .map_err(fail)?;
    let Some(task) = task.filter(|t| t["status"] == "in-progress") else {
        return Ok(());
    };
    let input = |name: &str| -> String {
        task["input"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|i| i["type"]["text"] == name)
            .and_then(|i| i["valueString"].as_str())
            .unwrap_or_default()
            .to_owned()
    };
    let settings = settings::load(&app.store, job.tenant).await.map_err(fail)?;
    let patient = records::read(app, job.tenant, "Patient", &job.patient)
        .await
        .map_err(fail)?;
    let channels = channels_of(&settings);
    let mut stopped = false;
    for channel in &channels {
        let Some(to) = outbound::address_for(patient.as_ref(), channel) else {
            continue;
        };
        let message = Outgoing {
            key: key.to_owned(),
            to,
            subject: input("subject"),
            text: input("text"),
            callback: None,
            reply_to: None,
        };
        match outbound::send_by(app, (job.tenant, &settings), channel, &message).await {
            Ok(Some(_)) => {
                return record(app, (key, job), Ok((channel, &message.text)))
                    .await
                    .map_err(fail);
            }
            Ok(None) => stopped |= channel == "sms",
            Err(Failure::Transient(why)) => return Err(why),
            Err(Failure::Permanent(why)) => {
                return record(app, (key, job), Err(&why)).await.map_err(fail);
            }
        }
    }
    let why = if stopped {
        OPTED_OUT
    } else {
        "no channel reaches the patient"
    };
    record(app, (key, job), Err(why)).await.map_err(fail)
}

/// The recipient's Communication (once per job).
async fn record(
    app: &App,
    (key, job): (&str, &SendJob),
    outcome: Result<(&str, &str), &str>,
) -> Result<(), FhirError> {
    let patient = format!("Patient/{}", job.patient);
    let mut communication = json!({"resourceType": "Communication",
        "identifier": [{"system": MESSAGE_KEY, "value": key}],
        "basedOn": [{"reference": format!("Task/{}", job.task)}],
        "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/communication-category", "code": "notification"}]}],
        "subject": {"reference": patient}, "recipient": [{"reference": patient}]});
    match outcome {
        Ok((channel, text)) => {
            communication["status"] = json!("completed");
            communication["sent"] = json!(format_instant(crate::clock::now_micros()));
            communication["medium"] = crate::channels::medium(channel);
            communication["payload"] = json!([{"contentString": text}]);
        }
        Err(why) => {
            communication["status"] = json!("not-done");
            communication["statusReason"] = json!({"text": why});
        }
    }
    let unless = [("identifier".to_owned(), format!("{MESSAGE_KEY}|{key}"))];
    records::create(app, job.tenant, communication, Some(&unless))
        .await
        .map(|_| ())
}

/// What became of a broadcast's messages so far; the Task is completed once every
/// recipient has an answer.
pub async fn report(app: &App, tenant: TenantId, task_id: &str) -> Result<Value, FhirError> {
    let Some(mut task) = records::read(app, tenant, "Task", task_id).await? else {
        return Err(FhirError::not_found(format!("Task/{task_id} is not known")));
    };
    if task["code"]["text"] != "broadcast" {
        return Err(FhirError::bad_request(format!(
            "Task/{task_id} is not a broadcast"
        )));
    }
    let recipients = task["input"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|i| i["type"]["text"] == "recipients")
        .and_then(|i| i["valueInteger"].as_u64())
        .unwrap_or(0);
    let params = vec![("based-on".to_owned(), format!("Task/{task_id}"))];
    let messages = lookup::all(app, tenant, "Communication", &params).await?;
    let sent = messages
        .iter()
        .filter(|m| m["status"] == "completed")
        .count() as u64;
    let opted_out = messages
        .iter()
        .filter(|m| m["statusReason"]["text"] == OPTED_OUT)
        .count() as u64;
    let failed = messages.len() as u64 - sent - opted_out;
    let pending = recipients.saturating_sub(messages.len() as u64);
    if pending == 0 && task["status"] == "in-progress" {
        task["status"] = json!("completed");
        records::replace(app, tenant, task).await?;
    }
    let part = |name: &str, value: u64| json!({"name": name, "valueInteger": value});
    Ok(json!({"resourceType": "Parameters", "parameter": [
        part("recipients", recipients), part("sent", sent), part("failed", failed),
        part("opted-out", opted_out), part("pending", pending)]}))
}
