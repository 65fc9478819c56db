//! From query parameters to a [`Query`], following the R4 search page
//! (https://hl7.org/fhir/R4/search.html): parameter types, modifiers and prefixes, chains,
//! `_has`, and the result parameters. A malformed value is a 400; an unknown parameter is
//! ignored (and left out of the self link) unless the client asked for strict handling.

use fhir_model::Definitions;

use super::cursor::Cursor;
use super::query::{
    Clause, Condition, DateBound, Include, Prefix, Query, SortKey, SortKind, Summary, Table, Total,
};
use crate::error::FhirError;
use crate::ids::ResourceType;
use crate::index::{identifier_key, normalize, of_type_key, parse_reference, text_key};
use crate::params::dates;
use crate::params::registry::{ParamType, Registry, SearchParam};

/// Parameters that never select resources and are handled elsewhere (format, paging).
const IGNORED: &[&str] = &["_format", "_pretty"];

/// How deep chains and `_has` may nest.
const MAX_DEPTH: usize = 4;

/// Bounds on one search, so that no request can take the database's time or the server's
/// memory: search parameters (each an AND), values in all (each comma an OR), `_sort` keys,
/// and `_include` / `_revinclude` parameters. Real searches stay far below them.
pub const MAX_CONDITIONS: usize = 64;
pub const MAX_VALUES: usize = 1000;
pub const MAX_SORT_KEYS: usize = 8;
pub const MAX_INCLUDES: usize = 16;

/// The parameters that shape the answer rather than select resources.
const RESULT_PARAMETERS: &[&str] = &[
    "_count",
    "_page",
    "_sort",
    "_total",
    "_summary",
    "_elements",
    "_format",
    "_pretty",
    "_contained",
    "_containedType",
];

impl Query {
    /// Parses query parameters for a search on `resource_type`.
    pub fn parse(
        resource_type: &str,
        params: &[(String, String)],
        strict: bool,
    ) -> Result<Query, FhirError> {
        let mut query = Query {
            resource_type: resource_type.to_owned(),
            ..Query::default()
        };
        check_bounds(params)?;
        for (name, value) in params {
            if IGNORED.contains(&name.as_str()) {
                continue;
            }
            if parse_result_parameter(&mut query, name, value)? {
                continue;
            }
            match parse_clause(resource_type, name, value, 0)? {
                Some(clause) => {
                    query.clauses.push(clause);
                    query.applied.push((name.clone(), value.clone()));
                }
                None if strict => {
                    return Err(FhirError::bad_request(format!(
                        "Unknown or unsupported search parameter '{name}' for {resource_type}"
                    )));
                }
                None => {}
            }
        }
        merge_date_windows(&mut query.clauses);
        Ok(query)
    }
}

/// Merges single-valued date clauses on one parameter (`date=ge2024-03-01&date=lt2024-03-08`)
/// into one window that a single index row must meet, so the window is one index range.
/// For single-valued elements (start, birthDate, created...) this is the same as AND-ing
/// the clauses; for repeating ones it asks that one value lie in the window.
fn merge_date_windows(clauses: &mut Vec<Clause>) {
    let mut merged: Vec<Clause> = Vec::with_capacity(clauses.len());
    for clause in clauses.drain(..) {
        if let Clause::Index {
            table: Table::Date,
            param,
            any,
            negate: false,
        } = &clause
            && let [Condition::Date(bounds)] = any.as_slice()
        {
            let window = merged.iter_mut().find_map(|earlier| match earlier {
                Clause::Index {
                    table: Table::Date,
                    param: p,
                    any,
                    negate: false,
                } if p == param => match any.as_mut_slice() {
                    [Condition::Date(window)] => Some(window),
                    _ => None,
                },
                _ => None,
            });
            if let Some(window) = window {
                window.extend(bounds.iter().copied());
                continue;
            }
        }
        merged.push(clause);
    }
    *clauses = merged;
}

fn bad(message: String) -> FhirError {
    FhirError::bad_request(message)
}

