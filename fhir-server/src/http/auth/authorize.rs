//! `{base}/auth/authorize` by GET or form POST (SMART App Launch 2.x), then the login
//! page (`/auth/login`: password, TOTP when enrolled, lockout after 5 failures in 15
//! minutes) and the consent page (`/auth/consent`: untick scopes, pick the patient of a
//! standalone `launch/patient`), and the redirect back to the app with a code.
//!
//! The request's parameters ride along in hidden fields and are checked again at every
//! step (`smart_auth::authorize::check`), so nothing a page posts is trusted more than
//! the first request was. Every form carries a CSRF token bound to the browser's flow
//! cookie (`HttpOnly`, `SameSite=Lax`, `Secure` over HTTPS); the consent form also carries
//! a ticket, the HMAC of the signed-in user and its expiry, that only a login makes.

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::header::{COOKIE, LOCATION};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use smart_auth::authorize::{self, Accepted, Refused};
use smart_auth::scope::{Launch, Scope, Scopes};

use super::grants::{StoredCode, StoredGrant};
use super::launch::LaunchContext;
use super::pages::{self, escape, hidden};
use super::{Tenant, field, form, split, tenant_of};
use crate::app::{App, SharedApp};
use crate::auth::accounts::{self, User, origin_of};
use crate::clock::now_seconds;
use crate::http::audit::AuthNote;
use crate::store::auth::RecordKind;

pub(super) const FLOW_COOKIE: &str = "fhir_auth_flow";
/// Failed logins that lock an account, and the window they are counted in.
pub const LOCKOUT_FAILURES: i64 = 5;
pub const LOCKOUT_SECONDS: i64 = 15 * 60;
/// How long the consent page may be answered after a login.
const TICKET_SECONDS: i64 = 600;

/// The authorize parameters carried from page to page.
const CARRIED: &[&str] = &[
    "response_type",
    "client_id",
    "redirect_uri",
    "scope",
    "state",
    "aud",
    "launch",
    "code_challenge",
    "code_challenge_method",
    "nonce",
];

pub(super) struct Step {
    pub(super) tenant: Tenant,
    pub(super) accepted: Accepted,
    pub(super) carried: Vec<(String, String)>,
    pub(super) pairs: Vec<(String, String)>,
    pub(super) flow: Option<String>,
    pub(super) https: bool,
}

/// Reads a step's request and checks its authorize parameters again; the error answer
/// when they do not hold (shown, or redirected to the app once its URI is known good).
async fn step(app: &App, peer: SocketAddr, request: Request) -> Result<Step, Response> {
    let (path, headers, body, query) = split(request);
    let tenant = tenant_of(app, &headers, &path)
        .await
        .map_err(|_| pages::error(StatusCode::NOT_FOUND, "Unknown tenant"))?;
    let mut pairs: Vec<(String, String)> = query
        .map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect())
        .unwrap_or_default();
    pairs.extend(
        form(body)
            .await
            .map_err(|e| pages::error(StatusCode::BAD_REQUEST, &e))?,
    );
    let parsed = authorize::Request::from_pairs(&pairs)
        .map_err(|e| pages::error(StatusCode::BAD_REQUEST, &e))?;
    let client = match parsed.client_id.as_deref() {
        Some(id) => accounts::client(&app.store, tenant.id, id)
            .await
            .map_err(|_| pages::error(StatusCode::SERVICE_UNAVAILABLE, "Try again later"))?,
        None => None,
    };
    let allowed = client
        .as_ref()
        .map(|c| c.allowed_scopes())
        .unwrap_or_default();
    let known = client.as_ref().map(|c| authorize::Client {
        redirect_uris: &c.redirect_uris,
        allowed: &allowed,
    });
    let accepted =
        authorize::check(&parsed, known.as_ref(), &tenant.base).map_err(
            |refused| match refused {
                Refused::ToUser(message) => pages::error(StatusCode::BAD_REQUEST, &message),
                Refused::ToApp {
                    redirect_uri,
                    error,
                    description,
                    state,
                } => redirect(&smart_auth::redirect::with_error(
                    &redirect_uri,
                    error,
                    &description,
                    state.as_deref(),
                )),
            },
        )?;
    let carried = CARRIED
        .iter()
        .filter_map(|name| field(&pairs, name).map(|v| ((*name).to_owned(), v.to_owned())))
        .collect();
    let origin = crate::auth::proxies::origin(
        peer.ip(),
        &headers,
        &app.trusted_proxies,
        app.config.tls_cert.is_some(),
    );
    let https = origin.https
        || app
            .config
            .base_url
            .as_deref()
            .is_some_and(|u| u.starts_with("https://"));
    Ok(Step {
        tenant,
        accepted,
        carried,
        pairs,
        flow: flow_cookie(&headers),
        https,
    })
}

