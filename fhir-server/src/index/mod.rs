//! Search-index values extracted from a resource at write time.
//!
//! For every indexed search parameter of the resource's type (see `search::registry`), the
//! parameter's FHIRPath expression selects typed values, and each value becomes rows of its
//! parameter type's table. Rows exist for current versions only; the store replaces them in
//! the same transaction as the version, so a search right after a write sees it.

pub mod availability;
pub mod bounded;
pub mod claims;
mod normalize;

use fhir_model::fhirpath::Node;
use serde_json::Value;

use crate::ids::{ResourceType, is_valid_id};
use crate::params::dates;
use crate::params::parts::{part_number, parts_of};
use crate::params::registry::{ParamType, Registry, SearchParam};
pub use normalize::normalize;

/// A token value (`system|code`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct TokenRow {
    pub param: String,
    /// `""` when the value has no system.
    pub system: String,
    pub code: String,
}

/// A string value, normalized for the default and `:contains` searches, and exact.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct StringRow {
    pub param: String,
    /// The part of a HumanName or Address the value is (`part_number`), else 0.
    pub part: u8,
    pub norm: String,
    pub exact: String,
    /// The whole normalized value when `norm` holds only its first bytes (see `bounded`).
    pub long: Option<String>,
}

/// Where the rows of a parameter are: its key and, for a parameter answered from another's
/// rows (`registry::Derived`), the part they must be. `(key, None)` for every other one.
pub fn slot(resource_type: &str, param: &str) -> (i64, Option<u8>) {
    match Registry::r4().derived(resource_type, param) {
        Some(derived) => (key(resource_type, &derived.base), derived.part),
        None => (key(resource_type, param), None),
    }
}

/// A date value as the range it covers, in microseconds.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct DateRow {
    pub param: String,
    pub low: i64,
    pub high: i64,
}

impl DateRow {
    /// Whether the range is short (see `search::dates::SHORT_RANGE`).
    pub fn is_short(&self) -> bool {
        self.high.saturating_sub(self.low) < dates::SHORT_RANGE
    }
}

/// A reference: its target type and id when it names one, and the reference as written.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct ReferenceRow {
    pub param: String,
    pub target_type: String,
    pub target_id: String,
    pub url: String,
}

/// A reference and a date of one resource together, for a pair the registry names
/// (`registry::REFERENCE_DATE_PAIRS`): `param` is the pair's name (`schedule+start`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct RefDateRow {
    pub param: String,
    pub target_type: String,
    pub target_id: String,
    pub low: i64,
    pub high: i64,
}

