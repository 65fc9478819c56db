//! `[type]/[id]/$meta`, `$meta-add` and `$meta-delete`
//! (https://hl7.org/fhir/R4/resource-operations.html#meta): a resource's profiles, tags and
//! security labels, read, added to or removed from, as `Parameters` with a `Meta`.
//!
//! Tags and labels are sets keyed by system and code (display and version are ignored when
//! matching), profiles by URL. Unlike the spec's note that these operations leave the
//! version alone, every change here is a new version: history is how this server answers
//! who changed what, and versions are never edited in place. The tags the server owns
//! (`resource::SERVER_TAG_SYSTEMS`) cannot be added or removed this way. Only the instance
//! level is offered, so the definitions are the server's own (urn:fhir-server:...), not the
//! spec's, which also has the system and type levels.

use axum::http::StatusCode;
use serde_json::{Value, json};

use super::{ANY_TYPE, Operation, Param, Target};
use crate::app::App;
use crate::error::FhirError;
use crate::interaction::update::Rewritten;
use crate::rest::request::{FhirRequest, check_resource};
use crate::rest::response::FhirResponse;
use crate::store::{Method, Outcome};

const RETURN: Param = Param {
    name: "return",
    use_: "out",
    min: 1,
    max: "1",
    type_: "Meta",
    documentation: "The resource's meta after the operation",
};

/// The `meta` input of `$meta-add` and `$meta-delete`.
const fn meta_in(documentation: &'static str) -> Param {
    Param {
        name: "meta",
        use_: "in",
        min: 1,
        max: "1",
        type_: "Meta",
        documentation,
    }
}

/// `$meta` on one resource.
pub const META: Operation = Operation {
    name: "meta",
    id: "Resource-meta",
    url: "urn:fhir-server:OperationDefinition/Resource-meta",
    title: "Access a list of profiles, tags, and security labels",
    description: "The profiles, tags and security labels of one resource.",
    types: ANY_TYPE,
    system: false,
    type_level: false,
    instance: true,
    affects_state: false,
    parameters: &[RETURN],
    handler: |app, request, target| Box::pin(read_meta(app, request, target)),
};

/// `$meta-add` on one resource.
pub const META_ADD: Operation = Operation {
    name: "meta-add",
    id: "Resource-meta-add",
    url: "urn:fhir-server:OperationDefinition/Resource-meta-add",
    title: "Add profiles, tags, and security labels to a resource",
    description: "Adds the profiles, tags and security labels of the given Meta to the resource (a new version).",
    types: ANY_TYPE,
    system: false,
    type_level: false,
    instance: true,
    affects_state: true,
    parameters: &[meta_in("What to add"), RETURN],
    handler: |app, request, target| Box::pin(change(app, request, target, Change::Add)),
};

/// `$meta-delete` on one resource.
pub const META_DELETE: Operation = Operation {
    name: "meta-delete",
    id: "Resource-meta-delete",
    url: "urn:fhir-server:OperationDefinition/Resource-meta-delete",
    title: "Delete profiles, tags, and security labels for a resource",
    description: "Removes the profiles, tags and security labels of the given Meta from the resource (a new version).",
    types: ANY_TYPE,
    system: false,
    type_level: false,
    instance: true,
    affects_state: true,
    parameters: &[meta_in("What to remove"), RETURN],
    handler: |app, request, target| Box::pin(change(app, request, target, Change::Delete)),
};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Change {
    Add,
    Delete,
}

async fn read_meta(
    app: &App,
    request: &FhirRequest,
    target: Target<'_>,
) -> Result<FhirResponse, FhirError> {
    Ok(answer(&current(app, request, target).await?))
}

async fn change(
    app: &App,
    request: &FhirRequest,
    target: Target<'_>,
    change: Change,
) -> Result<FhirResponse, FhirError> {
    let given = given_meta(request)?;
    let (resource_type, id) = match target {
        Target::Instance(resource_type, id) => (resource_type, id),
        _ => {
            return Err(FhirError::bad_request(
                "$meta-add and $meta-delete name one resource",
            ));
        }
    };
    let rewritten = crate::interaction::update::rewrite(
        app,
        request,
        (&resource_type, &id),
        (None, Method::Put),
        |current| {
            let mut resource = parse_stored(current)?;
            let before = resource["meta"].clone();
            apply(&mut resource, &given, change);
            // Nothing to add or remove: no new version.
            Ok((resource["meta"] != before).then_some(resource))
        },
    )
    .await?;
    let version = match rewritten {
        Rewritten::Unchanged(version)
        | Rewritten::Written(Outcome::Updated(version) | Outcome::Created(version)) => version,
        Rewritten::Written(_) => return Err(FhirError::internal("the update answered otherwise")),
    };
    Ok(answer(&parse_stored(&version)?))
}

