//! Strict FHIR JSON parsing: serde_json, plus the rule it does not enforce. A repeated key
//! (`{"gender": "male", "gender": "female"}`) would silently keep the last value and lose
//! the other; FHIR JSON objects never repeat a key, so it is an error here.

use std::borrow::Cow;
use std::collections::HashSet;
use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::Value;

/// Why a body is not acceptable JSON, with where (1-based line and column).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JsonError {
    pub message: String,
    pub line: usize,
    pub column: usize,
}

impl fmt::Display for JsonError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} at line {}, column {}",
            self.message, self.line, self.column
        )
    }
}

impl From<serde_json::Error> for JsonError {
    fn from(error: serde_json::Error) -> Self {
        let text = error.to_string();
        // serde_json appends " at line L column C"; keep the message without it.
        let message = text.split(" at line ").next().unwrap_or(&text).to_owned();
        JsonError {
            message,
            line: error.line(),
            column: error.column(),
        }
    }
}

/// Parses JSON, rejecting malformed text and repeated keys in any object.
pub fn parse(bytes: &[u8]) -> Result<Value, JsonError> {
    let value: Value = serde_json::from_slice(bytes)?;
    serde_json::from_slice::<NoDuplicateKeys>(bytes)?;
    Ok(value)
}

/// Walks a JSON document keeping nothing but the keys of the object being read.
struct NoDuplicateKeys;

impl<'de> Deserialize<'de> for NoDuplicateKeys {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(KeyChecker)
    }
}

struct KeyChecker;

impl<'de> Visitor<'de> for KeyChecker {
    type Value = NoDuplicateKeys;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
        Ok(NoDuplicateKeys)
    }
    fn visit_i64<E>(self, _: i64) -> Result<Self::Value, E> {
        Ok(NoDuplicateKeys)
    }
    fn visit_u64<E>(self, _: u64) -> Result<Self::Value, E> {
        Ok(NoDuplicateKeys)
    }
    fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
        Ok(NoDuplicateKeys)
    }
    fn visit_str<E>(self, _: &str) -> Result<Self::Value, E> {
        Ok(NoDuplicateKeys)
    }
    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(NoDuplicateKeys)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        while seq.next_element::<NoDuplicateKeys>()?.is_some() {}
        Ok(NoDuplicateKeys)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut seen: HashSet<Cow<'de, str>> = HashSet::new();
        while let Some(key) = map.next_key::<Cow<'de, str>>()? {
            if seen.contains(&key) {
                return Err(de::Error::custom(format!("repeated key '{key}'")));
            }
            map.next_value::<NoDuplicateKeys>()?;
            seen.insert(key);
        }
        Ok(NoDuplicateKeys)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeated_keys_are_errors_with_their_position() {
        let error =
            parse(br#"{"resourceType":"Patient","gender":"male","gender":"female"}"#).unwrap_err();
        assert!(error.message.contains("repeated key 'gender'"), "{error}");
        assert_eq!(error.line, 1);
    }

    #[test]
    fn nested_repeats_are_found_and_distinct_objects_may_share_keys() {
        assert!(parse(br#"{"a":[{"x":1},{"x":2}],"b":{"x":1}}"#).is_ok());
        assert!(parse(br#"{"a":[{"x":1,"y":{"z":1,"z":2}}]}"#).is_err());
    }

    #[test]
    fn decimals_keep_their_text_and_malformed_json_is_an_error() {
        let value = parse(br#"{"v":72.50}"#).unwrap();
        assert_eq!(value.to_string(), r#"{"v":72.50}"#);
        let error = parse(b"{\"a\":\n  tru}").unwrap_err();
        assert_eq!(error.line, 2);
    }
}
