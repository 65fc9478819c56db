//! A tenant's messaging settings, as data an admin changes through the admin API
//! (`GET|PUT {base}/auth/admin/messaging`, a JSON document): its channels (for now email
//! over SMTP) and its reminder policy. Kept as one record per tenant (`RecordKind::Setting`,
//! name `messaging`); checked whole when written, so a worker never meets a bad setting.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::FhirError;
use crate::ids::TenantId;
use crate::store::Store;
use crate::store::auth::RecordKind;

pub use crate::channels::email::EmailChannel;
pub use crate::channels::twilio::TwilioChannel;

/// The record's name.
const NAME: &str = "messaging";
/// What stands for a secret when the settings are read back.
pub const HIDDEN: &str = "********";

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MessagingSettings {
    /// The practice's IANA time zone: quiet hours are counted in it when neither the
    /// patient nor the visit's Location says otherwise.
    #[serde(default = "default_time_zone")]
    pub time_zone: String,
    /// The practice's name, as messages sign off.
    #[serde(default)]
    pub practice: String,
    #[serde(default)]
    pub email: Option<EmailChannel>,
    /// SMS through Twilio (or a gateway that speaks its API).
    #[serde(default)]
    pub sms: Option<TwilioChannel>,
    #[serde(default)]
    pub reminders: Option<ReminderPolicy>,
    /// Secure messaging between patients and their care team.
    #[serde(default)]
    pub secure: SecureMessaging,
    /// The tenant's public FHIR base (`--base-url` and the tenant's path), set by the
    /// server when the settings are saved: Twilio's webhooks are `{public_base}/messaging/
    /// twilio/sms`, `.../status` and `.../voice`, and their signatures are over it.
    #[serde(default)]
    pub public_base: Option<String>,
    /// The key that signs the links in messages (`messaging::links`), made by the server
    /// when the settings are first saved; never shown.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub link_key: Option<String>,
}

fn default_time_zone() -> String {
    "UTC".into()
}

/// What secure messages may carry, and whether their recipients are told by email.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecureMessaging {
    /// The largest attachment, in bytes (5 MiB unless set; at most 10 MiB).
    #[serde(default = "default_attachment_bytes")]
    pub attachment_max_bytes: usize,
    /// The content types an attachment may have.
    #[serde(default = "default_attachment_types")]
    pub attachment_types: Vec<String>,
    /// Whether a recipient with an email address is told of a new message (by an email
    /// that holds no part of it) when the email channel is on.
    #[serde(default = "default_notify")]
    pub notify: bool,
    /// Where patients sign in to read their messages, named in the notice.
    #[serde(default)]
    pub portal_url: Option<String>,
}

impl Default for SecureMessaging {
    fn default() -> Self {
        SecureMessaging {
            attachment_max_bytes: default_attachment_bytes(),
            attachment_types: default_attachment_types(),
            notify: default_notify(),
            portal_url: None,
        }
    }
}

/// The largest attachment a setting may allow: its base64 must fit a request body.
pub const MOST_ATTACHMENT_BYTES: usize = 10 * 1024 * 1024;

fn default_attachment_bytes() -> usize {
    5 * 1024 * 1024
}

fn default_attachment_types() -> Vec<String> {
    ["application/pdf", "image/jpeg", "image/png", "text/plain"]
        .map(str::to_owned)
        .to_vec()
}

fn default_notify() -> bool {
    true
}

impl SecureMessaging {
    fn check(&self) -> Result<(), FhirError> {
        if self.attachment_max_bytes == 0 || self.attachment_max_bytes > MOST_ATTACHMENT_BYTES {
            return Err(invalid(
                "secure.attachment_max_bytes",
                format!("between 1 and {MOST_ATTACHMENT_BYTES} bytes"),
            ));
        }
        for (n, content_type) in self.attachment_types.iter().enumerate() {
            let shaped = content_type.split_once('/').is_some_and(|(kind, sub)| {
                !kind.is_empty() && !sub.is_empty() && !content_type.contains([' ', ';', ','])
            });
            if !shaped {
                return Err(invalid(
                    &format!("secure.attachment_types[{n}]"),
                    "a content type (application/pdf)",
                ));
            }
        }
        if let Some(url) = &self.portal_url
            && !(url.starts_with("https://") || url.starts_with("http://"))
        {
            return Err(invalid("secure.portal_url", "an http(s) URL"));
        }
        Ok(())
    }
}

