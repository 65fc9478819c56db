//! Twilio's webhooks, `{base}/messaging/twilio/sms` (a patient's reply),
//! `{base}/messaging/twilio/voice` (a call: a reminder's keys, or the IVR line) and
//! `{base}/messaging/twilio/status` (a delivery report): each must carry a valid
//! `X-Twilio-Signature` of the tenant's account over the public URL Twilio was given
//! (`public_base` in the messaging settings) and the POST parameters, or it is refused
//! (403) having done nothing. An SMS is answered with TwiML.

use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::http::header::CONTENT_TYPE;
use axum::response::{IntoResponse, Response};

use super::auth::{field, form, split, tenant_of};
use crate::app::{App, SharedApp};
use crate::channels::twilio::twiml_message;
use crate::error::FhirError;
use crate::http::encode_error;
use crate::rest::format::Format;
use crate::workflows::messaging::{replies, settings, voice};

pub async fn handle(State(app): State<SharedApp>, request: Request) -> Response {
    match answer(&app, request).await {
        Ok(twiml) => ([(CONTENT_TYPE, "text/xml; charset=utf-8")], twiml).into_response(),
        Err(error) => encode_error(&error, Format::default()),
    }
}

async fn answer(app: &App, request: Request) -> Result<String, FhirError> {
    let (path, headers, body, query) = split(request);
    let tenant = tenant_of(app, &headers, &path).await?;
    let settings = settings::load(&app.store, tenant.id).await?;
    let (Some(sms), Some(base)) = (&settings.sms, &settings.public_base) else {
        return Err(FhirError::not_found("This tenant has no SMS channel"));
    };
    let params = form(body).await.map_err(FhirError::bad_request)?;
    let hook = path.rsplit('/').next().unwrap_or_default();
    let mut url = format!("{base}/messaging/twilio/{hook}");
    if let Some(query) = &query {
        url = format!("{url}?{query}");
    }
    let signed = headers
        .get("x-twilio-signature")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|given| {
            crate::channels::twilio::is_signed(&sms.auth_token, &url, &params, given)
        });
    if !signed {
        return Err(FhirError::new(
            StatusCode::FORBIDDEN,
            "security",
            "The request is not signed by this tenant's Twilio account (X-Twilio-Signature)",
        ));
    }
    let from = field(&params, "From").unwrap_or_default();
    let text = match hook {
        "sms" => {
            let body = field(&params, "Body").unwrap_or_default();
            replies::sms_received(app, tenant.id, &settings, (from, body)).await?
        }
        "voice" => {
            let pairs: Vec<(String, String)> =
                form_urlencoded::parse(query.unwrap_or_default().as_bytes())
                    .into_owned()
                    .collect();
            let call = voice::Call {
                from,
                digits: field(&params, "Digits"),
                token: field(&pairs, "r"),
            };
            return voice::answer(app, tenant.id, &settings, &call).await;
        }
        "status" => {
            // A message's report, or a call's.
            let (sid, status) = match field(&params, "CallSid") {
                Some(call) => (call, field(&params, "CallStatus").unwrap_or_default()),
                None => (
                    field(&params, "MessageSid").unwrap_or_default(),
                    field(&params, "MessageStatus").unwrap_or_default(),
                ),
            };
            replies::delivery_report(app, tenant.id, (sid, status)).await?;
            String::new()
        }
        _ => return Err(FhirError::not_found("No such webhook")),
    };
    Ok(twiml_message(&text))
}
