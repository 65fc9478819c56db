//! The HTTP face of the server: the axum router, the request-id and logging layer, and the
//! FHIR entry point that turns an HTTP request into a [`FhirRequest`] for [`route`].
//!
//! `{root}/fhir` is tenant `default`; `{root}/t/{tenant}/fhir` is any other tenant.

pub mod admin;
pub mod audit;
pub mod audit_events;
pub mod auth;
pub mod capabilities;
pub mod cors;
pub mod guard;
pub mod links;
pub mod rate;
pub mod route;
pub mod secure;
pub mod serve;
pub mod tls;
pub mod twilio;

use std::time::Instant;

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::header::{ALLOW, AUTHORIZATION, CONTENT_LENGTH, WWW_AUTHENTICATE};
use axum::http::{HeaderName, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use tracing::Instrument;

use crate::app::{App, SharedApp};
use crate::config::AuthMode;
use crate::error::FhirError;
use crate::rest::format::{Format, Payload, encode, negotiate};
use crate::rest::request::{FhirRequest, parse_query};

static REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The whole router; an error names a setting that is not valid (a CORS origin).
pub fn router(app: SharedApp) -> Result<Router, String> {
    let registered = (app.config.auth == AuthMode::Smart).then(|| app.auth.origins.clone());
    let cors = cors::layer(&app.config.cors_origins, registered)?;
    let mut fhir_api = Router::new()
        .merge(
            auth::routes()
                .layer(middleware::from_fn_with_state(
                    app.clone(),
                    audit::auth_layer,
                ))
                .layer(middleware::from_fn_with_state(
                    app.clone(),
                    rate::auth_layer,
                )),
        )
        .route("/fhir/messaging/twilio/{hook}", post(twilio::handle))
        .route(
            "/fhir/messaging/link",
            get(links::handle).post(links::handle),
        )
        .route(
            "/t/{tenant}/fhir/messaging/link",
            get(links::handle).post(links::handle),
        )
        .route(
            "/t/{tenant}/fhir/messaging/twilio/{hook}",
            post(twilio::handle),
        )
        .route("/fhir", any(fhir))
        .route("/fhir/", any(fhir))
        .route("/fhir/{*path}", any(fhir))
        .route("/t/{tenant}/fhir", any(fhir))
        .route("/t/{tenant}/fhir/", any(fhir))
        .route("/t/{tenant}/fhir/{*path}", any(fhir))
        .route_layer(middleware::from_fn_with_state(app.clone(), rate::api_layer));
    // CORS opens the FHIR API to browser apps, never the admin API or the health checks.
    if let Some(cors) = cors {
        fhir_api = fhir_api.layer(cors::WhenOrigin(std::sync::Arc::new(cors)));
    }
    Ok(Router::new()
        .route("/healthz", get(admin::healthz))
        .route("/readyz", get(admin::readyz))
        .route("/admin/tenants", post(admin::create_tenant))
        .route("/admin/clock", post(admin::advance_clock))
        .merge(auth::discovery_routes())
        .merge(fhir_api)
        .fallback(not_found)
        .layer(middleware::from_fn(request_id))
        .with_state(app))
}

async fn not_found() -> Response {
    let error = FhirError::not_found("No such endpoint; the FHIR API is under /fhir");
    encode_error(&error, Format::default())
}

/// Gives every request an id (the client's `X-Request-Id` if sensible, else a new one),
/// returns it on the answer, and logs the request in a span that carries it. The log has
/// the path but never the query or body, which may carry patient data.
async fn request_id(request: Request, next: Next) -> Response {
    let id = request
        .headers()
        .get(&REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 128 && v.bytes().all(|b| b.is_ascii_graphic()))
        .map(str::to_owned)
        .unwrap_or_else(|| uuid::Uuid::new_v4().simple().to_string());
    let mut request = request;
    request.extensions_mut().insert(RequestId(id.clone()));
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let started = Instant::now();
    // The tenant and the interaction are filled in once the request is routed (`fhir`).
    let span = tracing::info_span!(
        "request",
        request_id = %id,
        tenant = tracing::field::Empty,
        interaction = tracing::field::Empty
    );
    let mut response = next.run(request).instrument(span.clone()).await;
    let status = response.status().as_u16();
    span.in_scope(|| {
        tracing::debug!(%method, %path, status, micros = started.elapsed().as_micros() as u64, "answered");
    });
    if let Ok(value) = HeaderValue::from_str(&id) {
        response.headers_mut().insert(REQUEST_ID.clone(), value);
    }
    response
}

/// The id [`request_id`] gave a request, for its audit record.
#[derive(Debug, Clone)]
pub struct RequestId(pub String);

/// The server's public root URL: `--base-url`, else `http://` and the Host header.
pub fn root_url(app: &App, headers: &axum::http::HeaderMap) -> String {
    match &app.config.base_url {
        Some(url) => url.trim_end_matches('/').to_owned(),
        None => {
            let host = headers
                .get("host")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("localhost");
            format!("http://{host}")
        }
    }
}

/// Splits `/t/{tenant}/fhir/rest` or `/fhir/rest` into the tenant and the base path.
fn tenant_and_rest(path: &str) -> (String, String, &str) {
    if let Some(after) = path.strip_prefix("/t/") {
        let (tenant, rest) = after.split_once('/').unwrap_or((after, ""));
        let rest = rest.strip_prefix("fhir").unwrap_or(rest);
        (tenant.to_owned(), format!("/t/{tenant}/fhir"), rest)
    } else {
        let rest = path.strip_prefix("/fhir").unwrap_or(path);
        ("default".to_owned(), "/fhir".to_owned(), rest)
    }
}

/// The FHIR entry point: negotiate, check the tenant, read the body, route, encode.
async fn fhir(State(app): State<SharedApp>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let params = parts.uri.query().map(parse_query).unwrap_or_default();
    let format = match negotiate(&params, &parts.headers) {
        Ok(format) => format,
        Err(error) => return encode_error(&error, Format::default()),
    };
    let (tenant, base_path, rest) = tenant_and_rest(parts.uri.path());
    let segments: Vec<String> = rest
        .split('/')
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect();
    let span = tracing::Span::current();
    span.record("tenant", tenant.as_str());
    span.record(
        "interaction",
        route::interaction_name(&parts.method, &segments),
    );
    let tenant = match app.tenant(&tenant).await {
        Ok(tenant) => tenant,
        Err(error) => return encode_error(&error, format),
    };
    let body_timeout = std::time::Duration::from_secs(app.config.body_timeout_seconds.max(1));
    let body = match read_body(
        body,
        &parts.headers,
        app.config.max_body_bytes,
        body_timeout,
    )
    .await
    {
        Ok(body) => body,
        Err(error) => return encode_error(&error, format),
    };
    let root = root_url(&app, &parts.headers);
    let base = format!("{root}{base_path}");
    let request_id = parts.extensions.get::<RequestId>().map(|id| id.0.clone());
    let authenticated = authenticate(&app, tenant, &base, &parts.headers, &segments)
        .await
        .map(|principal| audit::glass_broken(&parts.headers, principal));
    let agent = app.audit.enabled().then(|| {
        let principal = authenticated.as_ref().ok().and_then(Option::as_deref);
        audit::agent(&app, &parts, principal, request_id.as_deref())
    });
    if let Ok(Some(principal)) = &authenticated
        && let Some(refused) = rate::client_over_limit(&app, &principal.client_id)
    {
        return refused;
    }
    let principal = match authenticated {
        Ok(principal) => principal,
        Err(error) => {
            if let Some(agent) = agent {
                refused(&app, tenant, &parts, &segments, &error, agent);
            }
            return encode_error(&error, format);
        }
    };
    let request = FhirRequest {
        tenant,
        base,
        method: parts.method,
        segments,
        params,
        headers: parts.headers,
        body,
        principal,
    };
    let attribution = attribution(&request, agent);
    let answered =
        crate::store::provenance::attributed(attribution, route::dispatch(&app, &request)).await;
    encode_answer(&request, answered, format)
}

/// Who makes the changes of `request`, for their Provenance and audit records.
fn attribution(
    request: &FhirRequest,
    agent: Option<std::sync::Arc<crate::store::audit::Agent>>,
) -> crate::store::provenance::Attribution {
    crate::store::provenance::Attribution {
        who: request.principal.as_ref().and_then(|p| p.fhir_user.clone()),
        client: request
            .principal
            .as_ref()
            .map_or_else(|| "anonymous".to_owned(), |p| p.client_id.clone()),
        activity: activity(request),
        agent,
        audited: Default::default(),
    }
}

/// The HTTP answer: the response in the negotiated format, or its error (with `Allow`
/// on a 405).
fn encode_answer(
    request: &FhirRequest,
    answered: Result<crate::rest::response::FhirResponse, FhirError>,
    format: Format,
) -> Response {
    match answered {
        Ok(response) => {
            let mut encoded = encode(response.status, response.payload, format);
            encoded.headers_mut().extend(response.headers);
            encoded
        }
        Err(error) => {
            let mut response = encode_error(&error, format);
            if error.status == StatusCode::METHOD_NOT_ALLOWED {
                let allowed = route::allowed_methods(request);
                if let Ok(value) = HeaderValue::from_str(&allowed) {
                    response.headers_mut().insert(ALLOW, value);
                }
            }
            response
        }
    }
}

/// Records a request refused before it had a principal (no token, a bad one).
fn refused(
    app: &App,
    tenant: crate::store::TenantId,
    parts: &axum::http::request::Parts,
    segments: &[String],
    error: &FhirError,
    agent: std::sync::Arc<crate::store::audit::Agent>,
) {
    let interaction = route::interaction_name(&parts.method, segments);
    let event = segments
        .iter()
        .find(|s| s.starts_with('$'))
        .map_or_else(|| interaction.to_owned(), Clone::clone);
    app.audit.record(
        tenant,
        crate::store::audit::Entry {
            recorded: crate::clock::now_micros(),
            event,
            action: "E",
            status: error.status.as_u16(),
            agent,
            entity: (!segments.is_empty()).then(|| segments.join("/")),
            query: None,
            via: None,
            patients: match segments {
                [patient_type, id, ..] if patient_type == "Patient" && !id.starts_with('$') => {
                    vec![id.clone()]
                }
                _ => Vec::new(),
            },
        },
    );
}

/// What a request does, for the Provenance of what it changes: its operation (`$book`),
/// else its interaction (`update`).
fn activity(request: &FhirRequest) -> String {
    match request.segments.iter().find(|s| s.starts_with('$')) {
        Some(operation) => operation.clone(),
        None => route::interaction_name(&request.method, &request.segments).to_owned(),
    }
}

/// The principal of a request under `--auth smart` (401 without a valid token); none
/// under `--auth none`, or for the CapabilityStatement, which anyone may read.
async fn authenticate(
    app: &App,
    tenant: crate::store::TenantId,
    base: &str,
    headers: &axum::http::HeaderMap,
    segments: &[String],
) -> Result<Option<std::sync::Arc<crate::auth::Principal>>, FhirError> {
    if app.config.auth == AuthMode::None || segments == ["metadata"] {
        return Ok(None);
    }
    let authorization = headers.get(AUTHORIZATION).map(|v| v.as_bytes());
    crate::auth::principal::authenticate(&app.auth, &app.store, tenant, base, authorization)
        .await
        .map(Some)
}

/// Reads the body up to `limit` bytes (a larger one is 413) within `timeout` (a client
/// that trickles its body gets 408: it must not hold a connection and its memory).
async fn read_body(
    body: Body,
    headers: &axum::http::HeaderMap,
    limit: usize,
    timeout: std::time::Duration,
) -> Result<bytes::Bytes, FhirError> {
    match tokio::time::timeout(timeout, read_body_within(body, headers, limit)).await {
        Ok(read) => read,
        Err(_) => {
            tracing::info!("a client did not send its request body in time");
            Err(FhirError::new(
                StatusCode::REQUEST_TIMEOUT,
                "timeout",
                format!(
                    "The request body did not arrive within {} seconds",
                    timeout.as_secs()
                ),
            ))
        }
    }
}

async fn read_body_within(
    body: Body,
    headers: &axum::http::HeaderMap,
    limit: usize,
) -> Result<bytes::Bytes, FhirError> {
    let too_large = || {
        FhirError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too-long",
            format!("The request body is larger than the limit of {limit} bytes"),
        )
    };
    let declared = headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|length| length > limit) {
        return Err(too_large());
    }
    axum::body::to_bytes(body, limit).await.map_err(|error| {
        // axum reports an over-long body as a length-limit error in the source chain.
        let mut cause: Option<&dyn std::error::Error> = Some(&error);
        let mut over_limit = false;
        while let Some(current) = cause {
            over_limit |= current.to_string().contains("length limit");
            cause = current.source();
        }
        if over_limit {
            too_large()
        } else {
            FhirError::bad_request(format!("Could not read the request body: {error}"))
        }
    })
}

/// Encodes an error as an OperationOutcome in the negotiated format; a 401 or 403 also
/// says, in `WWW-Authenticate`, what a Bearer token must do (RFC 6750 3).
pub fn encode_error(error: &FhirError, format: Format) -> Response {
    let mut response = encode(error.status, Some(Payload::Value(error.outcome())), format);
    let challenge = match error.status {
        StatusCode::UNAUTHORIZED => Some(
            if error
                .issues
                .iter()
                .any(|i| i.diagnostics.contains("required"))
            {
                "Bearer realm=\"fhir\"".to_owned()
            } else {
                "Bearer realm=\"fhir\", error=\"invalid_token\"".to_owned()
            },
        ),
        StatusCode::FORBIDDEN => {
            Some("Bearer realm=\"fhir\", error=\"insufficient_scope\"".to_owned())
        }
        _ => None,
    };
    if let Some(value) = challenge.and_then(|c| HeaderValue::from_str(&c).ok()) {
        response.headers_mut().insert(WWW_AUTHENTICATE, value);
    }
    response
}

impl IntoResponse for FhirError {
    fn into_response(self) -> Response {
        encode_error(&self, Format::default())
    }
}
