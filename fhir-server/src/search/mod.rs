//! Search: parsing a query string into clauses, and turning clauses into SQL.
//!
//! Supported so far: `_id` and `identifier` (token), `_count`, and the paging cursor. Unknown
//! parameters are ignored and left out of the self link, unless `Prefer: handling=strict`.

pub mod sql;

use fhir_model::Definitions;

use crate::error::FhirError;

/// A token search value: `code`, `system|code`, `|code` or `system|`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenValue {
    /// `None`: any system; `Some("")`: no system.
    pub system: Option<String>,
    /// `None`: any code (`system|`).
    pub code: Option<String>,
}

/// One search criterion; several values in one clause are OR-ed, clauses are AND-ed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Clause {
    Id(Vec<String>),
    Token {
        param: &'static str,
        values: Vec<TokenValue>,
    },
}

/// A parsed search.
#[derive(Debug, Clone, Default)]
pub struct Query {
    pub clauses: Vec<Clause>,
    /// The parameters applied, for the self link, in request order.
    pub applied: Vec<(String, String)>,
    pub count: Option<usize>,
    /// Keyset cursor: return resources after this res_id.
    pub after: Option<i64>,
}

/// Default and maximum page sizes.
pub const DEFAULT_COUNT: usize = 50;
pub const MAX_COUNT: usize = 1000;

/// Parameters that shape the answer rather than select resources; never "unknown".
const RESULT_PARAMETERS: &[&str] = &["_format", "_pretty", "_summary", "_elements", "_total"];

impl Query {
    /// Parses query parameters for a search on `resource_type`.
    pub fn parse(
        resource_type: &str,
        params: &[(String, String)],
        strict: bool,
    ) -> Result<Query, FhirError> {
        let mut query = Query::default();
        let has_identifier = Definitions::r4()
            .type_def(resource_type)
            .is_some_and(|t| t.element("identifier").is_some());
        for (name, value) in params {
            match name.as_str() {
                "_id" => {
                    let ids = split_or(value);
                    if ids.iter().any(|id| !crate::resource::is_valid_id(id)) {
                        return Err(FhirError::bad_request(format!(
                            "Invalid value for _id: '{value}'"
                        )));
                    }
                    query.clauses.push(Clause::Id(ids));
                }
                "identifier" if has_identifier => {
                    let values = split_or(value).iter().map(|v| parse_token(v)).collect();
                    query.clauses.push(Clause::Token {
                        param: "identifier",
                        values,
                    });
                }
                "_count" => {
                    let count: usize = value.parse().map_err(|_| {
                        FhirError::bad_request(format!("Invalid value for _count: '{value}'"))
                    })?;
                    query.count = Some(count.min(MAX_COUNT));
                    continue;
                }
                "_page" => {
                    query.after = Some(value.parse().map_err(|_| {
                        FhirError::bad_request(format!("Invalid paging cursor: '{value}'"))
                    })?);
                    continue;
                }
                n if RESULT_PARAMETERS.contains(&n) => continue,
                other => {
                    if strict {
                        return Err(FhirError::bad_request(format!(
                            "Unknown or unsupported search parameter '{other}' for {resource_type}"
                        )));
                    }
                    continue;
                }
            }
            query.applied.push((name.clone(), value.clone()));
        }
        Ok(query)
    }

    /// The page size to use.
    pub fn page_size(&self) -> usize {
        self.count.unwrap_or(DEFAULT_COUNT)
    }
}

/// Splits a value on commas not escaped with a backslash, and unescapes `\,` `\|` `\\`.
fn split_or(value: &str) -> Vec<String> {
    let mut parts = vec![String::new()];
    let mut chars = value.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some(next @ (',' | '\\' | '$')) => {
                    parts.last_mut().map(|p| p.push(next)).unwrap_or(())
                }
                Some(next) => {
                    if let Some(p) = parts.last_mut() {
                        p.push('\\');
                        p.push(next);
                    }
                }
                None => parts.last_mut().map(|p| p.push('\\')).unwrap_or(()),
            },
            ',' => parts.push(String::new()),
            c => parts.last_mut().map(|p| p.push(c)).unwrap_or(()),
        }
    }
    parts
}

/// Parses `system|code`; an escaped `\|` is part of the code.
fn parse_token(value: &str) -> TokenValue {
    let mut split_at = None;
    let bytes = value.as_bytes();
    for (i, &b) in bytes.iter().enumerate() {
        if b == b'|' && (i == 0 || bytes[i - 1] != b'\\') {
            split_at = Some(i);
            break;
        }
    }
    let unescape = |s: &str| s.replace("\\|", "|");
    match split_at {
        None => TokenValue {
            system: None,
            code: Some(unescape(value)),
        },
        Some(i) => {
            let code = &value[i + 1..];
            TokenValue {
                system: Some(unescape(&value[..i])),
                code: (!code.is_empty()).then(|| unescape(code)),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    #[test]
    fn tokens_parse_every_form() {
        assert_eq!(
            parse_token("a"),
            TokenValue {
                system: None,
                code: Some("a".into())
            }
        );
        assert_eq!(
            parse_token("s|a"),
            TokenValue {
                system: Some("s".into()),
                code: Some("a".into())
            }
        );
        assert_eq!(
            parse_token("|a"),
            TokenValue {
                system: Some("".into()),
                code: Some("a".into())
            }
        );
        assert_eq!(
            parse_token("s|"),
            TokenValue {
                system: Some("s".into()),
                code: None
            }
        );
        assert_eq!(
            parse_token(r"a\|b"),
            TokenValue {
                system: None,
                code: Some("a|b".into())
            }
        );
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
        assert_eq!(query.page_size(), 5);
        assert!(Query::parse("Patient", &params, true).is_err());
    }

    #[test]
    fn bad_values_are_rejected() {
        assert!(Query::parse("Patient", &pairs(&[("_count", "x")]), false).is_err());
        assert!(Query::parse("Patient", &pairs(&[("_id", "a b")]), false).is_err());
    }
}