/// Refuses control characters and searches beyond the bounds above, naming what is wrong.
fn check_bounds(params: &[(String, String)]) -> Result<(), FhirError> {
    let mut conditions = 0;
    let mut values = 0;
    let mut includes = 0;
    for (name, value) in params {
        if name.contains(fhir_model::validate::is_control)
            || value.contains(fhir_model::validate::is_control)
        {
            return Err(bad(format!(
                "The search parameter '{}' holds a control character; FHIR strings allow only tab, CR and LF below U+0020",
                name.replace(fhir_model::validate::is_control, "?")
            )));
        }
        let base = name.split(':').next().unwrap_or_default();
        match base {
            "_sort" if value.split(',').count() > MAX_SORT_KEYS => {
                return Err(bad(format!("_sort takes at most {MAX_SORT_KEYS} keys")));
            }
            "_include" | "_revinclude" => includes += 1,
            _ if RESULT_PARAMETERS.contains(&base) => {}
            _ => {
                conditions += 1;
                values += value.split(',').count();
            }
        }
    }
    if conditions > MAX_CONDITIONS {
        return Err(bad(format!(
            "The search has {conditions} parameters; this server takes at most {MAX_CONDITIONS}"
        )));
    }
    if values > MAX_VALUES {
        return Err(bad(format!(
            "The search has {values} values; this server takes at most {MAX_VALUES}"
        )));
    }
    if includes > MAX_INCLUDES {
        return Err(bad(format!(
            "The search has {includes} _include and _revinclude parameters; this server takes at most {MAX_INCLUDES}"
        )));
    }
    Ok(())
}

/// Handles `_count`, `_page`, `_sort`, `_include`, `_revinclude`, `_total`, `_summary`,
/// `_elements`; `Ok(false)` when `name` is not one of them.
fn parse_result_parameter(query: &mut Query, name: &str, value: &str) -> Result<bool, FhirError> {
    match name {
        "_count" => {
            let count: usize = value
                .parse()
                .map_err(|_| bad(format!("Invalid _count '{value}': expected a whole number")))?;
            query.count = Some(count);
        }
        "_page" => {
            query.cursor = Some(
                Cursor::decode(value)
                    .ok_or_else(|| bad(format!("Invalid paging cursor '{value}'")))?,
            );
        }
        "_sort" => {
            for key in value.split(',').filter(|k| !k.is_empty()) {
                query.sort.push(parse_sort_key(&query.resource_type, key)?);
            }
        }
        "_include" | "_include:iterate" | "_revinclude" | "_revinclude:iterate" => {
            let reverse = name.starts_with("_revinclude");
            let iterate = name.ends_with(":iterate");
            for include in parse_include(&query.resource_type, value, reverse, iterate)? {
                if reverse {
                    query.revincludes.push(include);
                } else {
                    query.includes.push(include);
                }
            }
        }
        "_total" => {
            query.total = match value {
                "none" => Total::None,
                "estimate" => Total::Estimate,
                "accurate" => Total::Accurate,
                _ => {
                    return Err(bad(format!(
                        "Invalid _total '{value}': none, estimate or accurate"
                    )));
                }
            };
        }
        "_summary" => query.summary = Summary::parse(value).map_err(bad)?,
        "_elements" => query.elements = Some(super::query::parse_elements(value)),
        _ => return Ok(false),
    }
    if name != "_page" {
        query.applied_result_parameter(name, value);
    }
    Ok(true)
}

impl Query {
    /// Result parameters are kept for the self and paging links too (but not `_count`,
    /// which the links add themselves).
    fn applied_result_parameter(&mut self, name: &str, value: &str) {
        if name != "_count" {
            self.applied.push((name.to_owned(), value.to_owned()));
        }
    }
}

fn parse_sort_key(resource_type: &str, key: &str) -> Result<SortKey, FhirError> {
    let (descending, code) = match key.strip_prefix('-') {
        Some(code) => (true, code),
        None => (false, key),
    };
    let kind = match code {
        "_id" => SortKind::Id,
        "_lastUpdated" => SortKind::LastUpdated,
        code => {
            let param = Registry::r4()
                .get(resource_type, code)
                .filter(|p| p.is_indexed())
                .ok_or_else(|| {
                    bad(format!(
                        "Cannot sort {resource_type} by '{code}': no such parameter"
                    ))
                })?;
            SortKind::Index {
                table: table_of(param.kind).ok_or_else(|| {
                    bad(format!(
                        "Cannot sort by the {} parameter '{code}'",
                        param.kind.as_str()
                    ))
                })?,
                param: code.to_owned(),
            }
        }
    };
    Ok(SortKey { kind, descending })
}

