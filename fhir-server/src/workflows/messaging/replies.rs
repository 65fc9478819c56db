//! What patients send back: SMS replies to a reminder (`C` / `CONFIRM` confirms the next
//! visit, `R` / `CANCEL` cancels it through the scheduling rules, which frees the time for
//! the waitlist; the words a template adds in its language too; `STOP` and `START` as the
//! carriers require; `HELP`), and the delivery reports of what was sent. Each inbound
//! message from a known patient is a Communication (received, from the patient, about the
//! visit), so the front desk sees every answer.

use serde_json::{Value, json};

use super::settings::MessagingSettings;
use super::{TWILIO_SID, reminder_category};
use crate::app::App;
use crate::error::FhirError;
use crate::ids::TenantId;
use crate::resource::format_instant;
use crate::store::Store;
use crate::store::auth::RecordKind;
use crate::workflows::records;
use crate::workflows::scheduling::lookup;

/// On an Appointment: when the patient confirmed it (by a reply).
pub const CONFIRMED_URL: &str = "urn:fhir-server:StructureDefinition/patient-confirmed";

/// The opt-out words of the US carriers (CTIA) and Twilio, but for `CANCEL`, which here
/// cancels the visit (set Twilio's Advanced Opt-Out not to treat it as one).
const STOP: &[&str] = &[
    "STOP",
    "STOPALL",
    "UNSUBSCRIBE",
    "END",
    "QUIT",
    "REVOKE",
    "OPTOUT",
];
const START: &[&str] = &["START", "UNSTOP", "OPTIN"];
const HELP: &[&str] = &["HELP", "INFO"];
const CONFIRM: &[&str] = &["C", "CONFIRM"];
const CANCEL: &[&str] = &["R", "CANCEL"];

/// Whether `number` texted STOP (and not START since).
pub async fn opted_out(store: &Store, tenant: TenantId, number: &str) -> Result<bool, FhirError> {
    Ok(store
        .auth_get(tenant, RecordKind::OptOut, number, 0)
        .await?
        .is_some())
}

/// What a reply asks for.
#[derive(Debug, PartialEq, Eq)]
enum Asks {
    Stop,
    Start,
    Help,
    Confirm,
    Cancel,
    Other,
}

/// Reads a reply: its first word, in any case, against the fixed words and those of every
/// template's language.
fn asks(body: &str, settings: &MessagingSettings) -> Asks {
    let word = body
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .trim_matches(|c: char| !c.is_alphanumeric())
        .to_uppercase();
    let templates = settings.reminders.iter().flat_map(|r| r.templates.values());
    let said = |fixed: &[&str], extra: &dyn Fn(&super::settings::Template) -> &Vec<String>| {
        fixed.contains(&word.as_str())
            || templates
                .clone()
                .any(|t| extra(t).iter().any(|w| w.to_uppercase() == word))
    };
    if STOP.contains(&word.as_str()) {
        Asks::Stop
    } else if START.contains(&word.as_str()) {
        Asks::Start
    } else if HELP.contains(&word.as_str()) {
        Asks::Help
    } else if said(CONFIRM, &|t| &t.confirm) {
        Asks::Confirm
    } else if said(CANCEL, &|t| &t.cancel) {
        Asks::Cancel
    } else {
        Asks::Other
    }
}

/// Handles an SMS from `from`; the text to answer with (empty: no answer).
pub async fn sms_received(
    app: &App,
    tenant: TenantId,
    settings: &MessagingSettings,
    (from, body): (&str, &str),
) -> Result<String, FhirError> {
    let front_desk = settings
        .sms
        .as_ref()
        .and_then(|s| s.front_desk.clone())
        .unwrap_or_else(|| "the practice".into());
    let asks = asks(body, settings);
    match asks {
        Asks::Stop => {
            let now = format_instant(crate::clock::now_micros());
            app.store
                .auth_put(
                    tenant,
                    RecordKind::OptOut,
                    from,
                    &json!({"since": now}).to_string(),
                    None,
                )
                .await?;
            // The carrier answers STOP itself.
            return Ok(String::new());
        }
        Asks::Start => {
            app.store
                .auth_delete(tenant, RecordKind::OptOut, from)
                .await?;
            return Ok(String::new());
        }
        Asks::Help => {
            return Ok(format!(
                "{}: reply C to confirm your visit, R to cancel it, STOP to stop messages. Questions: {front_desk}.",
                settings.practice
            ));
        }
        _ => {}
    }
    let Some(patient) = patient_by_phone(app, tenant, from).await? else {
        return Ok(format!(
            "We could not match this number to a patient of {}. Please call {front_desk}.",
            settings.practice
        ));
    };
    let patient = format!("Patient/{}", patient["id"].as_str().unwrap_or_default());
    // A number answers an offer of new times after a release (`messaging::reoffer`).
    if let Ok(n) = body.trim().parse::<usize>()
        && let Some(offer) = super::reoffer::open_offer(app, tenant, &patient).await?
    {
        record_inbound(app, tenant, (&patient, "sms", body), None).await?;
        let id = offer["id"].as_str().unwrap_or_default();
        return super::reoffer::take(app, tenant, id, n).await;
    }
    let next = next_visit(app, tenant, &patient).await?;
    record_inbound(app, tenant, (&patient, "sms", body), next.as_ref()).await?;
    let Some(mut visit) = next else {
        return Ok(format!(
            "You have no upcoming visit with us. Questions: {front_desk}."
        ));
    };
    let when = visit["start"].as_str().unwrap_or_default().to_owned();
    match asks {
        Asks::Confirm => {
            confirm(&mut visit, &patient);
            records::replace(app, tenant, visit).await?;
            Ok(format!("Thank you: your visit on {when} is confirmed."))
        }
        Asks::Cancel => {
            visit["status"] = json!("cancelled");
            visit["cancelationReason"] = json!({"text": "cancelled by the patient (SMS reply)"});
            records::replace(app, tenant, visit).await?;
            Ok(format!(
                "Your visit on {when} is cancelled. To book again, call {front_desk}."
            ))
        }
        _ => Ok(format!(
            "Reply C to confirm your visit on {when} or R to cancel it. For anything else call {front_desk}."
        )),
    }
}