/// A stored version's resource.
fn parse_stored(version: &crate::store::Version) -> Result<Value, FhirError> {
    let body = version.body.as_deref().unwrap_or_default();
    serde_json::from_slice(body).map_err(|e| FhirError::internal(format!("stored body: {e}")))
}

/// The current resource: 404 when unknown, 410 when deleted.
async fn current(app: &App, request: &FhirRequest, target: Target<'_>) -> Result<Value, FhirError> {
    let Target::Instance(resource_type, id) = target else {
        return Err(FhirError::bad_request(
            "$meta names one resource: [type]/[id]/$meta",
        ));
    };
    let version = crate::interaction::read::current(app, request, &resource_type, &id).await?;
    parse_stored(&version)
}

/// The `meta` part of the Parameters body.
fn given_meta(request: &FhirRequest) -> Result<Value, FhirError> {
    let body = request.parse_body()?;
    check_resource(&body, "Parameters")?;
    body["parameter"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|part| part["name"] == "meta")
        .and_then(|part| part.get("valueMeta").cloned())
        .ok_or_else(|| {
            FhirError::bad_request("The Parameters need a part 'meta' with a valueMeta")
                .at("Parameters.parameter")
        })
}

/// Adds or removes the profiles, tags and security labels of `given` in `resource`.
fn apply(resource: &mut Value, given: &Value, change: Change) {
    let same_coding = |a: &Value, b: &Value| a["system"] == b["system"] && a["code"] == b["code"];
    let same_url = |a: &Value, b: &Value| a == b;
    let mut meta = resource["meta"].take();
    if !meta.is_object() {
        meta = json!({});
    }
    for (key, same) in [
        ("profile", &same_url as &dyn Fn(&Value, &Value) -> bool),
        ("tag", &same_coding),
        ("security", &same_coding),
    ] {
        let mut items: Vec<Value> = meta[key].as_array().cloned().unwrap_or_default();
        for item in given[key].as_array().into_iter().flatten() {
            let present = items.iter().position(|existing| same(existing, item));
            match (change, present) {
                (Change::Add, None) => items.push(item.clone()),
                (Change::Delete, Some(position)) => {
                    items.remove(position);
                }
                _ => {}
            }
        }
        if let Some(object) = meta.as_object_mut() {
            if items.is_empty() {
                object.shift_remove(key);
            } else {
                object.insert(key.to_owned(), Value::Array(items));
            }
        }
    }
    resource["meta"] = meta;
}

/// `Parameters` with the resource's meta as `return`.
fn answer(resource: &Value) -> FhirResponse {
    let meta = resource.get("meta").cloned().unwrap_or_else(|| json!({}));
    FhirResponse::value(
        StatusCode::OK,
        json!({"resourceType": "Parameters", "parameter": [{"name": "return", "valueMeta": meta}]}),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_are_sets_by_system_and_code_and_profiles_by_url() {
        let mut resource = json!({"resourceType": "Patient", "meta": {"versionId": "1",
            "tag": [{"system": "s", "code": "a", "display": "A"}], "profile": ["p1"]}});
        let given = json!({"tag": [{"system": "s", "code": "a"}, {"system": "s", "code": "b"}],
            "profile": ["p1", "p2"], "security": [{"system": "v", "code": "R"}]});
        apply(&mut resource, &given, Change::Add);
        assert_eq!(resource["meta"]["tag"].as_array().unwrap().len(), 2);
        assert_eq!(resource["meta"]["profile"], json!(["p1", "p2"]));
        assert_eq!(resource["meta"]["security"][0]["code"], "R");
        apply(&mut resource, &given, Change::Delete);
        assert_eq!(resource["meta"], json!({"versionId": "1"}));
    }
}
