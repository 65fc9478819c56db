//! Handing one message to one channel of the tenant's, the same for reminders and
//! broadcasts: the patient's address for the channel, the numbers that texted STOP passed
//! over, the delivery reports and the keys of a call sent back to the webhooks under the
//! tenant's public URL.

use serde_json::Value;

use super::settings::MessagingSettings;
use crate::app::App;
use crate::channels::email::Email;
use crate::channels::twilio::{Sms, Voice};
use crate::channels::{Channel, Failure, Outgoing, Receipt};
use crate::ids::TenantId;

/// The patient's address for `channel`: the best-ranked current email address, mobile
/// number (an `sms` telecom, or a `phone` of use `mobile`, in E.164), or phone number.
pub fn address_for(patient: Option<&Value>, channel: &str) -> Option<String> {
    best_telecom(patient, channel)?["value"]
        .as_str()
        .map(str::to_owned)
}

/// The `rank` of the patient's best address for `channel` (1 is the most preferred; an
/// address without a rank comes after every ranked one); `None` when there is none.
pub fn rank_for(patient: Option<&Value>, channel: &str) -> Option<u64> {
    best_telecom(patient, channel).map(|t| t["rank"].as_u64().unwrap_or(u64::MAX))
}

fn best_telecom<'p>(patient: Option<&'p Value>, channel: &str) -> Option<&'p Value> {
    let fits = |t: &&Value| match channel {
        "email" => t["system"] == "email",
        "sms" => {
            (t["system"] == "sms" || (t["system"] == "phone" && t["use"] == "mobile"))
                && t["value"]
                    .as_str()
                    .is_some_and(crate::channels::twilio::is_e164)
        }
        "voice" => {
            t["system"] == "phone"
                && t["value"]
                    .as_str()
                    .is_some_and(crate::channels::twilio::is_e164)
        }
        _ => false,
    };
    let mut telecom: Vec<&Value> = patient?["telecom"]
        .as_array()?
        .iter()
        .filter(|t| t["period"]["end"].is_null())
        .filter(fits)
        .collect();
    telecom.sort_by_key(|t| t["rank"].as_u64().unwrap_or(u64::MAX));
    telecom.first().copied()
}

/// Sends `message` by `channel`: the far side's receipt, or `None` when the channel is
/// not set up or its address texted STOP (the next channel may do).
pub async fn send_by(
    app: &App,
    (tenant, settings): (TenantId, &MessagingSettings),
    channel: &str,
    message: &Outgoing,
) -> Result<Option<Receipt>, Failure> {
    let mut message = message.clone();
    let status_hook = settings
        .public_base
        .as_ref()
        .map(|base| format!("{base}/messaging/twilio/status"));
    match (channel, &settings.email, &settings.sms) {
        ("email", Some(email), _) => Ok(Some(Email::for_settings(email)?.send(&message).await?)),
        ("sms", _, Some(account)) => {
            if opted_out(app, tenant, &message.to).await? {
                return Ok(None);
            }
            message.callback = status_hook;
            let sms = Sms {
                settings: account.clone(),
            };
            Ok(Some(sms.send(&message).await?))
        }
        ("voice", _, Some(account)) => {
            message.callback = status_hook;
            let voice = Voice {
                settings: account.clone(),
            };
            Ok(Some(voice.send(&message).await?))
        }
        _ => Ok(None),
    }
}

/// Whether `number` texted STOP (a failed look-up is worth a retry).
pub async fn opted_out(app: &App, tenant: TenantId, number: &str) -> Result<bool, Failure> {
    super::replies::opted_out(&app.store, tenant, number)
        .await
        .map_err(|e| Failure::Transient(format!("{e:?}")))
}
