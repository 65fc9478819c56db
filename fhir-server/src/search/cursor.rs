//! Opaque paging cursors. A cursor holds the sort-key values and res_id of the entry a page
//! ends (or, going back, starts) at; the next page is the entries strictly after it in the
//! search's order. Unlike an offset, this stays right while other clients insert or delete:
//! no entry is seen twice and none present from the start is skipped.

use serde_json::{Value, json};

/// One sort-key value.
#[derive(Debug, Clone, PartialEq)]
pub enum KeyValue {
    Text(String),
    Int(i64),
    Real(f64),
}

/// Where a page starts.
#[derive(Debug, Clone, PartialEq)]
pub struct Cursor {
    /// `true`: entries after this position; `false`: entries before it (previous page).
    pub forward: bool,
    pub keys: Vec<KeyValue>,
    pub res_id: i64,
}

impl Cursor {
    /// The opaque text form used in `_page` (hex of a small JSON array).
    pub fn encode(&self) -> String {
        let keys: Vec<Value> = self
            .keys
            .iter()
            .map(|k| match k {
                KeyValue::Text(t) => json!({"s": t}),
                KeyValue::Int(i) => json!({"i": i}),
                KeyValue::Real(r) => json!({"r": r}),
            })
            .collect();
        let text = json!([if self.forward { "n" } else { "p" }, keys, self.res_id]).to_string();
        text.bytes().map(|b| format!("{b:02x}")).collect()
    }

    /// Parses `_page`; `None` when it is not a cursor of ours.
    pub fn decode(text: &str) -> Option<Cursor> {
        if !text.len().is_multiple_of(2) || text.len() > 8192 {
            return None;
        }
        let bytes: Option<Vec<u8>> = (0..text.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
            .collect();
        let value: Value = serde_json::from_slice(&bytes?).ok()?;
        let parts = value.as_array()?;
        let forward = match parts.first()?.as_str()? {
            "n" => true,
            "p" => false,
            _ => return None,
        };
        let keys = parts
            .get(1)?
            .as_array()?
            .iter()
            .map(|k| {
                if let Some(s) = k.get("s").and_then(Value::as_str) {
                    Some(KeyValue::Text(s.to_owned()))
                } else if let Some(i) = k.get("i").and_then(Value::as_i64) {
                    Some(KeyValue::Int(i))
                } else {
                    k.get("r").and_then(Value::as_f64).map(KeyValue::Real)
                }
            })
            .collect::<Option<Vec<_>>>()?;
        let res_id = parts.get(2)?.as_i64()?;
        Some(Cursor {
            forward,
            keys,
            res_id,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_reject_garbage() {
        let cursor = Cursor {
            forward: false,
            keys: vec![
                KeyValue::Text("müller".into()),
                KeyValue::Int(-3),
                KeyValue::Real(1.5),
            ],
            res_id: 42,
        };
        assert_eq!(Cursor::decode(&cursor.encode()), Some(cursor));
        assert_eq!(Cursor::decode("zz"), None);
        assert_eq!(Cursor::decode("123"), None);
        assert_eq!(Cursor::decode(""), None);
    }
}