impl RefDateRow {
    /// Whether the date range is short (see `search::dates::SHORT_RANGE`).
    pub fn is_short(&self) -> bool {
        self.high.saturating_sub(self.low) < dates::SHORT_RANGE
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct NumberRow {
    pub param: String,
    pub value: f64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct QuantityRow {
    pub param: String,
    pub system: String,
    pub code: String,
    pub value: f64,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct UriRow {
    pub param: String,
    pub value: String,
}

/// Every index row of one resource version.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct IndexRows {
    pub tokens: Vec<TokenRow>,
    pub strings: Vec<StringRow>,
    pub dates: Vec<DateRow>,
    pub references: Vec<ReferenceRow>,
    pub numbers: Vec<NumberRow>,
    pub quantities: Vec<QuantityRow>,
    pub uris: Vec<UriRow>,
    pub ref_dates: Vec<RefDateRow>,
}

/// The version of the extraction rules below and of the index tables' layout. Bump it
/// when a change needs every index row rebuilt; the server then reindexes at start.
const INDEX_FORMAT: u32 = 4;

/// Names the rules the search index is built with: the format above and the registry's
/// SearchParameter table. Stored beside the index (`store_meta.index_fingerprint`); a
/// server that finds another value rebuilds the index before it serves.
pub fn fingerprint() -> String {
    format!(
        "{INDEX_FORMAT}:{:08x}",
        key("", crate::params::registry::SOURCE)
    )
}

/// The integer key under which the index keeps the rows of one parameter of one resource
/// type: a stable hash of the pair (FNV-1a, folded to 31 bits, so it fits PostgreSQL's
/// INTEGER and four bytes of an SQLite record).
///
/// Naming the pair by a number rather than by its text keeps every index row and index
/// entry small (the text was most of their bytes). Being a hash, it needs no table of
/// names, is the same in every process and release, and does not move when parameters are
/// added; a unit test checks that no two keys of the registry collide.
pub fn key(resource_type: &str, param: &str) -> i64 {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0100_0000_01b3;
    let mut hash = OFFSET;
    for byte in resource_type
        .bytes()
        .chain(std::iter::once(0))
        .chain(param.bytes())
    {
        hash = (hash ^ u64::from(byte)).wrapping_mul(PRIME);
    }
    ((hash ^ (hash >> 31) ^ (hash >> 62)) & 0x7FFF_FFFF) as i64
}

/// The key under which `:text` values of a token parameter are kept (in the string table).
pub fn text_key(code: &str) -> String {
    format!("{code}:text")
}

/// The key under which `Reference.identifier` values of a reference parameter are kept
/// (in the token table), for the `:identifier` modifier.
pub fn identifier_key(code: &str) -> String {
    format!("{code}:identifier")
}

/// The key under which identifier types are kept (in the token table, code
/// `type-code|value`), for the `:of-type` modifier.
pub fn of_type_key(code: &str) -> String {
    format!("{code}:of-type")
}

/// Extracts the index rows of a resource of `resource_type`.
pub fn extract(resource_type: &str, resource: &Value) -> IndexRows {
    let mut rows = IndexRows::default();
    let registry = Registry::r4();
    for param in registry.params(resource_type) {
        if !param.is_indexed() || registry.derived(resource_type, &param.code).is_some() {
            continue;
        }
        let Some(expression) = &param.expression else {
            continue;
        };
        for node in expression.evaluate(resource) {
            add(&mut rows, param, &node);
        }
    }
    rows.tokens.sort();
    rows.tokens.dedup();
    rows.strings.sort();
    rows.strings.dedup();
    rows.dates.sort();
    rows.dates.dedup();
    rows.references.sort();
    rows.references.dedup();
    rows.uris.sort();
    rows.uris.dedup();
    rows.numbers.dedup();
    rows.quantities.dedup();
    add_reference_date_pairs(&mut rows, resource_type);
    bounded::bound_rows(&mut rows);
    rows
}

/// The reference rows of only the parameters `codes` of a resource: what a patient
/// compartment check needs, without extracting every other value of the resource.
pub fn references_of(resource_type: &str, resource: &Value, codes: &[String]) -> Vec<ReferenceRow> {
    let mut rows = IndexRows::default();
    for param in Registry::r4().params(resource_type) {
        if param.kind != ParamType::Reference || !codes.contains(&param.code) {
            continue;
        }
        if let Some(expression) = &param.expression {
            for node in expression.evaluate(resource) {
                add_reference(&mut rows, &param.code, &node.value, node.type_code);
            }
        }
    }
    rows.references
}

/// The rows of each reference and date pair of the type: every local target of the
/// reference with every range of the date.
fn add_reference_date_pairs(rows: &mut IndexRows, resource_type: &str) {
    for &(pair_type, reference, date) in crate::params::registry::REFERENCE_DATE_PAIRS {
        if pair_type != resource_type {
            continue;
        }
        let name = crate::params::registry::pair_name(reference, date);
        for target in rows
            .references
            .iter()
            .filter(|r| r.param == reference && !r.target_id.is_empty())
        {
            for range in rows.dates.iter().filter(|d| d.param == date) {
                rows.ref_dates.push(RefDateRow {
                    param: name.clone(),
                    target_type: target.target_type.clone(),
                    target_id: target.target_id.clone(),
                    low: range.low,
                    high: range.high,
                });
            }
        }
    }
    rows.ref_dates.sort();
    rows.ref_dates.dedup();
}

fn add(rows: &mut IndexRows, param: &SearchParam, node: &Node<'_>) {
    let value: &Value = &node.value;
    match param.kind {
        ParamType::String => add_strings(rows, &param.code, value, node.type_code),
        ParamType::Token => add_tokens(rows, &param.code, value, node.type_code),
        ParamType::Date => add_dates(rows, &param.code, value, node.type_code),
        ParamType::Reference => add_reference(rows, &param.code, value, node.type_code),
        ParamType::Number => {
            if let Some(number) = as_number(value) {
                rows.numbers.push(NumberRow {
                    param: param.code.clone(),
                    value: number,
                });
            }
        }
        ParamType::Quantity => add_quantity(rows, &param.code, value, node.type_code),
        ParamType::Uri => {
            if let Some(text) = value.as_str() {
                rows.uris.push(UriRow {
                    param: param.code.clone(),
                    value: text.to_owned(),
                });
            }
        }
        ParamType::Composite | ParamType::Special => {}
    }
}

fn push_string(rows: &mut IndexRows, param: &str, text: &str) {
    push_part(rows, param, 0, text);
}

fn push_part(rows: &mut IndexRows, param: &str, part: u8, text: &str) {
    let norm = normalize(text);
    if !norm.is_empty() {
        rows.strings.push(StringRow {
            param: param.to_owned(),
            part,
            norm,
            exact: text.to_owned(),
            long: None,
        });
    }
}

/// The strings under `keys` of a complex value (each a string or an array of them).
fn strings_of<'a>(value: &'a Value, keys: &[&'a str]) -> Vec<(&'a str, &'a str)> {
    let mut found = Vec::new();
    for &key in keys {
        match value.get(key) {
            Some(Value::String(text)) => found.push((key, text.as_str())),
            Some(Value::Array(items)) => {
                found.extend(items.iter().filter_map(Value::as_str).map(|t| (key, t)));
            }
            _ => {}
        }
    }
    found
}

fn add_strings(rows: &mut IndexRows, param: &str, value: &Value, type_code: &str) {
    let parts = parts_of(type_code);
    if !parts.is_empty() {
        for (part, text) in strings_of(value, parts) {
            push_part(rows, param, part_number(part).unwrap_or(0), text);
        }
        return;
    }
    let strings = match type_code {
        "ContactPoint" | "Identifier" => strings_of(value, &["value"]),
        "CodeableConcept" => strings_of(value, &["text"]),
        "Coding" => strings_of(value, &["display"]),
        _ => value.as_str().map(|t| ("", t)).into_iter().collect(),
    };
    for (_, text) in strings {
        push_string(rows, param, text);
    }
}

fn push_token(rows: &mut IndexRows, param: &str, system: Option<&Value>, code: Option<&Value>) {
    if let Some(code) = code.and_then(Value::as_str) {
        rows.tokens.push(TokenRow {
            param: param.to_owned(),
            system: system
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned(),
            code: code.to_owned(),
        });
    }
}

fn add_coding(rows: &mut IndexRows, param: &str, coding: &Value) {
    push_token(rows, param, coding.get("system"), coding.get("code"));
    if let Some(display) = coding.get("display").and_then(Value::as_str) {
        push_string(rows, &text_key(param), display);
    }
}

fn add_tokens(rows: &mut IndexRows, param: &str, value: &Value, type_code: &str) {
    match type_code {
        "Coding" => add_coding(rows, param, value),
        "CodeableConcept" => {
            for coding in value
                .get("coding")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                add_coding(rows, param, coding);
            }
            if let Some(text) = value.get("text").and_then(Value::as_str) {
                push_string(rows, &text_key(param), text);
            }
        }
        "Identifier" => {
            push_token(rows, param, value.get("system"), value.get("value"));
            let Some(identifier) = value.get("value").and_then(Value::as_str) else {
                return;
            };
            if let Some(kind) = value.get("type") {
                for coding in kind
                    .get("coding")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                {
                    if let Some(code) = coding.get("code").and_then(Value::as_str) {
                        rows.tokens.push(TokenRow {
                            param: of_type_key(param),
                            system: coding
                                .get("system")
                                .and_then(Value::as_str)
                                .unwrap_or_default()
                                .to_owned(),
                            code: format!("{code}|{identifier}"),
                        });
                    }
                }
                if let Some(text) = kind.get("text").and_then(Value::as_str) {
                    push_string(rows, &text_key(param), text);
                }
            }
        }
        "ContactPoint" => push_token(rows, param, None, value.get("value")),
        "boolean" => {
            if let Some(flag) = value.as_bool() {
                rows.tokens.push(TokenRow {
                    param: param.to_owned(),
                    system: String::new(),
                    code: flag.to_string(),
                });
            }
        }
        _ => push_token(rows, param, None, Some(value)),
    }
}

fn add_dates(rows: &mut IndexRows, param: &str, value: &Value, type_code: &str) {
    let mut push = |low: i64, high: i64| {
        rows.dates.push(DateRow {
            param: param.to_owned(),
            low,
            high,
        });
    };
    let bound = |key: &str, low: bool| {
        value
            .get(key)
            .and_then(Value::as_str)
            .and_then(dates::range)
            .map(|(l, h)| if low { l } else { h })
    };
    match type_code {
        "Period" => {
            let low = bound("start", true).unwrap_or(dates::MIN);
            let high = bound("end", false).unwrap_or(dates::MAX);
            if value.get("start").is_some() || value.get("end").is_some() {
                push(low, high);
            }
        }
        "Timing" => {
            for event in value
                .get("event")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                if let Some((low, high)) = event.as_str().and_then(dates::range) {
                    push(low, high);
                }
            }
            if let Some(period) = value.get("repeat").and_then(|r| r.get("boundsPeriod")) {
                let low = period
                    .get("start")
                    .and_then(Value::as_str)
                    .and_then(dates::range)
                    .map_or(dates::MIN, |r| r.0);
                let high = period
                    .get("end")
                    .and_then(Value::as_str)
                    .and_then(dates::range)
                    .map_or(dates::MAX, |r| r.1);
                push(low, high);
            }
        }
        _ => {
            if let Some((low, high)) = value.as_str().and_then(dates::range) {
                push(low, high);
            }
        }
    }
}

/// Splits a reference (`Patient/1`, `Patient/1/_history/2`, `http://host/fhir/Patient/1`)
/// into its target type and id, when it names one.
pub fn parse_reference(reference: &str) -> Option<(&str, &str)> {
    let reference = match reference.find("/_history/") {
        Some(at) => &reference[..at],
        None => reference,
    };
    let mut segments = reference.rsplit('/');
    let id = segments.next()?;
    let resource_type = segments.next()?;
    (ResourceType::parse(resource_type).is_some() && is_valid_id(id)).then_some((resource_type, id))
}

/// The target of a reference to a resource on this server: a relative `Type/id` (with or
/// without `/_history/n`). An absolute URL may name another server's resource with the same
/// type and id, so it is kept as its URL only (and found by that URL).
fn local_target(reference: &str) -> (&str, &str) {
    if reference.contains("://") {
        return ("", "");
    }
    parse_reference(reference).unwrap_or(("", ""))
}

/// A reference row: by target type and id when it names a resource here, else by the
/// reference as written (the url is left empty when the target says it all).
fn push_reference(rows: &mut IndexRows, param: &str, reference: &str) {
    let (target_type, target_id) = local_target(reference);
    rows.references.push(ReferenceRow {
        param: param.to_owned(),
        target_type: target_type.to_owned(),
        target_id: target_id.to_owned(),
        url: if target_id.is_empty() {
            reference.to_owned()
        } else {
            String::new()
        },
    });
}

fn add_reference(rows: &mut IndexRows, param: &str, value: &Value, type_code: &str) {
    match type_code {
        "Reference" => {
            if let Some(reference) = value.get("reference").and_then(Value::as_str)
                && !reference.starts_with('#')
            {
                push_reference(rows, param, reference);
            }
            if let Some(identifier) = value.get("identifier") {
                push_token(
                    rows,
                    &identifier_key(param),
                    identifier.get("system"),
                    identifier.get("value"),
                );
            }
        }
        _ => {
            if let Some(url) = value.as_str() {
                push_reference(rows, param, url);
            }
        }
    }
}

fn as_number(value: &Value) -> Option<f64> {
    match value {
        Value::Number(number) => number.as_f64().or_else(|| number.to_string().parse().ok()),
        _ => None,
    }
}

fn add_quantity(rows: &mut IndexRows, param: &str, value: &Value, type_code: &str) {
    let Some(number) = value.get("value").and_then(as_number) else {
        return;
    };
    let text = |key: &str| {
        value
            .get(key)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned()
    };
    if type_code == "Money" {
        rows.quantities.push(QuantityRow {
            param: param.to_owned(),
            system: "urn:iso:std:iso:4217".to_owned(),
            code: text("currency"),
            value: number,
        });
        return;
    }
    let (system, code, unit) = (text("system"), text("code"), text("unit"));
    rows.quantities.push(QuantityRow {
        param: param.to_owned(),
        system,
        code: code.clone(),
        value: number,
    });
    if !unit.is_empty() && unit != code {
        // `value||unit` searches match the human unit too.
        rows.quantities.push(QuantityRow {
            param: param.to_owned(),
            system: String::new(),
            code: unit,
            value: number,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_patient_yields_rows_of_every_kind_it_has() {
        let rows = extract(
            "Patient",
            &json!({
                "resourceType": "Patient",
                "identifier": [{"system": "http://x", "value": "1",
                    "type": {"coding": [{"system": "http://t", "code": "MR"}], "text": "Medical record"}}],
                "name": [{"family": "Müller", "given": ["Ana", "Q"]}],
                "gender": "female",
                "birthDate": "1980-02-29",
                "active": true,
                "managingOrganization": {"reference": "Organization/o1"},
                "telecom": [{"system": "phone", "value": "555"}],
                "meta": {"tag": [{"system": "http://tags", "code": "vip"}], "profile": ["http://p"]}
            }),
        );
        let has_token = |param: &str, system: &str, code: &str| {
            rows.tokens
                .iter()
                .any(|t| t.param == param && t.system == system && t.code == code)
        };
        assert!(has_token("identifier", "http://x", "1"));
        assert!(has_token("identifier:of-type", "http://t", "MR|1"));
        assert!(has_token("gender", "", "female"));
        assert!(has_token("active", "", "true"));
        assert!(has_token("phone", "", "555"));
        assert!(has_token("_tag", "http://tags", "vip"));
        assert!(
            rows.strings
                .iter()
                .any(|s| s.param == "name" && s.norm == "muller" && s.exact == "Müller")
        );
        let family = part_number("family");
        assert!(
            rows.strings
                .iter()
                .any(|s| s.param == "name" && Some(s.part) == family && s.norm == "muller")
        );
        assert!(!rows.strings.iter().any(|s| s.param == "family"));
        assert!(
            rows.strings
                .iter()
                .any(|s| s.param == "identifier:text" && s.norm == "medical record")
        );
        assert!(
            rows.dates
                .iter()
                .any(|d| d.param == "birthdate"
                    && Some((d.low, d.high)) == dates::range("1980-02-29"))
        );
        assert!(rows.references.iter().any(|r| r.param == "organization"
            && r.target_type == "Organization"
            && r.target_id == "o1"));
        assert!(
            rows.uris
                .iter()
                .any(|u| u.param == "_profile" && u.value == "http://p")
        );
    }

    #[test]
    fn no_two_index_keys_of_the_registry_collide() {
        let registry = Registry::r4();
        let mut seen = std::collections::HashMap::new();
        for resource_type in fhir_model::Definitions::r4().resource_types() {
            for param in registry.params(resource_type) {
                let code = param.code.as_str();
                for name in [
                    code.to_owned(),
                    text_key(code),
                    identifier_key(code),
                    of_type_key(code),
                ] {
                    let key = key(resource_type, &name);
                    assert!((0..=i64::from(i32::MAX)).contains(&key));
                    let pair = (resource_type.to_owned(), name);
                    if let Some(other) = seen.insert(key, pair.clone()) {
                        assert_eq!(other, pair, "index key {key} collides");
                    }
                }
            }
        }
        for &(resource_type, reference, date) in crate::params::registry::REFERENCE_DATE_PAIRS {
            let name = crate::params::registry::pair_name(reference, date);
            let pair = (resource_type.to_owned(), name.clone());
            if let Some(other) = seen.insert(key(resource_type, &name), pair.clone()) {
                assert_eq!(other, pair, "index key of {name} collides");
            }
        }
        assert!(seen.len() > 5000, "{} keys", seen.len());
    }

    #[test]
    fn periods_and_open_ends_become_ranges() {
        let rows = extract(
            "Encounter",
            &json!({"resourceType": "Encounter", "status": "finished",
            "class": {"code": "AMB"}, "period": {"start": "2024-01-01T10:00:00Z"}}),
        );
        let date = rows
            .dates
            .iter()
            .find(|d| d.param == "date")
            .expect("date row");
        assert_eq!(date.low, dates::range("2024-01-01T10:00:00Z").unwrap().0);
        assert_eq!(date.high, dates::MAX);
    }

    #[test]
    fn references_are_split_when_they_name_a_resource() {
        assert_eq!(parse_reference("Patient/1"), Some(("Patient", "1")));
        assert_eq!(
            parse_reference("http://h/fhir/Patient/1/_history/3"),
            Some(("Patient", "1"))
        );
        assert_eq!(parse_reference("urn:uuid:123"), None);
        assert_eq!(parse_reference("Foo/1"), None);
    }

    #[test]
    fn only_relative_references_are_local() {
        let rows = extract(
            "Encounter",
            &json!({"resourceType": "Encounter", "status": "finished", "class": {"code": "AMB"},
                "subject": {"reference": "http://elsewhere.example/fhir/Patient/1"},
                "appointment": [{"reference": "Appointment/2/_history/3"}]}),
        );
        let subject = rows
            .references
            .iter()
            .find(|r| r.param == "subject")
            .unwrap();
        assert_eq!(
            (subject.target_type.as_str(), subject.target_id.as_str()),
            ("", "")
        );
        assert_eq!(subject.url, "http://elsewhere.example/fhir/Patient/1");
        let appointment = rows
            .references
            .iter()
            .find(|r| r.param == "appointment")
            .unwrap();
        assert_eq!(
            (
                appointment.target_type.as_str(),
                appointment.target_id.as_str()
            ),
            ("Appointment", "2")
        );
    }
}
