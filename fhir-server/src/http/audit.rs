//! What the HTTP layer tells the audit trail: who asks and from where (the [`Agent`] of a
//! request), and a record of every FHIR request and Bundle entry answered (its
//! interaction or operation, what it touched, the patients concerned, the status),
//! refusals included. A plain write that the store recorded in its own transaction is not
//! recorded twice.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::extract::ConnectInfo;
use axum::http::HeaderName;
use axum::http::Method;
use axum::http::header::{ETAG, USER_AGENT};
use axum::http::request::Parts;

use crate::app::App;
use crate::auth::Principal;
use crate::error::FhirError;
use crate::rest::bundle::Resource;
use crate::rest::format::Payload;
use crate::rest::request::{FhirRequest, parse_etag};
use crate::rest::response::FhirResponse;
use crate::store::audit::{Agent, Entry, patients_of};

/// The header a user breaks the glass with: its value is the reason.
pub const BREAK_GLASS: HeaderName = HeaderName::from_static("x-break-glass");

/// The most patients named by one search's record.
const MAX_PATIENTS: usize = 20;

/// The principal of a request that breaks the glass (`X-Break-Glass: reason`), widened
/// (`auth::enforce::break_glass`); any other as it is.
pub fn glass_broken(
    headers: &axum::http::HeaderMap,
    principal: Option<Arc<Principal>>,
) -> Option<Arc<Principal>> {
    let reason = headers.get(BREAK_GLASS).and_then(|v| v.to_str().ok());
    match (principal, reason) {
        (Some(principal), Some(reason)) if !reason.trim().is_empty() => {
            match crate::auth::enforce::break_glass(&principal) {
                Some(widened) => Some(Arc::new(widened)),
                None => Some(principal),
            }
        }
        (principal, _) => principal,
    }
}

/// Who asks, and from where. The address is the peer's, or the one a trusted proxy
/// forwarded; the token is named by its id, never itself.
pub fn agent(
    app: &App,
    parts: &Parts,
    principal: Option<&Principal>,
    request_id: Option<&str>,
) -> Arc<Agent> {
    let peer = parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(peer)| peer.ip());
    let address = peer.map(|peer| {
        address_text(
            crate::auth::proxies::origin(peer, &parts.headers, &app.trusted_proxies, false).address,
        )
    });
    let header = |name: HeaderName| {
        parts
            .headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(|v| v.chars().take(256).collect::<String>())
    };
    // Only staff break the glass (see `auth::enforce::break_glass`).
    let staff = principal.is_some_and(crate::auth::enforce::may_break_glass);
    let reason = header(BREAK_GLASS).filter(|reason| staff && !reason.trim().is_empty());
    Arc::new(Agent {
        user: principal.and_then(|p| p.username.clone()),
        fhir_user: principal.and_then(|p| p.fhir_user.clone()),
        client: principal.map(|p| p.client_id.clone()),
        token: principal.map(|p| p.jti.clone()),
        address,
        user_agent: header(USER_AGENT),
        request_id: request_id.map(str::to_owned),
        purpose: reason.as_ref().map(|_| "BTG".to_owned()),
        reason,
    })
}

/// An address as text. IPv4 (nearly every caller) is written by hand: the formatting
/// machinery took a twentieth of the request path's audit work.
fn address_text(address: std::net::IpAddr) -> String {
    let std::net::IpAddr::V4(v4) = address else {
        return address.to_string();
    };
    let mut text = String::with_capacity(15);
    for (n, octet) in v4.octets().into_iter().enumerate() {
        if n > 0 {
            text.push('.');
        }
        if octet >= 100 {
            text.push(char::from(b'0' + octet / 100));
        }
        if octet >= 10 {
            text.push(char::from(b'0' + octet / 10 % 10));
        }
        text.push(char::from(b'0' + octet % 10));
    }
    text
}