fn parse_include(
    resource_type: &str,
    value: &str,
    reverse: bool,
    iterate: bool,
) -> Result<Vec<Include>, FhirError> {
    let registry = Registry::r4();
    if value == "*" && reverse {
        // Every parameter of every type that can point here: hundreds of lookups per page
        // for a Patient. Refused rather than run; name the references wanted.
        return Err(bad(
            "_revinclude=* is not supported: name each one as Type:parameter (see searchRevInclude in the CapabilityStatement)".to_owned(),
        ));
    }
    if value == "*" {
        // Every reference parameter of the searched type.
        return Ok(registry
            .params(resource_type)
            .iter()
            .filter(|p| p.kind == ParamType::Reference && p.is_indexed())
            .map(|p| Include {
                source_type: resource_type.to_owned(),
                param: p.code.clone(),
                target_type: None,
                iterate,
            })
            .collect());
    }
    let parts: Vec<&str> = value.split(':').collect();
    let (source_type, param, target_type) = match parts.as_slice() {
        [source, param] => (*source, *param, None),
        [source, param, target] => (*source, *param, Some((*target).to_owned())),
        _ => {
            return Err(bad(format!(
                "Invalid include '{value}': expected Type:parameter[:TargetType]"
            )));
        }
    };
    if ResourceType::parse(source_type).is_none() {
        return Err(bad(format!(
            "Invalid include '{value}': unknown type '{source_type}'"
        )));
    }
    if !reverse && !iterate && source_type != resource_type {
        return Err(bad(format!(
            "_include '{value}' must start with the searched type {resource_type} (or use _include:iterate)"
        )));
    }
    let known = param == "*"
        || registry
            .get(source_type, param)
            .is_some_and(|p| p.kind == ParamType::Reference && p.is_indexed());
    if !known {
        return Err(bad(format!(
            "Invalid include '{value}': {source_type} has no reference parameter '{param}'"
        )));
    }
    if param == "*" {
        return parse_include(source_type, "*", reverse, iterate);
    }
    Ok(vec![Include {
        source_type: source_type.to_owned(),
        param: param.to_owned(),
        target_type,
        iterate,
    }])
}

/// The index table of a parameter type.
pub fn table_of(kind: ParamType) -> Option<Table> {
    Some(match kind {
        ParamType::String => Table::String,
        ParamType::Token => Table::Token,
        ParamType::Date => Table::Date,
        ParamType::Reference => Table::Reference,
        ParamType::Number => Table::Number,
        ParamType::Quantity => Table::Quantity,
        ParamType::Uri => Table::Uri,
        ParamType::Composite | ParamType::Special => return None,
    })
}

/// Parses one criterion; `Ok(None)` when the parameter is unknown for the type.
fn parse_clause(
    resource_type: &str,
    name: &str,
    value: &str,
    depth: usize,
) -> Result<Option<Clause>, FhirError> {
    if depth > MAX_DEPTH {
        return Err(bad(format!(
            "'{name}' nests chains or _has deeper than {MAX_DEPTH} levels"
        )));
    }
    if let Some(rest) = name.strip_prefix("_has:") {
        return parse_has(resource_type, rest, value, depth).map(Some);
    }
    if let Some((first, rest)) = name.split_once('.') {
        return parse_chain(resource_type, first, rest, value, depth);
    }
    let (code, modifier) = match name.split_once(':') {
        Some((code, modifier)) => (code, Some(modifier)),
        None => (name, None),
    };
    if let Some(clause) = parse_head_clause(code, modifier, value)? {
        return Ok(Some(clause));
    }
    let Some(param) = Registry::r4()
        .get(resource_type, code)
        .filter(|p| p.is_indexed())
    else {
        return Ok(None);
    };
    let table = table_of(param.kind).ok_or_else(|| unsupported_parameter(param.kind, code))?;
    if modifier == Some("missing") {
        return parse_missing(table, code, name, value).map(Some);
    }
    let values = split_or(value);
    if values.iter().any(String::is_empty) {
        return Err(bad(format!("Empty value in '{name}={value}'")));
    }
    parse_index_clause(param, table, code, modifier, &values).map(Some)
}