/// Marks the patient's participation accepted and the time they confirmed.
pub(super) fn confirm(visit: &mut Value, patient: &str) {
    if let Some(participants) = visit["participant"].as_array_mut() {
        for participant in participants {
            if participant["actor"]["reference"] == patient {
                participant["status"] = json!("accepted");
            }
        }
    }
    let now =
        json!({"url": CONFIRMED_URL, "valueDateTime": format_instant(crate::clock::now_micros())});
    match visit["extension"].as_array_mut() {
        Some(extensions) => {
            extensions.retain(|e| e["url"] != CONFIRMED_URL);
            extensions.push(now);
        }
        None => visit["extension"] = json!([now]),
    }
}

/// The one patient with `number` as a phone (none when no one, or several, have it).
pub(super) async fn patient_by_phone(
    app: &App,
    tenant: TenantId,
    number: &str,
) -> Result<Option<Value>, FhirError> {
    let params = vec![("phone".to_owned(), number.to_owned())];
    let mut found = lookup::all(app, tenant, "Patient", &params).await?;
    Ok(match found.len() {
        1 => found.pop(),
        _ => None,
    })
}

/// The patient's next booked visit.
pub(super) async fn next_visit(
    app: &App,
    tenant: TenantId,
    patient: &str,
) -> Result<Option<Value>, FhirError> {
    let params = vec![
        ("patient".to_owned(), patient.to_owned()),
        ("status".to_owned(), "booked".to_owned()),
        (
            "date".to_owned(),
            format!("ge{}", format_instant(crate::clock::now_micros())),
        ),
    ];
    let visits = lookup::all(app, tenant, "Appointment", &params).await?;
    let start = |v: &Value| crate::resource::parse_instant(v["start"].as_str().unwrap_or_default());
    Ok(visits
        .into_iter()
        .min_by_key(|v| start(v).unwrap_or(i64::MAX)))
}

/// Records what `patient` sent by `channel` (`sms`; `voice`: the key pressed), about the
/// visit it concerns.
pub(super) async fn record_inbound(
    app: &App,
    tenant: TenantId,
    (patient, channel, body): (&str, &str, &str),
    visit: Option<&Value>,
) -> Result<(), FhirError> {
    let mut communication = json!({"resourceType": "Communication", "status": "completed",
        "category": reminder_category(),
        "subject": {"reference": patient}, "sender": {"reference": patient},
        "received": format_instant(crate::clock::now_micros()),
        "medium": crate::channels::medium(channel),
        "payload": [{"contentString": body}]});
    if let Some(id) = visit.and_then(|v| v["id"].as_str()) {
        communication["about"] = json!([{"reference": format!("Appointment/{id}")}]);
    }
    records::create(app, tenant, communication, None)
        .await
        .map(|_| ())
}

/// A delivery report (`MessageStatus` of message `sid`): `delivered` marks the
/// Communication received; `failed` and `undelivered` mark it not done, with the reason.
pub async fn delivery_report(
    app: &App,
    tenant: TenantId,
    (sid, status): (&str, &str),
) -> Result<(), FhirError> {
    if !matches!(status, "delivered" | "failed" | "undelivered") {
        return Ok(());
    }
    let params = vec![("identifier".to_owned(), format!("{TWILIO_SID}|{sid}"))];
    let Some(mut sent) = lookup::all(app, tenant, "Communication", &params)
        .await?
        .pop()
    else {
        return Ok(());
    };
    match status {
        "delivered" => sent["received"] = json!(format_instant(crate::clock::now_micros())),
        _ => {
            sent["status"] = json!("not-done");
            sent["statusReason"] =
                json!({"text": format!("the carrier reported the message {status}")});
        }
    }
    records::replace(app, tenant, sent).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_are_read_by_their_first_word_in_any_case_and_language() {
        let settings: MessagingSettings =
            serde_json::from_value(json!({"reminders": {"before_hours": [24],
            "templates": {"en": {"subject": "s", "text": "t"},
                "es": {"subject": "s", "text": "t", "confirm": ["si"], "cancel": ["anular"]}}}}))
            .unwrap();
        for (body, wanted) in [
            ("c", Asks::Confirm),
            ("Confirm please", Asks::Confirm),
            ("SÍ", Asks::Other),
            ("si", Asks::Confirm),
            ("R", Asks::Cancel),
            ("Anular!", Asks::Cancel),
            ("cancel", Asks::Cancel),
            ("stop", Asks::Stop),
            ("Start", Asks::Start),
            ("help", Asks::Help),
            ("what time?", Asks::Other),
            ("", Asks::Other),
        ] {
            assert_eq!(asks(body, &settings), wanted, "{body}");
        }
    }
}
