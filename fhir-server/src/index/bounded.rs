//! Long values in the search index: every indexed text is at most [`MAX_INDEXED_BYTES`],
//! on both databases, so that any valid resource can be stored (PostgreSQL refuses a b-tree
//! entry over about 2.7 KB; a 12,000-character note is a valid Observation.valueString).
//!
//! - A string keeps its first 512 bytes (cut on a character boundary) as its normalized
//!   value, which the default (starts-with) search and sorting read, and the whole
//!   normalized text beside it (`long`, not indexed), which `:contains` and a search value
//!   longer than the prefix read. `:exact` compares the exact text, which is kept whole.
//! - A token, URI or reference value compared for equality keeps its first bytes and a
//!   hash of the whole ([`equality_key`]), and a search value is turned into the same key:
//!   two long values are equal in the index exactly when they are equal. Prefix searches on
//!   these (`:text`, `:below`, `:above`) see only the first 495 bytes of a longer value.

use std::borrow::Cow;

use super::IndexRows;

/// The most bytes of one value the index keeps in an indexed column.
pub const MAX_INDEXED_BYTES: usize = 512;

/// Where a long equality key is cut: room is left for the separator and the hash.
const KEY_PREFIX_BYTES: usize = MAX_INDEXED_BYTES - 17;

/// The longest prefix of `text` of at most `max` bytes that ends on a character boundary.
pub fn prefix(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// The value an index row keeps for an equality comparison: `text` itself up to
/// [`MAX_INDEXED_BYTES`], else its first bytes, `#` and a 64-bit FNV-1a hash of the whole.
pub fn equality_key(text: &str) -> Cow<'_, str> {
    if text.len() <= MAX_INDEXED_BYTES {
        return Cow::Borrowed(text);
    }
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in text.bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    Cow::Owned(format!("{}#{hash:016x}", prefix(text, KEY_PREFIX_BYTES)))
}

fn bound(value: &mut String) {
    if let Cow::Owned(key) = equality_key(value) {
        *value = key;
    }
}

/// Bounds every indexed value of `rows` (see the module docs).
pub fn bound_rows(rows: &mut IndexRows) {
    for row in &mut rows.strings {
        if row.norm.len() > MAX_INDEXED_BYTES {
            let cut = prefix(&row.norm, MAX_INDEXED_BYTES).to_owned();
            row.long = Some(std::mem::replace(&mut row.norm, cut));
        }
    }
    for row in &mut rows.tokens {
        bound(&mut row.system);
        bound(&mut row.code);
    }
    for row in &mut rows.uris {
        bound(&mut row.value);
    }
    for row in &mut rows.references {
        bound(&mut row.target_type);
        bound(&mut row.target_id);
        bound(&mut row.url);
    }
    for row in &mut rows.ref_dates {
        bound(&mut row.target_type);
        bound(&mut row.target_id);
    }
    for row in &mut rows.quantities {
        bound(&mut row.system);
        bound(&mut row.code);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_end_on_character_boundaries() {
        let text = "é".repeat(300); // 600 bytes
        let cut = prefix(&text, MAX_INDEXED_BYTES);
        assert_eq!(cut.len(), 512);
        let odd = format!("a{text}");
        assert_eq!(prefix(&odd, MAX_INDEXED_BYTES).len(), 511);
        assert_eq!(prefix("short", MAX_INDEXED_BYTES), "short");
    }

    #[test]
    fn long_keys_are_bounded_and_still_tell_values_apart() {
        let a = "x".repeat(3000);
        let b = format!("{}y", "x".repeat(2999));
        let (ka, kb) = (equality_key(&a), equality_key(&b));
        assert!(ka.len() <= MAX_INDEXED_BYTES && kb.len() <= MAX_INDEXED_BYTES);
        assert_ne!(ka, kb);
        assert_eq!(ka, equality_key(&a));
        assert!(matches!(equality_key("code"), Cow::Borrowed("code")));
    }
}
