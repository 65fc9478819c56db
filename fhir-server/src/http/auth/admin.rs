//! The accounts of a tenant over HTTP, `{base}/auth/admin/...`: list and register clients,
//! list and add users, make a password reset link, trust outside identity providers. The same rules as the command line
//! (`auth::registry`). The caller needs an access token of this tenant held by a user of
//! the `admin` role, or a backend token with a `system/*` scope that may create (what an
//! operator's provisioning script is given).
//!
//! - `GET|POST {base}/auth/admin/clients`
//! - `GET|POST {base}/auth/admin/users`
//! - `POST {base}/auth/admin/users/{username}/reset-password`
//! - `GET|POST {base}/auth/admin/issuers`, `DELETE {base}/auth/admin/issuers?issuer=URL`
//! - `GET|PUT {base}/auth/admin/messaging`: the tenant's channels and reminder policy
//!   (`workflows::messaging::settings`; secrets read back hidden)

use axum::extract::{Request, State};
use axum::http::header::AUTHORIZATION;
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use smart_auth::scope::Permission;

use super::{Tenant, field, split, tenant_of};
use crate::app::{App, SharedApp};
use crate::auth::accounts;
use crate::auth::enforce::{self, Reach};
use crate::auth::issuers::{self, TrustedIssuer};
use crate::auth::registry;
use crate::error::FhirError;
use crate::http::encode_error;
use crate::rest::format::Format;
use crate::workflows::messaging;

/// The largest JSON body the admin API reads.
const MAX_BODY_BYTES: usize = 256 * 1024;

pub async fn handle(State(app): State<SharedApp>, request: Request) -> Response {
    match answer(&app, request).await {
        Ok((status, body)) => (status, axum::Json(body)).into_response(),
        Err(error) => encode_error(&error, Format::default()),
    }
}

async fn answer(app: &App, request: Request) -> Result<(StatusCode, Value), FhirError> {
    let method = request.method().clone();
    let (path, headers, body, query) = split(request);
    let tenant = tenant_of(app, &headers, &path).await?;
    let authorization = headers.get(AUTHORIZATION).map(|v| v.as_bytes());
    let principal = crate::auth::principal::authenticate(
        &app.auth,
        &app.store,
        tenant.id,
        &tenant.base,
        authorization,
    )
    .await?;
    let admin = match &principal.role {
        Some(role) => role.name == "admin",
        None => matches!(
            enforce::check(Some(&principal), "*", Permission::Create),
            Ok(Reach::All)
        ),
    };
    if !admin {
        return Err(enforce::forbidden(
            "The admin API needs a user of the admin role, or a system/* scope that may create",
        ));
    }
    let below = path
        .split("/auth/admin/")
        .nth(1)
        .unwrap_or_default()
        .to_owned();
    let body = axum::body::to_bytes(body, MAX_BODY_BYTES)
        .await
        .map_err(|_| {
            FhirError::bad_request(format!("The body is larger than {MAX_BODY_BYTES} bytes"))
        })?;
    route(app, &tenant, &method, &below, query.as_deref(), &body).await
}

async fn route(
    app: &App,
    tenant: &Tenant,
    method: &Method,
    below: &str,
    query: Option<&str>,
    body: &[u8],
) -> Result<(StatusCode, Value), FhirError> {
    let segments: Vec<&str> = below.split('/').filter(|s| !s.is_empty()).collect();
    match (method, segments.as_slice()) {
        (&Method::GET, ["clients"]) => {
            let clients = accounts::clients(&app.store, tenant.id).await?;
            Ok((
                StatusCode::OK,
                json!(
                    clients
                        .iter()
                        .map(registry::client_summary)
                        .collect::<Vec<_>>()
                ),
            ))
        }
        (&Method::POST, ["clients"]) => {
            let new: registry::NewClient = parse(body)?;
            let id = new.id.clone();
            let secret = registry::register_client(&app.store, tenant.id, new).await?;
            app.auth.origins.refresh(&app.store).await;
            let mut answer = json!({"id": id});
            if let Some(secret) = secret {
                answer["client_secret"] = json!(secret);
            }
            Ok((StatusCode::CREATED, answer))
        }
        (&Method::GET, ["users"]) => {
            let users = accounts::users(&app.store, tenant.id).await?;
            Ok((
                StatusCode::OK,
                json!(users.iter().map(registry::user_summary).collect::<Vec<_>>()),
            ))
        }
        (&Method::POST, ["users"]) => {
            let new: registry::NewUser = parse(body)?;
            let username = new.username.clone();
            registry::add_user(&app.store, tenant.id, new).await?;
            Ok((StatusCode::CREATED, json!({"username": username})))
        }
        (&Method::POST, ["users", username, "reset-password"]) => {
            let token = registry::reset_token(&app.store, tenant.id, username).await?;
            let link = format!("{}/auth/reset?token={token}", tenant.base);
            Ok((
                StatusCode::CREATED,
                json!({"reset_link": link, "expires_in": registry::RESET_LIFETIME}),
            ))
        }
        (_, ["issuers"]) => issuers_route(app, tenant, method, query, body).await,
        (&Method::GET, ["messaging"]) => {
            let settings = messaging::settings::load(&app.store, tenant.id).await?;
            Ok((StatusCode::OK, settings.shown()))
        }
        (&Method::PUT, ["messaging"]) => {
            let new: messaging::settings::MessagingSettings = parse(body)?;
            // Webhooks need the public URL: the Host header is the caller's to choose.
            let public_base = app.config.base_url.as_ref().map(|_| tenant.base.clone());
            let saved = messaging::settings::save(&app.store, tenant.id, new, public_base).await?;
            Ok((StatusCode::OK, saved.shown()))
        }
        (_, ["clients"] | ["users"] | ["users", _, "reset-password"] | ["messaging"]) => Err(
            FhirError::method_not_allowed(format!("{method} is not allowed here")),
        ),
        _ => Err(FhirError::not_found("No such admin endpoint")),
    }
}

/// `{base}/auth/admin/issuers`: list, trust, and stop trusting (`?issuer=URL`) outside
/// identity providers.
async fn issuers_route(
    app: &App,
    tenant: &Tenant,
    method: &Method,
    query: Option<&str>,
    body: &[u8],
) -> Result<(StatusCode, Value), FhirError> {
    match *method {
        Method::GET => {
            let trusted = issuers::issuers(&app.store, tenant.id).await?;
            Ok((
                StatusCode::OK,
                json!(
                    trusted
                        .iter()
                        .map(TrustedIssuer::summary)
                        .collect::<Vec<_>>()
                ),
            ))
        }
        Method::POST => {
            let new: TrustedIssuer = parse(body)?;
            let issuer = new.issuer.clone();
            issuers::add(&app.store, tenant.id, new).await?;
            Ok((StatusCode::CREATED, json!({"issuer": issuer})))
        }
        Method::DELETE => {
            let pairs: Vec<(String, String)> =
                form_urlencoded::parse(query.unwrap_or_default().as_bytes())
                    .into_owned()
                    .collect();
            let issuer = field(&pairs, "issuer").ok_or_else(|| {
                FhirError::bad_request("Name the issuer to remove: ?issuer=URL").at("issuer")
            })?;
            issuers::remove(&app.store, tenant.id, issuer).await?;
            Ok((StatusCode::OK, json!({"issuer": issuer, "removed": true})))
        }
        _ => Err(FhirError::method_not_allowed(format!(
            "{method} is not allowed here"
        ))),
    }
}

fn parse<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, FhirError> {
    serde_json::from_slice(body)
        .map_err(|e| FhirError::bad_request(format!("The body does not fit: {e}")))
}