fn redirect(location: &str) -> Response {
    let mut response = StatusCode::FOUND.into_response();
    if let Ok(value) = HeaderValue::from_str(location) {
        response.headers_mut().insert(LOCATION, value);
    }
    response
}

/// The `Set-Cookie` of a new flow: `HttpOnly`, `SameSite=Lax`, and `Secure` over HTTPS.
pub(super) fn flow_set_cookie(flow: &str, https: bool) -> String {
    let secure = if https { "; Secure" } else { "" };
    format!("{FLOW_COOKIE}={flow}; Path=/; HttpOnly; SameSite=Lax; Max-Age=1800{secure}")
}

pub(super) fn flow_cookie(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == FLOW_COOKIE)
        .map(|(_, value)| value.to_owned())
        .filter(|value| !value.is_empty() && value.len() <= 64)
}

/// The secret of the pages' CSRF tokens and tickets: derived from the newest signing key,
/// so every server process has it and a key rotation renews it.
pub(super) async fn page_secret(app: &App) -> Result<Vec<u8>, Response> {
    let keys = app
        .auth
        .keys
        .keys(&app.store)
        .await
        .map_err(|_| pages::error(StatusCode::SERVICE_UNAVAILABLE, "Try again later"))?;
    let key = keys
        .first()
        .ok_or_else(|| pages::error(StatusCode::SERVICE_UNAVAILABLE, "Try again later"))?;
    let der = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, key.pkcs1_der());
    Ok(smart_auth::sha256_hex(&format!("fhir-server pages\n{der}")).into_bytes())
}

/// `GET|POST /auth/authorize`: the login page (a new flow cookie with its CSRF token).
pub async fn start(
    State(app): State<SharedApp>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    request: Request,
) -> Response {
    let step = match step(&app, peer, request).await {
        Ok(step) => step,
        Err(response) => return response,
    };
    let Ok(flow) = smart_auth::random_token() else {
        return pages::error(StatusCode::SERVICE_UNAVAILABLE, "Try again later");
    };
    login_page(&app, &step, &flow, None, true).await
}

async fn login_page(
    app: &App,
    step: &Step,
    flow: &str,
    message: Option<&str>,
    new_cookie: bool,
) -> Response {
    let secret = match page_secret(app).await {
        Ok(secret) => secret,
        Err(response) => return response,
    };
    let csrf = smart_auth::csrf::token(&secret, flow);
    let cookie = new_cookie.then(|| flow_set_cookie(flow, step.https));
    let error = message
        .map(|m| format!("<p class=\"error\">{}</p>", escape(m)))
        .unwrap_or_default();
    let body = format!(
        "<p>Sign in to let <strong>{client}</strong> use your data.</p>{error}\
         <form method=\"post\" action=\"login\">{hidden}\
         <input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\
         <label>Username <input type=\"text\" name=\"username\" autocomplete=\"username\" required></label>\
         <label>Password <input type=\"password\" name=\"password\" autocomplete=\"current-password\" required></label>\
         <label>Authenticator code (if enrolled) <input type=\"text\" name=\"totp\" inputmode=\"numeric\" autocomplete=\"one-time-code\"></label>\
         <button type=\"submit\">Sign in</button></form>",
        client = escape(&step.accepted.client_id),
        hidden = hidden(&step.carried),
    );
    pages::page(StatusCode::OK, "Sign in", &body, None, cookie.as_deref())
}

