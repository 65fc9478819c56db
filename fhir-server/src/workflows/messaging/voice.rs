//! Calls: a reminder call's keys and the IVR line. A reminder call says the template's
//! words and sends the key pressed to `{public_base}/messaging/twilio/voice?r=TOKEN`, the
//! token a signed link to the visit (`messaging::links`, action `call`). A call to the
//! practice's number comes to the same webhook without a token: the caller is matched to
//! a patient by number and hears their next visit, with the same keys. 1 confirms, 2
//! cancels (through the scheduling rules: the time goes to the waitlist), 3 and 0 put the
//! caller through to the front desk (3: to move the visit). Unknown callers, and patients
//! without an upcoming visit, go straight to the front desk.

use serde_json::Value;

use super::links::{self, Link};
use super::replies::{self, confirm};
use super::settings::MessagingSettings;
use crate::app::App;
use crate::channels::twilio::{dial, gather, say, twiml};
use crate::error::FhirError;
use crate::ids::TenantId;
use crate::resource::parse_instant;
use crate::workflows::records;

/// What Twilio says of a call.
pub struct Call<'a> {
    /// The caller's number.
    pub from: &'a str,
    /// The key pressed, once the prompt was answered.
    pub digits: Option<&'a str>,
    /// The signed link of a reminder call (none on the IVR line).
    pub token: Option<&'a str>,
}

/// The words that offer the keys.
pub const KEYS: &str =
    "Press 1 to confirm, 2 to cancel, 3 to move it, or 0 to speak to the front desk.";

/// The webhook of the keys of a call about `visit`, with a signed token that lasts until
/// the visit starts.
pub fn keys_url(settings: &MessagingSettings, visit: &Value, nonce: &str) -> Option<String> {
    let (base, key) = (settings.public_base.as_ref()?, settings.link_key.as_ref()?);
    let link = Link {
        appointment: visit["id"].as_str()?.to_owned(),
        action: "call".into(),
        expires: visit["start"].as_str().and_then(parse_instant)? / 1_000_000,
        nonce: nonce.to_owned(),
    };
    Some(format!(
        "{base}/messaging/twilio/voice?r={}",
        links::token(key, &link)
    ))
}

/// The TwiML answer to a call.
pub async fn answer(
    app: &App,
    tenant: TenantId,
    settings: &MessagingSettings,
    call: &Call<'_>,
) -> Result<String, FhirError> {
    let desk = settings.sms.as_ref().and_then(|s| s.front_desk.as_deref());
    let visit = match call.token {
        Some(token) => {
            let key = settings.link_key.as_deref().unwrap_or_default();
            match links::open(key, token, crate::clock::now_seconds()) {
                Ok(link) if link.action == "call" => {
                    records::read(app, tenant, "Appointment", &link.appointment).await?
                }
                _ => None,
            }
        }
        None => match replies::patient_by_phone(app, tenant, call.from).await? {
            Some(patient) => {
                let patient = format!("Patient/{}", patient["id"].as_str().unwrap_or_default());
                replies::next_visit(app, tenant, &patient).await?
            }
            None => None,
        },
    };
    let Some(mut visit) = visit.filter(|v| v["status"] == "booked") else {
        return Ok(twiml(&dial(desk)));
    };
    let when = visit["start"].as_str().unwrap_or_default().to_owned();
    if let (Some(digits), Some(patient)) = (
        call.digits,
        crate::workflows::scheduling::patient_of(&visit),
    ) {
        let pressed = format!("pressed {digits}");
        replies::record_inbound(app, tenant, (&patient, "voice", &pressed), Some(&visit)).await?;
    }
    let verbs = match call.digits {
        None => {
            let Some(action) = keys_url(settings, &visit, "ivr") else {
                return Ok(twiml(&dial(desk)));
            };
            gather(&format!("Your next visit is on {when}. {KEYS}"), &action)
        }
        Some("1") => {
            if let Some(patient) = crate::workflows::scheduling::patient_of(&visit) {
                confirm(&mut visit, &patient);
            }
            records::replace(app, tenant, visit).await?;
            say("Thank you, your visit is confirmed. Goodbye.")
        }
        Some("2") => {
            visit["status"] = serde_json::json!("cancelled");
            visit["cancelationReason"] =
                serde_json::json!({"text": "cancelled by the patient (keys on a call)"});
            records::replace(app, tenant, visit).await?;
            say("Your visit is cancelled. Goodbye.")
        }
        Some(_) => dial(desk),
    };
    Ok(twiml(&verbs))
}
