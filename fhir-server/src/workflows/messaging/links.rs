//! Links in messages that confirm or cancel a visit: signed (HMAC-SHA256 with the tenant's
//! link key), expiring (at the visit's start) and single-use (the first use is recorded;
//! another is refused). A link opens a page that asks (`GET`, which mail scanners may
//! fetch without meaning it) and acts only on the button (`POST`).
//!
//! A token is `{payload}.{mac}`, both base64url: the payload is
//! `{appointment}|{action}|{expires, Unix seconds}|{nonce}`.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use hmac::{Hmac, KeyInit, Mac};
use serde_json::json;
use sha2::Sha256;

use super::replies::confirm;
use crate::app::App;
use crate::error::FhirError;
use crate::ids::TenantId;
use crate::resource::parse_instant;
use crate::store::auth::RecordKind;
use crate::workflows::records;

/// What a link does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    pub appointment: String,
    /// `confirm` or `cancel`; `call` (a call's keys), `move` (a call's offer of a time),
    /// `book1`, `book2`, ... (an offer's times after a release).
    pub action: String,
    /// When it stops working (Unix seconds): the visit's start.
    pub expires: i64,
    /// Makes each link its own (the message's key), so that using one leaves the others.
    pub nonce: String,
}

/// Why a link does nothing.
#[derive(Debug, PartialEq, Eq)]
pub enum Refused {
    /// Not one of ours (bad shape or signature).
    Forged,
    Expired,
    Used,
    /// The visit is no longer booked at that time.
    Changed,
}

/// A new random key (two version 4 UUIDs: 244 random bits).
pub fn new_key() -> String {
    format!(
        "{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    )
}

fn mac(key: &str, payload: &str) -> Hmac<Sha256> {
    let mut mac = Hmac::<Sha256>::new_from_slice(key.as_bytes())
        .unwrap_or_else(|_| unreachable!("HMAC takes a key of any length"));
    mac.update(payload.as_bytes());
    mac
}

/// The token of `link`.
pub fn token(key: &str, link: &Link) -> String {
    let payload = format!(
        "{}|{}|{}|{}",
        link.appointment, link.action, link.expires, link.nonce
    );
    let signature = mac(key, &payload).finalize().into_bytes();
    format!("{}.{}", B64.encode(payload), B64.encode(signature))
}

/// The link a token stands for, if it is ours and not expired at `now` (Unix seconds).
pub fn open(key: &str, token: &str, now: i64) -> Result<Link, Refused> {
    let (payload, signature) = token.split_once('.').ok_or(Refused::Forged)?;
    let payload = B64.decode(payload).map_err(|_| Refused::Forged)?;
    let signature = B64.decode(signature).map_err(|_| Refused::Forged)?;
    let payload = String::from_utf8(payload).map_err(|_| Refused::Forged)?;
    mac(key, &payload)
        .verify_slice(&signature)
        .map_err(|_| Refused::Forged)?;
    let parts: Vec<&str> = payload.split('|').collect();
    let [appointment, action, expires, nonce] = parts.as_slice() else {
        return Err(Refused::Forged);
    };
    let expires: i64 = expires.parse().map_err(|_| Refused::Forged)?;
    if now >= expires {
        return Err(Refused::Expired);
    }
    Ok(Link {
        appointment: (*appointment).to_owned(),
        action: (*action).to_owned(),
        expires,
        nonce: (*nonce).to_owned(),
    })
}

/// Uses `link` up: whether this is its first use.
async fn first_use(app: &App, tenant: TenantId, link: &Link) -> Result<bool, FhirError> {
    let used = format!("{}|{}", link.nonce, link.action);
    Ok(app
        .store
        .auth_insert_new(
            tenant,
            RecordKind::LinkUsed,
            &used,
            &json!({}).to_string(),
            Some(link.expires),
        )
        .await?)
}

/// Does what `link` says, once: the text to show.
pub async fn act(
    app: &App,
    tenant: TenantId,
    link: &Link,
) -> Result<Result<String, Refused>, FhirError> {
    // `book{n}`: the nth time of an offer after a release (the nonce is the offer).
    if let Some(n) = link.action.strip_prefix("book") {
        if !first_use(app, tenant, link).await? {
            return Ok(Err(Refused::Used));
        }
        let n = n.parse().unwrap_or_default();
        return Ok(Ok(super::reoffer::take(app, tenant, &link.nonce, n).await?));
    }
    let Some(mut visit) = records::read(app, tenant, "Appointment", &link.appointment).await?
    else {
        return Ok(Err(Refused::Changed));
    };
    let start = visit["start"]
        .as_str()
        .and_then(parse_instant)
        .map(|s| s / 1_000_000);
    if visit["status"] != "booked" || start != Some(link.expires) {
        return Ok(Err(Refused::Changed));
    }
    if !first_use(app, tenant, link).await? {
        return Ok(Err(Refused::Used));
    }
    let when = visit["start"].as_str().unwrap_or_default().to_owned();
    match link.action.as_str() {
        "confirm" => {
            if let Some(patient) = crate::workflows::scheduling::patient_of(&visit) {
                confirm(&mut visit, &patient);
            }
            records::replace(app, tenant, visit).await?;
            Ok(Ok(format!("Thank you: your visit on {when} is confirmed.")))
        }
        _ => {
            visit["status"] = json!("cancelled");
            visit["cancelationReason"] =
                json!({"text": "cancelled by the patient (link in a message)"});
            records::replace(app, tenant, visit).await?;
            Ok(Ok(format!("Your visit on {when} is cancelled.")))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn link() -> Link {
        Link {
            appointment: "a1".into(),
            action: "confirm".into(),
            expires: 2_000,
            nonce: "job7".into(),
        }
    }

    #[test]
    fn a_link_opens_with_its_key_until_it_expires() {
        let token = token("k1", &link());
        assert_eq!(open("k1", &token, 1_000), Ok(link()));
        assert_eq!(open("k1", &token, 2_000), Err(Refused::Expired));
        assert_eq!(open("k2", &token, 1_000), Err(Refused::Forged));
        let (payload, signature) = token.split_once('.').unwrap();
        let other = B64.encode("a2|cancel|2000|job7");
        assert_eq!(
            open("k1", &format!("{other}.{signature}"), 1_000),
            Err(Refused::Forged)
        );
        assert_eq!(open("k1", payload, 1_000), Err(Refused::Forged));
        assert_eq!(open("k1", "", 1_000), Err(Refused::Forged));
    }
}
