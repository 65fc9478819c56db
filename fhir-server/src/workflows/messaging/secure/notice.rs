//! The email that tells a recipient of a secure message that one is waiting (job
//! `message-notice`, queued by the store with the message, one per patient or
//! practitioner it names): it says where to read it and carries no part of it (no text,
//! no topic, no sender), since email is not a secure channel. Sent once (the job records
//! the delivery before anything else, like a reminder's) and recorded as a Communication
//! `about` the message. Nothing is sent when the tenant has no email channel, notices
//! are off, or the recipient has no email address.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::super::settings::{self, MessagingSettings};
use super::super::{MESSAGE_KEY, outbound, render};
use crate::app::{App, SharedApp};
use crate::channels::{Failure, Outgoing};
use crate::error::FhirError;
use crate::ids::TenantId;
use crate::jobs::runner::{self, Step};
use crate::resource::format_instant;
use crate::store::jobs::ClaimedJob;
use crate::workflows::records;

pub use crate::store::outbox::MESSAGE_NOTICE as KIND;
const WORKERS: (usize, Duration) = (4, Duration::from_secs(120));
/// Failed deliveries tried again before the notice is given up (about 4 hours of waits).
const MOST_ATTEMPTS: u32 = 8;

#[derive(Debug, Clone, Serialize, Deserialize)]
struct NoticeJob {
    tenant: TenantId,
    /// The secure message's id.
    message: String,
    /// `Patient/p1`, `Practitioner/d1`.
    recipient: String,
    #[serde(default)]
    attempt: u32,
    /// Once the relay accepted it: the address.
    #[serde(default)]
    sent: Option<String>,
}

pub fn start(app: SharedApp) {
    runner::start(app, KIND, WORKERS, |app, claimed: ClaimedJob| async move {
        let Ok(job) = serde_json::from_str::<NoticeJob>(&claimed.state) else {
            return Step::Failed(claimed.state);
        };
        match run(&app, &claimed, job.clone()).await {
            Ok(step) => step,
            Err(error) => later(job, &format!("{error:?}")),
        }
    });
}

fn state(job: &NoticeJob) -> String {
    serde_json::to_string(job).unwrap_or_default()
}

fn later(mut job: NoticeJob, why: &str) -> Step {
    job.attempt += 1;
    tracing::info!(message = %job.message, attempt = job.attempt, %why, "a message notice will be tried again");
    runner::again_or_give_up(state(&job), job.attempt, MOST_ATTEMPTS)
}

/// What the notice says.
fn text(settings: &MessagingSettings, recipient: Option<&Value>) -> (String, String) {
    let name = render::name_of(recipient);
    let from = match settings.practice.as_str() {
        "" => "your care team".to_owned(),
        practice => practice.to_owned(),
    };
    let place = match &settings.secure.portal_url {
        Some(url) => format!("Sign in to read it: {url}"),
        None => "Sign in to your patient portal to read it.".to_owned(),
    };
    let greeting = if name.is_empty() {
        "Hello".to_owned()
    } else {
        format!("Hello {name}")
    };
    (
        "You have a new secure message".to_owned(),
        format!(
            "{greeting},\n\nyou have a new secure message from {from}. {place}\n\nFor your privacy, this email does not hold the message."
        ),
    )
}

async fn run(app: &App, claimed: &ClaimedJob, mut job: NoticeJob) -> Result<Step, FhirError> {
    let settings = settings::load(&app.store, job.tenant).await?;
    if !settings.secure.notify || settings.email.is_none() {
        return Ok(Step::Done(state(&job)));
    }
    let recipient = records::read_reference(app, job.tenant, &job.recipient).await?;
    let (subject, body) = text(&settings, recipient.as_ref());
    if job.sent.is_none() {
        let Some(to) = outbound::address_for(recipient.as_ref(), "email") else {
            return Ok(Step::Done(state(&job)));
        };
        let outgoing = Outgoing {
            key: claimed.id.clone(),
            to: to.clone(),
            subject,
            text: body.clone(),
            callback: None,
            reply_to: None,
        };
        match outbound::send_by(app, (job.tenant, &settings), "email", &outgoing).await {
            Ok(Some(_)) => {
                job.sent = Some(to);
                app.store
                    .renew_job(&claimed.id, &claimed.owner, &state(&job))
                    .await?;
            }
            Ok(None) => return Ok(Step::Done(state(&job))),
            Err(Failure::Transient(why)) => return Ok(later(job, &why)),
            Err(Failure::Permanent(why)) => {
                tracing::info!(message = %job.message, %why, "a message notice was refused");
                return Ok(Step::Failed(state(&job)));
            }
        }
    }
    record(app, &claimed.id, &job, &body).await?;
    Ok(Step::Done(state(&job)))
}

/// The Communication of the notice sent (once: a retried step finds it written).
async fn record(app: &App, key: &str, job: &NoticeJob, body: &str) -> Result<(), FhirError> {
    let message = records::read(app, job.tenant, "Communication", &job.message).await?;
    let mut notice = json!({"resourceType": "Communication",
        "identifier": [{"system": MESSAGE_KEY, "value": key}],
        "status": "completed",
        "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/communication-category",
            "code": "notification"}]}],
        "medium": crate::channels::medium("email"),
        "about": [{"reference": format!("Communication/{}", job.message)}],
        "recipient": [{"reference": job.recipient}],
        "sent": format_instant(crate::clock::now_micros()),
        "payload": [{"contentString": body}]});
    if let Some(subject) = message.as_ref().and_then(|m| super::subject_of(m)) {
        notice["subject"] = json!({"reference": subject});
    }
    let unless = [("identifier".to_owned(), format!("{MESSAGE_KEY}|{key}"))];
    records::create(app, job.tenant, notice, Some(&unless)).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_notice_holds_no_part_of_the_message() {
        let settings = MessagingSettings {
            practice: "Acme Clinic".into(),
            ..MessagingSettings::default()
        };
        let patient =
            json!({"resourceType": "Patient", "name": [{"given": ["Ann"], "family": "Lee"}]});
        let (subject, text) = text(&settings, Some(&patient));
        assert_eq!(subject, "You have a new secure message");
        assert!(
            text.contains("Acme Clinic") && text.contains("patient portal"),
            "{text}"
        );
    }
}