/// `_id` and `_lastUpdated`: the resource's head row answers them, not an index table, so
/// they have no registry entry and are parsed here. `Ok(None)` for any other code.
fn parse_head_clause(
    code: &str,
    modifier: Option<&str>,
    value: &str,
) -> Result<Option<Clause>, FhirError> {
    match code {
        "_id" => {
            if let Some(modifier) = modifier.filter(|m| *m != "missing") {
                return Err(bad(format!(
                    "Modifier ':{modifier}' is not supported on _id"
                )));
            }
            let ids = split_or(value);
            if ids.iter().any(|id| !crate::ids::is_valid_id(id)) {
                return Err(bad(format!("Invalid value for _id: '{value}'")));
            }
            Ok(Some(Clause::Id(ids)))
        }
        "_lastUpdated" => {
            let conditions = parse_each(&split_or(value), |v| parse_date(code, v))?;
            Ok(Some(Clause::LastUpdated(conditions)))
        }
        _ => Ok(None),
    }
}

/// `name:missing=true|false`: whether a resource has no value for the parameter at all,
/// which no value condition can express.
fn parse_missing(table: Table, code: &str, name: &str, value: &str) -> Result<Clause, FhirError> {
    let missing = match value {
        "true" => true,
        "false" => false,
        _ => {
            return Err(bad(format!(
                "Invalid value for {name}: '{value}' (true or false)"
            )));
        }
    };
    Ok(Clause::Missing {
        table,
        param: code.to_owned(),
        missing,
    })
}

/// The index clause of a parameter's (OR-ed) values, by the parameter's type and the
/// modifier: a modifier may look in another table or key (`:text`, `:of-type`,
/// `:identifier`) or negate (`:not`). A modifier the type does not take is an error.
fn parse_index_clause(
    param: &SearchParam,
    table: Table,
    code: &str,
    modifier: Option<&str>,
    values: &[String],
) -> Result<Clause, FhirError> {
    let index = |table: Table, key: String, any: Vec<Condition>, negate: bool| Clause::Index {
        table,
        param: key,
        any,
        negate,
    };
    // Most modifiers keep the parameter's own table and key.
    let own = |any: Vec<Condition>| index(table, code.to_owned(), any, false);
    let tokens = || values.iter().map(|v| parse_token(v)).collect();
    Ok(match (param.kind, modifier) {
        (ParamType::String, None | Some("exact") | Some("contains")) => {
            own(string_conditions(values, modifier))
        }
        (ParamType::Token, None | Some("not")) => {
            index(table, code.to_owned(), tokens(), modifier == Some("not"))
        }
        (ParamType::Token, Some("text")) => {
            let any = values
                .iter()
                .map(|v| Condition::StringPrefix(normalize(v)))
                .collect();
            index(Table::String, text_key(code), any, false)
        }
        (ParamType::Token, Some("of-type")) => {
            let any = parse_each(values, parse_of_type)?;
            index(Table::Token, of_type_key(code), any, false)
        }
        (ParamType::Date, None) => own(parse_each(values, |v| parse_date(code, v))?),
        (ParamType::Reference, Some("identifier")) => {
            index(Table::Token, identifier_key(code), tokens(), false)
        }
        (ParamType::Reference, modifier) => own(parse_references(param, code, modifier, values)?),
        (ParamType::Number, None) => own(parse_each(values, |v| parse_number_condition(code, v))?),
        (ParamType::Quantity, None) => own(parse_each(values, |v| parse_quantity(code, v))?),
        (ParamType::Uri, None | Some("below") | Some("above")) => {
            own(uri_conditions(values, modifier))
        }
        (_, Some(modifier)) => return Err(unsupported_modifier(param.kind, code, modifier)),
        (_, None) => return Err(unsupported_parameter(param.kind, code)),
    })
}

/// Parses every value with `parse`, stopping at the first malformed one.
fn parse_each(
    values: &[String],
    parse: impl Fn(&str) -> Result<Condition, FhirError>,
) -> Result<Vec<Condition>, FhirError> {
    values.iter().map(|v| parse(v)).collect()
}

