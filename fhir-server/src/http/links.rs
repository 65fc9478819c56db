//! The page a link in a message opens, `{base}/messaging/link?t=TOKEN`
//! (`workflows::messaging::links`): `GET` asks ("Confirm your visit on ...?") with one
//! button, and only the button's `POST` acts, so a mail scanner that fetches the link
//! changes nothing. A forged token is 400, an expired or used one 410, a visit that moved
//! or was cancelled 409: each a page that says so and gives the front desk number.

use axum::extract::{Request, State};
use axum::http::{Method, StatusCode};
use axum::response::Response;

use super::auth::pages::{escape, hidden, page};
use super::auth::{field, form, split, tenant_of};
use crate::app::SharedApp;
use crate::workflows::messaging::links::{self, Refused};
use crate::workflows::messaging::settings;

const TITLE: &str = "Your visit";

pub async fn handle(State(app): State<SharedApp>, request: Request) -> Response {
    let method = request.method().clone();
    let (path, headers, body, query) = split(request);
    let Ok(tenant) = tenant_of(&app, &headers, &path).await else {
        return say(StatusCode::NOT_FOUND, "This link is not known here.");
    };
    let Ok(settings) = settings::load(&app.store, tenant.id).await else {
        return say(StatusCode::SERVICE_UNAVAILABLE, "Please try again later.");
    };
    let desk = settings
        .sms
        .as_ref()
        .and_then(|s| s.front_desk.clone())
        .map(|n| format!(" Please call {n}."))
        .unwrap_or_default();
    let pairs: Vec<(String, String)> = match method {
        Method::POST => form(body).await.unwrap_or_default(),
        _ => form_urlencoded::parse(query.unwrap_or_default().as_bytes())
            .into_owned()
            .collect(),
    };
    let token = field(&pairs, "t").unwrap_or_default().to_owned();
    let now = crate::clock::now_seconds();
    let opened = settings
        .link_key
        .as_deref()
        .ok_or(Refused::Forged)
        .and_then(|key| links::open(key, &token, now));
    let link = match opened {
        Ok(link) => link,
        Err(refused) => return refusal(&refused, &desk),
    };
    if method != Method::POST {
        let (question, button) = match link.action.as_str() {
            "confirm" => ("Confirm your visit?", "Confirm"),
            action if action.starts_with("book") => ("Book this time?", "Book"),
            _ => ("Cancel your visit?", "Cancel the visit"),
        };
        let body = format!(
            "<p>{}</p><form method=\"post\">{}<button type=\"submit\" id=\"go\">{}</button></form>",
            escape(question),
            hidden(&[("t".to_owned(), token)]),
            button,
        );
        return page(StatusCode::OK, TITLE, &body, None, None);
    }
    match links::act(&app, tenant.id, &link).await {
        Ok(Ok(done)) => say(StatusCode::OK, &done),
        Ok(Err(refused)) => refusal(&refused, &desk),
        Err(_) => say(StatusCode::SERVICE_UNAVAILABLE, "Please try again later."),
    }
}

fn refusal(refused: &Refused, desk: &str) -> Response {
    let (status, text) = match refused {
        Refused::Forged => (StatusCode::BAD_REQUEST, "This link is not valid."),
        Refused::Expired => (StatusCode::GONE, "This link has expired."),
        Refused::Used => (StatusCode::GONE, "This link was used already."),
        Refused::Changed => (
            StatusCode::CONFLICT,
            "This visit has changed since the message was sent.",
        ),
    };
    say(status, &format!("{text}{desk}"))
}

fn say(status: StatusCode, text: &str) -> Response {
    page(
        status,
        TITLE,
        &format!("<p id=\"said\">{}</p>", escape(text)),
        None,
        None,
    )
}
