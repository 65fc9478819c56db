//! SMS through a Twilio-compatible REST API (Twilio, or a gateway that speaks its
//! Messages API), and the signatures of its webhooks.
//!
//! A message is `POST {api_url}/2010-04-01/Accounts/{account_sid}/Messages.json` (To,
//! From, Body, StatusCallback) with HTTP Basic auth; its SID comes back. The message's key
//! goes as `I-Twilio-Idempotency-Token`, so a gateway that honours it can drop a repeat.
//! Webhooks (replies, delivery reports, calls) carry `X-Twilio-Signature`: the base64
//! HMAC-SHA1, keyed by the auth token, of the URL Twilio called followed by each POST
//! parameter's name and value, sorted by name.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use hmac::{Hmac, KeyInit, Mac};
use serde::{Deserialize, Serialize};
use sha1::Sha1;

use super::http::{is_fetchable, post_form};
use super::{Channel, Failure, Outgoing, Receipt};

/// A tenant's Twilio account (or compatible gateway).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TwilioChannel {
    #[serde(default = "default_api_url")]
    pub api_url: String,
    pub account_sid: String,
    pub auth_token: String,
    /// The number messages come from (E.164).
    pub from: String,
    /// The practice's front desk (E.164): where unknown callers and questions go.
    #[serde(default)]
    pub front_desk: Option<String>,
}

fn default_api_url() -> String {
    "https://api.twilio.com".into()
}

/// Whether `number` is an E.164 phone number (`+` and 8 to 15 digits).
pub fn is_e164(number: &str) -> bool {
    number.strip_prefix('+').is_some_and(|digits| {
        (8..=15).contains(&digits.len()) && digits.bytes().all(|b| b.is_ascii_digit())
    })
}

impl TwilioChannel {
    /// Checks the settings; the bad field and why.
    pub fn check(&self) -> Result<(), (&'static str, &'static str)> {
        if !is_fetchable(&self.api_url) {
            return Err(("api_url", "an https URL (or http to this machine)"));
        }
        let plain = |text: &str| {
            !text.is_empty() && text.len() <= 64 && text.bytes().all(|b| b.is_ascii_alphanumeric())
        };
        if !plain(&self.account_sid) {
            return Err(("account_sid", "1 to 64 letters and digits"));
        }
        if !plain(&self.auth_token) {
            return Err(("auth_token", "1 to 64 letters and digits"));
        }
        if !is_e164(&self.from) {
            return Err(("from", "an E.164 number (+15551230000)"));
        }
        if self.front_desk.as_deref().is_some_and(|n| !is_e164(n)) {
            return Err(("front_desk", "an E.164 number (+15551230000)"));
        }
        Ok(())
    }
}

/// The HMAC Twilio computes over a webhook to `url` with POST `params`.
fn mac_of(auth_token: &str, url: &str, params: &[(String, String)]) -> Option<Hmac<Sha1>> {
    let mut sorted: Vec<&(String, String)> = params.iter().collect();
    sorted.sort();
    let mut mac = Hmac::<Sha1>::new_from_slice(auth_token.as_bytes()).ok()?;
    mac.update(url.as_bytes());
    for (name, value) in sorted {
        mac.update(name.as_bytes());
        mac.update(value.as_bytes());
    }
    Some(mac)
}

/// The signature Twilio puts on a webhook to `url` with POST `params`.
pub fn signature(auth_token: &str, url: &str, params: &[(String, String)]) -> String {
    mac_of(auth_token, url, params)
        .map(|mac| BASE64.encode(mac.finalize().into_bytes()))
        .unwrap_or_default()
}

/// Whether `given` is the signature of the webhook (compared in constant time).
pub fn is_signed(auth_token: &str, url: &str, params: &[(String, String)], given: &str) -> bool {
    let (Ok(given), Some(mac)) = (BASE64.decode(given), mac_of(auth_token, url, params)) else {
        return false;
    };
    mac.verify_slice(&given).is_ok()
}

/// `&`, `<`, `>`, `"` and `'` escaped for XML.
fn xml(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&apos;")
}