/// When and how appointment reminders go out.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReminderPolicy {
    /// Hours before the visit, one reminder each (e.g. 72, 24, 2).
    pub before_hours: Vec<u32>,
    /// The channels to try, in order (`email`); a patient without an address for one is
    /// reached by the next.
    #[serde(default = "default_channels")]
    pub channels: Vec<String>,
    /// Whether the patient's own preference orders `channels`: the channel of their
    /// best-ranked `telecom` (`rank` 1 first) is tried first, the policy's order breaking
    /// ties (see [`ReminderPolicy::channels_for`]).
    #[serde(default)]
    pub patient_preference: bool,
    /// No message between these local times (`21:00` to `08:00`): one due then waits.
    #[serde(default)]
    pub quiet_hours: Option<QuietHours>,
    /// Templates by language (`en`, `es`, ...): `subject` and `text`, with `{patient}`,
    /// `{date}`, `{time}`, `{practice}` and, when `detail` allows, `{practitioner}` and
    /// `{location}`. `en` is the fallback and is required.
    pub templates: std::collections::BTreeMap<String, Template>,
    /// Unconfirmed this many hours after a reminder was sent, the reminder goes again by
    /// the next channel of `channels` that can reach the patient.
    #[serde(default)]
    pub escalate_after_hours: Option<u32>,
    /// Still unconfirmed this many hours before the visit: `task` (a Task for the front
    /// desk to call the patient) or `release` (the visit is cancelled, its time offered to
    /// the waitlist).
    #[serde(default)]
    pub unconfirmed: Option<Deadline>,
    /// What a message may say of the visit: `time` (when only, the default) or
    /// `time-and-place` (who and where too). Never the reason or any clinical detail.
    #[serde(default = "default_detail")]
    pub detail: String,
}

fn default_channels() -> Vec<String> {
    vec!["email".into()]
}

