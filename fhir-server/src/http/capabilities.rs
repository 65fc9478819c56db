//! capabilities: `GET [base]/metadata` (https://hl7.org/fhir/R4/http.html#capabilities).
//!
//! Generated from what the server really has: every concrete R4 resource type from the
//! definitions, the interactions the router dispatches, and the search parameters the query
//! parser accepts.

use std::sync::LazyLock;

use axum::http::StatusCode;
use serde_json::{Value, json};

use crate::params::registry::Registry;
use crate::rest::request::FhirRequest;
use crate::rest::response::FhirResponse;

/// The interactions every resource type supports (see `http::route`).
const TYPE_INTERACTIONS: &[&str] = &[
    "read",
    "vread",
    "update",
    "patch",
    "delete",
    "history-instance",
    "history-type",
    "create",
    "search-type",
];

/// The statement, without the per-request implementation URL.
pub fn statement() -> Value {
    let definitions = fhir_model::Definitions::r4();
    let resources: Vec<Value> = definitions
        .resource_types()
        .iter()
        .map(|resource_type| {
            let interactions: Vec<Value> = TYPE_INTERACTIONS
                .iter()
                .map(|code| json!({"code": code}))
                .collect();
            let mut resource = json!({
                "type": resource_type,
                "profile": format!("http://hl7.org/fhir/StructureDefinition/{resource_type}"),
                "interaction": interactions,
                "versioning": "versioned-update",
                "readHistory": true,
                "updateCreate": true,
                "conditionalCreate": true,
                "conditionalRead": "full-support",
                "conditionalUpdate": true,
                "conditionalDelete": "single",
                "searchInclude": search_includes(resource_type),
                "searchRevInclude": search_rev_includes(resource_type),
                "searchParam": search_params(resource_type),
            });
            let operations = operations(resource_type);
            if !operations.is_empty() {
                resource["operation"] = Value::Array(operations);
            }
            resource
        })
        .collect();
    json!({
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": crate::resource::format_instant(crate::resource::now_micros()),
        "publisher": "fhir-server",
        "kind": "instance",
        "instantiates": ["http://hl7.org/fhir/uv/bulkdata/CapabilityStatement/bulk-data"],
        "software": {"name": "fhir-server", "version": env!("CARGO_PKG_VERSION")},
        "implementation": {"description": "FHIR R4 server for medical practices"},
        "fhirVersion": "4.0.1",
        "format": ["application/fhir+json", "application/fhir+xml", "json", "xml"],
        "patchFormat": ["application/json-patch+json", "application/fhir+json", "application/fhir+xml"],
        "rest": [{
            "mode": "server",
            "resource": resources,
            "interaction": [
                {"code": "transaction"},
                {"code": "batch"},
                {"code": "history-system"},
            ],
            "operation": operations(""),
        }],
    })
}

/// The operations on a type (`""`: the system level), from `ops::OPERATIONS`.
fn operations(resource_type: &str) -> Vec<Value> {
    crate::ops::OPERATIONS
        .iter()
        .filter(|operation| match resource_type {
            "" => operation.system,
            _ => operation.on_type(resource_type),
        })
        .map(|operation| json!({"name": operation.name, "definition": operation.url}))
        .collect()
}

/// The `_include` values a search of `resource_type` takes: `*` and each of its
/// reference parameters.
fn search_includes(resource_type: &str) -> Vec<Value> {
    let mut includes = vec![json!("*")];
    for param in reference_params(resource_type) {
        includes.push(json!(format!("{resource_type}:{}", param.code)));
    }
    includes
}

/// The `_revinclude` values a search of `resource_type` takes: every reference parameter
/// of any type that can point at it (`*` is refused: see `search::parse`).
fn search_rev_includes(resource_type: &str) -> Vec<Value> {
    let mut includes = Vec::new();
    for source in fhir_model::Definitions::r4().resource_types() {
        for param in reference_params(source) {
            if param.targets.iter().any(|t| t == resource_type) {
                includes.push(json!(format!("{source}:{}", param.code)));
            }
        }
    }
    includes
}

fn reference_params(
    resource_type: &str,
) -> impl Iterator<Item = &'static std::sync::Arc<crate::params::registry::SearchParam>> {
    Registry::r4()
        .params(resource_type)
        .iter()
        .filter(|p| p.is_indexed() && p.kind == crate::params::registry::ParamType::Reference)
}

/// The search parameters the query parser accepts for a type: `_id`, `_lastUpdated` and
/// every indexed parameter of the registry.
fn search_params(resource_type: &str) -> Vec<Value> {
    let mut params = vec![
        json!({"name": "_id", "definition": "http://hl7.org/fhir/SearchParameter/Resource-id", "type": "token"}),
        json!({"name": "_lastUpdated", "definition": "http://hl7.org/fhir/SearchParameter/Resource-lastUpdated", "type": "date"}),
    ];
    for param in Registry::r4()
        .params(resource_type)
        .iter()
        .filter(|p| p.is_indexed())
    {
        params.push(
            json!({"name": param.code, "definition": param.url, "type": param.kind.as_str()}),
        );
    }
    params
}

/// The statement, built once: what the server supports does not change while it runs.
static STATEMENT: LazyLock<Value> = LazyLock::new(statement);

pub fn handle(request: &FhirRequest, smart: bool) -> FhirResponse {
    let mut statement = STATEMENT.clone();
    statement["implementation"]["url"] = json!(request.base);
    if smart {
        statement["rest"][0]["security"] = security(&request.base);
    }
    FhirResponse::value(StatusCode::OK, statement)
}

/// `rest.security` under `--auth smart`: the SMART service, and the oauth-uris extension
/// with this tenant's endpoints (what clients that predate `.well-known/smart-configuration`,
/// such as the PyPI `fhirclient`, read).
fn security(base: &str) -> serde_json::Value {
    let endpoints = smart_auth::discovery::Endpoints::of(base);
    let uri = |name: &str, url: &str| json!({"url": name, "valueUri": url});
    json!({
        "cors": true,
        "service": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/restful-security-service",
            "code": "SMART-on-FHIR"}], "text": "OAuth2 using SMART-on-FHIR profile"}],
        "extension": [{
            "url": "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris",
            "extension": [
                uri("authorize", &endpoints.authorize),
                uri("token", &endpoints.token),
                uri("introspect", &endpoints.introspect),
                uri("revoke", &endpoints.revoke),
                uri("manage", &endpoints.manage),
            ]
        }]
    })
}
