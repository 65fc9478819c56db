//! `{base}/auth/reset?token=...`: the one-time password reset link that
//! `fhir-server user reset-password` prints (valid 24 hours). The page asks for the new
//! password (the policy applies); posting it uses the link up, sets the password and
//! lifts a lockout.

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde_json::Value;

use super::authorize::{flow_cookie, flow_set_cookie, page_secret};
use super::pages::{self, escape};
use super::{field, form, split, tenant_of};
use crate::app::SharedApp;
use crate::auth::accounts;
use crate::clock::now_seconds;
use crate::store::auth::RecordKind;

/// `GET /auth/reset?token=...`: the form, if the link is still good.
pub async fn show(
    State(app): State<SharedApp>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    request: Request,
) -> Response {
    let (path, headers, _, query) = split(request);
    let Ok(tenant) = tenant_of(&app, &headers, &path).await else {
        return pages::error(StatusCode::NOT_FOUND, "Unknown tenant");
    };
    let pairs: Vec<(String, String)> = query
        .map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect())
        .unwrap_or_default();
    let token = field(&pairs, "token").unwrap_or_default();
    let key = smart_auth::sha256_hex(token);
    let open = matches!(
        app.store
            .auth_get(tenant.id, RecordKind::Reset, &key, now_seconds())
            .await,
        Ok(Some((_, false)))
    );
    if !open {
        return pages::error(
            StatusCode::NOT_FOUND,
            "This reset link is unknown, used or expired",
        );
    }
    let (Ok(secret), Ok(flow)) = (page_secret(&app).await, smart_auth::random_token()) else {
        return pages::error(StatusCode::SERVICE_UNAVAILABLE, "Try again later");
    };
    let origin = crate::auth::proxies::origin(
        peer.ip(),
        &headers,
        &app.trusted_proxies,
        app.config.tls_cert.is_some(),
    );
    let cookie = flow_set_cookie(
        &flow,
        origin.https
            || app
                .config
                .base_url
                .as_deref()
                .is_some_and(|u| u.starts_with("https://")),
    );
    let body = format!(
        "<form method=\"post\" action=\"reset\">\
         <input type=\"hidden\" name=\"token\" value=\"{token}\">\
         <input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\
         <label>New password (10 characters or more) <input type=\"password\" name=\"password\" autocomplete=\"new-password\" required></label>\
         <button type=\"submit\">Set password</button></form>",
        token = escape(token),
        csrf = smart_auth::csrf::token(&secret, &flow),
    );
    pages::page(
        StatusCode::OK,
        "Choose a new password",
        &body,
        None,
        Some(&cookie),
    )
}

/// `POST /auth/reset`: CSRF, the policy, then the link is used up and the password set.
pub async fn change(State(app): State<SharedApp>, request: Request) -> Response {
    let (path, headers, body, _) = split(request);
    let Ok(tenant) = tenant_of(&app, &headers, &path).await else {
        return pages::error(StatusCode::NOT_FOUND, "Unknown tenant");
    };
    let Ok(pairs) = form(body).await else {
        return pages::error(StatusCode::BAD_REQUEST, "The form is too large");
    };
    let Ok(secret) = page_secret(&app).await else {
        return pages::error(StatusCode::SERVICE_UNAVAILABLE, "Try again later");
    };
    let flow = flow_cookie(&headers).unwrap_or_default();
    if flow.is_empty() || !smart_auth::csrf::verify(&secret, &flow, field(&pairs, "csrf")) {
        return pages::error(
            StatusCode::FORBIDDEN,
            "The form's CSRF token is missing or wrong",
        );
    }
    let key = smart_auth::sha256_hex(field(&pairs, "token").unwrap_or_default());
    let password = field(&pairs, "password").unwrap_or_default().to_owned();
    let now = now_seconds();
    let Ok(Some((body, false))) = app
        .store
        .auth_get(tenant.id, RecordKind::Reset, &key, now)
        .await
    else {
        return pages::error(
            StatusCode::NOT_FOUND,
            "This reset link is unknown, used or expired",
        );
    };
    let username = serde_json::from_str::<Value>(&body)
        .ok()
        .and_then(|v| v["username"].as_str().map(str::to_owned))
        .unwrap_or_default();
    if let Err(policy) = smart_auth::password::check_policy(&password, &username) {
        return pages::error(
            StatusCode::BAD_REQUEST,
            &format!("{}; use the link again", policy.0),
        );
    }
    // Only the first of two posts of the same link gets past here.
    if !matches!(
        app.store
            .auth_take(tenant.id, RecordKind::Reset, &key, now)
            .await,
        Ok(Some(_))
    ) {
        return pages::error(
            StatusCode::NOT_FOUND,
            "This reset link is unknown, used or expired",
        );
    }
    let hashed = tokio::task::spawn_blocking(move || smart_auth::password::hash(&password)).await;
    let user = accounts::user(&app.store, tenant.id, &username).await;
    let (Ok(Ok(password_hash)), Ok(Some(user))) = (hashed, user) else {
        return pages::error(StatusCode::SERVICE_UNAVAILABLE, "Try again later");
    };
    let changed = accounts::User {
        password_hash,
        ..user
    };
    let saved = accounts::put_user(&app.store, tenant.id, &changed)
        .await
        .is_ok()
        && app
            .store
            .auth_delete_under(tenant.id, RecordKind::Failure, &username)
            .await
            .is_ok();
    if !saved {
        return pages::error(StatusCode::SERVICE_UNAVAILABLE, "Try again later");
    }
    pages::page(
        StatusCode::OK,
        "Password changed",
        "<p>Your password is changed. Sign in from your app again.</p>",
        None,
        None,
    )
}