/// A string parameter's values: a prefix of the normalized text by default, the text as
/// written with `:exact`, a part of the normalized text anywhere with `:contains`.
fn string_conditions(values: &[String], modifier: Option<&str>) -> Vec<Condition> {
    values
        .iter()
        .map(|v| match modifier {
            Some("exact") => Condition::StringExact(v.clone()),
            Some("contains") => Condition::StringContains(normalize(v)),
            _ => Condition::StringPrefix(normalize(v)),
        })
        .collect()
}

/// A `:of-type` value, `system|type-code|value`: the index keeps an identifier's type code
/// and value together as the code of one token row under the system.
fn parse_of_type(value: &str) -> Result<Condition, FhirError> {
    let parts: Vec<&str> = value.splitn(3, '|').collect();
    match parts.as_slice() {
        [system, kind, identifier] if !kind.is_empty() && !identifier.is_empty() => {
            Ok(Condition::Token {
                system: Some((*system).to_owned()),
                code: Some(format!("{kind}|{identifier}")),
            })
        }
        _ => Err(bad(format!(
            "Invalid :of-type value '{value}': expected system|code|value"
        ))),
    }
}

/// A reference parameter's values. Its only modifier here is a resource type
/// (`subject:Patient=123`), which the values must match and which types a bare id.
fn parse_references(
    param: &SearchParam,
    code: &str,
    modifier: Option<&str>,
    values: &[String],
) -> Result<Vec<Condition>, FhirError> {
    let type_modifier = match modifier {
        None => None,
        Some(t) if ResourceType::parse(t).is_some() => Some(t),
        Some(other) => return Err(unsupported_modifier(param.kind, code, other)),
    };
    let mut any = Vec::new();
    for v in values {
        any.extend(parse_reference_value(
            code,
            v,
            type_modifier,
            &param.targets,
        )?);
    }
    Ok(any)
}

/// `[prefix]number`, with the range its precision implies (see [`parse_number`]).
fn parse_number_condition(code: &str, value: &str) -> Result<Condition, FhirError> {
    let (prefix, number) = split_prefix(value);
    let (value, low, high) = parse_number(code, number)?;
    Ok(Condition::Number {
        prefix,
        value,
        low,
        high,
    })
}

/// A URI's values: the URI itself by default, the URIs it is a prefix of with `:below`,
/// the URIs that are a prefix of it with `:above`.
fn uri_conditions(values: &[String], modifier: Option<&str>) -> Vec<Condition> {
    values
        .iter()
        .map(|v| match modifier {
            Some("below") => Condition::UriBelow(v.clone()),
            Some("above") => Condition::UriAbove(v.clone()),
            _ => Condition::UriEquals(v.clone()),
        })
        .collect()
}

/// A modifier the parameter's type does not take: the client's error (400).
fn unsupported_modifier(kind: ParamType, code: &str, modifier: &str) -> FhirError {
    bad(format!(
        "Modifier ':{modifier}' is not supported on the {} parameter '{code}'",
        kind.as_str()
    ))
}

/// A parameter whose type this server cannot search (composite, special): ours (501).
fn unsupported_parameter(kind: ParamType, code: &str) -> FhirError {
    FhirError::not_supported(format!(
        "The {} parameter '{code}' is not supported",
        kind.as_str()
    ))
}

/// `subject:Patient.name=x`: `first` is `subject:Patient`, `rest` is `name`.
fn parse_chain(
    resource_type: &str,
    first: &str,
    rest: &str,
    value: &str,
    depth: usize,
) -> Result<Option<Clause>, FhirError> {
    let (code, type_modifier) = match first.split_once(':') {
        Some((code, t)) => (code, Some(t)),
        None => (first, None),
    };
    let Some(param) = Registry::r4()
        .get(resource_type, code)
        .filter(|p| p.is_indexed())
    else {
        return Ok(None);
    };
    if param.kind != ParamType::Reference {
        return Err(bad(format!(
            "Cannot chain through '{code}': it is not a reference parameter"
        )));
    }
    let candidates: Vec<String> = match type_modifier {
        Some(t) if ResourceType::parse(t).is_some() => vec![t.to_owned()],
        Some(t) => {
            return Err(bad(format!(
                "Unknown resource type '{t}' in chain '{first}.{rest}'"
            )));
        }
        None if param.targets.is_empty() || param.targets.iter().any(|t| t == "Resource") => {
            Definitions::r4().resource_types().to_vec()
        }
        None => param.targets.clone(),
    };
    let mut targets = Vec::new();
    for target in candidates {
        if let Some(clause) = parse_clause(&target, rest, value, depth + 1)? {
            targets.push((target, vec![clause]));
        }
    }
    if targets.is_empty() {
        return Err(bad(format!(
            "Cannot chain '{first}.{rest}': no target type of '{code}' has a parameter '{rest}'"
        )));
    }
    Ok(Some(Clause::Chain {
        param: code.to_owned(),
        targets,
    }))
}

