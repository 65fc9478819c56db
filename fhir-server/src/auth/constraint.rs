//! Whether one resource meets a scope's query constraint
//! (`user/Observation.cruds?category=laboratory`), judged in memory from the values the
//! search index holds for it (`index::extract`). What a write, a vread and each version of
//! a history are checked against under such a scope; searches and plain reads run the
//! constraint as a search instead (`http::guard`).
//!
//! Judged here: token parameters (`code`, `system|code`, `|code`, `system|`), string
//! parameters (the default starts-with match, and `:exact`), references (`Type/id`, a bare
//! id, an absolute URL) and uris (equal). Comma-separated values are alternatives; every
//! parameter of the constraint must hold. Anything else cannot be judged here, and what
//! cannot be judged is refused, never allowed by guess.

use serde_json::Value;

use super::enforce::forbidden;
use crate::error::FhirError;
use crate::ids::TenantId;
use crate::index::{self, IndexRows, normalize};
use crate::params::registry::{ParamType, Registry};
use crate::store::Store;

/// A write, as a query-constrained scope's check sees it.
pub enum Write<'a> {
    Create(&'a Value),
    /// `PUT [type]/[id]` with this body.
    Update(&'a str, &'a Value),
    Delete(&'a str),
}

impl<'a> Write<'a> {
    /// The write a request is, when it is one a query-constrained scope may make: a plain
    /// create (not `If-None-Exist`), `PUT [type]/[id]` or `DELETE [type]/[id]`. Conditional
    /// forms and PATCH are not: their effect is known only once written.
    pub fn of(
        method: &axum::http::Method,
        segments: &'a [String],
        resource: Option<&'a Value>,
        if_none_exist: bool,
    ) -> Option<Write<'a>> {
        use axum::http::Method;
        match (method, segments, resource) {
            (&Method::POST, [_], Some(new)) if !if_none_exist => Some(Write::Create(new)),
            (&Method::PUT, [_, id], Some(new)) => Some(Write::Update(id, new)),
            (&Method::DELETE, [_, id], _) => Some(Write::Delete(id)),
            _ => None,
        }
    }
}

/// A write under a query-constrained scope: the resource it leaves must meet the
/// constraint (else 403), and so must the one it replaces or removes (else 404: what the
/// scope cannot see, its holder does not learn exists).
pub async fn check_write(
    store: &Store,
    tenant: TenantId,
    resource_type: &str,
    write: Write<'_>,
    constraint: &[(String, String)],
) -> Result<(), FhirError> {
    let judged = |resource: &Value| meets(resource_type, resource, constraint).map_err(forbidden);
    let (new, id) = match write {
        Write::Create(new) => (Some(new), None),
        Write::Update(id, new) => (Some(new), Some(id)),
        Write::Delete(id) => (None, Some(id)),
    };
    if let Some(new) = new
        && !judged(new)?
    {
        return Err(forbidden(
            "The resource does not meet the access token's query constraint",
        ));
    }
    let Some(id) = id else { return Ok(()) };
    let current = store.read(tenant, resource_type, id).await?;
    if let Some(body) = current.and_then(|version| version.body) {
        let value: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        if !judged(&value)? {
            return Err(FhirError::not_found("No such resource"));
        }
    }
    Ok(())
}

/// Whether `resource` (of `resource_type`) meets every parameter of `constraint`; `Err`
/// names a parameter this cannot judge.
pub fn meets(
    resource_type: &str,
    resource: &Value,
    constraint: &[(String, String)],
) -> Result<bool, String> {
    let rows = index::extract(resource_type, resource);
    for (name, value) in constraint {
        if !holds(resource_type, &rows, name, value)? {
            return Ok(false);
        }
    }
    Ok(true)
}

fn cannot_judge(name: &str) -> String {
    format!("the scope's query constraint on '{name}' cannot be checked for this interaction")
}

/// Whether one parameter of the constraint holds: any of its comma-separated values.
fn holds(resource_type: &str, rows: &IndexRows, name: &str, value: &str) -> Result<bool, String> {
    let (code, modifier) = match name.split_once(':') {
        Some((code, modifier)) => (code, Some(modifier)),
        None => (name, None),
    };
    let registry = Registry::r4();
    let param = registry
        .get(resource_type, code)
        .filter(|param| param.is_indexed())
        .ok_or_else(|| cannot_judge(name))?;
    // A parameter answered from another's rows (`given` from `name`'s parts).
    let (key, part) = match registry.derived(resource_type, code) {
        Some(derived) => (derived.base.as_str(), derived.part),
        None => (code, None),
    };
    let mut alternatives = value.split(',');
    match (param.kind, modifier) {
        (ParamType::Token, None) => Ok(alternatives.any(|v| token_holds(rows, key, v))),
        (ParamType::String, None | Some("exact")) => {
            let exact = modifier.is_some();
            Ok(alternatives.any(|v| string_holds(rows, key, part, v, exact)))
        }
        (ParamType::Reference, None) => Ok(alternatives.any(|v| reference_holds(rows, key, v))),
        (ParamType::Uri, None) => Ok(alternatives.any(|v| {
            rows.uris
                .iter()
                .any(|row| row.param == key && row.value == v)
        })),
        _ => Err(cannot_judge(name)),
    }
}