/// A posted page's step, once its flow cookie and CSRF token hold: the step, the pages'
/// secret and the flow id.
pub(super) async fn posted(
    app: &App,
    peer: SocketAddr,
    request: Request,
) -> Result<(Step, Vec<u8>, String), Response> {
    let step = step(app, peer, request).await?;
    let secret = page_secret(app).await?;
    let flow = step.flow.clone().ok_or_else(|| {
        pages::error(
            StatusCode::FORBIDDEN,
            "The sign-in session is missing; start again from the app",
        )
    })?;
    if !smart_auth::csrf::verify(&secret, &flow, field(&step.pairs, "csrf")) {
        return Err(pages::error(
            StatusCode::FORBIDDEN,
            "The form's CSRF token is missing or wrong",
        ));
    }
    Ok((step, secret, flow))
}

/// `POST /auth/login`: checks the CSRF token, the lockout, the password and the TOTP code;
/// then the consent page.
pub async fn login(
    State(app): State<SharedApp>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    request: Request,
) -> Response {
    let (step, secret, flow) = match posted(&app, peer, request).await {
        Ok(posted) => posted,
        Err(response) => return response,
    };
    let username = field(&step.pairs, "username")
        .unwrap_or_default()
        .to_owned();
    let signed_in = sign_in(&app, &step, &username).await;
    let note = match &signed_in {
        Ok(user) => AuthNote {
            event: "login",
            user: Some(user.username.clone()),
            fhir_user: Some(user.fhir_user.clone()),
            ..AuthNote::default()
        },
        Err(message) => AuthNote {
            event: if message.contains("locked") {
                "lockout"
            } else {
                "login-failed"
            },
            status: Some(401),
            user: Some(username.chars().take(64).collect()),
            ..AuthNote::default()
        },
    };
    let mut response = match signed_in {
        Ok(user) if user.totp_required && user.totp_secret.is_none() => {
            super::enrol::page(&step, &flow, &secret, &user, None)
        }
        Ok(user) => consent_page(&step, &flow, &secret, &user).await,
        Err(message) => login_page(&app, &step, &flow, Some(&message), false).await,
    };
    response.extensions_mut().insert(note);
    response
}

/// The user, if the password (and TOTP code, once enrolled) are right and the account is
/// not locked; else what to tell them (never which of username or password was wrong).
///
/// Each attempt is recorded as a failure before anything is checked, and the failures are
/// counted with it included: so even a rush of concurrent attempts gets at most
/// [`LOCKOUT_FAILURES`] password checks in the window. A success removes the failures.
async fn sign_in(app: &App, step: &Step, username: &str) -> Result<User, String> {
    let tenant = step.tenant.id;
    let now = now_seconds();
    fn unavailable<E>(_: E) -> String {
        "The server could not check the sign-in; try again".to_owned()
    }
    let wrong = || "The username, password or code is wrong".to_owned();
    if !crate::auth::registry::is_valid_username(username) {
        // No such user can exist; nothing to count.
        return Err(wrong());
    }
    let attempt = format!("{username}/{}", uuid::Uuid::new_v4().simple());
    app.store
        .auth_put(
            tenant,
            RecordKind::Failure,
            &attempt,
            "{}",
            Some(now + LOCKOUT_SECONDS),
        )
        .await
        .map_err(unavailable)?;
    let attempts = app
        .store
        .auth_count_under(tenant, RecordKind::Failure, username, now)
        .await
        .map_err(unavailable)?;
    if attempts > LOCKOUT_FAILURES {
        tracing::warn!("a sign-in to a locked account was refused");
        return Err(
            "This account is locked after too many failed sign-ins; try again in 15 minutes".into(),
        );
    }
    let user = accounts::user(&app.store, tenant, username)
        .await
        .map_err(unavailable)?;
    let password = field(&step.pairs, "password")
        .unwrap_or_default()
        .to_owned();
    let stored = user.as_ref().map(|u| u.password_hash.clone());
    let matches = tokio::task::spawn_blocking(move || {
        stored.is_some_and(|hash| smart_auth::password::verify(&password, &hash))
    })
    .await
    .unwrap_or(false);
    let user = match (user, matches) {
        (Some(user), true) => user,
        _ => return Err(wrong()),
    };
    let user = check_totp(app, tenant, user, field(&step.pairs, "totp"))
        .await
        .ok_or_else(wrong)?;
    app.store
        .auth_delete_under(tenant, RecordKind::Failure, username)
        .await
        .map_err(unavailable)?;
    Ok(user)
}