/// `_has:Observation:patient:code=x` (`rest` is `Observation:patient:code`).
fn parse_has(
    resource_type: &str,
    rest: &str,
    value: &str,
    depth: usize,
) -> Result<Clause, FhirError> {
    let mut parts = rest.splitn(3, ':');
    let (Some(source_type), Some(param), Some(inner)) = (parts.next(), parts.next(), parts.next())
    else {
        return Err(bad(format!(
            "Invalid _has '_has:{rest}': expected _has:Type:reference:parameter"
        )));
    };
    if ResourceType::parse(source_type).is_none() {
        return Err(bad(format!("Invalid _has: unknown type '{source_type}'")));
    }
    let reference = Registry::r4()
        .get(source_type, param)
        .filter(|p| p.kind == ParamType::Reference && p.is_indexed())
        .ok_or_else(|| {
            bad(format!(
                "Invalid _has: {source_type} has no reference parameter '{param}'"
            ))
        })?;
    if !reference.targets.is_empty()
        && !reference
            .targets
            .iter()
            .any(|t| t == resource_type || t == "Resource")
    {
        return Err(bad(format!(
            "Invalid _has: {source_type}.{param} cannot reference a {resource_type}"
        )));
    }
    let clause = parse_clause(source_type, inner, value, depth + 1)?.ok_or_else(|| {
        bad(format!(
            "Invalid _has: {source_type} has no search parameter '{inner}'"
        ))
    })?;
    Ok(Clause::Has {
        source_type: source_type.to_owned(),
        param: param.to_owned(),
        clauses: vec![clause],
    })
}

/// Splits a value on commas not escaped with a backslash, and unescapes `\,` `\\` `\$`.
pub fn split_or(value: &str) -> Vec<String> {
    let mut parts = vec![String::new()];
    let mut chars = value.chars();
    while let Some(c) = chars.next() {
        let Some(current) = parts.last_mut() else {
            break;
        };
        match c {
            '\\' => match chars.next() {
                Some(next @ (',' | '\\' | '$')) => current.push(next),
                Some(next) => {
                    current.push('\\');
                    current.push(next);
                }
                None => current.push('\\'),
            },
            ',' => parts.push(String::new()),
            c => current.push(c),
        }
    }
    parts
}

/// `system|code`, `|code`, `system|` or `code`; an escaped `\|` is part of the code.
pub fn parse_token(value: &str) -> Condition {
    let bytes = value.as_bytes();
    let split_at =
        (0..bytes.len()).find(|&i| bytes[i] == b'|' && (i == 0 || bytes[i - 1] != b'\\'));
    let unescape = |s: &str| s.replace("\\|", "|");
    match split_at {
        None => Condition::Token {
            system: None,
            code: Some(unescape(value)),
        },
        Some(i) => {
            let code = &value[i + 1..];
            Condition::Token {
                system: Some(unescape(&value[..i])),
                code: (!code.is_empty()).then(|| unescape(code)),
            }
        }
    }
}

/// Splits a comparison prefix off a value (`ge2024` -> `Ge`, `2024`).
fn split_prefix(value: &str) -> (Prefix, &str) {
    let prefixes = [
        ("eq", Prefix::Eq),
        ("ne", Prefix::Ne),
        ("gt", Prefix::Gt),
        ("lt", Prefix::Lt),
        ("ge", Prefix::Ge),
        ("le", Prefix::Le),
        ("sa", Prefix::Sa),
        ("eb", Prefix::Eb),
        ("ap", Prefix::Ap),
    ];
    for (text, prefix) in prefixes {
        if let Some(rest) = value.strip_prefix(text) {
            return (prefix, rest);
        }
    }
    (Prefix::Eq, value)
}