fn default_detail() -> String {
    "time".into()
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Deadline {
    pub hours_before: u32,
    pub action: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QuietHours {
    pub start: String,
    pub end: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Template {
    pub subject: String,
    pub text: String,
    /// What a reminder call says (else `text`); the keys are offered after it.
    #[serde(default)]
    pub voice: Option<String>,
    /// Replies that confirm, besides `C` and `CONFIRM` (`SI`, `OUI`), any case.
    #[serde(default)]
    pub confirm: Vec<String>,
    /// Replies that cancel, besides `R` and `CANCEL` (`ANULAR`), any case.
    #[serde(default)]
    pub cancel: Vec<String>,
}

/// The placeholders a template may use.
const PLACEHOLDERS: &[&str] = &[
    "confirm_link",
    "cancel_link",
    "patient",
    "date",
    "time",
    "practice",
    "practitioner",
    "location",
];

pub(crate) fn invalid(field: &str, diagnostics: impl Into<String>) -> FhirError {
    FhirError::new(
        axum::http::StatusCode::UNPROCESSABLE_ENTITY,
        "invalid",
        diagnostics,
    )
    .at(field)
}

/// Minutes after midnight of `HH:MM`.
pub fn minute_of_day(text: &str) -> Option<u32> {
    let (hours, minutes) = text.split_once(':')?;
    let (hours, minutes): (u32, u32) = (hours.parse().ok()?, minutes.parse().ok()?);
    (hours < 24 && minutes < 60 && text.len() == 5).then_some(hours * 60 + minutes)
}

impl MessagingSettings {
    /// Checks every field; the first bad one is 422 naming it.
    pub fn check(&self) -> Result<(), FhirError> {
        if jiff::tz::TimeZone::get(&self.time_zone).is_err() {
            return Err(invalid(
                "time_zone",
                "not an IANA time zone (America/New_York)",
            ));
        }
        if self.practice.len() > 200 {
            return Err(invalid("practice", "at most 200 characters"));
        }
        if let Some(email) = &self.email {
            email
                .check()
                .map_err(|(f, why)| invalid(&format!("email.{f}"), why))?;
        }
        if let Some(sms) = &self.sms {
            sms.check()
                .map_err(|(f, why)| invalid(&format!("sms.{f}"), why))?;
        }
        let channel_on = self.email.is_some() || self.sms.is_some();
        if channel_on && self.public_base.is_none() {
            return Err(invalid(
                if self.email.is_some() { "email" } else { "sms" },
                "a channel needs the server's public URL: start it with --base-url",
            ));
        }
        if let Some(reminders) = &self.reminders {
            reminders.check(self)?;
        }
        self.secure.check()
    }

    /// The settings as an admin reads them: secrets hidden.
    pub fn shown(&self) -> Value {
        let mut shown = self.clone();
        if let Some(email) = &mut shown.email
            && email.password.is_some()
        {
            email.password = Some(HIDDEN.into());
        }
        if let Some(sms) = &mut shown.sms {
            sms.auth_token = HIDDEN.into();
        }
        shown.link_key = None;
        serde_json::to_value(shown).unwrap_or_default()
    }

    /// Keeps the stored secrets where the new settings repeat [`HIDDEN`] (an admin who
    /// read the settings, changed one thing and wrote them back).
    pub fn keep_secrets(&mut self, stored: &MessagingSettings) {
        self.link_key = stored
            .link_key
            .clone()
            .or_else(|| Some(super::links::new_key()));
        if let (Some(email), Some(old)) = (&mut self.email, &stored.email)
            && email.password.as_deref() == Some(HIDDEN)
        {
            email.password = old.password.clone();
        }
        if let (Some(sms), Some(old)) = (&mut self.sms, &stored.sms)
            && sms.auth_token == HIDDEN
        {
            sms.auth_token = old.auth_token.clone();
        }
    }
}

impl ReminderPolicy {
    /// The channels to try for `patient`, in order: the policy's, or, with
    /// `patient_preference`, by the rank of the patient's address for each (a channel
    /// without an address last), the policy's order breaking ties.
    pub fn channels_for(&self, patient: Option<&Value>) -> Vec<String> {
        let mut channels = self.channels.clone();
        if self.patient_preference {
            channels.sort_by_key(|channel| {
                super::outbound::rank_for(patient, channel).map_or((1, 0), |rank| (0, rank))
            });
        }
        channels
    }

    fn check(&self, settings: &MessagingSettings) -> Result<(), FhirError> {
        if self.before_hours.is_empty() || self.before_hours.len() > 5 {
            return Err(invalid("reminders.before_hours", "one to five reminders"));
        }
        if self.before_hours.iter().any(|h| *h == 0 || *h > 24 * 30) {
            return Err(invalid(
                "reminders.before_hours",
                "each between 1 and 720 hours before the visit",
            ));
        }
        for (n, channel) in self.channels.iter().enumerate() {
            let configured = match channel.as_str() {
                "email" => settings.email.is_some(),
                "sms" | "voice" => settings.sms.is_some(),
                _ => {
                    return Err(invalid(&format!("reminders.channels[{n}]"), "email or sms"));
                }
            };
            if !configured {
                return Err(invalid(
                    &format!("reminders.channels[{n}]"),
                    format!("the {channel} channel is not set up"),
                ));
            }
        }
        if let Some(quiet) = &self.quiet_hours {
            for (field, value) in [("start", &quiet.start), ("end", &quiet.end)] {
                if minute_of_day(value).is_none() {
                    return Err(invalid(&format!("reminders.quiet_hours.{field}"), "HH:MM"));
                }
            }
        }
        if self.escalate_after_hours.is_some_and(|h| h == 0 || h > 72) {
            return Err(invalid(
                "reminders.escalate_after_hours",
                "between 1 and 72 hours",
            ));
        }
        if let Some(deadline) = &self.unconfirmed {
            if deadline.hours_before == 0 || deadline.hours_before > 720 {
                return Err(invalid(
                    "reminders.unconfirmed.hours_before",
                    "between 1 and 720 hours before the visit",
                ));
            }
            if !matches!(deadline.action.as_str(), "task" | "release") {
                return Err(invalid("reminders.unconfirmed.action", "task or release"));
            }
        }
        if !matches!(self.detail.as_str(), "time" | "time-and-place") {
            return Err(invalid("reminders.detail", "time or time-and-place"));
        }
        if !self.templates.contains_key("en") {
            return Err(invalid(
                "reminders.templates",
                "an `en` template is required",
            ));
        }
        for (language, template) in &self.templates {
            let voice = template.voice.as_ref().unwrap_or(&template.text);
            for (part, text) in [
                ("subject", &template.subject),
                ("text", &template.text),
                ("voice", voice),
            ] {
                let field = format!("reminders.templates.{language}.{part}");
                if text.is_empty() || text.len() > 2000 {
                    return Err(invalid(&field, "1 to 2000 characters"));
                }
                if let Some(unknown) = unknown_placeholder(text, &self.detail) {
                    return Err(invalid(
                        &field,
                        format!("no placeholder {{{unknown}}} here"),
                    ));
                }
            }
        }
        Ok(())
    }
}

/// The first `{name}` in `text` that is not a placeholder `detail` allows.
fn unknown_placeholder(text: &str, detail: &str) -> Option<String> {
    let mut rest = text;
    while let Some(open) = rest.find('{') {
        let after = &rest[open + 1..];
        let close = after.find('}')?;
        let name = &after[..close];
        let allowed = PLACEHOLDERS.contains(&name)
            && (detail == "time-and-place" || !matches!(name, "practitioner" | "location"));
        if !allowed {
            return Some(name.to_owned());
        }
        rest = &after[close + 1..];
    }
    None
}

/// A tenant's settings (the defaults: no channel, no reminders, when none were written).
pub async fn load(store: &Store, tenant: TenantId) -> Result<MessagingSettings, FhirError> {
    match store.auth_get(tenant, RecordKind::Setting, NAME, 0).await? {
        Some((body, _)) => serde_json::from_str(&body)
            .map_err(|e| FhirError::internal(format!("stored messaging settings: {e}"))),
        None => Ok(MessagingSettings {
            time_zone: default_time_zone(),
            ..MessagingSettings::default()
        }),
    }
}

/// Checks and stores a tenant's settings (secrets shown as [`HIDDEN`] are kept);
/// `public_base` is the tenant's public FHIR base, when the server has a public URL.
pub async fn save(
    store: &Store,
    tenant: TenantId,
    mut settings: MessagingSettings,
    public_base: Option<String>,
) -> Result<MessagingSettings, FhirError> {
    settings.keep_secrets(&load(store, tenant).await?);
    settings.public_base = public_base;
    settings.check()?;
    let body = serde_json::to_string(&settings).map_err(FhirError::internal)?;
    store
        .auth_put(tenant, RecordKind::Setting, NAME, &body, None)
        .await?;
    Ok(settings)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_patients_best_ranked_address_orders_the_channels_when_the_policy_says_so() {
        let mut policy: ReminderPolicy = serde_json::from_value(serde_json::json!({
            "before_hours": [24], "channels": ["voice", "sms", "email"],
            "templates": {"en": {"subject": "s", "text": "t"}}}))
        .unwrap();
        let patient = serde_json::json!({"resourceType": "Patient", "telecom": [
            {"system": "phone", "use": "home", "value": "+15555550100", "rank": 3},
            {"system": "email", "value": "ana@example.org", "rank": 1}]});
        assert_eq!(
            policy.channels_for(Some(&patient)),
            ["voice", "sms", "email"]
        );
        policy.patient_preference = true;
        // email (rank 1), voice (the home phone, rank 3), then sms, which nothing reaches.
        assert_eq!(
            policy.channels_for(Some(&patient)),
            ["email", "voice", "sms"]
        );
        assert_eq!(policy.channels_for(None), ["voice", "sms", "email"]);
    }

    #[test]
    fn templates_say_only_what_the_practice_allows() {
        assert_eq!(
            unknown_placeholder("Hi {patient}, {date} {time}", "time"),
            None
        );
        assert_eq!(
            unknown_placeholder("with {practitioner}", "time").as_deref(),
            Some("practitioner")
        );
        assert_eq!(
            unknown_placeholder("with {practitioner}", "time-and-place"),
            None
        );
        assert_eq!(
            unknown_placeholder("for {reason}", "time-and-place").as_deref(),
            Some("reason")
        );
    }

    #[test]
    fn quiet_hours_are_clock_times() {
        assert_eq!(minute_of_day("21:30"), Some(21 * 60 + 30));
        assert_eq!(minute_of_day("24:00"), None);
        assert_eq!(minute_of_day("9:00"), None);
    }
}