/// The user once its TOTP code holds (each code once); the user as is when not enrolled.
async fn check_totp(
    app: &App,
    tenant: crate::store::TenantId,
    mut user: User,
    code: Option<&str>,
) -> Option<User> {
    let Some(secret) = user.totp_secret.as_deref() else {
        return Some(user);
    };
    let secret = base64::Engine::decode(&base64::engine::general_purpose::STANDARD, secret).ok()?;
    let now = u64::try_from(now_seconds()).ok()?;
    let step = smart_auth::totp::check(&secret, code?, now, user.totp_last_step)?;
    user.totp_last_step = Some(step);
    accounts::put_user(&app.store, tenant, &user).await.ok()?;
    Some(user)
}

fn ticket_subject(flow: &str, username: &str, expires: i64) -> String {
    format!("ticket\n{flow}\n{username}\n{expires}")
}

pub(super) async fn consent_page(step: &Step, flow: &str, secret: &[u8], user: &User) -> Response {
    let expires = now_seconds() + TICKET_SECONDS;
    let ticket = smart_auth::csrf::token(secret, &ticket_subject(flow, &user.username, expires));
    let csrf = smart_auth::csrf::token(secret, flow);
    let boxes: String = step
        .accepted
        .scopes
        .iter()
        .map(|scope| {
            let scope = escape(&scope.to_string());
            format!("<label><input type=\"checkbox\" name=\"grant\" value=\"{scope}\" checked> {scope}</label>")
        })
        .collect();
    let picker = if needs_picker(step, user) {
        "<label>Patient (id) <input type=\"text\" name=\"patient\" required></label>".to_owned()
    } else {
        String::new()
    };
    let origin = origin_of(&step.accepted.redirect_uri);
    let body = format!(
        "<p><strong>{client}</strong> asks for access. Untick what you do not want to share.</p>\
         <form method=\"post\" action=\"consent\">{hidden}\
         <input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\
         <input type=\"hidden\" name=\"username\" value=\"{username}\">\
         <input type=\"hidden\" name=\"expires\" value=\"{expires}\">\
         <input type=\"hidden\" name=\"ticket\" value=\"{ticket}\">{boxes}{picker}\
         <button type=\"submit\" name=\"decision\" value=\"allow\">Allow</button>\
         <button type=\"submit\" name=\"decision\" value=\"deny\">Deny</button></form>",
        client = escape(&step.accepted.client_id),
        hidden = hidden(&step.carried),
        username = escape(&user.username),
    );
    pages::page(
        StatusCode::OK,
        "Allow access",
        &body,
        origin.as_deref(),
        None,
    )
}

/// A standalone `launch/patient` by someone who is not the patient: they pick one.
fn needs_picker(step: &Step, user: &User) -> bool {
    step.accepted.launch.is_none()
        && step
            .accepted
            .scopes
            .contains(&Scope::Launch(Launch::Patient))
        && user.own_patient().is_none()
}

/// `POST /auth/consent`: the CSRF token and the login ticket hold; then the code.
pub async fn consent(
    State(app): State<SharedApp>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    request: Request,
) -> Response {
    let (step, secret, flow) = match posted(&app, peer, request).await {
        Ok(posted) => posted,
        Err(response) => return response,
    };
    let username = field(&step.pairs, "username").unwrap_or_default();
    let expires: i64 = field(&step.pairs, "expires")
        .and_then(|e| e.parse().ok())
        .unwrap_or(0);
    let ticket_ok = expires > now_seconds()
        && smart_auth::csrf::verify(
            &secret,
            &ticket_subject(&flow, username, expires),
            field(&step.pairs, "ticket"),
        );
    if !ticket_ok {
        return pages::error(
            StatusCode::FORBIDDEN,
            "The sign-in has expired; start again from the app",
        );
    }
    let accepted = &step.accepted;
    let deny = || {
        redirect(&smart_auth::redirect::with_error(
            &accepted.redirect_uri,
            "access_denied",
            "the user did not allow access",
            accepted.state.as_deref(),
        ))
    };
    if field(&step.pairs, "decision") != Some("allow") {
        return deny();
    }
    match issue_code(&app, &step, username).await {
        Ok(Some(location)) => redirect(&location),
        Ok(None) => deny(),
        Err(message) => redirect(&smart_auth::redirect::with_error(
            &accepted.redirect_uri,
            "invalid_request",
            &message,
            accepted.state.as_deref(),
        )),
    }
}