fn parse_date(code: &str, value: &str) -> Result<Condition, FhirError> {
    let (prefix, text) = split_prefix(value);
    // An unencoded '+' of a time zone arrives as a space.
    let text = text.replace(' ', "+");
    let (low, high) = dates::range(&text).ok_or_else(|| {
        bad(format!("Invalid date for {code}: '{value}' (expected e.g. 2024, 2024-03-01 or ge2024-03-01T10:00:00Z)"))
    })?;
    Ok(Condition::Date(vec![DateBound { prefix, low, high }]))
}

/// A decimal and its implicit range: `100` is [99.5, 100.5), `1.50` is [1.495, 1.505).
fn parse_number(code: &str, text: &str) -> Result<(f64, f64, f64), FhirError> {
    let valid = !text.is_empty()
        && text
            .trim_start_matches(['-', '+'])
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_digit())
        && text
            .chars()
            .all(|c| c.is_ascii_digit() || matches!(c, '.' | '-' | '+' | 'e' | 'E'));
    let value: f64 = valid
        .then(|| text.parse().ok())
        .flatten()
        .filter(|v: &f64| v.is_finite())
        .ok_or_else(|| bad(format!("Invalid number for {code}: '{text}'")))?;
    let mantissa = text.split(['e', 'E']).next().unwrap_or(text);
    let exponent: i32 = text
        .split(['e', 'E'])
        .nth(1)
        .and_then(|e| e.parse().ok())
        .unwrap_or(0);
    let decimals = mantissa.split_once('.').map_or(0, |(_, f)| f.len() as i32);
    let half = 0.5 * 10f64.powi(exponent - decimals);
    Ok((value, value - half, value + half))
}

/// `[prefix]number|system|code` (system and code optional).
fn parse_quantity(code: &str, value: &str) -> Result<Condition, FhirError> {
    let (prefix, rest) = split_prefix(value);
    let mut parts = rest.splitn(3, '|');
    let number = parts.next().unwrap_or_default();
    let (value, low, high) = parse_number(code, number)?;
    let system = parts.next().filter(|s| !s.is_empty()).map(str::to_owned);
    let unit = parts.next().filter(|s| !s.is_empty()).map(str::to_owned);
    Ok(Condition::Quantity {
        prefix,
        value,
        low,
        high,
        system,
        code: unit,
    })
}