/// A TwiML document around `verbs`.
pub fn twiml(verbs: &str) -> String {
    format!(r#"<?xml version="1.0" encoding="UTF-8"?><Response>{verbs}</Response>"#)
}

/// TwiML that sends `text` back as an SMS (nothing when it is empty).
pub fn twiml_message(text: &str) -> String {
    match text.is_empty() {
        true => twiml(""),
        false => twiml(&format!("<Message>{}</Message>", xml(text))),
    }
}

/// `<Say>` of `text`.
pub fn say(text: &str) -> String {
    format!("<Say>{}</Say>", xml(text))
}

/// Says `prompt` and sends the one key pressed to `action`; says goodbye when none is.
pub fn gather(prompt: &str, action: &str) -> String {
    format!(
        r#"<Gather numDigits="1" timeout="8" action="{}" method="POST">{}</Gather>{}"#,
        xml(action),
        say(prompt),
        say("Goodbye.")
    )
}

/// Puts the caller through to `number` (or says whom to call, without one).
pub fn dial(number: Option<&str>) -> String {
    match number {
        Some(number) => format!(
            "{}<Dial>{}</Dial>",
            say("Connecting you to the front desk."),
            xml(number)
        ),
        None => say("Please call the practice. Goodbye."),
    }
}

/// The voice channel of one account: a call that says the message and waits for a key
/// (sent to the message's `reply_to`).
pub struct Voice {
    pub settings: TwilioChannel,
}

impl Channel for Voice {
    fn name(&self) -> &'static str {
        "voice"
    }

    async fn send(&self, message: &Outgoing) -> Result<Receipt, Failure> {
        let verbs = match &message.reply_to {
            Some(action) => gather(&message.text, action),
            None => say(&message.text),
        };
        post_to(
            &self.settings,
            "Calls",
            message,
            &[("Twiml", &twiml(&verbs))],
        )
        .await
    }
}

/// Creates a message or a call (`resource`: `Messages`, `Calls`) with `extra` parameters.
async fn post_to(
    s: &TwilioChannel,
    resource: &str,
    message: &Outgoing,
    extra: &[(&str, &str)],
) -> Result<Receipt, Failure> {
    let url = format!(
        "{}/2010-04-01/Accounts/{}/{resource}.json",
        s.api_url.trim_end_matches('/'),
        s.account_sid
    );
    let mut form = vec![("To", message.to.as_str()), ("From", s.from.as_str())];
    form.extend_from_slice(extra);
    if let Some(callback) = &message.callback {
        form.push(("StatusCallback", callback));
    }
    let headers = [("I-Twilio-Idempotency-Token", message.key.as_str())];
    match post_form(&url, (&s.account_sid, &s.auth_token), &headers, &form).await {
        Ok(body) => {
            let answer: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
            Ok(answer["sid"].as_str().unwrap_or_default().to_owned())
        }
        // A refusal of the message itself (a bad or unsubscribed number) will not pass on
        // a retry; throttling and the gateway's own failures may.
        Err(failed) => match failed.status {
            Some(status) if status.is_client_error() && status.as_u16() != 429 => {
                Err(Failure::Permanent(format!("{status}: {}", failed.detail)))
            }
            _ => Err(Failure::Transient(failed.detail)),
        },
    }
}

/// The SMS channel of one account.
pub struct Sms {
    pub settings: TwilioChannel,
}

impl Channel for Sms {
    fn name(&self) -> &'static str {
        "sms"
    }

    async fn send(&self, message: &Outgoing) -> Result<Receipt, Failure> {
        post_to(
            &self.settings,
            "Messages",
            message,
            &[("Body", &message.text)],
        )
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The example of Twilio's request-validation snippets (auth token 12345).
    #[test]
    fn signs_as_twilio_does() {
        let params: Vec<(String, String)> = [
            ("CallSid", "CA1234567890ABCDE"),
            ("Caller", "+14158675310"),
            ("Digits", "1234"),
            ("From", "+14158675310"),
            ("To", "+18005551212"),
        ]
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
        let url = "https://mycompany.com/myapp.php?foo=1&bar=2";
        let expected = "GvWf1cFY/Q7PnoempGyD5oXAezc=";
        assert_eq!(signature("12345", url, &params), expected);
        assert!(is_signed("12345", url, &params, expected));
        assert!(!is_signed(
            "12345",
            "https://mycompany.com/other",
            &params,
            expected
        ));
        assert!(!is_signed("12345", url, &params, "not base64!"));
    }

    #[test]
    fn answers_are_escaped_twiml() {
        assert_eq!(
            twiml_message("a < b & c"),
            r#"<?xml version="1.0" encoding="UTF-8"?><Response><Message>a &lt; b &amp; c</Message></Response>"#
        );
        assert!(twiml_message("").ends_with("<Response></Response>"));
        assert!(
            gather("Press 1", "https://x/voice?r=a&b")
                .contains(r#"action="https://x/voice?r=a&amp;b""#)
        );
    }

    #[test]
    fn phone_numbers_are_e164() {
        assert!(is_e164("+15551230000"));
        assert!(!is_e164("5551230000"));
        assert!(!is_e164("+1 555 123"));
    }
}
