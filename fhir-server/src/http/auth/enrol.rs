//! TOTP enrolment on the login flow: a user who must use a second factor and has none yet
//! gets, after the password, a new secret (as text and as an `otpauth://` URI for an
//! authenticator app) and enters its first code; only then is the secret kept and the
//! flow goes on to consent. The secret rides in a hidden field signed with the flow (the
//! same HMAC as the CSRF token), so the page cannot swap in one of its own.

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::StatusCode;
use axum::response::Response;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;

use super::authorize::{Step, consent_page, posted};
use super::field;
use super::pages::{self, escape, hidden};
use crate::app::SharedApp;
use crate::auth::accounts::{self, User};
use crate::clock::now_seconds;

/// How long the enrolment page may be answered.
const ENROL_SECONDS: i64 = 600;

fn subject(flow: &str, username: &str, secret: &str, expires: i64) -> String {
    format!("enrol\n{flow}\n{username}\n{secret}\n{expires}")
}

/// The enrolment page, with a new secret.
pub(super) fn page(
    step: &Step,
    flow: &str,
    key: &[u8],
    user: &User,
    message: Option<&str>,
) -> Response {
    let Ok(secret) = smart_auth::totp::new_secret() else {
        return pages::error(StatusCode::SERVICE_UNAVAILABLE, "Try again later");
    };
    let encoded = STANDARD.encode(&secret);
    let expires = now_seconds() + ENROL_SECONDS;
    let ticket = smart_auth::csrf::token(key, &subject(flow, &user.username, &encoded, expires));
    let uri = smart_auth::totp::enrolment_uri(&secret, "fhir-server", &user.username);
    let error = message
        .map(|m| format!("<p class=\"error\">{}</p>", escape(m)))
        .unwrap_or_default();
    let body = format!(
        "<p>Your account needs an authenticator app. Add this account to it, then enter the \
         code it shows.</p>{error}<p><code id=\"otpauth\">{uri}</code></p>\
         <form method=\"post\" action=\"enrol\">{hidden}\
         <input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\
         <input type=\"hidden\" name=\"username\" value=\"{username}\">\
         <input type=\"hidden\" name=\"totp_secret\" value=\"{encoded}\">\
         <input type=\"hidden\" name=\"expires\" value=\"{expires}\">\
         <input type=\"hidden\" name=\"ticket\" value=\"{ticket}\">\
         <label>Code <input type=\"text\" name=\"code\" inputmode=\"numeric\" autocomplete=\"one-time-code\" required></label>\
         <button type=\"submit\">Confirm</button></form>",
        uri = escape(&uri),
        hidden = hidden(&step.carried),
        csrf = smart_auth::csrf::token(key, flow),
        username = escape(&user.username),
    );
    pages::page(
        StatusCode::OK,
        "Set up your authenticator",
        &body,
        None,
        None,
    )
}

/// `POST /auth/enrol`: the ticket holds and the code is right for the secret; the secret
/// is kept and the flow goes on to consent.
pub async fn confirm(
    State(app): State<SharedApp>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    request: Request,
) -> Response {
    let (step, key, flow) = match posted(&app, peer, request).await {
        Ok(posted) => posted,
        Err(response) => return response,
    };
    let username = field(&step.pairs, "username").unwrap_or_default();
    let encoded = field(&step.pairs, "totp_secret").unwrap_or_default();
    let expires: i64 = field(&step.pairs, "expires")
        .and_then(|e| e.parse().ok())
        .unwrap_or(0);
    let signed = smart_auth::csrf::verify(
        &key,
        &subject(&flow, username, encoded, expires),
        field(&step.pairs, "ticket"),
    );
    if !signed || expires <= now_seconds() {
        return pages::error(
            StatusCode::FORBIDDEN,
            "The enrolment has expired; start again from the app",
        );
    }
    let user = match accounts::user(&app.store, step.tenant.id, username).await {
        Ok(Some(user)) if user.totp_secret.is_none() => user,
        _ => return pages::error(StatusCode::FORBIDDEN, "This enrolment is no longer open"),
    };
    let Ok(secret) = STANDARD.decode(encoded) else {
        return pages::error(StatusCode::BAD_REQUEST, "The enrolment form is damaged");
    };
    let now = u64::try_from(now_seconds()).unwrap_or_default();
    let code = field(&step.pairs, "code").unwrap_or_default();
    let Some(step_used) = smart_auth::totp::check(&secret, code, now, None) else {
        return page(
            &step,
            &flow,
            &key,
            &user,
            Some("That code is not right; try the next one"),
        );
    };
    let enrolled = User {
        totp_secret: Some(encoded.to_owned()),
        totp_last_step: Some(step_used),
        ..user
    };
    if accounts::put_user(&app.store, step.tenant.id, &enrolled)
        .await
        .is_err()
    {
        return pages::error(StatusCode::SERVICE_UNAVAILABLE, "Try again later");
    }
    consent_page(&step, &flow, &key, &enrolled).await
}