/// `Type/id`, an absolute URL, or a bare id (with a `:Type` modifier or a single target).
/// The index keeps absolute references as their URL only (see `index::add_reference`), so an
/// absolute URL matches that URL, and also, when it names a resource (`[base]/Type/id`), the
/// relative references to `Type/id`: the spec has the two forms match each other.
fn parse_reference_value(
    code: &str,
    value: &str,
    type_modifier: Option<&str>,
    targets: &[String],
) -> Result<Vec<Condition>, FhirError> {
    let absolute = value.contains("://") || value.starts_with("urn:");
    let by_url = || Condition::Reference {
        target_type: None,
        target_id: None,
        url: Some(value.to_owned()),
    };
    if let Some((target_type, target_id)) = parse_reference(value) {
        if type_modifier.is_some_and(|t| t != target_type) {
            return Err(bad(format!(
                "'{value}' does not match the type modifier of '{code}'"
            )));
        }
        let local = Condition::Reference {
            target_type: Some(target_type.to_owned()),
            target_id: Some(target_id.to_owned()),
            url: None,
        };
        return Ok(if absolute {
            vec![local, by_url()]
        } else {
            vec![local]
        });
    }
    if absolute {
        return Ok(vec![by_url()]);
    }
    if !crate::ids::is_valid_id(value) {
        return Err(bad(format!(
            "Invalid reference for {code}: '{value}' (expected Type/id, an id or a URL)"
        )));
    }
    let target_type = type_modifier
        .map(str::to_owned)
        .or_else(|| (targets.len() == 1 && targets[0] != "Resource").then(|| targets[0].clone()));
    Ok(vec![Condition::Reference {
        target_type,
        target_id: Some(value.to_owned()),
        url: None,
    }])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    fn parse(resource_type: &str, list: &[(&str, &str)]) -> Result<Query, FhirError> {
        Query::parse(resource_type, &pairs(list), false)
    }

    #[test]
    fn tokens_parse_every_form() {
        let token = |s: Option<&str>, c: Option<&str>| Condition::Token {
            system: s.map(str::to_owned),
            code: c.map(str::to_owned),
        };
        assert_eq!(parse_token("a"), token(None, Some("a")));
        assert_eq!(parse_token("s|a"), token(Some("s"), Some("a")));
        assert_eq!(parse_token("|a"), token(Some(""), Some("a")));
        assert_eq!(parse_token("s|"), token(Some("s"), None));
        assert_eq!(parse_token(r"a\|b"), token(None, Some("a|b")));
    }

    #[test]
    fn commas_are_or_unless_escaped() {
        assert_eq!(
            split_or(r"a,b\,c"),
            vec!["a".to_string(), "b,c".to_string()]
        );
    }

    #[test]
    fn unknown_parameters_are_ignored_unless_strict() {
        let params = pairs(&[("foo", "1"), ("_id", "x"), ("_count", "5")]);
        let query = Query::parse("Patient", &params, false).unwrap();
        assert_eq!(query.applied, pairs(&[("_id", "x")]));
        assert_eq!(query.page_size(crate::search::PageLimits::default()), 5);
        assert!(Query::parse("Patient", &params, true).is_err());
    }

    #[test]
    fn malformed_values_are_errors() {
        for (name, value) in [
            ("birthdate", "notadate"),
            ("_count", "x"),
            ("_id", "a b"),
            ("name:foo", "x"),
            ("general-practitioner", "a b"),
            ("_lastUpdated", "gt20x"),
            ("active:missing", "maybe"),
            ("_sort", "nope"),
            ("_include", "Patient:name"),
            ("_total", "some"),
        ] {
            assert!(
                parse("Patient", &[(name, value)]).is_err(),
                "{name}={value}"
            );
        }
    }

    #[test]
    fn numbers_carry_their_precision() {
        let (value, low, high) = parse_number("n", "100").unwrap();
        assert_eq!((value, low, high), (100.0, 99.5, 100.5));
        let (_, low, high) = parse_number("n", "1.50").unwrap();
        assert!((low - 1.495).abs() < 1e-9 && (high - 1.505).abs() < 1e-9);
        assert!(parse_number("n", "1e").is_err());
        assert!(parse_number("n", "abc").is_err());
    }

    #[test]
    fn chains_and_has_resolve_their_types() {
        let query = parse("Appointment", &[("patient.name", "smith")]).unwrap();
        match &query.clauses[0] {
            Clause::Chain { param, targets } => {
                assert_eq!(param, "patient");
                assert_eq!(targets[0].0, "Patient");
            }
            other => panic!("{other:?}"),
        }
        let query = parse("Patient", &[("_has:Appointment:patient:status", "booked")]).unwrap();
        assert!(
            matches!(&query.clauses[0], Clause::Has { source_type, .. } if source_type == "Appointment")
        );
        assert!(parse("Patient", &[("_has:Appointment:patient:nope", "x")]).is_err());
        assert!(parse("Appointment", &[("patient.nope", "x")]).is_err());
    }

    #[test]
    fn result_parameters_are_understood() {
        let query = parse(
            "Appointment",
            &[
                ("_sort", "-date,_id"),
                ("_include", "Appointment:patient"),
                ("_revinclude", "Encounter:appointment"),
                ("_total", "accurate"),
                ("_summary", "count"),
                ("_elements", "status,start"),
            ],
        )
        .unwrap();
        assert_eq!(query.sort.len(), 2);
        assert!(query.sort[0].descending);
        assert_eq!(query.includes.len(), 1);
        assert_eq!(query.revincludes.len(), 1);
        assert_eq!(query.total, Total::Accurate);
        assert_eq!(query.summary, Summary::Count);
        assert_eq!(
            query.elements.as_deref(),
            Some(&["status".to_string(), "start".to_string()][..])
        );
        assert_eq!(query.page_size(crate::search::PageLimits::default()), 50);
    }
}
