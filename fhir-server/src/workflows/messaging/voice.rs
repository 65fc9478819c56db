//! Calls: a reminder call's keys and the IVR line. A reminder call says the template's
//! words and sends the key pressed to `{public_base}/messaging/twilio/voice?r=TOKEN`, the
//! token a signed link to the visit (`messaging::links`, action `call`). A call to the
//! practice's number comes to the same webhook without a token: the caller is matched to
//! a patient by number and hears their next visit, with the same keys. 1 confirms, 2
//! cancels (through the scheduling rules: the time goes to the waitlist), 3 offers the
//! next opening with the visit's practitioner (`scheduling::moves::next_opening`), which
//! 1 then takes (the visit moved there, as `$reschedule` moves it), and 0 puts the caller
//! through to the front desk. Unknown callers, and patients without an upcoming visit, go
//! straight to the front desk.

use serde_json::Value;

use super::links::{self, Link};
use super::replies::{self, confirm};
use super::settings::MessagingSettings;
use crate::app::App;
use crate::channels::twilio::{dial, gather, say, twiml};
use crate::error::FhirError;
use crate::ids::TenantId;
use crate::resource::{format_instant, parse_instant};
use crate::workflows::records;
use crate::workflows::scheduling::availability::Span;
use crate::workflows::scheduling::moves::{move_to, next_opening, proposed_at};

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
pub const KEYS: &str = "Press 1 to confirm, 2 to cancel, 3 to move it to the next opening, or 0 to speak to the front desk.";
/// The words that offer an opening.
const TAKE_IT: &str = "Press 1 to take it, or 0 to speak to the front desk.";

/// The webhook of the keys of a call about `visit`, with a signed token that lasts until
/// the visit starts.
pub fn keys_url(settings: &MessagingSettings, visit: &Value, nonce: &str) -> Option<String> {
    signed_keys_url(settings, visit, ("call", nonce))
}

/// The webhook of the keys that answer the offer of `opening` for `visit` (action
/// `move`, the opening in the signed nonce).
fn offer_url(settings: &MessagingSettings, visit: &Value, opening: Span) -> Option<String> {
    let nonce = format!("{}-{}", opening.start, opening.end);
    signed_keys_url(settings, visit, ("move", &nonce))
}

/// The opening an offer's nonce names.
fn offered(nonce: &str) -> Option<Span> {
    let (start, end) = nonce.split_once('-')?;
    Some(Span {
        start: start.parse().ok()?,
        end: end.parse().ok()?,
    })
}

fn signed_keys_url(
    settings: &MessagingSettings,
    visit: &Value,
    (action, nonce): (&str, &str),
) -> Option<String> {
    let (base, key) = (settings.public_base.as_ref()?, settings.link_key.as_ref()?);
    let link = Link {
        appointment: visit["id"].as_str()?.to_owned(),
        action: action.into(),
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
    let mut offer = None;
    let visit = match call.token {
        Some(token) => {
            let key = settings.link_key.as_deref().unwrap_or_default();
            match links::open(key, token, crate::clock::now_seconds()) {
                Ok(link) if link.action == "call" || link.action == "move" => {
                    if link.action == "move" {
                        offer = offered(&link.nonce);
                    }
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
    if let Some(opening) = offer {
        let verbs = match call.digits {
            Some("1") => take(app, tenant, visit, opening, desk).await?,
            _ => dial(desk),
        };
        return Ok(twiml(&verbs));
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
        Some("3") => offer_next(app, (tenant, settings), &visit, desk).await?,
        Some(_) => dial(desk),
    };
    Ok(twiml(&verbs))
}

/// Offers the next opening with `visit`'s practitioner (key 3), or the front desk when
/// there is none.
async fn offer_next(
    app: &App,
    (tenant, settings): (TenantId, &MessagingSettings),
    visit: &Value,
    desk: Option<&str>,
) -> Result<String, FhirError> {
    let offer = match next_opening(app, tenant, visit).await? {
        Some(opening) => offer_url(settings, visit, opening).map(|action| (opening, action)),
        None => None,
    };
    Ok(match offer {
        Some((opening, action)) => {
            let at = format_instant(opening.start);
            gather(&format!("The next opening is on {at}. {TAKE_IT}"), &action)
        }
        None => format!(
            "{}{}",
            say("There is no opening to offer. Connecting you to the front desk."),
            dial(desk)
        ),
    })
}

/// Moves `visit` to `opening` (key 1 after the offer); when the time was taken meanwhile,
/// the caller goes to the front desk.
async fn take(
    app: &App,
    tenant: TenantId,
    visit: Value,
    opening: Span,
    desk: Option<&str>,
) -> Result<String, FhirError> {
    let id = visit["id"].as_str().unwrap_or_default().to_owned();
    let version = visit["meta"]["versionId"]
        .as_str()
        .and_then(|v| v.parse().ok())
        .unwrap_or_default();
    let proposed = proposed_at(&visit, opening);
    match move_to(app, tenant, (&id, version), visit, proposed).await {
        Ok(_) => Ok(say(&format!(
            "Your visit is moved to {}. Goodbye.",
            format_instant(opening.start)
        ))),
        Err(error) if error.status.is_client_error() => Ok(format!(
            "{}{}",
            say("That time was just taken. Connecting you to the front desk."),
            dial(desk)
        )),
        Err(error) => Err(error),
    }
}
