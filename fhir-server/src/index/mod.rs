//! Search-index values extracted from a resource at write time.
//!
//! Rows exist for current versions only; the store replaces them on every write in the same
//! transaction as the version, so a search right after a write sees it.

use serde_json::Value;

/// One token value (`system|code`) of a search parameter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRow {
    pub param: &'static str,
    /// `""` when the value has no system.
    pub system: String,
    pub code: String,
}

/// Every index row of one resource version.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IndexRows {
    pub tokens: Vec<TokenRow>,
}

/// Extracts the index rows of a resource.
///
/// For now this covers `identifier` (Identifier.system | Identifier.value), what conditional
/// create, update and delete need; the search-parameter registry extends it to every
/// parameter.
pub fn extract(resource: &Value) -> IndexRows {
    let mut rows = IndexRows::default();
    let identifiers = match resource.get("identifier") {
        Some(Value::Array(items)) => items.iter().collect(),
        Some(single @ Value::Object(_)) => vec![single],
        _ => Vec::new(),
    };
    for identifier in identifiers {
        if let Some(code) = identifier.get("value").and_then(Value::as_str) {
            let system = identifier.get("system").and_then(Value::as_str);
            rows.tokens.push(TokenRow {
                param: "identifier",
                system: system.unwrap_or_default().to_owned(),
                code: code.to_owned(),
            });
        }
    }
    rows
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn identifiers_become_token_rows() {
        let rows = extract(&json!({"resourceType": "Patient", "identifier": [
            {"system": "http://x", "value": "1"}, {"value": "2"}, {"system": "http://y"}]}));
        assert_eq!(rows.tokens.len(), 2);
        assert_eq!(rows.tokens[0].system, "http://x");
        assert_eq!(rows.tokens[1].system, "");
        assert_eq!(rows.tokens[1].code, "2");
    }
}