/// The code for what the user allowed, with its launch context; `None` when nothing was.
async fn issue_code(app: &App, step: &Step, username: &str) -> Result<Option<String>, String> {
    let tenant = step.tenant.id;
    let failed =
        |_: crate::error::FhirError| "the server could not complete the authorization".to_owned();
    let user = accounts::user(&app.store, tenant, username)
        .await
        .map_err(failed)?
        .ok_or("the user no longer exists")?;
    let ticked: Vec<&str> = step
        .pairs
        .iter()
        .filter(|(n, _)| n == "grant")
        .map(|(_, v)| v.as_str())
        .collect();
    let ticked = Scopes::parse(&ticked.join(" ")).map_err(|e| e.to_string())?;
    let scopes = ticked.granted_within(&step.accepted.scopes);
    if scopes.is_empty() {
        return Ok(None);
    }
    let mut grant =
        StoredGrant::new(&step.accepted.client_id, &scopes).map_err(|e| e.description)?;
    grant.username = Some(user.username.clone());
    grant.role = Some(user.role.clone());
    grant.fhir_user = Some(user.fhir_user.clone());
    grant.nonce = field(&step.pairs, "nonce").map(str::to_owned);
    grant.need_patient_banner = step.accepted.launch.is_none();
    launch_context(app, step, &user, &mut grant).await?;
    if scopes.needs_patient() && grant.patient.is_none() {
        return Err("patient/ scopes need a patient in context (ask for launch/patient)".into());
    }
    let code = smart_auth::random_token()?;
    let now = now_seconds();
    let stored = StoredCode {
        grant,
        redirect_uri: step.accepted.redirect_uri.clone(),
        code_challenge: step.accepted.code_challenge.clone(),
        issued_at: now,
    };
    let body = serde_json::to_string(&stored).map_err(|e| e.to_string())?;
    app.store
        .auth_put(
            tenant,
            RecordKind::Code,
            &smart_auth::sha256_hex(&code),
            &body,
            Some(now + smart_auth::token::CODE_LIFETIME),
        )
        .await
        .map_err(|_| "the server could not keep the code".to_owned())?;
    Ok(Some(smart_auth::redirect::with_code(
        &step.accepted.redirect_uri,
        &code,
        step.accepted.state.as_deref(),
    )))
}

/// The patient (and encounter) of the grant: an EHR launch's context (its id used once),
/// a patient's own record, or the one a practitioner picked (which must exist).
async fn launch_context(
    app: &App,
    step: &Step,
    user: &User,
    grant: &mut StoredGrant,
) -> Result<(), String> {
    let tenant = step.tenant.id;
    let now = now_seconds();
    if let Some(launch) = &step.accepted.launch {
        let body = app
            .store
            .auth_take(tenant, RecordKind::Launch, launch, now)
            .await
            .map_err(|_| "the server could not read the launch".to_owned())?
            .ok_or("the launch is unknown, expired or used")?;
        let context: LaunchContext = serde_json::from_str(&body).map_err(|e| e.to_string())?;
        grant.patient = context.patient;
        grant.encounter = context.encounter;
        return Ok(());
    }
    if let Some(own) = user.own_patient() {
        grant.patient = Some(own.to_owned());
        return Ok(());
    }
    if needs_picker(step, user) {
        let picked = field(&step.pairs, "patient").unwrap_or_default();
        let exists = crate::ids::is_valid_id(picked)
            && app
                .store
                .read(tenant, "Patient", picked)
                .await
                .ok()
                .flatten()
                .is_some_and(|v| !v.is_deleted());
        if !exists {
            return Err(format!("there is no Patient '{picked}'"));
        }
        grant.patient = Some(picked.to_owned());
    }
    Ok(())
}