fn token_holds(rows: &IndexRows, param: &str, value: &str) -> bool {
    let (system, code) = match value.split_once('|') {
        Some((system, code)) => (Some(system), code),
        None => (None, value),
    };
    rows.tokens.iter().any(|row| {
        row.param == param
            && system.is_none_or(|system| row.system == system)
            && (code.is_empty() && system.is_some_and(|s| !s.is_empty()) || row.code == code)
    })
}

fn string_holds(rows: &IndexRows, param: &str, part: Option<u8>, value: &str, exact: bool) -> bool {
    let wanted = normalize(value);
    rows.strings.iter().any(|row| {
        row.param == param
            && part.is_none_or(|part| row.part == part)
            && if exact {
                row.exact == value
            } else {
                row.long
                    .as_deref()
                    .unwrap_or(&row.norm)
                    .starts_with(&wanted)
            }
    })
}

fn reference_holds(rows: &IndexRows, param: &str, value: &str) -> bool {
    rows.references.iter().any(|row| {
        row.param == param
            && match value.split_once('/') {
                _ if value.contains("://") => row.url == value,
                Some((target_type, id)) => row.target_type == target_type && row.target_id == id,
                None => row.target_id == value,
            }
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::meets;

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn lab() -> serde_json::Value {
        json!({"resourceType": "Observation", "id": "o1", "status": "final",
            "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "laboratory"}]}],
            "code": {"text": "glucose"}, "subject": {"reference": "Patient/p1"}})
    }

    #[test]
    fn tokens_in_every_form() {
        let system = "http://terminology.hl7.org/CodeSystem/observation-category";
        for value in [
            "laboratory".to_owned(),
            format!("{system}|laboratory"),
            format!("{system}|"),
            "vital-signs,laboratory".to_owned(),
        ] {
            assert_eq!(
                meets("Observation", &lab(), &pairs(&[("category", &value)])),
                Ok(true),
                "{value}"
            );
        }
        for value in ["vital-signs", "|laboratory", "http://other|laboratory", ""] {
            assert_eq!(
                meets("Observation", &lab(), &pairs(&[("category", value)])),
                Ok(false),
                "{value}"
            );
        }
    }

    #[test]
    fn every_parameter_must_hold() {
        let both = pairs(&[("category", "laboratory"), ("subject", "Patient/p1")]);
        assert_eq!(meets("Observation", &lab(), &both), Ok(true));
        let other = pairs(&[("category", "laboratory"), ("subject", "Patient/p2")]);
        assert_eq!(meets("Observation", &lab(), &other), Ok(false));
        assert_eq!(
            meets("Observation", &lab(), &pairs(&[("subject", "p1")])),
            Ok(true)
        );
    }

    #[test]
    fn strings_start_with_or_are_exact() {
        let patient = json!({"resourceType": "Patient", "id": "p1", "name": [{"family": "Müller", "given": ["Anna"]}]});
        assert_eq!(
            meets("Patient", &patient, &pairs(&[("family", "mul")])),
            Ok(true)
        );
        assert_eq!(
            meets("Patient", &patient, &pairs(&[("given", "ann")])),
            Ok(true)
        );
        assert_eq!(
            meets("Patient", &patient, &pairs(&[("given", "mul")])),
            Ok(false)
        );
        assert_eq!(
            meets("Patient", &patient, &pairs(&[("family:exact", "Müller")])),
            Ok(true)
        );
        assert_eq!(
            meets("Patient", &patient, &pairs(&[("family:exact", "muller")])),
            Ok(false)
        );
    }

    #[test]
    fn what_cannot_be_judged_is_an_error() {
        assert!(meets("Observation", &lab(), &pairs(&[("date", "ge2020")])).is_err());
        assert!(
            meets(
                "Observation",
                &lab(),
                &pairs(&[("category:not", "laboratory")])
            )
            .is_err()
        );
        assert!(meets("Observation", &lab(), &pairs(&[("no-such-param", "x")])).is_err());
    }
}
