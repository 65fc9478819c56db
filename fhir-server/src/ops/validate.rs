//! `[type]/$validate` and `[type]/[id]/$validate`
//! (https://hl7.org/fhir/R4/resource-operation-validate.html): checks a resource exactly as
//! a create or update would, and answers the OperationOutcome, storing nothing.
//!
//! The resource is the body, or the `resource` part of a Parameters body (with `mode`, and
//! `profile`, which may only name the base definition of the type: other profiles are not
//! known to this server). Modes: `create`, `update` (the resource's id must be the URL's),
//! `delete` (the resource must exist). As the spec has it, the answer is 200 whether or
//! not the resource is valid; 4xx means the validation itself could not run.

use axum::http::StatusCode;
use serde_json::{Value, json};

use super::{ANY_TYPE, Operation, Param, Target};
use crate::app::App;
use crate::error::{FhirError, Issue};
use crate::ids::ResourceType;
use crate::rest::request::{FhirRequest, check_resource};
use crate::rest::response::FhirResponse;

/// As registered in `ops::OPERATIONS`.
pub const OPERATION: Operation = Operation {
    name: "validate",
    id: "Resource-validate",
    url: "http://hl7.org/fhir/OperationDefinition/Resource-validate",
    title: "Validate a resource",
    description: "Checks a resource against the R4 definitions as a create, update or delete would, and answers an OperationOutcome; nothing is stored.",
    types: ANY_TYPE,
    system: false,
    type_level: true,
    instance: true,
    affects_state: false,
    parameters: &[
        Param {
            name: "resource",
            use_: "in",
            min: 0,
            max: "1",
            type_: "Resource",
            documentation: "The resource (or send it as the body)",
        },
        Param {
            name: "mode",
            use_: "in",
            min: 0,
            max: "1",
            type_: "code",
            documentation: "create | update | delete",
        },
        Param {
            name: "profile",
            use_: "in",
            min: 0,
            max: "1",
            type_: "uri",
            documentation: "Only the base definition of the type",
        },
        Param {
            name: "return",
            use_: "out",
            min: 1,
            max: "1",
            type_: "OperationOutcome",
            documentation: "The issues found; one informational issue when there are none",
        },
    ],
    handler: |app, request, target| Box::pin(handle(app, request, target)),
};

/// What to validate.
struct Asked {
    resource: Option<Value>,
    mode: Option<String>,
    profile: Option<String>,
}

async fn handle(
    app: &App,
    request: &FhirRequest,
    target: Target<'_>,
) -> Result<FhirResponse, FhirError> {
    let resource_type = target.resource_type().map_or("", ResourceType::as_str);
    let asked = asked(request, resource_type)?;
    if let Some(profile) = &asked.profile {
        let base = format!("http://hl7.org/fhir/StructureDefinition/{resource_type}");
        if profile.split('|').next() != Some(base.as_str()) {
            return Err(FhirError::new(StatusCode::BAD_REQUEST, "not-supported", format!(
                "Validation against the profile '{profile}' is not supported; this server validates against the R4 base definitions"
            ))
            .at("Parameters.parameter.where(name = 'profile')"));
        }
    }
    let issues = match asked.mode.as_deref() {
        Some("delete") => delete_issues(app, request, target).await?,
        Some("create") | None => resource_issues(asked.resource.as_ref(), resource_type)?,
        Some("update") => {
            let mut issues = resource_issues(asked.resource.as_ref(), resource_type)?;
            issues.extend(update_id_issue(asked.resource.as_ref(), target));
            issues
        }
        Some(other) => {
            return Err(FhirError::bad_request(format!(
                "Unknown $validate mode '{other}': create, update or delete"
            ))
            .at("Parameters.parameter.where(name = 'mode')"));
        }
    };
    Ok(FhirResponse::value(StatusCode::OK, outcome(issues)))
}

/// The resource, mode and profile, from a Parameters body or a resource body and the URL.
fn asked(request: &FhirRequest, resource_type: &str) -> Result<Asked, FhirError> {
    let url_param = |name: &str| {
        request
            .params
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
    };
    let mut asked = Asked {
        resource: None,
        mode: url_param("mode"),
        profile: url_param("profile"),
    };
    if request.body.iter().all(u8::is_ascii_whitespace) {
        return Ok(asked);
    }
    let body = request.parse_body()?;
    let is_parameters = body["resourceType"] == "Parameters" && resource_type != "Parameters";
    if !is_parameters {
        asked.resource = Some(body);
        return Ok(asked);
    }
    // The Parameters are not checked as a whole: the resource inside is what is being
    // validated, and its problems are the answer, not a refusal.
    for part in body["parameter"].as_array().into_iter().flatten() {
        match part["name"].as_str() {
            Some("resource") => asked.resource = part.get("resource").cloned(),
            Some("mode") => asked.mode = part["valueCode"].as_str().map(str::to_owned),
            Some("profile") => {
                asked.profile = part["valueUri"]
                    .as_str()
                    .or(part["valueCanonical"].as_str())
                    .map(str::to_owned)
            }
            _ => {}
        }
    }
    Ok(asked)
}

/// What a create or update of `resource` would be refused for.
fn resource_issues(resource: Option<&Value>, resource_type: &str) -> Result<Vec<Issue>, FhirError> {
    let resource = resource.ok_or_else(|| {
        FhirError::bad_request(
            "$validate needs a resource: send it as the body or as the Parameters part 'resource'",
        )
    })?;
    Ok(match check_resource(resource, resource_type) {
        Ok(()) => Vec::new(),
        Err(error) => error.issues,
    })
}

/// An update names its resource: the body's id must be the URL's.
fn update_id_issue(resource: Option<&Value>, target: Target<'_>) -> Option<Issue> {
    let body_id = resource.and_then(|r| r["id"].as_str());
    let resource_type = target.resource_type().map_or("", ResourceType::as_str);
    let diagnostics = match (target.id(), body_id) {
        (_, None) => "An update needs the resource's id".to_owned(),
        (Some(url_id), Some(body_id)) if url_id != body_id => {
            format!("The resource id '{body_id}' does not match the URL's '{url_id}'")
        }
        _ => return None,
    };
    Some(Issue {
        severity: "error",
        code: "invalid",
        diagnostics,
        expression: vec![format!("{resource_type}.id")],
    })
}

/// A delete needs something to delete.
async fn delete_issues(
    app: &App,
    request: &FhirRequest,
    target: Target<'_>,
) -> Result<Vec<Issue>, FhirError> {
    let Target::Instance(resource_type, id) = target else {
        return Err(FhirError::bad_request(
            "mode=delete validates the delete of one resource: invoke it as [type]/[id]/$validate",
        ));
    };
    let current = app.store.read(request.tenant, &resource_type, &id).await?;
    Ok(match current {
        Some(version) if !version.is_deleted() => Vec::new(),
        _ => vec![Issue {
            severity: "error",
            code: "not-found",
            diagnostics: format!("{resource_type}/{id} is not known"),
            expression: Vec::new(),
        }],
    })
}

/// The answer: the issues, or one saying there are none.
fn outcome(issues: Vec<Issue>) -> Value {
    if issues.is_empty() {
        return json!({"resourceType": "OperationOutcome", "issue": [{
            "severity": "information", "code": "informational",
            "diagnostics": "No issues found: the resource is valid R4"}]});
    }
    FhirError {
        status: StatusCode::OK,
        issues,
    }
    .outcome()
}