/// Records the answer to `request` (a request, or one entry of a Bundle), unless it was a
/// plain write the store already recorded (`audited_before`: the count of records the
/// store had made for this request before it was answered).
pub fn record(
    app: &App,
    request: &FhirRequest,
    answered: &Result<FhirResponse, FhirError>,
    audited_before: usize,
) {
    let Some((agent, audited)) = crate::store::provenance::with_current(|attribution| {
        let attribution = attribution?;
        let audited = attribution.audited.load(Ordering::Relaxed);
        attribution.agent.clone().map(|agent| (agent, audited))
    }) else {
        return;
    };
    let interaction = super::route::interaction_name(&request.method, &request.segments);
    let written = audited > audited_before;
    let plain_write = matches!(interaction, "create" | "update" | "patch" | "delete");
    let status = match answered {
        Ok(response) => response.status.as_u16(),
        Err(error) => error.status.as_u16(),
    };
    if written && plain_write && status < 300 {
        return;
    }
    let entry = entry(request, answered, interaction, status, agent);
    app.audit.record(request.tenant, entry);
}

/// The record of one answered request.
pub fn entry(
    request: &FhirRequest,
    answered: &Result<FhirResponse, FhirError>,
    interaction: &str,
    status: u16,
    agent: Arc<Agent>,
) -> Entry {
    let operation = request.segments.iter().find(|s| s.starts_with('$'));
    let event = operation.map_or_else(|| interaction.to_owned(), Clone::clone);
    let action = match interaction {
        "create" => "C",
        "update" | "patch" => "U",
        "delete" => "D",
        "read" | "vread" | "history-instance" | "history-type" | "history-system"
        | "capabilities" => "R",
        _ => "E",
    };
    let searching = matches!(
        interaction,
        "search-type" | "search-compartment" | "operation"
    ) || (request.segments.is_empty() && request.method == Method::GET);
    let query = (searching && !request.params.is_empty()).then(|| {
        form_urlencoded::Serializer::new(String::new())
            .extend_pairs(request.params.iter())
            .finish()
    });
    let mut entity = (!request.segments.is_empty()).then(|| {
        let mut entity = String::with_capacity(80);
        for (n, segment) in request.segments.iter().enumerate() {
            if n > 0 {
                entity.push('/');
            }
            entity.push_str(segment);
        }
        entity
    });
    // A read names the version it answered, as BALP asks.
    if interaction == "read"
        && let (Some(entity), Ok(response)) = (entity.as_mut(), answered)
        && let Some((_, etag)) = response.headers.iter().find(|(name, _)| name == ETAG)
        && let Some(version) = etag.to_str().ok().and_then(parse_etag)
    {
        use std::fmt::Write;
        let _ = write!(entity, "/_history/{version}");
    }
    Entry {
        recorded: crate::clock::now_micros(),
        event,
        action,
        status,
        agent,
        entity,
        query,
        via: None,
        patients: patients(request, answered),
    }
}

/// The patients a request concerns: its token's patient, those its search names, and
/// those in what it answered.
fn patients(request: &FhirRequest, answered: &Result<FhirResponse, FhirError>) -> Vec<String> {
    let mut patients: Vec<String> = Vec::new();
    let mut add = |patient: &str| {
        if patients.len() < MAX_PATIENTS && !patients.iter().any(|p| p == patient) {
            patients.push(patient.to_owned());
        }
    };
    if let Some(patient) = request
        .principal
        .as_ref()
        .and_then(|p| p.patient.as_deref())
    {
        add(patient);
    }
    let resource_type = request.segments.first().map_or("", String::as_str);
    if resource_type == "Patient"
        && let Some(id) = request.segments.get(1).filter(|id| !id.starts_with('$'))
    {
        add(id);
    }
    for (name, value) in &request.params {
        let name = name.split([':', '.']).next().unwrap_or_default();
        let named = match name {
            "patient" | "subject" | "beneficiary" => true,
            "_id" => resource_type == "Patient",
            _ => false,
        };
        if named {
            for value in value.split(',') {
                let id = value.rsplit_once("Patient/").map_or(value, |(_, id)| id);
                if !id.is_empty() && !id.contains('/') {
                    add(id);
                }
            }
        }
    }
    let Ok(response) = answered else {
        return patients;
    };
    match &response.payload {
        Some(Payload::Stored(body)) => {
            let id = request.segments.get(1).map_or("", String::as_str);
            for patient in patients_of(resource_type, id, body) {
                add(&patient);
            }
        }
        Some(Payload::Bundle(bundle)) => {
            for entry in &bundle.entries {
                let (Some(Resource::Stored(body)), Some(url)) = (&entry.resource, &entry.full_url)
                else {
                    continue;
                };
                let mut parts = url.rsplit('/');
                let (id, entry_type) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
                for patient in patients_of(entry_type, id, body) {
                    add(&patient);
                }
            }
        }
        _ => {}
    }
    patients
}

/// What an endpoint of the authorization server says of its answer, for the audit
/// (a failed sign-in is answered 200 with the login page again, so the status cannot
/// tell): put in the response's extensions, read by [`auth_layer`].
#[derive(Debug, Clone, Default)]
pub struct AuthNote {
    /// `login`, `login-failed`, `lockout`, `token`, `refresh`, ...
    pub event: &'static str,
    pub status: Option<u16>,
    pub user: Option<String>,
    pub fhir_user: Option<String>,
    pub client: Option<String>,
    pub token: Option<String>,
}

/// Records every request to the authorization server (sign-ins, tokens, introspection,
/// revocation, the admin API), with what its endpoint noted ([`AuthNote`]), else its path
/// and status.
pub async fn auth_layer(
    axum::extract::State(app): axum::extract::State<crate::app::SharedApp>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    if !app.audit.enabled() {
        return next.run(request).await;
    }
    let (parts, body) = request.into_parts();
    let path = parts.uri.path().to_owned();
    let request_id = parts
        .extensions
        .get::<super::RequestId>()
        .map(|id| id.0.clone());
    let base_agent = agent(&app, &parts, None, request_id.as_deref());
    let response = next
        .run(axum::extract::Request::from_parts(parts, body))
        .await;
    let (tenant_name, _, rest) = super::tenant_and_rest(&path);
    let Ok(tenant) = app.tenant(&tenant_name).await else {
        return response;
    };
    let note = response
        .extensions()
        .get::<AuthNote>()
        .cloned()
        .unwrap_or_default();
    let endpoint = rest.trim_start_matches("/auth/");
    let event = if note.event.is_empty() {
        match endpoint.split('/').next().unwrap_or_default() {
            "" => "auth".to_owned(),
            first => first.to_owned(),
        }
    } else {
        note.event.to_owned()
    };
    let agent = Agent {
        user: note.user,
        fhir_user: note.fhir_user,
        client: note.client,
        token: note.token,
        ..(*base_agent).clone()
    };
    app.audit.record(
        tenant,
        Entry {
            recorded: crate::clock::now_micros(),
            event,
            action: "E",
            status: note.status.unwrap_or(response.status().as_u16()),
            agent: Arc::new(agent),
            entity: Some(format!("auth/{endpoint}")),
            query: None,
            via: None,
            patients: Vec::new(),
        },
    );
    response
}

/// The token id, subject and fhirUser in one of our access tokens (its payload read
/// without checking: we just issued it).
pub fn token_claims(access_token: &str) -> (Option<String>, Option<String>, Option<String>) {
    use base64::Engine;
    let payload = access_token
        .split('.')
        .nth(1)
        .and_then(|p| {
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(p)
                .ok()
        })
        .and_then(|p| serde_json::from_slice::<serde_json::Value>(&p).ok())
        .unwrap_or_default();
    let text = |name: &str| payload[name].as_str().map(str::to_owned);
    (text("jti"), text("sub"), text("fhirUser"))
}

#[cfg(test)]
mod tests {
    use super::address_text;

    #[test]
    fn addresses_are_written_as_the_standard_library_writes_them() {
        for address in [
            "0.0.0.0",
            "127.0.0.1",
            "10.0.100.9",
            "192.168.10.99",
            "255.255.255.255",
            "::1",
            "2001:db8::8a2e:370:7334",
        ] {
            let parsed: std::net::IpAddr = address.parse().unwrap();
            assert_eq!(address_text(parsed), parsed.to_string());
        }
    }
}
